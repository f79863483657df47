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
exits with 1. A bad argument (an unknown chapter, ``--jobs 0``, an ``--out`` that is a file or
cannot be written) stops it with one line and exit code 2 before any chapter starts.

    python -m robgen_lib.book.execute --out editions/mnist --edition "MNIST edition" -p profile mnist

A relative ``ROBGEN_CACHE`` or ``ROBGEN_DATA`` is a path from the folder the command was started
in: the executor makes it absolute and hands that to every chapter (whose kernel runs in
``chapters/``).

Stopping it stops the chapters. Each chapter is a papermill process in its own session and
process group, and everything it starts (the Jupyter kernel, which jupyter_client puts in a
session of its own, and the kernel's children) carries the chapter's mark in its environment
(``ROBGEN_EXECUTE_CHAPTER``). On SIGTERM, SIGINT (Ctrl-C) or SIGHUP the executor sends SIGTERM
to every process of every running chapter, SIGKILL to those left after :data:`GRACE` seconds,
removes its scratch folder and exits with 128 + the signal's number. A SIGKILL cannot be caught,
so the chapters notice it themselves: on Linux papermill gets SIGKILL when the executor dies
(``PR_SET_PDEATHSIG``), and a watchdog per chapter (a small process in a session of its own,
started with the chapter and ended with it) sees its parent, the executor, gone, ends the
chapter's processes in the same way and removes the scratch folder. (Without ``/proc``, the
watchdog ends papermill's process group and the kernel stops through its own parent poller.)

The scratch folder, where the chapters write until they end, is
``<tmp>/robgen-execute-<pid>-<random>``; the chapters' own temporary files (the kernel's connection
file among them) go there too. It is removed when the run ends, however it ends: by the executor
itself, or after a SIGKILL by the watchdogs. One left behind even so (a SIGKILL while no chapter
was running, a watchdog killed too) is removed by the next run, which sweeps the scratch folders,
owned by the same user, whose executor no longer runs — its lock on the folder's ``.owner`` file,
held for the executor's lifetime, is free (or, without one, no process has its pid) — so they
never pile up.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

try:
    import fcntl
except ImportError:   # not POSIX
    fcntl = None

# Only the standard library at import: each chapter's watchdog imports this module.

__all__ = ["ORDER", "GRACE", "BadArgument", "Stopped", "chapters", "execute", "main"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAPTERS_DIR = os.path.join(ROOT, "chapters")
PROG = "python -m robgen_lib.book.execute"

#: The order chapters start in (see the module docstring); chapters not listed follow by name.
ORDER = ("01_energy", "05_abs", "03_jeat", "04_rdc", "02_he_pgd", "06_yardstick")

#: Seconds a stopped chapter's processes get between SIGTERM and SIGKILL.
GRACE = 3.0

#: The environment variable that marks every process of one chapter of one run.
MARK = "ROBGEN_EXECUTE_CHAPTER"
SCRATCH_PREFIX = "robgen-execute-"
_SCRATCH = re.compile(re.escape(SCRATCH_PREFIX) + r"(\d+)-")
_PROC = os.path.isdir("/proc/self")
_WATCH_POLL = 0.5
_STOP_SIGNALS = tuple(getattr(signal, s) for s in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, s))

# Run as ``python -c`` between fork and papermill on Linux: SIGKILL this process when the
# executor dies (prctl(PR_SET_PDEATHSIG), kept across exec), then become papermill.
_DIE_WITH_PARENT = ("import ctypes, os, signal, sys; "
                    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0); "
                    "os.getppid() == int(sys.argv[1]) or os._exit(70); "
                    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")
_WATCHDOG = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "from robgen_lib.book.execute import _watch; _watch(*sys.argv[2:])")


class BadArgument(SystemExit):
    """A bad argument, found before any chapter runs: one line (``str()``), exit code 2."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Stopped(KeyboardInterrupt):
    """The executor was asked to stop (``signum``); its chapters are ended by then."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def chapters(names=(), folder: str | None = None) -> list[str]:
    """The chapters to execute, in :data:`ORDER`: all of ``chapters/`` (or of ``folder``) or the
    ``names`` given (``04_rdc``, ``04_rdc.ipynb`` or ``04``); an unknown name stops here, before
    any work."""
    folder = folder or CHAPTERS_DIR
    try:
        found = sorted(f[:-6] for f in os.listdir(folder) if f.endswith(".ipynb"))
    except OSError as err:
        raise BadArgument(f"cannot list the notebooks in {folder} ({err.strerror or err}); "
                          f"give a folder of notebooks") from None
    if not found:
        raise BadArgument(f"no notebook (*.ipynb) in {folder}; give a folder of notebooks")
    chosen = []
    for name in names:
        stem = os.path.basename(name).removesuffix(".ipynb")
        match = [f for f in found if f == stem or f.split("_")[0] == stem]
        if not match:
            raise BadArgument(f"no chapter {name!r}; the chapters are {', '.join(found)}")
        chosen += match
    chosen = chosen or found
    return sorted(dict.fromkeys(chosen), key=lambda c: (ORDER.index(c) if c in ORDER else len(ORDER), c))


# -- the processes of a chapter -----------------------------------------------------------------
def _marked(marks) -> set[int]:
    """The live processes (zombies aside) whose environment carries one of ``marks`` (Linux)."""
    if not _PROC:
        return set()
    wanted = {f"{MARK}={m}".encode() for m in marks}
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:   # gone, or not ours
            continue
        if wanted.intersection(env.split(b"\0")):
            found.add(int(entry))
    found.discard(os.getpid())
    return found


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal(pids, groups, sig) -> None:
    for group in groups:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _end(marks, groups=(), grace: float = GRACE) -> bool:
    """SIGTERM every process that carries one of ``marks`` and every process group in ``groups``,
    SIGKILL what is left after ``grace`` seconds; True once none is left."""
    if os.name != "posix":
        return True
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        _signal(_marked(marks), groups, sig)
        deadline = time.monotonic() + wait
        while True:
            left = _marked(marks)
            groups = [g for g in groups if _group_alive(g)]
            if not left and not groups:
                return True
            if time.monotonic() > deadline:
                break
            _signal(left, (), sig)   # a process started in between
            time.sleep(0.05)
    return False


def _watch(executor: str, mark: str, group: str, scratch: str, grace: str = str(GRACE)) -> None:
    """A chapter's watchdog: once its parent, the executor (pid ``executor``), is gone — killed
    with SIGKILL, which it cannot catch — end the chapter's processes (``mark``; papermill's
    process ``group`` where there is no ``/proc``) and remove the run's ``scratch`` folder. The
    executor ends the watchdog with SIGKILL once the chapter has ended."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    while os.getppid() == int(executor):
        time.sleep(_WATCH_POLL)
    _end([mark], [] if _PROC else [int(group)], float(grace))
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)


def _make_scratch() -> tuple[str, int | None]:
    """A new scratch folder and the descriptor of its owner lock: ``.owner`` inside it, locked
    (flock) for as long as this process lives — the lock goes with the process, however it ends."""
    scratch = os.path.abspath(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    if fcntl is None:
        return scratch, None
    fd = os.open(os.path.join(scratch, ".owner.new"), os.O_CREAT | os.O_WRONLY, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.replace(os.path.join(scratch, ".owner.new"), os.path.join(scratch, ".owner"))   # locked before it shows
    return scratch, fd


def _abandoned(path: str, pid: int) -> bool:
    """Whether the executor of scratch folder ``path`` (named with its ``pid``) is gone: its owner
    lock can be taken (or, without one, no process ``pid`` exists)."""
    if fcntl is not None:
        try:
            fd = os.open(os.path.join(path, ".owner"), os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError:   # held: its executor runs
                return False
            finally:
                os.close(fd)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:           # PermissionError: another user's
        pass
    return False


def _sweep_scratch(tmp: str | None = None) -> list[str]:
    """Remove the scratch folders (this user's) whose executor no longer runs; returns them."""
    tmp = tmp or tempfile.gettempdir()
    swept = []
    try:
        entries = os.listdir(tmp)
    except OSError:
        return swept
    for entry in entries:
        m = _SCRATCH.match(entry)
        path = os.path.join(tmp, entry)
        if not m:
            continue
        try:
            st = os.lstat(path)
            if not os.path.isdir(path) or os.path.islink(path) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
                continue
            if _abandoned(path, int(m.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                swept.append(path)
        except OSError:   # vanished meanwhile
            continue
    return swept


class _Run:
    """The chapters of one run that are executing, and how to end them."""

    def __init__(self, notebooks: str, scratch: str, roots: dict[str, str]):
        self.notebooks, self.scratch, self.roots = notebooks, scratch, roots
        self.id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.lock = threading.Lock()
        self.stopping = False
        self.running: dict[str, tuple[subprocess.Popen, subprocess.Popen | None, str]] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: str):
        """Start papermill for chapter ``name`` and its watchdog; None once the run is stopping."""
        mark = f"{self.id}:{name}"
        env = {**env, MARK: mark}
        posix = os.name == "posix"
        if sys.platform.startswith("linux"):
            cmd = [cmd[0], "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd[1:]]
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env, cwd=cwd, start_new_session=posix)
            watchdog = None
            if posix:
                try:
                    watchdog = subprocess.Popen(
                        [sys.executable, "-c", _WATCHDOG, ROOT, str(os.getpid()), mark, str(proc.pid), self.scratch,
                         str(GRACE)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=ROOT,
                        start_new_session=True)
                except BaseException:
                    proc.kill()
                    proc.communicate()
                    raise
            self.running[name] = (proc, watchdog, mark)
        return proc

    def finish(self, name: str) -> None:
        """After papermill ended: end what it left (a kernel it did not shut down), then the watchdog."""
        with self.lock:
            proc, watchdog, mark = self.running.pop(name)
        _end([mark], grace=1.0)
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()

    def stop(self) -> None:
        """End every running chapter (SIGTERM, then SIGKILL after :data:`GRACE` s) and its watchdog."""
        with self.lock:
            self.stopping = True
            running = list(self.running.values())
        _end([mark for _, _, mark in running],
             [p.pid for p, _, _ in running if os.name == "posix" and p.poll() is None], GRACE)
        for proc, watchdog, _ in running:
            if os.name != "posix" and proc.poll() is None:
                proc.kill()
            if watchdog is not None:
                watchdog.kill()
                watchdog.wait()


_active: _Run | None = None


def _run_one(name: str, out_dir: str, params: list[tuple[str, str]], threads: int,
             share: str) -> tuple[str, float, str]:
    from ..core.runtime import THREAD_SHARE, absolute_roots

    run = _active or _Run(CHAPTERS_DIR, "", absolute_roots())   # "": no scratch folder of its own
    env = {**os.environ, **run.roots, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TQDM_DISABLE": "1", THREAD_SHARE: share}
    if run.scratch:   # the chapter's temporary files (the kernel's connection file among them) go with the run's
        env["TMPDIR"] = os.path.join(run.scratch, "tmp")
        os.makedirs(env["TMPDIR"], exist_ok=True)
    if run.notebooks == CHAPTERS_DIR:
        notebook = os.path.join("chapters", name + ".ipynb")   # recorded as given
    else:
        notebook = os.path.join(run.notebooks, name + ".ipynb")
    cmd = [sys.executable, "-m", "papermill", notebook, os.path.join(out_dir, name + ".ipynb"),
           "--no-progress-bar", "--log-level", "ERROR", "--cwd", run.notebooks]
    for key, value in params:
        cmd += ["-p", key, value]
    t = time.perf_counter()
    proc = run.start(name, cmd, env, ROOT)
    if proc is None:
        return name, 0.0, "not started: the run was stopped"
    try:
        _, stderr = proc.communicate()
    finally:
        run.finish(name)
    if run.stopping:
        error = "stopped"
    else:
        error = "" if proc.returncode == 0 else (stderr.strip().splitlines() or ["papermill failed"])[-1]
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


def _publish(done: str, page: str) -> None:
    """Move an executed notebook to its page in one rename: a page is whole or absent."""
    part = f"{page}.part-{os.getpid()}"
    try:
        shutil.copyfile(done, part)
        os.replace(part, page)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(part)
        raise
    os.remove(done)


def _check_out(out_dir: str) -> str:
    """``--out`` as an absolute folder that exists and can be written, or one line saying why not."""
    from ..core.runtime import require_writable_folder

    target = os.path.abspath(os.path.expanduser(out_dir))
    require_writable_folder(target, what="--out", fix="give --out a folder you can write (it is created if missing)",
                            error=BadArgument)
    return target


def execute(names=(), *, jobs: int = 2, out_dir: str | None = None, params=(), cores: int | None = None,
            edition: str | None = None, command: str | None = None, notebooks: str | None = None) -> dict:
    """Execute the chapters (see :func:`chapters`; ``notebooks``: another folder of notebooks)
    ``jobs`` at a time; returns {chapter: (seconds, error)}.

    Bad arguments raise :class:`BadArgument` before any chapter starts. SIGTERM, SIGINT or SIGHUP
    (handled while this runs in the main thread) end the running chapters, remove the scratch
    folder and raise :class:`Stopped`; any other exception ends them too."""
    global _active
    from ..core.runtime import absolute_roots

    notebooks = os.path.abspath(notebooks) if notebooks else CHAPTERS_DIR
    todo = chapters(names, notebooks)
    if jobs < 1:
        raise BadArgument(f"--jobs must be at least 1, got {jobs}")
    if edition and not out_dir:
        raise BadArgument("--edition needs --out, the folder of the edition's pages")
    target = _check_out(out_dir) if out_dir else None
    roots = absolute_roots()   # a relative ROBGEN_CACHE / ROBGEN_DATA: from the folder we started in
    jobs = min(jobs, len(todo))
    cores = cores or os.cpu_count() or 1
    threads = max(1, cores // jobs)
    machine, commit = _machine(threads, jobs), _commit()   # the code as the run starts
    results: dict = {}
    _sweep_scratch()
    try:
        scratch, owner = _make_scratch()
    except OSError as err:
        raise SystemExit(f"cannot make a scratch folder in {tempfile.gettempdir()} ({err.strerror or err}); "
                         f"set TMPDIR to a folder you can write") from None
    run = _active = _Run(notebooks, scratch, roots)
    previous = {}

    def stop(signum, frame):
        if not run.stopping:
            run.stopping = True
            raise Stopped(signum)

    try:
        if threading.current_thread() is threading.main_thread():
            for sig in _STOP_SIGNALS:
                previous[sig] = signal.signal(sig, stop)
        print(f"executing {len(todo)} chapter(s), {jobs} at a time with {threads} thread(s) each", flush=True)
        start = time.perf_counter()
        share = os.path.join(scratch, "thread-share")
        _write_share(share, threads)
        with ThreadPoolExecutor(jobs) as pool:
            try:
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
                                         command=command or PROG, commit=commit)
                        _publish(done, os.path.join(target, name + ".ipynb"))
                    print(f"  {name}: {'done' if not error else 'FAILED'} in {seconds:.0f} s"
                          + (f" — {error}" if error else ""), flush=True)
            except BaseException:   # a signal (Stopped), or anything else: no chapter outlives the run
                run.stopping = True
                pool.shutdown(wait=False, cancel_futures=True)
                run.stop()
                raise
        print(f"all in {time.perf_counter() - start:.0f} s", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _active = None
        shutil.rmtree(scratch, ignore_errors=True)
        if owner is not None:
            os.close(owner)
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog=PROG, description="Execute the book's chapters with papermill, several at a time.")
    ap.add_argument("chapters", nargs="*", help="chapters to execute (default: all), e.g. 04_rdc or 04")
    ap.add_argument("--jobs", type=int, default=2, help="chapters executed at once (default 2)")
    ap.add_argument("--out", help="write the executed notebooks here (default: discard them; the cache keeps the work)")
    ap.add_argument("--edition", help="with --out: the pages are this edition of the book (title, provenance)")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a chapter parameter, as papermill's -p (repeatable)")
    ap.add_argument("--notebooks", help=argparse.SUPPRESS)   # another folder of notebooks than chapters/
    args = ap.parse_args(argv)
    command = f"{PROG} " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        results = execute(args.chapters, jobs=args.jobs, out_dir=args.out, params=[tuple(p) for p in args.p],
                          edition=args.edition, command=command, notebooks=args.notebooks)
    except BadArgument as err:
        print(f"{PROG}: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Stopped as err:
        print(f"stopped by {signal.Signals(err.signum).name}: the running chapters were ended", file=sys.stderr,
              flush=True)
        sys.exit(128 + err.signum)
    failed = [n for n, (_, error) in results.items() if error]
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (run one with papermill to see the whole traceback)")


if __name__ == "__main__":
    main()
