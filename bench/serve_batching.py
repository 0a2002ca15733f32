"""Does TF Serving's batching ever change a GPT-2 answer? Every request of a seeded mix answered alone and batched.

In a fresh process that switches XLA off as a stock `tensorflow_model_server` does and loads the export with the
Session-based loader, a seeded mix of requests is answered twice: alone (one `Session.run` per request), and through
`aigc_tf.serving.batching.BatchingSession` (TF Serving's batching rules from its source, with the parameters
`aigc-tf serving config --batching` writes) by 1, 4 and 16 concurrent clients, a third of the mix each. Each
batched answer is compared with the same request alone, exactly (every token id, every byte of text).

The mix: `generate_tokens` requests of 1-40 prompts of 1-64 tokens (random ids after the start token, the matrix
padded past each prompt with random ids, which the export must never read), and `serving_default` / `sample`
requests of 1-40 text prompts; per prompt, a greedy or sampled decode (temperature, top-k, top-p, seed) of 1-4 new
tokens. Requests carry every control once per prompt, as `aigc_tf.serving.client` sends them.

    python bench/serve_batching.py [--requests 1000] [--preset aigc_gpt2_base]

writes `bench/serve_batching.json`. The default model is a GPT-2 of random weights at the tiny test shape with the
real 50,257-token vocabulary (fast enough for 1,000 requests on 2 cores); `--preset` serves a real one.
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

OUT = Path(__file__).with_name("serve_batching.json")
CLIENTS = (1, 4, 16)
WORDS = "the whale sea ship captain white call me Ishmael years ago never mind how long precisely".split()


def request_mix(count: int, seed: int, context: int) -> list[dict]:
    """`count` requests, as {"signature", "inputs"} with every input given one value per prompt."""
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(count):
        rows = int(rng.integers(1, 41))
        controls = {"max_new_tokens": rng.integers(1, 5, rows).astype(np.int32),
                    "temperature": rng.choice([0.0, 0.0, 0.7, 1.3], rows).astype(np.float32),
                    "top_k": rng.choice([0, 0, 5, 50], rows).astype(np.int32),
                    "top_p": rng.choice([1.0, 1.0, 0.9, 0.5], rows).astype(np.float32),
                    "seed": rng.integers(0, 2**31 - 1, rows).astype(np.int32)}
        if rng.random() < 0.75:
            lengths = rng.integers(1, min(65, context), rows).astype(np.int32)
            width = int(lengths.max() + rng.integers(0, 9))
            ids = rng.integers(0, 50256, (rows, width)).astype(np.int32)  # junk past each prompt
            ids[:, 0] = 50256
            requests.append({"signature": "generate_tokens", "inputs": {"token_ids": ids, "lengths": lengths,
                                                                        **controls}})
        else:
            prompts = np.array([" ".join(rng.choice(WORDS, int(rng.integers(0, 12)))) for _ in range(rows)],
                               dtype=object)
            requests.append({"signature": str(rng.choice(["serving_default", "sample"])),
                             "inputs": {"prompts": prompts, **controls}})
    return requests


def worker(export_dir: str, count: int, seed: int) -> dict:
    from aigc_tf.compat import disable_xla_compilation

    disable_xla_compilation()
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the stock server links TF Text)

    from aigc_tf.serving.batching import BatchingSession, ServingStatus, parse_batching_parameters
    from aigc_tf.serving.model_config import batching_parameters

    session = tf.compat.v1.Session(graph=tf.Graph())
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    signatures = {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}
    context = json.loads((Path(export_dir) / "assets.extra" / "aigc_tf.json").read_text())["context"]

    def runner(name):
        signature = signatures[name]
        outputs = sorted(signature.outputs)

        def run(feeds):
            values = session.run([signature.outputs[k].name for k in outputs],
                                 {signature.inputs[k].name: v for k, v in feeds.items()})
            return dict(zip(outputs, values))
        return run

    runners = {name: runner(name) for name in signatures}
    requests = request_mix(count, seed, context)
    started = time.perf_counter()
    alone = []
    for request in requests:
        try:
            alone.append(runners[request["signature"]](request["inputs"]))
        except tf.errors.OpError as err:
            alone.append({"error": err.message.splitlines()[0]})
    alone_seconds = time.perf_counter() - started

    parameters = parse_batching_parameters(batching_parameters())
    levels = {}
    for level, clients in enumerate(CLIENTS):
        mine = list(range(level, len(requests), len(CLIENTS)))
        sessions = {}
        lock = threading.Lock()

        def run_batch_for(name):
            if name not in sessions:
                sessions[name] = BatchingSession(runners[name], parameters)
            return sessions[name]

        for name in signatures:
            run_batch_for(name)
        answers, cursor = {}, iter(mine)

        def client():
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                request = requests[index]
                try:
                    answers[index] = sessions[request["signature"]].run(request["inputs"], request["signature"])
                except ServingStatus as err:
                    answers[index] = {"error": err.message}

        began = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - began
        batches = [size for s in sessions.values() for size in s.batches]
        for s in sessions.values():
            s.close()
        differ = [i for i in mine if not _same(answers[i], alone[i])]
        levels[str(clients)] = {
            "requests": len(mine), "prompts": int(sum(len(requests[i]["inputs"]["max_new_tokens"]) for i in mine)),
            "differences": len(differ), "first_differences": differ[:5], "seconds": round(seconds, 1),
            "batches": len(batches), "mean_padded_batch": round(float(np.mean(batches)), 2),
            "errors": sum("error" in answers[i] for i in mine)}
        print(f"  {clients:>2} clients: {len(mine)} requests, {len(differ)} differ from alone, "
              f"{len(batches)} batches, {seconds:.0f} s", file=sys.stderr, flush=True)
    session.close()
    by_signature = {}
    for request in requests:
        by_signature[request["signature"]] = by_signature.get(request["signature"], 0) + 1
    return {"requests": len(requests), "by_signature": by_signature,
            "prompts": int(sum(len(r["inputs"]["max_new_tokens"]) for r in requests)),
            "alone_seconds": round(alone_seconds, 1), "alone_errors": sum("error" in a for a in alone),
            "clients": levels, "differences": sum(v["differences"] for v in levels.values()),
            "batching_parameters": batching_parameters().splitlines()}


def export_for_bench(workdir: Path, preset: str | None, seed: int) -> tuple[Path, str]:
    """(export, description): `preset` exported as `aigc-tf text export` does, or a GPT-2 of random weights at the
    tiny test shape (context 128) with the real 50,257-token vocabulary."""
    import keras

    from aigc_tf.config import TextConfig
    from aigc_tf.runs import RunFolder
    from aigc_tf.text.export import export_text
    from aigc_tf.text.models import build_causal_lm, resolve_preset

    if preset:
        return export_text(preset=resolve_preset(preset), model_dir=workdir / "gpt2", max_new_tokens=4,
                           precision="fp32"), preset
    config = TextConfig.tiny(max_sequence_length=128)  # prompts of up to 64 tokens + 4
    keras.utils.set_random_seed(seed)
    run = RunFolder(workdir / "run")
    run.prepare(config)
    build_causal_lm(config).save_to_preset(str(run.path / "preset"))
    export = export_text(run.path, workdir / "gpt2", max_new_tokens=4, precision="fp32")
    return export, f"random GPT-2, {config.num_layers} layers x {config.hidden_dim}, 50,257 tokens"


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def bench_arguments(doc: str, requests: int, out: Path, argv) -> argparse.Namespace:
    """The flags the served-model benches share (this one and `serve_soak.py`)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=requests, help=f"requests to send (default {requests})")
    parser.add_argument("--seed", type=int, default=0, help="the requests' seed")
    parser.add_argument("--preset", help="serve this keras-hub preset (e.g. aigc_gpt2_base) instead of the tiny one")
    parser.add_argument("--out", type=Path, default=out, help=f"the JSON artifact (default {out})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = bench_arguments(__doc__, 1000, OUT, argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.requests, args.seed)))
        return 0
    from aigc_tf.hardware import describe

    with tempfile.TemporaryDirectory(prefix="aigc_batching_") as workdir:
        export, model = export_for_bench(Path(workdir), args.preset, args.seed)
        done = subprocess.run([sys.executable, __file__, "--worker", str(export), "--requests", str(args.requests),
                               "--seed", str(args.seed)], capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"worker failed: {done.stderr[-3000:]}")
    result = {"command": "python bench/serve_batching.py " + " ".join(argv or sys.argv[1:]), "model": model,
              "cpu": describe(), **json.loads(done.stdout.strip().splitlines()[-1])}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("requests", "prompts", "differences", "clients")}, indent=1))
    print(f"wrote {args.out}")
    return 0 if result["differences"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
