"""Render the book's HTML from chapters the executor already ran.

    python -m robgen_lib.book.execute --out _build/executed     # run every chapter (two at a time)
    python -m robgen_lib.book.render _build/executed           # the HTML, from those notebooks

``make book`` does both. Jupyter Book would otherwise execute each chapter once more, one
after the other, only to read every result back from the cache; here it renders the
notebooks the executor wrote, as they are. The sources are staged in ``_build/stage``
(the repository's book files, with the executed chapters in place of the committed ones)
and built there with execution off; the HTML lands in ``_build/html`` as before. The
editions (``editions/``) are always rendered from their committed outputs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import yaml

__all__ = ["stage", "render", "main"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: What the book does not need from the repository (see ``exclude_patterns`` in _config.yml).
NOT_BOOK = ("_build", ".venv", ".git", "*.egg-info", ".pytest_cache", "tests", "benchmarks", ".ci", ".github",
            "robgen_lib", "__pycache__")


def stage(executed: str, where: str) -> str:
    """Copy the book's sources to ``where`` with the chapters from ``executed`` and execution off."""
    chapters = sorted(f for f in os.listdir(os.path.join(ROOT, "chapters")) if f.endswith(".ipynb"))
    missing = [c for c in chapters if not os.path.exists(os.path.join(executed, c))]
    if missing:
        raise SystemExit(f"{executed} lacks the executed {', '.join(missing)}: run "
                         f"`python -m robgen_lib.book.execute --out {executed}` first")
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(ROOT, where, ignore=shutil.ignore_patterns(*NOT_BOOK))
    for c in chapters:
        shutil.copy(os.path.join(executed, c), os.path.join(where, "chapters", c))
    with open(os.path.join(ROOT, "_config.yml")) as f:
        config = yaml.safe_load(f)
    config["execute"]["execute_notebooks"] = "off"
    with open(os.path.join(where, "_config.yml"), "w") as f:
        yaml.safe_dump(config, f, allow_unicode=True, sort_keys=False)
    return where


def render(executed: str) -> None:
    """Stage (see :func:`stage`) and build the HTML into ``_build/html``; exits on a build error."""
    where = stage(os.path.abspath(executed), os.path.join(ROOT, "_build", "stage"))
    exe = shutil.which("jupyter-book", path=os.path.dirname(sys.executable)) or "jupyter-book"
    proc = subprocess.run([exe, "build", where, "--path-output", ROOT, "-W", "--keep-going"])
    if proc.returncode:
        sys.exit(proc.returncode)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m robgen_lib.book.render", description=__doc__.splitlines()[0])
    ap.add_argument("executed", help="the folder of executed chapters (python -m robgen_lib.book.execute --out)")
    render(ap.parse_args(argv).executed)


if __name__ == "__main__":
    main()
