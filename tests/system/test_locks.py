"""One writer per folder (`aigc_tf.locks`), checked with real processes.

Ordering is checked through marker files, never through how fast something happens; the 30 s timeouts are only
guards against a hang.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from aigc_tf import AigcError
from aigc_tf.locks import LOCK_FILE, exclusive, waiting

ROOT = Path(__file__).resolve().parents[2]
GUARD = 30.0  # seconds; only a failure guard

PRELUDE = """\
import json, os, sys, time
from pathlib import Path
from aigc_tf import AigcError
from aigc_tf.locks import exclusive, waiting
"""

# Takes the lock, says so through a marker file, then holds it until killed (or until the stop file appears).
HOLDER = PRELUDE + """
folder, ready, stop = map(Path, sys.argv[1:4])
with exclusive(folder, "gan train"):
    ready.write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
"""

# Tries the lock once: exit 0 if taken, 3 with the one-line message if refused.
TRY_ONCE = PRELUDE + """
try:
    with exclusive(Path(sys.argv[1]), "second writer"):
        print("ACQUIRED")
except AigcError as err:
    print(err)
    sys.exit(3)
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _run(code, *args, timeout=GUARD):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _spawn(code, *args):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _wait_for(path: Path, proc=None, lines: int = 0):
    """Until `path` exists (and holds at least `lines` lines)."""
    deadline = time.monotonic() + GUARD
    while not path.exists() or (lines and len(path.read_text().splitlines()) < lines):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process ended before {path.name} appeared: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} did not appear within {GUARD} s")
        time.sleep(0.01)


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of `tmp_path / "run"`; yields (process, folder)."""
    folder, ready, stop = tmp_path / "run", tmp_path / "ready", tmp_path / "stop"
    proc = _spawn(HOLDER, folder, ready, stop)
    try:
        _wait_for(ready, proc)
        yield proc, folder
    finally:
        stop.touch()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=GUARD)


def _assert_refused(result, pid, what):
    assert result.returncode == 3, (result.stdout, result.stderr)
    message = result.stdout.strip()
    assert "\n" not in message
    assert "is in use by" in message and f"PID {pid}: {what} since " in message
    assert "wait for it to finish or stop it, or use another folder" in message
    return message


def test_second_process_is_refused_naming_the_holder(holder):
    proc, folder = holder
    message = _assert_refused(_run(TRY_ONCE, folder), proc.pid, "gan train")
    assert message.startswith(f"{folder} is in use by another aigc-tf process (PID {proc.pid}")
    assert proc.poll() is None  # the holder is untouched


def test_refused_when_the_test_process_holds_it(tmp_path):
    folder = tmp_path / "runs" / "gan"  # parents are created
    with exclusive(folder, "gan train"):
        _assert_refused(_run(TRY_ONCE, folder), os.getpid(), "gan train")
    assert _run(TRY_ONCE, folder).returncode == 0


def test_lock_file_holds_the_holder_as_json(tmp_path, holder):
    proc, folder = holder
    info = json.loads((folder / LOCK_FILE).read_text())
    assert info["pid"] == proc.pid and info["what"] == "gan train"

    mine = tmp_path / "mine"
    with exclusive(mine, "export of gan"):
        lines = (mine / LOCK_FILE).read_text().splitlines()
        assert len(lines) == 1
        info = json.loads(lines[0])
        assert info == {"pid": os.getpid(), "what": "export of gan", "since": info["since"]}
        assert info["since"].endswith("Z")
        datetime.strptime(info["since"], "%Y-%m-%dT%H:%M:%SZ")
    assert (mine / LOCK_FILE).exists()  # left in place after release
    with exclusive(mine, "x"):  # a shorter description replaces a longer one whole
        assert json.loads((mine / LOCK_FILE).read_text())["what"] == "x"


def test_sigkilled_holder_frees_the_lock_at_once(holder):
    proc, folder = holder
    _assert_refused(_run(TRY_ONCE, folder), proc.pid, "gan train")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=GUARD)
    result = _run(TRY_ONCE, folder)  # no stale lock: taken without waiting
    assert result.returncode == 0 and result.stdout.strip() == "ACQUIRED", (result.stdout, result.stderr)
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] != proc.pid


def test_empty_lock_file_still_gives_a_clear_refusal(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # a holder that has not written yet
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = _run(TRY_ONCE, folder)
    finally:
        os.close(fd)
    assert result.returncode == 3
    assert result.stdout.strip() == (f"{folder} is in use by another aigc-tf process (PID unknown); wait for it to "
                                     "finish or stop it, or use another folder")


# Waits for the lock, appending a line to `refused` each time a poll finds it held (the lock's own try, wrapped).
WAITER = PRELUDE + """
import aigc_tf.locks as locks
folder, refused, released, acquired = map(Path, sys.argv[1:5])
try_lock = locks._try_lock

def counted(fd):
    taken = try_lock(fd)
    if not taken:
        with refused.open("a") as out:
            out.write("refused\\n")
    return taken

locks._try_lock = counted
with waiting(folder, "export", timeout=30):
    acquired.write_text(json.dumps({"released_before": released.exists(),
                                    "refusals": len(refused.read_text().splitlines())}))
"""


def test_waiting_blocks_while_held_and_proceeds_on_release(tmp_path):
    folder = tmp_path / "model"
    refused, released, acquired = tmp_path / "refused", tmp_path / "released", tmp_path / "acquired"
    with exclusive(folder, "export of model"):
        waiter = _spawn(WAITER, folder, refused, released, acquired)
        _wait_for(refused, waiter, lines=2)  # it polled, was refused, and polled again: it waits
        assert waiter.poll() is None and not acquired.exists()
        released.touch()
    out, err = waiter.communicate(timeout=GUARD)
    assert waiter.returncode == 0, (out, err)
    report = json.loads(acquired.read_text())
    assert report["released_before"] is True and report["refusals"] >= 2


def test_waiting_gives_up_after_its_timeout(holder):
    proc, folder = holder
    code = PRELUDE + """
try:
    with waiting(Path(sys.argv[1]), "export", timeout=0.2):
        print("ACQUIRED")
except AigcError as err:
    print(err)
    sys.exit(3)
"""
    _assert_refused(_run(code, folder), proc.pid, "gan train")


EXPORTER = PRELUDE + """
model_dir, go = Path(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
with waiting(model_dir, "export of model", timeout=30):
    taken = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()]
    version = max(taken, default=0) + 1
    time.sleep(0.1)  # widen the window a lockless allocation would lose in
    (model_dir / str(version)).mkdir()  # raises if the number was taken meanwhile
print(version)
"""


def test_concurrent_exports_get_distinct_versions(tmp_path):
    model_dir, go = tmp_path / "serving" / "gan", tmp_path / "go"
    model_dir.mkdir(parents=True)
    procs = [_spawn(EXPORTER, model_dir, go) for _ in range(3)]
    go.touch()
    versions = []
    for proc in procs:
        out, err = proc.communicate(timeout=GUARD)
        assert proc.returncode == 0, err
        versions.append(int(out))
    assert sorted(versions) == [1, 2, 3]
    assert sorted(p.name for p in model_dir.iterdir()) == [".lock", "1", "2", "3"]


def test_nested_use_in_one_process_is_a_no_op(tmp_path):
    folder = tmp_path / "run"
    with exclusive(folder, "gan train"):
        with exclusive(folder / ".." / "run", "export of gan"):  # the same folder, spelled differently
            with waiting(folder, "export of gan", timeout=5):
                pass
        # leaving the inner blocks neither released the lock nor rewrote its holder
        _assert_refused(_run(TRY_ONCE, folder), os.getpid(), "gan train")
    result = _run(TRY_ONCE, folder)
    assert result.returncode == 0 and result.stdout.strip() == "ACQUIRED", (result.stdout, result.stderr)


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(ZeroDivisionError):
        with exclusive(folder, "gan train"):
            with exclusive(folder, "gan train"):
                1 / 0
    assert _run(TRY_ONCE, folder).returncode == 0
    with exclusive(folder, "gan train"):  # and this process can take it again
        pass


def test_another_thread_does_not_share_the_lock(tmp_path, monkeypatch):
    from aigc_tf import locks

    folder = tmp_path / "model"
    outcome = {}
    refusals, polled_twice = [], threading.Event()
    try_lock, waiter = locks._try_lock, None

    def counted(fd):  # the lock's own try, counting the waiting thread's refused polls
        taken = try_lock(fd)
        if not taken and threading.current_thread() is waiter:
            refusals.append(fd)
            if len(refusals) >= 2:
                polled_twice.set()
        return taken

    monkeypatch.setattr(locks, "_try_lock", counted)

    def refused():
        try:
            with exclusive(folder, "export"):
                outcome["refused"] = None
        except AigcError as err:
            outcome["refused"] = str(err)

    def waits():
        with waiting(folder, "export", timeout=GUARD):
            outcome["waited_for_release"] = released.is_set()

    released = threading.Event()
    with exclusive(folder, "gan train"):
        thread = threading.Thread(target=refused)
        thread.start()
        thread.join(GUARD)
        waiter = threading.Thread(target=waits)
        waiter.start()
        assert polled_twice.wait(GUARD)  # it polled, was refused, and polled again: it waits
        assert waiter.is_alive()
        released.set()
    waiter.join(GUARD)
    assert outcome["refused"].startswith(f"{folder} is in use by another thread of this process (PID {os.getpid()}")
    assert outcome["waited_for_release"] is True
