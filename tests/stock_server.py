"""Requests answered as a stock `tensorflow_model_server` answers them, for the serving tests.

A fresh interpreter switches XLA off with the server's own call (`tensorflow::DisableXlaCompilation()`), imports
TF Text (linked into the stock server), loads the export with the Session-based loader, and answers each request
with the feeds the server would build (`aigc_tf.serving.check.request_feeds`: omitted inputs take the
SignatureDef's defaults, unknown or missing required inputs are refused). A failed request is recorded as an error
status and the next one is still answered, as the server keeps serving.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

WORKER = """
import json, sys
from aigc_tf.compat import disable_xla_compilation
from aigc_tf.serving.check import read_meta_graph, request_feeds, status_message
import numpy as np, tensorflow as tf, tensorflow_text  # noqa: F401 (the stock server links TF Text's kernels)

export, xla = sys.argv[1], sys.argv[2] == "xla"
if not xla:
    disable_xla_compilation()
requests = json.loads(sys.stdin.read())
signatures = read_meta_graph(export).signature_def
replies = []
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    tf.compat.v1.saved_model.loader.load(session, ["serve"], export)
    for request in requests:
        signature = signatures[request.get("signature", "serving_default")]
        inputs = {k: np.array(v, dtype=tf.dtypes.as_dtype(signature.inputs[k].dtype).as_numpy_dtype)
                  if k in signature.inputs else np.array(v) for k, v in request["inputs"].items()}
        names = sorted(signature.outputs)
        try:
            values = session.run([signature.outputs[k].name for k in names], request_feeds(signature, inputs))
        except Exception as err:  # an error status for this request; the session keeps serving
            replies.append({"error": f"{type(err).__name__}: {status_message(err)}"})
            continue
        replies.append({k: np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(v).tolist()
                        if v.dtype == object else v.tolist() for k, v in zip(names, values)})
print(json.dumps(replies))
"""


def serve(export: Path, requests: list[dict], xla: bool = False, timeout: float = 600) -> list[dict]:
    """Replies (outputs, or {"error": ...}) to `requests` ([{"signature": ..., "inputs": {...}}]) in a fresh
    process that runs the export as a stock model server (or one started with the XLA flag)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(WORKER), str(export), "xla" if xla else "stock"],
                          input=json.dumps(requests), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
