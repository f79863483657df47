"""Speed benchmark for chapter 1 (prints figures; it is not a test).

1. Chapter 1 at the default profile, executed with a cold artifact cache and then warm
   (targets on a 2-core CPU: <= 180 s cold, <= 30 s warm).
2. The book's PGD against torchattacks' PGD on the same model, batch and steps
   (target: ratio torchattacks / ours >= 1, i.e. ours at least as fast).

    make bench      # or: python benchmarks/bench_chapter1.py [--skip-chapter]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_chapter(cache: str, out: str) -> float:
    env = {**os.environ, "ROBGEN_CACHE": cache, "TQDM_DISABLE": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "papermill", os.path.join(ROOT, "chapters", "01_energy.ipynb"), out,
                    "--no-progress-bar", "--log-level", "WARNING"], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t


def bench_pgd(repeats: int = 5) -> None:
    from robgen_lib.attacks import pgd
    from robgen_lib.data import load_dataset
    from robgen_lib.models import build_model

    try:
        import torchattacks
    except ImportError:
        print("torchattacks is not installed (make bench installs it); skipping the PGD comparison")
        return
    torch.manual_seed(0)
    cases = [("digits, small_cnn", load_dataset("digits").test.x[:256], "small_cnn", 8, 1),
             ("32x32x3, resnet10", torch.rand(64, 3, 32, 32), "resnet10", 32, 3)]
    print(f"\n{'case':<22} {'batch':>5} {'steps':>5} {'ours (s)':>9} {'torchattacks (s)':>17} {'ratio':>6}")
    for name, x, arch, size, c in cases:
        model = build_model(arch, in_channels=c, num_classes=10, image_size=size).eval()
        y = model(x).argmax(1).detach()
        steps = 20
        ta = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=steps, random_start=True)

        def ours():
            pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=steps)

        def theirs():
            ta(x, y)

        for f in (ours, theirs):  # warm-up
            f()
        t_ours = min(_time(ours) for _ in range(repeats))
        t_theirs = min(_time(theirs) for _ in range(repeats))
        print(f"{name:<22} {len(x):>5} {steps:>5} {t_ours:>9.3f} {t_theirs:>17.3f} {t_theirs / t_ours:>6.2f}")


def _time(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-chapter", action="store_true", help="only the PGD comparison")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    if not args.skip_chapter:
        with tempfile.TemporaryDirectory() as tmp:
            cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "out.ipynb")
            cold = run_chapter(cache, out)
            warm = run_chapter(cache, out)
        print(f"chapter 1 (quick profile): cold cache {cold:6.1f} s (target <= 180), "
              f"warm cache {warm:6.1f} s (target <= 30)")
    bench_pgd()


if __name__ == "__main__":
    main()
