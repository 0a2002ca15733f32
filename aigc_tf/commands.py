"""What each `aigc-tf` command does: one library call, and the lines it prints.

The command table (the commands, their flags, which function runs each) is `aigc_tf.cli`. A handler takes the parsed
arguments, calls one library function and prints its outputs: progress and paths on stderr, so that stdout stays
machine-readable where a command prints JSON or text. The library imports sit inside the handlers, so that a
command loads only the part of the library it runs.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from aigc_tf import AigcError
from aigc_tf.config import CONFIGS
from aigc_tf.flags import given_flags

RUNS = {"gan": Path("runs/gan"), "vae": Path("runs/vae"), "text": Path("runs/gpt2")}  # each family's default --out


def say(*parts) -> None:
    """Progress and paths go to stderr, so stdout stays machine-readable where a command prints JSON."""
    print(*parts, file=sys.stderr, flush=True)


def _print_report(report: dict, path: Path) -> int:
    """An eval report as the command's only stdout (one JSON object), and where it was saved."""
    print(json.dumps(report, indent=2))
    say(f"Wrote {path}")
    return 0


def _print_outputs(title: str, outputs: dict) -> None:
    say(title)
    if not outputs:
        say("  nothing: this worker is not the chief, which writes the run folder")
        return
    width = max(len(k) for k in outputs)
    for name, path in outputs.items():
        if path is not None:
            say(f"  {name:<{width}}  {path}")


def _quiet_stdout():
    """Keras prints progress (a first-use classifier's training, evaluate bars) to stdout: keep it for results."""
    return contextlib.redirect_stdout(sys.stderr)


def train_config(args):
    """The run's stored config (or the family's defaults), with only the flags given on the command line."""
    from aigc_tf.runs import RunFolder

    changes = given_flags(args, CONFIGS[args.family])
    if args.no_xla:
        changes["jit_compile"] = False
    return RunFolder(args.out).config_with(args.family, **changes)


def _before_training(args) -> None:
    """What only the entry point may switch on for the whole process."""
    if args.deterministic:
        from aigc_tf.distribute import enable_determinism

        enable_determinism()


def say_serving_config(export: Path) -> None:
    from aigc_tf.serving.model_config import config_of_export

    if config := config_of_export(export):
        say(f"  TF Serving config: {config}")


# ---------------------------------------------------------------------------------------------------- handlers
def cmd_data_fetch(args) -> int:
    from aigc_tf.data.catalog import fetch_dataset

    for dataset in args.datasets or ["mnist"]:
        say(f"  {dataset} ready: {fetch_dataset(dataset, args.source, force=args.force, say=say)}")
    return 0


def cmd_data_list(args) -> int:
    from aigc_tf.data.catalog import dataset_table

    print(dataset_table())
    return 0


def cmd_gan_train(args) -> int:
    from aigc_tf.gan.train import train_gan

    _before_training(args)
    result = train_gan(train_config(args), args.out, steps=args.steps, strategy=args.strategy)
    _print_outputs(f"Trained {result.step} steps ({result.epochs_done:.1f} epochs). Outputs:", result.outputs)
    return 0


def cmd_gan_sample(args) -> int:
    from aigc_tf.gan.sample import sample_grid

    path = sample_grid(args.run, args.out, num=args.num, seed=args.seed, digit=args.digit)
    say(f"Wrote {args.num} {'samples' if args.digit is None else f'of digit {args.digit}'} of {args.run}: {path}")
    return 0


def cmd_gan_eval(args) -> int:
    from aigc_tf.gan.evaluate import EVAL_FILE, evaluate_gan

    with _quiet_stdout():
        report = evaluate_gan(args.run, seed=args.seed)
    return _print_report(report, args.run / EVAL_FILE)


def cmd_gan_export(args) -> int:
    from aigc_tf.gan.export import export_gan

    path = export_gan(args.run, args.to)
    say(f"Exported {args.run} for TF Serving: {path}")
    say_serving_config(path)
    say(f"  inspect: saved_model_cli show --dir {path} --tag_set serve --signature_def serving_default")
    return 0


def cmd_vae_train(args) -> int:
    from aigc_tf.vae.train import train_vae

    _before_training(args)
    result = train_vae(train_config(args), args.out, steps=args.steps, strategy=args.strategy)
    _print_outputs(f"Trained for {result.seconds:.0f} s. Outputs:", result.outputs)
    return 0


def cmd_vae_sample(args) -> int:
    from aigc_tf.vae.sample import sample_grid

    say(f"Wrote {args.num} prior samples of {args.run}: {sample_grid(args.run, args.out, args.num, args.seed)}")
    return 0


def cmd_vae_eval(args) -> int:
    from aigc_tf.vae.evaluate import EVAL_FILE, evaluate_vae

    with _quiet_stdout():
        report = evaluate_vae(args.run, seed=args.seed)
    return _print_report(report, args.run / EVAL_FILE)


def cmd_vae_export(args) -> int:
    from aigc_tf.vae.export import export_vae

    decoder, encoder = export_vae(args.run, args.to)
    say(f"Exported {args.run} for TF Serving:\n  decoder (latent -> images)             {decoder}\n"
         f"  encoder (images -> mean, log_variance) {encoder}")
    say_serving_config(decoder)
    return 0


def cmd_text_train(args) -> int:
    from aigc_tf.text.train import train_text

    if args.from_scratch and args.preset:
        raise AigcError("--from-scratch trains a new GPT-2 and --preset fine-tunes one: give one of them")
    _before_training(args)
    config = train_config(args)
    result = train_text(config.replace(preset=None) if args.from_scratch else config, args.out, steps=args.steps,
                        strategy=args.strategy)
    share = result.trainable_parameters / max(result.total_parameters, 1)
    _print_outputs(f"Trained {result.tokens_seen:,} tokens in {result.seconds:.0f} s "
                   f"({result.tokens_seen / max(result.seconds, 1e-9):,.0f} tokens/s); trainable parameters "
                   f"{result.trainable_parameters:,} of {result.total_parameters:,} ({share:.2%}). Outputs:",
                   result.outputs)
    return 0


def cmd_text_pretrain(args) -> int:
    from aigc_tf.text import pretrain

    result = pretrain.pretrain(args.out, pretrain.pretrain_config(seed=args.seed) if args.seed is not None else
                               pretrain.BASE_RECIPE)
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
                               continuation_tokens=args.continuation_tokens, preset=args.preset, out=out,
                               no_repeat_ngram_size=args.no_repeat_ngram)
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
    from aigc_tf.text.sample import check_streamable, generate, stream

    prompts = read_prompts(args)
    controls = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                    max_length=args.max_length, repetition_penalty=args.repetition_penalty,
                    no_repeat_ngram_size=args.no_repeat_ngram)
    if args.stream:  # the pieces go to stdout as they are decoded; Keras' chatter goes to stderr
        prompt = check_streamable(prompts, args.num_return_sequences, args.precision, as_json=args.json)
        out = sys.stdout
        with _quiet_stdout():
            for piece in stream(text_model(args), prompt, args.sampler, **controls):
                out.write(piece)
                out.flush()
        out.write("\n---\n")
        return 0
    with _quiet_stdout():
        texts = generate(text_model(args), prompts, args.sampler, num_return_sequences=args.num_return_sequences,
                         num_beams=args.num_beams, jit_compile=False if args.no_xla else None,
                         precision=args.precision, **controls)
    if args.json:
        print(json.dumps([{"prompt": p, "texts": t} for p, t in zip(prompts, texts)], indent=2))
        return 0
    for text in (text for group in texts for text in group):
        print(f"{text}\n---")
    return 0


def cmd_text_export(args) -> int:
    from aigc_tf.serving.model_config import XLA_FLAG, serving_command
    from aigc_tf.text.export import export_text

    path = export_text(args.run, args.to, max_new_tokens=args.max_new_tokens, top_p=args.top_p,
                       temperature=args.temperature, xla=args.xla, precision=args.precision, preset=args.preset)
    say(f"Exported {args.run or args.preset} for TF Serving: {path}" +
         (f"  (XLA: the server needs {XLA_FLAG})" if args.xla else "  (runs on a stock model server)"))
    say_serving_config(path)
    say("  signatures: serving_default (greedy) and sample (top-p): prompts: string -> text: string, need TF Text; "
         "generate_tokens: int32 ids + lengths, core TF only")
    say("  optional per-request inputs: max_new_tokens, temperature, top_k, top_p, seed (one value, or one per "
         "prompt; one per prompt under --enable_batching)")
    say(f"  serve:   {serving_command(path.parent.parent, xla=args.xla)}")
    return 0


def cmd_serving_config(args) -> int:
    from aigc_tf.serving.model_config import configure_serving

    for line in configure_serving(args.base, args.serving_base, args.policy, args.batching, args.max_batch_size,
                                  args.max_execution_batch_size):
        say(line)
    return 0


def cmd_serving_check(args) -> int:
    from aigc_tf.serving.check import XLA_FLAG, check_serving_folder, config_report, format_report

    for line in config_report(args.path):
        print(line)
    server = f"a server started with {XLA_FLAG}" if args.xla else "a stock server (XLA disabled)"
    say(f"checking each export in a fresh process (Session-based loader, as {server}) ...")
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
    kind, result = ask(connect(args.url, args.grpc, timeout=args.timeout), args.model, signature=args.signature,
                       version=args.version, prompts=prompts, num=args.num, digit=args.digit, seed=args.seed,
                       max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                       top_p=args.top_p)
    if kind == "text":
        for text in result:
            print(f"{text}\n---")
    else:
        say(f"Wrote {args.num} images from {args.model!r}: {plots.save_grid(result, args.out)}")
    return 0


def cmd_robust(args) -> int:
    from aigc_tf.robustness.config import RobustnessConfig
    from aigc_tf.robustness.run import run_robustness, summary_lines

    result = run_robustness(RobustnessConfig().replace(**given_flags(args, RobustnessConfig)), args.out,
                            gan_run=args.gan_run)
    for line in summary_lines(result.report):
        say(line)
    _print_outputs(f"Done in {result.seconds:.0f} s. Outputs:", result.outputs)
    return 0
