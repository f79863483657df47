
import pytest
import torch

from robgen_lib.book import Chapter
from robgen_lib.config import ConfigError, pick_device, resolve, seed_everything
from robgen_lib.data import DataUnavailableError, load_dataset
from robgen_lib.models import build_model


def test_defaults_resolve():
    cfg = resolve()
    assert cfg.profile == "quick" and cfg.dataset == "digits" and cfg.device == "auto"
    assert resolve("paper").dataset == "cifar10"
    assert resolve(eps="8/255").eps == pytest.approx(8 / 255)
    assert resolve(step_grid="0, 5,10").step_grid == (0, 5, 10)


@pytest.mark.parametrize("kw, match", [
    (dict(profile="huge"), "allowed: 'quick', 'paper'"),
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
    (dict(colour="red"), "unknown parameter 'colour'"),
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
    assert not cache.exists()  # nothing trained, nothing half-written


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
    ch = Chapter("quick", epochs=1, sigma_grid="0, 0.1")
    assert ch.cfg.sigma_grid == (0.0, 0.1)
    std = ch.classifier("standard")
    assert ch.classifier("noise", sigma=0.0) is std   # σ = 0 is the standard model, not a retrained one
    assert ch.classifier("scorer").spec["seed"] == std.spec["seed"] + Chapter.SCORER_SEED_OFFSET
    with pytest.raises(ConfigError, match="sigma"):
        ch.classifier("noise", sigma=-1.0)
    with pytest.raises(ConfigError, match="allowed"):
        ch.classifier("vae")


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
    with pytest.raises(ConfigError, match="variant"):
        ch.abs_model("vae")
    with pytest.raises(ConfigError, match="similarity"):
        ch.abs_model("abs", embed="lpips")


def test_a_single_number_is_a_list_of_one():
    assert resolve(ind_l2_grid=0.5).ind_l2_grid == (0.5,)        # what papermill passes for `-p ind_l2_grid 0.5`
    assert resolve(step_grid=5).step_grid == (5,)
    with pytest.raises(ConfigError, match="must be a list"):
        resolve(step_grid=True)
