"""Training the MLP GAN: a `keras.Model` whose `train_step` is one GAN update, trained with `fit`.

The step is written in the open on purpose (the VAE overrides `train_step` for its ELBO, GPT-2 uses stock
`compile`/`fit`): it shows what a GAN update is. One forward pass feeds two gradient tapes; D learns to tell real
from generated, G learns to fool D. `compile(jit_compile=True)` has Keras wrap the step in an XLA-compiled
`tf.function`, which fuses both networks' forward, backward and Adam updates into one program. The step has no
Python side effects, fixed batch shapes (XLA compiles it once) and draws its noise from a `tf.random.Generator`
that the checkpoint saves, so a resumed run continues the same random stream. Each stabiliser is one named call
into a module of its own: what G and D are conditioned on (`condition`), DiffAugment (`augment`), the R1 penalty
(`r1`) and the averaged generator (`ema`).

`train_gan(config, run_dir)` is the one entry point: `fit` with the run folder's callbacks (`aigc_tf.training.
fit_run`): a checkpoint every epoch and on Ctrl-C, resuming from the latest one with the same data order, a NaN guard,
`history.csv`, TensorBoard scalars and images, a sample grid per epoch from fixed noise, and at the end a GIF of the
grids and a loss-curve PNG.

Under a distribution strategy (`--strategy mirrored|multiworker`) `fit` runs the same `train_step` on every
replica; each replica divides its loss by the global batch (`tf.nn.compute_average_loss`), so the summed gradients
are the global batch's. That step is not XLA-compiled: an XLA function around `strategy.run` fails on mirrored
variables ("variable on a different device"), so XLA stays the single-device path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from aigc_tf import AigcError, compat, distribute, plots
from aigc_tf.callbacks import StopOnNonFiniteLoss
from aigc_tf.data import images as image_data
from aigc_tf.gan import augment, condition, ema, losses, r1
from aigc_tf.gan import clusters as clustering
from aigc_tf.gan.models import all_layers, build_discriminator, build_generator, sampler
from aigc_tf.gan.sample import CHECKPOINT_ERRORS, generate
from aigc_tf.hardware import MIXED_POLICIES
from aigc_tf.runs import RunFolder
from aigc_tf.seeding import seeded
from aigc_tf.training import fit_run

FIXED_NOISE_FILE = "fixed_noise.npy"
METRICS = ("g_loss", "d_loss", "d_real", "d_fake")


class GAN(keras.Model):
    """Both networks, their optimisers, the noise generator and the step counter: all that a checkpoint holds."""

    def __init__(self, config):
        super().__init__(name="gan")
        self.config = config
        with seeded(config.seed), _precision_policy(config.precision):  # seeds: weights, dropout; variables fp32
            self.generator = build_generator(config)
            self.discriminator = build_discriminator(config)
            self.generator_ema = build_generator(config) if config.ema_decay else None
        if self.generator_ema is not None:
            self.generator_ema.set_weights(self.generator.get_weights())
        if tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            _synchronize_batch_norm(self.generator)
        self.g_optimizer = _optimizer(config, config.learning_rate)
        self.d_optimizer = _optimizer(config, config.learning_rate * config.d_learning_rate_ratio)
        # Build the optimiser slots now so a checkpoint restores into existing variables.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.augment = augment.parse_policy(config.augment)  # checked before any step is traced
        self.noise_rng = tf.random.Generator.from_seed(config.seed)
        # ONLY_FIRST_REPLICA: under a strategy each replica runs the step, and the counter must advance once.
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRICS}
        tracked = {"generator_ema": self.generator_ema} if self.generator_ema is not None else {}
        self.checkpoint = tf.train.Checkpoint(
            generator=self.generator, discriminator=self.discriminator, g_optimizer=self.g_optimizer,
            d_optimizer=self.d_optimizer, noise_rng=self.noise_rng, step=self.step,
            seed_states=_seed_states(self.generator) + _seed_states(self.discriminator), **tracked)
        self._sampler = None  # built on first use: see sampling_generator
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def train_step(self, data, regularize=None):
        """One update of D and of G on a batch: real images (B, 28, 28, 1) in [-1, 1], with the labels (B,) int32
        D judges them with (digits or clusters; see `condition`) and optionally the noise (B, Z).

        The noise, and with augmentation the augmentations' seeds, are drawn from the checkpointed generator unless
        the batch brings the noise (tests do: XLA's random kernels do not produce TensorFlow's numbers). `regularize`
        (a Python bool) overrides whether this step adds the R1 penalty (by default: every `r1_interval`-th step).
        Returns the running means of the losses and of D's belief that real and generated images are real.
        """
        config = self.config
        real_images, labels, noise = _unpack(data)
        if noise is None:
            noise = self.noise_rng.normal([tf.shape(real_images)[0], config.latent_dim])  # (B, Z)
        # D sees every image, real or generated, through the same random augmentation (see aigc_tf.gan.augment).
        seeds = self.noise_rng.uniform_full_int([2, 2], tf.int32) if self.augment else None
        fake_labels = condition.fake_labels(config, self.generator, noise, labels)  # what D judges fakes with
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake_images = self.generator(condition.generator_inputs(config, noise, labels), training=True)
            real_seen = augment.maybe_augment(real_images, self.augment, seeds, 0)  # (B, 28, 28, 1)
            real_logits = condition.judge(config, self.discriminator, real_seen, labels)  # (B, 1)
            fake_logits = condition.judge(config, self.discriminator,
                                          augment.maybe_augment(fake_images, self.augment, seeds, 1), fake_labels)
            # Under bf16/fp16 the logits come out in half precision: losses and their reduction run in float32.
            real_logits, fake_logits = tf.cast(real_logits, tf.float32), tf.cast(fake_logits, tf.float32)
            g_loss = losses.generator_loss(config.loss, fake_logits)  # (B,)
            d_loss = (losses.discriminator_loss(config.loss, real_logits, fake_logits, config.label_smoothing)
                      + self._r1_penalty(real_seen, labels, regularize))  # (B,)
            # Each replica divides by the global batch: summed over replicas, the gradients are the batch mean's.
            g_mean = _scaled(self.g_optimizer, tf.nn.compute_average_loss(g_loss, global_batch_size=config.batch_size))
            d_mean = _scaled(self.d_optimizer, tf.nn.compute_average_loss(d_loss, global_batch_size=config.batch_size))
        _apply(self.g_optimizer, g_tape.gradient(g_mean, self.generator.trainable_variables), self.generator)
        _apply(self.d_optimizer, d_tape.gradient(d_mean, self.discriminator.trainable_variables), self.discriminator)
        self.step.assign_add(1)
        if self.generator_ema is not None:
            ema.update(self.generator_ema, self.generator, self.step, config.ema_decay)
        return self._track(g_loss=g_loss, d_loss=d_loss, d_real=tf.sigmoid(real_logits),
                           d_fake=tf.sigmoid(fake_logits))

    def _r1_penalty(self, real_seen, labels, regularize):
        """R1 (B,) on this step's real images when the recipe has it and the step carries it (see `r1`), else 0."""
        config = self.config
        if not config.r1_gamma:
            return 0.0

        def penalty():
            return r1.penalty(lambda x: condition.judge(config, self.discriminator, x, labels), real_seen,
                              config.r1_gamma, config.r1_interval)
        carries = r1.applies(self.step, config.r1_gamma, config.r1_interval) if regularize is None else regularize
        if isinstance(carries, bool):
            return penalty() if carries else 0.0
        return tf.cond(carries, penalty, lambda: tf.zeros([tf.shape(real_seen)[0]], tf.float32))

    def _track(self, **values):
        for name, value in values.items():
            self.trackers[name].update_state(tf.reduce_mean(value))  # this replica's mean of equal-sized shares
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        # Keras' multi-worker `fit` MEAN-reduces every log along axis 0, which a scalar lacks.
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    @property
    def sampling_generator(self) -> keras.Model:
        """The generator that samples, evaluates and exports: the EMA copy when the run keeps one, behind the
        sampling truncation when the recipe has one (`models.sampler`)."""
        if self._sampler is None:
            self._sampler = sampler(self.generator_ema if self.generator_ema is not None else self.generator,
                                    self.config)
        return self._sampler

    def calibrate_ema(self, num: int = ema.CALIBRATION_SAMPLES):
        """The averaged generator's own BatchNormalization statistics (`ema.calibrate`), if the run keeps one."""
        if self.generator_ema is not None:
            ema.calibrate(self.generator_ema, self.config, num)

    def restore(self, checkpoint_dir: Path) -> str | None:
        """Restore the latest checkpoint in `checkpoint_dir`, if any; returns its path."""
        latest = tf.train.latest_checkpoint(str(checkpoint_dir))
        if latest is None:
            return None
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError):  # a variable missing from the checkpoint, or one of another shape
            raise AigcError(f"checkpoint {latest} does not match this model (written by another configuration or "
                            "aigc_tf version); train into a new --out folder") from None
        except CHECKPOINT_ERRORS as err:
            raise AigcError(f"checkpoint {latest} is unreadable ({type(err).__name__}); delete its files to fall "
                            "back to the previous checkpoint, or train into a new --out folder") from None
        return latest


def _unpack(data):
    """(images, labels, noise) from a batch given as images, (images, labels) or (images, labels, noise)."""
    data = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    return data + (None,) * (3 - len(data))


def _scaled(optimizer, loss):
    """The loss to differentiate: under fp16 multiplied by the LossScaleOptimizer's scale (float16 gradients
    underflow without it), else itself. Computed on the tape, so its gradient is the scaled loss's."""
    return optimizer.scale_loss(loss) if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else loss


def _apply(optimizer, gradients, model: keras.Model) -> None:
    """One optimiser update of `model`'s weights (a LossScaleOptimizer first divides the gradients by its scale,
    and skips the step if they overflowed)."""
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))


def _check_recipe(config) -> None:
    """The recipe's names and ranges, checked before anything is built or written."""
    condition.check(config)
    try:
        augment.parse_policy(config.augment)
    except ValueError as err:
        raise AigcError(f"`augment`: {err}") from None
    if config.loss not in losses.LOSSES:
        raise AigcError(f"unknown `loss` {config.loss!r}; choose one of {', '.join(losses.LOSSES)}")
    if not 0.0 <= config.ema_decay < 1.0:
        raise AigcError(f"`ema_decay` must be in [0, 1), got {config.ema_decay}")
    if config.r1_gamma < 0:
        raise AigcError(f"`r1_gamma` must be >= 0, got {config.r1_gamma}")
    if config.r1_interval < 1:
        raise AigcError(f"`r1_interval` must be >= 1 (1 = R1 on every step), got {config.r1_interval}")


def _optimizer(config, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam with the config's betas; under fp16 wrapped in a LossScaleOptimizer (float16 gradients underflow
    without a loss scale; bfloat16 has float32's exponent range and needs none).

    With `fast_start` M > 1 the rate is M times `learning_rate` for the first `fast_start_steps` N, then eases back
    to it along a cosine over N more steps and stays there (keras' `CosineDecay` with a flat warm-up). The classic
    rate alone leaves a short run of this recipe drawing blobs; a doubled rate throughout lets D pull ahead by the end
    of a long one (bench/DECISIONS.md, "A fast start"): large steps while G travels from noise to digits, the
    classic ones after. The schedule reads the optimiser's step counter, which the checkpoint holds, so a resumed run
    continues on it."""
    if config.fast_start != 1.0:
        fast, steps = learning_rate * config.fast_start, config.fast_start_steps
        learning_rate = keras.optimizers.schedules.CosineDecay(
            fast, decay_steps=steps, alpha=1.0 / config.fast_start, warmup_target=fast, warmup_steps=steps)
    adam = keras.optimizers.Adam(learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
    return keras.optimizers.LossScaleOptimizer(adam) if config.precision == "fp16" else adam


def _synchronize_batch_norm(model: keras.Model) -> None:
    """Make G's BatchNormalization use the statistics of the global batch, all-reduced over the replicas.

    Without it each replica normalises by its own share of the batch, and N replicas no longer compute the update
    one device computes on the same global batch (the losses differ by ~0.2% on 2 replicas of 8 digits).
    """
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


@contextlib.contextmanager
def _precision_policy(precision: str):
    """Build layers under the precision's Keras dtype policy without leaving it set for the rest of the process.

    "bf16" computes every layer in bfloat16 with float32 variables (Keras' mixed_bfloat16; no loss scaling is
    needed, bfloat16 has float32's exponent range)."""
    if precision not in MIXED_POLICIES:
        raise AigcError(f"unknown precision {precision!r}; choose one of {', '.join(MIXED_POLICIES)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(MIXED_POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _seed_states(model: keras.Model) -> list:
    """The state of each Keras `SeedGenerator` (Dropout's masks), which a `tf.train.Checkpoint` of the model
    itself does not reach: without it a resumed run draws other dropout masks than an uninterrupted one."""
    return [v.value for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def fixed_noise(run: RunFolder, config) -> np.ndarray:
    """The noise behind every epoch's grid, stored in the run so the grids of a resumed run stay comparable."""
    path = run.path / FIXED_NOISE_FILE
    if path.exists():
        return np.load(path)
    noise = np.random.default_rng(config.seed).standard_normal((config.grid_size**2, config.latent_dim))
    np.save(path, noise.astype(np.float32))
    return noise.astype(np.float32)


class EpochCheckpoint(keras.callbacks.Callback):
    """At the end of every epoch: the history row, then the checkpoint (with the averaged generator's statistics
    calibrated first), then the sample grid from fixed noise, also in TensorBoard.

    The row comes first: a kill in between leaves a row past the last checkpoint, which the resumed run drops
    (`RunFolder.truncate_history`) and writes again, so no row is lost or doubled. On a worker that is not the
    chief (`run=None`) only the checkpoint is written (to a temporary folder)."""

    def __init__(self, gan: GAN, manager, steps_per_epoch: int, run: RunFolder | None = None, noise=None):
        super().__init__()
        self.gan, self.manager, self.steps_per_epoch, self.run, self.noise = gan, manager, steps_per_epoch, run, noise
        self.writer = tf.summary.create_file_writer(str(run.tensorboard)) if run else None

    def on_epoch_begin(self, epoch, logs=None):
        self.began, self.first_step = time.perf_counter(), int(self.gan.step.numpy())

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.gan.step.numpy())
        if self.run is None:
            self.manager.save(checkpoint_number=step)
            return
        means = {name: float(logs[name]) for name in METRICS}
        steps_per_s = (step - self.first_step) / (time.perf_counter() - self.began)
        number = -(-step // self.steps_per_epoch)  # 1-based: a run's last, shorter epoch counts too
        self.run.append_history({"epoch": number, "step": step, **{k: f"{v:.6f}" for k, v in means.items()},
                                 "steps_per_s": f"{steps_per_s:.2f}"})
        self.gan.calibrate_ema()
        self.manager.save(checkpoint_number=step)
        config = self.gan.config
        samples = generate(self.gan.sampling_generator, self.noise, condition.grid_labels(config))
        plots.save_grid(samples, self.run.samples / f"epoch_{number:04d}.png", columns=config.grid_size)
        with self.writer.as_default(step=step):
            for name, value in means.items():
                tf.summary.scalar(f"epoch/{name}", value)
            tf.summary.scalar("epoch/steps_per_second", steps_per_s)
            tf.summary.image("samples", plots.image_grid(samples, config.grid_size, scale=1)[None, ..., None])
        self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer: after training, not at the end of each `fit` call (`_epoch_plan`)."""
        if self.writer is not None:
            self.writer.close()


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    step: int
    epochs_done: float
    last_checkpoint: str | None
    outputs: dict[str, Path]
    history: list[dict]


def train_gan(config, run_dir: Path, *, steps: int | None = None, data_dir: Path | None = None,
              verbose: bool = True, strategy: str = "one") -> TrainResult:
    """Train (or resume) a GAN run until `config.epochs` epochs, or `steps` steps in total when given.

    `strategy` is a strategy name (see `aigc_tf.distribute`); only the chief writes the run folder, and it holds
    the folder's lock while it trains. Everything random is seeded from `config.seed`; on a GPU a resumed run
    matches an uninterrupted one bit for bit only with deterministic kernels (`distribute.enable_determinism()`).
    """
    _check_recipe(config)
    dist, chief = distribute.start(strategy, config.batch_size)
    train_data = image_data.load_arrays(config.dataset, "train", config.source, data_dir)
    steps_per_epoch = image_data.batches_per_epoch(len(train_data.images), config.batch_size)
    if steps_per_epoch == 0:
        raise AigcError(f"`batch_size` {config.batch_size} is larger than the {len(train_data.images)} training "
                        "images")
    total_steps = steps if steps is not None else config.epochs * steps_per_epoch
    if total_steps <= 0:
        raise AigcError("nothing to train: `epochs` and `steps` must be positive")
    # After the checks above, so a bad argument leaves no half-made run folder.
    with RunFolder(Path(run_dir)).open_for_training(config, "gan train", chief) as run:
        return _fit(config, run, dist, chief, train_data, steps_per_epoch, total_steps, verbose)


def _fit(config, run: RunFolder, dist, chief: bool, train_data, steps_per_epoch: int, total_steps: int,
         verbose: bool) -> TrainResult:
    """`fit` for `train_gan`, inside the run folder's lock."""
    say = print if verbose else (lambda *a, **k: None)
    with dist.scope():
        gan = GAN(config)
        gan.compile(jit_compile=config.jit_compile and not distribute.is_distributed(dist))  # see the docstring
    if isinstance(dist, tf.distribute.MultiWorkerMirroredStrategy):
        compat.train_under_scope_strategy(gan)
    labels = condition.real_labels(config, run, train_data.images, train_data.labels, chief, say)
    condition.give_shares(config, (gan.generator, gan.generator_ema), labels)
    manager = tf.train.CheckpointManager(gan.checkpoint, str(distribute.write_dir(dist, run.checkpoints)),
                                         max_to_keep=3)
    restored = gan.restore(run.checkpoints)  # every worker reads the chief's checkpoints (a shared folder)
    if isinstance(gan.g_optimizer.learning_rate, keras.Variable):  # a constant rate (no fast-start schedule): the
        # checkpoint holds the old one, the config may not
        gan.g_optimizer.learning_rate.assign(config.learning_rate)
        gan.d_optimizer.learning_rate.assign(config.learning_rate * config.d_learning_rate_ratio)
    start = int(gan.step.numpy())
    if chief:
        run.truncate_history(start)
    else:
        say(f"{distribute.task_name(dist)}: not the chief; checkpoints go to {manager.directory} (discarded)")
    if restored:
        say(f"Resuming {run.path} from step {start} ({restored})")
    epoch_end = EpochCheckpoint(gan, manager, steps_per_epoch, run if chief else None,
                                fixed_noise(run, config) if chief else None)
    guard = StopOnNonFiniteLoss(run.checkpoints, what="checkpoint")

    def interrupted() -> str:
        gan.calibrate_ema()
        saved = manager.save(checkpoint_number=int(gan.step.numpy()))
        return (f"interrupted at step {int(gan.step.numpy())}; checkpoint saved to {saved}; run the same command "
                "again to resume")

    try:
        # `fit` counts in epochs of equal length: a run resumed mid-epoch first finishes that epoch, and a `steps`
        # budget that ends mid-epoch ends with a shorter one. Each part starts the data where the step counter is.
        for first_epoch, epochs, length in _epoch_plan(start, total_steps, steps_per_epoch):
            data = image_data.training_batches(train_data.images, config.batch_size, config.seed,
                                               start_step=int(gan.step.numpy()), labels=labels)
            with dist.scope():  # `fit` distributes with the strategy in scope (see compat.train_under_scope_strategy)
                fit_run(run, gan, data, guards=[guard, epoch_end], interrupted=interrupted, history_csv=False,
                        verbose=verbose, chief=chief, initial_epoch=first_epoch, epochs=first_epoch + epochs,
                        steps_per_epoch=length)
    finally:
        epoch_end.close()
        if not chief:
            shutil.rmtree(manager.directory, ignore_errors=True)
    step = int(gan.step.numpy())
    outputs = {}
    if chief:  # a worker's checkpoints were temporary: the chief wrote the run
        outputs = {"run": run.path, "config": run.config_path, "checkpoints": run.checkpoints,
                   "history": run.history_csv, "tensorboard": run.tensorboard, **_final_figures(run, config)}
        if config.condition == "cluster":
            outputs["clusters"] = run.path / clustering.CLUSTERS_FILE
    return TrainResult(run.path, step, step / steps_per_epoch, manager.latest_checkpoint, outputs, run.read_history())


def _epoch_plan(start: int, total: int, steps_per_epoch: int) -> list[tuple[int, int, int]]:
    """The `fit` calls from step `start` to `total`: (first epoch, epochs, steps per epoch) for the rest of a
    started epoch, the whole epochs, and a last shorter one."""
    plan, step = [], start
    if step % steps_per_epoch and step < total:
        length = min(steps_per_epoch - step % steps_per_epoch, total - step)
        plan.append((step // steps_per_epoch, 1, length))
        step += length
    if (total - step) // steps_per_epoch:
        plan.append((step // steps_per_epoch, (total - step) // steps_per_epoch, steps_per_epoch))
        step += (total - step) // steps_per_epoch * steps_per_epoch
    if step < total:
        plan.append((step // steps_per_epoch, 1, total - step))
    return plan


def _final_figures(run: RunFolder, config) -> dict[str, Path]:
    outputs = {}
    frames = sorted(run.samples.glob("epoch_*.png"))
    if frames:
        outputs["last_grid"] = frames[-1]
        outputs["gif"] = plots.save_gif(frames, run.path / "samples.gif")
    if run.history_csv.exists():
        outputs["loss_curve"] = plots.save_loss_curve(
            run.history_csv, run.path / "loss_curve.png", ["d_loss", "g_loss"],
            f"GAN on {config.dataset}: discriminator vs generator loss")
    return outputs
