"""Training the MLP GAN with an explicit, XLA-compiled train step.

The step is written in the open on purpose (the VAE uses `fit`, GPT-2 uses stock `compile`/`fit`): it shows what a
GAN update is. One forward pass feeds two gradient tapes; D learns to tell real from generated, G learns to fool D.
`tf.function(jit_compile=True)` fuses the whole step, both networks' forward, backward and Adam updates, into one
XLA program. The step has no Python side effects, fixed batch shapes (XLA compiles it once) and draws its noise from
a `tf.random.Generator` that the checkpoint saves, so a resumed run continues the same random stream. It reduces
its losses with `tf.nn.compute_average_loss`, so it runs unchanged inside `strategy.run`.

`train_gan(config, run_dir)` is the one entry point: it resumes from the latest checkpoint in `run_dir`, saves one every
epoch and on Ctrl-C, and writes a sample grid per epoch (from fixed noise), a GIF of them, `history.csv`, a
loss-curve PNG and TensorBoard scalars and images.

Under a distribution strategy (`--strategy mirrored|multiworker`) the same `train_step` runs on every replica via
`strategy.run`, and the losses are summed across replicas (each replica's loss is already divided by the global
batch). That step is a plain `tf.function`: an XLA-compiled function around `strategy.run` fails on mirrored
variables ("variable on a different device"), so XLA stays the single-device path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from aigc_tf import AigcError, TrainingInterrupted, distribute, plots
from aigc_tf.data import images as image_data
from aigc_tf.gan import augment, losses
from aigc_tf.gan import clusters as clustering
from aigc_tf.gan.models import (all_layers, build_discriminator, build_generator, cluster_code, cluster_of,
                                 judges_with_labels, sampler)
from aigc_tf.gan.sample import CHECKPOINT_ERRORS, generate, grid_labels
from aigc_tf.hardware import MIXED_POLICIES
from aigc_tf.runs import RunFolder
from aigc_tf.seeding import seeded
from aigc_tf.training import StopRequest, progress_verbosity

FIXED_NOISE_FILE = "fixed_noise.npy"
CALIBRATION_SAMPLES = 4096  # noise vectors behind the averaged generator's BatchNormalization statistics


class GAN:
    """Both networks, their optimisers, the noise generator and the step counter: all that a checkpoint holds."""

    def __init__(self, config):
        self.config = config
        with seeded(config.seed), _precision_policy(config.precision):  # seeds: weights, dropout; variables fp32
            self.generator = build_generator(config)
            self.discriminator = build_discriminator(config)
        if tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            _synchronize_batch_norm(self.generator)
        self.g_optimizer = _optimizer(config, config.learning_rate)
        self.d_optimizer = _optimizer(config, config.learning_rate * config.d_learning_rate_ratio)
        # Build the optimiser slots now so a checkpoint restores into existing variables.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.augment = augment.parse_policy(config.augment)  # checked before any step is traced
        self.generator_ema = None
        if config.ema_decay:
            with seeded(config.seed), _precision_policy(config.precision):
                self.generator_ema = build_generator(config)
            self.generator_ema.set_weights(self.generator.get_weights())
        self.noise_rng = tf.random.Generator.from_seed(config.seed)
        self._sampler = None  # built on first use: see sampling_generator
        # ONLY_FIRST_REPLICA: under a strategy each replica runs the step, and the counter must advance once.
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        tracked = {"generator_ema": self.generator_ema} if self.generator_ema is not None else {}
        self.checkpoint = tf.train.Checkpoint(
            generator=self.generator, discriminator=self.discriminator, g_optimizer=self.g_optimizer,
            d_optimizer=self.d_optimizer, noise_rng=self.noise_rng, step=self.step,
            seed_states=_seed_states(self.generator) + _seed_states(self.discriminator), **tracked)

    @property
    def sampling_generator(self) -> keras.Model:
        """The generator that samples, evaluates and exports: the EMA copy when the run keeps one, behind the
        sampling truncation when the recipe has one (`models.sampler`)."""
        if self._sampler is None:
            self._sampler = sampler(self.generator_ema if self.generator_ema is not None else self.generator,
                                    self.config)
        return self._sampler

    def train_step(self, real_images, labels=None, noise=None, augment_seeds=None, regularize=True):
        """One update of D and of G on a batch of real images (B, 28, 28, 1) in [-1, 1].

        A conditional GAN also takes the batch's labels (B,) int32: G draws fakes of the same classes and D judges
        each image together with its label. A clustered GAN takes the real digits' clusters (B,) int32 instead: G
        draws each fake's cluster from its noise, and D judges every image with its cluster.

        `noise` (B, Z) and, with augmentation, `augment_seeds` (2, 2) int32 (one stateless seed for the real batch,
        one for the fakes) are drawn from the checkpointed generator unless given (tests pass them: XLA's random
        kernels do not produce the same numbers as TensorFlow's). `regularize` (a Python bool: each value is its
        own trace) says whether this step adds the R1 penalty; see `regularizes`. Returns the batch's losses and D's
        mean belief that real and generated images are real.
        """
        batch_size = tf.shape(real_images)[0]
        global_batch_size = self.config.batch_size  # == batch_size unless a strategy splits the batch
        if noise is None:
            noise = self.noise_rng.normal([batch_size, self.config.latent_dim])  # (B, Z)
        # D sees every image, real or generated, through the same random augmentation (see aigc_tf.gan.augment).
        if self.augment and augment_seeds is None:
            augment_seeds = self.noise_rng.uniform_full_int([2, 2], tf.int32)
        fake_labels = labels  # what D judges the fakes with
        if self.config.clusters:
            fake_labels = cluster_of(noise, cluster_code(self.generator).cumulative_shares)  # (B,)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake_images = self.generator([noise, labels] if self.config.conditional else noise,
                                         training=True)  # (B, 28, 28, 1)
            real_seen = self._seen_by_d(real_images, augment_seeds, 0)
            if self.config.r1_gamma and regularize:
                d_tape.watch(real_seen)  # the R1 penalty differentiates D's verdict on real images by its input
                with tf.GradientTape() as r1_tape:
                    r1_tape.watch(real_seen)
                    real_logits = self._judge(real_seen, labels)  # (B, 1)
                    real_sum = tf.reduce_sum(tf.cast(real_logits, tf.float32))  # each example's own gradient
                # Every r1_interval-th step carries the penalty of r1_interval steps (lazy regularisation).
                r1_weight = self.config.r1_gamma / 2 * self.config.r1_interval
                r1 = r1_weight * _squared_norm(r1_tape.gradient(real_sum, real_seen))  # (B,)
            else:
                real_logits = self._judge(real_seen, labels)  # (B, 1)
                r1 = 0.0
            fake_seen = self._seen_by_d(fake_images, augment_seeds, 1)
            fake_logits = self._judge(fake_seen, fake_labels)  # (B, 1)
            # Under bf16/fp16 the logits come out in half precision: losses and their reduction run in float32.
            real_logits, fake_logits = tf.cast(real_logits, tf.float32), tf.cast(fake_logits, tf.float32)
            g_loss = tf.nn.compute_average_loss(
                losses.generator_loss(self.config.loss, fake_logits), global_batch_size=global_batch_size)
            d_loss = tf.nn.compute_average_loss(
                losses.discriminator_loss(self.config.loss, real_logits, fake_logits, self.config.label_smoothing)
                + r1, global_batch_size=global_batch_size)
            g_scaled, d_scaled = _scale(self.g_optimizer, g_loss), _scale(self.d_optimizer, d_loss)
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        # A LossScaleOptimizer (fp16) divides the gradients of the scaled loss by the scale before Adam sees them.
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_scaled, g_vars), g_vars))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_scaled, d_vars), d_vars))
        self.step.assign_add(1)
        return {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
            "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits)),
        }

    def _judge(self, images, labels):
        """D's logits (B, 1) for images, with their labels or clusters when D judges with them."""
        return self.discriminator([images, labels] if judges_with_labels(self.config) else images, training=True)

    def _seen_by_d(self, images, augment_seeds, which: int):
        """The images as D sees them: augmented with seed `which` when the recipe augments, else unchanged."""
        return augment.diff_augment(images, self.augment, augment_seeds[which]) if self.augment else images

    def update_ema(self):
        """G_ema <- d * G_ema + (1 - d) * G for the weights (BatchNormalization's statistics: `calibrate_ema`).

        The decay ramps up as min(decay, (1 + t) / (10 + t)) over the first steps (as `tf.train.
        ExponentialMovingAverage` does with `num_updates`), so a short run's average is not dominated by the
        random initial weights. Called once per step, outside `strategy.run`: G's weights are the same on every
        replica, and a cross-replica assign updates every copy of the average.
        """
        if self.generator_ema is None:
            return
        t = tf.cast(self.step, tf.float32)
        decay = tf.minimum(tf.constant(self.config.ema_decay, tf.float32), (1.0 + t) / (10.0 + t))
        for average, weight in zip(self.generator_ema.trainable_variables, self.generator.trainable_variables):
            average.assign(decay * average + (1.0 - decay) * weight)

    def calibrate_ema(self, num: int = CALIBRATION_SAMPLES):
        """Set the averaged generator's BatchNormalization statistics to those of its own activations.

        The live G's moving statistics describe the live weights; the averaged weights produce other activations,
        and normalising them with the live statistics undoes part of what averaging gained (the "standing
        statistics" of Brock et al. 2019, BigGAN). One training-mode pass over `num` fixed noise vectors with the
        layers' momentum at 0 stores exactly that batch's statistics. Run before every checkpoint, so whatever
        samples, evaluates or exports the run reads calibrated statistics.
        """
        if self.generator_ema is None:
            return
        norms = [layer for layer in all_layers(self.generator_ema)
                 if isinstance(layer, keras.layers.BatchNormalization)]
        momenta = [layer.momentum for layer in norms]
        noise = np.random.default_rng(self.config.seed + 1).standard_normal(
            (num, self.config.latent_dim)).astype(np.float32)
        inputs = [noise, np.arange(num, dtype=np.int32) % self.config.num_classes] if self.config.conditional else noise
        try:
            for layer in norms:
                layer.momentum = 0.0
            self.generator_ema(inputs, training=True)
        finally:
            for layer, momentum in zip(norms, momenta):
                layer.momentum = momentum

    def regularizes(self, step: int) -> bool:
        """Whether step number `step` (0-based, counted over the whole run) adds the R1 penalty.

        R1 differentiates D's gradient with respect to its input, a second backward pass through D that costs a
        large share of the step (bench/DECISIONS.md). StyleGAN2's lazy regularisation (Karras et al. 2020) adds it on every `r1_interval`-th
        step only, weighted by the interval, so the penalty per image seen stays the same at a fraction of the cost.
        Counted by the global step, so a resumed run regularises the same steps as an uninterrupted one.
        """
        return bool(self.config.r1_gamma) and step % self.config.r1_interval == 0

    def _train_step_and_ema(self, real_images, labels=None, noise=None, augment_seeds=None, regularize=True):
        outputs = self.train_step(real_images, labels, noise, augment_seeds, regularize)
        self.update_ema()
        return outputs

    def compiled_train_step(self, jit_compile: bool | None = None):
        """The step as a `tf.function`, XLA-compiled unless `jit_compile=False` (the `--no-xla` comparison).

        Called with `regularize=True` and `=False` it compiles twice, once per program (with and without R1)."""
        jit = self.config.jit_compile if jit_compile is None else jit_compile
        return tf.function(self._train_step_and_ema, jit_compile=jit)

    def distributed_train_step(self, strategy):
        """The step for `strategy`: the compiled single-device step, or `strategy.run` + reduce.

        Losses are SUM-reduced (each replica already divided its share by the global batch, so the sum is the
        global mean); D's beliefs are per-replica means of equal-sized shares, so they are MEAN-reduced.
        """
        if not distribute.is_distributed(strategy):
            return self.compiled_train_step()

        def step(*batch, regularize=True):
            per_replica = strategy.run(self.train_step, args=batch, kwargs={"regularize": regularize})
            self.update_ema()
            return {name: strategy.reduce(tf.distribute.ReduceOp.SUM if name.endswith("_loss")
                                          else tf.distribute.ReduceOp.MEAN, value, axis=None)
                    for name, value in per_replica.items()}
        return tf.function(step)  # not jit_compile: see the module docstring

    def restore(self, checkpoint_dir: Path) -> str | None:
        """Restore the latest checkpoint in `checkpoint_dir`, if any; returns its path."""
        latest = tf.train.latest_checkpoint(str(checkpoint_dir))
        if latest is None:
            return None
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except AssertionError:
            raise AigcError(f"checkpoint {latest} does not match this model (written by another configuration or "
                            "aigc_tf version); train into a new --out folder") from None
        except CHECKPOINT_ERRORS as err:
            raise AigcError(f"checkpoint {latest} is unreadable ({type(err).__name__}); delete its files to fall "
                            "back to the previous checkpoint, or train into a new --out folder") from None
        return latest


def _check_recipe(config) -> None:
    """The recipe's names and ranges, checked before anything is built or written."""
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
    if config.clusters < 0:
        raise AigcError(f"`clusters` must be >= 0 (0 = no clusters), got {config.clusters}")
    if config.r1_interval < 1:
        raise AigcError(f"`r1_interval` must be >= 1 (1 = R1 on every step), got {config.r1_interval}")


def _optimizer(config, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam with the config's betas; under fp16 wrapped in a LossScaleOptimizer (float16 gradients underflow
    without a loss scale; bfloat16 has float32's exponent range and needs none)."""
    adam = keras.optimizers.Adam(learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
    return keras.optimizers.LossScaleOptimizer(adam) if config.precision == "fp16" else adam


def _scale(optimizer, loss):
    """The loss to differentiate: multiplied by the loss scale under a LossScaleOptimizer, else itself."""
    return optimizer.scale_loss(loss) if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else loss


def _squared_norm(gradients):
    """Per-example squared L2 norm of (B, ...) gradients, in float32."""
    gradients = tf.cast(gradients, tf.float32)
    return tf.reduce_sum(tf.square(gradients), axis=tf.range(1, tf.rank(gradients)))


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


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    step: int
    epochs_done: float
    last_checkpoint: str | None
    outputs: dict[str, Path]
    history: list[dict]


def _progress_bar(steps: int, verbose: bool):
    """Keras' bar, with the same verbosity rule as the `fit`-trained runs."""
    return keras.utils.Progbar(steps, verbose=progress_verbosity(verbose),
                               stateful_metrics=["g_loss", "d_loss", "d_real", "d_fake"],
                               unit_name="step")


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
    train_images = train_data.images
    steps_per_epoch = image_data.batches_per_epoch(len(train_images), config.batch_size)
    if steps_per_epoch == 0:
        raise AigcError(f"`batch_size` {config.batch_size} is larger than the {len(train_images)} training images")
    total_steps = steps if steps is not None else config.epochs * steps_per_epoch
    if total_steps <= 0:
        raise AigcError("nothing to train: `epochs` and `steps` must be positive")
    # After the checks above, so a bad argument leaves no half-made run folder.
    with RunFolder(Path(run_dir)).open_for_training(config, "gan train", chief) as run:
        return _train_loop(config, run, dist, chief, train_data, steps_per_epoch, total_steps, verbose)


def _train_loop(config, run: RunFolder, dist, chief: bool, train_data, steps_per_epoch: int, total_steps: int,
                verbose: bool) -> TrainResult:
    """The loop of `train_gan`, inside the run folder's lock."""
    say = print if verbose else (lambda *a, **k: None)
    with dist.scope():
        gan = GAN(config)
    labels = train_data.labels if config.conditional else None  # what D judges real digits with
    if config.clusters:
        labels = _clusters(run, gan, train_data.images, chief, say)
    manager = tf.train.CheckpointManager(gan.checkpoint, str(distribute.write_dir(dist, run.checkpoints)),
                                         max_to_keep=3)
    restored = gan.restore(run.checkpoints)  # every worker reads the chief's checkpoints (a shared folder)
    # The checkpoint holds the old rates; the config may not.
    gan.g_optimizer.learning_rate.assign(config.learning_rate)
    gan.d_optimizer.learning_rate.assign(config.learning_rate * config.d_learning_rate_ratio)
    start = int(gan.step.numpy())
    if chief:
        run.truncate_history(start)
    else:
        say(f"{distribute.task_name(dist)}: not the chief; checkpoints go to {manager.directory} (discarded)")
    if restored:
        say(f"Resuming {run.path} from step {start} ({restored})")
    noise = fixed_noise(run, config) if chief else None
    outputs = {"run": run.path, "config": run.config_path, "checkpoints": run.checkpoints,
               "history": run.history_csv, "tensorboard": run.tensorboard}

    step_fn = gan.distributed_train_step(dist)
    dataset = image_data.training_batches(train_data.images, config.batch_size, config.seed, start_step=start,
                                          labels=labels)
    if distribute.is_distributed(dist):
        dataset = dist.experimental_distribute_dataset(dataset)  # splits each global batch over the replicas
    batches = iter(dataset)
    writer = tf.summary.create_file_writer(str(run.tensorboard)) if chief else tf.summary.create_noop_writer()
    step = start
    try:
        with StopRequest() as stop:  # Ctrl-C stops between two steps (see StopRequest)
            while step < total_steps:
                epoch = step // steps_per_epoch
                epoch_end = min((epoch + 1) * steps_per_epoch, total_steps)
                say(f"Epoch {epoch + 1}/{math.ceil(total_steps / steps_per_epoch)}")
                bar = _progress_bar(epoch_end - epoch * steps_per_epoch, verbose)
                sums, count, began = {}, 0, time.perf_counter()
                while step < epoch_end:
                    batch = next(batches)
                    batch = batch if labels is not None else (batch,)
                    outputs_of_step = step_fn(*batch, regularize=gan.regularizes(step))
                    metrics = {k: float(v) for k, v in outputs_of_step.items()}
                    step, count = step + 1, count + 1
                    if not all(math.isfinite(v) for v in metrics.values()):  # stop before a checkpoint can store it
                        raise AigcError(f"the losses became NaN/Inf at step {step} ({metrics}); the last good "
                                        f"checkpoint in {run.checkpoints} is kept: lower `learning_rate` and train "
                                        "again to resume from it")
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + v
                    stop.check()  # after the step: a requested stop saves it too
                    bar.update(step - epoch * steps_per_epoch, [(k, v / count) for k, v in sums.items()])
                seconds = time.perf_counter() - began
                means = {k: v / count for k, v in sums.items()}
                if chief:
                    _end_of_epoch(run, gan, manager, writer, noise, epoch, step, means, count / seconds, config)
                else:
                    manager.save(checkpoint_number=step)
    except KeyboardInterrupt:
        gan.calibrate_ema()
        saved = manager.save(checkpoint_number=int(gan.step.numpy()))
        raise TrainingInterrupted(f"interrupted at step {int(gan.step.numpy())}; checkpoint saved to {saved}; "
                                  "run the same command again to resume") from None
    finally:
        writer.close()
        if not chief:
            shutil.rmtree(manager.directory, ignore_errors=True)

    if chief:
        outputs.update(_final_figures(run, config))
        if config.clusters:
            outputs["clusters"] = run.path / clustering.CLUSTERS_FILE
    else:
        outputs = {}  # the chief wrote the run; this worker's checkpoints were temporary
    return TrainResult(run.path, step, step / steps_per_epoch, manager.latest_checkpoint, outputs, run.read_history())


def _clusters(run: RunFolder, gan: GAN, images: np.ndarray, chief: bool, say) -> np.ndarray:
    """Fit (first start) or load the run's k-means clusters, give G their shares; returns each digit's cluster.

    Every worker fits the same clusters from the same seed; only the chief writes them (with a figure of the
    cluster means, the "average digit" of each group, most common first)."""
    if chief:
        found, fitted = clustering.load_or_fit(run.path, images, gan.config.clusters, gan.config.seed)
        if fitted:
            say(f"Grouped the {len(images)} training digits into {gan.config.clusters} k-means clusters: "
                f"{run.path / clustering.CLUSTERS_FILE}")
            order = np.argsort(-found.shares)
            plots.save_grid(found.centroids[order].reshape(-1, 28, 28, 1), run.path / "clusters.png",
                            columns=int(math.ceil(math.sqrt(len(order)))))
    else:
        found = clustering.fit_clusters(images, gan.config.clusters, gan.config.seed)
    for generator in (gan.generator, gan.generator_ema):
        if generator is not None:
            cluster_code(generator).set_shares(found.shares)  # a restored checkpoint holds the same values
    return found.assignments


def _end_of_epoch(run, gan, manager, writer, noise, epoch, step, means, steps_per_s, config) -> None:
    """The history row first, then the checkpoint: a kill in between leaves a row past the last checkpoint, which
    the resumed run drops (`RunFolder.truncate_history`) and writes again, so no row is lost or doubled."""
    run.append_history({"epoch": epoch + 1, "step": step, **{k: f"{v:.6f}" for k, v in means.items()},
                        "steps_per_s": f"{steps_per_s:.2f}"})
    gan.calibrate_ema()
    manager.save(checkpoint_number=step)
    samples = generate(gan.sampling_generator, noise, grid_labels(config))
    plots.save_grid(samples, run.samples / f"epoch_{epoch + 1:04d}.png", columns=config.grid_size)
    with writer.as_default(step=step):
        for name, value in means.items():
            tf.summary.scalar(f"epoch/{name}", value)
        tf.summary.scalar("epoch/steps_per_second", steps_per_s)
        tf.summary.image("samples", plots.image_grid(samples, config.grid_size, scale=1)[None, ..., None])
    writer.flush()


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
