import pytest
import torch

from robgen_lib.core.fit import Optimiser, obtain
from robgen_lib.methods.generative import ABS, ClassELBO, ClassVAEsRecipe, FeatureSimilarity, pixels


@pytest.fixture(scope="module")
def vaes(digits, tmp_path_factory):
    from robgen_lib.core.store import ArtifactStore

    store = ArtifactStore(str(tmp_path_factory.mktemp("abs")))
    recipe = ClassVAEsRecipe(8, 64, objective=ClassELBO(), epochs=30, batch_size=64,
                             optimiser=Optimiser("adam", 3e-3, schedule="constant"))
    return obtain(recipe, digits, store=store, progress=False)


def test_each_class_model_explains_its_own_class_best(vaes, digits):
    model = ABS(list(vaes.model), n_samples=32, steps=5)
    x, y = digits.test.x[:200], digits.test.y[:200]
    with torch.no_grad():
        s = model.scores(x)
    own = s.gather(1, y.view(-1, 1)).squeeze(1)
    others = s.scatter(1, y.view(-1, 1), float("inf")).min(1).values
    assert (own < others).float().mean() > 0.8          # = ABS accuracy on these images
    for k in range(10):                                 # per class, on average, its own model wins
        assert int(s[y == k].mean(0).argmin()) == k


def test_latent_search_never_raises_the_score_and_stays_in_its_ball(vaes, digits):
    x = digits.test.x[:64]
    plain = ABS(list(vaes.model), n_samples=16, steps=0, radius=2.0)
    searched = ABS(list(vaes.model), n_samples=16, steps=15, lr=0.1, radius=2.0)
    guided = ABS(list(vaes.model), n_samples=16, steps=15, lr=0.1, radius=2.0, encoder_init=True)
    (z0, s0), (z1, s1), (z2, s2) = plain.search(x), searched.search(x), guided.search(x)   # (K, B, L), (K, B)
    assert (s1 <= s0 + 1e-5).all()
    assert (s2 <= s0 + 1e-5).all()
    assert (s1 < s0 - 1e-3).float().mean() > 0.5           # the steps do improve most latents
    for z in (z0, z1, z2):
        assert z.shape == (10, 64, z0.shape[-1]) and (z.norm(dim=2) <= 2.0 + 1e-5).all()


def test_abs_logits_have_gradients_for_attacks(vaes, digits, trained):
    x = digits.test.x[:4].clone().requires_grad_(True)
    for embed in (pixels, FeatureSimilarity(trained.model)):
        model = ABS(list(vaes.model), n_samples=8, steps=2, embed=embed)
        (g,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
        assert g.abs().sum() > 0
    with pytest.raises(Exception, match="radius"):
        ABS(list(vaes.model), radius=0.0)


def test_reconstruction_study_tells_own_class_from_others_and_noise(vaes, digits):
    from robgen_lib.methods.generative import reconstruction_study

    model = ABS(list(vaes.model), n_samples=32, steps=5)
    x, y = digits.test.x[:100], digits.test.y[:100]
    out = model.explain(x[:3])
    assert out["recon"].shape == (3, 10, *digits.image_shape)
    res = reconstruction_study(model, x, y, n_noise=16)
    assert res["own"] < res["other"] < res["noise"]      # trained on digits: noise is the hardest to explain
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert res["accuracy"] == pytest.approx(acc)
    assert res["margin"] > 0


def test_knn_judge_labels_training_images_by_their_own_label(digits):
    from robgen_lib.methods.evaluate import knn_labels

    tr = digits.train
    assert torch.equal(knn_labels(tr.x[:50], tr.x, tr.y, k=1), tr.y[:50])


def test_latent_descent_stays_in_the_ball_and_breaks_abs_with_a_large_budget(vaes, digits):
    from robgen_lib.core.attacks import predict_logits
    from robgen_lib.core.errors import ConfigError
    from robgen_lib.methods.generative import latent_descent_attack
    model = ABS(list(vaes.model), n_samples=16, steps=2)
    x, y = digits.test.x[:16], digits.test.y[:16]
    small = latent_descent_attack(model, x, y, norm="l2", eps=0.5, steps=3)
    assert ((small - x).flatten(1).norm(dim=1) <= 0.5 + 1e-4).all() and small.min() >= 0 and small.max() <= 1
    big = latent_descent_attack(model, x, y, norm="linf", eps=1.0, steps=8, step=0.5)
    fooled = (predict_logits(model, big).argmax(1) != y).float().mean()
    assert fooled > 0.9                                      # with the whole image space it reaches the other class
    with pytest.raises(ConfigError):
        latent_descent_attack(model, x, y, norm="l3", eps=0.5)


def test_the_batched_search_scores_each_class_as_its_own_decoder_would():
    """Without Adam steps ABS's score is the best prior sample's d + β‖z‖², per class; the K
    decoders run as one batched network must give what each decoder gives alone."""
    from robgen_lib.core.parallel import batch_generator
    from robgen_lib.methods.generative import ABS, ClassVAE

    torch.manual_seed(0)
    vaes = [ClassVAE((1, 8, 8), latent=3, width=16) for _ in range(4)]
    model = ABS(vaes, n_samples=20, steps=0, beta=0.5, radius=2.0)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        got = model.scores(x)
        for k, v in enumerate(vaes):
            cand = model._project(torch.randn(20, 3, generator=batch_generator(model.seed, k)))
            d = ((torch.sigmoid(v.dec(cand)).unsqueeze(0) - x.flatten(1).unsqueeze(1)) ** 2).sum(2) \
                + 0.5 * cand.pow(2).sum(1)
            assert torch.allclose(got[:, k], d.min(1).values, atol=1e-5)


def test_abs_moves_to_a_device_like_any_model():
    from robgen_lib.methods.generative import ABS, ClassVAE

    model = ABS([ClassVAE((1, 8, 8), latent=2, width=8) for _ in range(3)], n_samples=4, steps=1)
    model.to("cpu").to(torch.float32)                       # what obtain() does with an assembled model
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)
