"""The command line that fills the cache with the book's costliest tables, sharded over
torchrun's processes (each takes every N-th batch; see :mod:`robgen_lib.core.parallel`):

    torchrun --nproc_per_node 4 -m robgen_lib.sharded -p profile paper                     # chapter 4
    torchrun --nproc_per_node 4 -m robgen_lib.sharded --study yardstick -p profile paper   # chapter 6

The notebooks then read the results from the cache.
"""
from __future__ import annotations

import argparse

import torch.distributed as dist

from .book.chapter import Chapter
from .book.studies import book_models, diffusion_models, independent_table, robust_table
from .core.parallel import close_distributed, init_distributed


def main(argv: list[str] | None = None) -> None:
    """Fill the cache with chapter 4's robust-accuracy table (``--study rdc``, the default) or
    chapter 6's independent-attack table (``--study yardstick``), sharded over torchrun's processes.

    Parameters as for papermill: ``-p profile paper -p n_robust 512``. Rank 0 trains or loads
    the models first; the others then load them from the cache.
    """
    ap = argparse.ArgumentParser(prog="python -m robgen_lib.sharded", description=main.__doc__.splitlines()[0])
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a chapter parameter (repeatable)")
    ap.add_argument("--study", choices=("rdc", "yardstick"), default="rdc",
                    help="which chapter's table to fill: 4 (rdc) or 6 (yardstick)")
    args = ap.parse_args(argv)
    params = dict(args.p)
    profile = params.pop("profile", "quick")
    rank, world = init_distributed()
    build = book_models if args.study == "yardstick" else diffusion_models
    if rank == 0:
        build(Chapter(profile, **params))
    if world > 1:
        dist.barrier()
    ch = Chapter(profile, **params)
    table = independent_table(ch) if args.study == "yardstick" else robust_table(ch)
    if rank == 0:
        for (name, threat), r in table.items():
            print(f"{name:>22} {threat:>5}: clean {100 * r['clean_accuracy']:5.1f} %  robust {100 * r['robust_accuracy']:5.1f} %")
    close_distributed()


if __name__ == "__main__":
    main()
