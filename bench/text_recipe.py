"""GPT-2 width against tokens at the demo's budget: which small GPT-2 reaches the lowest held-out perplexity?

    python bench/text_recipe.py [--out bench/text_recipe.json] [--rows h256,h128,h64]

GPT-2's output layer multiplies every position's `hidden_dim` vector with all 50,257 token embeddings, most of a
small model's compute, so halving the width roughly doubles the tokens a fixed time buys. Each row trains the
default `TextConfig` at one width for a step count that scales with 1/width (the same compute for the output
layer), from the same seed, then measures perplexity on the first 400 Moby-Dick windows (51,200 tokens; the demo's
`text eval`). Perplexities are deterministic for a seed; the seconds and tokens/s drift with the VM's load, so read
them as ratios within one run. Runs live in `bench/.cache/text_recipe/<row>`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH = Path(__file__).resolve().parent
ROWS = {  # row: (hidden_dim, num_heads, intermediate_dim, steps)
    "h256": (256, 4, 1024, 150),
    "h128": (128, 4, 512, 300),
    "h64": (64, 2, 256, 600),
}
EVAL_SEQUENCES = 400


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BENCH / "text_recipe.json", help="default: %(default)s")
    parser.add_argument("--rows", default=",".join(ROWS), help="default: %(default)s")
    args = parser.parse_args(argv)

    from aigc_tf import hardware
    from aigc_tf.config import TextConfig
    from aigc_tf.text.evaluate import evaluate_text
    from aigc_tf.text.train import train_text

    results = {"command": "python bench/text_recipe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "cpu": hardware.describe(), "eval_sequences": EVAL_SEQUENCES, "rows": {}}
    for row in args.rows.split(","):
        hidden, heads, intermediate, steps = ROWS[row]
        config = TextConfig(preset=None, corpus="sotu", hidden_dim=hidden, num_heads=heads, intermediate_dim=intermediate, epochs=1,
                            steps_per_epoch=steps, validation_batches=5)
        run = BENCH / ".cache" / "text_recipe" / row
        shutil.rmtree(run, ignore_errors=True)
        began = time.perf_counter()
        trained = train_text(config, run, verbose=False)
        seconds = time.perf_counter() - began
        report = evaluate_text(run, "moby_dick", max_sequences=EVAL_SEQUENCES)
        results["rows"][row] = {"hidden_dim": hidden, "steps": steps, "tokens": trained.tokens_seen,
                                "train_seconds": round(seconds, 1), "tokens_per_s": round(trained.tokens_seen / seconds),
                                "moby_dick_perplexity": round(report["perplexity"], 1)}
        print(row, results["rows"][row], flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
