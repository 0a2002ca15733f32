"""Training throughput of candidate GPT-2 shapes for the shipped base model (issue 25), on this CPU.

The 50,257 x hidden output projection (tied to the token embedding) is most of a small GPT-2's compute, so width is
expensive and depth is nearly free: this script measures it instead of assuming it. Each row trains one shape with
the pretraining recipe's batch and window (`fit`, XLA, random token ids) and times steps after a warm-up; fp32 and,
where the CPU has native bf16 dot products, mixed bf16. Writes `bench/text_pretrain_search/throughput.json`.

    python bench/text_pretrain_search.py                  # the default grid, ~5 minutes on 2 cores
    python bench/text_pretrain_search.py --shapes 4x128,6x192 --steps 20
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "text_pretrain_search"


def measure(layers: int, hidden: int, precision: str, batch: int, window: int, steps: int) -> dict:
    import keras
    import keras_hub

    from aigc_tf.config import TextConfig
    from aigc_tf.text.train import compile_for_training

    keras.utils.clear_session()
    config = TextConfig(num_layers=layers, num_heads=max(2, hidden // 64), hidden_dim=hidden,
                        intermediate_dim=4 * hidden, batch_size=batch, sequence_length=window, precision=precision)
    policy = {"fp32": "float32", "bf16": "mixed_bfloat16"}[precision]
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50257, num_layers=layers, num_heads=config.num_heads,
                                             hidden_dim=hidden, intermediate_dim=4 * hidden, dropout=0.1,
                                             max_sequence_length=256, dtype=policy)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None, dtype=policy)
    compile_for_training(model, config, total_steps=1000)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50257, (batch * (steps + 3), window + 1)).astype(np.int32)
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((len(ids), window), bool)}
    model.fit(x, ids[:, 1:], batch_size=batch, steps_per_epoch=3, epochs=1, verbose=0)  # compile + warm up
    began = time.perf_counter()
    model.fit(x, ids[:, 1:], batch_size=batch, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - began
    parameters = int(sum(np.prod(v.shape) for v in backbone.weights))
    return {"layers": layers, "hidden": hidden, "heads": config.num_heads, "precision": precision,
            "parameters": parameters, "non_embedding_parameters": parameters - 50257 * hidden - 256 * hidden,
            "tokens_per_s": round(batch * window * steps / seconds, 1), "seconds_per_step": round(seconds / steps, 4)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="2x128,4x128,8x128,4x192,6x192,4x256",
                        help="LAYERSxHIDDEN, comma-separated")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args(argv)

    from aigc_tf import hardware

    precisions = ["fp32", "bf16"] if hardware.native_bf16() else ["fp32"]
    rows = []
    for shape in args.shapes.split(","):
        layers, hidden = (int(v) for v in shape.split("x"))
        for precision in precisions:
            row = measure(layers, hidden, precision, args.batch, args.window, args.steps)
            print(json.dumps(row), flush=True)
            rows.append(row)
    OUT.mkdir(exist_ok=True)
    report = {"command": "python bench/text_pretrain_search.py " + " ".join(argv or []),
              "machine": {"cpu": platform.processor() or platform.machine(), "bf16": hardware.describe()},
              "batch": args.batch, "window": args.window, "rows": rows}
    path = OUT / "throughput.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
