"""Does `aigc-tf text pretrain` reproduce the shipped base? Compare a rerun's per-epoch curve with the model card's.

    aigc-tf text pretrain --out runs/pretrain_repro      # as long as you like: every finished epoch is compared
    python bench/text_pretrain_repro.py --run runs/pretrain_repro

Writes bench/text_pretrain_repro.json: each epoch both runs finished, the two losses and validation losses and their
differences. The recipe is seeded (weights, data order, dropout) and runs on the CPU, so the same command on the same
data and TensorFlow build should give the same curve; where it does not, the differences are the spread.
"""

import argparse
import csv
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "aigc_tf" / "text" / "presets" / "aigc_gpt2_base" / "model_card.json"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the rerun's folder (its history.csv)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "text_pretrain_repro.json")
    args = parser.parse_args(argv)
    shipped = json.loads(CARD.read_text())
    with open(args.run / "history.csv") as f:
        rerun = list(csv.DictReader(f))
    rows = []
    for ours, theirs in zip(rerun, shipped["history"]):
        row = {"epoch": int(ours["epoch"]) + 1}
        for key in ("loss", "val_loss"):
            a, b = float(ours[key]), float(theirs[key])
            row.update({f"{key}_rerun": a, f"{key}_shipped": b, f"{key}_difference": a - b})
        rows.append(row)
    worst = max((abs(r[f"{k}_difference"]) for r in rows for k in ("loss", "val_loss")), default=None)
    result = {"command": "aigc-tf text pretrain --out RUN; python bench/text_pretrain_repro.py --run RUN",
              "machine": json.loads((args.run / "machine.json").read_text()) if (args.run / "machine.json").exists()
              else None,
              "shipped_epochs": len(shipped["history"]), "epochs_compared": len(rows),
              "largest_abs_difference": worst, "epochs": rows}
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{len(rows)} of {len(shipped['history'])} epochs compared; largest |difference| {worst}: {args.out}")


if __name__ == "__main__":
    main()
