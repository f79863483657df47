import pytest
import torch
import torch.nn.functional as F

from robgen_lib.core.attacks import predict_logits
from robgen_lib.core.data import Split
from robgen_lib.core.energy import marginal_energy
from robgen_lib.core.errors import ConfigError
from robgen_lib.methods.sampling import fit_class_gaussians, generate, sample_seeds, sgld


def test_gaussian_seeds_reproduce_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor([0.3, 0.5, 0.6, 0.4], dtype=torch.float64)
    a = torch.tensor([[0.05, 0.0, 0.0, 0.0], [0.03, 0.04, 0.0, 0.0], [0.0, 0.02, 0.05, 0.0], [0.01, 0.0, 0.0, 0.03]],
                     dtype=torch.float64)
    cov = a @ a.T
    x = (mean + torch.randn(4000, 4, generator=g, dtype=torch.float64) @ a.T).float()
    split = Split(torch.cat([x, 1 - x]).view(-1, 1, 2, 2), torch.cat([torch.zeros(4000), torch.ones(4000)]).long())
    gauss = fit_class_gaussians(split, 2)
    seeds = sample_seeds(gauss, torch.zeros(20000, dtype=torch.long), torch.Generator().manual_seed(1))
    flat = seeds.flatten(1).double()
    assert seeds.shape == (20000, 1, 2, 2) and seeds.min() >= 0 and seeds.max() <= 1
    assert torch.allclose(flat.mean(0), mean, atol=3e-3)
    assert torch.allclose(torch.cov(flat.T), cov + 1e-4 * torch.eye(4, dtype=torch.float64), atol=4e-4)
    other = sample_seeds(gauss, torch.ones(20000, dtype=torch.long), torch.Generator().manual_seed(1))
    assert torch.allclose(other.flatten(1).double().mean(0), 1 - mean, atol=3e-3)


def test_class_with_one_image_is_refused():
    split = Split(torch.rand(3, 1, 2, 2), torch.tensor([0, 0, 1]))
    with pytest.raises(ConfigError, match="class 1"):
        fit_class_gaussians(split, 2)


def test_generation_decreases_ce_toward_target(trained, digits):
    g = fit_class_gaussians(digits.train, 10)
    targets = torch.arange(10).repeat(5)
    seeds = sample_seeds(g, targets, torch.Generator().manual_seed(0))
    out = generate(trained.model, seeds, targets, eps=2.0, step_size=0.2, steps=20)
    before = F.cross_entropy(predict_logits(trained.model, seeds), targets)
    after = F.cross_entropy(predict_logits(trained.model, out), targets)
    assert after < before
    assert ((out - seeds).flatten(1).norm(dim=1) <= 2.0 + 1e-4).all()


def test_sgld_with_zero_step_and_noise_is_identity(trained, digits):
    x = digits.test.x[:16]
    assert torch.equal(sgld(trained.model, x, steps=5, step_size=0.0, noise=0.0), x)


def test_sgld_descends_the_energy(trained, digits):
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = sgld(trained.model, x, steps=20, step_size=0.01, noise=0.0)
    e = lambda t: marginal_energy(predict_logits(trained.model, t)).mean()
    assert e(out) < e(x)
    y = torch.zeros(64, dtype=torch.long)
    out_y = sgld(trained.model, x, steps=20, step_size=0.01, noise=0.0, y=y)
    assert (predict_logits(trained.model, out_y)[:, 0] > predict_logits(trained.model, x)[:, 0]).float().mean() > 0.9


def test_sgld_refuses_bad_settings(trained, digits):
    with pytest.raises(ConfigError):
        sgld(trained.model, digits.test.x[:2], steps=1, step_size=-1.0, noise=0.0)


def test_noise_training_objective(digits):
    from robgen_lib.core.fit import NoiseTraining, Optimiser, fit
    from robgen_lib.core.models import build_model

    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
    hist = fit(model, digits.train.head(128), NoiseTraining(0.25), epochs=1, batch_size=64,
               optimiser=Optimiser("sgd", 0.05), progress=False)
    assert hist["loss"][0] > 0 and NoiseTraining(0.25).spec() == {"name": "noise", "sigma": 0.25}


def test_batched_generation_and_sgld_match_one_batch(trained, digits):
    from robgen_lib.methods.sampling import sgld_samples

    g = fit_class_gaussians(digits.train, 10)
    targets = torch.arange(10).repeat(3)
    seeds = sample_seeds(g, targets, torch.Generator().manual_seed(1))
    one = generate(trained.model, seeds, targets, eps=2.0, step_size=0.2, steps=5, batch_size=len(seeds))
    many = generate(trained.model, seeds, targets, eps=2.0, step_size=0.2, steps=5, batch_size=7)
    assert (one - many).abs().max() < 1e-2   # batch size changes only float rounding (ReLU/max-pool ties)
    still = sgld_samples(trained.model, seeds, steps=4, step_size=0.0, noise=0.0, y=targets, batch_size=7)
    assert torch.equal(still, seeds)
    a = sgld_samples(trained.model, seeds, steps=3, step_size=0.01, noise=0.01, seed=5, batch_size=7)
    b = sgld_samples(trained.model, seeds, steps=3, step_size=0.01, noise=0.01, seed=5, batch_size=7)
    assert torch.equal(a, b) and not torch.equal(a, seeds)
