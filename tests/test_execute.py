"""The executor (``python -m robgen_lib.book.execute``) run for real on a tiny notebook: stopping
it stops its chapters (papermill, the kernel and the kernel's children) and leaves no scratch
folder; a relative ROBGEN_CACHE reaches the kernel as one absolute path; a bad ``--out`` stops it
with one line and exit code 2 before any chapter runs."""
import ctypes
import os
import signal
import subprocess
import sys
import time
import uuid

import nbformat
import nbformat.v4 as v4
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PR_SET_CHILD_SUBREAPER = 36
STARTUP = 90   # seconds for the executor, papermill and the kernel to reach the notebook's long cell

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; signals as on Linux")


def _notebook(folder, name="sleepy"):
    """A notebook that writes its kernel's pid, a child's pid (in a session of its own, as a
    detached worker would be), what the kernel sees of the roots and its folder, then sleeps."""
    params = v4.new_code_cell('report = ""\nseconds = 60')
    params.metadata["tags"] = ["parameters"]
    work = v4.new_code_cell(
        "import json, os, subprocess, time\n"
        "from robgen_lib.core.runtime import cache_root, data_root\n"
        "child = subprocess.Popen(['sleep', str(seconds)], start_new_session=True)\n"
        "seen = {'kernel': os.getpid(), 'child': child.pid, 'cwd': os.getcwd(), 'cache_root': cache_root(),\n"
        "        'data_root': data_root(), 'env': {k: os.environ.get(k) for k in ('ROBGEN_CACHE', 'ROBGEN_DATA')}}\n"
        "with open(report + '.tmp', 'w') as f:\n"
        "    json.dump(seen, f)\n"
        "os.replace(report + '.tmp', report)\n"
        "time.sleep(seconds)\n"
        "child.kill()")
    nb = v4.new_notebook(cells=[params, work])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.makedirs(folder, exist_ok=True)
    nbformat.write(nb, os.path.join(folder, name + ".ipynb"))
    return str(folder)


def _stat(pid):
    """(state, ppid, pgrp, session) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def _gone(pid) -> bool:
    """True once ``pid`` no longer exists; a zombie left to this process (the subreaper) is reaped."""
    st = _stat(pid)
    if st and st[0] == "Z" and st[1] == os.getpid():
        os.waitpid(pid, os.WNOHANG)
        st = _stat(pid)
    return st is None


def _marked(marker):
    """The processes (the executor's descendants) whose environment carries ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker.encode() in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                pass
    return [pid for pid in found if not _gone(pid)]


def _wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.1)


@pytest.fixture
def subreaper():
    """Make this process the reaper of the executor's orphans (the kernel once papermill is gone,
    the watchdog once the executor is), so that a process that ended is seen gone, not a zombie."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture
def run_env(tmp_path):
    """The executor's environment: its own temporary folder (where its scratch folder goes) and a
    marker every process it starts inherits."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    marker = f"ROBGEN_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": ROOT, marker.split("=")[0]: marker.split("=")[1]}
    env.pop("ROBGEN_CACHE", None)
    env.pop("ROBGEN_DATA", None)
    return env, tmp, marker


def _start(args, env, cwd=ROOT):
    return subprocess.Popen([sys.executable, "-m", "robgen_lib.book.execute", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_report(report, executor):
    def ready():
        if executor.poll() is not None:
            pytest.fail(f"the executor ended early ({executor.returncode}): {executor.communicate()}")
        return os.path.exists(report)
    _wait_until(ready, STARTUP, "the notebook's long cell started")
    import json
    with open(report) as f:
        return json.load(f)


def _scratch(tmp):
    return sorted(e for e in os.listdir(tmp) if e.startswith("robgen-execute-"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_ends_every_process_of_the_running_chapter_and_removes_the_scratch_folder(
        sig, tmp_path, run_env, subreaper):
    env, tmp, marker = run_env
    report = str(tmp_path / "report.json")
    executor = _start(["--notebooks", _notebook(tmp_path / "nb"), "--jobs", "1", "-p", "report", report], env)
    try:
        seen = _wait_for_report(report, executor)
        kernel, child = seen["kernel"], seen["child"]
        chapter = [p for p in _marked(marker) if p != executor.pid]
        papermill = [p for p in chapter if b"papermill" in open(f"/proc/{p}/cmdline", "rb").read()]
        assert len(papermill) == 1 and _stat(papermill[0])[3] == papermill[0]   # a session (and group) of its own
        assert {kernel, child} <= set(chapter) and len(_scratch(tmp)) == 1

        executor.send_signal(sig)
        out, err = executor.communicate(timeout=30)
        assert executor.returncode == 128 + sig, (out, err)
        assert f"stopped by {sig.name}" in err
        _wait_until(lambda: not _marked(marker), 5, "every process of the chapter ended")
        _wait_until(lambda: _gone(kernel) and _gone(child) and all(_gone(p) for p in chapter), 10,
                    "every process of the chapter gone")
        assert _scratch(tmp) == [] and os.listdir(tmp) == []     # nor the kernel's connection file
    finally:
        if executor.poll() is None:
            executor.kill()
            executor.communicate()


def test_sigkill_of_the_executor_ends_its_chapter_and_the_scratch_folder_goes_too(tmp_path, run_env, subreaper):
    env, tmp, marker = run_env
    report = str(tmp_path / "report.json")
    executor = _start(["--notebooks", _notebook(tmp_path / "nb"), "--jobs", "1", "-p", "report", report], env)
    try:
        seen = _wait_for_report(report, executor)
        chapter = [p for p in _marked(marker) if p != executor.pid]
        assert {seen["kernel"], seen["child"]} <= set(chapter) and len(_scratch(tmp)) == 1

        executor.kill()                         # SIGKILL: nothing in the executor runs any more
        executor.communicate(timeout=10)
        assert executor.returncode == -signal.SIGKILL
        _wait_until(lambda: not _marked(marker), 10, "every process of the chapter ended")
        # papermill, kernel, the kernel's child, the watchdog: each ended (a zombie is reaped once it is ours)
        _wait_until(lambda: all(_gone(p) for p in chapter), 10, "every process of the chapter gone")
        _wait_until(lambda: not os.listdir(tmp), 5, "the scratch folder removed")
    finally:
        if executor.poll() is None:
            executor.kill()
            executor.communicate()


def test_a_relative_cache_is_one_folder_from_where_the_executor_started_and_stale_scratch_is_swept(
        tmp_path, run_env, monkeypatch):
    import fcntl

    from robgen_lib.core import runtime

    env, tmp, marker = run_env
    start = tmp_path / "start"
    start.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp / f"robgen-execute-{dead.pid}-old"               # no owner lock, no such process
    reused = tmp / f"robgen-execute-{os.getpid()}-reused"        # its pid lives on, but nobody holds its lock
    live = tmp / f"robgen-execute-{os.getpid()}-live"            # its lock is held
    for folder in (stale, reused, live):
        (folder / "tmp").mkdir(parents=True)
        (folder / "sleepy.ipynb").write_text("{}")
    (reused / ".owner").write_text("")
    (live / ".owner").write_text("")
    held = os.open(live / ".owner", os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)

    report = str(tmp_path / "report.json")
    env = {**env, "ROBGEN_CACHE": "rel-cache", "ROBGEN_DATA": "data/../rel-data"}
    executor = _start(["--notebooks", _notebook(tmp_path / "nb"), "--jobs", "1", "--out", "pages",
                       "-p", "report", report, "-p", "seconds", "0"], env, cwd=str(start))
    out, err = executor.communicate(timeout=120)
    os.close(held)
    assert executor.returncode == 0, (out, err)
    import json
    with open(report) as f:
        seen = json.load(f)
    assert seen["cwd"] == str(tmp_path / "nb")                       # the kernel runs elsewhere …
    cache, data = str(start / "rel-cache"), str(start / "rel-data")  # … and sees the starting folder's
    assert seen["env"] == {"ROBGEN_CACHE": cache, "ROBGEN_DATA": data}
    assert (seen["cache_root"], seen["data_root"]) == (cache, data)
    assert os.listdir(start / "pages") == ["sleepy.ipynb"]
    assert _scratch(tmp) == [live.name]                              # the dead executors' swept, the live one's kept

    monkeypatch.chdir(start)                                         # and in any process: absolute at resolution
    monkeypatch.setenv("ROBGEN_CACHE", "rel-cache")
    monkeypatch.setenv("ROBGEN_DATA", "~/d")
    assert runtime.cache_root() == cache and runtime.data_root() == os.path.expanduser("~/d")
    assert runtime.absolute_roots() == {"ROBGEN_CACHE": cache, "ROBGEN_DATA": os.path.expanduser("~/d")}


def test_an_out_that_is_a_file_stops_with_one_line_and_code_2_before_any_chapter(tmp_path, run_env, capsys):
    from robgen_lib.book.execute import main

    env, tmp, marker = run_env
    report = tmp_path / "report.json"
    nb = _notebook(tmp_path / "nb")
    page = tmp_path / "page.ipynb"
    page.write_text("not a folder")
    executor = _start(["--notebooks", nb, "--out", str(page), "-p", "report", str(report)], env)
    out, err = executor.communicate(timeout=60)
    assert executor.returncode == 2, (out, err)
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert str(page) in err and "is a file" in err and "give --out a folder" in err
    assert "Traceback" not in err and not report.exists() and os.listdir(tmp) == []

    cases = [(["--notebooks", nb, "--out", str(page / "sub")], f"lies under {page}, which is a file"),
             (["--notebooks", nb, "--jobs", "0"], "--jobs must be at least 1"),
             (["--notebooks", nb, "nope"], "no chapter 'nope'; the chapters are sleepy"),
             (["--notebooks", nb, "--edition", "E"], "--edition needs --out"),
             (["--notebooks", str(tmp_path / "missing")], "cannot list the notebooks")]
    if os.geteuid() != 0:   # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append((["--notebooks", nb, "--out", str(locked / "pages")], "is not writable"))
    for args, message in cases:
        with pytest.raises(SystemExit) as stop:
            main(args)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, (args, err)
    assert not report.exists()
