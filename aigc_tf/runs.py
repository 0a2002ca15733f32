"""Run folders: one folder per training run holds its config, checkpoints, logs and figures.

The rules that keep a user's work safe:
- a folder that holds something other than an aigc_tf run is never written to;
- a run of another model family, or with a different architecture, is never resumed or overwritten;
- re-running the same command resumes from the latest checkpoint;
- a kill at any moment, even in the middle of writing a checkpoint, leaves the previous checkpoint usable: a new
  one is written beside it and only then named the latest (one atomic rename);
- training never starts in a folder it cannot write, or on a disk without room for its checkpoints;
- a NaN/Inf loss stops training before it is written over the last good checkpoint;
- one writer at a time: a trainer holds the folder's lock (`aigc_tf.locks`) while it runs, and a second one is
  refused with the first one's PID.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

from aigc_tf import AigcError
from aigc_tf import config as config_lib
from aigc_tf.locks import LOCK_FILE, exclusive

CONFIG_FILE = "config.json"
# Free space a run needs before it starts: room for a few checkpoints of the default models, each written beside the
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
                        f"{needed / 2**20:,.0f} MB for its checkpoints: free some space or choose another folder "
                        "(AIGC_TF_MIN_FREE_MB sets the threshold)")


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

    def config_with(self, family: str, **changes):
        """The config a training call continues with: the stored one of the run in this folder (or the family's
        defaults for a new run), with `changes` applied; `None` values mean "keep"."""
        base = self.load_config(family) if self.exists() else config_lib.CONFIGS[family]()
        return base.replace(**{name: value for name, value in changes.items() if value is not None})

    def exists(self) -> bool:
        return self.config_path.exists()

    def load_config(self, family: str | None = None):
        """The stored config; a clear error when the folder is not a run (of this family)."""
        if not self.config_path.exists():
            raise AigcError(f"{self.path} is not an aigc_tf run folder (no {CONFIG_FILE}); "
                            f"train one there first (`aigc-tf {family or 'gan'} train --out {self.path}`)")
        try:
            stored = config_lib.load(self.config_path)
        except (ValueError, TypeError, json.JSONDecodeError) as err:
            raise AigcError(f"{self.config_path} is corrupt ({err}); "
                            "move the folder away or restore the file") from None
        if family and stored.family != family:
            raise AigcError(f"{self.path} holds a {stored.family} run, not a {family} run; "
                            f"use `aigc-tf {stored.family} ...` or another folder")
        return stored

    def _refuse_foreign(self) -> None:
        """A folder that holds something other than an aigc_tf run (its lock file aside) is never written to."""
        if self.exists() or not self.path.exists():
            return
        if not self.path.is_dir() or any(p.name != LOCK_FILE for p in self.path.iterdir()):
            raise AigcError(f"{self.path} exists and is not an aigc_tf run folder; choose a new run folder")

    def check(self, config) -> None:
        """Refuse, without writing anything, a folder `config` cannot train in: a foreign folder, a run of another
        family or architecture, a disk without room for checkpoints."""
        self._refuse_foreign()
        if self.exists():
            stored = self.load_config(config.family)
            changed = [f"{name}={getattr(stored, name)!r} (asked {getattr(config, name)!r})"
                       for name in config.ARCHITECTURE if getattr(stored, name) != getattr(config, name)]
            if changed:
                raise AigcError(f"{self.path} was trained with {', '.join(changed)}; resume with the same "
                                "settings or train into a new run folder")
        check_free_space(self.path)

    def prepare(self, config) -> None:
        """Create the folder for `config`, or check that the run in it can be resumed with `config`."""
        self.check(config)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            config_lib.save(config, self.config_path)  # also proves the folder is writable, before any training
        except OSError as err:
            raise AigcError(f"cannot write the run folder {self.path}: {err.strerror or err}; choose another "
                            "folder or fix its permissions") from None

    @contextlib.contextmanager
    def open_for_training(self, config, what: str, chief: bool = True):
        """Prepare the folder for `config` and hold its lock until the block ends (a trainer's lifetime).

        Only the chief of a cluster writes the run folder: on other workers this only yields.
        """
        if not chief:
            yield self
            return
        self.check(config)  # before the lock file is written into it
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(exclusive(self.path, what))
            except OSError as err:
                raise AigcError(f"cannot write the run folder {self.path}: {err.strerror or err}; choose another "
                                "folder or fix its permissions") from None
            self.prepare(config)
            yield self

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
