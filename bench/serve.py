"""GPT-2 as a stock TF Serving runs it: the default export under the server's runtime, 1 / 4 / 16 concurrent clients.

Each measurement runs in a fresh process that switches XLA off exactly as `tensorflow_model_server` does by default
(`aigc_tf.serving.check.disable_xla_compilation`) and loads the export with the Session-based loader, the server's
loader. A client sends one prompt (16 random tokens) to `generate_tokens` and asks for `NEW_TOKENS` greedy tokens;
every client sends `REQUESTS` requests back to back. Two server modes:
- `concurrent`: each request its own `Session.run`, as the server without `--enable_batching`;
- `batching`: TF Serving's BatchingSession as `aigc_tf.serving.batching` models it from the server's source (queue,
  batch threads, padding with the first element, splitting), with the parameters `aigc-tf serving config --batching`
  writes. A model of the server, not the server itself.
Reported: served tokens/s (all clients' new tokens / wall time), per-request latency p50 / p95.

`python bench/serve.py [--quick]` prints the table; `bench/run.py` runs it as its `serve` section.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PROMPT_LENGTH, NEW_TOKENS, REQUESTS = 16, 32, 4
CLIENTS = (1, 4, 16)
MODES = ("concurrent", "batching")


def worker(export_dir: str, clients: tuple[int, ...], requests: int, new_tokens: int) -> dict:
    """In this fresh process: XLA off as the stock server, the export in a Session, the concurrency table."""
    from aigc_tf.serving.check import disable_xla_compilation

    disable_xla_compilation()
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the stock server links TF Text; the graph's string signatures use it)

    from aigc_tf.serving.batching import BatchingSession, parse_batching_parameters
    from aigc_tf.serving.model_config import batching_parameters

    session = tf.compat.v1.Session(graph=tf.Graph())
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    signature = meta.signature_def["generate_tokens"]
    names = {k: v.name for k, v in signature.inputs.items()}
    out = signature.outputs["token_ids"].name
    rng = np.random.default_rng(0)

    def run_feeds(feeds):  # one Session.run of whatever batch the server formed
        return session.run(out, {names[k]: v for k, v in feeds.items()})

    def run(ids):  # one request alone: (B, PROMPT_LENGTH), every row NEW_TOKENS more
        batch = len(ids)
        return run_feeds({"token_ids": ids, "lengths": np.full(batch, PROMPT_LENGTH, np.int32),
                          "max_new_tokens": np.full(batch, new_tokens, np.int32)})

    def prompt():
        return rng.integers(0, 50256, [1, PROMPT_LENGTH]).astype(np.int32)

    first = time.perf_counter()
    run(prompt())
    first_request_s = time.perf_counter() - first  # what warm-up takes off the first client's wait

    table = {}
    parameters = parse_batching_parameters(batching_parameters())
    for mode in MODES:
        for count in clients:
            latencies, lock = [], threading.Lock()
            batcher = BatchingSession(lambda feeds: dict(zip(["token_ids"], [run_feeds(feeds)])), parameters) \
                if mode == "batching" else None

            def client():
                for _ in range(requests):
                    ids = prompt()
                    began = time.perf_counter()
                    if batcher:
                        batcher.run({"token_ids": ids, "lengths": np.full(1, PROMPT_LENGTH, np.int32),
                                     "max_new_tokens": np.full(1, new_tokens, np.int32)}, "generate_tokens")
                    else:
                        run(ids)
                    with lock:
                        latencies.append(time.perf_counter() - began)

            threads = [threading.Thread(target=client) for _ in range(count)]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - began
            if batcher:
                batcher.close()
            table[f"{mode}_{count}"] = {
                "mode": mode, "clients": count, "tokens_per_s": count * requests * new_tokens / wall,
                "p50_s": float(np.percentile(latencies, 50)), "p95_s": float(np.percentile(latencies, 95)),
                **({"batch_sizes": sorted(set(batcher.batches))} if batcher else {})}
            print(f"  {mode:<10} {count:>2} clients: {table[f'{mode}_{count}']['tokens_per_s']:7.1f} tokens/s, "
                  f"p50 {table[f'{mode}_{count}']['p50_s']:.2f} s, p95 {table[f'{mode}_{count}']['p95_s']:.2f} s",
                  file=sys.stderr, flush=True)
    session.close()
    return {"first_request_s": first_request_s, "table": table}


def measure(config, *, quick: bool = False) -> dict:
    """Export `config`'s GPT-2 (random weights) with `aigc-tf text export`'s defaults; measure it as served."""
    import keras

    from aigc_tf.text.export import export_text
    from aigc_tf.runs import RunFolder
    from aigc_tf.text.models import build_causal_lm

    keras.utils.set_random_seed(0)
    causal_lm = build_causal_lm(config)
    clients = CLIENTS[:2] if quick else CLIENTS
    requests = 2 if quick else REQUESTS
    with tempfile.TemporaryDirectory(prefix="aigc_serve_") as workdir:
        run = RunFolder(Path(workdir) / "run")
        run.prepare(config)
        causal_lm.save_to_preset(str(run.path / "preset"))
        export = export_text(run.path, Path(workdir) / "gpt2", precision="fp32")
        done = subprocess.run([sys.executable, __file__, "--worker", str(export), "--clients",
                               ",".join(map(str, clients)), "--requests", str(requests)],
                              capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"serve worker failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"prompt_tokens": PROMPT_LENGTH, "new_tokens": NEW_TOKENS, "requests_per_client": requests,
            "precision": "fp32", "xla": False, **result}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small demo model, 1 and 4 clients")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)), help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=REQUESTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        clients = tuple(int(c) for c in args.clients.split(","))
        print(json.dumps(worker(args.worker, clients, args.requests, NEW_TOKENS)))
        return 0
    from aigc_tf.config import TextConfig

    import decode

    config = TextConfig(preset=None, dropout=0.0) if args.quick else TextConfig(preset=None, **decode.GPT2_124M)
    print(json.dumps(measure(config, quick=args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
