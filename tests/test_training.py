import math

import pytest
import torch

from conftest import small_cnn

from robgen_lib.core.errors import TrainingFailed
from robgen_lib.core.fit import Optimiser, PGDTraining, Standard, fit, obtain
from robgen_lib.core.models import build_model


def train(model, split, objective, *, lr, **kwargs):
    """The loop with the classifiers' optimiser (SGD with weight decay, one-cycle schedule)."""
    return fit(model, split, objective, optimiser=Optimiser("sgd", lr, weight_decay=5e-4), **kwargs)


def test_training_reaches_accuracy_and_is_cached(digits, store):
    a = obtain(small_cnn(Standard(), epochs=15), digits, store=store, min_accuracy=0.9, progress=False)
    b = obtain(small_cnn(Standard(), epochs=15), digits, store=store, progress=False)
    assert not a.from_cache and b.from_cache
    assert a.test_accuracy == b.test_accuracy > 0.9
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_training_is_deterministic(digits, tmp_path):
    from robgen_lib.core.store import ArtifactStore

    runs = [obtain(small_cnn(Standard(), epochs=2), digits, store=ArtifactStore(str(tmp_path / str(i))),
                   progress=False) for i in range(2)]
    assert runs[0].history["loss"] == runs[1].history["loss"]


def test_min_accuracy_is_enforced(digits, store):
    with pytest.raises(TrainingFailed, match="expected"):
        obtain(small_cnn(Standard(), epochs=1, batch_size=512, lr=1e-4), digits, store=store, min_accuracy=0.99,
               progress=False)


def test_divergence_stops_training(digits):
    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
    calls = []

    def blows_up(m, x, y, generator):  # finite for two batches, then infinite
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(m(x), y)
        return loss if len(calls) < 3 else loss * float("inf")

    with pytest.raises(TrainingFailed, match="loss became .* at epoch 1;"):
        train(model, digits.train, blows_up, epochs=3, batch_size=64, lr=0.05, progress=False)
    assert len(calls) == math.ceil(len(digits.train) / 64)   # stopped at the end of the first epoch


def test_pgd_training_objective_runs(digits):
    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
    hist = train(model, digits.train.head(128), PGDTraining(0.1, 0.05, 2), epochs=1, batch_size=64, lr=0.05,
                 progress=False)
    assert len(hist["loss"]) == 1 and hist["loss"][0] > 0


@pytest.mark.parametrize("arch, shape", [("small_cnn", (1, 8, 8)), ("resnet10", (3, 32, 32)),
                                         ("preact_resnet18", (3, 32, 32))])
def test_models_return_logits(arch, shape):
    m = build_model(arch, in_channels=shape[0], num_classes=10, image_size=shape[1])
    assert m(torch.rand(2, *shape)).shape == (2, 10)


def test_replay_buffer_reinitialisation_rate():
    from robgen_lib.methods.jeat import ReplayBuffer

    buf = ReplayBuffer(100, (1, 2, 2), reinit=0.3, generator=torch.Generator().manual_seed(0))
    buf.data.fill_(2.0)  # stored samples sit outside [0, 1]; fresh ones inside
    fresh = 0
    for _ in range(50):
        x, idx = buf.sample(200)
        fresh += (x.flatten(1).max(1).values <= 1.0).sum().item()
    assert abs(fresh / 10_000 - 0.3) < 0.02
    x, idx = buf.sample(5)
    buf.update(idx, torch.zeros_like(x))
    assert (buf.data[idx] == 0).all()
    with pytest.raises(Exception, match="reinit"):
        ReplayBuffer(10, (1,), reinit=1.5, generator=torch.Generator())


def test_jeat_trains_and_logs_energies(digits):
    from robgen_lib.methods.jeat import JEATTraining

    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
    obj = JEATTraining(0.1, 0.05, 2, sgld_steps=3, sgld_step=0.01, buffer_size=200)
    hist = train(model, digits.train.head(256), obj, epochs=2, batch_size=64, lr=0.01, progress=False)
    assert len(hist["energy_data"]) == 2 and len(hist["energy_samples"]) == 2
    assert all(map(lambda v: v == v, hist["energy_data"]))  # no NaN


def test_jeat_divergence_guard_fires(digits):
    from robgen_lib.methods.jeat import JEATTraining

    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
    with torch.no_grad():  # force a blow-up: huge logits mean huge energies
        model[1].head.weight.mul_(1e6)
    obj = JEATTraining(0.1, 0.05, 1, sgld_steps=1, sgld_step=0.01, buffer_size=100, max_energy=1e3)
    with pytest.raises(TrainingFailed, match="JEAT diverged"):
        train(model, digits.train.head(64), obj, epochs=1, batch_size=64, lr=0.01, progress=False)


def test_history_tracks_test_accuracy_and_jeat_keeps_its_samples(digits, store):
    from robgen_lib.methods.jeat import JEATTraining

    obj = JEATTraining(0.1, 0.05, 1, sgld_steps=2, sgld_step=0.01, buffer_size=100, seed=3)
    m = obtain(small_cnn(obj, epochs=2, batch_size=128), digits, store=store, progress=False)
    assert len(m.history["test_accuracy"]) == 2 and all(0 <= a <= 1 for a in m.history["test_accuracy"])
    assert m.history["test_accuracy"][-1] == pytest.approx(m.test_accuracy)
    assert m.samples is not None and m.samples.shape == (64, 1, 8, 8)
    assert 0 <= float(m.samples.min()) and float(m.samples.max()) <= 1
    again = obtain(small_cnn(JEATTraining(0.1, 0.05, 1, sgld_steps=2, sgld_step=0.01, buffer_size=100, seed=3),
                             epochs=2, batch_size=128), digits, store=store, progress=False)
    assert again.from_cache and torch.equal(again.samples, m.samples)


def test_jeat_samples_use_running_batchnorm_statistics_without_updating_them():
    import copy

    from robgen_lib.core.attacks import pgd
    from robgen_lib.methods.jeat import JEATTraining

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(256, 3))
    twin = copy.deepcopy(model)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(2))
    obj = JEATTraining(0.1, 0.05, 2, sgld_steps=2, sgld_step=0.01, buffer_size=20)
    model.train()
    torch.manual_seed(3)                                   # PGD's random start draws from the global generator
    loss = obj(model, x, y)
    torch.manual_seed(3)
    x_adv = pgd(twin, x, y, eps=0.1, step_size=0.05, steps=2)
    twin.train()
    twin(x_adv)                                            # what the adversarial batch alone does to the statistics
    bn, ref = model[1], twin[1]
    assert torch.equal(bn.running_mean, ref.running_mean) and torch.equal(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) == 1
    assert model.training and all(m.training for m in model.modules())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert obj.spec()["sample_norm"] == "running"


def test_frozen_batchnorm_leaves_other_modules_and_restores_modes():
    from robgen_lib.core.models import frozen_batchnorm

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.5),
                                torch.nn.BatchNorm1d(4))
    model.train()
    model[3].eval()
    before = model[1].running_mean.clone()
    with frozen_batchnorm(model):
        assert not model[1].training and not model[3].training and model[0].training and model[2].training
        model(torch.randn(8, 4))
    assert torch.equal(model[1].running_mean, before)
    assert model[1].training and not model[3].training and model.training


def test_jeat_refuses_negative_weights():
    from robgen_lib.methods.jeat import JEATTraining

    with pytest.raises(Exception, match="cd_weight"):
        JEATTraining(0.1, 0.05, 1, cd_weight=-1.0)
    with pytest.raises(Exception, match="energy_penalty"):
        JEATTraining(0.1, 0.05, 1, energy_penalty=-0.1)


def test_every_model_kind_trains_in_the_one_loop_and_stops_on_a_non_finite_loss(digits, store, monkeypatch):
    from robgen_lib.methods import diffusion, generative

    den = diffusion.DenoiserRecipe(8, True, objective=diffusion.DenoisingLoss(), epochs=1, batch_size=64,
                                   optimiser=Optimiser("adam", 1e-3, warmup=0.05))
    vaes = generative.ClassVAEsRecipe(2, 8, objective=generative.ClassELBO(1.0), epochs=1, batch_size=64,
                                      optimiser=Optimiser("adam", 1e-3, schedule="constant"))
    trained = [obtain(r, digits, store=store, progress=False) for r in (den, vaes)]
    assert trained[0].model.evaluations == 0 and len(trained[1].model) == 10
    assert set(trained[1].history) == {"loss", "elbo", "ce"}   # every loss term is logged per epoch

    def nan(*args, **kwargs):
        return torch.tensor(float("nan"), requires_grad=True)

    monkeypatch.setattr(diffusion.DenoisingLoss, "__call__", nan)
    with pytest.raises(TrainingFailed, match="denoiser: loss became nan at epoch 1"):
        obtain(diffusion.DenoiserRecipe(8, True, objective=diffusion.DenoisingLoss(), epochs=2, batch_size=64,
                                        optimiser=Optimiser("adam", 1e-3)), digits, store=store, progress=False)
    monkeypatch.setattr(generative.ClassVAE, "elbo_loss", nan)
    with pytest.raises(TrainingFailed, match="class VAEs: loss became nan at epoch 1"):
        obtain(generative.ClassVAEsRecipe(2, 8, objective=generative.ClassELBO(), epochs=2, batch_size=64,
                                          optimiser=Optimiser("adam", 1e-3)), digits, store=store, progress=False)
    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
    with pytest.raises(TrainingFailed, match="loss became nan at epoch 1"):
        train(model, digits.train, lambda m, x, y, g: nan(), epochs=1, batch_size=64, lr=0.05, progress=False)


def test_a_budget_ramp_grows_the_adversarial_budget_linearly_then_holds(digits):
    from robgen_lib.core.fit import ramped

    assert ramped(0.3, 0.05, 0.0, 0.0) == (0.3, 0.05)   # no ramp: the full budget from the first step
    assert ramped(0.3, 0.06, 0.5, 0.25) == pytest.approx((0.15, 0.03))
    assert ramped(0.3, 0.06, 0.5, 0.9) == (0.3, 0.06)
    seen = []

    class Watched(PGDTraining):
        def __call__(self, model, x, y, generator=None):
            seen.append(self.done)
            return super().__call__(model, x, y, generator)

    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
    train(model, digits.train.head(256), Watched(0.1, 0.05, 2, ramp=0.5), epochs=2, batch_size=64, lr=0.05,
          progress=False)
    assert seen == [i / 8 for i in range(8)]   # the loop reports the fraction of steps done before each
    assert "ramp" not in PGDTraining(0.1, 0.05, 2).spec() and PGDTraining(0.1, 0.05, 2, ramp=0.5).spec()["ramp"] == 0.5


def test_a_chapter_refuses_a_classifier_no_better_than_chance(monkeypatch):
    from robgen_lib.book import chapter as chapter_module

    asked = {}

    def fake_obtain(recipe, data, **kwargs):
        asked[recipe.kind] = kwargs["min_accuracy"]
        raise TrainingFailed("stop")

    ch = chapter_module.Chapter("quick", chapter="rdc")
    monkeypatch.setattr(chapter_module, "obtain", fake_obtain)
    for name in ("standard", "denoiser"):
        with pytest.raises(TrainingFailed):
            ch.model(name)
    assert asked == {"classifier": pytest.approx(0.15), "denoiser": None}   # classifiers only: 1.5 x chance
