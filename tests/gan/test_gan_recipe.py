"""The GAN recipe's ingredients: DiffAugment, the EMA generator, hinge loss, R1 (every step and lazy), the
k-means clusters G and D are conditioned on, sampling truncation, fp16 loss scaling, and their round trip through the config, the CLI and
a resumed run."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from aigc_tf import AigcError
from aigc_tf.cli import build_parser
from aigc_tf.config import GANConfig, from_dict, to_json
from aigc_tf.gan import augment, clusters, losses, models, r1
from aigc_tf.gan.sample import load_generator
from aigc_tf.gan.train import GAN, train_gan

SEED = tf.constant([3, 4], tf.int32)


@pytest.fixture
def digits(mnist_train):
    return tf.constant(mnist_train.images[:8].astype("float32") / 127.5 - 1.0)  # (8, 28, 28, 1) in [-1, 1]


# ---------------------------------------------------------------------------------------------- DiffAugment
@pytest.mark.parametrize("policy", ["translation", "cutout", "color", augment.DEFAULT_POLICY])
def test_augment_keeps_shape_is_repeatable_and_differentiable(digits, policy):
    out = augment.diff_augment(digits, policy, SEED)
    assert out.shape == digits.shape
    np.testing.assert_array_equal(out, augment.diff_augment(digits, policy, SEED))  # same seed, same images
    assert not np.allclose(out, augment.diff_augment(digits, policy, SEED + 1))  # another seed, others
    assert not np.allclose(out, digits)
    with tf.GradientTape() as tape:
        tape.watch(digits)
        pixel_weights = tf.reshape(tf.range(784.0), [1, 28, 28, 1])  # a loss that cares where each pixel lands
        total = tf.reduce_sum(augment.diff_augment(digits, policy, SEED) * pixel_weights)
    gradient = tape.gradient(total, digits)
    assert gradient is not None and float(tf.reduce_sum(tf.abs(gradient))) > 0


def test_augment_under_xla_matches_eager(digits):
    """The compiled train step augments what an eager call with the same seed does (named RNG algorithm)."""
    compiled = tf.function(lambda x, s: augment.diff_augment(x, augment.DEFAULT_POLICY, s), jit_compile=True)
    np.testing.assert_allclose(compiled(digits, SEED), augment.diff_augment(digits, augment.DEFAULT_POLICY, SEED),
                               atol=1e-5)


def test_translation_moves_the_digit_and_fills_with_background(digits):
    shifted = augment.diff_augment(digits, "translation", SEED).numpy()
    for before, after in zip(digits.numpy(), shifted):
        ink_before, ink_after = (before + 1).sum(), (after + 1).sum()
        assert ink_after <= ink_before + 1e-3  # nothing new appears; ink only leaves through an edge
        assert after.min() >= -1.0 - 1e-6 and after.max() <= 1.0 + 1e-6
        ys, xs = np.nonzero(before[..., 0] > 0)
        ys2, xs2 = np.nonzero(after[..., 0] > 0)
        dy, dx = ys2.mean() - ys.mean(), xs2.mean() - xs.mean()  # the centre of mass moved by at most the bound
        assert abs(dy) <= 4.01 and abs(dx) <= 4.01  # int(28 * TRANSLATION_RATIO + 0.5) pixels


def test_cutout_blanks_one_square_of_half_the_side(digits):
    ones = tf.ones_like(digits)
    out = augment.diff_augment(ones, "cutout", SEED).numpy()[..., 0]
    for mask in out:
        zeros = np.argwhere(mask == 0)
        height = zeros[:, 0].max() - zeros[:, 0].min() + 1
        width = zeros[:, 1].max() - zeros[:, 1].min() + 1
        assert len(zeros) == height * width <= 14 * 14  # one rectangle, clipped by the border at most
        assert set(np.unique(mask)) <= {0.0, 1.0}


def test_unknown_augmentation_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown augmentation rotate"):
        augment.parse_policy("translation,rotate")
    assert augment.parse_policy("none") == () and augment.parse_policy("") == ()
    with pytest.raises(AigcError, match="`augment`"):
        train_gan(GANConfig.tiny(augment="blur"), tmp_path / "run", steps=1, verbose=False)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- EMA
def test_ema_weights_follow_the_formula(digits):
    gan = GAN(GANConfig.tiny(condition="none", ema_decay=0.9, batch_size=8))
    for average, weight in zip(gan.generator_ema.weights, gan.generator.weights):
        np.testing.assert_array_equal(average.numpy(), weight.numpy())  # starts as a copy of G
    step = tf.function(gan.train_step, jit_compile=False)
    noise = tf.random.stateless_normal([8, gan.config.latent_dim], seed=[1, 2])
    for t in range(1, 4):
        before = [v.numpy().copy() for v in gan.generator_ema.trainable_variables]
        step((digits, None, noise))
        decay = min(0.9, (1 + t) / (10 + t))
        for prev, average, weight in zip(before, gan.generator_ema.trainable_variables,
                                         gan.generator.trainable_variables):
            np.testing.assert_allclose(average.numpy(), decay * prev + (1 - decay) * weight.numpy(), rtol=1e-5,
                                       atol=1e-7)
            assert not np.allclose(average.numpy(), weight.numpy())  # an average, not the live weights


def test_calibration_gives_the_averaged_generator_its_own_batch_norm_statistics():
    """After `calibrate_ema` each BatchNormalization layer of G_ema holds the mean and variance of its input over
    the calibration noise, computed here by hand layer by layer."""
    gan = GAN(GANConfig.tiny(ema_decay=0.9, generator_units=(16, 32)))
    for average in gan.generator_ema.trainable_variables:  # averaged weights that differ from G's
        average.assign(average * 1.5 + 0.01)
    gan.calibrate_ema(num=512)
    noise = np.random.default_rng(gan.config.seed + 1).standard_normal((512, gan.config.latent_dim)).astype("f")
    x = tf.constant(noise)
    checked = 0
    for layer in gan.generator_ema.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            np.testing.assert_allclose(layer.moving_mean.numpy(), tf.reduce_mean(x, 0), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(layer.moving_variance.numpy(), tf.math.reduce_variance(x, 0), rtol=1e-3,
                                       atol=1e-5)
            assert layer.momentum == 0.8  # restored
            checked += 1
        x = layer(x, training=True)
    assert checked == 2
    live = [layer for layer in gan.generator.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(np.allclose(layer.moving_mean.numpy(), 0.0) for layer in live)  # the live G's are left alone


def test_no_ema_means_no_second_generator():
    gan = GAN(GANConfig.tiny(ema_decay=0.0, truncation=0.0))
    assert gan.generator_ema is None and gan.sampling_generator is gan.generator
    gan.calibrate_ema()  # nothing to calibrate, no error


# ---------------------------------------------------------------------------------------------- losses
def test_hinge_losses():
    real, fake = tf.constant([[2.0], [0.5]]), tf.constant([[-2.0], [0.0]])
    np.testing.assert_allclose(losses.hinge_discriminator_loss(real, fake), [0.0, 0.5 + 1.0])
    np.testing.assert_allclose(losses.hinge_generator_loss(fake), [2.0, 0.0])
    assert set(losses.LOSSES) == {"non_saturating", "hinge"}


def test_r1_adds_half_gamma_times_the_squared_input_gradient_on_real_images(digits):
    """Same weights, batch and noise: the d_loss with R1 minus the one without is gamma/2 * mean ||dD/dx||^2."""
    gamma = 5.0
    noise = tf.random.stateless_normal([8, 8], seed=[1, 2])
    d_losses = {}
    for weight in (0.0, gamma):
        gan = GAN(GANConfig.tiny(condition="none", dropout=0.0, batch_size=8, r1_gamma=weight))
        with tf.GradientTape() as tape:
            tape.watch(digits)
            logits = tf.reduce_sum(gan.discriminator(digits, training=True))
        expected = gamma / 2 * float(tf.reduce_mean(tf.reduce_sum(tf.square(tape.gradient(logits, digits)),
                                                                  axis=[1, 2, 3])))
        d_losses[weight] = float(gan.train_step((digits, None, noise))["d_loss"])
    assert expected > 0
    assert d_losses[gamma] - d_losses[0.0] == pytest.approx(expected, rel=1e-4)


def test_lazy_r1_adds_the_penalty_of_k_steps_on_every_kth_step_only(digits):
    """With r1_interval k the regularising step's penalty is k times the every-step one; the others carry none."""
    noise = tf.random.stateless_normal([8, 8], seed=[1, 2])

    def d_loss(regularize=None, at_step=0, **changes):
        gan = GAN(GANConfig.tiny(condition="none", dropout=0.0, batch_size=8, **{"r1_gamma": 5.0, **changes}))
        gan.step.assign(at_step)
        if regularize is None:  # left to the step counter: inside XLA, a tf.cond
            return float(tf.function(gan.train_step, jit_compile=True)((digits, None, noise))["d_loss"])
        return float(gan.train_step((digits, None, noise), regularize=regularize)["d_loss"])

    plain = d_loss(r1_gamma=0.0, regularize=False)
    every = d_loss(regularize=True)
    lazy_loss = d_loss(r1_interval=4, regularize=True)
    skipped = d_loss(r1_interval=4, regularize=False)
    assert every - plain > 0
    assert lazy_loss - plain == pytest.approx(4 * (every - plain), rel=1e-4)
    assert skipped == pytest.approx(plain, rel=1e-6)
    assert d_loss(r1_interval=4, at_step=8) == pytest.approx(lazy_loss, rel=1e-4)
    assert d_loss(r1_interval=4, at_step=9) == pytest.approx(plain, rel=1e-4)
    assert [r1.applies(step, 5.0, 4) for step in range(9)] == [True, False, False, False] * 2 + [True]
    assert not r1.applies(0, 0.0, 1)


# ---------------------------------------------------------------------------------------------- clusters
def test_cluster_code_draws_each_cluster_with_its_share_from_plain_noise():
    layer = models.ClusterCode(3)
    noise = np.random.default_rng(0).standard_normal((30000, 6)).astype("float32")
    layer.build(noise.shape)
    layer.set_shares([0.5, 0.3, 0.2])
    coded = layer(noise).numpy()
    assert coded.shape == (30000, 3 + 5)  # one-hot cluster + the other noise values
    drawn = coded[:, :3].argmax(axis=1)
    np.testing.assert_array_equal(coded[:, :3], np.eye(3)[drawn])
    np.testing.assert_array_equal(coded[:, 3:], noise[:, 1:])
    np.testing.assert_allclose(np.bincount(drawn) / len(drawn), [0.5, 0.3, 0.2], atol=0.01)
    np.testing.assert_array_equal(drawn, models.cluster_of(noise, layer.cumulative_shares))
    assert (drawn[noise[:, 0] < -0.1] == 0).all()  # Phi(-0.1) = 0.46 < 0.5: the first cluster
    generator = models.build_generator(GANConfig.tiny(clusters=3))
    assert generator.input_shape == (None, 8)  # callers keep drawing plain noise of latent_dim


def test_kmeans_clusters_are_stored_with_the_run_and_assign_like_training(mnist_train, tmp_path):
    images = mnist_train.images[:600]
    found, fitted = clusters.load_or_fit(tmp_path, images, 4, seed=0)
    assert fitted and (tmp_path / clusters.CLUSTERS_FILE).exists()
    assert found.centroids.shape == (4, 784) and found.assignments.shape == (600,)
    np.testing.assert_allclose(found.shares.sum(), 1.0)
    again, fitted_again = clusters.load_or_fit(tmp_path, images, 4, seed=0)
    assert not fitted_again
    np.testing.assert_array_equal(again.assignments, found.assignments)
    # The nearest centroid, as D's judge uses it, is the cluster k-means gave each training digit.
    assert np.mean(clusters.assign(images / 255.0, found.centroids) == found.assignments) > 0.99
    np.testing.assert_array_equal(clusters.assign(found.centroids.reshape(4, 28, 28, 1), found.centroids), range(4))
    with pytest.raises(AigcError, match="holds 4 clusters of 600 digits, not 5 of 600"):
        clusters.load_or_fit(tmp_path, images, 5, seed=0)


def test_clustered_d_judges_real_digits_with_their_cluster_and_fakes_with_the_drawn_one(digits):
    config = GANConfig.tiny(dropout=0.0, batch_size=8, r1_gamma=0.0, clusters=3, ema_decay=0.0)
    gan = GAN(config)
    models.cluster_code(gan.generator).set_shares([0.2, 0.3, 0.5])
    noise = tf.random.stateless_normal([8, 8], seed=[1, 2])
    real_clusters = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    fake = gan.generator(noise, training=True)
    drawn = models.cluster_of(noise, models.cluster_code(gan.generator).cumulative_shares)
    expected = losses.discriminator_loss("non_saturating", gan.discriminator([digits, real_clusters]),
                                         gan.discriminator([fake, drawn]))
    another = tf.constant([2, 2, 2, 2, 2, 2, 2, 2])
    wrong = losses.discriminator_loss("non_saturating", gan.discriminator([digits, another]),
                                      gan.discriminator([fake, drawn]))
    assert not np.isclose(float(tf.reduce_mean(expected)), float(tf.reduce_mean(wrong)))  # the labels matter
    out = gan.train_step((digits, real_clusters, noise))
    assert float(out["d_loss"]) == pytest.approx(float(tf.reduce_mean(expected)), rel=1e-5)


def test_truncation_maps_plain_noise_onto_the_truncated_normal_and_spares_the_cluster_value():
    noise = np.random.default_rng(0).standard_normal((200000, 3)).astype("float32")
    out = models.TruncatedNoise(2.0, skip=1)(noise).numpy()
    np.testing.assert_array_equal(out[:, 0], noise[:, 0])  # the value that picks the cluster keeps N(0, 1)
    assert np.abs(out[:, 1:]).max() <= 2.0
    order = np.argsort(noise[:, 1])
    assert (np.diff(out[order, 1]) >= -1e-4).all()  # monotone (to float32 round-off): the noise keeps its order
    redrawn = np.random.default_rng(1).standard_normal(600000)
    redrawn = redrawn[np.abs(redrawn) <= 2.0]  # BigGAN's way: draw again beyond the threshold
    np.testing.assert_allclose(np.quantile(out[:, 1], [0.05, 0.25, 0.5, 0.75, 0.95]),
                               np.quantile(redrawn, [0.05, 0.25, 0.5, 0.75, 0.95]), atol=0.02)


def test_a_truncated_run_samples_through_the_same_weights_and_is_scored_both_ways(tmp_path, mnist_train):
    from aigc_tf.gan.evaluate import evaluate_gan

    run = tmp_path / "run"
    train_gan(GANConfig.tiny(truncation=1.0, batch_size=500, epochs=1), run, verbose=False)
    truncated, config, _ = load_generator(run)
    plain, plain_config, _ = load_generator(run, truncation=0.0)
    assert (config.truncation, plain_config.truncation) == (1.0, 0.0)
    for a, b in zip(truncated.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)  # a wrapper around the checkpoint's generator, no weights of its own
    noise = np.full((2, config.latent_dim), 3.0, "float32")  # far out: truncation changes the input G sees
    assert not np.allclose(truncated(noise, training=False), plain(noise, training=False))
    np.testing.assert_allclose(truncated(noise, training=False),
                               plain(models.TruncatedNoise(1.0, skip=1)(noise), training=False), atol=1e-6)
    report = evaluate_gan(run, verbose=0)
    assert report["truncation"] == 1.0 and set(report["without_truncation"]) == {"fid", "inception_score"}

    from aigc_tf.gan.sample import draw
    from aigc_tf.metrics import scores
    from aigc_tf.metrics.classifier import load_classifier
    from aigc_tf.metrics.image_quality import real_halves

    # What truncation is for: samples closer to the typical one, less varied (BigGAN's fidelity-for-variety trade),
    # in pixels and in the evaluation classifier's features; total variance measured with the same noise.
    truncated_images, _ = draw(truncated, config, report["num_samples"], seed=0)
    plain_images, _ = draw(plain, plain_config, report["num_samples"], seed=0)
    classifier = load_classifier("mnist", verbose=0)
    truncated_features, plain_features, real_features = (
        classifier.features_and_probabilities(x)[0]
        for x in (truncated_images, plain_images, real_halves("mnist", None, seed=0)[1]))

    def spread(x):
        return float(np.var(x.reshape(len(x), -1), axis=0).sum())

    assert spread(truncated_images) < 0.6 * spread(plain_images)  # measured 0.39-0.41 for seeds 0-2
    assert spread(truncated_features) < 0.6 * spread(plain_features)  # 0.35-0.43
    # ... and the report scores each sampler under its own name.
    assert report["fid"] == pytest.approx(scores.frechet_distance_from_features(truncated_features, real_features))
    assert report["without_truncation"]["fid"] == pytest.approx(
        scores.frechet_distance_from_features(plain_features, real_features))


def test_one_explicit_condition_and_old_run_configs_still_load(tmp_path):
    assert GANConfig().condition == "cluster" and GANConfig().clusters == 50
    assert GANConfig(condition="digit", clusters=50).clusters == 50  # kept as written; the digits condition G and D
    old = json.loads(to_json(GANConfig()))
    del old["condition"]
    assert from_dict({**old, "conditional": True}).condition == "digit"
    assert from_dict({**old, "conditional": False, "clusters": 0}).condition == "none"
    assert from_dict({**old, "conditional": False, "clusters": 50}).condition == "cluster"
    with pytest.raises(AigcError, match="unknown `condition` 'digits'; choose one of none, digit, cluster") as info:
        train_gan(GANConfig.tiny(condition="digits"), tmp_path / "b", steps=1, verbose=False)
    assert "\n" not in str(info.value)
    assert models.build_discriminator(GANConfig.tiny(condition="none")).name == "discriminator"
    assert models.build_discriminator(GANConfig.tiny()).name == "cluster_conditional_discriminator"


def test_recipe_values_that_make_no_sense_are_refused(tmp_path):
    with pytest.raises(AigcError, match="`clusters` must be >= 1 with condition='cluster'"):
        train_gan(GANConfig.tiny(clusters=0), tmp_path / "a", steps=1, verbose=False)
    with pytest.raises(AigcError, match="`r1_interval` must be >= 1"):
        train_gan(GANConfig.tiny(r1_interval=0), tmp_path / "c", steps=1, verbose=False)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- fp16
def test_fp16_step_scales_the_loss_and_computes_the_fp32_update(digits):
    """mixed_float16 layers with a LossScaleOptimizer: after three steps the weights match fp32's (the tolerance
    below), while the update itself is 10x larger than that tolerance, and the variables stay float32."""
    noise = tf.random.stateless_normal([8, 8], seed=[1, 2])
    weights = {}
    for precision in ("fp32", "fp16"):
        gan = GAN(GANConfig.tiny(condition="none", dropout=0.0, batch_size=8, precision=precision, learning_rate=1e-2))
        start = [v.numpy().copy() for v in gan.generator.trainable_variables]
        if precision == "fp16":
            assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
            assert gan.generator.layers[0].compute_dtype == "float16"
            assert all(v.dtype == "float32" for v in gan.generator.trainable_variables)
            for optimizer in (gan.g_optimizer, gan.d_optimizer):
                # 2^15, the usual start, overflows on this batch and skips the first steps (tested below): start
                # lower so that all three steps update.
                optimizer.dynamic_scale.assign(256.0)
        for _ in range(3):
            gan.train_step((digits, None, noise))
        if precision == "fp16":
            assert float(gan.g_optimizer.dynamic_scale.numpy()) == 256.0  # no step was skipped
        weights[precision] = [v.numpy() for v in gan.generator.trainable_variables]
    fp32, fp16, start = (np.concatenate([w.ravel() for w in ws]) for ws in (weights["fp32"], weights["fp16"], start))
    update, difference = np.abs(fp32 - start), np.abs(fp16 - fp32)
    assert update.max() > 0.02
    # Adam turns the float16 rounding of a near-zero gradient into a whole +-lr step, so a few weights differ by
    # an update's size: 99.5% must agree within 2e-3, and the mean gap stay under 5% of the mean update.
    assert np.mean(difference < 2e-3) > 0.995
    assert difference.mean() < 0.05 * update.mean()


def test_fp16_skips_a_step_whose_gradients_overflow(digits):
    gan = GAN(GANConfig.tiny(condition="none", dropout=0.0, batch_size=8, precision="fp16"))
    scale = float(gan.d_optimizer.dynamic_scale.numpy())
    before = [v.numpy().copy() for v in gan.discriminator.trainable_variables]
    huge = tf.fill(tf.shape(digits), 6e4)  # float16's limit is 65504: D's activations overflow to inf
    gan.train_step((huge, None, tf.zeros([8, 8])))
    assert float(gan.d_optimizer.dynamic_scale.numpy()) == scale / 2  # the scale halves...
    for a, b in zip(before, gan.discriminator.trainable_variables):
        np.testing.assert_array_equal(a, b.numpy())  # ...and the weights are left as they were


# ---------------------------------------------------------------------------------------------- round trips
def test_recipe_round_trips_through_config_cli_and_resume(tmp_path, mnist_train):
    args = build_parser().parse_args(["gan", "train", "--augment", "translation,color", "--ema-decay", "0.99",
                                      "--loss", "hinge", "--r1-gamma", "0.5", "--beta-2", "0.99",
                                      "--d-learning-rate-ratio", "2", "--r1-interval", "3", "--clusters", "3",
                                      "--truncation", "1.5"])
    from aigc_tf.flags import given_flags

    recipe = given_flags(args, GANConfig)  # the flags given, by config field
    config = GANConfig.tiny(**recipe)
    assert (config.r1_interval, config.clusters, config.truncation) == (3, 3, 1.5)
    assert from_dict(json.loads(to_json(config))) == config

    run = tmp_path / "run"
    first = train_gan(config, run, steps=20, verbose=False)
    resumed = train_gan(config, run, steps=40, verbose=False)
    assert (first.step, resumed.step) == (20, 40)
    averaged, stored, step = load_generator(run)
    live, _, _ = load_generator(run, averaged=False)
    assert stored == config and step == 40
    assert not all(np.allclose(a, b) for a, b in zip(averaged.get_weights(), live.get_weights()))
    gan = GAN(config)  # the averaged generator sits in the checkpoint beside the live one
    gan.restore(run / "checkpoints")
    for a, b in zip(gan.generator_ema.get_weights(), averaged.get_weights()):
        np.testing.assert_array_equal(a, b)
    stored_shares = clusters.load(run).shares  # fitted on the first start, restored with G, not fitted again
    np.testing.assert_allclose(models.cluster_code(averaged).cumulative_shares.numpy(), np.cumsum(stored_shares),
                               rtol=1e-6)

    with pytest.raises(AigcError, match="ema_decay"):
        train_gan(config.replace(ema_decay=0.0), run, steps=60, verbose=False)


def test_a_checkpoint_that_does_not_fit_the_config_is_refused_not_sampled_untrained(tiny_gan_run, tmp_path):
    """A run written by another version (no EMA generator, other sizes) must not load as an untrained generator."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_gan_run[0], copy)
    config = json.loads((copy / "config.json").read_text())
    config["generator_units"] = [u * 2 for u in config["generator_units"]]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(AigcError, match="does not match the run's config.json"):
        load_generator(copy)
