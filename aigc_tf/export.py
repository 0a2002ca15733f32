"""SavedModel exports in the layout TF Serving loads: `<base>/<name>/<version>/saved_model.pb + variables/`.

TF Serving watches `<base>/<name>/` and serves the highest integer version, so each export goes to the next free
integer, is written under a hidden temporary name first and renamed into place when complete: the server never
sees a half-written version.

The graphs are written with `keras.export.ExportArchive`. A plain `tf.Module` + `tf.saved_model.save` of a Keras 3
model produces a SavedModel that `tf.saved_model.load` runs but the Session-based loader used by TF Serving and
`saved_model_cli run` cannot (its variables are not captured in the graph); ExportArchive's is served by both.
Models are not passed to `archive.track()`: the endpoints capture the variables they use, and tracking the model as
well stored every weight twice (Keras 3.15 saves the tracked Keras variables and the captured TF variables as
separate objects), doubling the export on disk and in the server's memory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from aigc_tf import AigcError, __version__
from aigc_tf.config import to_json

METADATA_FILE = "assets.extra/aigc_tf.json"  # TF Serving ignores assets.extra/ except for warm-up requests


def versions(model_dir: Path) -> list[int]:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version_dir(model_dir: Path) -> Path:
    existing = versions(model_dir)
    return Path(model_dir) / str((existing[-1] + 1) if existing else 1)


def write_archive(archive: keras.export.ExportArchive, model_dir: Path, metadata: dict) -> Path:
    """Write `archive` as the next version of `model_dir`, atomically; returns the version folder."""
    model_dir = Path(model_dir)
    final = next_version_dir(model_dir)
    partial = model_dir / f".partial-{final.name}"
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        archive.write_out(str(partial), verbose=False)
        (partial / METADATA_FILE).parent.mkdir(exist_ok=True)
        (partial / METADATA_FILE).write_text(json.dumps({"aigc_tf_version": __version__, **metadata}, indent=2))
        partial.rename(final)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise AigcError(f"cannot write the export to {model_dir}: {err.strerror or err}") from None
    return final


def export_gan(run_dir: Path, model_dir: Path = Path("saved_models/gan")) -> Path:
    """Export a GAN run's generator: `serving_default(noise: float32 [None, latent_dim]) -> images [None, 28, 28, 1]`
    (a conditional GAN also takes `labels: int32 [None]`).

    The images are in [0, 1] (the generator's tanh output rescaled) so a client can display them directly, and
    BatchNormalization runs in inference mode, so a sample does not depend on the rest of its batch.
    """
    from aigc_tf.gan.train import load_generator

    generator, config, step = load_generator(run_dir)
    archive = keras.export.ExportArchive()

    noise_spec = tf.TensorSpec([None, config.latent_dim], tf.float32, name="noise")
    if config.conditional:  # + labels: int32 [None], the digit each image should show
        archive.add_endpoint(
            name="serving_default",
            fn=lambda noise, labels: {"images": (generator([noise, labels], training=False) + 1.0) / 2.0},
            input_signature=[noise_spec, tf.TensorSpec([None], tf.int32, name="labels")])
    else:
        archive.add_endpoint(name="serving_default",
                             fn=lambda noise: {"images": (generator(noise, training=False) + 1.0) / 2.0},
                             input_signature=[noise_spec])
    return write_archive(archive, model_dir, {"family": "gan", "run": str(Path(run_dir).resolve()), "step": step,
                                              "config": json.loads(to_json(config))})


def export_text(run_dir: Path, model_dir: Path = Path("saved_models/gpt2"), max_length: int = 64,
                top_p: float = 0.9, temperature: float = 1.0, jit_compile: bool | None = None,
                precision: str = "fp32") -> Path:
    """Export a text run with generation inside the graph, so a TF Serving client needs no Python of ours.

    Signatures (N prompts; the outputs include the prompt, as `aigc-tf text generate` prints them):
    - `serving_default(prompts: string [N]) -> text: string [N]`: greedy decoding, the same text as
      `aigc-tf text generate --sampler greedy`. Tokenizer, KV-cached decoding loop and detokenizer are all in the
      graph; the BPE tokenizer needs TF Text's ops (`import tensorflow_text` in the loader, or a model server built
      with them).
    - `sample(prompts) -> text`: top-p sampling (p and temperature fixed at export); a new draw on every call.
    - `generate_tokens(token_ids: int32 [N, L], padding_mask: int32 [N, L]) -> token_ids, padding_mask:
      int32 [N, max_length]`: greedy decoding on GPT-2 token ids, core TensorFlow ops only, for servers without
      TF Text. Prompts are left-aligned, start token first, `padding_mask` 1 on prompt tokens.
    `max_length` (tokens in all, prompt included) defaults to `aigc-tf text generate`'s, so both give the same text.

    Greedy signatures run the KV-cache decoder of `aigc-tf text generate` (`aigc_tf.text.kv_decoder`), in
    `precision` ("bf16" stores bfloat16 weights); its prefill length is picked at run time among powers of two, each
    its own XLA program compiled on first use.

    `jit_compile`: None compiles the greedy decoder with XLA and leaves `sample` to plain TF (XLA's CPU top-p loop
    ran 0.28x, `aigc_tf.text.generate`); True or False forces both. bf16 greedy decoding is always compiled.

    Input from the outside world, handled in the graph so that no request crashes the server:
    - an empty prompt generates from the start token alone;
    - a prompt longer than `max_length - 1` tokens is cut to its first `max_length - 1` tokens;
    - bytes that are not UTF-8 are replaced by U+FFFD before tokenizing (the reply is valid UTF-8);
    - a batch of prompts of mixed lengths is padded per prompt; each reply is what that prompt alone would get;
    - a wrong dtype (int, float) is rejected by the signature itself, a wrong rank (a scalar, a matrix of prompts)
      by its first op (`ensure_shape`): the Python loader raises, TF Serving answers with an error status.
    """
    from aigc_tf.text.generate import make_sampler
    from aigc_tf.text.kv_decoder import KVCacheDecoder
    from aigc_tf.text.model import with_precision
    from aigc_tf.text.train import load_run_model

    causal_lm, config = load_run_model(run_dir)
    causal_lm = with_precision(causal_lm, precision)
    if not 2 <= max_length <= causal_lm.backbone.max_sequence_length:
        raise AigcError(f"--max-length must be in [2, {causal_lm.backbone.max_sequence_length}], got {max_length}")
    tokenizer = causal_lm.preprocessor.tokenizer
    tokenizer(["build the tokenizer's tables before tracking them"])
    if not causal_lm.preprocessor.built:
        causal_lm.preprocessor.build(None)
    end_id = tokenizer.end_token_id
    sampler = make_sampler("top_p", temperature=temperature, top_p=top_p, seed=None)

    def decoder(chosen):
        """`generate_step` with `chosen` as the sampler; its own tf.function so each signature traces its own."""
        def step(inputs):
            causal_lm.sampler = chosen  # read by generate_step at trace time
            return causal_lm.generate_step(inputs, stop_token_ids=[end_id])
        return tf.function(step, jit_compile=bool(jit_compile))  # XLA's CPU top-p ran 0.28x (text/generate.py)

    def text_endpoint(decode):
        def serve(prompts):
            prompts = tf.ensure_shape(prompts, [None])  # a scalar or a matrix is an error status, not a guess
            prompts = tf.strings.unicode_transcode(prompts, "UTF-8", "UTF-8", errors="replace")  # U+FFFD
            inputs = causal_lm.preprocessor.generate_preprocess(prompts, sequence_length=max_length)
            out = decode(inputs)
            ids, keep = out["token_ids"], tf.cast(out["padding_mask"], tf.bool)
            for special in tokenizer.special_token_ids:
                keep = keep & (ids != special)
            return {"text": tokenizer.detokenize(tf.ragged.boolean_mask(ids, keep))}
        return serve

    kv_decoder = KVCacheDecoder(causal_lm.backbone, precision,
                                jit_compile=jit_compile is not False or precision == "bf16")
    prefill_lengths = [n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if n < max_length]

    @tf.function
    def greedy_decode(inputs):
        """The KV-cache decoder, its prefill as long as the largest power of two <= the shortest prompt."""
        ids, mask = inputs["token_ids"], inputs["padding_mask"]
        shortest = tf.maximum(tf.reduce_min(tf.reduce_sum(tf.cast(mask, tf.int32), -1)), 1)
        branch = tf.reduce_sum(tf.cast(tf.constant(prefill_lengths) <= shortest, tf.int32)) - 1
        stop = tf.constant(end_id, tf.int32)
        return tf.switch_case(branch, [lambda n=n: kv_decoder.decode(ids, mask, n, stop) for n in prefill_lengths])

    sample_decode = decoder(sampler)  # the token signature reuses greedy_decode

    def serve_tokens(token_ids, padding_mask):
        token_ids, padding_mask = tf.ensure_shape(token_ids, [None, None]), tf.ensure_shape(padding_mask, [None, None])
        pad = tf.maximum(max_length - tf.shape(token_ids)[1], 0)
        ids = tf.pad(token_ids[:, :max_length], [[0, 0], [0, pad]])
        mask = tf.pad(tf.cast(padding_mask[:, :max_length], tf.bool), [[0, 0], [0, pad]])
        out = greedy_decode({"token_ids": tf.ensure_shape(ids, [None, max_length]),
                            "padding_mask": tf.ensure_shape(mask, [None, max_length])})
        return {"token_ids": tf.cast(out["token_ids"], tf.int32),
                "padding_mask": tf.cast(out["padding_mask"], tf.int32)}

    archive = keras.export.ExportArchive()
    archive.track(tokenizer)  # its vocabulary tables (lookup tables are not captured like variables)
    archive.add_endpoint("serving_default", text_endpoint(greedy_decode),
                         input_signature=[tf.TensorSpec([None], tf.string, name="prompts")])
    archive.add_endpoint("sample", text_endpoint(sample_decode),
                         input_signature=[tf.TensorSpec([None], tf.string, name="prompts")])
    archive.add_endpoint("generate_tokens", serve_tokens,
                         input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                                          tf.TensorSpec([None, None], tf.int32, name="padding_mask")])
    return write_archive(archive, model_dir, {
        "family": "text", "run": str(Path(run_dir).resolve()), "max_length": max_length, "top_p": top_p,
        "temperature": temperature, "end_token_id": end_id, "precision": precision,
        "config": json.loads(to_json(config)),
        "loader_needs": "import tensorflow_text (RegexSplitWithOffsets) for serving_default and sample"})


def export_vae(run_dir: Path, base_dir: Path = Path("saved_models")) -> tuple[Path, Path]:
    """Export a VAE run as two models: `<base>/vae_decoder/<v>/` and `<base>/vae_encoder/<v>/`.

    - decoder `serving_default(latent: float32 [None, latent_dim]) -> images: float32 [None, 28, 28, 1]` in [0, 1]
      (the Bernoulli means);
    - encoder `serving_default(images: float32 [None, 28, 28, 1] in [0, 1]) -> mean, log_variance: [None, latent_dim]`.
    """
    from aigc_tf.vae.train import load_vae

    vae, config = load_vae(run_dir)
    metadata = {"family": "vae", "run": str(Path(run_dir).resolve()), "config": json.loads(to_json(config))}

    decoder = keras.export.ExportArchive()
    decoder.add_endpoint("serving_default", lambda latent: {"images": tf.sigmoid(vae.decoder(latent))},
                         input_signature=[tf.TensorSpec([None, config.latent_dim], tf.float32, name="latent")])
    encoder = keras.export.ExportArchive()
    encoder.add_endpoint("serving_default", lambda images: dict(vae.encoder(images)),
                         input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
    return (write_archive(decoder, Path(base_dir) / "vae_decoder", {**metadata, "part": "decoder"}),
            write_archive(encoder, Path(base_dir) / "vae_encoder", {**metadata, "part": "encoder"}))
