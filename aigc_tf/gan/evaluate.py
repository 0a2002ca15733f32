"""How good are a GAN's digits? Classifier FID and Inception-style score against real-data references, and for a
digit-conditioned GAN whether each image shows the digit it was asked for."""

from __future__ import annotations

import json
from pathlib import Path

from aigc_tf.gan import condition
from aigc_tf.gan.sample import draw, load_generator
from aigc_tf.metrics.classifier import load_classifier
from aigc_tf.metrics.image_quality import COPIES_FIGURE, sample_quality, save_nearest_copies

EVAL_FILE = "eval.json"


def evaluate_gan(run_dir: Path, seed: int = 0, verbose: int = 2, split: str = "test") -> dict:
    """The run's report (`aigc_tf.metrics.image_quality.sample_quality`, plus `label_accuracy` for a
    digit-conditioned GAN, judged by the evaluation classifier), also written to `<run>/eval.json`. `seed` draws
    the noise and the real-data halves; `split` is where the real digits come from ("validation" to choose a
    recipe, "test" to report one). A run that samples with truncation is also scored without it
    (`without_truncation`). The closest sample / training-digit pairs are drawn to `<run>/nearest_copies.png`."""
    generator, config, step = load_generator(run_dir)
    drawn = {}

    def generate_fn(n):
        drawn["images"], drawn["labels"] = draw(generator, config, n, seed)
        return drawn["images"]

    report = {"run": str(run_dir), "step": step, "truncation": config.truncation, "split": split,
              **sample_quality(generate_fn, config.dataset, config.source, seed=seed, verbose=verbose, split=split)}
    save_nearest_copies(drawn["images"], report, Path(run_dir) / COPIES_FIGURE)
    if config.truncation:  # the same weights on plain N(0, I) noise: what the truncation trick adds
        plain, _, _ = load_generator(run_dir, truncation=0.0)
        untruncated = sample_quality(lambda n: draw(plain, config, n, seed)[0], config.dataset, config.source,
                                     seed=seed, verbose=verbose, split=split)
        report["without_truncation"] = {key: untruncated[key] for key in ("fid", "inception_score")}
    if condition.generator_takes_labels(config):
        classifier = load_classifier(config.dataset, config.source, verbose=verbose)
        report["label_accuracy"] = classifier.accuracy(drawn["images"], drawn["labels"])
    (Path(run_dir) / EVAL_FILE).write_text(json.dumps(report, indent=2))
    return report
