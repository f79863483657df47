"""The bad-input catalogue: every value or file a user can get wrong stops a chapter in its
first cell (``Chapter.from_parameters``, what the set-up cell runs) with one message that
names the fix — before anything is trained or cached (the cache holds no file afterwards)."""
import os
import pickle

import numpy as np
import pytest
import torch

from robgen_lib.book.chapter import Chapter
from robgen_lib.book.knobs import KNOBS
from robgen_lib.core.errors import ConfigError
from robgen_lib.methods.diffusion import Denoiser


def namespace(chapter: str, **values):
    """A chapter notebook's globals after its parameters cell (and papermill's values)."""
    ns = {name: None for name, k in KNOBS.items() if chapter in k.chapters}
    ns.update(profile="quick", device="auto", seed=0, **values)
    return ns


def files_under(folder) -> list[str]:
    return [os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("ROBGEN_CACHE", str(root))
    monkeypatch.setenv("ROBGEN_DATA", str(tmp_path / "data"))
    return root


def refused(chapter: str, match: str, cache, **values) -> str:
    with pytest.raises(ConfigError, match=match) as err:
        Chapter.from_parameters(chapter, namespace(chapter, **values))
    assert files_under(cache) == [], "nothing may be cached by a refused set-up"
    return str(err.value)


@pytest.mark.parametrize("chapter, values, match", [
    ("energy", dict(n_seed=3), r"unknown parameter n_seed; did you mean n_seeds\?"),
    ("energy", dict(lam=1.0), r"does not take parameter lam"),
    ("jeat", dict(fidelity="maybe"), r"fidelity must be true or false"),
    ("jeat", dict(fidelity="flase"), r"fidelity must be true or false"),
    ("energy", dict(n_train=100_000), r"n_train=100000 asks for more training images .*\(1079\)"),
    ("energy", dict(n_test=5000), r"n_test=5000 asks for more test images .*\(359\)"),
    ("energy", dict(n_eval=1000), r"n_eval=1000 asks for more images than the test split holds \(359\)"),
    ("rdc", dict(n_robust=400), r"pass n_robust <= 359"),
    ("abs", dict(n_certify=10_000), r"pass n_certify <= 359"),
    ("abs", dict(ood_dataset="cifar10"), r"cifar10 is not in .* download=False"),
    ("rdc", dict(denoiser_weights="/no/such/weights.pt"), r"denoiser_weights: no file"),
    ("energy", dict(eps=3.0), r"eps must be <= 1.0, got 3.0 \(budgets are in \[0,1\] pixel units\)"),
])
def test_a_bad_value_stops_the_first_cell(cache, chapter, values, match):
    refused(chapter, match, cache, **values)


def test_the_budget_hint_only_follows_budgets(cache):
    assert "pixel units" not in refused("he_pgd", r"lam must be <= 1000", cache, lam=5000)
    assert "pixel units" not in refused("abs", r"n_certify", cache, n_certify=10_000)


def test_booleans_are_strict_and_read_as_written():
    from robgen_lib.book.knobs import resolve

    assert resolve(fidelity="false").fidelity is False
    assert resolve(fidelity="No").fidelity is False and resolve(fidelity="1").fidelity is True
    assert resolve(fidelity=True).fidelity is True


def test_a_foreign_weights_file_gets_no_unsafe_advice(cache, tmp_path):
    path = tmp_path / "weights.pt"   # a pickle that is not tensors: torch.load(weights_only=True) refuses it
    path.write_bytes(pickle.dumps({"net": np.random.default_rng(0)}))
    message = refused("rdc", r"not a PyTorch file of tensors that loads safely", cache, denoiser_weights=str(path))
    assert "weights_only" not in message and "False" not in message
    path.write_text("not a model at all")
    assert "weights_only" not in refused("yardstick", r"loads safely", cache, denoiser_weights=str(path))


def test_weights_that_do_not_fit_name_the_width(cache, tmp_path):
    path = tmp_path / "wide.pt"
    torch.save(Denoiser(1, 10, 16, multi_head=True).state_dict(), path)
    refused("rdc", r"do not fit a multi-head Denoiser of width 32 .*set den_width", cache, denoiser_weights=str(path))
    refused("abs", r"not a state dict|do not fit", cache, denoiser_weights=str(tmp_path / "wide.pt"), den_width=8)


def test_fitting_weights_pass_the_first_cell(cache, tmp_path):
    path = tmp_path / "mine.pt"
    torch.save(Denoiser(1, 10, 32, multi_head=True).state_dict(), path)
    ch = Chapter.from_parameters("rdc", namespace("rdc", denoiser_weights=str(path)))
    assert ch.cfg.denoiser_weights == str(path)


def test_an_unwritable_cache_stops_the_first_cell(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("ROBGEN_CACHE", str(not_a_folder))
    with pytest.raises(ConfigError, match=rf"{not_a_folder}.*ROBGEN_CACHE") as err:
        Chapter.from_parameters("energy", namespace("energy"))
    assert "Traceback" not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_cache_stops_the_first_cell(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setenv("ROBGEN_CACHE", str(ro / "cache"))
    with pytest.raises(ConfigError, match="not writable"):
        Chapter.from_parameters("energy", namespace("energy"))


def test_an_unwritable_data_folder_stops_before_a_download(tmp_path, monkeypatch):
    from robgen_lib.core.data import DataUnavailableError, load_dataset

    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("")
    monkeypatch.setenv("ROBGEN_DATA", str(not_a_folder))
    with pytest.raises(DataUnavailableError,
                       match=r"data folder for cifar10 .* is not a folder: it lies under .*, which is a file; set ROBGEN_DATA"):
        load_dataset("cifar10", download=True)


def test_a_corrupt_image_is_named(tmp_path, cache):
    from PIL import Image

    for split in ("train", "test"):
        for k in ("a", "b"):
            os.makedirs(tmp_path / "imgs" / split / k)
            for i in range(12):
                Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(tmp_path / "imgs" / split / k / f"{i}.png")
    (tmp_path / "imgs" / "train" / "b" / "5.png").write_bytes(b"\x89PNG broken")
    message = refused("energy", r"cannot read the image .*5\.png.*replace or remove", cache,
                      dataset="imagefolder", data_dir=str(tmp_path / "imgs"))
    assert "train/b/5.png" in message


def test_papermill_stops_a_misspelt_parameter_in_the_first_cell(tmp_path):
    """As a user runs it: ``papermill … -p n_seed 3`` fails in the set-up cell, nothing cached."""
    import subprocess
    import sys

    import nbformat

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "out.ipynb"
    env = {**os.environ, "ROBGEN_CACHE": str(tmp_path / "cache"), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "papermill", os.path.join(root, "chapters", "01_energy.ipynb"),
                           str(out), "-p", "n_seed", "3", "--no-progress-bar"], capture_output=True, text=True,
                          env=env, cwd=root, timeout=300)
    assert proc.returncode != 0
    assert "unknown parameter n_seed; did you mean n_seeds?" in proc.stderr + proc.stdout
    cells = [c for c in nbformat.read(out, 4).cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    setup = next(i for i, c in enumerate(cells) if "Chapter.from_parameters" in c.source)
    assert failed == [setup]
    assert files_under(tmp_path / "cache") == []


# -- every fix a message names is one the user can apply -----------------------------------------

def test_a_torchvision_dataset_not_on_disk_names_a_download_the_user_can_run(cache, monkeypatch):
    """``-p dataset mnist`` at the quick profile: the chapter does not download (``-p download``
    is not a chapter parameter), so the message gives the one command that does, for the same folder."""
    import re

    import robgen_lib.core.data as data_module

    message = refused("energy", r"mnist is not in .* and download=False", cache, dataset="mnist")
    assert "run once with download=True" not in message and "dataset='mnist5k'" in message
    command = re.search(r'`python -c "(.*?)"`', message).group(1)
    fetched = []
    monkeypatch.setattr(data_module, "load_dataset", lambda *a, **k: fetched.append((a, k)))
    exec(command, {})
    assert fetched == [(("mnist",), {"download": True})]   # ROBGEN_DATA/mnist: where the chapter looks

    refusal = refused("energy", r"does not take parameter download: only the profile sets it "
                                r"\(quick: False, mnist: False, paper: True\); to fetch", cache,
                      dataset="mnist", download=True)
    assert "load_dataset('mnist', download=True)" in refusal and "set by the profile" not in refusal


def test_the_download_command_keeps_a_given_data_dir(cache, tmp_path):
    message = refused("energy", r"cifar10 is not in", cache, dataset="cifar10", data_dir=str(tmp_path / "c10"))
    assert f"load_dataset('cifar10', data_dir='{tmp_path / 'c10'}', download=True)" in message


def test_a_knob_only_profiles_set_says_so_without_advising_to_pass_it(cache):
    message = refused("energy", r"does not take parameter weight_decay: every profile sets it to 0.0005", cache,
                      weight_decay=0.1)
    assert "weight_decay=" not in message


@pytest.mark.parametrize("value", ["0,,4", "0,5,", ",0"])
def test_an_empty_list_element_is_refused(cache, value):
    message = refused("energy", r"step_grid=.* has an empty element \(step_grid\[\d\]\)", cache, step_grid=value)
    assert repr(value) in message and '"0,5,10"' in message


def test_a_dict_for_a_list_knob_says_it_takes_a_list(cache):
    message = refused("energy", r'step_grid must be a list such as "0,5,10" or \[0, 5, 10\], got a dict', cache,
                      step_grid={"a": 1})
    assert "lacks" not in message


def test_a_dict_under_an_unknown_name_is_not_skipped(cache):
    refused("energy", r"unknown parameter n_seed; did you mean n_seeds\?", cache, n_seed={"a": 1})


@pytest.mark.parametrize("dataset", ["digits", "mnist5k"])
def test_a_data_dir_no_dataset_reads_is_refused(cache, tmp_path, dataset):
    missing = tmp_path / "no-such-folder"
    message = refused("energy", rf"data_dir='{missing}' is not used \(and {missing} does not exist\): dataset "
                                rf"'{dataset}' ships inside .* data_dir applies only to datasets read from disk",
                      cache, dataset=dataset, data_dir=str(missing))
    assert "drop data_dir" in message and "dataset='imagefolder'" in message
    existing = tmp_path / "a-folder"
    existing.mkdir()
    assert "does not exist" not in refused("he_pgd", rf"data_dir='{existing}' is not used: dataset '{dataset}'",
                                           cache, dataset=dataset, data_dir=str(existing))


def test_ood_imagefolder_without_data_dir_names_ood_dataset(cache):
    refused("abs", r"ood_dataset='imagefolder' needs data_dir=", cache, ood_dataset="imagefolder")


def test_too_large_a_held_out_split_names_the_fix(cache):
    refused("energy", r"n_heldout=5000 leaves no training images \(there are 1438\); pass n_heldout < 1438", cache,
            n_heldout=5000)


def test_image_folders_with_different_classes_are_named(tmp_path, cache):
    from PIL import Image

    for split, classes in (("train", ("a", "b")), ("test", ("a", "c"))):
        for k in classes:
            os.makedirs(tmp_path / "imgs" / split / k)
            for i in range(12):
                Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(tmp_path / "imgs" / split / k / f"{i}.png")
    refused("energy", r"different class folders \(only in train/: b; only in test/: c\); give both the same", cache,
            dataset="imagefolder", data_dir=str(tmp_path / "imgs"))
