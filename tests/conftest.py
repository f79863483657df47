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
    from robgen_lib.core.fit import Standard, trained_classifier
    from robgen_lib.core.store import ArtifactStore

    torch.manual_seed(0)
    store = ArtifactStore(str(tmp_path_factory.mktemp("store")))
    return trained_classifier(digits, "small_cnn", Standard(), epochs=15, batch_size=64, lr=0.05, seed=0,
                              store=store, progress=False)


@pytest.fixture
def store(tmp_path):
    from robgen_lib.core.store import ArtifactStore

    return ArtifactStore(str(tmp_path / "cache"))
