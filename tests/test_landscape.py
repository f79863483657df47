import pytest
import torch
from torch import nn

from robgen_lib.core.data import Split
from robgen_lib.methods.landscape import energy_landscape, flatness


class Linear(nn.Module):
    """logits = W·flatten(x): E(x, y) = -w_y·x, so its gradient norm is ‖w_y‖ everywhere."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return x.flatten(1) @ self.w.T


def test_landscape_centre_is_the_image_energy_and_grid_is_linear_for_a_linear_model():
    torch.manual_seed(0)
    model = Linear(torch.randn(3, 4))
    x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
    out = energy_landscape(model, x, y, radius=1.0, n=5, seed=0)
    assert out["energy"].shape == (2, 5, 5)
    centre = -(x.flatten(1) * model.w[y]).sum(1)
    assert torch.allclose(out["energy"][:, 2, 2], centre.detach(), atol=1e-5)
    e = out["energy"][0]
    assert torch.allclose(e[0] + e[4], 2 * e[2], atol=1e-4)  # linear along d1


def test_flatness_of_a_linear_model():
    w = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    model = Linear(w)
    split = Split(torch.full((8, 1, 2, 2), 0.5), torch.tensor([0] * 4 + [1] * 4))
    out = flatness(model, split, eps=0.1, n_samples=64, seed=0)
    assert abs(out["grad_norm"] - (5.0 + 1.0) / 2) < 1e-5
    # The range of -w_y·x' over the ℓ∞ ball is at most 2·ε·‖w_y‖₁.
    assert 0 < out["ball_range"] <= 2 * 0.1 * (7.0 + 1.0) / 2 + 1e-6


def test_robust_training_flattens_the_energy(trained, digits, store):
    from conftest import small_cnn

    from robgen_lib.core.fit import PGDTraining, obtain

    robust = obtain(small_cnn(PGDTraining(0.15, 0.0375, 5), epochs=15), digits, store=store, progress=False)
    split = digits.test.head(100)
    assert flatness(robust.model, split, eps=0.15, seed=0)["grad_norm"] < \
        flatness(trained.model, split, eps=0.15, seed=0)["grad_norm"]


def test_tile_lays_images_out_row_major():
    from robgen_lib.book.plots import tile

    x = torch.stack([torch.full((1, 2, 2), v) for v in (0.0, 0.25, 0.5)])
    t = tile(x, cols=2, pad=1, fill=1.0)
    assert t.shape == (1, 5, 5)
    assert t[0, 0, 0] == 0.0 and t[0, 0, 3] == 0.25 and t[0, 3, 0] == 0.5 and t[0, 3, 3] == 1.0


def test_centre_rank_reads_where_the_image_sits():
    from robgen_lib.methods.landscape import centre_rank

    bowl = torch.tensor([[(i - 2) ** 2 + (j - 2) ** 2 for j in range(5)] for i in range(5)], dtype=torch.float32)
    assert centre_rank(bowl[None]) == 0.0            # the image at the bottom
    assert centre_rank(-bowl[None]) == pytest.approx(24 / 25)   # at the top
    with pytest.raises(ValueError, match="odd"):
        centre_rank(torch.zeros(1, 4, 4))
