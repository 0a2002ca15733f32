"""Adversarial examples: the attacks' arithmetic, their budgets and seeds, adversarial training, the GAN's
discriminator and the `aigc-tf robust` command end to end.

The attacks run against the shipped evaluation classifier on 100 real test digits; training tests use tiny CNNs on
real digits for a few epochs; the discriminator comes from the session's tiny GAN run.
"""

import json
import shutil

import numpy as np
import pytest

from aigc_tf import AigcError
from aigc_tf.cli import main


@pytest.fixture(scope="module")
def digits():
    """100 held-out digits (a fixed random subset: the split itself is sorted by label) in [0, 1], and labels."""
    from aigc_tf.data import load_arrays
    from aigc_tf.robustness.run import subset

    test = load_arrays("mnist", "test")
    rows = subset(len(test), 100)
    return test.images[rows].astype(np.float32) / 255.0, test.labels[rows]


@pytest.fixture(scope="module")
def classifier():
    from aigc_tf.metrics.classifier import load_classifier

    return load_classifier("mnist", train_if_missing=False).model


def accuracy(model, images, labels) -> float:
    return float(np.mean(np.asarray(model(images, training=False)).argmax(1) == labels))


def signed_sum_model():
    """logits = (s, -s), s = sum of pixels / 784: the loss of class 0 falls as any pixel brightens and the loss of
    class 1 rises, so the sign of the input gradient is known by hand (-1 for label 0, +1 for label 1). (Unscaled,
    the logits of ~+-400 would saturate the softmax and the gradient would round to exactly 0.)"""
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.layers[-1].set_weights([np.tile([[1.0, -1.0]], (784, 1)).astype(np.float32) / 784, np.zeros(2, np.float32)])
    return model


# ---------------------------------------------------------------------------------------------------- arithmetic
def test_project_clips_to_the_ball_and_the_pixel_range():
    from aigc_tf.robustness.attacks import project

    clean = np.array([0.0, 0.5, 1.0, 0.9], np.float32)
    moved = np.array([-0.3, 0.9, 0.95, 1.3], np.float32)
    # ball [x - 0.2, x + 0.2] first, then [0, 1]: 0 stays at the range, 0.9 stops at 0.7, 1.3 at 1.0 (range)
    np.testing.assert_allclose(project(moved, clean, 0.2).numpy(), [0.0, 0.7, 0.95, 1.0])


def test_fgsm_and_pgd_step_along_the_hand_computed_gradient_sign():
    from aigc_tf.robustness.attacks import fgsm, pgd

    model = signed_sum_model()
    images = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    labels = np.array([0, 1, 0, 1])
    down, up = labels == 0, labels == 1
    adversarial = fgsm(model, images, labels, 0.25).numpy()
    np.testing.assert_allclose(adversarial[down], np.clip(images[down] - 0.25, 0, 1), atol=1e-6)
    np.testing.assert_allclose(adversarial[up], np.clip(images[up] + 0.25, 0, 1), atol=1e-6)
    # PGD without a random start: three steps of 0.1 walk to the ball's edge (0.25) and stop there.
    adversarial = pgd(model, images, labels, 0.25, steps=3, step_size=0.1, random_start=False).numpy()
    np.testing.assert_allclose(adversarial[down], np.clip(images[down] - 0.25, 0, 1), atol=1e-6)
    np.testing.assert_allclose(adversarial[up], np.clip(images[up] + 0.25, 0, 1), atol=1e-6)


# ---------------------------------------------------------------------------------------------------- on real digits
def test_epsilon_zero_leaves_images_and_predictions_unchanged(classifier, digits):
    from aigc_tf.robustness.attacks import fgsm, pgd

    images, labels = digits
    clean_predictions = np.asarray(classifier(images, training=False)).argmax(1)
    for adversarial in (fgsm(classifier, images, labels, 0.0), pgd(classifier, images, labels, 0.0, steps=3)):
        np.testing.assert_array_equal(adversarial.numpy(), images)
        np.testing.assert_array_equal(np.asarray(classifier(adversarial, training=False)).argmax(1),
                                      clean_predictions)


def test_attacks_lower_accuracy_and_pgd_is_at_least_as_strong_as_fgsm(classifier, digits):
    from aigc_tf.robustness.attacks import fgsm, per_example_loss, pgd

    images, labels = digits
    clean = accuracy(classifier, images, labels)
    assert clean >= 0.95
    for epsilon in (0.1, 0.2):
        by_fgsm = fgsm(classifier, images, labels, epsilon)
        by_pgd = pgd(classifier, images, labels, epsilon, steps=10, seed=(0, 0))
        fgsm_accuracy, pgd_accuracy = accuracy(classifier, by_fgsm, labels), accuracy(classifier, by_pgd, labels)
        assert fgsm_accuracy < clean - 0.1, (epsilon, clean, fgsm_accuracy)
        # Not guaranteed for every image (PGD's random start can begin worse than x itself), but on a batch ten
        # re-read gradients find more than one linear step: fewer correct answers and a higher mean loss.
        assert pgd_accuracy <= fgsm_accuracy, (epsilon, pgd_accuracy, fgsm_accuracy)
        assert (np.mean(per_example_loss(classifier, by_pgd, labels))
                > np.mean(per_example_loss(classifier, by_fgsm, labels)))
    assert pgd_accuracy < 0.2  # epsilon 0.2: a standard classifier reads almost nothing right


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_adversarial_digits_respect_the_budget_and_the_pixel_range(attack, classifier, digits):
    from aigc_tf.robustness.attacks import attack_batches, compiled_attack

    images, labels = digits
    attack_fn = compiled_attack(classifier, attack, steps=3)
    for epsilon in (0.05, 0.3):
        adversarial = attack_batches(attack_fn, images, labels, epsilon, batch_size=64)  # two batches, one short
        delta = np.abs(adversarial - images)
        assert adversarial.shape == images.shape and adversarial.dtype == np.float32
        assert delta.max() <= epsilon + 1e-6
        assert delta.max() >= epsilon - 1e-6  # and it uses the budget
        assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0


def test_the_same_seed_gives_the_same_adversarial_digits(classifier, digits):
    from aigc_tf.robustness.attacks import attack_batches, compiled_attack, pgd

    images, labels = digits[0][:32], digits[1][:32]
    first = pgd(classifier, images, labels, 0.2, steps=2, seed=(7, 1)).numpy()
    np.testing.assert_array_equal(first, pgd(classifier, images, labels, 0.2, steps=2, seed=(7, 1)).numpy())
    assert not np.array_equal(first, pgd(classifier, images, labels, 0.2, steps=2, seed=(8, 1)).numpy())
    attack_fn = compiled_attack(classifier, "pgd", steps=2)  # the batched, traced path too
    np.testing.assert_array_equal(attack_batches(attack_fn, images, labels, 0.2, seed=3),
                                  attack_batches(attack_fn, images, labels, 0.2, seed=3))


# ---------------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny_training(digits):
    """A tiny CNN trained on 2,000 real digits for 3 epochs, the standard way and adversarially (epsilon 0.3,
    reached after one epoch of ramp: at full budget from the first step, so small a network predicts one class)."""
    from aigc_tf.data import load_arrays
    from aigc_tf.robustness.config import RobustnessConfig
    from aigc_tf.robustness.run import subset
    from aigc_tf.robustness.train import train_classifier

    train = load_arrays("mnist", "train")
    rows = subset(len(train), 2000)
    x, y = train.images[rows].astype(np.float32) / 255.0, train.labels[rows]
    config = RobustnessConfig.tiny(filters=(16,), epochs=3, batch_size=50, warmup_epochs=1)
    return config, {adversarial: train_classifier(config, x, y, *digits, adversarial=adversarial, verbose=False)
                    for adversarial in (False, True)}


def test_adversarial_training_raises_robust_accuracy(tiny_training, digits):
    from aigc_tf.robustness.attacks import pgd

    _, trained = tiny_training
    images, labels = digits
    standard, robust = trained[False].model, trained[True].model
    assert accuracy(standard, images, labels) >= 0.85 and accuracy(robust, images, labels) >= 0.7
    robust_accuracy = {name: accuracy(model, pgd(model, images, labels, 0.2, steps=10), labels)
                       for name, model in (("standard", standard), ("robust", robust))}
    assert robust_accuracy["robust"] >= robust_accuracy["standard"] + 0.2, robust_accuracy


def test_robust_training_is_seeded_and_ramps_epsilon(tiny_training, digits):
    from aigc_tf.data import load_arrays
    from aigc_tf.robustness.run import subset
    from aigc_tf.robustness.train import train_classifier

    config, trained = tiny_training
    # 40 updates per epoch; epsilon at update t is 0.3 * min(1, (t + 1) / 40): epoch 1 averages 0.3 * 20.5 / 40
    assert trained[True].history["epsilon"] == pytest.approx([0.3 * 20.5 / 40, 0.3, 0.3])
    assert trained[False].history["epsilon"] == [0.0] * config.epochs
    train = load_arrays("mnist", "train")
    rows = subset(len(train), 2000)
    again = train_classifier(config, train.images[rows].astype(np.float32) / 255.0, train.labels[rows], *digits,
                             adversarial=True, verbose=False)
    for a, b in zip(again.model.get_weights(), trained[True].model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------------- discriminator
def test_discriminator_is_restored_as_the_training_resume_restores_it(tiny_gan_run):
    from aigc_tf.gan.train import GAN
    from aigc_tf.gan import clusters
    from aigc_tf.robustness.discriminator import load_gan_networks, realness

    run_dir, config, result = tiny_gan_run
    resumed = GAN(config)
    resumed.restore(run_dir / "checkpoints")
    loaded = load_gan_networks(run_dir)
    assert loaded.step == result.step
    images = np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
    nearest = clusters.assign(images, clusters.load(run_dir).centroids)  # D judges each image with its cluster
    logits = np.asarray(resumed.discriminator([images * 2 - 1, nearest]))[:, 0]
    np.testing.assert_allclose(realness(loaded, images), 1 / (1 + np.exp(-logits)), rtol=1e-5)
    noise = np.random.default_rng(1).standard_normal((4, config.latent_dim)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded.generator(noise, training=False)),
                               np.asarray(resumed.sampling_generator(noise, training=False)), atol=1e-6)


def test_a_missing_or_mismatched_gan_run_is_one_clear_error(tiny_gan_run, tmp_path):
    from aigc_tf import config as config_lib
    from aigc_tf.robustness.discriminator import load_gan_networks

    with pytest.raises(AigcError, match="does not exist"):
        load_gan_networks(tmp_path / "no_such_run")
    for name, changes in (("wider", dict(discriminator_units=(48,))), ("spectral", dict(spectral_norm=True))):
        other = tmp_path / name  # the tiny run's checkpoint under a config it was not trained with
        shutil.copytree(tiny_gan_run[0] / "checkpoints", other / "checkpoints")
        config_lib.save(tiny_gan_run[1].replace(**changes), other / "config.json")
        with pytest.raises(AigcError, match="does not match"):  # never a randomly initialised network
            load_gan_networks(other)


# ---------------------------------------------------------------------------------------------------- the command
def test_subsets_are_fixed_and_cover_every_class():
    from aigc_tf.data import load_arrays
    from aigc_tf.robustness.run import figure_epsilons, subset

    test = load_arrays("mnist", "test")  # sorted by label: a first-N slice would hold only 0s and 1s
    rows = subset(len(test), 200)
    np.testing.assert_array_equal(rows, subset(len(test), 200))
    assert set(test.labels[rows]) == set(range(10))
    assert figure_epsilons((0.0, 0.05, 0.1, 0.15, 0.2, 0.3)) == [0.15, 0.3]


@pytest.mark.slow
def test_robust_command_end_to_end(tiny_gan_run, tmp_path, capsys):
    import keras
    from PIL import Image

    out = tmp_path / "robust"
    argv = ["robust", "--out", str(out), "--gan-run", str(tiny_gan_run[0]), "--epsilons", "0.2,0", "--pgd-steps",
            "2", "--epochs", "1", "--num-test", "100", "--num-train", "500", "--seed", "1"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    for name in ("robustness.json", "accuracy_vs_epsilon.png", "adversarial_examples.png",
                 "robust_classifier.keras", "tensorboard"):
        assert str(out / name) in err  # every output path is printed
    report = json.loads((out / "robustness.json").read_text())
    assert report["status"] == "complete" and report["seed"] == 1 and report["epsilons"] == [0.0, 0.2]
    assert report["settings"]["pgd_steps"] == 2 and report["settings"]["gan_run"] == str(tiny_gan_run[0])
    assert report["data"]["test_digits"] == 100 and report["data"]["train_digits"] == 500
    for key in ("evaluation", "standard", "robust"):
        curves = report["classifiers"][key]
        assert len(curves["fgsm"]) == len(curves["pgd"]) == 2 and curves["fgsm"][0] == curves["pgd"][0]
    assert report["classifiers"]["evaluation"]["pgd"][1] < report["classifiers"]["evaluation"]["pgd"][0]
    d = report["discriminator"]
    from aigc_tf.data import load_arrays
    from aigc_tf.gan import clusters
    from aigc_tf.gan.sample import draw
    from aigc_tf.robustness.discriminator import load_gan_networks, random_sign_noise
    from aigc_tf.robustness.run import subset

    gan = load_gan_networks(tiny_gan_run[0])
    test = load_arrays("mnist", "test")
    digits = test.images[subset(len(test), 100)].astype(np.float32) / 255.0  # the report's 100 test digits

    def mean_sigmoid(images):  # by hand: pixels to G's [-1, 1], each image judged with its nearest cluster
        logits = np.asarray(gan.discriminator([images * 2 - 1, clusters.assign(images, gan.centroids)]))[:, 0]
        return float(np.mean(1 / (1 + np.exp(-logits))))

    assert d["clean"] == pytest.approx(mean_sigmoid(digits), rel=1e-4)
    assert d["random_sign_noise"][1] == pytest.approx(mean_sigmoid(random_sign_noise(digits, 0.2, seed=1)), rel=1e-4)
    samples, _ = draw(gan.generator, gan.config, report["settings"]["gan_samples"], seed=1)
    assert d["generated"] == pytest.approx(mean_sigmoid(samples), rel=1e-4)
    assert d["fgsm"][0] == d["pgd"][0] == d["random_sign_noise"][0] == pytest.approx(d["clean"])
    for png in ("accuracy_vs_epsilon.png", "adversarial_examples.png"):
        with Image.open(out / png) as image:
            assert min(image.size) > 300
    assert list((out / "tensorboard" / "robust").rglob("events.out.tfevents.*"))
    model = keras.saving.load_model(out / "robust_classifier.keras", safe_mode=True)
    assert model.output_shape == (None, 10)

    from aigc_tf.robustness.run import prepare_folder

    prepare_folder(out)  # a second run may reuse the folder: it starts with fresh TensorBoard logs
    assert not (out / "tensorboard").exists()


@pytest.mark.parametrize("flags, message", [(["--epsilons", "0,1.5"], "--epsilons must lie in [0, 1]"),
                                            (["--epsilons", "-0.1"], "--epsilons must lie in [0, 1]"),
                                            (["--train-epsilon", "2"], "--train-epsilon must lie in [0, 1]")])
def test_a_bad_epsilon_is_one_line(flags, message, tmp_path, capsys):
    assert main(["robust", "--out", str(tmp_path / "r"), *flags]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("aigc-tf: error:") and message in last
    assert not (tmp_path / "r").exists()  # nothing trained or written


def test_a_missing_gan_run_or_a_foreign_folder_is_one_line(tmp_path, capsys):
    assert main(["robust", "--out", str(tmp_path / "r"), "--gan-run", str(tmp_path / "no_gan")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("aigc-tf: error:") and "--gan-run" in last and "does not exist" in last
    assert not (tmp_path / "r").exists()

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["robust", "--out", str(tmp_path / "mine")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is not a robustness run folder; choose a new --out folder" in last
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_robust_command_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["robust", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: aigc-tf robust" in out
    assert all(flag in out for flag in ("--gan-run", "--epsilons", "--pgd-steps", "--epochs", "--seed"))


def test_epsilons_that_are_not_numbers_are_a_parser_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["robust", "--epsilons", "0,big"])
    assert exit_info.value.code == 2
    assert "comma-separated numbers" in capsys.readouterr().err
