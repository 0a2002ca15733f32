"""The VAE's reported quality: mean and spread over training seeds and sampling noise, on the test split.

    python bench/vae_seeds.py --runs RUN0,RUN1,RUN2 [--eval-seeds 0,1,2] [--out bench/vae_seeds.json]

Each run folder (one per training seed, `aigc-tf vae train --seed N`) is scored with
`aigc_tf.vae.evaluate.evaluate_vae(run, seed=s)` for every eval seed `s`, which draws the prior samples, the real
test halves the sample scores compare with, and the one z sample per test image of the ELBO. The summary is the mean
and min-max over all (training seed, eval seed) pairs, as in `bench/gan_seeds.py`, whose summary it reuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from gan_seeds import METRICS, stored_config, summarize  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", required=True, help="comma-separated VAE run folders, one per training seed")
    parser.add_argument("--eval-seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=BENCH / "vae_seeds.json")
    args = parser.parse_args()

    from aigc_tf.vae.evaluate import evaluate_vae

    rows = []
    for run in (Path(r) for r in args.runs.split(",")):
        for eval_seed in (int(s) for s in args.eval_seeds.split(",")):
            report = evaluate_vae(run, seed=eval_seed, verbose=0)
            rows.append({"run": str(run), "train_seed": stored_config(run).get("seed"), "eval_seed": eval_seed,
                         "split": "test", "num_samples": report["num_samples"],
                         **{name: round(report[name], 3) for name in (*METRICS, "elbo")}})
            print(f"{run.name:18s} eval seed {eval_seed}: FID {report['fid']:6.2f} (floor "
                  f"{report['real_fid_floor']:.2f})  IS {report['inception_score']:.3f}  ELBO {report['elbo']:.2f}",
                  flush=True)
    result = {"what": "VAE runs, test split, evaluate_vae per (training seed, eval seed)",
              "summary": summarize(rows), "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    s = result["summary"]
    print(f"mean FID {s['fid']['mean']:.2f} [{s['fid']['min']:.2f}, {s['fid']['max']:.2f}]; IS "
          f"{s['inception_score']['mean']:.3f}; ELBO {s['elbo']['mean']:.2f} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
