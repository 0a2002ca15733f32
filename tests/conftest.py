"""Shared fixtures: real offline data (fetched by `make test`), tiny configs, one tiny trained GAN run.

Two guards for the whole session, set before any test runs:
- the tests use their own `AIGC_TF_HOME` (a temporary folder; subprocesses and notebook kernels inherit it), in
  which only the fetched datasets and the evaluation classifier are the user's own, linked read-mostly: nothing a
  test writes lands in the user's cache;
- no test reaches the network, in two layers. `make test` runs pytest in a network namespace of its own with only a
  loopback (tests/netguard/isolate.py), so no process of the run, Python or not, has a route off the machine. Here,
  for every run (plain `pytest` too, and where the platform refuses namespaces), Python's socket connections,
  datagrams and name lookups for anything but this machine fail at once with a one-line reason, in pytest and in
  every child Python that inherits the environment (tests/netguard/sitecustomize.py, exported on PYTHONPATH);
  proxy variables are dropped. pytest's header names the guard in force. A test of "what happens offline" is then
  the same everywhere, and never downloads a 500 MB preset where a network exists.
"""

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from aigc_tf import AigcError, paths  # noqa: E402

SHARED_CACHE = ("data", "classifiers")  # fetched by `make test`, or trained once: shared with the user's cache


def _isolate_home() -> Path:
    user_home, test_home = paths.home(), Path(tempfile.mkdtemp(prefix="aigc_tf-test-home-"))
    for name in SHARED_CACHE:
        (user_home / name).mkdir(parents=True, exist_ok=True)
        (test_home / name).symlink_to(user_home / name, target_is_directory=True)
    os.environ["AIGC_TF_HOME"] = str(test_home)
    return test_home


NETGUARD = Path(__file__).resolve().parent / "netguard"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "grpc_proxy")


def _load_netguard():
    spec = importlib.util.spec_from_file_location("aigc_tf_tests_netguard", NETGUARD / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _guard_network():
    """The Python-level guard here and, through PYTHONPATH and AIGC_TF_NETGUARD, in every child Python."""
    netguard = _load_netguard()
    netguard.install()
    os.environ[netguard.ENV] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(NETGUARD))  # for tests that pass sys.path on as a child's PYTHONPATH
    for name in PROXY_VARIABLES:  # a proxy on the host's loopback would otherwise pass the guard's localhost rule
        os.environ.pop(name, None)
        os.environ.pop(name.upper(), None)


def in_own_network_namespace() -> bool:
    """True when tests/netguard/isolate.py started this session and it still runs in that namespace."""
    try:
        return os.environ.get("AIGC_TF_NETNS", "") == os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def network_guard_notice() -> str:
    if in_own_network_namespace():
        return ("network guard: own network namespace, loopback only (tests/netguard/isolate.py), for every process "
                "of the run; plus the Python socket guard (tests/netguard)")
    state = os.environ.get("AIGC_TF_NETNS", "")
    why = (f"this platform refused a network namespace ({state.removeprefix('unavailable: ')})"
           if state.startswith("unavailable") else "AIGC_TF_NETNS=off skipped the network namespace" if state == "off"
           else "`make test` adds a network namespace where the platform allows")
    return ("network guard: Python socket guard only, in pytest and child Pythons (tests/netguard); gRPC core, TF's "
            f"C++ file systems and non-Python children are unguarded: {why}")


def pytest_report_header(config):
    return network_guard_notice()


def pytest_sessionstart(session):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.get_verbosity() < 0:  # -q hides the header: say it anyway
        reporter.write_line(network_guard_notice())


TEST_HOME = _isolate_home()
_guard_network()


@pytest.fixture(scope="session")
def mnist_train():
    from aigc_tf.data import load_arrays

    try:
        return load_arrays("mnist", "train")
    except AigcError as err:
        pytest.fail(f"{err} (`make test` fetches it)")


@pytest.fixture(scope="session")
def tiny_gan_run(tmp_path_factory, mnist_train):
    """A GAN run of the tiny config, trained for 2 short epochs on real digits."""
    from aigc_tf.config import GANConfig
    from aigc_tf.gan.train import train_gan as train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny_gan"
    config = GANConfig.tiny(batch_size=500, epochs=2)
    result = train(config, run_dir, verbose=False)
    return run_dir, config, result


@pytest.fixture(scope="session")
def tiny_vae_run(tmp_path_factory, mnist_train):
    """A VAE of the tiny config, trained for 3 short epochs on real digits."""
    from aigc_tf.config import VAEConfig
    from aigc_tf.vae.train import train_vae as train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny_vae"
    return run_dir, train(VAEConfig.tiny(epochs=3), run_dir, verbose=False)


@pytest.fixture(scope="session")
def tiny_text_run(tmp_path_factory):
    """A tiny GPT-2 (real tokenizer) trained for 2 epochs of 4 steps on the SOTU corpus."""
    from aigc_tf.config import TextConfig
    from aigc_tf.text.train import train_text as train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny_gpt2"
    config = TextConfig.tiny(epochs=2)
    try:
        result = train(config, run_dir, verbose=False)
    except AigcError as err:
        pytest.fail(f"{err} (`make test` fetches the corpora)")
    return run_dir, config, result


@pytest.fixture(scope="session")
def tiny_text_model(tiny_text_run):
    from aigc_tf.text.models import load_text_run

    causal_lm, _ = load_text_run(tiny_text_run[0])
    return causal_lm


@pytest.fixture(scope="session")
def tiny_text_export(tiny_text_run, tmp_path_factory):
    """The tiny GPT-2 run exported for TF Serving, 8 new tokens by default: (run_dir, export_dir, max_new_tokens)."""
    from aigc_tf.text.export import export_text

    run_dir = tiny_text_run[0]
    export = export_text(run_dir, tmp_path_factory.mktemp("saved_models") / "gpt2", max_new_tokens=8,
                         precision="fp32")
    return run_dir, export, 8
