"""TF Serving's warm-up file: `<version>/assets.extra/tf_serving_warmup_requests`.

At load time the model server replays the requests in this file (a TFRecord of `PredictionLog` protos, at most
1,000 records; `tensorflow_serving/servables/tensorflow/saved_model_warmup.cc`) before it marks the version
available. Each distinct set of fed inputs is its own executor in a TF Session, built on its first run, so every
export writes one request per signature with the inputs a client must send, and one more with every optional input
too: the first real client then finds them built.
"""

from __future__ import annotations

from pathlib import Path

from aigc_tf.serving.signatures import example_input, read_meta_graph

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving refuses a longer file


def warmup_requests(meta_graph, model_name: str, batch: int = 1) -> list:
    """`PredictRequest`s for every signature of `meta_graph`: required inputs only, then all inputs (if they differ).

    Required values come from `aigc_tf.serving.signatures.example_input`, the same valid inputs the check sends;
    optional ones are their defaults.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    requests = []
    for name, signature in sorted(meta_graph.signature_def.items()):
        if name.startswith("__"):
            continue
        required = [k for k in signature.inputs if k not in signature.defaults]
        for given in ([required, sorted(signature.inputs)] if signature.defaults else [sorted(signature.inputs)]):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = name
            for key in given:  # an optional input is sent with its default value, as a client spelling it out
                request.inputs[key].CopyFrom(signature.defaults[key] if key in signature.defaults else
                                             tf.make_tensor_proto(example_input(key, signature.inputs[key], batch)))
            requests.append(request)
    return requests[:MAX_RECORDS]


def write_warmup(version_dir: Path, model_name: str) -> Path:
    """Write the warm-up file into an export's `assets.extra/`; returns its path."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in warmup_requests(read_meta_graph(version_dir), model_name):
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup(version_dir: Path) -> list:
    """The `PredictRequest`s of an export's warm-up file, in order ([] when it has none)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(version_dir) / WARMUP_FILE
    if not path.is_file():
        return []
    requests = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: a {log.WhichOneof('log_type')} record; aigc_tf writes predict_log only")
        requests.append(log.predict_log.request)
    return requests
