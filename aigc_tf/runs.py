"""Run folders: one folder per training run holds its config, checkpoints, logs and figures.

The rules that keep a user's work safe:
- a folder that holds something other than an aigc_tf run is never written to;
- a run of another model family, or with a different architecture, is never resumed or overwritten;
- re-running the same command resumes from the latest checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

from aigc_tf import AigcError, TrainingInterrupted
from aigc_tf import config as config_lib

CONFIG_FILE = "config.json"


def progress_verbosity(verbose: bool) -> int:
    """Keras verbosity: the live bar on a terminal, one summary line per epoch in logs and CI, nothing when quiet."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2


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
            **fit_kwargs) -> float:
        """`model.fit` with every fit-trained run's callbacks; returns the seconds it took.

        `BackupAndRestore` makes re-running the same command resume from the last finished epoch; `CSVLogger`
        appends to `history.csv` across resumes; TensorBoard writes the scalars. Ctrl-C becomes
        `TrainingInterrupted`, which the CLI turns into one line and exit status 130.
        """
        import keras

        callbacks = [
            keras.callbacks.BackupAndRestore(str(self.backup), save_freq="epoch", delete_checkpoint=False),
            keras.callbacks.CSVLogger(str(self.history_csv), append=True),
            keras.callbacks.TensorBoard(str(self.tensorboard), update_freq=tensorboard_update_freq),
            *extra_callbacks,
        ]
        began = time.perf_counter()
        try:
            model.fit(data, callbacks=callbacks, verbose=progress_verbosity(verbose), shuffle=False, **fit_kwargs)
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
        elif self.path.exists() and any(self.path.iterdir()):
            raise AigcError(f"{self.path} exists and is not an aigc_tf run folder; choose a new --out folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            config_lib.save(config, self.config_path)
        except OSError as err:
            raise AigcError(f"cannot write the run folder {self.path}: {err.strerror}") from None

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
