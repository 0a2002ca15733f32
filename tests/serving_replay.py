"""Stand-ins for TF Serving's REST and gRPC front ends, for the client tests (the model server itself cannot be
installed on our machines).

They follow TF Serving's documented wire formats (REST API: `:predict` with `instances` / `inputs`, replies with
`predictions` / `outputs`, `{"error": ...}` on failure, `/metadata`; gRPC: `PredictionService.Predict` and
`GetModelMetadata`) and compute every answer with the real export, loaded with `tf.saved_model.load`, so a reply
body is what the server would send for that export. Every request is recorded for the tests to inspect.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import tensorflow as tf

from aigc_tf.serving.layout import versions
from aigc_tf.serving.check import read_meta_graph

ROUTE = re.compile(r"^/v1/models/(?P<model>[^/:]+)(/versions/(?P<version>\d+))?(?P<verb>:predict|/metadata)$")


class ServedModels:
    """The exports under one base folder, loaded on first use, called the way the model server calls them."""

    def __init__(self, base_dir: Path):
        self.base_dir, self.loaded = Path(base_dir), {}

    def version_dir(self, model: str, version: int | None) -> Path:
        found = versions(self.base_dir / model)
        if not found or (version is not None and version not in found):
            raise LookupError(f"Servable not found for request: {'Latest' if version is None else 'Specific'}"
                              f"({model}, {version if version is not None else ''})")
        return self.base_dir / model / str(version or found[-1])

    def run(self, model: str, version: int | None, signature: str, inputs: dict,
            use_defaults: bool = False) -> dict[str, np.ndarray]:
        """`use_defaults`: fill inputs a request left out from the SignatureDef's defaults, as gRPC Predict does
        (`predict_util.cc`); the REST front end's JSON parser requires every input (`json_tensor.cc`)."""
        path = self.version_dir(model, version)
        if path not in self.loaded:
            self.loaded[path] = tf.saved_model.load(str(path))
        function = self.loaded[path].signatures[signature]
        specs = function.structured_input_signature[1]
        if use_defaults:
            defaults = self.signature_defs(model, version)[signature].defaults
            inputs = {**{k: tf.make_ndarray(v) for k, v in defaults.items() if k not in inputs}, **inputs}
        if set(inputs) != set(specs):
            raise ValueError(f"signature {signature} takes {sorted(specs)}, request gave {sorted(inputs)}")
        for name, value in inputs.items():  # the server feeds a tensor's own dtype: no cast
            if tf.as_dtype(value.dtype) != specs[name].dtype:
                raise ValueError(f"Expects arg[{name}] to be {specs[name].dtype.name} but "
                                 f"{tf.as_dtype(value.dtype).name} is provided")
        return {name: value.numpy() for name, value in function(**inputs).items()}

    def signature_defs(self, model: str, version: int | None):
        return read_meta_graph(self.version_dir(model, version)).signature_def


def _json_tensor(array: np.ndarray, name: str = ""):
    """An output as TF Serving's REST front end writes it (`json_tensor.cc`): a string's bytes go into the JSON as
    they are, valid UTF-8 or not (kept here as surrogate escapes until the body is encoded), except for outputs
    whose name ends in `_bytes`, which are base64."""
    if array.dtype == object:
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "surrogateescape"), otypes=[object])(array).tolist()
    return array.tolist()


def json_input(value, dtype: tf.DType) -> np.ndarray:
    """A request's JSON value as the REST front end reads it for an input of `dtype`: numbers of the wrong kind are
    refused, not cast (`json_tensor.cc`)."""
    array = np.array(value, dtype=object if dtype == tf.string else None)
    if dtype == tf.string:
        return np.vectorize(lambda v: v.encode() if isinstance(v, str) else base64.b64decode(v["b64"]),
                            otypes=[object])(array) if array.size else array
    if dtype.is_integer and array.dtype.kind not in "iub":
        raise ValueError(f"JSON Value: {value} Is not of expected type: {dtype.name}")
    if dtype.is_floating and array.dtype.kind not in "iuf":
        raise ValueError(f"JSON Value: {value} Is not of expected type: {dtype.name}")
    return array.astype(dtype.as_numpy_dtype)


def rest_reply(served: ServedModels, model: str, version: int | None, body: dict) -> dict:
    """What TF Serving answers to a `:predict` body (row or columnar form)."""
    signature = body.get("signature_name", "serving_default")
    specs = served.signature_defs(model, version)[signature].inputs
    if "instances" in body:
        rows = body["instances"]
        if rows and isinstance(rows[0], dict):
            inputs = {name: [row[name] for row in rows] for name in rows[0]}
        else:
            (only,) = specs  # a bare list is the signature's one input
            inputs = {only: rows}
    else:
        given = body["inputs"]
        inputs = given if isinstance(given, dict) else {next(iter(specs)): given}
    inputs = {name: json_input(value, tf.as_dtype(specs[name].dtype)) if name in specs else np.array(value)
              for name, value in inputs.items()}
    outputs = served.run(model, version, signature, inputs)
    if "instances" in body:
        if len(outputs) == 1:
            ((name, value),) = outputs.items()
            return {"predictions": _json_tensor(value, name)}
        columns = {name: _json_tensor(value, name) for name, value in outputs.items()}
        return {"predictions": [{name: column[i] for name, column in columns.items()}
                                for i in range(len(next(iter(columns.values()))))]}
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        return {"outputs": _json_tensor(value, name)}
    return {"outputs": {name: _json_tensor(value, name) for name, value in outputs.items()}}


def metadata_reply(served: ServedModels, model: str, version: int | None) -> dict:
    from google.protobuf import json_format

    defs = served.signature_defs(model, version)
    return {"model_spec": {"name": model, "signature_name": "", "version": str(version or "")},
            "metadata": {"signature_def": {"signature_def": {
                name: json_format.MessageToDict(d, preserving_proto_field_name=True) for name, d in defs.items()}}}}


class RestReplayServer:
    """A local HTTP server answering TF Serving's REST routes. `canned = (status, bytes)` overrides the next reply."""

    def __init__(self, base_dir: Path):
        self.served, self.requests, self.canned = ServedModels(base_dir), [], None
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_GET(self):
                self._answer(None)

            def do_POST(self):
                self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def _answer(self, body):
                replay.requests.append((self.command, self.path, body))
                status, payload = replay.canned or replay.reply(self.path, body)
                replay.canned = None
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reply(self, path: str, body) -> tuple[int, bytes]:
        route = ROUTE.match(path)
        if not route:
            return 404, json.dumps({"error": f"Malformed request: {path}"}).encode()
        model, verb = route["model"], route["verb"]
        version = int(route["version"]) if route["version"] else None
        try:
            if verb == "/metadata":
                answer = metadata_reply(self.served, model, version)
            else:
                answer = rest_reply(self.served, model, version, body)
        except LookupError as err:
            return 404, json.dumps({"error": str(err).strip("'\"")}).encode()
        except (ValueError, KeyError, TypeError, tf.errors.OpError) as err:
            return 400, json.dumps({"error": str(err)}).encode()
        return 200, json.dumps(answer, ensure_ascii=False).encode("utf-8", "surrogateescape")  # raw bytes

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class GrpcReplayServer:
    """A local gRPC server implementing `PredictionService.Predict` and `GetModelMetadata` over the real exports."""

    def __init__(self, base_dir: Path):
        import grpc
        from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

        served, requests = ServedModels(base_dir), []
        self.requests = requests

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                requests.append(request)
                version = request.model_spec.version.value if request.model_spec.HasField("version") else None
                inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
                try:
                    outputs = served.run(request.model_spec.name, version,
                                         request.model_spec.signature_name or "serving_default", inputs,
                                         use_defaults=True)
                except LookupError as err:
                    context.abort(grpc.StatusCode.NOT_FOUND, str(err).strip("'\""))
                response = predict_pb2.PredictResponse()
                response.model_spec.CopyFrom(request.model_spec)
                for name, value in outputs.items():
                    response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
                return response

            def GetModelMetadata(self, request, context):
                version = request.model_spec.version.value if request.model_spec.HasField("version") else None
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                for name, signature_def in served.signature_defs(request.model_spec.name, version).items():
                    signature_map.signature_def[name].CopyFrom(signature_def)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.CopyFrom(request.model_spec)
                response.metadata["signature_def"].Pack(signature_map)
                return response

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), self.server)
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def close(self):
        self.server.stop(grace=None)
