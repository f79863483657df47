"""Chapter 4 runs to its end on a user's denoiser weights (as the README advertises), at tiny
knobs: the single-head comparison trains the book's single-head denoiser beside them and says
that its verdict cannot compare the two layouts."""
import os
import subprocess
import sys

import nbformat
import pytest
import torch

from robgen_lib.methods.diffusion import Denoiser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(n_train=200, n_test=60, n_eval=20, epochs=4, robust_epochs=2, train_steps=2, den_width=8, den_epochs=1,
            timesteps=2, timestep_grid="1,2", n_robust=6, attack_steps=2, n_grad_check=4, eot=1, lm_steps=1,
            eta_grid="0,0.1", min_accuracy=0.0, dc_min_clean=0.0, batch_size=50)


@pytest.mark.notebooks
def test_chapter_4_runs_on_a_users_weights(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "my_unet.pt"
    torch.save(Denoiser(1, 10, base=8, multi_head=True).state_dict(), weights)
    out = tmp_path / "out.ipynb"
    params = [a for k, v in {**TINY, "denoiser_weights": str(weights)}.items() for a in ("-p", k, str(v))]
    env = {**os.environ, "ROBGEN_CACHE": str(tmp_path / "cache"), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "papermill", os.path.join(ROOT, "chapters", "04_rdc.ipynb"), str(out),
                           *params, "--no-progress-bar"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = "\n".join(o.get("text", "") for c in nbformat.read(out, 4).cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if o.get("output_type") == "stream")
    head = next(line for line in text.splitlines() if "multi-head denoiser cuts" in line)
    assert "not informative" in text[text.index(head):text.index(head) + 1500]
    assert "compare two trainings, not two layouts" in text
