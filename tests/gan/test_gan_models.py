import keras
import numpy as np

from aigc_tf.config import GANConfig
from aigc_tf.gan.models import build_discriminator, build_generator


def test_default_networks_are_sequential_mlps_of_the_seed_layers():
    """The design's networks: Sequential stacks of Dense, BatchNormalization and LeakyReLU. The default recipe adds
    one weightless layer to G (the noise picks a k-means cluster) and joins D's input to the cluster's one-hot in a
    small functional model around D's Sequential stack, as the conditional GAN does with labels."""
    config = GANConfig()
    g, d = build_generator(config), build_discriminator(config)
    d_stack = d.get_layer("discriminator")
    assert isinstance(g, keras.Sequential) and isinstance(d_stack, keras.Sequential)
    allowed = {"Dense", "BatchNormalization", "LeakyReLU", "Reshape", "Flatten", "Dropout"}
    assert {type(layer).__name__ for layer in g.layers + d_stack.layers} <= allowed | {"ClusterCode"}
    assert [type(layer).__name__ for layer in g.layers].count("ClusterCode") == 1
    dense_units = [layer.units for layer in g.layers if isinstance(layer, keras.layers.Dense)]
    assert dense_units == [256, 512, 1024, 784]
    assert g.input_shape == (None, 100) and g.output_shape == (None, 28, 28, 1)
    assert d.output_shape == (None, 1)
    plain = build_discriminator(config.replace(condition="none"))  # unconditioned, D is the Sequential stack itself
    assert isinstance(plain, keras.Sequential) and plain.input_shape == (None, 28, 28, 1)


def test_generator_output_is_bounded_and_discriminator_returns_logits():
    config = GANConfig.tiny()
    g, d = build_generator(config), build_discriminator(config)
    images = g(np.random.default_rng(0).standard_normal((5, config.latent_dim)).astype("float32"), training=False)
    assert images.shape == (5, 28, 28, 1)
    assert float(keras.ops.max(keras.ops.abs(images))) <= 1.0
    clusters = keras.ops.convert_to_tensor(np.arange(5) % config.clusters)
    assert d([images, clusters], training=False).shape == (5, 1)  # each image judged with a cluster
