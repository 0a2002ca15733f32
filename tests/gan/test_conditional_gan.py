import json
import subprocess
import sys

import numpy as np
import pytest

from aigc_tf.config import GANConfig
from aigc_tf.gan.export import export_gan
from aigc_tf.gan.models import build_generator
from aigc_tf.gan.sample import generate, load_generator
from aigc_tf.gan.train import train_gan as train
from stock_server import serve


def test_the_label_input_changes_the_generated_image():
    generator = build_generator(GANConfig.tiny(condition="digit"))
    noise = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    same_noise = np.repeat(noise[:1], 2, axis=0)
    a, b = generate(generator, same_noise, labels=[3, 7])
    assert not np.allclose(a, b)
    c, d = generate(generator, same_noise, labels=[3, 3])
    np.testing.assert_allclose(c, d, atol=1e-6)


def test_every_gan_samples_plain_noise_unless_told_and_an_older_run_keeps_its_truncation():
    from aigc_tf.config import from_dict, to_json
    from aigc_tf.gan.models import TruncatedNoise, sampler

    def truncates(config):
        return any(isinstance(layer, TruncatedNoise) for layer in sampler(build_generator(config), config).layers)

    for condition in ("none", "digit", "cluster"):  # chosen on validation: bench/DECISIONS.md, both GANs
        assert GANConfig(condition=condition).truncation == 0.0
        assert not truncates(GANConfig.tiny(condition=condition))
        assert truncates(GANConfig.tiny(condition=condition, truncation=2.0))
    stored = json.loads(to_json(GANConfig(truncation=2.0)))  # a run folder written when 2.0 was the default
    assert from_dict(stored).truncation == 2.0


STEPS = 1200  # ~15 s: enough for the digits to follow their labels (label accuracy 0.33-0.47 over seeds 0-3)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory, mnist_train):
    """A small conditional GAN that has learnt to draw the digit asked for, if poorly: wider layers and a faster
    learning rate than the tiny config's (which after 200 steps still draws one grey blob for every label), and no
    EMA or truncation (the settings the thresholds below were measured with)."""
    run_dir = tmp_path_factory.mktemp("runs") / "cgan"
    config = GANConfig.tiny(condition="digit", batch_size=128, generator_units=(256,), discriminator_units=(256,),
                            learning_rate=2e-3, ema_decay=0.0, truncation=0.0)
    return run_dir, train(config, run_dir, steps=STEPS, verbose=False)


def test_conditional_gan_trains_with_the_xla_step(conditional_run):
    run_dir, result = conditional_run
    assert result.step == STEPS
    generator, config, _ = load_generator(run_dir)
    assert config.condition == "digit" and len(generator.inputs) == 2


@pytest.mark.slow
def test_conditional_export_takes_noise_and_labels(conditional_run, tmp_path):
    run_dir, _ = conditional_run
    export = export_gan(run_dir, tmp_path / "cgan")
    generator, config, _ = load_generator(run_dir)
    noise = np.random.default_rng(1).standard_normal((3, config.latent_dim)).astype(np.float32)
    (reply,) = serve(export, [{"inputs": {"noise": noise.tolist(), "labels": [0, 5, 9]}}])  # as a stock server
    assert "error" not in reply, reply
    np.testing.assert_allclose(np.array(reply["images"]).ravel(), generate(generator, noise, [0, 5, 9]).ravel(),
                               atol=1e-5)


@pytest.mark.slow
def test_eval_reports_label_accuracy_and_sample_draws_a_digit(conditional_run, tmp_path):
    run_dir, _ = conditional_run
    cli = [sys.executable, "-m", "aigc_tf", "gan"]
    evaluated = subprocess.run(cli + ["eval", "--run", str(run_dir)], capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    report = json.loads(evaluated.stdout)
    # A generator that ignores its labels is right by chance, 1 in 10 (the labels asked for are 0-9 in turn):
    assert report["label_accuracy"] > 0.25  # measured 0.33-0.47 for seeds 0-3 after STEPS steps

    from aigc_tf.gan.sample import draw
    from aigc_tf.gan.train import GAN
    from aigc_tf.metrics.classifier import load_classifier

    generator, config, _ = load_generator(run_dir)
    classifier = load_classifier("mnist", verbose=0)
    images, labels = draw(generator, config, report["num_samples"], seed=0)  # the samples eval judged
    predicted = classifier.features_and_probabilities(images)[1].argmax(axis=1)
    assert np.mean(predicted == labels) == pytest.approx(report["label_accuracy"])
    shuffled = np.random.default_rng(0).permutation(labels)  # the same images, judged against other labels
    untrained, _ = draw(GAN(config).generator, config, report["num_samples"], seed=0)  # the same G before training
    assert np.mean(predicted == shuffled) < 0.15 and classifier.accuracy(untrained, labels) < 0.15
    sampled = subprocess.run(cli + ["sample", "--run", str(run_dir), "--digit", "7", "--out", str(tmp_path / "7.png")],
                             capture_output=True, text=True, timeout=300)
    assert sampled.returncode == 0 and (tmp_path / "7.png").exists()


@pytest.mark.slow
def test_label_accuracy_is_high_for_the_asked_digit_and_low_for_another(conditional_run, monkeypatch, tmp_path):
    """`evaluate_gan` with stand-in generators that draw real test digits: of the label asked for (accuracy near the
    classifier's own), or of the next label (near zero). A mix-up of images and labels would fail one of them."""
    import tensorflow as tf

    from aigc_tf.data import load_arrays
    from aigc_tf.gan import evaluate

    _, config, _ = load_generator(conditional_run[0])
    test = load_arrays("mnist", "test")
    by_label = [test.images[test.labels == digit] for digit in range(10)]

    def stand_in(shift):
        def generator(inputs, training=False):
            _, labels = inputs
            digits = [by_label[(int(label) + shift) % 10][i % 50] for i, label in enumerate(labels.numpy())]
            return tf.constant(np.stack(digits).astype(np.float32) / 127.5 - 1.0)  # G's tanh range
        return lambda run_dir, **_: (generator, config, 0)

    monkeypatch.setattr(evaluate, "load_generator", stand_in(0))
    right = evaluate.evaluate_gan(tmp_path, verbose=0)
    monkeypatch.setattr(evaluate, "load_generator", stand_in(1))
    wrong = evaluate.evaluate_gan(tmp_path, verbose=0)
    assert right["label_accuracy"] > 0.9 and wrong["label_accuracy"] < 0.2
    assert right["label_accuracy"] <= right["classifier_test_accuracy"] + 0.05
