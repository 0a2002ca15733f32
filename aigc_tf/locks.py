"""One writer per folder: an OS lock held for a writer's lifetime.

Two `aigc-tf gan train --out runs/gan` at once would interleave checkpoints and history rows in one folder, and two
exports of one model could both pick the same next version. A writer therefore holds `fcntl.flock` on
`<folder>/.lock` for as long as it writes:
- the kernel releases the lock when the process ends, however it ends (SIGKILL included), so a crashed writer
  never leaves a stale lock behind and no clean-up is needed;
- the lock file holds the holder's PID, what it does and since when (one line of JSON), so a refused writer is
  told who holds it;
- the file itself is left in place: deleting a lock file races with a process that has just opened it.
flock works on local file systems; on NFS it depends on the client (Linux emulates it with NFS byte-range locks,
other clients may not lock at all), so keep concurrent writers of one folder on one machine.

`exclusive` refuses a second writer at once (training: a second trainer is a mistake); `waiting` waits its turn
(export: two exports of one model both succeed, one after the other, with distinct versions).

A thread takes a folder's lock once: flock on a second descriptor of the same file conflicts even within the
process that holds the first one, so a nested `exclusive`/`waiting` of a folder this thread already holds (an export
from a notebook that holds the run's lock) is a no-op instead of a refusal of itself. Other threads of the process
do not share it: they wait or are refused like another process (two exports from a thread pool still get distinct
versions). A child made by `fork` holds nothing either, but the descriptor it inherits keeps the lock held until
the child exits too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from aigc_tf import AigcError

LOCK_FILE = ".lock"
POLL_SECONDS = 0.05

# Folders held in this process: resolved path -> [holding thread, nesting depth]; see the module docstring for why.
_held: dict[Path, list[int]] = {}
_held_guard = threading.Lock()


def _forget_in_child() -> None:
    global _held_guard
    _held.clear()  # a forked child is not the holder, whatever its parent held
    _held_guard = threading.Lock()  # another thread may have held the guard at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _holder(path: Path) -> str:
    """Who holds the lock, as the refusal names it; an empty or half-written lock file only loses the details."""
    try:
        info = json.loads(path.read_text())
        who = f"PID {info['pid']}: {info.get('what', 'a writer')} since {info.get('since', '?')}"
        if info["pid"] == os.getpid():
            return f"another thread of this process ({who})"
        return f"another aigc-tf process ({who})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another aigc-tf process (PID unknown)"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


@contextlib.contextmanager
def _locked(folder: Path, what: str, timeout: float):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    me = threading.get_ident()
    with _held_guard:
        entry = _held.get(key)
        nested = entry is not None and entry[0] == me
        if nested:
            entry[1] += 1
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise AigcError(f"{folder} is in use by {_holder(path)}; wait for it to finish or stop it, "
                                "or use another folder")
            time.sleep(POLL_SECONDS)
        since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what, "since": since}).encode() + b"\n", 0)
        with _held_guard:
            _held[key] = [me, 1]
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def exclusive(folder: Path, what: str):
    """Hold `folder`'s lock for the block (the folder is created if needed); if another process holds it, raise
    `AigcError` at once, naming its PID. `what` (e.g. "gan train") is what a refused writer is told. A nested use
    on a folder this thread already holds is a no-op. OSError (e.g. a read-only folder) is left to the caller."""
    return _locked(folder, what, timeout=0.0)


def waiting(folder: Path, what: str, timeout: float = 600.0):
    """Like `exclusive`, but wait up to `timeout` seconds for the holder to finish (polling every 0.05 s) before
    refusing with the same `AigcError`; for short critical sections such as taking an export's version number."""
    return _locked(folder, what, timeout=timeout)
