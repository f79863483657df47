"""See and manage the artifact cache (trained models and cached results):

    python -m robgen_lib.cache list                  # entries by kind: count, size, age, how many are stale
    python -m robgen_lib.cache list --entries        # one line per entry
    python -m robgen_lib.cache du                    # size per kind, largest first, and in all
    python -m robgen_lib.cache prune                 # remove stale entries (made by older code)
    python -m robgen_lib.cache prune --older-than 30 # ... and entries not written for 30 days
    python -m robgen_lib.cache prune --dry-run       # say what would go
    python -m robgen_lib.cache versions [--record]   # code versions due (see robgen_lib.core.versions)

An entry is *stale* when no run of this code can read it again: its store format is older
(``CACHE_VERSION``), its header cannot be read, or its spec names code at another version than
the library's now. Entries are removed one at a time under their key's lock, the lock a run
takes to build that entry, so pruning beside a running chapter is safe: an entry being built
is not touched, and one rebuilt meanwhile is judged again as it is then. The cache is the
folder of ``ROBGEN_CACHE`` (default ``~/.cache/robgen/artifacts``), or ``--cache``.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

from .core.store import CACHE_VERSION, ArtifactStore, Entry
from .core.versions import import_library, record, stale, stale_ids

__all__ = ["main", "why_stale"]

DAY = 86_400.0


def why_stale(entry: Entry) -> str | None:
    """Why no run of this code will read ``entry`` again, or None if one may."""
    header = entry.header
    if header is None:
        return "no readable header"
    if header.get("cache_version") != CACHE_VERSION:
        return f"store format {header.get('cache_version')} (now {CACHE_VERSION})"
    old = stale_ids(header.get("spec"))
    if old:
        return "older code: " + ", ".join(sorted(set(old)))
    return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY:.1f} d"


def _list(store: ArtifactStore, per_entry: bool, out) -> None:
    now = time.time()
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry in store.entries():
        if per_entry:
            reason = why_stale(entry)
            print(f"{entry.kind:28s} {entry.key[:12]}  {_size(entry.size):>10s}  {_age(now - entry.mtime):>8s}  "
                  f"{'stale: ' + reason if reason else 'current'}", file=out)
        groups[entry.kind].append(entry)
    if per_entry:
        return
    if not groups:
        print(f"{store.root}: no entries", file=out)
        return
    print(f"{store.root}", file=out)
    print(f"{'kind':28s} {'entries':>7s} {'size':>10s} {'newest':>8s} {'oldest':>8s} {'stale':>6s}", file=out)
    for kind, entries in sorted(groups.items()):
        ages = [now - e.mtime for e in entries]
        n_stale = sum(why_stale(e) is not None for e in entries)
        print(f"{kind:28s} {len(entries):7d} {_size(sum(e.size for e in entries)):>10s} {_age(min(ages)):>8s} "
              f"{_age(max(ages)):>8s} {n_stale:6d}", file=out)


def _du(store: ArtifactStore, out) -> None:
    sizes: dict[str, int] = defaultdict(int)
    for entry in store.entries():
        sizes[entry.kind] += entry.size
    for kind, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"{_size(size):>10s}  {kind}", file=out)
    print(f"{_size(sum(sizes.values())):>10s}  in all ({store.root})", file=out)


def _prune(store: ArtifactStore, older_than: float | None, dry_run: bool, out) -> int:
    cutoff = None if older_than is None else time.time() - older_than * DAY

    def reason(entry: Entry) -> str | None:
        why = why_stale(entry)
        if why is None and cutoff is not None and entry.mtime < cutoff:
            why = f"not written for {_age(time.time() - entry.mtime)}"
        return why

    removed, freed = 0, 0
    for entry in store.entries():
        why = reason(entry)
        if why is None:
            continue
        if dry_run or store.remove(entry, lambda e: reason(e) is not None):
            removed, freed = removed + 1, freed + entry.size
            print(f"{'would remove' if dry_run else 'removed'} {entry.kind} {entry.key[:12]} ({why})", file=out)
    print(f"{'would free' if dry_run else 'freed'} {_size(freed)} in {removed} entr{'y' if removed == 1 else 'ies'}",
          file=out)
    return removed


def main(argv: list[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m robgen_lib.cache", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", help="the cache folder (default: ROBGEN_CACHE, else ~/.cache/robgen/artifacts)")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="entries by kind: count, size, age, stale")
    ls.add_argument("--entries", action="store_true", help="one line per entry")
    sub.add_parser("du", help="size per kind")
    pr = sub.add_parser("prune", help="remove stale entries (and, with --older-than, old ones)")
    pr.add_argument("--older-than", type=float, metavar="DAYS", help="also remove entries not written for DAYS days")
    pr.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    ver = sub.add_parser("versions", help="the code versions that are due (exit 1 if any)")
    ver.add_argument("--record", action="store_true", help="record the code's versions and fingerprints")
    args = parser.parse_args(argv)
    if getattr(args, "older_than", None) is not None and not args.older_than >= 0:
        parser.error(f"--older-than takes a number of days >= 0, got {args.older_than}")

    import_library()   # every versioned thing, so that stale entries are told from current ones
    if args.command == "versions":
        if args.record:
            table = record()
            print(f"recorded {len(table)} code versions", file=out)
            return 0
        due = stale()
        print("\n".join(due) if due else "every code version is recorded and current", file=out)
        return 1 if due else 0
    store = ArtifactStore(args.cache)
    if args.command == "list":
        _list(store, args.entries, out)
    elif args.command == "du":
        _du(store, out)
    else:
        _prune(store, args.older_than, args.dry_run, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
