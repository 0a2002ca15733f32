"""Adversarial training: fit a classifier on the attack's images instead of the clean ones.

Madry et al. 2018 ("Towards Deep Learning Models Resistant to Adversarial Attacks") write robust training as a
saddle-point problem,

    min_theta  E_(x, y) [ max_{||delta||_inf <= epsilon}  L(f_theta(x + delta), y) ],

and solve the inner max approximately with PGD on every batch: each update sees the worst images the attack finds
near the batch, not the batch itself. Its cost is (attack steps + 1) forward/backward passes per update, so a CPU
affords only a few steps (`train_attack_steps`, 2 by default). Wong et al. 2020 ("Fast is better than free") showed
that ONE step can do when it starts from a random point of the ball and steps 1.25 epsilon: FGSM with random
initialisation, `train_attack_steps=1` here. Without the random start, single-step training "catastrophically
overfits": the model learns to defeat FGSM's one linear step and stays defenceless against PGD. That is why the
robust curve is always measured with a many-step PGD, and why a large gap between a model's FGSM and PGD accuracy
is a warning sign.

The loss is still cross-entropy of `y` vs `f(x)`, but x is made inside the step, so `RobustTraining` overrides
`train_step` and trains with plain `fit` (the VAE's idiom). Epsilon ramps up linearly over the first
`warmup_epochs` (the ramp of Gowal et al. 2018's interval bound training): a freshly initialised small network
facing the full budget from its first step can settle on predicting one class and never leave it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from aigc_tf.robustness.attacks import PGD_STEP_FACTOR, pgd
from aigc_tf.seeding import seeded
from aigc_tf.training import progress_verbosity


FGSM_RS_STEP = 1.25  # Wong et al. 2020's single step, in epsilons: from a random start, past the ball, projected


def build_small_classifier(filters: tuple[int, ...] = (32, 64), dense_units: int = 128,
                           num_classes: int = 10) -> keras.Model:
    """(B, 28, 28, 1) in [0, 1] -> class logits (B, classes): conv-ReLU-maxpool blocks, one hidden Dense.

    The evaluation classifier's family without its extras, each left out for a reason: no random translation or
    rotation (the attack would differentiate one random view and the update apply to another), no
    BatchNormalization (clean and adversarial batches would share running statistics, and the attack sees the
    inference-mode network while the update sees the training-mode one), no dropout (the same mismatch).
    """
    inputs = keras.Input((28, 28, 1), name="image")
    x = inputs
    for n in filters:
        x = keras.layers.Conv2D(n, 3, activation="relu", padding="same")(x)
        x = keras.layers.MaxPooling2D()(x)  # 28 -> 14 -> 7
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="features")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="small_classifier")


class RobustTraining(keras.Model):
    """Wraps a classifier; each `fit` step attacks the batch with PGD and updates on the adversarial images.

    The attack's random start of step t is drawn from the stateless seed (seed, t): reproducible, and no extra
    random state to carry. `epsilon=0` is standard training (the attack is skipped), the baseline with the same
    network, data order and optimiser.

    Args:
        classifier: the model to train (logits out); it is what gets saved.
        epsilon: the training budget (L-infinity, pixel units).
        attack_steps: PGD steps per update; 1 with `step_size=1.25 * epsilon` is FGSM with random start.
        step_size: per-step size as a fraction of the current epsilon; default 1.25 for one step, else 2.5 / steps.
        warmup_steps: updates over which epsilon grows linearly from 0 to `epsilon`.
        seed: the attack's random-start seed.
    """

    def __init__(self, classifier: keras.Model, epsilon: float, attack_steps: int = 1, step_size: float | None = None,
                 warmup_steps: int = 0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.epsilon, self.attack_steps, self.warmup_steps, self.seed = epsilon, attack_steps, warmup_steps, seed
        self.step_fraction = step_size if step_size is not None else (
            FGSM_RS_STEP if attack_steps == 1 else PGD_STEP_FACTOR / attack_steps)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.trackers = {"loss": keras.metrics.Mean(name="loss"),
                         "accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                         "epsilon": keras.metrics.Mean(name="epsilon")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        return self.classifier(images, training=training)

    def current_epsilon(self):
        """epsilon * min(1, (t + 1) / warmup_steps) at update t: the linear ramp."""
        if not self.warmup_steps:
            return tf.constant(self.epsilon, tf.float32)
        t = tf.cast(self.optimizer.iterations + 1, tf.float32)
        return self.epsilon * tf.minimum(1.0, t / self.warmup_steps)

    def train_step(self, data):
        images, labels = data  # (B, 28, 28, 1) in [0, 1], (B,)
        epsilon = self.current_epsilon()
        if self.epsilon > 0:  # a Python constant: standard training traces no attack at all
            seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.optimizer.iterations, tf.int64)])
            images = tf.stop_gradient(pgd(self.classifier, images, labels, epsilon, steps=self.attack_steps,
                                          step_size=self.step_fraction * epsilon, random_start=True, seed=seed))
        with tf.GradientTape() as tape:
            logits = self.classifier(images, training=True)  # (B, classes)
            loss = self.loss_fn(labels, logits)
        variables = self.classifier.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._update(loss, labels, logits, epsilon)

    def test_step(self, data):
        """Clean loss and accuracy (the validation split is not attacked: PGD curves are measured afterwards)."""
        images, labels = data
        logits = self.classifier(images, training=False)
        return self._update(self.loss_fn(labels, logits), labels, logits)

    def _update(self, loss, labels, logits, epsilon=None):
        self.trackers["loss"].update_state(loss)
        self.trackers["accuracy"].update_state(labels, logits)
        names = ["loss", "accuracy"]
        if epsilon is not None:  # training only: the budget in use, to watch the ramp
            self.trackers["epsilon"].update_state(epsilon)
            names.append("epsilon")
        return {name: self.trackers[name].result() for name in names}


@dataclasses.dataclass
class TrainedClassifier:
    model: keras.Model
    history: dict[str, list[float]]
    seconds: float


def train_classifier(config, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
                     adversarial: bool, tensorboard_dir: Path | None = None, verbose: bool = True) -> TrainedClassifier:
    """Train `build_small_classifier` for `config.epochs` epochs, adversarially (`config.train_epsilon`) or not.

    Both variants start from the same initial weights (`seeded(config.seed)`) and see the same batches in the same
    order, so the only difference between them is the attack. Writes TensorBoard scalars (loss, accuracy, the
    epsilon in use; validation on the clean held-out digits) to `tensorboard_dir` when given.
    """
    with seeded(config.seed):
        classifier = build_small_classifier(config.filters, config.dense_units)
    steps_per_epoch = len(x_train) // config.batch_size
    model = RobustTraining(classifier, config.train_epsilon if adversarial else 0.0, config.train_attack_steps,
                           config.train_step_size, config.warmup_epochs * steps_per_epoch, config.seed)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps_per_epoch)
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    train = (tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=config.seed)
             .batch(config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(500)
    callbacks = [keras.callbacks.TensorBoard(str(tensorboard_dir))] if tensorboard_dir else []
    began = time.perf_counter()
    history = model.fit(train, epochs=config.epochs, validation_data=val, callbacks=callbacks, shuffle=False,
                        verbose=progress_verbosity(verbose))  # shuffled above, by the seed
    return TrainedClassifier(classifier, {k: [float(v) for v in vs] for k, vs in history.history.items()},
                             time.perf_counter() - began)
