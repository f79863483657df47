"""Speed benchmarks (they print figures; they are not tests).

1. Each chapter at the default profile, executed with papermill in a fresh artifact
   cache ("cold"), again in the same cache ("warm"), and — for chapters that reuse
   earlier chapters' models — in a cache already holding those ("models cached").
   Targets on a 2-core CPU are printed beside each figure.
2. The book's PGD against torchattacks' PGD on the same model, batch and steps
   (target: ratio torchattacks / ours >= 1, i.e. ours at least as fast).

    make bench      # or: python benchmarks/bench_chapters.py [--chapters 01_energy] [--skip-chapters]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: chapter → (cold target s, warm target s, chapters whose models it reuses)
TARGETS = {
    "01_energy": (180, 30, []),
    "02_he_pgd": (180, None, ["01_energy"]),
    "03_jeat": (300, None, ["01_energy"]),
}


def run_chapter(name: str, cache: str, out: str) -> float:
    env = {**os.environ, "ROBGEN_CACHE": cache, "TQDM_DISABLE": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "papermill", os.path.join(ROOT, "chapters", name + ".ipynb"), out,
                    "--no-progress-bar", "--log-level", "WARNING"], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t


def bench_chapter(name: str) -> None:
    cold_target, warm_target, needs = TARGETS[name]
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "out.ipynb")
        cold = run_chapter(name, cache, out)
        warm = run_chapter(name, cache, out)
    line = f"{name}: cold {cold:6.1f} s (target <= {cold_target})  warm {warm:6.1f} s"
    line += f" (target <= {warm_target})" if warm_target else ""
    if needs:
        with tempfile.TemporaryDirectory() as tmp:
            cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "out.ipynb")
            for other in needs:
                run_chapter(other, cache, out)
            line += f"  with {', '.join(needs)}'s models cached {run_chapter(name, cache, out):6.1f} s"
    print(line, flush=True)


def bench_pgd(repeats: int = 9) -> None:
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
    print(f"\nPGD, median of {repeats} interleaved runs; ratio = torchattacks / ours (>= 1: ours at least as fast)")
    print(f"{'case':<22} {'batch':>5} {'steps':>5} {'ours (s)':>9} {'torchattacks (s)':>17} {'ratio':>6}")
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
        runs = {ours: [], theirs: []}
        for _ in range(repeats):  # interleaved, so that drifts of the machine hit both alike
            for f in runs:
                runs[f].append(_time(f))
        t_ours, t_theirs = (statistics.median(runs[f]) for f in (ours, theirs))
        print(f"{name:<22} {len(x):>5} {steps:>5} {t_ours:>9.3f} {t_theirs:>17.3f} {t_theirs / t_ours:>6.2f}")


def _time(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chapters", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--skip-chapters", action="store_true", help="only the PGD comparison")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores", flush=True)
    if not args.skip_chapters:
        for name in args.chapters:
            bench_chapter(name)
    bench_pgd()


if __name__ == "__main__":
    main()
