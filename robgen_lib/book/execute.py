"""Execute the book's chapters with papermill, several at a time, one CPU thread share each.

    python -m robgen_lib.book.execute                       # every chapter, quick profile, 2 at a time
    python -m robgen_lib.book.execute --out editions/mnist -p profile mnist
    python -m robgen_lib.book.execute 04_rdc --jobs 1 -p n_robust 128

The book's models and evaluations live in the artifact cache, so executing the chapters
first fills it and a later execution of the same notebooks (``jupyter-book build``, nbval)
reads every result back. On a CPU, the chapters' small networks leave most of a core's
intra-op threads idle; ``--jobs`` processes with ``cores / jobs`` threads each finish the
book sooner than one process with every core. Once fewer chapters than ``--jobs`` are left
running, the cores that fell idle are theirs: the executor raises their thread share (a file
named by ``$ROBGEN_THREAD_SHARE``), which each chapter takes up at its next model or cached
evaluation. The cache's per-key locks make any order
correct — a chapter that needs a model another one is training waits for it instead of
training it twice; :data:`ORDER` only keeps such waits short: chapter 1 (whose CNNs most
chapters reuse) and the independent chapter 5 go first, chapter 6 (which reuses everything)
last.

Without ``--out`` the executed notebooks are thrown away (the run only fills the cache);
with it they are written there under their own names — only once a chapter has run to its
end, so a failed or interrupted run leaves no half-executed page behind, and running the
command again resumes from the cache. ``--edition NAME`` (with ``--out``) makes the pages an
edition of the book: the title gains the edition's name and the page opens with its
provenance (profile and parameters, the command, the commit, date, machine, wall time).
A failing chapter stops nothing else; the command lists it with papermill's message and
exits with 1.

    python -m robgen_lib.book.execute --out editions/mnist --edition "MNIST edition" -p profile mnist
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from ..core.runtime import THREAD_SHARE

__all__ = ["ORDER", "chapters", "execute", "main"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAPTERS_DIR = os.path.join(ROOT, "chapters")

#: The order chapters start in (see the module docstring); chapters not listed follow by name.
ORDER = ("01_energy", "05_abs", "03_jeat", "04_rdc", "02_he_pgd", "06_yardstick")


def chapters(names=()) -> list[str]:
    """The chapters to execute, in :data:`ORDER`: all of ``chapters/`` or the ``names`` given
    (``04_rdc``, ``04_rdc.ipynb`` or ``04``); an unknown name stops here, before any work."""
    found = sorted(f[:-6] for f in os.listdir(CHAPTERS_DIR) if f.endswith(".ipynb"))
    chosen = []
    for name in names:
        stem = os.path.basename(name).removesuffix(".ipynb")
        match = [f for f in found if f == stem or f.split("_")[0] == stem]
        if not match:
            raise SystemExit(f"no chapter {name!r}; the chapters are {', '.join(found)}")
        chosen += match
    chosen = chosen or found
    return sorted(dict.fromkeys(chosen), key=lambda c: (ORDER.index(c) if c in ORDER else len(ORDER), c))


def _run_one(name: str, out_dir: str, params: list[tuple[str, str]], threads: int,
             share: str) -> tuple[str, float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TQDM_DISABLE": "1",
           THREAD_SHARE: share}
    cmd = [sys.executable, "-m", "papermill", os.path.join("chapters", name + ".ipynb"),   # recorded as given
           os.path.join(out_dir, name + ".ipynb"), "--no-progress-bar", "--log-level", "ERROR", "--cwd", CHAPTERS_DIR]
    for key, value in params:
        cmd += ["-p", key, value]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    error = "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["papermill failed"])[-1]
    return name, time.perf_counter() - t, error


def _commit() -> str:
    """The checkout's commit, marked when the working tree differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def _machine(threads: int, jobs: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    more = " (more once fewer chapters are left running)" if jobs > 1 else ""
    return f"{os.cpu_count()} cores ({cpu}), {jobs} chapter(s) at a time with {threads} thread(s) each{more}"


def _write_share(path: str, threads: int) -> None:
    """Publish the thread share atomically (a chapter reading it sees the old or the new number)."""
    with open(path + ".tmp", "w") as f:
        f.write(str(threads))
    os.replace(path + ".tmp", path)


def mark_edition(path: str, edition: str, *, params, seconds: float, machine: str, command: str,
                 commit: str) -> None:
    """Make an executed notebook a page of ``edition``: its title gains the name, and a note
    under the title gives the run's provenance (``commit``: the checkout as the run started)."""
    import nbformat   # papermill's dependency

    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    if first.cell_type == "markdown" and first.source.startswith("# "):
        title, _, rest = first.source.partition("\n")
        first.source = f"{title} ({edition})\n{rest}"
    shown = ", ".join(f"`{k} = {v}`" for k, v in params) or "none (the quick profile)"
    note = (f":::{{note}} {edition}: provenance\n"
            f"- parameters: {shown}\n"
            f"- regenerate: `{command}`\n"
            f"- commit `{commit}`, executed {datetime.date.today().isoformat()} on {machine}; "
            f"load average {os.getloadavg()[2]:.1f} over the 15 minutes before it ended (other runs share the cores "
            f"when it exceeds the cores in use)\n"
            f"- wall time of this chapter: {seconds / 60:.1f} minutes (its models and evaluations computed in "
            f"this run or read back from the cache of an earlier, interrupted one)\n:::")
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(note))
    nbformat.write(nb, path)


def execute(names=(), *, jobs: int = 2, out_dir: str | None = None, params=(), cores: int | None = None,
            edition: str | None = None, command: str | None = None) -> dict:
    """Execute the chapters (see :func:`chapters`) ``jobs`` at a time; returns {chapter: (seconds, error)}."""
    todo = chapters(names)
    if jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {jobs}")
    if edition and not out_dir:
        raise SystemExit("--edition needs --out, the folder of the edition's pages")
    jobs = min(jobs, len(todo))
    cores = cores or os.cpu_count() or 1
    threads = max(1, cores // jobs)
    machine, commit = _machine(threads, jobs), _commit()   # the code as the run starts
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        target = os.path.abspath(out_dir) if out_dir else None
        if target:
            os.makedirs(target, exist_ok=True)
        print(f"executing {len(todo)} chapter(s), {jobs} at a time with {threads} thread(s) each", flush=True)
        start = time.perf_counter()
        share = os.path.join(scratch, "thread-share")
        _write_share(share, threads)
        with ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(_run_one, n, scratch, list(params), threads, share) for n in todo]
            for f in as_completed(futures):
                name, seconds, error = f.result()
                results[name] = (seconds, error)
                left = len(todo) - len(results)
                if 0 < left < jobs:   # the chapters still running share the cores that fell idle
                    _write_share(share, max(threads, cores // left))
                if target and not error:   # a page only once its chapter ran to the end
                    done = os.path.join(scratch, name + ".ipynb")
                    if edition:
                        mark_edition(done, edition, params=params, seconds=seconds, machine=machine,
                                     command=command or "python -m robgen_lib.book.execute", commit=commit)
                    shutil.move(done, os.path.join(target, name + ".ipynb"))
                print(f"  {name}: {'done' if not error else 'FAILED'} in {seconds:.0f} s"
                      + (f" — {error}" if error else ""), flush=True)
        print(f"all in {time.perf_counter() - start:.0f} s", flush=True)
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m robgen_lib.book.execute",
                                 description="Execute the book's chapters with papermill, several at a time.")
    ap.add_argument("chapters", nargs="*", help="chapters to execute (default: all), e.g. 04_rdc or 04")
    ap.add_argument("--jobs", type=int, default=2, help="chapters executed at once (default 2)")
    ap.add_argument("--out", help="write the executed notebooks here (default: discard them; the cache keeps the work)")
    ap.add_argument("--edition", help="with --out: the pages are this edition of the book (title, provenance)")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a chapter parameter, as papermill's -p (repeatable)")
    args = ap.parse_args(argv)
    command = "python -m robgen_lib.book.execute " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = execute(args.chapters, jobs=args.jobs, out_dir=args.out, params=[tuple(p) for p in args.p],
                      edition=args.edition, command=command)
    failed = [n for n, (_, error) in results.items() if error]
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (run one with papermill to see the whole traceback)")


if __name__ == "__main__":
    main()
