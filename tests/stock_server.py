"""Requests answered as a stock `tensorflow_model_server` answers them, for the serving tests.

A fresh interpreter switches XLA off with the server's own call (`tensorflow::DisableXlaCompilation()`), imports
TF Text (linked into the stock server), loads the export with the Session-based loader, and answers each request
with the feeds the server would build. The feeds are built here, from TF Serving's source, not by the code under
test (`aigc_tf.serving.check.request_feeds`): the count check of `VerifyRequestInputsSize` (predict_util.cc), then
`GetInputValues` (saved_model/util.cc): each input from the request, else the SignatureDef's default, else an error,
and names the signature lacks refused. A request's JSON values are read as the REST front end reads them for the
input's dtype (a float for an integer input is refused, not cast). A failed request is recorded as an error status
and the next one is still answered, as the server keeps serving.
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
from aigc_tf.serving.check import read_meta_graph, status_message
import numpy as np, tensorflow as tf, tensorflow_text  # noqa: F401 (the stock server links TF Text's kernels)

sys.path.insert(0, sys.argv[3])
from serving_replay import json_input  # the REST front end's reading of a JSON value: no lossy casts


class Refused(Exception):
    pass


def server_feeds(signature, inputs):
    sent, expected = set(inputs), set(signature.inputs)
    if len(sent) > len(expected) or (len(sent) < len(expected) and not signature.defaults):
        raise Refused(f"input size does not match signature: {len(sent)}!={len(expected)}")
    feeds = {}
    for alias, info in signature.inputs.items():
        dtype = tf.dtypes.as_dtype(info.dtype)
        if alias in inputs:
            try:
                feeds[info.name] = json_input(inputs[alias], dtype)
            except ValueError as err:
                raise Refused(str(err)) from None
        elif alias in signature.defaults:
            feeds[info.name] = tf.make_ndarray(signature.defaults[alias])
        else:
            raise Refused(f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no "
                          "default value provided")
    if sent - expected:
        raise Refused(f"Inputs contains invalid name. request input: {','.join(sorted(sent))}")
    return feeds

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
        names = sorted(signature.outputs)
        try:
            values = session.run([signature.outputs[k].name for k in names], server_feeds(signature, request["inputs"]))
        except Refused as err:
            replies.append({"error": f"InvalidArgument: {err}"})
            continue
        except Exception as err:  # an error status for this request; the session keeps serving
            replies.append({"error": f"{type(err).__name__}: {status_message(err)}"})
            continue
        replies.append({k: np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(v).tolist()
                        if v.dtype == object else v.tolist() for k, v in zip(names, values)})
print(json.dumps(replies))
"""


def serve(export: Path, requests: list[dict], xla: bool = False, timeout: float = 600) -> list[dict]:
    """Replies (outputs, or {"error": ...}) to `requests` ([{"signature": ..., "inputs": {...}}]) in a fresh
    process that runs the export as a stock model server (or one started with the XLA flag)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(WORKER), str(export), "xla" if xla else "stock",
                           str(Path(__file__).parent)],
                          input=json.dumps(requests), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
