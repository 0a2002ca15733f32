"""Hostile input against one served GPT-2: thousands of requests, memory flat, every bad one an error status.

In a fresh process that runs the export as a stock `tensorflow_model_server` (XLA off, Session-based loader, feeds
built by TF Serving's rules: `aigc_tf.serving.check.request_feeds`), one loaded model answers a seeded stream of
requests, most of them hostile:
- random bytes (not UTF-8), empty prompts, prompts of thousands of distinct random words (a word cache would grow
  with each), a prompt over the byte limit, one over the token limit;
- controls out of range (max_new_tokens 0 or past the context, top_p 0, negative temperature), with neither 1 nor
  N values, of the wrong dtype; prompts of the wrong rank; unknown input names;
and, every tenth request, a good one from a fixed set whose answer must equal its first answer.
Resident memory (`/proc/self/statm`) is read after a warm-up of 200 requests, every 500 and at the end; the whole
stream runs twice, with TensorFlow's oneDNN kernels (its default on x86 Linux, `TF_ENABLE_ONEDNN_OPTS=1`), which keep
a compiled kernel per new matrix shape, and without them (`=0`, TensorFlow's own Eigen kernels).

    python bench/serve_soak.py [--requests 5000] [--preset aigc_gpt2_base]

writes `bench/serve_soak.json`. The default model is the tiny random GPT-2 of `bench/serve_batching.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("serve_soak.json")
WARMUP = 200
ONEDNN = {"onednn_on": "1", "onednn_off": "0"}  # TF_ENABLE_ONEDNN_OPTS: oneDNN keeps a kernel per new shape
GOOD = [["It is a beautiful day"], ["The whale", ""], ["caf\u00e9 \U0001f433 na\u00efve"]]


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def hostile(rng: np.random.Generator, context: int) -> tuple[str, dict, dict]:
    """(kind, signature, inputs) of one bad or odd request; the kinds that must fail are listed in `MUST_FAIL`."""
    kind = str(rng.choice(KINDS))
    n = int(rng.integers(1, 5))
    words = lambda k: " ".join("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(2, 9))))
                               for _ in range(k))
    if kind == "random_bytes":
        inputs = {"prompts": np.array([rng.bytes(int(rng.integers(1, 40))) for _ in range(n)], object)}
    elif kind == "empty":
        inputs = {"prompts": np.array([b""] * n, object)}
    elif kind == "new_words":
        inputs = {"prompts": np.array([words(int(rng.integers(5, 25))).encode() for _ in range(n)], object)}
    elif kind == "too_many_bytes":
        inputs = {"prompts": np.array([b"x" * 5000], object)}
    elif kind == "too_many_tokens":
        inputs = {"prompts": np.array([(" ab" * (context + 10)).encode()], object)}
    elif kind == "bad_control":
        name, value = [("max_new_tokens", 0), ("max_new_tokens", context), ("top_p", 0.0), ("temperature", -1.0),
                       ("top_k", -3)][int(rng.integers(0, 5))]
        dtype = np.int32 if name in ("max_new_tokens", "top_k") else np.float32
        inputs = {"prompts": np.array([b"hello"] * n, object), name: np.full(n, value, dtype)}
    elif kind == "control_count":
        inputs = {"prompts": np.array([b"hello"] * 2, object), "seed": np.array([1, 2, 3], np.int32)}
    elif kind == "wrong_dtype":
        inputs = {"prompts": np.array([b"hello"], object), "max_new_tokens": np.array([2], np.int64)}
    elif kind == "wrong_rank":
        inputs = {"prompts": np.array([[b"hello"]], object)}
    else:  # unknown_input
        inputs = {"prompts": np.array([b"hello"], object), "beam_width": np.array([4], np.int32)}
    if "max_new_tokens" not in inputs and kind not in ("wrong_dtype",):
        inputs["max_new_tokens"] = np.full(len(inputs["prompts"]) if inputs["prompts"].ndim == 1 else 1, 2, np.int32)
    return kind, str(rng.choice(["serving_default", "sample"])), inputs


KINDS = ["random_bytes", "empty", "new_words", "new_words", "too_many_bytes", "too_many_tokens", "bad_control",
         "control_count", "wrong_dtype", "wrong_rank", "unknown_input"]
MUST_FAIL = {"too_many_bytes", "too_many_tokens", "bad_control", "control_count", "wrong_dtype", "wrong_rank",
             "unknown_input"}


def worker(export_dir: str, count: int, seed: int) -> dict:
    from aigc_tf.compat import disable_xla_compilation

    disable_xla_compilation()
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the stock server links TF Text)

    from aigc_tf import AigcError
    from aigc_tf.serving.check import read_meta_graph, request_feeds

    signatures = read_meta_graph(export_dir).signature_def
    context = json.loads((Path(export_dir) / "assets.extra" / "aigc_tf.json").read_text())["context"]
    session = tf.compat.v1.Session(graph=tf.Graph())
    tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)

    def answer(signature: str, inputs: dict):
        sig = signatures[signature]
        names = sorted(sig.outputs)
        try:
            for name, value in inputs.items():  # the server feeds a tensor's own dtype
                if name in sig.inputs and tf.as_dtype(value.dtype) != tf.as_dtype(sig.inputs[name].dtype):
                    raise AigcError(f"Expects arg[{name}] to be {tf.as_dtype(sig.inputs[name].dtype).name} but "
                                    f"{tf.as_dtype(value.dtype).name} is provided")
            values = session.run([sig.outputs[k].name for k in names], request_feeds(sig, inputs))
        except (AigcError, tf.errors.OpError, ValueError) as err:  # an error status; the server keeps serving
            return {"error": type(err).__name__}
        return dict(zip(names, (v.tolist() for v in values)))

    rng = np.random.default_rng(seed)
    good = [(p, answer("serving_default", {"prompts": np.array([s.encode() for s in p], object),
                                           "max_new_tokens": np.full(len(p), 3, np.int32)})) for p in GOOD]
    counts, failures, wrong, invalid_utf8 = {}, [], 0, 0
    started, memory, curve = time.perf_counter(), {}, []
    for i in range(count):
        if i == WARMUP:
            memory["after_warmup_mb"] = resident_mb()
        if i % 500 == 0:
            curve.append([i, round(resident_mb(), 1)])
        if i % 10 == 0:
            prompts, expected = good[(i // 10) % len(good)]
            reply = answer("serving_default", {"prompts": np.array([s.encode() for s in prompts], object),
                                               "max_new_tokens": np.full(len(prompts), 3, np.int32)})
            wrong += reply != expected
            kind = "good"
        else:
            kind, signature, inputs = hostile(rng, context)
            reply = answer(signature, inputs)
            if ("error" in reply) != (kind in MUST_FAIL):
                failures.append({"request": i, "kind": kind, "reply": str(reply)[:200]})
            for text in reply.get("text", []):
                try:
                    text.decode("utf-8")
                except UnicodeDecodeError:
                    invalid_utf8 += 1
        entry = counts.setdefault(kind, {"requests": 0, "errors": 0})
        entry["requests"] += 1
        entry["errors"] += "error" in reply
    memory["end_mb"] = resident_mb()
    memory["growth_mb"] = round(memory["end_mb"] - memory["after_warmup_mb"], 1)
    session.close()
    return {"requests": count, "seconds": round(time.perf_counter() - started, 1), "kinds": counts,
            "unexpected": len(failures), "first_unexpected": failures[:5], "good_answers_changed": int(wrong),
            "invalid_utf8_replies": invalid_utf8, "memory": {k: round(v, 1) for k, v in memory.items()},
            "resident_mb_every_500": curve}


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from serve_batching import bench_arguments, export_for_bench

    args = bench_arguments(__doc__, 5000, OUT, argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.requests, args.seed)))
        return 0
    from aigc_tf.hardware import describe

    runs = {}
    with tempfile.TemporaryDirectory(prefix="aigc_soak_") as workdir:
        export, model = export_for_bench(Path(workdir), args.preset, args.seed)
        for name, onednn in ONEDNN.items():  # TensorFlow's default on x86 Linux, then its plain Eigen kernels
            done = subprocess.run([sys.executable, __file__, "--worker", str(export), "--requests",
                                   str(args.requests), "--seed", str(args.seed)], capture_output=True, text=True,
                                  timeout=7200, env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn})
            if done.returncode != 0:
                raise SystemExit(f"worker crashed (exit {done.returncode}): {done.stderr[-3000:]}")
            runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {name}: {json.dumps({k: runs[name][k] for k in ('unexpected', 'memory')})}", file=sys.stderr)
    result = {"command": "python bench/serve_soak.py " + " ".join(argv or sys.argv[1:]), "model": model,
              "cpu": describe(), **runs}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    ok = all(not r["unexpected"] and not r["good_answers_changed"] and not r["invalid_utf8_replies"]
             for r in runs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
