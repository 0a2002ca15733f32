"""Fine-tuning recipes for the shipped base on Moby-Dick, chosen on a selection split and reported on the held-out one.

    python bench/text_peft_search.py select [--rows full@1e-3,prefix64@3e-2,...]   # -> bench/text_peft_search.json
                                                                  # (adds rows to the file's earlier ones)
    python bench/text_peft_search.py report [--seeds 0,1,2]                        # -> bench/text_peft_seeds.json

Every fine-tuning run holds out Moby-Dick's last tenth (`TextConfig.validation_fraction`), and the README's PEFT
table reports perplexity on it. Choosing each method's learning rate (or prefix length) by that same number would
report the best of several tries on the split that picks it. So `select` never reads it: it writes the training
nine tenths to a folder of chapters (`bench/.cache/text_peft/selection_corpus/`), and each row fine-tunes on that
folder as a corpus, whose own last tenth (the selection split, about 200 windows of 128 tokens) scores it. Each
method keeps the row with the lowest selection loss.

`report` then trains each method's chosen row on the real corpus (`moby_dick`) for every seed and scores it on the
held-out tenth once, beside the base model before fine-tuning: the mean and the min-max over seeds of perplexity and
of the share of full fine-tuning's loss gain each method recovers, (base - method) / (base - full), paired by seed.
The budget is `make results`' (200 steps of 8 x 128 tokens); losses are deterministic for a seed on one machine.
Runs live in `bench/.cache/text_peft/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache" / "text_peft"
CORPUS = "moby_dick"
BUDGET = dict(epochs=2, steps_per_epoch=100, validation_batches=None)  # the Makefile's FINETUNE: 200 steps
# method@learning-rate rows; prefix rows carry their length, the other methods their default size
ROWS = ("full@3e-4,full@1e-3,full@3e-3,lora@3e-3,lora@1e-2,lora@3e-2,adapter@3e-3,adapter@1e-2,adapter@3e-2,"
        "prefix16@1e-2,prefix16@3e-2,prefix16@1e-1,prefix64@1e-2,prefix64@3e-2,prefix64@1e-1")
METHODS = ("full", "lora", "prefix", "adapter")


def parse_row(row: str) -> dict:
    """`prefix64@3e-2` -> {"peft": "prefix", "prefix_length": 64, "learning_rate": 0.03}."""
    name, _, rate = row.partition("@")
    method = name.rstrip("0123456789")
    if method not in METHODS or not rate:
        raise SystemExit(f"row {row!r}: expected METHOD[SIZE]@RATE with METHOD one of {', '.join(METHODS)}")
    fields = {"peft": method, "learning_rate": float(rate)}
    size = name[len(method):]
    if size:
        fields[{"lora": "lora_rank", "prefix": "prefix_length", "adapter": "adapter_size"}[method]] = int(size)
    return fields


def selection_corpus(tokenizer, sequence_length: int, validation_fraction: float) -> Path:
    """Moby-Dick's training part (the windows a `moby_dick` run trains on, never its held-out tail) as a folder of
    chapter files: a corpus whose own held-out tail is the selection split."""
    from aigc_tf.text import data as text_data

    ids = text_data.corpus_token_ids(CORPUS, tokenizer)
    train, _ = text_data.split_windows(text_data.pack_windows(ids, sequence_length), validation_fraction)
    cut = ids[: len(train) * sequence_length + 1]  # the tokens the training windows cover, and not one more
    folder = CACHE / "selection_corpus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    chapters = np.split(cut, np.flatnonzero(cut == tokenizer.end_token_id) + 1)
    for index, chapter in enumerate(c[c != tokenizer.end_token_id] for c in chapters):
        if len(chapter):
            text = tokenizer.detokenize([chapter.astype(int).tolist()])[0]
            text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
            (folder / f"{index:04d}.txt").write_text(text, encoding="utf-8")
    return folder


def train_and_score(config, run: Path) -> dict:
    """Fine-tune `config` into `run` (from scratch of the run folder) and score it on the corpus's held-out split
    (`text eval`'s perplexity, without its continuations)."""
    import keras

    from aigc_tf.text.evaluate import evaluate_text
    from aigc_tf.text.train import train_text

    shutil.rmtree(run, ignore_errors=True)
    began = time.perf_counter()
    trained = train_text(config, run, verbose=False)
    seconds = time.perf_counter() - began
    scored = evaluate_text(run, config.corpus, continuation_samples=0)
    keras.utils.clear_session()
    return {"trainable_parameters": trained.trainable_parameters, "loss": round(scored["loss"], 4),
            "perplexity": round(scored["perplexity"], 1), "tokens": scored["tokens"], "seconds": round(seconds, 1)}


def base_score(config) -> dict:
    """The shipped base, before fine-tuning, on the same held-out windows as `config`'s runs (`text eval
    --preset`)."""
    from aigc_tf.text.evaluate import evaluate_text

    scored = evaluate_text(None, config.corpus, continuation_samples=0, preset=config.preset,
                           out=CACHE / f"base_{Path(config.corpus).stem}.json")
    return {"loss": round(scored["loss"], 4), "perplexity": round(scored["perplexity"], 1), "tokens": scored["tokens"]}


def select(args, results: dict) -> None:
    from aigc_tf.config import TextConfig
    from aigc_tf.text.models import load_preset

    default = TextConfig()
    tokenizer = load_preset(default.preset, default.sequence_length).preprocessor.tokenizer
    corpus = selection_corpus(tokenizer, default.sequence_length, default.validation_fraction)
    base = TextConfig(corpus=str(corpus), **BUDGET)
    before = json.loads(args.out.read_text()) if args.out.exists() else {}
    earlier = before.get("rows", {})
    results.update(commands=before.get("commands", []) + [results.pop("command")],
                   corpus=str(corpus.relative_to(BENCH.parent)), base=base_score(base), rows=earlier)
    print("base", results["base"], flush=True)
    for row in args.rows.split(","):
        if row in earlier:  # measured by an earlier call (deterministic for the seed): kept
            continue
        results["rows"][row] = train_and_score(base.replace(**parse_row(row)), CACHE / "select" / row)
        print(row, results["rows"][row], flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    chosen = {}
    for row, scores in results["rows"].items():
        method = parse_row(row)["peft"]
        if method not in chosen or scores["loss"] < results["rows"][chosen[method]]["loss"]:
            chosen[method] = row
    results["chosen"] = chosen


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4), "min": round(min(values), 4), "max": round(max(values), 4),
            "values": [round(v, 4) for v in values]}


def report(args, results: dict) -> None:
    from aigc_tf.config import TextConfig

    chosen = json.loads(args.chosen_from.read_text())["chosen"]
    config = TextConfig(corpus=CORPUS, **BUDGET)
    results.update(chosen=chosen, chosen_from=str(args.chosen_from.relative_to(BENCH.parent)),
                   base=base_score(config), runs={}, methods={})
    seeds = [int(s) for s in args.seeds.split(",")]
    for method in METHODS:
        row = chosen[method]
        for seed in seeds:
            key = f"{row}/seed{seed}"
            results["runs"][key] = train_and_score(config.replace(seed=seed, **parse_row(row)), CACHE / "report" / key)
            print(key, results["runs"][key], flush=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    base = results["base"]["loss"]
    full = [results["runs"][f"{chosen['full']}/seed{s}"]["loss"] for s in seeds]
    for method in METHODS:
        losses = [results["runs"][f"{chosen[method]}/seed{s}"]["loss"] for s in seeds]
        first = results["runs"][f"{chosen[method]}/seed{seeds[0]}"]
        results["methods"][method] = {
            "row": chosen[method], "trainable_parameters": first["trainable_parameters"], "loss": spread(losses),
            "perplexity": spread([2.718281828459045 ** x for x in losses]),
            "share_of_full_gain": spread([(base - x) / (base - f) for x, f in zip(losses, full)])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    chooser = sub.add_parser("select", help="score each row on the selection split")
    chooser.add_argument("--rows", default=ROWS, help="METHOD[SIZE]@RATE, comma-separated (default: %(default)s)")
    chooser.add_argument("--out", type=Path, default=BENCH / "text_peft_search.json", help="default: %(default)s")
    reporter = sub.add_parser("report", help="train the chosen rows over seeds, score them on the held-out split")
    reporter.add_argument("--seeds", default="0,1,2", help="default: %(default)s")
    reporter.add_argument("--chosen-from", type=Path, default=BENCH / "text_peft_search.json",
                          help="the select mode's results (default: %(default)s)")
    reporter.add_argument("--out", type=Path, default=BENCH / "text_peft_seeds.json", help="default: %(default)s")
    args = parser.parse_args(argv)

    from aigc_tf import hardware
    from aigc_tf.config import TextConfig

    results = {"command": "python bench/text_peft_search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "cpu": hardware.describe(), "budget": BUDGET, "batch_size": TextConfig.batch_size,
               "sequence_length": TextConfig.sequence_length}
    (select if args.mode == "select" else report)(args, results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
