"""Fine-tuning GPT-2 with stock `compile` / `fit`, the Keras way (the GAN writes its step by hand, on purpose).

The recipe of the PyTorch GPT-2 fine-tuning scripts, expressed with Keras parts: AdamW with a linear warm-up and a
cosine decay, gradient clipping by norm, weight decay off for biases and LayerNorm, validation loss and perplexity
every epoch, an epoch backup to resume an interrupted run (`aigc_tf.callbacks.EpochBackup`), a callback that prints
a generation from a fixed prompt every epoch, CSV and TensorBoard logs and a loss-curve PNG. An "epoch" is an
evaluation interval of `steps_per_epoch` steps. The peak learning rate depends on what is trained
(`TextConfig.peak_learning_rate`): a few new parameters far from where they end want a higher one.

Training runs on packed token windows with `preprocessor=None` (keras-hub would otherwise re-tokenize and pad every
batch); generation uses the same backbone with the preprocessor attached. The finished model is written as a
keras-hub preset (`<run>/preset/`), which `from_preset`, `aigc-tf text eval|generate|export` and `--preset` load.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import keras
import numpy as np

from aigc_tf import AigcError, distribute, plots
from aigc_tf.callbacks import TokenThroughput
from aigc_tf.config import DEFAULT_LORA_RANK
from aigc_tf.runs import RunFolder
from aigc_tf.seeding import seeded
from aigc_tf.text import data as text_data
from aigc_tf.text import peft
from aigc_tf.text.models import PRESET_DIR, build_causal_lm, trainable_parameters
from aigc_tf.training import fit_run

SUMMARY_FILE = "train_summary.json"  # parameters; tokens of the whole schedule, seconds of this call


@dataclasses.dataclass
class TextTrainResult:
    run_dir: Path
    preset: Path
    history: list[dict]
    trainable_parameters: int
    total_parameters: int
    seconds: float
    tokens_seen: int
    outputs: dict[str, Path]


class TextSampleCallback(keras.callbacks.Callback):
    """Greedy-decode a fixed prompt at the end of every epoch: watching it change is the best progress bar."""

    def __init__(self, causal_lm, prompt: str, path: Path, max_length: int, tensorboard_dir: Path,
                 verbose: bool = True):
        import tensorflow as tf

        super().__init__()
        self.causal_lm, self.prompt, self.path = causal_lm, prompt, Path(path)
        self.max_length, self.verbose = max_length, verbose
        self.writer = tf.summary.create_file_writer(str(Path(tensorboard_dir) / "samples"))

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        text = self.causal_lm.generate(self.prompt, max_length=self.max_length)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"--- epoch {epoch + 1}\n{text}\n")
        with self.writer.as_default(step=epoch + 1):
            tf.summary.text("greedy_sample", text)
        self.writer.flush()
        if self.verbose:
            print(f"\nsample after epoch {epoch + 1}: {text!r}")


def make_optimizer(config, total_steps: int) -> keras.optimizers.Optimizer:
    """AdamW, linear warm-up to the peak learning rate over `warmup_fraction` of the steps, then cosine decay to 0."""
    warmup = max(1, int(total_steps * config.warmup_fraction))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(1, total_steps - warmup), warmup_target=config.peak_learning_rate,
        warmup_steps=warmup)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay,
                                       clipnorm=config.clipnorm)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def compile_for_training(model, config, total_steps: int) -> None:
    """`fit`'s loss, metric and optimiser; under fp16 the optimiser is wrapped in a LossScaleOptimizer, so `fit`
    scales the loss and unscales the gradients (float16 gradients underflow without it)."""
    import keras_hub

    optimizer = make_optimizer(config, total_steps)
    if config.precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras_hub.metrics.Perplexity(from_logits=True, name="perplexity")],
        jit_compile=config.jit_compile)


def corpus_windows(config, tokenizer):
    return text_data.train_validation_windows(config.corpus, tokenizer, config.sequence_length,
                                              config.validation_fraction)


def _int_padding_mask(x, y, sample_weight):
    """The same batch with `padding_mask` as int32 (GPT-2's backbone input dtype) instead of bool."""
    import tensorflow as tf

    return {**x, "padding_mask": tf.cast(x["padding_mask"], tf.int32)}, y, sample_weight


def train_text(config, run_dir: Path, *, steps: int | None = None, verbose: bool = True,
               strategy: str = "one") -> TextTrainResult:
    """Train (or resume) a text run: `config.epochs` epochs of `steps_per_epoch`, or `steps` steps in total.

    `strategy` is a strategy name (see `aigc_tf.distribute`): the model is built and compiled in its scope and `fit`
    splits every global batch of `config.batch_size` windows over the replicas; only the chief writes the run
    folder, holding its lock.
    """
    dist, chief = distribute.start(strategy, config.batch_size)
    config = config.replace(learning_rate=config.peak_learning_rate)  # the run folder records the number
    with RunFolder(Path(run_dir)).open_for_training(config, "text train", chief) as run:
        return _fit(config, run, dist, chief, steps, verbose)


def _fit(config, run: RunFolder, dist, chief: bool, steps: int | None, verbose: bool) -> TextTrainResult:
    """`train_text` inside the run folder's lock."""
    import keras_hub

    distributed = distribute.is_distributed(dist)
    with dist.scope():
        causal_lm = build_causal_lm(config)
    train_windows, val_windows = corpus_windows(config, causal_lm.preprocessor.tokenizer)
    full_pass = len(train_windows) // config.batch_size
    if full_pass < 1:
        raise AigcError(f"corpus {config.corpus} gives {len(train_windows)} training sequences, fewer than one "
                        f"batch of `batch_size` {config.batch_size}")
    steps_per_epoch = config.steps_per_epoch or full_pass
    if steps:
        steps_per_epoch = min(steps_per_epoch, steps)
    epochs = math.ceil(steps / steps_per_epoch) if steps else config.epochs
    total_parameters = int(sum(np.prod(v.shape) for v in causal_lm.backbone.weights))  # before the adapters
    method, tuned = peft.method_of(config), None
    with dist.scope():
        with seeded(config.seed):  # LoRA's initial A matrices, the adapters' down projections
            if method == "lora":
                peft.enable_lora(causal_lm.backbone, config.lora_rank or DEFAULT_LORA_RANK)
            elif method != "full":
                tuned = peft.attach(causal_lm, method, peft.size_of(config))
        trainer = keras_hub.models.GPT2CausalLM(backbone=causal_lm.backbone, preprocessor=None,
                                                dtype=causal_lm.backbone.dtype_policy)
        if tuned is not None:
            trainer.peft = tuned  # tracked by the trainer: trained, counted and backed up with it
        # XLA stays the single-device path (see aigc_tf.distribute); the stored config keeps the user's choice.
        compile_for_training(trainer, config.replace(jit_compile=config.jit_compile and not distributed),
                             epochs * steps_per_epoch)
        causal_lm.compile(sampler="greedy")  # for the sample callback; shares the backbone's weights
    train_ds = text_data.lm_dataset(train_windows, config.batch_size, shuffle_seed=config.seed).repeat()
    # Under a strategy a last, smaller batch splits unevenly over the replicas, which Keras' distributed build fails.
    val_ds = text_data.lm_dataset(val_windows, config.batch_size,
                                  drop_remainder=distributed and len(val_windows) >= config.batch_size)
    if config.validation_batches:
        val_ds = val_ds.repeat()  # validation_steps then reads the same first batches every epoch
    if distributed:  # Keras' first distributed build averages a batch over the replicas, which a bool mask fails
        train_ds, val_ds = train_ds.map(_int_padding_mask), val_ds.map(_int_padding_mask)
    import sys

    live_bar = verbose and sys.stdout.isatty()  # without one (logs, nohup), a line of tokens/s and ETA instead
    extra = [TextSampleCallback(causal_lm, config.sample_prompt, run.path / "samples.txt",
                                max_length=min(64, config.max_sequence_length), tensorboard_dir=run.tensorboard,
                                verbose=verbose),
             TokenThroughput(config.batch_size * config.sequence_length, steps_per_epoch, epochs, run.tensorboard,
                             print_every=None if live_bar or not verbose else max(10, steps_per_epoch // 5)),
             ] if chief else []
    seconds = fit_run(run, trainer, train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=val_ds,
                      validation_steps=config.validation_batches, extra_callbacks=extra,
                      tensorboard_update_freq=max(1, steps_per_epoch // 10), verbose=verbose, chief=chief,
                      backup_write_dir=distribute.write_dir(dist, run.backup))
    preset = run.path / PRESET_DIR
    tokens_seen = epochs * steps_per_epoch * config.batch_size * config.sequence_length
    trained = trainable_parameters(trainer)
    if not chief:
        return TextTrainResult(run.path, preset, [], trained, total_parameters, seconds, tokens_seen, {})
    outputs = {"run": run.path, "preset": preset}
    if method == "lora":  # the adapter alone, for keras-hub's load_lora_weights on the base model
        outputs["lora_weights"] = run.path / peft.LORA_FILE
        causal_lm.backbone.save_lora_weights(str(outputs["lora_weights"]))
    causal_lm.save_to_preset(str(preset))  # LoRA is merged into the saved kernels; a prefix or adapters are not in it
    if tuned is not None:
        outputs["peft_weights"] = peft.save(tuned, run.path)
    history = run.read_history()
    summary = {"method": method, "trainable_parameters": trained, "total_parameters": total_parameters,
               "tokens": tokens_seen, "seconds": seconds, "tokens_per_s": tokens_seen / max(seconds, 1e-9)}
    (run.path / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    outputs.update({"summary": run.path / SUMMARY_FILE, "history": run.history_csv,
                    "samples": run.path / "samples.txt", "tensorboard": run.tensorboard})
    if history:
        outputs["loss_curve"] = plots.save_loss_curve(
            run.history_csv, run.path / "loss_curve.png", ["loss", "val_loss"],
            f"GPT-2 on {config.corpus}: training and validation loss", x="epoch")
    return TextTrainResult(run.path, preset, history, trained, total_parameters, seconds, tokens_seen, outputs)
