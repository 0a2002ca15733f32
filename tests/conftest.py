"""Shared fixtures: real offline data (fetched by `make test`), tiny configs, one tiny trained GAN run."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from aigc_tf import AigcError  # noqa: E402


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
    from aigc_tf.text.models import load_text_run as load_run_model

    causal_lm, _ = load_run_model(tiny_text_run[0])
    return causal_lm


@pytest.fixture(scope="session")
def tiny_text_export(tiny_text_run, tmp_path_factory):
    """The tiny GPT-2 run exported for TF Serving, 8 new tokens by default: (run_dir, export_dir, max_new_tokens)."""
    from aigc_tf.text.export import export_text

    run_dir = tiny_text_run[0]
    export = export_text(run_dir, tmp_path_factory.mktemp("saved_models") / "gpt2", max_new_tokens=8,
                         precision="fp32")
    return run_dir, export, 8
