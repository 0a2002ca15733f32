"""Shared fixtures: real offline data (fetched by `make test`), tiny configs, one tiny trained GAN run.

Two guards for the whole session, set before any test runs:
- the tests use their own `AIGC_TF_HOME` (a temporary folder; subprocesses and notebook kernels inherit it), in
  which only the fetched datasets and the evaluation classifier are the user's own, linked read-mostly: nothing a
  test writes lands in the user's cache;
- no test reaches the network: connections and name lookups to anything but this machine fail at once. A test of
  "what happens offline" is then the same everywhere, and never downloads a 500 MB preset where a network exists.
"""

import errno
import os
import socket
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


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "", None)
_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo


def _is_local(host) -> bool:
    return host in LOCAL_HOSTS or str(host).startswith("127.")


def _guarded_connect(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        raise OSError(errno.ENETUNREACH, f"tests never reach the network ({address[0]}; tests/conftest.py)")
    return _connect(sock, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        raise socket.gaierror(socket.EAI_NONAME, f"tests never reach the network ({host}; tests/conftest.py)")
    return _getaddrinfo(host, *args, **kwargs)


TEST_HOME = _isolate_home()
socket.socket.connect, socket.getaddrinfo = _guarded_connect, _guarded_getaddrinfo


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
