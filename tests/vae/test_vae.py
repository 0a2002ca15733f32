import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from aigc_tf.config import VAEConfig
from aigc_tf.vae.models import kl_divergence, reconstruction_nll
from aigc_tf.vae.evaluate import elbo_report
from aigc_tf.vae.models import build_vae
from aigc_tf.vae.sample import decode, interpolation, load_vae, manifold
from aigc_tf.vae.train import train_vae as train


def test_kl_of_known_gaussians():
    assert float(kl_divergence(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.float32))[0]) == pytest.approx(0.0)
    mean, log_var = np.array([[1.0, -2.0]], np.float32), np.log(np.array([[0.5, 2.0]], np.float32))
    # KL(N(m, s^2) || N(0, 1)) = 1/2 (s^2 + m^2 - 1 - log s^2), summed over dimensions
    expected = sum(0.5 * (v + m * m - 1 - math.log(v)) for m, v in ((1.0, 0.5), (-2.0, 2.0)))
    assert float(kl_divergence(mean, log_var)[0]) == pytest.approx(expected, rel=1e-5)


def test_reconstruction_nll_is_summed_binary_cross_entropy():
    images = np.zeros((1, 28, 28, 1), np.float32)
    images[0, 0, 0, 0] = 1.0
    logits = np.zeros_like(images)  # p = 0.5 everywhere: -log 0.5 per pixel
    assert float(reconstruction_nll(images, logits)[0]) == pytest.approx(784 * math.log(2), rel=1e-5)
    logits[0, 0, 0, 0] = 20.0  # the lit pixel predicted confidently: its term goes to ~0
    assert float(reconstruction_nll(images, logits)[0]) == pytest.approx(783 * math.log(2), rel=1e-4)


def test_elbo_improves_and_every_figure_is_written(tiny_vae_run):
    run_dir, result = tiny_vae_run
    losses = [float(row["val_loss"]) for row in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    for name in ("reconstructions", "prior_samples", "interpolation", "manifold", "gif", "loss_curve", "weights"):
        assert result.outputs[name].exists(), name


def test_reloaded_vae_reports_consistent_elbo_terms(tiny_vae_run):
    vae, config = load_vae(tiny_vae_run[0])
    report = elbo_report(vae, config)
    assert report["elbo"] == pytest.approx(-(report["reconstruction"] + report["kl"]))
    assert 0 < report["kl"] and 50 < report["reconstruction"] < 784 * math.log(2)
    assert interpolation(vae, np.zeros((28, 28, 1)), np.ones((28, 28, 1)), steps=5).shape == (5, 28, 28, 1)
    assert manifold(vae, size=3).shape == (9, 28, 28, 1)
    images = decode(vae, np.zeros((2, 2)))
    assert images.min() >= 0 and images.max() <= 1


def test_untrained_vae_is_worse_than_trained(tiny_vae_run):
    vae, config = load_vae(tiny_vae_run[0])
    assert elbo_report(vae, config)["elbo"] > elbo_report(build_vae(config), config)["elbo"]


@pytest.mark.slow
def test_encoder_and_decoder_exports_run_in_a_fresh_process(tiny_vae_run, tmp_path):
    from aigc_tf.vae.export import export_vae

    run_dir, _ = tiny_vae_run
    decoder_dir, encoder_dir = export_vae(run_dir, tmp_path)
    assert decoder_dir == tmp_path / "vae_decoder" / "1" and encoder_dir == tmp_path / "vae_encoder" / "1"
    vae, _ = load_vae(run_dir)
    image = np.full((1, 28, 28, 1), 0.25, np.float32)
    np.save(tmp_path / "image.npy", image)
    script = textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        enc = tf.saved_model.load({str(encoder_dir)!r}).signatures["serving_default"]
        dec = tf.saved_model.load({str(decoder_dir)!r}).signatures["serving_default"]
        stats = enc(images=tf.constant(np.load({str(tmp_path / 'image.npy')!r})))
        out = dec(latent=stats["mean"])["images"].numpy()
        print(json.dumps({{"mean": stats["mean"].numpy().tolist(), "image": out.ravel()[:50].tolist()}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout)
    mean, _ = vae.encode(image)
    np.testing.assert_allclose(served["mean"], np.asarray(mean), atol=1e-5)
    np.testing.assert_allclose(served["image"], np.asarray(vae(image)).ravel()[:50], atol=1e-5)


def test_rerunning_resumes_the_vae_from_its_backup(tiny_vae_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_vae_run[0], copy)
    resumed = train(VAEConfig.tiny(epochs=4), copy, verbose=False)
    assert [int(row["epoch"]) for row in resumed.history] == [0, 1, 2, 3]


def test_conv_architecture_trains_and_round_trips(tmp_path, mnist_train):
    result = train(VAEConfig.tiny(architecture="conv", latent_dim=4, epochs=1), tmp_path / "conv", steps=3,
                   verbose=False)
    vae, config = load_vae(tmp_path / "conv")
    assert config.architecture == "conv" and result.outputs["prior_samples"].exists()
    assert np.asarray(vae(np.zeros((2, 28, 28, 1), np.float32))).shape == (2, 28, 28, 1)


@pytest.mark.slow
def test_saved_model_cli_runs_the_vae_decoder(tiny_vae_run, tmp_path):
    from aigc_tf.vae.export import export_vae

    decoder_dir, _ = export_vae(tiny_vae_run[0], tmp_path)
    np.save(tmp_path / "latent.npy", np.zeros((3, 2), np.float32))
    done = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run", "--dir",
                           str(decoder_dir), "--tag_set", "serve", "--signature_def", "serving_default", "--inputs",
                           f"latent={tmp_path / 'latent.npy'}", "--outdir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.load(tmp_path / "out" / "images.npy").shape == (3, 28, 28, 1)
