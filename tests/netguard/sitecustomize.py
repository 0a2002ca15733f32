"""The tests' Python-level network guard, in the pytest process and in every Python process it starts.

tests/conftest.py installs it in pytest and exports this folder first on PYTHONPATH with AIGC_TF_NETGUARD=1, so
every child Python that inherits the environment (the `aigc-tf` commands, `python -c` scripts, notebook kernels,
their own children) imports this module at start-up and installs the same guard: a connection, datagram or name
lookup for anything but this machine fails at once with a one-line reason. It guards Python's `socket` module
only; code that opens sockets in C (gRPC core, TF's file systems) or a non-Python child is out of its reach. That
is what the network namespace of tests/netguard/isolate.py (`make test`) is for; this is the layer that still
holds where the platform refuses namespaces, and that names the cause when a test tries.

A `sitecustomize` that was already on the path (a distribution's own) still runs, after the guard.
"""

import errno
import importlib.machinery
import importlib.util
import os
import socket
import sys

ENV = "AIGC_TF_NETGUARD"  # "1": install the guard in this process (set by tests/conftest.py, inherited)
LOCAL_HOSTS = {"localhost", "ip6-localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""}
INET = (socket.AF_INET, socket.AF_INET6)
ORIGINAL = {"connect": socket.socket.connect, "connect_ex": socket.socket.connect_ex,
            "sendto": socket.socket.sendto, "getaddrinfo": socket.getaddrinfo,
            "gethostbyname": socket.gethostbyname, "gethostbyname_ex": socket.gethostbyname_ex}


def is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).lower().split("%")[0]  # an IPv6 scope ("::1%lo") names this machine's interface
    return host in LOCAL_HOSTS or host.startswith(("127.", "::ffff:127.")) or host.endswith(".localhost")


def _refused(host) -> OSError:
    return OSError(errno.ENETUNREACH, f"tests never reach the network ({host}; tests/netguard)")


def _connect(sock, address):
    if sock.family in INET and not is_local(address[0]):
        raise _refused(address[0])
    return ORIGINAL["connect"](sock, address)


def _connect_ex(sock, address):
    if sock.family in INET and not is_local(address[0]):
        return errno.ENETUNREACH
    return ORIGINAL["connect_ex"](sock, address)


def _sendto(sock, data, *args):  # sendto(data, address) or sendto(data, flags, address)
    if sock.family in INET and args and not is_local(args[-1][0]):
        raise _refused(args[-1][0])
    return ORIGINAL["sendto"](sock, data, *args)


def _lookup(name):
    def guarded(host, *args, **kwargs):
        if not is_local(host):
            raise socket.gaierror(socket.EAI_NONAME, f"tests never reach the network ({host}; tests/netguard)")
        return ORIGINAL[name](host, *args, **kwargs)
    guarded.__name__ = guarded.__qualname__ = name
    return guarded


def install() -> None:
    """Guard this process's `socket` module (idempotent)."""
    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = _connect, _connect_ex, _sendto
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        setattr(socket, name, _lookup(name))


def installed() -> bool:
    return socket.socket.connect is _connect


def _chain_next_sitecustomize() -> None:
    """Run the `sitecustomize` this one shadows, if the path has another one."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and os.path.abspath(spec.origin or "") != os.path.abspath(__file__):
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - site.py reports a failing sitecustomize the same way, then goes on
            print(f"Error in sitecustomize ({spec.origin}); set PYTHONVERBOSE for traceback: {err!r}", file=sys.stderr)


if __name__ == "sitecustomize":  # imported by site.py at start-up, not by conftest (which loads it under its own name)
    if os.environ.get(ENV) == "1":
        install()
    _chain_next_sitecustomize()
