"""Run folders: one folder per training run holds its config, checkpoints, logs and figures.

The rules that keep a user's work safe:
- a folder that holds something other than an aigc_tf run is never written to;
- a run of another model family, or with a different architecture, is never resumed or overwritten;
- re-running the same command resumes from the latest checkpoint;
- a kill at any moment, even in the middle of writing a checkpoint, leaves the previous checkpoint usable: a new
  one is written beside it and only then named the latest (one atomic rename);
- training never starts in a folder it cannot write, or on a disk without room for its checkpoints;
- a NaN/Inf loss stops training before it is written over the last good checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import keras

from aigc_tf import AigcError, TrainingInterrupted
from aigc_tf import config as config_lib

CONFIG_FILE = "config.json"
# Free space a run needs before it starts: checkpoints of the default models are 20-180 MB, each written beside the
# previous one. AIGC_TF_MIN_FREE_MB changes it.
DEFAULT_MIN_FREE_MB = 500


def min_free_bytes() -> int:
    raw = os.environ.get("AIGC_TF_MIN_FREE_MB", str(DEFAULT_MIN_FREE_MB))
    try:
        return int(float(raw) * 2**20)
    except ValueError:
        raise AigcError(f"AIGC_TF_MIN_FREE_MB must be a number of megabytes, got {raw!r}") from None


def check_free_space(path: Path) -> None:
    """A clear error before training when the disk that would hold `path` has less than `min_free_bytes()`."""
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free, needed = shutil.disk_usage(existing).free, min_free_bytes()
    if free < needed:
        raise AigcError(f"only {free / 2**20:,.0f} MB free on the disk of {path}; a run needs at least "
                        f"{needed / 2**20:,.0f} MB for its checkpoints: free some space or choose another --out "
                        "(AIGC_TF_MIN_FREE_MB sets the threshold)")


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop `fit` at the first NaN/Inf loss, with one clear line, before the next backup could store it.

    Keras' own `TerminateOnNaN` ends `fit` quietly, after which a trainer would save the broken weights.
    """

    def __init__(self, backup: Path):
        super().__init__()
        self.backup = backup

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise AigcError(f"the loss became {float(loss)} at step {batch + 1} of an epoch; training stopped and "
                            f"the last good backup in {self.backup} is kept: lower the learning rate and run the "
                            "same command to resume from it")


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
                            f"move {self.folder} away to start over, or train into a new --out folder") from None
        self.model._initial_epoch = epoch  # how keras' BackupAndRestore tells fit where to start
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


def progress_verbosity(verbose: bool) -> int:
    """Keras verbosity: the live bar on a terminal, one summary line per epoch in logs and CI, nothing when quiet."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2


class StopRequest:
    """Ctrl-C as a request to stop at the next step boundary, instead of an exception at a random bytecode.

    Python raises `KeyboardInterrupt` wherever the main thread happens to be: inside a checkpoint write (tearing
    it), or inside a finalizer (`__del__`, a weakref callback), where Python prints "Exception ignored" and training
    simply goes on. The trainers check `requested` between steps, save a checkpoint and stop. A second Ctrl-C
    interrupts at once, for a step that hangs. A process that ignores SIGINT (a `cmd &` job) keeps ignoring it.
    """

    def __init__(self):
        self.requested, self._previous = False, None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
                self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Raise `KeyboardInterrupt` at this safe point if a stop was requested."""
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _StopOnRequest(keras.callbacks.Callback):
    def __init__(self, stop: StopRequest):
        super().__init__()
        self.stop = stop

    def on_train_batch_end(self, batch, logs=None):
        self.stop.check()


@dataclasses.dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def history_csv(self) -> Path:
        return self.path / "history.csv"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def backup(self) -> Path:
        return self.path / "backup"

    def fit(self, model, data, *, extra_callbacks=(), verbose: bool = True, tensorboard_update_freq="epoch",
            chief: bool = True, backup_write_dir: Path | None = None, **fit_kwargs) -> float:
        """`model.fit` with every fit-trained run's callbacks; returns the seconds it took.

        `EpochBackup` makes re-running the same command resume from the last finished epoch (the checkpoint
        interval of a fit-trained run is one epoch: a kill loses at most the epoch in progress); `CSVLogger`
        appends to `history.csv` across resumes; TensorBoard writes the scalars; a NaN/Inf loss stops training
        before the next backup. Ctrl-C becomes `TrainingInterrupted`, which the CLI turns into one line and exit
        status 130. On a worker that is not the chief (`chief=False`) only the backup is written, to
        `backup_write_dir`, and the logs and `extra_callbacks` are left to the chief.
        """
        callbacks = [StopOnNonFiniteLoss(self.backup), EpochBackup(self.backup, backup_write_dir)]
        if chief:
            callbacks += [keras.callbacks.CSVLogger(str(self.history_csv), append=True),
                          keras.callbacks.TensorBoard(str(self.tensorboard), update_freq=tensorboard_update_freq),
                          *extra_callbacks]
        began = time.perf_counter()
        try:
            with StopRequest() as stop:
                model.fit(data, callbacks=[_StopOnRequest(stop), *callbacks], verbose=progress_verbosity(verbose),
                          shuffle=False, **fit_kwargs)
        except KeyboardInterrupt:
            raise TrainingInterrupted(f"interrupted; the last epoch's backup is in {self.backup}; "
                                      "run the same command again to resume from it") from None
        return time.perf_counter() - began

    def exists(self) -> bool:
        return self.config_path.exists()

    def load_config(self, family: str | None = None):
        """The stored config; a clear error when the folder is not a run (of this family)."""
        if not self.config_path.exists():
            raise AigcError(f"{self.path} is not an aigc_tf run folder (no {CONFIG_FILE}); "
                            f"train one first with `aigc-tf {family or 'gan'} train --out {self.path}`")
        try:
            stored = config_lib.load(self.config_path)
        except (ValueError, TypeError, json.JSONDecodeError) as err:
            raise AigcError(f"{self.config_path} is corrupt ({err}); "
                            "move the folder away or restore the file") from None
        if family and stored.family != family:
            raise AigcError(f"{self.path} holds a {stored.family} run, not a {family} run; "
                            f"use `aigc-tf {stored.family} ...` or another folder")
        return stored

    def prepare(self, config) -> None:
        """Create the folder for `config`, or check that the run in it can be resumed with `config`."""
        if self.exists():
            stored = self.load_config(config.family)
            changed = [f"{name}={getattr(stored, name)!r} (asked {getattr(config, name)!r})"
                       for name in config.ARCHITECTURE if getattr(stored, name) != getattr(config, name)]
            if changed:
                raise AigcError(f"{self.path} was trained with {', '.join(changed)}; resume with the same "
                                "settings or train into a new --out folder")
        elif self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise AigcError(f"{self.path} exists and is not an aigc_tf run folder; choose a new --out folder")
        check_free_space(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            config_lib.save(config, self.config_path)  # also proves the folder is writable, before any training
        except OSError as err:
            raise AigcError(f"cannot write the run folder {self.path}: {err.strerror or err}; choose another --out "
                            "folder or fix its permissions") from None

    def read_history(self) -> list[dict]:
        if not self.history_csv.exists():
            return []
        with open(self.history_csv, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_history(self, last_step: int) -> None:
        """Drop rows logged after the checkpoint a run resumes from (a kill can land between the two writes)."""
        rows = [r for r in self.read_history() if int(r["step"]) <= last_step]
        if self.history_csv.exists():
            self._write_rows(rows, list(rows[0]) if rows else None)

    def append_history(self, row: dict) -> None:
        rows = self.read_history() + [{k: str(v) for k, v in row.items()}]
        self._write_rows(rows, list(row))

    def _write_rows(self, rows: list[dict], fieldnames: list[str] | None) -> None:
        tmp = self.history_csv.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            if fieldnames:
                writer = csv.DictWriter(f, fieldnames=fieldnames)
                writer.writeheader()
                writer.writerows(rows)
        tmp.replace(self.history_csv)
