"""The paper profile's code path, end to end, without a GPU or CIFAR-10.

Every chapter runs with papermill at ``profile=paper`` — its architectures (ResNet-10,
PreActResNet-18, the paper-sized denoiser and VAEs at tiny widths), its RGB 32x32 images,
its knobs — on a small image folder this test writes itself (random 32x32 RGB PNGs, a few
per class), ``device=cpu``, with every count, epoch and budget turned down to a handful.
The numbers mean nothing; what is checked is that a change to the library or a chapter
cannot break the CIFAR-10 / GPU path unseen: each chapter must execute to its closing
table. Chapter 5's own MNIST preset and its out-of-domain CIFAR-10 study are pointed at
the same folder.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from robgen_lib.book.knobs import KNOBS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAPTERS = sorted(f[:-6] for f in os.listdir(os.path.join(ROOT, "chapters")) if f.endswith(".ipynb"))
CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS = 3, 10, 4   # 30 train (10 held out), 12 test

#: The paper profile turned down to seconds (only the knobs a chapter takes are passed to it).
TINY = dict(
    device="cpu", dataset="imagefolder", min_accuracy=0, n_heldout=10, n_eval=10, epochs=1, robust_epochs=1, batch_size=8,
    train_steps=1, steps=2, step_grid="0,1,2", eps_grid="0,0.03", hist_steps=1, n_seeds=1, n_jeat_seeds=1,
    temperatures="1", lam_grid="1,2", sigma_grid="0,0.1", jeat_epochs=1, sgld_steps=1, buffer_size=16,
    gen_steps=2, n_gen=2, n_show=2, landscape_points=3, rank_points=3, n_landscape=1, fidelity=False,
    den_width=8, den_epochs=1, timesteps=2, timestep_grid="1,2", lm_steps=1, eta_grid="0,0.03", n_robust=4,
    attack_steps=2, restarts=1, n_grad_check=2, eot=1, abs_latent=2, abs_width=8, abs_epochs=1, abs_samples=4,
    abs_steps=1, abs_sample_grid="1,4", abs_step_grid="0,1", abs_linf_grid="0.1", abs_l2_grid="0.5",
    boundary_candidates=1, boundary_iters=2, latent_steps=1, ood_latent_grid="2,4", ood_width_grid="8,16",
    ood_epochs=1, ood_dataset="imagefolder", smooth_n0=4, smooth_n=8, n_certify=4, ind_steps=2, ind_restarts=1,
    ind_queries=4, ind_costly_steps=1, ind_costly_queries=2, smooth_draws=2, ind_linf_grid="0.03",
    ind_l2_grid="0.5", n_curve=4, train_eps=0.03, train_step_size=0.01,
)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar-like")
    rng = np.random.default_rng(0)
    for split, n in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for k in range(CLASSES):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            for i in range(n):
                level = 60 + 60 * k
                arr = np.clip(rng.normal(level, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.png")
    return root


def test_tiny_overrides_are_knobs():
    assert set(TINY) <= set(KNOBS)


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_chapter_runs_at_the_paper_profile(name, image_folder, tmp_path):
    chapter = name.split("_", 1)[1]
    params = ["-p", "profile", "paper", "-p", "data_dir", str(image_folder)]
    for key, value in TINY.items():
        if chapter in KNOBS[key].chapters:
            params += ["-p", key, str(value)]
    env = {**os.environ, "ROBGEN_CACHE": str(tmp_path / "cache"), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / f"{name}.ipynb"
    proc = subprocess.run([sys.executable, "-m", "papermill", os.path.join(ROOT, "chapters", name + ".ipynb"),
                           str(out), "--no-progress-bar", "--log-level", "ERROR", "--cwd",
                           os.path.join(ROOT, "chapters"), *params], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "vs this run" in out.read_text(encoding="utf-8").lower()     # the closing table was printed
