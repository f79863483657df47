"""Chapter 3's analysis functions on small hand-made results."""
import pytest
import torch

from robgen_lib.book.analysis import jeat

SIGMAS = [0.0, 0.1, 0.3]


def scores(is_style, fid_style, agreement=0.5):
    return {"is_style": is_style, "fid_style": fid_style, "agreement": agreement}


def sweep_quality(std, rob, at):
    """Quality of the σ sweep (standard, noise σ = 0.1, noise σ = 0.3) and of adversarial training:
    ``std`` / ``rob``: (IS-style, FID-style) per σ under each scorer; ``at``: adversarial training's."""
    names = ["standard", "noise σ = 0.1", "noise σ = 0.3"]
    q = {n: {"standard scorer": scores(*std[i]), "robust scorer": scores(*rob[i])} for i, n in enumerate(names)}
    q["adversarially trained"] = {"standard scorer": scores(*at[0]), "robust scorer": scores(*at[1])}
    return q


def test_noise_names_and_shown_models():
    assert jeat.sweep_names(SIGMAS) == ["standard", "noise σ = 0.1", "noise σ = 0.3"]
    names = ["standard", "adversarially trained", "noise σ = 0.1", "noise σ = 0.3", "JEAT"]
    assert jeat.shown_models(names, SIGMAS) == ["standard", "noise σ = 0.3", "adversarially trained", "JEAT"]
    assert jeat.shown_models(["standard", "JEAT"], [0]) == ["standard", "JEAT"]   # no noise model: not shown


def test_noise_trend_needs_every_score_to_improve_with_sigma():
    better = [(1.0, 9.0), (2.0, 8.0), (3.0, 7.0)]            # IS-style up, FID-style down: both improve
    q = sweep_quality(better, better, [(5.0, 1.0), (5.0, 1.0)])
    t = jeat.noise_trend(q, SIGMAS)
    assert t["all_improve"] and t["rho"][("robust scorer", "fid_style")] == pytest.approx(-1.0)
    mixed = [(1.0, 7.0), (2.0, 8.0), (3.0, 9.0)]             # IS-style up, FID-style worse
    t = jeat.noise_trend(sweep_quality(better, mixed, [(5.0, 1.0), (5.0, 1.0)]), SIGMAS)
    assert not t["all_improve"]
    assert t["only_when"] == "judged by is-style (standard scorer), fid-style (standard scorer), is-style (robust scorer)"
    assert "fid-style (robust scorer) +1.00" in t["text"]


def test_noise_catch_up_uses_only_the_scores_adversarial_training_wins():
    sweep = [(1.0, 9.0), (2.0, 8.0), (3.0, 7.0)]
    # adversarial training: better IS-style under both scorers (2.5), worse FID-style (9.5) than the standard model
    q = sweep_quality(sweep, sweep, [(2.5, 9.5), (2.5, 9.5)])
    c = jeat.noise_catch_up(q, SIGMAS, train_eps=0.2)
    assert c["informative"] == [("standard scorer", "is_style"), ("robust scorer", "is_style")]
    assert c["match"] == {("standard scorer", "is_style"): 0.3, ("robust scorer", "is_style"): 0.3}
    assert c["slower"]                                       # 0.3 > ε = 0.2
    assert not jeat.noise_catch_up(q, SIGMAS, train_eps=0.3)["slower"]
    never = sweep_quality(sweep, sweep, [(4.0, 9.5), (4.0, 9.5)])   # no σ reaches IS-style 4: counts as slower
    assert jeat.noise_catch_up(never, SIGMAS, train_eps=1.0)["slower"]
    worse = jeat.noise_catch_up(sweep_quality(sweep, sweep, [(0.5, 9.5), (0.5, 9.5)]), SIGMAS, train_eps=0.2)
    assert not worse["slower"] and worse["text"].startswith("untestable")


def test_flatness_summary_ranks_the_image_in_its_landscape():
    peak = torch.zeros(1, 3, 3)
    peak[0, 1, 1] = 5.0                                      # the image is the highest point
    valley = -peak                                           # the image is the lowest point
    flat = {"a": {"grad_norm": 1.0, "ball_range": 2.0}, "b": {"grad_norm": 0.5, "ball_range": 1.0}}
    out = jeat.flatness_summary(flat, {"a": -3.0, "b": -1.0}, {"a": {"energy": peak}, "b": {"energy": valley}})
    assert out["a"] == {"grad_norm": 1.0, "ball_range": 2.0, "energy": -3.0, "rank": pytest.approx(8 / 9)}
    assert out["b"]["rank"] == 0.0


def test_first_of_each_class_and_accuracies():
    assert jeat.first_of_each_class(3, 4, 2).tolist() == [0, 1, 4, 5, 8, 9]
    y = torch.tensor([0, 1, 1, 0])
    clean = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])      # all right
    attacked = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])   # one of four right
    acc = jeat.clean_and_attacked_accuracy({"m": (clean, attacked)}, y)
    assert acc == {"m": {"clean": 1.0, "attacked": 0.25}}


def test_real_scores_say_why_they_are_missing():
    scores_, why = jeat.real_scores({}, torch.zeros(2, 1, 8, 8), ["JEAT"], enabled=False)
    assert scores_ == {} and "fidelity=False" in why
