"""A cache key holds everything its result depends on: the data's bytes, the parts an assembled
model is made of (with what they were trained on) and the version of the code; and verdicts are
never cached."""
import dataclasses

import pytest
import torch

from robgen_lib.core.cached import cached_call, call_key
from robgen_lib.core.data import Dataset, Split
from robgen_lib.core.fit import Optimiser, TrainedModel, model_spec, obtain
from robgen_lib.core.store import ArtifactStore
from robgen_lib.core.versions import versioned
from robgen_lib.methods.diffusion import DenoiserRecipe, DenoisingLoss, DiffusionClassifierRecipe
from robgen_lib.methods.evaluate import clean_accuracy


def _with_train(data: Dataset, train: Split) -> Dataset:
    return dataclasses.replace(data, train=train)


def _dc(epochs: int = 1) -> DiffusionClassifierRecipe:
    den = DenoiserRecipe(objective=DenoisingLoss(), epochs=epochs, batch_size=64, optimiser=Optimiser("adam", 2e-3),
                         base=8, multi_head=True)
    return DiffusionClassifierRecipe(den, timesteps=2)


def test_the_same_pixels_in_another_arrangement_are_other_data(digits):
    flipped = _with_train(digits, Split(digits.train.x.flip(-1), digits.train.y))
    assert flipped.train.x.sum() == digits.train.x.sum()                      # the old rounded sum could not tell
    assert flipped.fingerprint() != digits.fingerprint()
    same_label = (digits.train.y == digits.train.y[0]).nonzero().squeeze(1)[:2]
    order = torch.arange(len(digits.train.y))
    order[same_label] = same_label.flip(0)                                    # two images of one class swapped
    swapped = _with_train(digits, Split(digits.train.x[order], digits.train.y[order]))
    assert torch.equal(swapped.train.y, digits.train.y)
    assert swapped.fingerprint() != digits.fingerprint()
    assert digits.fingerprint() == dataclasses.replace(digits).fingerprint()   # the same bytes: the same key


def test_an_assembled_models_key_holds_its_parts_training_data(digits):
    small = _with_train(digits, digits.train.head(300))
    spec_small, spec_all = model_spec(_dc(), small), model_spec(_dc(), digits)
    assert spec_small != spec_all
    assert spec_small["denoiser"]["data"]["splits"]["train"]["n"] == 300
    assert spec_small["denoiser"]["loop"].startswith("robgen_lib.core.fit.fit@")
    assert spec_small["code"].startswith("robgen_lib.methods.diffusion.recipes.DiffusionClassifierRecipe@")


def test_an_evaluation_of_a_diffusion_classifier_is_not_read_for_one_whose_denoiser_saw_other_images(digits, tmp_path):
    """The case that served a wrong result: the same classifier, evaluated on the same test
    images, its denoiser trained on 300 images, then on all of them."""
    store = ArtifactStore(str(tmp_path / "cache"))
    split = digits.test.head(20)
    results, keys = [], []
    for data in (_with_train(digits, digits.train.head(300)), digits):
        dc = obtain(_dc(), data, store=store, progress=False)
        keys.append(call_key(clean_accuracy, dc, split))
        results.append(cached_call(store, clean_accuracy, dc, split))
        assert results[-1] == clean_accuracy(dc.model, split)                 # its own classifier's result
    assert keys[0] != keys[1]
    assert len([e for e in store.entries() if e.kind == "clean_accuracy"]) == 2


@versioned(1)
def _probe(model, split):
    return float(len(split))


def test_a_new_code_version_is_a_new_key(trained, digits, monkeypatch):
    before = call_key(_probe, trained, digits.test.head(5))
    monkeypatch.setattr(_probe, "__code_version__", 2)
    after = call_key(_probe, trained, digits.test.head(5))
    assert before["code"].endswith("@1") and after["code"].endswith("@2") and before != after


def _unversioned(model, split):
    return 0.0


def test_a_cached_function_without_a_version_is_refused(trained, digits, store):
    with pytest.raises(TypeError, match=r"_unversioned has no code version.*@versioned\(1\)"):
        cached_call(store, _unversioned, trained, digits.test.head(5))


def test_a_spec_without_a_version_is_refused(digits):
    @dataclasses.dataclass(frozen=True)
    class Loose:
        def spec(self):
            return {"loss": "loose"}

    with pytest.raises(TypeError, match="no code version"):
        call_key(_probe, TrainedModel(torch.nn.Identity(), {"m": 1}), Loose())


def test_a_verdict_rule_is_never_served_from_the_cache():
    from robgen_lib.book.analysis import jeat
    from robgen_lib.book.chapter import Chapter
    from robgen_lib.book.judge import judge
    from robgen_lib.book.report import quality_table

    for rule in (jeat.quality_gains, quality_table, judge):
        with pytest.raises(TypeError, match="decisions are never cached"):
            Chapter.run(None, rule, {}, "a", 10)


def test_the_quality_gains_are_read_from_the_cached_measurements():
    from robgen_lib.book.analysis import jeat

    diffs = {"s/is_style": {"scorer": "s", "metric": "is_style", "a": 3.0, "b": 2.0, "value": 1.0, "low": 0.5,
                            "high": 1.5, "n": 40},
             "s/fid_style": {"scorer": "s", "metric": "fid_style", "a": float("nan"), "b": float("nan"),
                             "value": -2.0, "low": -3.0, "high": -1.0, "n": 40}}
    g = jeat.quality_gains(diffs, {"s": {"is_style": 2.0, "fid_style": 4.0}})
    assert g["is-style (s)"].value == 0.5 and g["fid-style (s)"].low == 0.25 and g["fid-style (s)"].n == 40
