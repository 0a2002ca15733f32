"""`aigc-tf demo`: the whole chain on the offline defaults, as the commands a learner would type, in one process.

Each stage is an `aigc-tf` command line, printed before it runs and run in this process (one TensorFlow start-up
instead of fourteen): train, evaluate, sample and export the GAN, GPT-2 and the VAE, then check the exports the way
a stock TF Serving loads them. The stage times are printed at the end and written to `<runs>/demo_times.json`,
with the set-up time (venv, install, data fetch) when `make demo` passes its start time.

The budgets are the configs' defaults, so the demo trains exactly what `aigc-tf gan train` etc. train; longer
runs are one flag away (`--gan-epochs`, `--text-steps`, `--vae-epochs`).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

PROMPTS = ("It is a beautiful day", "The whale")
BASE = "aigc_gpt2_base"  # the shipped pretrained GPT-2 that `text train` fine-tunes by default
GREEDY = ("--no-repeat-ngram", "3")  # greedy decoding with the repetition control every text lesson uses
TOP_P = ("--sampler", "top_p", "--top-p", "0.9", "--temperature", "0.8", "--num-return-sequences", "2")


# `--tiny`: the same commands on tiny budgets (CI runs the whole chain this way in a few minutes; a learner never
# needs it). Each entry is appended to the command line of the stage it names.
TINY = {
    "gan train": ["--steps", "20", "--latent-dim", "8", "--clusters", "4"],
    "text eval": ["--max-sequences", "4", "--bleu-samples", "2"],
    "text generate": ["--max-length", "16"],
    "text train": ["--steps", "2", "--steps-per-epoch", "2", "--batch-size", "2", "--sequence-length", "32"],
    "text export": ["--max-new-tokens", "8"],
}


def stages(runs: Path, models: Path, seed: int, gan_epochs: int | None = None, text_steps: int | None = None,
           vae_epochs: int | None = None, tiny: bool = False) -> list[tuple[str, list[str]]]:
    """(group, argv) for every command of the demo, in order; `tiny` adds `TINY`'s flags (and one VAE epoch)."""
    if tiny:
        vae_epochs = vae_epochs or 1
        return [(group, argv + TINY.get(" ".join(argv[:2]), []))
                for group, argv in stages(runs, models, seed, gan_epochs, text_steps, vae_epochs)]
    gan, text, vae = runs / "gan", runs / "gpt2", runs / "vae"
    prompts = [arg for prompt in PROMPTS for arg in ("--prompt", prompt)]
    seed_flag = ["--seed", str(seed)]
    optional = lambda flag, value: [flag, str(value)] if value else []  # noqa: E731
    return [
        ("GAN", ["gan", "train", "--out", str(gan), *seed_flag, *optional("--epochs", gan_epochs)]),
        ("GAN", ["gan", "eval", "--run", str(gan)]),
        ("GAN", ["gan", "sample", "--run", str(gan), "--out", str(gan / "samples_seed0.png")]),
        ("GAN", ["gan", "export", "--run", str(gan), "--to", str(models / "gan")]),
        # Before: the shipped base model on the Moby-Dick windows fine-tuning will hold out, and its continuations.
        ("GPT-2", ["text", "eval", "--preset", BASE, "--corpus", "moby_dick", "--bleu-samples", "0",
                   "--out", str(runs / "eval_base_moby_dick.json")]),
        ("GPT-2", ["text", "generate", "--preset", BASE, *prompts, *GREEDY]),
        ("GPT-2", ["text", "generate", "--preset", BASE, *prompts, *TOP_P]),
        # Fine-tune it on Moby-Dick with fit, then the same numbers and the same continuations after.
        ("GPT-2", ["text", "train", "--out", str(text), *seed_flag, *optional("--steps", text_steps)]),
        ("GPT-2", ["text", "eval", "--run", str(text), "--corpus", "moby_dick"]),
        ("GPT-2", ["text", "generate", "--run", str(text), *prompts, *GREEDY]),
        ("GPT-2", ["text", "generate", "--run", str(text), *prompts, *TOP_P]),
        ("GPT-2", ["text", "export", "--run", str(text), "--to", str(models / "gpt2")]),
        ("VAE", ["vae", "train", "--out", str(vae), *seed_flag, *optional("--epochs", vae_epochs)]),
        ("VAE", ["vae", "eval", "--run", str(vae)]),
        ("VAE", ["vae", "export", "--run", str(vae), "--to", str(models)]),
        ("serving check", ["serving", "check", str(models)]),
    ]


def run_demo(main, runs: Path = Path("runs"), models: Path = Path("saved_models"), seed: int = 0,
             gan_epochs: int | None = None, text_steps: int | None = None, vae_epochs: int | None = None,
             started_at: float | None = None, tiny: bool = False) -> dict:
    """Run every stage through `main` (the CLI's `main(argv) -> exit status`, passed in by the CLI so that this
    module sits below it); stop at the first that fails. Returns (and writes) the stage times in seconds."""
    began = time.time()
    times: dict[str, float] = {}
    if started_at is not None:
        times["setup (venv, install, data)"] = max(0.0, began - started_at)
    for group, argv in stages(runs, models, seed, gan_epochs, text_steps, vae_epochs, tiny):
        print(f"\n$ aigc-tf {shlex.join(argv)}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        status = main(argv)
        times[group] = times.get(group, 0.0) + time.perf_counter() - start
        if status != 0:
            raise SystemExit(f"aigc-tf demo: `aigc-tf {shlex.join(argv)}` failed (exit {status}); fix it and run "
                             "the demo again: finished stages resume or are redone quickly")
    times["total"] = sum(times.values())
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / "demo_times.json"
    path.write_text(json.dumps({name: round(seconds, 1) for name, seconds in times.items()}, indent=2))
    print(time_table(times), file=sys.stderr)
    print(f"stage times: {path}", file=sys.stderr)
    before, after = runs / "eval_base_moby_dick.json", runs / "gpt2" / "eval_moby_dick.json"
    if before.exists() and after.exists():  # the text half's headline: what fine-tuning the base bought
        before, after = (json.loads(p.read_text()) for p in (before, after))
        print(f"GPT-2 on Moby-Dick's held-out tenth: perplexity {before['perplexity']:,.1f} (shipped base) -> "
              f"{after['perplexity']:,.1f} (fine-tuned)", file=sys.stderr)
    return times


def time_table(times: dict[str, float]) -> str:
    width = max(len(name) for name in times)
    lines = ["", "Stage times"] + [f"  {name:<{width}}  {seconds:6.0f} s" for name, seconds in times.items()]
    return "\n".join(lines)
