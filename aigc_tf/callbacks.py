"""Keras callbacks shared by the `fit`-trained runs: a NaN guard, a kill-safe epoch backup (VAE, GPT-2; the GAN
keeps a `tf.train.Checkpoint` per epoch instead, `aigc_tf.gan.train.EpochCheckpoint`) and a throughput meter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras

from aigc_tf import AigcError
from aigc_tf.compat import set_initial_epoch


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop `fit` at the first NaN/Inf loss, with one clear line, before the next backup could store it.

    Keras' own `TerminateOnNaN` ends `fit` quietly, after which a trainer would save the broken weights. Every
    logged value whose name ends in "loss" is checked (the GAN logs `g_loss` and `d_loss`).

    Args:
        backup: the folder of the last good backup (or checkpoint), named in the error.
        what: what that folder holds, for the error: "backup" or "checkpoint".
    """

    def __init__(self, backup: Path, what: str = "backup"):
        super().__init__()
        self.backup, self.what = backup, what

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if name.endswith("loss") and not math.isfinite(float(value)):
                raise AigcError(f"the {name} became {float(value)} at step {batch + 1} of an epoch; training stopped "
                                f"and the last good {self.what} in {self.backup} is kept: lower the learning rate "
                                "and run the same command to resume from it")


class EpochBackup(keras.callbacks.Callback):
    """Keras' `BackupAndRestore`, safe against a kill in the middle of a write.

    `BackupAndRestore` overwrites one `latest.weights.h5` in place, so a SIGKILL during that write destroys the only
    backup. Here every epoch writes `epoch-NNNN.weights.h5` beside the previous one and then points `latest.json`
    at it with an atomic rename; a half-written file is never pointed at, and the older backups are deleted only
    after that. The weights include the optimizer's state, its step counter (the learning-rate schedule) and the
    dropout seed, so a resumed run continues where the backup was taken.

    Args:
        folder: where backups are read from (on every worker of a cluster: the chief's, on shared storage).
        write_folder: where this task writes them; a temporary folder on the workers that are not the chief.
    """

    POINTER = "latest.json"

    def __init__(self, folder: Path, write_folder: Path | None = None, keep: int = 2):
        super().__init__()
        self.folder, self.keep = Path(folder), keep
        self.write_folder = Path(write_folder or folder)
        self.restored_epoch = 0

    def on_train_begin(self, logs=None):
        pointer = self.folder / self.POINTER
        if pointer.exists():
            try:
                latest = json.loads(pointer.read_text())
                weights, epoch = self.folder / latest["weights"], int(latest["epoch"])
            except (ValueError, KeyError, TypeError):
                raise AigcError(f"{pointer} is corrupt; restore it or move {self.folder} away to start over "
                                "(the run's other files are kept)") from None
        elif (self.folder / "training_metadata.json").exists():  # written by keras' BackupAndRestore (older runs)
            weights = self.folder / "latest.weights.h5"
            epoch = int(json.loads((self.folder / "training_metadata.json").read_text())["epoch"])
        else:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(str(weights))
        except (OSError, ValueError, KeyError) as err:
            raise AigcError(f"backup {weights} is unreadable or does not match this model ({type(err).__name__}); "
                            f"move {self.folder} away to start over, or train into a new run folder") from None
        set_initial_epoch(self.model, epoch)  # how keras' BackupAndRestore tells fit where to start
        self.restored_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.write_folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        self.model.save_weights(str(self.write_folder / name), overwrite=True)
        pointer = self.write_folder / self.POINTER
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epoch": epoch + 1, "weights": name}))
        tmp.replace(pointer)  # the moment the new backup becomes the latest
        for old in sorted(self.write_folder.glob("epoch-*.weights.h5"))[:-self.keep]:
            old.unlink()


class TokenThroughput(keras.callbacks.Callback):
    """Tokens per second and the whole run's ETA: on the live progress bar (as `tokens_per_s`), every
    `print_every` steps as one line where there is no live bar (logs, `nohup`), and in TensorBoard.

    The rate is measured over the steps since the last report, so a resumed run's ETA counts only what is left.
    It is kept out of the epoch logs: `history.csv` keeps the columns a resumed run started with.
    """

    def __init__(self, tokens_per_step: int, steps_per_epoch: int, epochs: int, tensorboard_dir: Path,
                 print_every: int | None = None):
        import tensorflow as tf

        super().__init__()
        self.tokens_per_step, self.steps_per_epoch, self.epochs = tokens_per_step, steps_per_epoch, epochs
        self.print_every = print_every
        self.writer = tf.summary.create_file_writer(str(Path(tensorboard_dir) / "throughput"))
        self._epoch, self._mark, self.rate = 0, None, None

    def on_epoch_begin(self, epoch, logs=None):
        import time

        self._epoch, self._mark = epoch, (0, time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        import time

        import tensorflow as tf

        done_batches, began = self._mark
        now = time.perf_counter()
        if batch + 1 - done_batches < 10 and batch + 1 != self.steps_per_epoch:
            if logs is not None and self.rate is not None:
                logs["tokens_per_s"] = self.rate
            return
        self.rate = (batch + 1 - done_batches) * self.tokens_per_step / max(now - began, 1e-9)
        self._mark = (batch + 1, now)
        if logs is not None:
            logs["tokens_per_s"] = self.rate
        step = self._epoch * self.steps_per_epoch + batch + 1
        with self.writer.as_default(step=step):
            tf.summary.scalar("tokens_per_s", self.rate)
        if self.print_every and (step % self.print_every == 0):
            left = (self.epochs * self.steps_per_epoch - step) * self.tokens_per_step / max(self.rate, 1e-9)
            print(f"step {step:,}/{self.epochs * self.steps_per_epoch:,}  {self.rate:,.0f} tokens/s  "
                  f"ETA {left / 60:.0f} min", flush=True)
