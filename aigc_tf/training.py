"""What every trainer shares: Ctrl-C as a stop request, Keras' progress verbosity, and `fit` with a run folder's
callbacks (`fit_run`, for the GAN, the VAE and GPT-2).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import keras

from aigc_tf import TrainingInterrupted
from aigc_tf.callbacks import EpochBackup, StopOnNonFiniteLoss
from aigc_tf.runs import RunFolder


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


def fit_run(run: RunFolder, model, data, *, guards=None, interrupted=None, history_csv: bool = True,
            extra_callbacks=(), verbose: bool = True, tensorboard_update_freq="epoch", chief: bool = True,
            backup_write_dir: Path | None = None, **fit_kwargs) -> float:
    """`model.fit` with every fit-trained run's callbacks; returns the seconds it took.

    `guards` keep the run resumable; by default a NaN/Inf loss stops training before the next backup, and
    `EpochBackup` makes re-running the same command resume from the last finished epoch (the checkpoint
    interval of a fit-trained run is one epoch: a kill loses at most the epoch in progress). The GAN passes its
    own (a `tf.train.Checkpoint` per epoch). `CSVLogger` appends to `history.csv` across resumes (unless
    `history_csv=False`: the guards write it); TensorBoard writes the scalars. Ctrl-C becomes `TrainingInterrupted`
    with the message `interrupted()` returns (it may save a checkpoint first), which the CLI turns into one line and
    exit status 130. On a worker that is not the chief (`chief=False`) only the guards run (the backup goes to
    `backup_write_dir`), and the logs and `extra_callbacks` are left to the chief.
    """
    if guards is None:
        guards = [StopOnNonFiniteLoss(run.backup), EpochBackup(run.backup, backup_write_dir)]
    callbacks = list(guards)
    if chief:
        if history_csv:
            callbacks.append(keras.callbacks.CSVLogger(str(run.history_csv), append=True))
        callbacks += [keras.callbacks.TensorBoard(str(run.tensorboard), update_freq=tensorboard_update_freq),
                      *extra_callbacks]
    began = time.perf_counter()
    try:
        with StopRequest() as stop:
            model.fit(data, callbacks=[_StopOnRequest(stop), *callbacks], verbose=progress_verbosity(verbose),
                      shuffle=False, **fit_kwargs)
    except KeyboardInterrupt:
        message = interrupted() if interrupted else (f"interrupted; the last epoch's backup is in {run.backup}; "
                                                      "run the same command again to resume from it")
        raise TrainingInterrupted(message) from None
    return time.perf_counter() - began
