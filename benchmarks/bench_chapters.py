"""Speed benchmarks (they print figures; they are not tests).

1. Each chapter at the default profile, executed with papermill in a fresh artifact
   cache ("cold"), again in the same cache ("warm"), and — for chapters that reuse
   earlier chapters' models — in a cache already holding those ("models cached").
   Targets on a 2-core CPU are printed beside each figure.
2. The book's PGD against torchattacks' PGD on the same model, batch and steps
   (target: ratio torchattacks / ours >= 1, i.e. ours at least as fast).
3. The diffusion classifier's network evaluations per second, multi-head (one pass per
   timestep) vs one pass per class and timestep (target: speed-up >= 8x at K = 10).

    make bench      # or: python benchmarks/bench_chapters.py [--book] [--chapters 01_energy] [--skip-chapters]

4. With ``--book``: the whole book as ``make book`` executes it, cold then warm, and the ten
   costliest cells of the cold run with their share of all cell time.
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
    "04_rdc": (480, None, ["01_energy"]),
    "05_abs": (480, None, []),
    # chapter 6 only evaluates: its targets are "after chapters 1–5 ran" and then warm
    "06_yardstick": (None, 180, ["01_energy", "02_he_pgd", "03_jeat", "04_rdc", "05_abs"]),
}
AFTER_TARGET = {"06_yardstick": 600}


def run_chapter(name: str, cache: str, out: str) -> float:
    env = {**os.environ, "ROBGEN_CACHE": cache, "TQDM_DISABLE": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "papermill", os.path.join(ROOT, "chapters", name + ".ipynb"), out,
                    "--no-progress-bar", "--log-level", "WARNING"], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t


def bench_chapter(name: str) -> None:
    cold_target, warm_target, needs = TARGETS[name]
    if cold_target is None:
        with tempfile.TemporaryDirectory() as tmp:
            cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "out.ipynb")
            for other in needs:
                run_chapter(other, cache, out)
            after = run_chapter(name, cache, out)
            warm = run_chapter(name, cache, out)
        print(f"{name}: after {', '.join(needs)} {after:6.1f} s (target <= {AFTER_TARGET[name]})  "
              f"warm {warm:6.1f} s (target <= {warm_target})", flush=True)
        return
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
    from robgen_lib.core.attacks import pgd
    from robgen_lib.core.data import load_dataset
    from robgen_lib.core.models import build_model

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


def bench_diffusion(repeats: int = 5) -> None:
    """Network evaluations per second of the diffusion classifier, multi-head vs one pass per class."""
    from robgen_lib.methods.diffusion import Denoiser, DiffusionClassifier

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"\ndiffusion classifier on {device}, median of {repeats} runs (target: multi-head speed-up >= 8x at K = 10)")
    print(f"{'case':<26} {'T′':>3} {'evals/s multi':>14} {'evals/s single':>15} {'speed-up':>9}")
    big_batch = 32 if device == "cuda" else 8
    for name, c, size, width, batch in [("digits 8x8, width 32", 1, 8, 32, 64),
                                        ("32x32x3, width 64", 3, 32, 64, big_batch)]:
        torch.manual_seed(0)
        net = Denoiser(c, 10, width, multi_head=True).to(device).eval()
        x = torch.rand(batch, c, size, size, device=device)
        per_image = {}
        for one_pass in (True, False):
            clf = DiffusionClassifier(net, 16, one_pass=one_pass)

            def run():
                with torch.no_grad():
                    clf(x)
                if device == "cuda":
                    torch.cuda.synchronize()

            run()
            per_image[one_pass] = statistics.median(_time(run) for _ in range(repeats)) / batch
        evals_multi, evals_single = 16 / per_image[True], 16 * 10 / per_image[False]
        print(f"{name:<26} {16:>3} {evals_multi:>14.0f} {evals_single:>15.0f} "
              f"{per_image[False] / per_image[True]:>8.1f}x", flush=True)


def costliest_cells(folder: str, k: int = 10) -> list[tuple[float, str, int, str]]:
    """The ``k`` longest cells of the executed notebooks in ``folder`` (papermill's durations):
    (seconds, chapter, cell index, first line of the cell)."""
    import nbformat

    cells = []
    for f in sorted(os.listdir(folder)):
        if f.endswith(".ipynb"):
            for i, c in enumerate(nbformat.read(os.path.join(folder, f), 4).cells):
                seconds = (c.metadata.get("papermill") or {}).get("duration") or 0.0
                if c.cell_type == "code":
                    cells.append((seconds, f[:-6], i, c.source.splitlines()[0][:70] if c.source else ""))
    return sorted(cells, reverse=True)[:k]


def bench_book() -> None:
    """The whole book as `make book` executes it (two chapters at a time), cold in a fresh
    cache and then warm, and the ten costliest cells of the cold run with their share."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ROBGEN_CACHE": os.path.join(tmp, "cache"), "TQDM_DISABLE": "1"}
        times = {}
        for run in ("cold", "warm"):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "robgen_lib.book.execute", "--out", os.path.join(tmp, run)],
                           check=True, env=env, cwd=ROOT)
            times[run] = time.perf_counter() - t
        total = sum(s for s, *_ in costliest_cells(os.path.join(tmp, "cold"), 10_000))
        print(f"book: cold {times['cold'] / 60:.1f} min (target <= 15), warm {times['warm']:.0f} s (target <= 120); "
              f"the costliest cells of the cold run ({total / 60:.1f} min of cell time in all):", flush=True)
        for seconds, chapter, index, first in costliest_cells(os.path.join(tmp, "cold")):
            print(f"  {seconds:7.1f} s  {100 * seconds / total:4.1f} %  {chapter} cell {index}: {first}", flush=True)


def _time(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chapters", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--skip-chapters", action="store_true", help="only the PGD and diffusion speed comparisons")
    ap.add_argument("--book", action="store_true", help="also the whole book cold and warm, and its costliest cells")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores", flush=True)
    if args.book:
        bench_book()
    if not args.skip_chapters:
        for name in args.chapters:
            bench_chapter(name)
    bench_pgd()
    bench_diffusion()


if __name__ == "__main__":
    main()
