import pytest
import torch

from robgen_lib.core.attacks import L2Rule, LinfRule, attack, attack_path, pgd, predict_logits
from robgen_lib.core.errors import ConfigError
from robgen_lib.core.versions import versioned


def test_linf_pgd_stays_in_ball_and_box(trained, digits):
    x, y = digits.test.x[:64], digits.test.y[:64]
    adv = pgd(trained.model, x, y, eps=0.1, step_size=0.03, steps=10)
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1


def test_l2_pgd_stays_in_ball_and_box(trained, digits):
    x, y = digits.test.x[:64], digits.test.y[:64]
    adv = pgd(trained.model, x, y, eps=0.5, step_size=0.1, steps=10, norm="l2")
    assert (adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1


def test_l2_projection():
    rule = L2Rule(1.0)
    x = torch.full((2, 1, 2, 2), 0.5)
    far = x + torch.tensor([0.3, 0.4, 0.0, 0.0]).view(1, 1, 2, 2) * torch.tensor([10.0, 1.0]).view(2, 1, 1, 1)
    out = rule.project(far.clamp(-10, 10), x)
    # First: ‖δ‖ = 5 is scaled to 1 before the box clamp; second: ‖δ‖ = 0.5 is kept.
    assert torch.allclose(out[0].flatten(), torch.tensor([0.5 + 0.6, 0.5 + 0.8, 0.5, 0.5]).clamp(0, 1))
    assert torch.allclose(out[1], far[1])


def test_linf_projection():
    rule = LinfRule(0.1)
    x = torch.full((1, 1, 1, 3), 0.95)
    out = rule.project(torch.tensor([0.5, 1.2, 0.97]).view(1, 1, 1, 3), x)
    assert torch.allclose(out.flatten(), torch.tensor([0.85, 1.0, 0.97]))


def test_pgd_drives_accuracy_down(trained, digits):
    x, y = digits.test.x, digits.test.y
    clean = (predict_logits(trained.model, x).argmax(1) == y).float().mean()
    adv = attack(trained.model, x, y, eps=0.3, step_size=0.05, steps=20)
    robust = (predict_logits(trained.model, adv).argmax(1) == y).float().mean()
    assert clean > 0.9
    assert robust < 0.1


def test_targeted_pgd_reaches_target(trained, digits):
    x, y = digits.test.x[:50], digits.test.y[:50]
    target = (y + 1) % 10
    adv = pgd(trained.model, x, target, eps=0.5, step_size=0.05, steps=40, targeted=True)
    hit = (predict_logits(trained.model, adv).argmax(1) == target).float().mean()
    assert hit > 0.9


def test_attack_path_records_each_step(trained, digits):
    x, y = digits.test.x[:40], digits.test.y[:40]
    path = attack_path(trained.model, x, y, [0, 3, 5], eps=0.2, step_size=0.05, batch_size=16)
    assert sorted(path) == [0, 3, 5] and all(v.shape == (40, 10) for v in path.values())
    # The last record equals a direct 5-step attack with the same random start.
    direct = attack(trained.model, x, y, eps=0.2, step_size=0.05, steps=5, batch_size=16)
    assert torch.allclose(path[5], predict_logits(trained.model, direct), atol=1e-5)


def test_attack_restores_training_mode(trained, digits):
    trained.model.train()
    pgd(trained.model, digits.test.x[:4], digits.test.y[:4], eps=0.1, step_size=0.05, steps=1)
    assert trained.model.training
    trained.model.eval()


@pytest.mark.parametrize("kw", [dict(eps=-0.1), dict(eps=float("nan")), dict(eps=2.0), dict(steps=-1),
                                dict(step_size=-1.0), dict(norm="l3")])
def test_bad_attack_parameters_are_refused(trained, digits, kw):
    args = {**dict(eps=0.1, step_size=0.01, steps=2), **kw}
    with pytest.raises(ConfigError):
        pgd(trained.model, digits.test.x[:2], digits.test.y[:2], **args)


def test_he_pgd_with_lambda_one_is_ascent_of_minus_true_logit(trained, digits):
    from robgen_lib.methods.he_pgd import he_pgd_loss

    x, y = digits.test.x[:64], digits.test.y[:64]
    minus_true_logit = lambda logits, yy: -logits.gather(1, yy.view(-1, 1)).squeeze(1)
    a = pgd(trained.model, x, y, eps=0.2, step_size=0.03, steps=10, loss=he_pgd_loss(1.0),
            generator=torch.Generator().manual_seed(0))
    b = pgd(trained.model, x, y, eps=0.2, step_size=0.03, steps=10, loss=minus_true_logit,
            generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-6)


def test_he_pgd_raises_energy_above_pgd(trained, digits):
    from robgen_lib.methods.he_pgd import he_pgd_loss
    from robgen_lib.core.energy import marginal_energy

    x, y = digits.test.x, digits.test.y
    plain = attack(trained.model, x, y, eps=0.3, step_size=0.04, steps=20)
    high = attack(trained.model, x, y, eps=0.3, step_size=0.04, steps=20, loss=he_pgd_loss(1.5))
    e_plain = marginal_energy(predict_logits(trained.model, plain)).mean()
    e_high = marginal_energy(predict_logits(trained.model, high)).mean()
    assert e_high > e_plain + 1.0
    assert (high - x).abs().max() <= 0.3 + 1e-6 and high.min() >= 0 and high.max() <= 1
    assert (predict_logits(trained.model, high).argmax(1) == y).float().mean() < 0.2  # it still fools


@pytest.mark.parametrize("lam", [-0.5, float("nan"), float("inf"), "abc"])
def test_bad_lambda_is_refused(lam):
    from robgen_lib.methods.he_pgd import he_pgd_loss

    with pytest.raises(ConfigError, match="lam"):
        he_pgd_loss(lam)


def test_energy_matching_moves_energy_to_target_and_fools(trained, digits):
    from robgen_lib.methods.he_pgd import energy_matching_loss
    from robgen_lib.core.energy import marginal_energy

    x, y = digits.test.x, digits.test.y
    target = float(marginal_energy(predict_logits(trained.model, digits.heldout.x)).median())
    adv = attack(trained.model, x, y, eps=0.3, step_size=0.04, steps=40, loss=energy_matching_loss(target))
    logits = predict_logits(trained.model, adv)
    plain = predict_logits(trained.model, attack(trained.model, x, y, eps=0.3, step_size=0.04, steps=40))
    assert (logits.argmax(1) == y).float().mean() < 0.1
    gap = (marginal_energy(logits) - target).abs().mean()
    assert gap < (marginal_energy(plain) - target).abs().mean()


class _Linear3(torch.nn.Module):
    """Three linear classes on 16 pixels: the smallest ℓ2 distance to the boundary is known."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.lin(x.flatten(1))


def _true_l2_boundary(model, x, y):
    w, b = model.lin.weight.detach(), model.lin.bias.detach()
    f = x.flatten(1) @ w.T + b
    out = []
    for i in range(len(x)):
        out.append(min(float((f[i, y[i]] - f[i, k]) / (w[y[i]] - w[k]).norm()) for k in range(3) if k != y[i]))
    return torch.tensor(out)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_boundary_attack_only_returns_adversarials_and_the_walk_only_shortens(norm):
    from robgen_lib.core.attacks import boundary_attack

    model = _Linear3()
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    y[:3] = (y[:3] + 1) % 3                                   # three images the model already gets wrong
    pool = torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    line, d_line = boundary_attack(model, x, y, pool, norm=norm, iters=0)
    adv, d = boundary_attack(model, x, y, pool, norm=norm, iters=200, generator=torch.Generator().manual_seed(0))
    assert (d[:3] == 0).all()
    for a, dist in ((line, d_line), (adv, d)):
        assert (model(a[3:]).argmax(1) != y[3:]).all()        # every returned point is adversarial
        measured = (a - x).flatten(1).abs().amax(1) if norm == "linf" else (a - x).flatten(1).norm(dim=1)
        assert torch.allclose(measured, dist, atol=1e-5)
        assert ((a >= 0) & (a <= 1)).all()
    assert (d <= d_line + 1e-6).all()                          # accepted steps only ever come closer
    assert d[3:].mean() < 0.9 * d_line[3:].mean()


def test_boundary_attack_l2_distance_approaches_the_true_minimum():
    from robgen_lib.core.attacks import boundary_attack

    model = _Linear3()
    x = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)
    pool = torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    _, d = boundary_attack(model, x, y, pool, norm="l2", iters=300, generator=torch.Generator().manual_seed(0))
    true = _true_l2_boundary(model, x, y)
    assert (d >= true - 1e-4).all()                            # nothing beats the optimum
    assert float((d / true).median()) < 1.3


def test_boundary_attack_refuses_bad_parameters():
    from robgen_lib.core.attacks import boundary_attack

    model = _Linear3()
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="norm"):
        boundary_attack(model, x, model(x).argmax(1), x, norm="l1")
    with pytest.raises(ConfigError, match="candidates"):
        boundary_attack(model, x, model(x).argmax(1), x, candidates=0)


def test_decision_robust_accuracy_counts_images_beyond_epsilon():
    from robgen_lib.core.data import Split
    from robgen_lib.methods.evaluate import decision_distances, robust_at

    model = _Linear3()
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    y = model(x).argmax(1)
    pool = torch.rand(200, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    res = decision_distances(model, Split(x, y), pool, norm="l2", iters=20, progress=False)
    assert res["clean"].all()
    for eps in (0.0, float(res["dist"].median()), 1e9):
        assert torch.equal(robust_at(res, eps), res["dist"] > eps)
    assert not robust_at(res, 1e9).any() and robust_at(res, 0.0).all()


# ------------------------------------------------------------------ best iterate and EOT


def _pgd_last_iterate(model, x, y, *, eps, step_size, steps, norm="linf", loss=None, targeted=False, generator=None):
    """PGD written out plainly: random start, ``steps`` steps, the last iterate returned."""
    from robgen_lib.core.attacks import RULES, ce_loss

    loss = ce_loss if loss is None else loss
    rule = RULES[norm](eps)
    x_adv = rule.project(rule.random_start(x, generator), x)
    sign = -1.0 if targeted else 1.0
    model.eval()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(model(x_adv), y).sum() * sign, x_adv)
        with torch.no_grad():
            x_adv = rule.project(x_adv + rule.step(grad, step_size), x)
    return x_adv.detach()


def _tiny_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(256, 10))


def _images(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("kw", [dict(norm="linf", eps=0.1, step_size=0.03), dict(norm="l2", eps=0.5, step_size=0.1),
                                dict(norm="linf", eps=0.2, step_size=0.05, targeted=True)])
def test_pgd_without_best_is_the_plain_last_iterate(kw):
    model, (x, y) = _tiny_cnn(), _images(8)
    ref = _pgd_last_iterate(model, x, y, steps=5, generator=torch.Generator().manual_seed(7), **kw)
    for extra in ({}, dict(best=False, eot=1)):
        out = pgd(model, x, y, steps=5, generator=torch.Generator().manual_seed(7), **kw, **extra)
        assert torch.equal(out, ref)


class _Oscillating(torch.nn.Module):
    """Two classes; z_1 = a·sin(ω·mean(x)) − b, z_0 = 0: the loss along a PGD path rises and
    falls, so an iterate can be misclassified and the next one correct again."""

    def __init__(self, freq: float = 60.0, amp: float = 3.0, bias: float = 1.5):
        super().__init__()
        self.freq, self.amp, self.bias = freq, amp, bias

    def forward(self, x):
        z1 = self.amp * torch.sin(self.freq * x.flatten(1).mean(1)) - self.bias
        return torch.stack([torch.zeros_like(z1), z1], 1)


def test_best_iterate_never_leaves_more_images_correct_than_the_last():
    from robgen_lib.core.attacks import robust_correct

    model = _Oscillating()
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    fewer = 0
    for seed in range(5):
        kw = dict(eps=0.1, step_size=0.03, steps=10)
        best = robust_correct(model, x, y, generator=torch.Generator().manual_seed(seed), **kw)   # the default
        last = robust_correct(model, x, y, generator=torch.Generator().manual_seed(seed), best_iterate=False, **kw)
        assert not (best & ~last).any()                    # best-correct ⇒ last-correct, per image
        fewer += int(best.sum() < last.sum())
    assert fewer >= 1


def test_best_iterate_returns_a_fooling_iterate_inside_the_ball():
    model = _Oscillating()
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    path = []
    kw = dict(eps=0.1, step_size=0.03, steps=10)
    last = pgd(model, x, y, generator=torch.Generator().manual_seed(1), callback=lambda k, xa: path.append(xa), **kw)
    best = pgd(model, x, y, generator=torch.Generator().manual_seed(1), best=True, **kw)
    assert (best - x).abs().max() <= 0.1 + 1e-6 and best.min() >= 0 and best.max() <= 1
    fooled_somewhere = torch.stack([model(p).argmax(1) != y for p in path]).any(0)
    assert torch.equal(model(best).argmax(1) != y, fooled_somewhere)
    first = torch.stack([model(p).argmax(1) != y for p in path]).float().argmax(0)   # the first fooling iterate
    for i in fooled_somewhere.nonzero().squeeze(1).tolist():
        assert torch.equal(best[i], path[first[i]][i])
    assert torch.equal(last, path[-1])
    # targeted: the first iterate that reaches the target, here the other class
    hit = pgd(model, x, 1 - y, targeted=True, generator=torch.Generator().manual_seed(1), best=True, **kw)
    plain = pgd(model, x, 1 - y, targeted=True, generator=torch.Generator().manual_seed(1), **kw)
    reached, reached_last = model(hit).argmax(1) == 1 - y, model(plain).argmax(1) == 1 - y
    assert not (reached_last & ~reached).any() and reached.sum() > reached_last.sum()


def test_best_iterate_without_a_fooling_iterate_keeps_the_highest_loss():
    from robgen_lib.core.attacks import ce_loss

    model = _Oscillating(bias=10.0)                         # class 1 can never win
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.zeros(8, dtype=torch.long)
    path = []
    kw = dict(eps=0.1, step_size=0.03, steps=6)
    pgd(model, x, y, generator=torch.Generator().manual_seed(3), callback=lambda k, xa: path.append(xa), **kw)
    best = pgd(model, x, y, generator=torch.Generator().manual_seed(3), best=True, **kw)
    losses = torch.stack([ce_loss(model(p), y) for p in path])        # (steps + 1, N), k = 0 included
    assert torch.allclose(ce_loss(model(best), y), losses.max(0).values)


class _Counting(torch.nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body, self.calls = body, 0

    def forward(self, x):
        self.calls += 1
        return self.body(x)


@pytest.mark.parametrize("best, eot", [(False, 1), (True, 1), (False, 3), (True, 3)])
def test_pgd_forward_passes(best, eot):
    model = _Counting(_Oscillating())
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    pgd(model, x, model.body(x).argmax(1), eps=0.1, step_size=0.03, steps=5, best=best, eot=eot)
    assert model.calls == 5 * eot + (eot if best else 0)      # best: one more evaluation, of the last iterate


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eot_on_a_deterministic_model_changes_nothing(norm):
    model, (x, y) = _tiny_cnn(), _images(8)
    kw = dict(eps=0.1 if norm == "linf" else 0.5, step_size=0.03, steps=5, norm=norm)
    one = pgd(model, x, y, generator=torch.Generator().manual_seed(4), **kw)
    four = pgd(model, x, y, generator=torch.Generator().manual_seed(4), eot=4, **kw)
    assert torch.equal(one, four) if norm == "linf" else torch.allclose(one, four, atol=1e-5)


def test_eot_averages_the_gradients_of_a_stochastic_model():
    class Noisy(torch.nn.Module):
        """z = (w + u)·x with u ~ N(0, 1) per call, so E[∇ₓ z_1] = w."""

        def __init__(self):
            super().__init__()
            self.gen = torch.Generator().manual_seed(0)

        def forward(self, x):
            u = torch.randn(2, x[0].numel(), generator=self.gen)
            w = torch.stack([torch.zeros(x[0].numel()), torch.ones(x[0].numel())])
            return x.flatten(1) @ (w + 2.0 * u).T

    x = torch.full((1, 1, 8, 8), 0.5)
    y = torch.zeros(1, dtype=torch.long)
    agree = []
    for eot in (1, 200):
        adv = pgd(Noisy(), x, y, eps=0.1, step_size=0.1, steps=1, random_start=False, eot=eot)
        agree.append(float(((adv - x).sign() == 1).float().mean()))   # the true ascent direction is +1 everywhere
    assert agree[1] > 0.95 and agree[1] > agree[0]


@pytest.mark.parametrize("eot", [0, -1, 1.5, True, "2"])
def test_bad_eot_is_refused(eot):
    from robgen_lib.core.attacks import robust_correct
    from robgen_lib.core.data import Split
    from robgen_lib.methods.evaluate import robust_accuracy

    model = _Oscillating()
    x = torch.rand(2, 1, 8, 8)
    y = model(x).argmax(1)
    with pytest.raises(ConfigError, match="eot"):
        pgd(model, x, y, eps=0.1, step_size=0.03, steps=1, eot=eot)
    with pytest.raises(ConfigError, match="eot"):
        robust_correct(model, x, 1 - y, eps=0.1, step_size=0.03, steps=1, eot=eot)   # all wrong: no PGD runs
    with pytest.raises(ConfigError, match="eot"):
        robust_accuracy(model, Split(x, y), norm="linf", eps=0.1, steps=1, losses=("ce",), eot=eot, progress=False)


def test_robust_accuracy_keys_name_best_iterate_and_eot():
    from robgen_lib.core.cached import call_key
    from robgen_lib.core.data import Split
    from robgen_lib.methods.evaluate import robust_accuracy

    split = Split(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))
    args = call_key(robust_accuracy, _Linear3Spec(), split, norm="linf", eps=0.1, steps=2)["arguments"]
    assert args["best_iterate"] is True and args["eot"] == 1
    model = _Oscillating()
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    kw = dict(norm="linf", eps=0.1, steps=10, step_size=0.03, losses=("ce",), seed=1, batch_size=20, progress=False)
    best = robust_accuracy(model, Split(x, y), **kw)
    last = robust_accuracy(model, Split(x, y), best_iterate=False, **kw)
    assert not (best["robust"] & ~last["robust"]).any()
    assert best["robust_accuracy"] < last["robust_accuracy"]
    assert robust_accuracy(model, Split(x, y), eot=2, **kw)["robust_accuracy"] == best["robust_accuracy"]


@versioned(1)
class _Linear3Spec(_Linear3):
    def spec(self) -> dict:
        return {"model": "linear3"}
