"""The VAE as two SavedModels for TF Serving: the decoder (latent -> images) and the encoder (images -> latent)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf

from aigc_tf.config import to_json
from aigc_tf.serving.layout import publish
from aigc_tf.vae.sample import load_vae


def export_vae(run_dir: Path, base_dir: Path = Path("saved_models")) -> tuple[Path, Path]:
    """Export a VAE run as two models: `<base>/vae_decoder/<v>/` and `<base>/vae_encoder/<v>/`.

    - decoder `serving_default(latent: float32 [None, latent_dim]) -> images: float32 [None, 28, 28, 1]` in [0, 1]
      (the Bernoulli means);
    - encoder `serving_default(images: float32 [None, 28, 28, 1] in [0, 1]) -> mean, log_variance: [None, latent_dim]`.
    """
    vae, config = load_vae(run_dir)
    metadata = {"family": "vae", "run": str(Path(run_dir).resolve()), "config": json.loads(to_json(config))}

    decoder = keras.export.ExportArchive()
    decoder.add_endpoint("serving_default", lambda latent: {"images": tf.sigmoid(vae.decoder(latent))},
                         input_signature=[tf.TensorSpec([None, config.latent_dim], tf.float32, name="latent")])
    encoder = keras.export.ExportArchive()
    encoder.add_endpoint("serving_default", lambda images: dict(vae.encoder(images)),
                         input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
    return (publish(decoder, Path(base_dir) / "vae_decoder", {**metadata, "part": "decoder"}),
            publish(encoder, Path(base_dir) / "vae_encoder", {**metadata, "part": "encoder"}))
