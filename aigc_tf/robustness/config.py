"""The robustness lesson's settings: what is attacked, how hard, and how the small robust classifier is trained."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from aigc_tf.flags import non_negative_int, positive_int


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
    """Settings of `aigc_tf.robustness.run.run_robustness`, with a `tiny()` for tests.

    The evaluation attack is PGD with `pgd_steps` steps of 2.5 * epsilon / steps. Madry et al. 2018 evaluated with
    40 to 100 steps on MNIST; fewer steps give a looser (higher) robust-accuracy bound in a fraction of the time, so
    the default is the few steps that already break both standard classifiers. Raise `pgd_steps` for a tighter
    bound (`aigc-tf robust --pgd-steps 50` shows how much it moves). epsilon 0.3 is the MNIST budget of Madry et al.:
    at that size the digit is still plainly readable to a person.

    Training recipe: PGD with 2 steps of 1.25 epsilon from a random start (Madry et al.'s recipe, with the few
    steps a CPU affords), epsilon 0.3 ramped up over the first epoch, a cosine-decayed Adam. One step, FGSM with
    random start (Wong et al. 2020, `train_attack_steps=1`), is cheaper but holds up worse against the multi-step
    evaluation PGD: the single linear step leaves the model room to bend its loss surface just past where that
    step looks (`--train-attack-steps 1` runs that comparison).
    """

    dataset: str = "mnist"
    source: str | None = None  # offline source; None picks the fetched one (see aigc_tf.data.images)
    epsilons: tuple[float, ...] = field(default=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3), metadata={  # accuracy-vs-epsilon
        "help": "L-infinity budgets in [0, 1], pixels in [0, 1]; 0 is always added", "metavar": "E1,E2,..."})
    pgd_steps: int = field(default=10, metadata={"help": "steps of the evaluation PGD attack", "type": positive_int})
    num_test: int = field(default=1000, metadata={  # a fixed random subset of the test split (0: all of them)
        "help": "test digits attacked, 0 for all", "type": non_negative_int})
    # The small classifier, trained twice from the same initial weights: standard and adversarial.
    filters: tuple[int, ...] = (32, 64)
    dense_units: int = 128
    epochs: int = field(default=6, metadata={"help": "training epochs of each small CNN", "type": positive_int})
    batch_size: int = 128
    learning_rate: float = 2e-3
    train_epsilon: float = field(default=0.3, metadata={"help": "adversarial training budget", "type": float})
    train_attack_steps: int = field(default=2, metadata={  # 1: FGSM with random start (Wong et al.)
        "help": "PGD steps per training update (Madry et al. 2018), each one more pass over the batch; 1 is FGSM "
                "with random start (Wong et al. 2020)", "type": positive_int})
    train_step_size: float | None = None  # a fraction of epsilon; None: 1.25 for one step, else 2.5 / steps
    warmup_epochs: int = 1  # epsilon grows linearly from 0 over these epochs
    num_train: int = field(default=0, metadata={  # a fixed random subset of the train split (0: all of it)
        "help": "training digits, 0 for all", "type": non_negative_int})
    gan_samples: int = 1000  # generated digits the discriminator judges (with --gan-run)
    figure_digits: int = 6  # digits in adversarial_examples.png
    seed: int = field(default=0, metadata={
        "help": "seeds weights, batch order, PGD's random starts, GAN noise", "type": non_negative_int})

    @classmethod
    def tiny(cls, **overrides) -> "RobustnessConfig":
        """A config that runs end to end in seconds on 2 CPU cores, for tests."""
        base = dict(epsilons=(0.0, 0.1, 0.3), pgd_steps=3, num_test=200, filters=(8,), dense_units=32, epochs=1,
                    batch_size=100, num_train=1000, gan_samples=100, figure_digits=3)
        return cls(**{**base, **overrides})

    def replace(self, **changes) -> "RobustnessConfig":
        return dataclasses.replace(self, **changes)
