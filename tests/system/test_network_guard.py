"""No process of the test run reaches the network, and the tests' own localhost servers still work.

The same probe runs in the pytest process, in a `python -c` child and in a notebook kernel started as
tests/notebooks/test_notebooks.py starts them (nbclient, kernel "python3", a fresh process): a TCP connection to 1.1.1.1:443
and a name lookup of pypi.org must fail, and a connection to a server this session listens on at 127.0.0.1 must
succeed. Under `make test` (a network namespace of its own, tests/netguard/isolate.py) the probe also goes around
the Python-level guard (the C-level `_socket` type, a child without the guard, gRPC core) and must still fail.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from concurrent import futures
from pathlib import Path

import pytest

from conftest import in_own_network_namespace, network_guard_notice

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE, NAME = ("1.1.1.1", 443), "pypi.org"

namespace_only = pytest.mark.skipif(not in_own_network_namespace(),
                                    reason="no network namespace in this run: the Python-level guard is the only one")

# One script for every kind of process: prints {"outside": ..., "lookup": ..., "local": ..., "raw": ...} as JSON.
PROBE = textwrap.dedent("""
    import json, socket, _socket

    def attempt(action):
        try:
            action()
            return "connected"
        except OSError as err:
            return f"failed: {type(err).__name__}: {err}"

    def raw_connect():  # the C type under socket.socket: what a C library's connect() does, no Python guard
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        try:
            sock.settimeout(5)
            sock.connect(OUTSIDE)
        finally:
            sock.close()

    result = {"outside": attempt(lambda: socket.create_connection(OUTSIDE, timeout=5).close()),
              "lookup": attempt(lambda: socket.getaddrinfo(NAME, 443)),
              "local": attempt(lambda: socket.create_connection(("127.0.0.1", PORT), timeout=5).close())}
    if RAW:
        result["raw"] = attempt(raw_connect)
    print("PROBE " + json.dumps(result))
""")


def probe_source(port: int, raw: bool) -> str:
    return f"OUTSIDE, NAME, PORT, RAW = {OUTSIDE!r}, {NAME!r}, {port}, {raw}\n" + PROBE


def parse(output: str) -> dict:
    line = next((line for line in output.splitlines() if line.startswith("PROBE ")), None)
    assert line is not None, f"the probe printed no result:\n{output}"
    return json.loads(line[len("PROBE "):])


def assert_offline_but_local(result: dict, raw: bool):
    assert result["outside"].startswith("failed"), result
    assert result["lookup"].startswith("failed"), result
    assert result["local"] == "connected", result
    if raw:
        assert result["raw"].startswith("failed"), result


@pytest.fixture
def local_port():
    """A TCP server on 127.0.0.1 in this process (its backlog completes the probes' connections)."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield server.getsockname()[1]


def test_the_header_names_the_guard_in_force():
    notice = network_guard_notice()
    assert notice.startswith("network guard: ")
    assert ("namespace, loopback only" in notice) == in_own_network_namespace()


def test_pytest_process_cannot_connect_out_or_look_names_up(local_port):
    namespace = {}
    exec(probe_source(local_port, raw=in_own_network_namespace()), namespace)  # noqa: S102 - our own probe
    assert_offline_but_local(namespace["result"], raw=in_own_network_namespace())
    with pytest.raises(OSError, match="tests never reach the network"):
        socket.create_connection(OUTSIDE, timeout=5)
    with pytest.raises(socket.gaierror, match="tests never reach the network"):
        socket.getaddrinfo(NAME, 443)


def test_child_python_inherits_the_guard(local_port):
    done = subprocess.run([sys.executable, "-c", probe_source(local_port, raw=in_own_network_namespace())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = parse(done.stdout)
    assert_offline_but_local(result, raw=in_own_network_namespace())
    assert "tests never reach the network" in result["outside"], result  # the Python guard, not only the namespace


@namespace_only
def test_child_without_the_python_guard_is_still_offline(local_port):
    env = {k: v for k, v in os.environ.items() if k not in ("AIGC_TF_NETGUARD", "PYTHONPATH")}
    done = subprocess.run([sys.executable, "-c", probe_source(local_port, raw=True)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    result = parse(done.stdout)
    assert_offline_but_local(result, raw=True)
    assert "tests never reach the network" not in result["outside"], result  # the kernel refused, not the guard


@pytest.mark.slow
def test_notebook_kernel_inherits_the_guard(local_port, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # Started exactly as tests/notebooks/test_notebooks.py starts its kernels.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(probe_source(local_port, raw=in_own_network_namespace()))])
    NotebookClient(notebook, timeout=60, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    output = "".join(out.get("text", "") for out in notebook.cells[0].outputs if out.get("output_type") == "stream")
    result = parse(output)
    assert_offline_but_local(result, raw=in_own_network_namespace())
    assert "tests never reach the network" in result["outside"], result


def _grpc_echo_server():
    import grpc

    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("probe.Echo", {"Say": echo})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_grpc_on_localhost_works():
    import grpc

    server, port = _grpc_echo_server()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert channel.unary_unary("/probe.Echo/Say")(b"hello", timeout=10) == b"hello"
    finally:
        server.stop(None)


@namespace_only
def test_grpc_core_cannot_connect_out():
    """gRPC opens its sockets in C, out of the Python guard's reach: only the namespace stops it."""
    import grpc

    with grpc.insecure_channel(f"{OUTSIDE[0]}:{OUTSIDE[1]}") as channel:
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary("/probe.Echo/Say")(b"hello", timeout=5)
    assert raised.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
