import pytest
import torch

torchattacks = pytest.importorskip("torchattacks")

from robgen_lib.methods.independent import (  # noqa: E402
    independent_correct,
    independent_robust_accuracy,
    is_stochastic,
    make_attack,
    networks_of,
    prediction_cost,
)
from robgen_lib.core.data import Split  # noqa: E402
from robgen_lib.core.errors import ConfigError  # noqa: E402
from robgen_lib.methods.smoothing import SoftSmoothed  # noqa: E402


@pytest.mark.parametrize("norm, eps, loss", [("linf", 0.1, "ce"), ("l2", 0.5, "dlr")])
def test_wrapper_equals_calling_torchattacks_directly(trained, digits, norm, eps, loss):
    model = trained.model.eval()
    x, y = digits.test.x[:48], digits.test.y[:48]
    direct = torchattacks.APGD(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, steps=10, n_restarts=1,
                               seed=0, loss=loss)
    with torch.no_grad():
        expected = (model(direct(x, y)).argmax(1) == y).float().mean().item()
    ours = independent_robust_accuracy(model, Split(x, y), attacks=(f"apgd-{loss}",), norm=norm, eps=eps, steps=10,
                                       batch_size=64, progress=False)
    assert ours["robust_accuracy"] == pytest.approx(expected)
    assert ours["robust_accuracy"] < ours["clean_accuracy"]


def test_eot_only_for_stochastic_models(trained):
    det = trained.model
    sto = SoftSmoothed(trained.model, 0.25, n=4)
    assert not is_stochastic(det) and is_stochastic(sto)
    assert make_attack("apgd-ce", det, norm="linf", eps=0.1, eot=8).eot_iter == 1
    assert make_attack("apgd-ce", sto, norm="linf", eps=0.1, eot=8).eot_iter == 8

    calls = {"n": 0}
    hook = trained.model.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    try:
        x = torch.rand(4, 1, 8, 8)
        with torch.no_grad():
            y = trained.model(x).argmax(1)                    # the attack only works on correctly classified images
        calls["n"] = 0
        make_attack("apgd-ce", sto, norm="linf", eps=0.1, steps=3, eot=5)(x, y)
        with_eot = calls["n"]
        calls["n"] = 0
        make_attack("apgd-ce", sto, norm="linf", eps=0.1, steps=3, eot=1)(x, y)
        assert with_eot > 3 * calls["n"]                      # five gradient samples per step instead of one
    finally:
        hook.remove()


def test_attacks_run_in_sequence_on_survivors_only(trained, digits):
    x, y = digits.test.x[:32], digits.test.y[:32]
    out = independent_correct(trained.model, x, y, attacks=("apgd-ce", "apgd-dlr", "square"), norm="linf", eps=0.1,
                              steps=5, queries=20)
    assert list(out) == ["clean", "apgd-ce", "apgd-dlr", "square"]
    prev = out["clean"]
    for name in ("apgd-ce", "apgd-dlr", "square"):
        assert not (out[name] & ~prev).any()                  # an image lost once stays lost
        prev = out[name]


def test_bad_independent_attack_parameters(trained):
    with pytest.raises(ConfigError, match="allowed"):
        make_attack("fgsm", trained.model, norm="linf", eps=0.1)
    with pytest.raises(ConfigError, match="norm"):
        make_attack("apgd-ce", trained.model, norm="l1", eps=0.1)
    with pytest.raises(ConfigError, match="eps > 0"):
        make_attack("square", trained.model, norm="l2", eps=0.0)


def test_prediction_cost_counts_network_passes(trained):
    x = torch.rand(6, 1, 8, 8)
    assert prediction_cost(trained.model, x)["evaluations"] == 1
    smoothed = SoftSmoothed(trained.model, 0.25, n=4)
    assert networks_of(smoothed) == [trained.model]
    assert prediction_cost(smoothed, x)["evaluations"] == 4   # one pass per noise draw


def test_square_runs_on_channels_last_colour_images():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3)).eval()
    x = torch.rand(6, 8, 8, 3).permute(0, 3, 1, 2)           # a view, as images decoded as HWC arrays are
    with torch.no_grad():
        y = model(x).argmax(1)
    for norm in ("l2", "linf"):
        out = independent_correct(model, x, y, attacks=("square",), norm=norm, eps=0.5, queries=5)
        assert out["clean"].all() and len(out["square"]) == 6


def test_each_wrapper_reports_the_networks_a_prediction_runs(trained):
    from robgen_lib.methods.diffusion import RDC, Denoiser, DiffusionClassifier
    from robgen_lib.methods.generative import ABS, ClassVAE, FeatureSimilarity
    from robgen_lib.methods.smoothing import denoise_then_classify

    den = Denoiser(1, 10, 8, multi_head=True)
    dc = DiffusionClassifier(den, 2)
    assert networks_of(dc) == networks_of(RDC(dc)) == [den]
    vaes = [ClassVAE((1, 8, 8), latent=2, width=8) for _ in range(3)]
    plain, featured = ABS(vaes), ABS(vaes, embed=FeatureSimilarity(trained.model))
    assert networks_of(plain) == [plain.decoders]              # the K decoders, run as one batched network
    assert networks_of(featured) == [featured.decoders, trained.model]
    smoothed_dtc = SoftSmoothed(denoise_then_classify(den, trained.model, 0.25), 0.25, n=2)
    assert networks_of(smoothed_dtc) == [den, trained.model]
    assert networks_of(trained.model) == [trained.model]
