"""Faults: SIGKILL at any moment, half-written and corrupt checkpoints, NaN losses, unwritable or full disks.

The kills are real: a training subprocess and `os.kill(pid, SIGKILL)`, no cooperation from the process.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from aigc_tf import AigcError
from aigc_tf.config import GANConfig, VAEConfig
from aigc_tf.callbacks import EpochBackup
from aigc_tf.runs import RunFolder

GAN_FLAGS = ["--batch-size", "500", "--latent-dim", "8", "--seed", "3", "--deterministic"]


def _train_cmd(family, run, *flags):
    return [sys.executable, "-m", "aigc_tf", family, "train", "--out", str(run), *flags]


def _kill_after(cmd, ready, cwd, timeout=180):
    """Start `cmd`, wait until `ready()` holds (a checkpoint exists), then SIGKILL it; returns its stderr."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"finished or failed before the kill: {proc.communicate()[1][-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return err


def _run(cmd, cwd):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_sigkilled_deterministic_gan_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    """Kill `gan train --deterministic` with SIGKILL after its first checkpoint, re-run the same command: the
    final weights equal, bit for bit, those of a run that was never interrupted."""
    import tensorflow as tf

    from aigc_tf.gan.sample import load_generator

    steps = ["--steps", "40"]  # ~3 epochs of 14 steps: the kill lands after checkpoint 14, before the end
    killed = tmp_path / "killed"
    _kill_after(_train_cmd("gan", killed, *steps, *GAN_FLAGS),
                lambda: (killed / "checkpoints" / "checkpoint").exists(), tmp_path)
    at_kill = int(tf.train.latest_checkpoint(str(killed / "checkpoints")).rsplit("-", 1)[1])
    assert 14 <= at_kill < 40
    resumed = _run(_train_cmd("gan", killed, *steps, *GAN_FLAGS), tmp_path)
    assert f"Resuming {killed} from step {at_kill}" in resumed.stdout
    _run(_train_cmd("gan", tmp_path / "whole", *steps, *GAN_FLAGS), tmp_path)

    g_killed, _, step_killed = load_generator(killed)
    g_whole, _, step_whole = load_generator(tmp_path / "whole")
    assert step_killed == step_whole == 40
    for a, b in zip(g_killed.weights, g_whole.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    rows = RunFolder(killed).read_history()
    assert [int(r["step"]) for r in rows] == [14, 28, 40]  # no row lost or doubled


@pytest.mark.slow
def test_sigkilled_vae_resumes_from_its_last_epoch_backup(tmp_path):
    run = tmp_path / "vae"
    flags = ["--epochs", "60", "--latent-dim", "2", "--batch-size", "500"]  # 14 steps an epoch
    _kill_after(_train_cmd("vae", run, *flags), lambda: (run / "backup" / EpochBackup.POINTER).exists(), tmp_path)
    backed_up = json.loads((run / "backup" / EpochBackup.POINTER).read_text())["epoch"]
    assert 1 <= backed_up < 60
    resumed = _run(_train_cmd("vae", run, "--epochs", str(backed_up + 1), *flags[2:]), tmp_path)
    assert f"Epoch {backed_up + 1}/{backed_up + 1}" in resumed.stdout  # only the one missing epoch ran
    assert (run / "vae.weights.h5").exists()


def _tiny_gan(tmp_path, steps=4):
    from aigc_tf.gan.train import train_gan as train

    config = GANConfig.tiny(batch_size=500, jit_compile=False)  # faults, not XLA: skip its compile time
    train(config, tmp_path / "run", steps=steps, verbose=False)
    return config, tmp_path / "run"


def test_a_half_written_gan_checkpoint_is_skipped(tmp_path, mnist_train):
    """A kill while TensorFlow writes checkpoint N leaves its files without the `checkpoint` state file naming
    them: the run resumes from the previous one."""
    from aigc_tf.gan.train import train_gan as train

    config, run = _tiny_gan(tmp_path)
    (run / "checkpoints" / "ckpt-6.data-00000-of-00001").write_bytes(b"\x00" * 100)  # torn write, no index
    result = train(config, run, steps=6, verbose=False)
    assert [int(r["step"]) for r in result.history] == [4, 6]
    assert result.last_checkpoint.endswith("ckpt-6")


def _fit_backup_run(tmp_path):
    from aigc_tf.vae.train import train_vae as train

    config = VAEConfig.tiny(epochs=1, batch_size=500, jit_compile=False)  # 14 steps an epoch
    train(config, tmp_path / "vae", verbose=False)
    return config, tmp_path / "vae"


def test_a_half_written_fit_backup_is_skipped_and_a_corrupt_one_is_one_line(tmp_path, mnist_train):
    from aigc_tf.vae.train import train_vae as train

    config, run = _fit_backup_run(tmp_path)
    backup = run / "backup"
    assert json.loads((backup / "latest.json").read_text()) == {"epoch": 1, "weights": "epoch-0001.weights.h5"}
    (backup / "epoch-0002.weights.h5").write_bytes(b"\x89HDF\r\n")  # the kill landed during the next save
    result = train(config.replace(epochs=2), run, verbose=False)
    assert [int(r["epoch"]) for r in result.history] == [0, 1]  # resumed at epoch 2, did not restart
    assert json.loads((backup / "latest.json").read_text())["epoch"] == 2

    (backup / "epoch-0002.weights.h5").write_bytes(b"garbage")  # now the backup it points at is corrupt
    with pytest.raises(AigcError, match="is unreadable or does not match") as info:
        train(config.replace(epochs=3), run, verbose=False)
    assert "\n" not in str(info.value)
    assert (backup / "epoch-0002.weights.h5").read_bytes() == b"garbage"  # evidence kept, nothing overwritten


def test_nan_loss_stops_the_gan_and_keeps_the_last_good_checkpoint(tmp_path, mnist_train):
    import tensorflow as tf

    from aigc_tf.gan.train import train_gan as train

    config = GANConfig.tiny(batch_size=2000, jit_compile=False)  # 4 steps an epoch
    run = tmp_path / "run"
    train(config, run, steps=4, verbose=False)  # one good epoch
    good = tf.train.latest_checkpoint(str(run / "checkpoints"))
    with pytest.raises(AigcError, match="the [dg]_loss became (nan|inf|-inf) at step .* the last good checkpoint .* is "
                                       "kept") as info:
        train(config.replace(learning_rate=1e30), run, steps=12, verbose=False)
    assert "\n" not in str(info.value)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")) == good


def test_nan_loss_stops_fit_before_the_next_backup(tmp_path, mnist_train, monkeypatch):
    from aigc_tf.vae import train as vae_train

    config, run = _fit_backup_run(tmp_path)
    pointer = (run / "backup" / "latest.json").read_text()
    real_images = vae_train.unit_images

    def images_with_a_nan(*args):
        images = real_images(*args).copy()
        images[:, 14, 14, 0] = np.nan  # a corrupt pixel in every digit: the first batch's loss is NaN
        return images

    monkeypatch.setattr(vae_train, "unit_images", images_with_a_nan)
    with pytest.raises(AigcError, match="the loss became nan at step 1 .* last good backup .* is kept"):
        vae_train.train_vae(config.replace(epochs=3), run, verbose=False)
    assert (run / "backup" / "latest.json").read_text() == pointer
    assert not (run / "backup" / "epoch-0002.weights.h5").exists()


def test_an_unwritable_out_folder_fails_before_training(tmp_path, capsys):
    from aigc_tf.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["gan", "train", "--out", str(blocker / "run"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the run folder" in err[0] and "choose another folder" in err[0]

    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["vae", "train", "--out", str(locked / "run"), "--steps", "1"]) == 2
        assert "cannot write the run folder" in capsys.readouterr().err


def test_a_full_disk_fails_before_training_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from aigc_tf.cli import main

    monkeypatch.setenv("AIGC_TF_MIN_FREE_MB", str(10**12))  # more than any disk has: this disk is "full"
    run = tmp_path / "run"
    assert main(["text", "train", "--out", str(run), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MB free on the disk of" in err[0] and "AIGC_TF_MIN_FREE_MB" in err[0]
    assert not run.exists()


def test_a_run_of_another_family_or_config_is_refused_and_left_intact(tmp_path, mnist_train):
    from aigc_tf.vae.train import train_vae

    config, run = _tiny_gan(tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(AigcError, match="holds a gan run, not a vae run"):
        train_vae(VAEConfig.tiny(), run, steps=1, verbose=False)
    (run / "config.json").write_text('{"family": "gan", "latent_dim": "eight"')  # truncated by a crash
    with pytest.raises(AigcError, match="config.json is corrupt"):
        train_vae(VAEConfig.tiny(), run, steps=1, verbose=False)
    before[run / "config.json"] = (run / "config.json").read_bytes()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_a_second_writer_of_a_run_folder_is_refused_naming_the_first(tmp_path, mnist_train):
    """Two real `gan train` processes on one folder: the second is refused in one line with the first's PID and
    leaves the holder's record alone; once the first is SIGKILLed, the kernel has released its lock and training resumes."""
    run = tmp_path / "run"
    flags = ["--batch-size", "500", "--latent-dim", "8", "--epochs", "500"]
    first = subprocess.Popen(_train_cmd("gan", run, *flags), cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (run / "checkpoints").exists():  # the first one holds the lock
            assert first.poll() is None, "the first trainer ended early"
            time.sleep(0.05)
        second = subprocess.run(_train_cmd("gan", run, *flags), cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2
        err = [line for line in second.stderr.splitlines() if line.startswith("aigc-tf")]  # not TensorFlow's logs
        assert len(err) == 1 and f"is in use by another aigc-tf process (PID {first.pid}: gan train" in err[0], err
        assert json.loads((run / ".lock").read_text())["pid"] == first.pid
    finally:
        first.kill()
        first.wait(timeout=60)
    _run(_train_cmd("gan", run, "--steps", "1"), cwd=tmp_path)  # resumes (nothing left to do, or one step)
