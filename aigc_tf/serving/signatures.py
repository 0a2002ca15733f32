"""What every serving tool needs to know of an export's signatures: its `serve` MetaGraph and a valid input for each.

The check (`aigc_tf.serving.check`) calls every signature on these inputs and the warm-up file
(`aigc_tf.serving.warmup`) records requests made of them, so both send the same requests.
"""

from __future__ import annotations

from pathlib import Path

from aigc_tf import AigcError

SERVE_TAG = "serve"
PROMPTS = ["It is a beautiful day", "The"]  # string inputs: two prompts of different lengths
GPT2_START_TOKEN = 50256


def read_meta_graph(export_dir: Path):
    """The `serve` MetaGraphDef of an export, parsed from `saved_model.pb` (a truncated file fails here)."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(export_dir) / "saved_model.pb"
    if not pb.is_file():
        raise AigcError(f"{export_dir} has no saved_model.pb; it is not a SavedModel version folder")
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(pb.read_bytes())
    except DecodeError:
        raise AigcError(f"{pb} is corrupt (cannot be parsed); export the model again") from None
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise AigcError(f"{export_dir} has no MetaGraph tagged {SERVE_TAG!r}; TF Serving loads only that one")


def example_input(name: str, tensor_info, batch: int = 2):
    """A small valid value for one signature input, from its dtype, shape and (for our exports) its name."""
    import numpy as np
    import tensorflow as tf

    dtype = tf.dtypes.as_dtype(tensor_info.dtype)
    dims = [d.size for d in tensor_info.tensor_shape.dim]
    shape = [batch if i == 0 and size < 0 else (4 if size < 0 else size) for i, size in enumerate(dims)]
    rng = np.random.default_rng(0)
    if dtype == tf.string:
        return np.array((PROMPTS * batch)[:batch], dtype=object).reshape(shape or ())
    if dtype.is_floating:
        if name == "images":  # the VAE encoder reads pixels in [0, 1]
            return rng.uniform(0, 1, shape).astype(dtype.as_numpy_dtype)
        return rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
    if dtype.is_integer or dtype.is_bool:
        if name == "labels":
            return (np.arange(int(np.prod(shape))) % 10).reshape(shape).astype(dtype.as_numpy_dtype)
        if name == "lengths":  # every row's whole width (see token_ids)
            return np.full(shape, 4, dtype.as_numpy_dtype)
        if name == "token_ids":  # a start token, then a few ordinary GPT-2 ids
            values = np.full(shape, 464, dtype.as_numpy_dtype)
            values[..., 0] = GPT2_START_TOKEN
            return values
        return np.zeros(shape, dtype.as_numpy_dtype)
    raise AigcError(f"input {name!r} has dtype {dtype.name}, which the check cannot fill; call the signature by hand")
