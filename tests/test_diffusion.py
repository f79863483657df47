import copy
import os
import socket
import subprocess
import sys

import pytest
import torch

from robgen_lib.core.errors import ConfigError
from robgen_lib.core.versions import versioned
from robgen_lib.methods.diffusion import (
    RDC,
    Denoiser,
    DiffusionClassifier,
    DenoisingLoss,
    Schedule,
    likelihood_maximisation,
    sigma_grid,
)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Denoiser(1, 4, base=8, multi_head=True).eval()


def test_one_pass_and_per_class_passes_give_the_same_logits(tiny):
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    clf = DiffusionClassifier(tiny, timesteps=3)
    tiny.evaluations = 0
    one = clf(x)
    assert tiny.evaluations == 3 * 3                 # T' passes per image
    clf.one_pass = False
    tiny.evaluations = 0
    per_class = clf(x)
    assert tiny.evaluations == 3 * 3 * 4             # K·T' passes per image
    assert torch.allclose(one, per_class, atol=1e-6)
    assert one.shape == (3, 4)


def test_single_head_needs_labels_and_predicts_one_eps():
    net = Denoiser(1, 4, base=8, multi_head=False).eval()
    x, t = torch.rand(2, 1, 8, 8), torch.tensor([5, 500])
    with pytest.raises(ValueError, match="labels"):
        net(x, t)
    assert net.eps(x, t, torch.tensor([0, 4])).shape == (2, 1, 8, 8)   # 4 = the null label
    assert net.eps_all(x, t).shape == (2, 4, 1, 8, 8)
    with pytest.raises(ValueError, match="multi-head"):
        net.eps_all(x, t, one_pass=True)


def test_classifier_gradient_matches_finite_differences(tiny):
    clf = DiffusionClassifier(copy.deepcopy(tiny).double(), timesteps=2, scale=10.0)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    y = torch.tensor([1])
    f = lambda z: torch.nn.functional.cross_entropy(clf(z), y)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(xg), xg)
    d = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h = 1e-5
    with torch.no_grad():
        fd = (f(x + h * d) - f(x - h * d)) / (2 * h)
    assert float((g * d).sum()) == pytest.approx(float(fd), rel=1e-4, abs=1e-8)


def test_classifier_is_deterministic(tiny):
    x = torch.rand(2, 1, 8, 8)
    for grid in ("uniform", "sigma"):
        clf = DiffusionClassifier(tiny, timesteps=4, seed=7, grid=grid)
        assert clf.noise == "fixed" and not clf.stochastic
        assert torch.equal(clf(x), clf(x))
        assert torch.equal(clf(x), DiffusionClassifier(tiny, timesteps=4, seed=7, grid=grid)(x))
        twins = clf(x[:1].expand(2, -1, -1, -1))                 # one noise image shared by every image
        assert torch.equal(twins[0], twins[1])


def test_fresh_noise_differs_per_call_and_image_and_repeats_under_its_seed(tiny):
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    a, b = (DiffusionClassifier(tiny, timesteps=3, seed=5, noise="fresh") for _ in range(2))
    assert a.stochastic and getattr(RDC(a, steps=1), "stochastic", False)
    first = [a(x) for _ in range(3)]
    assert not torch.allclose(first[0], first[1]) and not torch.allclose(first[1], first[2])
    assert all(torch.equal(u, v) for u, v in zip(first, [b(x) for _ in range(3)]))   # same seed, same sequence
    a.reseed()
    assert torch.equal(a(x), first[0])
    twins = a(x[:1].expand(2, -1, -1, -1))                        # an independent ε per image
    assert not torch.allclose(twins[0], twins[1])
    per_class = DiffusionClassifier(tiny, timesteps=3, seed=5, noise="fresh", one_pass=False)
    assert torch.allclose(per_class(x), first[0], atol=1e-6)     # the K classes share each call's ε


def test_sigma_grid_follows_the_edm_weights():
    sched = Schedule()
    for T in (1, 5, 16, 50):
        ts, w = sigma_grid(T, sched)
        assert ts.shape == w.shape == (T,) and ts.dtype == torch.long
        assert (w > 0).all() and float(w.sum()) == pytest.approx(1.0, abs=1e-6)
        assert (ts >= 0).all() and (ts < sched.steps).all() and (ts[1:] >= ts[:-1]).all()
    ts, w = sigma_grid(16, sched)
    sigmas = torch.linspace(1e-4, 3.0, 17, dtype=torch.float64)[:-1]
    p = torch.exp(-(sigmas.log() + 1.2) ** 2 / (2 * 1.2 ** 2)) / (sigmas * 1.2 * (2 * torch.pi) ** 0.5)
    lam = (sigmas ** 2 + 0.25) / (sigmas * 0.5) ** 2             # EDM's λ(σ) on ‖D − x‖² = σ²‖ε̂ − ε‖²
    ref = lam * sigmas ** 2 * p
    assert torch.allclose(w.double(), ref / ref.sum(), rtol=1e-5)
    ab = sched.alpha_bar[ts].double()
    assert torch.allclose(((1 - ab) / ab).sqrt()[1:], sigmas[1:], rtol=0.05)   # t carries σ (above t = 0)
    clf = DiffusionClassifier(Denoiser(1, 3, base=8, multi_head=True), 16, grid="sigma")
    assert torch.equal(clf.ts, ts) and torch.equal(clf.weights, w)
    assert set(dict(clf.named_buffers())) >= {"ts", "weights"}


def test_unknown_noise_or_grid_names_the_allowed_values(tiny):
    from robgen_lib.methods.diffusion import DiffusionClassifierRecipe

    with pytest.raises(ConfigError, match="'fixed', 'fresh'"):
        DiffusionClassifier(tiny, 2, noise="random")
    with pytest.raises(ConfigError, match="'uniform', 'sigma'"):
        DiffusionClassifier(tiny, 2, grid="log")
    with pytest.raises(ConfigError, match="allowed"):
        DiffusionClassifierRecipe(None, 2, noise="random")
    with pytest.raises(ConfigError, match="multi-head"):
        DiffusionClassifier(Denoiser(1, 4, base=8, multi_head=False), 2, one_pass=True)


def test_lm_stays_in_its_ball_and_in_the_image_range(tiny):
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    x[0] = 0.0
    x[1] = 1.0
    for eta in (0.0, 0.05, 0.3):
        out = likelihood_maximisation(tiny, x, steps=4, eta=eta, step_size=0.1)
        assert (out - x).abs().max() <= eta + 1e-6
        assert out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(Exception, match="eta"):
        likelihood_maximisation(tiny, x, steps=1, eta=-0.1, step_size=0.1)


def test_pgd_follows_the_mean_gradient_of_eot_draws(tiny):
    from robgen_lib.core.attacks import pgd

    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(9)) * 0.6 + 0.2
    y = torch.tensor([0, 3])
    clf = DiffusionClassifier(tiny, 2, seed=3, noise="fresh")
    xg = x.clone().requires_grad_(True)
    grads = [torch.autograd.grad(torch.nn.functional.cross_entropy(clf(xg), y, reduction="sum"), xg)[0]
             for _ in range(3)]
    clf.reseed()
    tiny.evaluations = 0
    out = pgd(clf, x, y, eps=0.1, step_size=0.02, steps=1, random_start=False, eot=3)
    assert tiny.evaluations == 3 * 2 * len(x)                    # eot × T′ passes per image and step
    assert torch.allclose(out, (x + 0.02 * (sum(grads) / 3).sign()).clamp(0, 1), atol=1e-6)
    fixed, gen = DiffusionClassifier(tiny, 2), lambda: torch.Generator().manual_seed(1)
    kw = dict(eps=0.1, step_size=0.02, steps=2)
    assert torch.equal(pgd(fixed, x, y, generator=gen(), **kw), pgd(fixed, x, y, generator=gen(), eot=1, **kw))
    with pytest.raises(ConfigError, match="eot"):
        pgd(fixed, x, y, eot=0, **kw)


def test_lm_of_an_image_does_not_depend_on_its_batch(tiny):
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    lm = lambda z: likelihood_maximisation(tiny, z, steps=3, eta=0.2, step_size=0.05, seed=2)
    out = lm(x)
    assert torch.allclose(lm(x.flip(0)), out.flip(0), atol=1e-5)
    assert torch.allclose(lm(x[2:3]), out[2:3], atol=1e-5)
    others = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(lm(torch.cat([others, x[3:4]]))[2:], out[3:4], atol=1e-5)   # other company


def test_lm_lowers_the_denoising_loss_on_average():
    torch.manual_seed(0)
    from robgen_lib.core.data import load_dataset

    data = load_dataset("digits")
    net = Denoiser(1, 10, base=8, multi_head=True)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    objective, gen = DenoisingLoss(0.1), torch.Generator().manual_seed(0)
    for i in range(150):
        idx = torch.randint(0, len(data.train.x), (64,), generator=gen)
        loss = objective(net, data.train.x[idx], data.train.y[idx], gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x = (data.test.x[:64] + 0.3 * torch.randn(64, 1, 8, 8, generator=gen)).clamp(0, 1)   # noisy images
    out = likelihood_maximisation(net, x, steps=5, eta=0.3, step_size=0.1, seed=1)
    assert (out - data.test.x[:64]).pow(2).mean() < (x - data.test.x[:64]).pow(2).mean()


def test_rdc_gradients_exact_and_bpda(tiny):
    clf = DiffusionClassifier(tiny, timesteps=2)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    grads = {}
    for mode in ("exact", "bpda"):
        rdc = RDC(clf, steps=1, eta=0.1, step_size=0.05, gradient=mode)
        xg = x.clone().requires_grad_(True)
        (grads[mode],) = torch.autograd.grad(rdc(xg).sum(), xg)
        with torch.no_grad():   # prediction works without autograd too
            assert torch.allclose(rdc(x), clf(likelihood_maximisation(tiny, x, steps=1, eta=0.1, step_size=0.05)))
    assert grads["exact"].abs().sum() > 0 and grads["bpda"].abs().sum() > 0
    with pytest.raises(Exception, match="allowed"):
        RDC(clf, gradient="straight")


SHARD_SCRIPT = r"""
import sys, torch
from robgen_lib.core.attacks import robust_correct
from robgen_lib.core.parallel import close_distributed, init_distributed, sharded_map
rank, world = init_distributed()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
gen = torch.Generator().manual_seed(1)
x, y = torch.rand(50, 1, 8, 8, generator=gen), torch.randint(0, 10, (50,), generator=gen)
fn = lambda xb, yb, g: {"robust": robust_correct(model, xb, yb, restarts=2, generator=g, eps=0.05, step_size=0.02,
                                                 steps=3)}
out = sharded_map(fn, x, y, batch_size=8, seed=3, progress=False)
adv = sharded_map(lambda xb, yb, g: {"r": torch.rand(len(xb), generator=g)}, x, y, batch_size=8, seed=3, progress=False)
if rank == 0:
    torch.save({**out, **adv}, sys.argv[1])
close_distributed()
"""


def test_sharded_evaluation_equals_single_process(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt")], check=True, env=env, timeout=300)
    with socket.socket() as s:                       # a free port: a fixed one may be taken on a busy machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(port), str(script), str(tmp_path / "two.pt")], env=env, timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert len(one["robust"]) == 50 and one.keys() == two.keys()
    for k in one:
        assert torch.equal(one[k], two[k]), k


def test_chapter_uses_a_users_denoiser_weights(tmp_path, monkeypatch):
    from robgen_lib.book.chapter import Chapter
    from robgen_lib.core.errors import ConfigError

    monkeypatch.setenv("ROBGEN_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    mine = Denoiser(1, 10, base=8, multi_head=True).eval()
    torch.save(mine.state_dict(), tmp_path / "unet.pt")
    ch = Chapter("quick", den_width=8, timesteps=3, denoiser_weights=str(tmp_path / "unet.pt"))
    clf = ch.model("dc")
    x = ch.data.test.x[:4]
    same = DiffusionClassifier(mine, 3, seed=ch.cfg.seed, noise=ch.cfg.dc_noise, grid=ch.cfg.dc_grid)
    assert torch.allclose(clf.model(x), same(x), atol=1e-6)
    assert clf.spec["denoiser"]["weights"] and not (tmp_path / "cache" / "denoiser").exists()   # nothing trained
    with pytest.raises(ConfigError, match="do not fit"):
        Chapter("quick", den_width=16, denoiser_weights=str(tmp_path / "unet.pt")).model("denoiser")
    with pytest.raises(ConfigError, match="no file"):
        Chapter("quick", denoiser_weights=str(tmp_path / "missing.pt")).model("denoiser")


def test_weights_that_are_not_finite_or_incomplete_are_refused_by_name(tmp_path):
    from robgen_lib.methods.diffusion import load_denoiser_weights

    state = Denoiser(1, 10, base=8, multi_head=True).state_dict()
    torch.save({**state, "out.weight": torch.full_like(state["out.weight"], float("nan"))}
               if "out.weight" in state else {k: v.float() * float("nan") for k, v in state.items()}, tmp_path / "nan.pt")
    with pytest.raises(ConfigError, match="NaN or infinite"):
        load_denoiser_weights(str(tmp_path / "nan.pt"), 1, 10, 8)
    first = next(iter(state))
    torch.save({k: v for k, v in state.items() if k != first}, tmp_path / "part.pt")
    with pytest.raises(ConfigError, match=f"1 tensors are missing \\({first}\\)") as err:
        load_denoiser_weights(str(tmp_path / "part.pt"), 1, 10, 8)
    assert "den_width" not in str(err.value)                   # the width was right: no advice to change it
    torch.save({**state, "extra.weight": torch.zeros(2)}, tmp_path / "more.pt")
    with pytest.raises(ConfigError, match="not the network's \\(extra.weight\\)"):
        load_denoiser_weights(str(tmp_path / "more.pt"), 1, 10, 8)
    with pytest.raises(ConfigError, match="set den_width"):
        load_denoiser_weights(str(tmp_path / "more.pt"), 1, 10, 16)


def test_single_and_multi_head_denoisers_train_through_the_book(tmp_path, monkeypatch):
    from robgen_lib.book.chapter import Chapter

    monkeypatch.setenv("ROBGEN_CACHE", str(tmp_path / "cache"))
    ch = Chapter("quick", den_width=8, den_epochs=2, n_train=48, batch_size=24, timesteps=2)
    x = ch.data.test.x[:3]
    logits = {}
    for multi in (True, False):
        den = ch.model("denoiser", multi_head=multi)
        assert den.model.multi_head is multi and not den.from_cache
        assert len(den.history["loss"]) == 2 and all(torch.isfinite(torch.tensor(den.history["loss"])))
        clf = ch.model("dc", multi_head=multi)
        assert clf.spec["denoiser"]["multi_head"] is multi
        with torch.no_grad():
            logits[multi] = clf.model(x)
        assert torch.isfinite(logits[multi]).all()
    assert logits[True].shape == logits[False].shape == (3, ch.data.num_classes)


def test_the_book_passes_noise_and_grid_and_keeps_them_in_the_spec(tmp_path, monkeypatch):
    from robgen_lib.book.knobs import resolve
    from robgen_lib.book.recipes import recipe
    from robgen_lib.core.data import load_dataset

    data = load_dataset("digits", n_train=20, n_test=20)
    cfg = resolve("quick")
    spec = recipe(cfg, data, "dc").spec()
    assert (spec["noise"], spec["grid"]) == (cfg.dc_noise, cfg.dc_grid) == ("fresh", "sigma")
    spec = recipe(resolve("quick", dc_noise="fixed", dc_grid="uniform"), data, "rdc", multi_head=False).spec()
    assert (spec["classifier"]["noise"], spec["classifier"]["grid"]) == ("fixed", "uniform")
    assert spec["classifier"]["denoiser"]["multi_head"] is False
    spec = recipe(cfg, data, "rdc", noise="fixed", grid="uniform").spec()["classifier"]
    assert (spec["noise"], spec["grid"]) == ("fixed", "uniform")
    with pytest.raises(ConfigError, match="allowed"):
        resolve("quick", dc_noise="random")
    torch.save(Denoiser(1, 10, base=8, multi_head=True).state_dict(), tmp_path / "unet.pt")
    mine = resolve("quick", den_width=8, denoiser_weights=str(tmp_path / "unet.pt"))
    assert recipe(mine, data, "dc").spec()["denoiser"]["weights"]
    beside = recipe(mine, data, "dc", multi_head=False).spec()["denoiser"]   # the book trains a single-head one
    assert beside["multi_head"] is False and "weights" not in beside


def test_a_cached_evaluation_of_a_fresh_noise_model_does_not_depend_on_earlier_calls(tiny, tmp_path):
    from robgen_lib.core.cached import cached_call, call_key
    from robgen_lib.core.fit import TrainedModel
    from robgen_lib.core.store import ArtifactStore
    from robgen_lib.methods.smoothing import SoftSmoothed

    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    fresh = TrainedModel(DiffusionClassifier(tiny, 3, noise="fresh"), {"recipe": "dc", "noise": "fresh"})
    fixed = TrainedModel(DiffusionClassifier(tiny, 3), {"recipe": "dc", "noise": "fixed"})
    first = cached_call(ArtifactStore(str(tmp_path / "a")), predict, fresh, x)
    for _ in range(3):
        predict(fresh.model, x)                                                 # other calls in between
    again = cached_call(ArtifactStore(str(tmp_path / "b")), predict, fresh, x)  # computed anew, not read
    assert torch.equal(first, again)
    other = cached_call(ArtifactStore(str(tmp_path / "b")), predict, fresh, x[:5])
    assert not torch.allclose(other, first[:5])                                 # another call, other draws
    assert call_key(predict, fresh, x)["draws"] == "from the key"
    assert "draws" not in call_key(predict, fixed, x)                           # a deterministic model: key as before
    smooth = TrainedModel(SoftSmoothed(torch.nn.Flatten(), 0.5, n=2), {"recipe": "soft_smoothed"})
    assert call_key(predict, smooth, x)["draws"] == "from the key"
    before = predict(fixed.model, x)
    cached_call(ArtifactStore(str(tmp_path / "c")), predict, fresh, x)
    assert torch.equal(predict(fixed.model, x), before)                         # fixed noise untouched


@versioned(1)
def predict(model, x):
    with torch.no_grad():
        return model(x)
