"""Run a Python command (the test session) in a network namespace of its own: a loopback and nothing else.

    python tests/netguard/isolate.py -m pytest -q      (what `make test` runs, after set-up and the data fetch)

In the namespace no process can route a packet off the machine, whatever opens the socket: pytest, the `aigc-tf`
and `python -c` children, notebook kernels, gRPC core, TF's C++ file systems, any non-Python child. The loopback is
brought up, so the tests' own servers on 127.0.0.1 / ::1 work; it is the namespace's own loopback, so a proxy or
DNS cache listening on the host's 127.0.0.x is out of reach too.

Root with CAP_SYS_ADMIN gets a plain network namespace; anyone else a user namespace around it that maps the user to
themselves (same uid and gid inside, so files, $HOME and the venv look the same). Where the platform refuses both
(no unprivileged user namespaces, a seccomp profile, not Linux), a forked probe finds out first, this prints one
line saying so and runs the command as is: tests/conftest.py's Python-level guard (tests/netguard/sitecustomize.py)
is then the only guard, and pytest's header says which one is active. AIGC_TF_NETNS=off skips the namespace.
"""

import ctypes
import os
import socket
import struct
import sys

ENV = "AIGC_TF_NETNS"  # for the command: the namespace's id (/proc/self/ns/net), or "unavailable: <why>"
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare: {os.strerror(code)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter() -> None:
    """Move this (single-threaded) process into a new network namespace with its loopback up; OSError if refused."""
    import fcntl

    uid, gid = os.geteuid(), os.getegid()
    try:
        _unshare(CLONE_NEWNET)  # enough for a privileged root
    except OSError:
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        if os.path.exists("/proc/self/setgroups"):
            _write("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a handle for the ioctls, never connected
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def probe() -> str | None:
    """None if a forked child could enter a namespace (and bring its loopback up), else why not."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            enter()
            with socket.create_server(("127.0.0.1", 0)) as server:  # the loopback works
                socket.create_connection(server.getsockname(), timeout=2).close()
            os._exit(0)
        except BaseException as err:  # noqa: BLE001 - the reason goes to the parent
            os.write(write, f"{type(err).__name__}: {err}".encode()[:500])
            os._exit(1)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        reason = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return None if status == 0 else (reason or f"probe exit status {status}")


def main(argv: list[str]) -> None:
    reason = "AIGC_TF_NETNS=off" if os.environ.get(ENV) == "off" else None
    if reason is None:
        try:
            reason = probe()
        except Exception as err:  # noqa: BLE001 - no fork, no /proc: not this platform
            reason = f"{type(err).__name__}: {err}"
    if reason is None:
        enter()
        os.environ[ENV] = os.readlink("/proc/self/ns/net")
    else:
        if os.environ.get(ENV) != "off":
            os.environ[ENV] = f"unavailable: {reason}"  # tests/conftest.py's header repeats it
        print(f"tests/netguard/isolate.py: no network namespace here ({reason}); "
              "the tests run with the Python-level guard only", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
