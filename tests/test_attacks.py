import pytest
import torch

from robgen_lib.core.attacks import L2Rule, LinfRule, attack, attack_path, pgd, predict_logits
from robgen_lib.core.errors import ConfigError


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
    from robgen_lib.core.attacks import he_pgd_loss

    x, y = digits.test.x[:64], digits.test.y[:64]
    minus_true_logit = lambda logits, yy: -logits.gather(1, yy.view(-1, 1)).squeeze(1)
    a = pgd(trained.model, x, y, eps=0.2, step_size=0.03, steps=10, loss=he_pgd_loss(1.0),
            generator=torch.Generator().manual_seed(0))
    b = pgd(trained.model, x, y, eps=0.2, step_size=0.03, steps=10, loss=minus_true_logit,
            generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-6)


def test_he_pgd_raises_energy_above_pgd(trained, digits):
    from robgen_lib.core.attacks import he_pgd_loss
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
    from robgen_lib.core.attacks import he_pgd_loss

    with pytest.raises(ConfigError, match="lam"):
        he_pgd_loss(lam)


def test_energy_matching_moves_energy_to_target_and_fools(trained, digits):
    from robgen_lib.core.attacks import energy_matching_loss
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
