"""The robustness lesson end to end: `run_robustness(config, out)` is its one entry point.

1. Attack the evaluation classifier (`aigc_tf.metrics.classifier`, trained the standard way) with FGSM and PGD on
   held-out test digits, at every epsilon of the grid.
2. Train a small CNN twice from the same initial weights on the same batches: once the standard way, once
   adversarially (`aigc_tf.robustness.train`), and attack both the same way. The pair isolates what adversarial
   training buys and what it costs in clean accuracy (Tsipras et al. 2019, "Robustness May Be at Odds with
   Accuracy"); the evaluation classifier shows that a bigger, better standard network is no more robust.
3. With a GAN run, ask its discriminator what it makes of the adversarial digits
   (`aigc_tf.robustness.discriminator`).

Everything lands in the output folder: `robustness.json` (every number, the settings, the seed),
`accuracy_vs_epsilon.png`, `adversarial_examples.png`, the robust classifier (`robust_classifier.keras`, a plain
Keras model with the evaluation classifier's input and logits) and TensorBoard scalars of both trainings.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np

from aigc_tf import AigcError

REPORT_FILE = "robustness.json"
CURVES_FILE = "accuracy_vs_epsilon.png"
EXAMPLES_FILE = "adversarial_examples.png"
MODEL_FILE = "robust_classifier.keras"
TENSORBOARD_DIR = "tensorboard"
SUBSET_SEED = 0  # picks the train and test subsets (num_train, num_test)

# The three classifiers, by the key they have in robustness.json, with the name the figures give them.
CLASSIFIERS = {"evaluation": "evaluation classifier (standard)", "standard": "small CNN, standard training",
               "robust": "small CNN, adversarial training"}
SHORT_NAMES = {"evaluation": "eval. classifier", "standard": "standard CNN", "robust": "robust CNN"}  # grid columns


@dataclasses.dataclass
class RobustnessResult:
    out: Path
    report: dict
    outputs: dict[str, Path]
    seconds: float


def check_config(config) -> tuple[float, ...]:
    """The epsilon grid to measure (sorted, 0 added: the clean accuracy anchors every curve); a clear error for
    a budget outside the pixel range or an empty grid."""
    for epsilon in (*config.epsilons, config.train_epsilon):
        if not 0.0 <= epsilon <= 1.0:
            name = "epsilons" if epsilon in config.epsilons else "train_epsilon"
            raise AigcError(f"`{name}` must lie in [0, 1] (pixels are in [0, 1]), got {epsilon:g}")
    for name in ("pgd_steps", "epochs", "batch_size", "train_attack_steps"):
        if getattr(config, name) < 1:
            raise AigcError(f"`{name}` must be a positive integer, got {getattr(config, name)}")
    return tuple(sorted({0.0, *map(float, config.epsilons)}))


def check_folder(out: Path) -> None:
    """A clear error, before any work, when `out` holds something other than an earlier robustness run: such a
    folder is never written to."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT_FILE).exists())):
        raise AigcError(f"{out} exists and is not a robustness run folder; choose a new `out` folder")


def prepare_folder(out: Path) -> None:
    """Create `out`, or reuse one that holds an earlier robustness run (whose TensorBoard logs are replaced, so
    the curves of two runs do not mix)."""
    out = Path(out)
    check_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out / TENSORBOARD_DIR, ignore_errors=True)
        _write_json({"status": "running"}, out / REPORT_FILE)  # marks the folder as ours from the start
    except OSError as err:
        raise AigcError(f"cannot write the `out` folder {out}: {err.strerror or err}") from None


def run_robustness(config, out: Path, gan_run: Path | None = None, *, verbose: bool = True) -> RobustnessResult:
    """Measure, train, measure again, write the report and figures into `out`; see the module docstring.

    Everything random (initial weights, batch order, PGD's random starts, the generator's noise) is seeded from
    `config.seed`. Bad settings and a missing or unreadable GAN run fail before anything is trained or written.
    """
    import keras

    from aigc_tf.data.images import load_arrays
    from aigc_tf.metrics.classifier import load_classifier
    from aigc_tf.robustness import discriminator as discriminator_lib
    from aigc_tf.robustness.evaluate import accuracy_vs_epsilon, predict_classes
    from aigc_tf.robustness.figures import Panel, save_accuracy_curves, save_example_grid
    from aigc_tf.robustness.train import train_classifier

    epsilons = check_config(config)
    check_folder(out)
    began = time.perf_counter()
    say = print if verbose else (lambda *a, **k: None)
    gan = discriminator_lib.load_gan_networks(gan_run) if gan_run is not None else None
    train = load_arrays(config.dataset, "train", config.source)
    test = load_arrays(config.dataset, "test", train.source)
    train_rows, test_rows = subset(len(train), config.num_train), subset(len(test), config.num_test)
    x_train, y_train = train.images[train_rows].astype(np.float32) / 255.0, train.labels[train_rows]
    x_test, y_test = test.images[test_rows].astype(np.float32) / 255.0, test.labels[test_rows]
    if len(x_train) < config.batch_size:
        raise AigcError(f"`num_train` {len(x_train)} is smaller than one batch ({config.batch_size} digits)")
    evaluation = load_classifier(config.dataset, train.source, verbose=2 if verbose else 0)
    out = Path(out)
    prepare_folder(out)

    trained = {}
    for key, adversarial in (("standard", False), ("robust", True)):
        say(f"Training the {CLASSIFIERS[key]} on {len(x_train)} digits" + (f" ({training_attack(config)})"
                                                                           if adversarial else ""))
        trained[key] = train_classifier(config, x_train, y_train, x_test, y_test, adversarial=adversarial,
                                        tensorboard_dir=out / TENSORBOARD_DIR / key, verbose=verbose)
    trained["robust"].model.save(out / MODEL_FILE)

    models = {"evaluation": evaluation.model, "standard": trained["standard"].model,
              "robust": trained["robust"].model}
    curves, adversarial = {}, {}
    for key, model in models.items():
        curves[key], adversarial[key] = accuracy_vs_epsilon(
            model, x_test, y_test, epsilons, pgd_steps=config.pgd_steps, seed=config.seed, verbose=verbose,
            name=CLASSIFIERS[key])

    report = {
        "status": "complete",
        "seed": config.seed,
        "settings": {**dataclasses.asdict(config), "gan_run": str(gan_run) if gan_run else None},
        "data": {"dataset": config.dataset, "source": train.source, "train_digits": len(x_train),
                 "test_digits": len(x_test),
                 "subsets": f"fixed random subsets (NumPy seed {SUBSET_SEED}), the same whatever the seed"},
        "training_attack": training_attack(config),
        "attacks": {"norm": "L-infinity", "pixel_range": [0.0, 1.0],
                    "fgsm": "x + epsilon * sign(grad), clipped (Goodfellow et al. 2015)",
                    "pgd": f"{config.pgd_steps} steps of 2.5 * epsilon / {config.pgd_steps} from a random start in "
                           "the ball, projected after each step (Madry et al. 2018)"},
        "epsilons": list(epsilons),
        "classifiers": {key: {"name": CLASSIFIERS[key], **curves[key]} for key in models},
    }
    report["classifiers"]["evaluation"]["reported_test_accuracy"] = evaluation.test_accuracy
    for key, result in trained.items():
        report["classifiers"][key].update(train_seconds=round(result.seconds, 1), history=result.history)
    if gan is not None:
        say(f"Asking the discriminator of {gan_run} about clean, adversarial and generated digits")
        report["discriminator"] = discriminator_lib.discriminator_report(
            gan, x_test, y_test, adversarial["evaluation"], epsilons, num_samples=config.gan_samples,
            seed=config.seed)
        report["discriminator"]["adversarial_digits_attack"] = CLASSIFIERS["evaluation"]

    outputs = {"folder": out, "report": out / REPORT_FILE}
    outputs["accuracy_curves"] = save_accuracy_curves(
        {CLASSIFIERS[key]: curves[key] for key in models}, epsilons, out / CURVES_FILE,
        f"{config.dataset}: accuracy under L\u221e attacks ({len(x_test)} test digits, PGD-{config.pgd_steps})",
        train_epsilon=config.train_epsilon)
    rows = figure_digits(y_test, predict_classes(evaluation.model, x_test), config.figure_digits)
    shown = figure_epsilons(epsilons)
    panels = []
    for key in ("evaluation", "robust"):
        for epsilon in shown:
            images = adversarial[key]["pgd", epsilon][rows]
            probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(models[key].predict(images, verbose=0)))
            panels.append(Panel(SHORT_NAMES[key], epsilon, images, probabilities.argmax(1), probabilities.max(1)))
    outputs["examples"] = save_example_grid(
        x_test[rows], y_test[rows], panels, out / EXAMPLES_FILE,
        f"PGD-{config.pgd_steps} adversarial digits: \u03b4 = x' - x (amplified), x', and what the attacked "
        "classifier answers")
    outputs["robust_classifier"] = out / MODEL_FILE
    outputs["tensorboard"] = out / TENSORBOARD_DIR
    report["seconds"] = round(time.perf_counter() - began, 1)
    _write_json(report, out / REPORT_FILE)
    return RobustnessResult(out, report, outputs, report["seconds"])


def training_attack(config) -> str:
    attack = ("FGSM with random start" if config.train_attack_steps == 1
              else f"PGD-{config.train_attack_steps} from a random start")
    return f"{attack}, epsilon {config.train_epsilon:g} after a {config.warmup_epochs}-epoch ramp"


def subset(size: int, count: int) -> np.ndarray:
    """`count` random indices of a split of `size` (all of them, shuffled, for 0), always the same ones.

    Random, because the offline splits are sorted by label (the first 1,000 test digits are all 0s and 1s); the
    same for every `seed`, so runs with different seeds differ in their training only, and are measured on the
    same digits.
    """
    return np.random.default_rng(SUBSET_SEED).permutation(size)[:count or None]


def summary_lines(report: dict) -> list[str]:
    """The report's numbers as a small text table: accuracy (%) per classifier and attack, one column per epsilon;
    then D's mean realness when the report has it."""
    epsilons = report["epsilons"]
    width = max(len(c["name"]) for c in report["classifiers"].values()) + 7
    lines = ["accuracy (%)".ljust(width) + "".join(f"{'eps ' + format(e, 'g'):>10}" for e in epsilons)]
    for classifier in report["classifiers"].values():
        for attack in ("fgsm", "pgd"):
            lines.append(f"{classifier['name']}, {attack.upper():<4}".ljust(width)
                         + "".join(f"{100 * a:>10.1f}" for a in classifier[attack]))
    d = report.get("discriminator")
    if d:
        lines.append(f"D(real) clean {d['clean']:.3f}, generated {d['generated']:.3f}")
        for name in ("fgsm", "pgd", "random_sign_noise"):
            lines.append(f"D(real) {name:<17}".ljust(width) + "".join(f"{v:>10.3f}" for v in d[name]))
    return lines


def figure_digits(labels: np.ndarray, predictions: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` test digits for the figure: the first correctly classified one of class 0, 1, 2, ...
    (a different class per row reads better than whatever the first rows hold)."""
    chosen = []
    for i in range(count):
        candidates = np.flatnonzero((labels == i % 10) & (predictions == labels))
        candidates = [c for c in candidates if c not in chosen]
        if candidates:
            chosen.append(candidates[0])
    return np.asarray(chosen, np.int64)


def figure_epsilons(epsilons) -> list[float]:
    """The largest epsilon and the one nearest half of it: a readable pair for the example grid."""
    largest = max(epsilons)
    if largest == 0:
        return [0.0]
    half = min((e for e in epsilons if e > 0), key=lambda e: abs(e - largest / 2))
    return sorted({half, largest})


def _write_json(report: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
