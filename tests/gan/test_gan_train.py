import json

import numpy as np
import pytest
import tensorflow as tf

from aigc_tf import AigcError
from aigc_tf.config import GANConfig
from aigc_tf.gan.sample import load_generator
from aigc_tf.gan.train import GAN, train_gan as train
from aigc_tf.runs import RunFolder


def _weights(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def test_xla_and_plain_steps_update_both_networks_identically(mnist_train):
    """Same seed, same batch: the XLA program and the plain graph compute the same update."""
    batch = tf.constant(mnist_train.images[:16].astype("float32") / 127.5 - 1.0)
    noise = tf.random.stateless_normal([16, GANConfig.tiny().latent_dim], seed=[1, 2])
    real_clusters = tf.range(16) % GANConfig.tiny().clusters  # the default recipe's D judges with clusters
    results = []
    for jit in (True, False):
        gan = GAN(GANConfig.tiny(dropout=0.0))
        g0, d0 = _weights(gan.generator), _weights(gan.discriminator)
        out = tf.function(gan.train_step, jit_compile=jit)((batch, real_clusters, noise))
        assert all(not np.allclose(a, b) for a, b in zip(g0, _weights(gan.generator)))
        assert all(not np.allclose(a, b) for a, b in zip(d0, _weights(gan.discriminator)))
        assert int(gan.step.numpy()) == 1
        results.append((out, _weights(gan.generator)))
    (out_xla, g_xla), (out_plain, g_plain) = results
    np.testing.assert_allclose(out_xla["g_loss"], out_plain["g_loss"], rtol=1e-4)
    np.testing.assert_allclose(out_xla["d_loss"], out_plain["d_loss"], rtol=1e-4)
    for a, b in zip(g_xla, g_plain):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_discriminator_learns_to_separate_real_from_generated(mnist_train):
    """With G frozen (learning rate ~0), D steps must drive D(real) up and D(fake) down."""
    gan = GAN(GANConfig.tiny(batch_size=64, label_smoothing=0.0, learning_rate=1e-3, fast_start=1.0))
    gan.g_optimizer.learning_rate.assign(1e-12)  # a constant rate (no fast start) is a variable
    step = tf.function(gan.train_step, jit_compile=True)
    batch = tf.constant(mnist_train.images[:64].astype("float32") / 127.5 - 1.0)
    real_clusters = tf.range(64) % gan.config.clusters
    first = {name: float(value) for name, value in step((batch, real_clusters)).items()}
    for _ in range(60):
        gan.reset_metrics()  # the step returns running means (of the epoch, under fit): here, the last step's
        last = step((batch, real_clusters))
    assert float(last["d_loss"]) < 0.5 * float(first["d_loss"])
    assert float(last["d_real"]) > 0.75 and float(last["d_fake"]) < 0.25


def test_train_writes_every_output_and_resumes(tiny_gan_run, tmp_path):
    import shutil

    run_dir, config, result = tiny_gan_run
    assert result.epochs_done == 2
    for name in ("config", "history", "gif", "loss_curve", "last_grid"):
        assert result.outputs[name].exists(), name
    assert len(list((run_dir / "samples").glob("epoch_*.png"))) == 2
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert [int(r["step"]) for r in result.history] == [14, 28]  # 7,035 train digits // 500 = 14 steps per epoch

    copy = tmp_path / "run"  # resume a copy: the session's run is shared with other tests
    shutil.copytree(run_dir, copy)
    resumed = train(config.replace(epochs=3), copy, verbose=False)
    assert resumed.step == 42
    assert [int(r["step"]) for r in resumed.history] == [14, 28, 42]
    generator, stored, step = load_generator(copy)
    assert step == 42 and stored.latent_dim == config.latent_dim


def test_resumed_run_matches_uninterrupted_run(tmp_path, mnist_train):
    """The noise stream, data order, dropout seeds and optimiser state all come back from the checkpoint."""
    config = GANConfig.tiny(batch_size=500)
    train(config, tmp_path / "a", steps=20, verbose=False)
    train(config, tmp_path / "b", steps=12, verbose=False)
    train(config, tmp_path / "b", steps=20, verbose=False)
    ga, _, _ = load_generator(tmp_path / "a")
    gb, _, _ = load_generator(tmp_path / "b")
    for a, b in zip(ga.weights, gb.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_a_fast_start_holds_the_multiplied_rate_eases_back_along_a_cosine_and_resumes_in_place(tmp_path, mnist_train):
    import math

    from aigc_tf.config import from_dict, to_json

    def expected(rate, step, n=10, multiplier=3.0):  # n steps at 3x, a cosine back to 1x over n more, then 1x
        if step <= n:
            return rate * multiplier
        eased = 0.5 * (1 + math.cos(math.pi * min(step - n, n) / n))
        return rate * multiplier * (1 / multiplier + (1 - 1 / multiplier) * eased)

    config = GANConfig.tiny(batch_size=500, learning_rate=1e-3, d_learning_rate_ratio=2.0, fast_start=3.0,
                            fast_start_steps=10)
    gan = GAN(config)
    for step, share in ((0, 3.0), (10, 3.0), (15, 2.0), (20, 1.0), (50, 1.0)):
        for optimizer, rate in ((gan.g_optimizer, 1e-3), (gan.d_optimizer, 2e-3)):
            optimizer.iterations.assign(step)
            assert float(optimizer.learning_rate) == pytest.approx(expected(rate, step), rel=1e-5), step
            assert float(optimizer.learning_rate) == pytest.approx(share * rate, rel=1e-5), step
    assert float(GAN(config.replace(fast_start=1.0)).g_optimizer.learning_rate) == pytest.approx(1e-3)

    train(config, tmp_path / "run", steps=14, verbose=False)
    resumed = GAN(config)
    resumed.restore(tmp_path / "run" / "checkpoints")  # a resumed run goes on from where the schedule was
    assert int(resumed.g_optimizer.iterations.numpy()) == 14
    assert float(resumed.g_optimizer.learning_rate) == pytest.approx(expected(1e-3, 14), rel=1e-5)
    with pytest.raises(AigcError, match="was trained with fast_start=3.0"):  # a schedule is not a rate variable
        train(config.replace(fast_start=1.0), tmp_path / "run", steps=20, verbose=False)
    old = json.loads(to_json(config))
    del old["fast_start"]  # a run folder from before the schedule trained at a constant rate, and still does
    assert from_dict(old).fast_start == 1.0


def test_run_folder_guards(tmp_path, tiny_gan_run):
    run_dir, config, _ = tiny_gan_run
    with pytest.raises(AigcError, match="was trained with latent_dim=8"):
        train(config.replace(latent_dim=9), run_dir, verbose=False)
    foreign = tmp_path / "not_a_run"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(AigcError, match="not an aigc_tf run folder"):
        train(config, foreign, verbose=False)
    assert (foreign / "thesis.tex").read_text() == "precious"
    fresh = tmp_path / "fresh"
    RunFolder(fresh).prepare(config)
    with pytest.raises(AigcError, match="no checkpoint yet"):
        load_generator(fresh)
    with pytest.raises(AigcError, match="holds a gan run, not a vae run"):
        RunFolder(run_dir).load_config("vae")


def test_corrupt_checkpoint_is_a_clear_error_and_is_not_overwritten(tmp_path, mnist_train):
    config = GANConfig.tiny(batch_size=500)
    train(config, tmp_path / "run", steps=2, verbose=False)
    data = next((tmp_path / "run" / "checkpoints").glob("ckpt-2.data-*"))
    data.write_bytes(b"\0" * 10)
    with pytest.raises(AigcError, match="is unreadable"):
        train(config, tmp_path / "run", steps=4, verbose=False)
    assert data.read_bytes() == b"\0" * 10


def test_bf16_precision_computes_in_bfloat16_with_float32_variables_and_leaves_the_policy_alone(mnist_train):
    import keras

    before = keras.config.dtype_policy().name
    gan = GAN(GANConfig.tiny(precision="bf16"))
    assert keras.config.dtype_policy().name == before  # the policy is set only while the nets are built
    dense = [layer for layer in gan.generator.layers if isinstance(layer, keras.layers.Dense)][0]
    assert dense.compute_dtype == "bfloat16" and dense.kernel.dtype == "float32"
    batch = tf.constant(mnist_train.images[:16].astype(np.float32) / 127.5 - 1.0)
    before_weights = [w.numpy().copy() for w in gan.generator.trainable_weights]
    out = tf.function(gan.train_step, jit_compile=False)((batch, tf.range(16) % gan.config.clusters))
    assert all(v.dtype == tf.float32 and np.isfinite(v.numpy()) for v in out.values())
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before_weights, gan.generator.trainable_weights))
    with pytest.raises(AigcError, match="precision"):
        GAN(GANConfig.tiny(precision="fp8"))
