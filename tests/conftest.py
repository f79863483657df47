import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def digits():
    from robgen_lib.core.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def trained(digits, tmp_path_factory):
    """A small CNN trained briefly on digits (its own store, so tests never touch the user's cache)."""
    from robgen_lib.core.fit import Standard, obtain
    from robgen_lib.core.store import ArtifactStore

    torch.manual_seed(0)
    store = ArtifactStore(str(tmp_path_factory.mktemp("store")))
    return obtain(small_cnn(Standard(), epochs=15), digits, store=store, progress=False)


def small_cnn(objective, *, epochs: int, lr: float = 0.05, batch_size: int = 64, seed: int = 0):
    """The recipe of a small CNN on the 8x8 digits, as the tests train it."""
    from robgen_lib.core.fit import ClassifierRecipe, Optimiser

    return ClassifierRecipe("small_cnn", objective=objective, epochs=epochs, batch_size=batch_size,
                            optimiser=Optimiser("sgd", lr, weight_decay=5e-4), seed=seed)


@pytest.fixture
def store(tmp_path):
    from robgen_lib.core.store import ArtifactStore

    return ArtifactStore(str(tmp_path / "cache"))
