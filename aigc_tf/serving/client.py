"""Clients for TF Serving: REST (`:predict` JSON, standard library only) and gRPC (`PredictionService`).

Both speak TF Serving's documented wire formats and nothing of ours, so the same calls work against any model server
serving our exports (see README, "Deploy with TF Serving"):

- REST: `POST /v1/models/<name>[/versions/<v>]:predict` with either the row form `{"instances": [...]}` (one entry
  per example; an object per example when a signature has several inputs) or the columnar form
  `{"inputs": {name: tensor}}`. Replies are `{"predictions": [...]}` (row) or `{"outputs": ...}` (columnar), a bare
  value when the signature has one output, an object keyed by output name otherwise, and `{"error": "..."}` with an
  HTTP error status on failure. Binary strings travel as `{"b64": "..."}`.
- gRPC: `tensorflow_serving.apis.prediction_service_pb2_grpc.PredictionServiceStub.Predict` with a `PredictRequest`
  of `TensorProto`s (port 8500).

On top of `predict`, one helper per model family: `generate_images(noise)`, `decode(latents)`, `encode(images)`,
`generate_text(prompts)`. Connection failures, HTTP/RPC errors and replies that do not match the format raise
`AigcError` with one line that says what happened.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np

from aigc_tf import AigcError

TEXT_CONTROLS = {"max_new_tokens": np.int32, "temperature": np.float32, "top_k": np.int32, "top_p": np.float32,
                 "seed": np.int32}  # GPT-2's optional inputs (aigc_tf.text.export.CONTROLS)
SINGLE_OUTPUT = "output"  # the key `predict` gives a signature's only output when the reply does not name it


class ServingClient:
    """The family helpers, written once over `predict`; subclasses speak one protocol."""

    def __init__(self):
        self._defaults = {}  # (model, signature, version) -> {control: its default}, read once from the metadata

    def predict(self, model: str, inputs: dict, signature: str = "serving_default",
                version: int | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def signature_inputs(self, model: str, signature: str = "serving_default",
                         version: int | None = None) -> dict[str, dict]:
        """`{input name: {"dtype": "float32", "shape": [None, 100]}}` from the server's model metadata."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ families
    def generate_images(self, noise, labels=None, model: str = "gan", version: int | None = None) -> np.ndarray:
        """GAN generator: noise float32 [N, latent_dim] (+ labels int32 [N], conditional) -> images [N, 28, 28, 1]."""
        inputs = {"noise": np.asarray(noise, np.float32)}
        if labels is not None:
            inputs["labels"] = np.asarray(labels, np.int32)
        return self._output(self.predict(model, inputs, version=version), "images", model)

    def decode(self, latents, model: str = "vae_decoder", version: int | None = None) -> np.ndarray:
        """VAE decoder: latents float32 [N, latent_dim] -> images [N, 28, 28, 1] in [0, 1]."""
        return self._output(self.predict(model, {"latent": np.asarray(latents, np.float32)}, version=version),
                            "images", model)

    def encode(self, images, model: str = "vae_encoder", version: int | None = None):
        """VAE encoder: images [N, 28, 28, 1] in [0, 1] -> (mean, log_variance), each [N, latent_dim]."""
        out = self.predict(model, {"images": np.asarray(images, np.float32)}, version=version)
        if not {"mean", "log_variance"} <= out.keys():
            raise AigcError(f"model {model!r} answered {sorted(out)}, not mean and log_variance: is it a VAE encoder?")
        return out["mean"], out["log_variance"]

    def generate_text(self, prompts, model: str = "gpt2", signature: str = "serving_default",
                      version: int | None = None, **controls) -> list[str]:
        """GPT-2 string signature: prompts -> generated texts (prompt included); `signature="sample"` for top-p.

        `controls`: any of max_new_tokens, temperature, top_k, top_p, seed (None or left out: the signature's
        default, read once from the server's metadata). Every control is sent once per prompt: TF Serving's batching
        refuses a request whose inputs differ in dimension 0, and REST requires every input.
        """
        if isinstance(prompts, (str, bytes)):
            prompts = [prompts]
        prompts = np.array([p if isinstance(p, (str, bytes)) else str(p) for p in prompts], dtype=object)
        inputs = {"prompts": prompts, **self._controls(len(prompts), model, signature, version, controls)}
        texts = self._output(self.predict(model, inputs, signature, version), "text", model)
        return [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in texts.reshape(-1)]

    def generate_tokens(self, token_ids, model: str = "gpt2", version: int | None = None,
                        **controls) -> list[list[int]]:
        """GPT-2 on token ids, for servers without TF Text: prompts as lists of ids (start token 50256 first) ->
        each prompt followed by its new tokens. Sent as one zero-padded matrix and each prompt's length."""
        rows = [list(map(int, row)) for row in token_ids]
        if not rows or not all(rows):
            raise AigcError("give at least one prompt, each at least the start token (50256)")
        lengths = np.array([len(r) for r in rows], np.int32)
        ids = np.zeros((len(rows), lengths.max()), np.int32)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
        inputs = {"token_ids": ids, "lengths": lengths,
                  **self._controls(len(rows), model, "generate_tokens", version, controls)}
        out = self.predict(model, inputs, "generate_tokens", version)
        if not {"token_ids", "lengths"} <= out.keys():
            raise AigcError(f"model {model!r} answered {sorted(out)}, not token_ids and lengths")
        return [row[:n].tolist() for row, n in zip(np.asarray(out["token_ids"]), np.asarray(out["lengths"]))]

    def _controls(self, rows: int, model: str, signature: str, version, controls: dict) -> dict:
        """Every generation control of the signature as `rows` values: the caller's, else the signature's default."""
        unknown = sorted(set(controls) - set(TEXT_CONTROLS))
        if unknown:
            raise AigcError(f"unknown generation control {unknown[0]!r}; the text signatures take "
                            f"{', '.join(TEXT_CONTROLS)}")
        key = (model, signature, version)
        if key not in self._defaults:
            self._defaults[key] = {name: info.get("default") for name, info in
                                   self.signature_inputs(model, signature, version).items() if name in TEXT_CONTROLS}
        out = {}
        for name, default in self._defaults[key].items():
            value = controls.get(name)
            if value is None and default is None:
                continue
            out[name] = np.full(rows, np.ravel(default)[0] if value is None else value, TEXT_CONTROLS[name])
        return out

    @staticmethod
    def _output(outputs: dict, name: str, model: str) -> np.ndarray:
        if name in outputs:
            return outputs[name]
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        raise AigcError(f"model {model!r} answered outputs {sorted(outputs)}, none named {name!r}")


# ---------------------------------------------------------------------------------------------------- REST
def to_json_value(array: np.ndarray):
    """A tensor as TF Serving's JSON: nested lists; strings as text, or `{"b64": ...}` when not UTF-8."""
    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        def encode(value):
            if isinstance(value, bytes):
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(value).decode("ascii")}
            return str(value)
        return np.vectorize(encode, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def from_json_value(value) -> np.ndarray:
    """TF Serving's JSON tensor back to numpy (strings as an object array, `{"b64": ...}` decoded to bytes)."""
    def decode(item):
        if isinstance(item, dict):
            if set(item) != {"b64"}:
                raise ValueError(f"an object {sorted(item)} where a tensor value was expected")
            return base64.b64decode(item["b64"])
        if isinstance(item, list):
            return [decode(v) for v in item]
        return item

    decoded = decode(value)
    flat = decoded
    while isinstance(flat, list) and flat:
        flat = flat[0]
    if isinstance(flat, (str, bytes)):  # keep strings as Python objects (numpy's "S" dtype drops trailing NULs)
        result = np.array(decoded, dtype=object)
        if any(isinstance(item, list) for item in result.flat):
            raise ValueError("rows of different lengths")
        return result
    return np.array(decoded)  # ragged lists raise ValueError: a reply that is not a tensor


def rest_request_body(inputs: dict, signature: str = "serving_default", form: str = "instances") -> dict:
    """The JSON body TF Serving's REST `:predict` expects, in the row (`instances`) or columnar (`inputs`) form."""
    if not inputs:
        raise AigcError("give at least one input tensor")
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    body = {"signature_name": signature}
    if form == "inputs":
        body["inputs"] = {name: to_json_value(a) for name, a in arrays.items()}
        return body
    if form != "instances":
        raise AigcError(f"unknown request form {form!r}; use instances (row) or inputs (columnar)")
    sizes = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise AigcError(f"the row form needs every input to share its first (batch) dimension; got {sizes}")
    if len(arrays) == 1:
        body["instances"] = to_json_value(next(iter(arrays.values())))
    else:
        columns = {name: to_json_value(a) for name, a in arrays.items()}
        body["instances"] = [{name: column[i] for name, column in columns.items()}
                             for i in range(next(iter(sizes.values())))]
    return body


def parse_rest_reply(reply) -> dict[str, np.ndarray]:
    """`{output name: array}` from a `:predict` reply in either form; an unnamed single output is `"output"`."""
    if not isinstance(reply, dict):
        raise AigcError(f"malformed reply from TF Serving: expected a JSON object, got {type(reply).__name__}")
    if "error" in reply:
        raise AigcError(f"TF Serving error: {reply['error']}")
    try:
        if "predictions" in reply:
            rows = reply["predictions"]
            if not isinstance(rows, list):
                raise ValueError("`predictions` is not a list")
            if rows and all(isinstance(r, dict) and "b64" not in r for r in rows):
                names = list(rows[0])
                if any(set(r) != set(names) for r in rows):
                    raise ValueError("rows name different outputs")
                return {name: from_json_value([r[name] for r in rows]) for name in names}
            return {SINGLE_OUTPUT: from_json_value(rows)}
        if "outputs" in reply:
            outputs = reply["outputs"]
            if isinstance(outputs, dict) and "b64" not in outputs:
                return {name: from_json_value(value) for name, value in outputs.items()}
            return {SINGLE_OUTPUT: from_json_value(outputs)}
    except ValueError as err:
        raise AigcError(f"malformed reply from TF Serving: {err}") from None
    raise AigcError(f"malformed reply from TF Serving: no `predictions` or `outputs` in keys {sorted(reply)}")


def _metadata_inputs(signature_defs: dict, signature: str, model: str) -> dict[str, dict]:
    """Input names, dtypes and shapes from a SignatureDefMap given as JSON (REST) or as a dict from protobuf."""
    if signature not in signature_defs:
        raise AigcError(f"model {model!r} has no signature {signature!r}; it has {sorted(signature_defs)}")
    inputs = {}
    for name, info in signature_defs[signature].get("inputs", {}).items():
        shape = info.get("tensor_shape", {})
        dims = None if shape.get("unknown_rank") else [int(d.get("size", -1)) for d in shape.get("dim", [])]
        dtype = info.get("dtype", "DT_INVALID")
        dtype = dtype[3:].lower() if dtype.startswith("DT_") else dtype  # DT_FLOAT -> float32, as TF names it
        inputs[name] = {"dtype": {"float": "float32", "double": "float64", "half": "float16"}.get(dtype, dtype),
                        "shape": None if dims is None else [None if d < 0 else d for d in dims]}
        default = signature_defs[signature].get("defaults", {}).get(name)
        if default is not None:  # a TensorProto as JSON: its values sit in the one `*_val` field
            values = next((v for k, v in default.items() if k.endswith("_val")), None)
            inputs[name]["default"] = [float(v) for v in values] if values is not None else None
    return inputs


class RestClient(ServingClient):
    """TF Serving's REST API (port 8501 by default).

    Its JSON parser requires every input of a signature in a request (`json_tensor.cc`), defaults or not; gRPC
    Predict fills the ones left out from the SignatureDef's defaults. It writes a string output's bytes into the
    JSON as they are (base64 only for output names ending in `_bytes`), so a reply is decoded with invalid UTF-8
    replaced by U+FFFD rather than refused.
    """

    def __init__(self, url: str = "http://localhost:8501", timeout: float = 120, form: str = "instances"):
        super().__init__()
        if "://" not in url:
            url = f"http://{url}"
        self.url, self.timeout, self.form = url.rstrip("/"), timeout, form

    def model_url(self, model: str, version: int | None = None) -> str:
        if not model or "/" in model:
            raise AigcError(f"bad model name {model!r}")
        return f"{self.url}/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "")

    def predict(self, model, inputs, signature="serving_default", version=None):
        body = rest_request_body(inputs, signature, self.form)
        return parse_rest_reply(self._call(f"{self.model_url(model, version)}:predict", body))

    def signature_inputs(self, model, signature="serving_default", version=None):
        reply = self._call(f"{self.model_url(model, version)}/metadata")
        try:
            signature_defs = reply["metadata"]["signature_def"]["signature_def"]
        except (KeyError, TypeError):
            raise AigcError(f"malformed metadata reply from TF Serving for {model!r}") from None
        return _metadata_inputs(signature_defs, signature, model)

    def _call(self, url: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except (json.JSONDecodeError, AttributeError):
                pass
            raise AigcError(f"TF Serving at {self.url} answered HTTP {err.code}: {str(detail).strip()[:300]}") from None
        except urllib.error.URLError as err:
            raise AigcError(f"cannot reach TF Serving at {self.url} ({err.reason}); is the model server running "
                            "and its REST port (8501) published?") from None
        except (TimeoutError, ConnectionError) as err:
            raise AigcError(f"TF Serving at {self.url} did not answer ({type(err).__name__}: {err})") from None
        try:
            return json.loads(raw.decode("utf-8", "replace"))
        except json.JSONDecodeError:
            raise AigcError(f"malformed reply from TF Serving at {self.url}: not JSON "
                            f"({raw[:80].decode('utf-8', 'replace')!r})") from None


# ---------------------------------------------------------------------------------------------------- gRPC
class GrpcClient(ServingClient):
    """TF Serving's gRPC `PredictionService` (port 8500 by default); needs `tensorflow-serving-api`."""

    def __init__(self, target: str = "localhost:8500", timeout: float = 120):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        super().__init__()
        self.target, self.timeout = target, timeout
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    @staticmethod
    def predict_request(model: str, inputs: dict, signature: str = "serving_default", version: int | None = None):
        """The `PredictRequest` TF Serving expects: model spec + one TensorProto per named input."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = int(version)
        for name, value in inputs.items():
            value = np.asarray(value)
            if value.dtype.kind in "OU":  # text: TF strings are bytes
                value = np.vectorize(lambda s: s if isinstance(s, bytes) else str(s).encode("utf-8"),
                                     otypes=[object])(value)
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        return request

    def predict(self, model, inputs, signature="serving_default", version=None):
        import tensorflow as tf

        response = self._call(self.stub.Predict, self.predict_request(model, inputs, signature, version), model)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def signature_inputs(self, model, signature="serving_default", version=None):
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = int(version)
        response = self._call(self.stub.GetModelMetadata, request, model)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(signature_map):
            raise AigcError(f"malformed metadata reply from TF Serving for {model!r}")
        as_json = json_format.MessageToDict(signature_map, preserving_proto_field_name=True)
        return _metadata_inputs(as_json.get("signature_def", {}), signature, model)

    def _call(self, method, request, model: str):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise AigcError(f"cannot reach TF Serving at {self.target} ({err.details()}); is the model server "
                                "running and its gRPC port (8500) published?") from None
            raise AigcError(f"TF Serving at {self.target} refused the call for {model!r}: "
                            f"{getattr(code, 'name', code)}: {err.details()}") from None


def connect(url: str | None = None, grpc_target: str | None = None, **kwargs) -> ServingClient:
    """A client for `--url` (REST) or `--grpc` (gRPC), whichever is given."""
    if grpc_target:
        return GrpcClient(grpc_target, **kwargs)
    return RestClient(url or "http://localhost:8501", **kwargs)


def ask(client: ServingClient, model: str, *, signature: str = "serving_default", version: int | None = None,
        prompts: list[str] | None = None, num: int = 16, digit: int | None = None, seed: int | None = None,
        **controls):
    """Ask a served model for what it makes, chosen by what its signature takes (read from the server's metadata):
    `("text", [str])` for GPT-2's prompts, `("images", (num, 28, 28, 1))` for a GAN's noise or a VAE decoder's
    latents. `controls` are GPT-2's optional inputs (max_new_tokens, temperature, top_k, top_p)."""
    inputs = client.signature_inputs(model, signature, version)
    if "prompts" in inputs:
        if not prompts:
            raise AigcError(f"model {model!r} takes prompts; give at least one")
        return "text", client.generate_text(prompts, model, signature, version, seed=seed, **controls)
    if prompts:
        raise AigcError(f"model {model!r} takes {sorted(inputs)}, not prompts")
    name = next((n for n in ("noise", "latent") if n in inputs), None)
    if name is None or inputs[name]["shape"] is None or inputs[name]["shape"][-1] is None:
        raise AigcError(f"model {model!r} takes {sorted(inputs)}; asking for samples knows noise (GAN), latent (VAE "
                        "decoder) and prompts (GPT-2): call other models with the client's predict()")
    draws = np.random.default_rng(seed or 0).standard_normal((num, inputs[name]["shape"][-1])).astype(np.float32)
    if name == "latent":
        return "images", client.decode(draws, model, version)
    labels = None
    if "labels" in inputs:
        labels = np.full(num, digit) if digit is not None else np.arange(num) % 10
    return "images", client.generate_images(draws, labels, model, version)
