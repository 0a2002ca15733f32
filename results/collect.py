"""Collect the numbers the README quotes from the run folders that `make demo` and `make results` wrote.

    make demo          # runs/gan, runs/gpt2 (the shipped base fine-tuned on Moby-Dick), runs/vae, their eval JSON
    make results       # runs/cgan, the PEFT runs, samples, the robustness run, then this script
    make results-text  # the text half alone: `python results/collect.py --only text` keeps the other sections

Writes `results/default_run.json` (every number, with the run folder it came from) and `results/tables.md` (the
README's tables, rendered from that JSON). Nothing here is typed in by hand. Speeds are recorded in the JSON but left
out of the tables: runs made one after another on a shared VM do not compare (speed claims live in bench/).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

RUNS = Path("runs")
OUT = Path(__file__).resolve().parent


def read_json(path: Path) -> dict:
    if not path.is_file():
        sys.exit(f"collect: {path} is missing; run `make demo` and `make results` first")
    return json.loads(path.read_text())


def history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def image_row(run: Path) -> dict:
    report = read_json(run / "eval.json")
    keep = ("fid", "real_fid_floor", "inception_score", "real_inception_score", "num_samples",
            "classifier_test_accuracy", "label_accuracy", "elbo", "reconstruction", "kl", "step", "truncation",
            "without_truncation")
    return {"run": str(run), **{k: report[k] for k in keep if k in report}}


FINE_TUNING_RUNS = ("gpt2", "moby_lora", "moby_prefix", "moby_adapter")  # the demo's full fine-tuning, then
# `make results-text`'s PEFT runs: each fine-tunes the shipped base on Moby-Dick for the demo's 200 steps
METHOD_NAMES = {"full": "full fine-tuning", "lora": "LoRA rank {size}", "prefix": "prefix tuning, {size} vectors",
                "adapter": "adapters, bottleneck {size}"}


def fine_tune_row(run: Path) -> dict:
    """A fine-tuning run, scored on the whole held-out split of its corpus: the windows the base model's row is
    scored on (`fit`'s own validation reads only `validation_batches` of them)."""
    from aigc_tf.config import DEFAULT_LORA_RANK
    from aigc_tf.text.evaluate import window_perplexity
    from aigc_tf.text.models import load_text_run
    from aigc_tf.text.train import corpus_windows

    summary, rows = read_json(run / "train_summary.json"), history(run)
    config = read_json(run / "config.json")
    method = summary.get("method") or ("full" if config["lora_rank"] is None else "lora")
    size = {"lora": config["lora_rank"] or DEFAULT_LORA_RANK, "prefix": config.get("prefix_length"),
            "adapter": config.get("adapter_size")}
    causal_lm, loaded = load_text_run(run)
    _, held_out = corpus_windows(loaded, causal_lm.preprocessor.tokenizer)
    scored = window_perplexity(causal_lm, held_out)
    return {"run": str(run), "method": method, "size": size.get(method), "learning_rate": config["learning_rate"],
            "steps": len(rows) * config["steps_per_epoch"], **summary, "held_out_tokens": scored["tokens"],
            "val_loss": scored["loss"], "val_perplexity": scored["perplexity"]}


def repeated_trigram_share(texts: list[str]) -> float:
    """The share of word trigrams that already occurred earlier in the same text: 0 never repeats, near 1 loops."""
    repeated = total = 0
    for text in texts:
        words = text.split()
        seen = set()
        for trigram in zip(words, words[1:], words[2:]):
            repeated += trigram in seen
            total += 1
            seen.add(trigram)
    return repeated / max(total, 1)


def decoding_rows() -> list[dict]:
    """Greedy decoding with and without the repetition controls, and top-p, on the README's two prompts."""
    rows = []
    for name, file in [("greedy", "samples_greedy.json"), ("greedy, no-repeat-ngram 3", "samples_no_repeat.json"),
                       ("greedy, repetition penalty 1.2", "samples_penalty.json"),
                       ("top-p 0.9, temperature 0.8", "samples_top_p.json")]:
        samples = read_json(OUT / file)
        texts = [text for sample in samples for text in sample["texts"]]
        rows.append({"decoding": name, "file": f"results/{file}",
                     "repeated_trigram_share": repeated_trigram_share(texts), "texts": texts})
    return rows


ROBUSTNESS_FILES = ("robustness.json", "accuracy_vs_epsilon.png", "adversarial_examples.png")


def robustness(run: Path) -> dict:
    """`aigc-tf robust`'s report; its report and figures are copied to results/robustness/ for the README."""
    import shutil

    (OUT / "robustness").mkdir(exist_ok=True)
    for name in ROBUSTNESS_FILES:
        shutil.copyfile(run / name, OUT / "robustness" / name)
    return read_json(run / "robustness.json")


def collect() -> dict:
    results = {
        "gan": image_row(RUNS / "gan"),
        "cgan": image_row(RUNS / "cgan"),
        "vae": image_row(RUNS / "vae"),
        "gan_history": [{k: row[k] for k in ("epoch", "step", "steps_per_s")} for row in history(RUNS / "gan")][-1:],
        "demo_seconds": read_json(RUNS / "demo_times.json"),
        "robustness": robustness(RUNS / "robust"),
        **collect_text(),
    }
    return results


def collect_text() -> dict:
    """The text half: the shipped base before fine-tuning, the demo's fine-tuned run, decoding, the PEFT runs."""
    before = read_json(RUNS / "eval_base_moby_dick.json")  # the demo's `text eval --preset aigc_gpt2_base`
    runs = [fine_tune_row(RUNS / name) for name in FINE_TUNING_RUNS]
    full_gain = before["loss"] - runs[0]["val_loss"]
    for run in runs:  # the share of full fine-tuning's gain in validation loss (nats) each method recovers
        run["share_of_full_gain"] = (before["loss"] - run["val_loss"]) / full_gain if full_gain > 0 else None
    return {
        "text": {
            "run": str(RUNS / "gpt2"),
            "summary": read_json(RUNS / "gpt2" / "train_summary.json"),
            "epochs": [{k: float(row[k]) for k in ("epoch", "loss", "val_loss", "val_perplexity")}
                       for row in history(RUNS / "gpt2")],
            "base_moby_dick": before,
            "moby_dick": read_json(RUNS / "gpt2" / "eval_moby_dick.json"),
            "greedy": read_json(OUT / "samples_greedy.json"),
            "top_p": read_json(OUT / "samples_top_p.json"),
            "decoding": decoding_rows(),
        },
        "fine_tuning": {"before": before, "runs": runs},
    }


def tables(r: dict) -> str:
    gan, cgan, vae = r["gan"], r["cgan"], r["vae"]
    lines = ["| model | FID | Inception-style score | label accuracy | test ELBO (nats/image) |",
             "|---|---:|---:|---:|---|",
             f"| GAN (`runs/gan`) | {gan['fid']:.1f} | {gan['inception_score']:.2f} | - | - |",
             f"| conditional GAN (`runs/cgan`) | {cgan['fid']:.1f} | {cgan['inception_score']:.2f} | "
             f"{cgan['label_accuracy']:.1%} | - |",
             f"| VAE (`runs/vae`) | {vae['fid']:.1f} | {vae['inception_score']:.2f} | - | {vae['elbo']:.2f} "
             f"(reconstruction {vae['reconstruction']:.1f}, KL {vae['kl']:.1f}) |",
             f"| real test digits | {gan['real_fid_floor']:.1f} (floor) | {gan['real_inception_score']:.2f} | "
             f"{gan['classifier_test_accuracy']:.1%} (classifier) | |", ""]
    lines += text_tables(r)
    lines += ["", "| `make demo` stage | seconds |", "|---|---:|"]
    lines += [f"| {stage} | {seconds:.0f} |" for stage, seconds in r["demo_seconds"].items()]
    rob = r["robustness"]
    lines += ["", "| classifier, attack | " + " | ".join(f"eps {e:g}" for e in rob["epsilons"]) + " |",
              "|---|" + "---:|" * len(rob["epsilons"])]
    for key in ("evaluation", "standard", "robust"):
        for attack in ("fgsm", "pgd"):
            row = rob["classifiers"][key]
            lines.append(f"| {row['name']}, {attack.upper()} | " + " | ".join(f"{a:.1%}" for a in row[attack]) + " |")
    if rob.get("discriminator"):
        d = rob["discriminator"]
        lines += ["", "| D's mean belief 'real' | " + " | ".join(f"eps {e:g}" for e in d["epsilons"]) + " |",
                  "|---|" + "---:|" * len(d["epsilons"])]
        lines += [f"| {name} | " + " | ".join(f"{v:.3f}" for v in d[key]) + " |"
                  for name, key in (("adversarial (FGSM)", "fgsm"), ("adversarial (PGD)", "pgd"),
                                    ("random +-eps noise", "random_sign_noise"))]
        lines += [f"\nD on clean test digits {d['clean']:.3f}, on the generator's samples {d['generated']:.3f}"]
    return "\n".join(lines) + "\n"


def text_tables(r: dict) -> list[str]:
    text, before = r["text"], r["fine_tuning"]["before"]
    lines = ["| epoch | training loss | validation loss | validation perplexity |", "|---:|---:|---:|---:|"]
    lines += [f"| {int(e['epoch']) + 1} | {e['loss']:.2f} | {e['val_loss']:.2f} | {e['val_perplexity']:,.0f} |"
              for e in text["epochs"]]
    moby = text["moby_dick"]
    lines += ["", f"Held-out Moby-Dick perplexity ({moby['tokens']:,} tokens, split {moby['split']}): base "
                  f"{before['perplexity']:,.1f}, fine-tuned {moby['perplexity']:,.1f}", ""]
    lines += ["| decoding | repeated word trigrams | samples |", "|---|---:|---|"]
    lines += [f"| {row['decoding']} | {row['repeated_trigram_share']:.0%} | `{row['file']}` |"
              for row in text["decoding"]]
    lines += ["", "| method | trainable parameters | validation loss (perplexity) | share of full fine-tuning's gain |",
              "|---|---:|---|---:|",
              f"| no fine-tuning (`{before['preset']}`) | - | {before['loss']:.3f} ({before['perplexity']:,.1f}) | - |"]
    for run in r["fine_tuning"]["runs"]:
        name = METHOD_NAMES[run["method"]].format(size=run["size"])
        share = run["trainable_parameters"] / run["total_parameters"]
        gain = run["share_of_full_gain"]
        lines.append(f"| {name}, lr {run['learning_rate']:g} (`{run['run']}`) | {run['trainable_parameters']:,} "
                     f"({share:.2%}) | {run['val_loss']:.3f} ({run['val_perplexity']:,.1f}) | "
                     f"{'-' if gain is None else f'{gain:.0%}'} |")
    if "bleu" in moby:
        c = moby["continuation"]
        lines += ["", f"Greedy continuations of {c['sequences']} held-out Moby-Dick windows ({c['prompt_tokens']} "
                      f"tokens in, {c['continuation_tokens']} out): BLEU {moby['bleu']:.3f}, "
                      f"ROUGE-L {moby['rouge_l']:.3f}"]
    return lines


def main() -> int:
    if sys.argv[1:] == ["--only", "text"]:  # `make results-text`: keep the image, robustness and demo sections
        results = {**read_json(OUT / "default_run.json"), **collect_text()}
        (OUT / "default_run.json").write_text(json.dumps(results, indent=2) + "\n")
        (OUT / "tables.md").write_text(tables(results))
        print(f"Wrote the text sections of {OUT / 'default_run.json'} and {OUT / 'tables.md'}")
        return 0
    results = collect()
    (OUT / "default_run.json").write_text(json.dumps(results, indent=2) + "\n")
    (OUT / "tables.md").write_text(tables(results))
    print(f"Wrote {OUT / 'default_run.json'} and {OUT / 'tables.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
