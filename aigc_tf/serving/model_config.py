"""`saved_models/models.config`: the text-format `ModelServerConfig` that makes one TF Serving process serve every export.

TF Serving reads it with `--model_config_file=/models/models.config` (and re-reads it every
`--model_config_file_poll_wait_seconds`), so a new model appears without a restart. Each entry names a model folder
(`<base>/<name>/` holding integer versions) and a version policy: `latest { num_versions: 1 }` serves the newest
version only and moves to a new one as soon as it is fully written (our exports are renamed into place, so the server
never sees half a version); `all` serves every version, for A/B tests by `/versions/<v>`.

The config is parsed and written with TF Serving's own protobuf (`tensorflow_serving.config.model_server_config_pb2`,
from the `tensorflow-serving-api` package), so what we write is what the model server reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from aigc_tf import AigcError
from aigc_tf.serving.folders import METADATA_FILE, model_folders

CONFIG_FILE = "models.config"
XLA_FLAG = "--xla_cpu_compilation_enabled=true"  # a stock tensorflow_model_server disables XLA without it
CONTAINER_BASE = "/models"  # where the README's `docker run` mounts saved_models/
POLICIES = ("latest", "all")


def read_models_config(path: Path):
    """Parse a `models.config` the way TF Serving does; a file it would reject gives one clear line."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(Path(path).read_text(), config)
    except text_format.ParseError as err:
        raise AigcError(f"{path} is not a valid TF Serving model config ({err}); regenerate it with "
                        "`aigc-tf serving config`") from None
    return config


def write_models_config(base_dir: Path = Path("saved_models"), serving_base: str = CONTAINER_BASE,
                        policy: str = "latest", keep_existing: bool = True) -> Path:
    """Write `<base_dir>/models.config` listing every model folder of `base_dir`.

    `serving_base` is where the server sees `base_dir` (`/models` in the README's container; an absolute host path
    for a `tensorflow_model_server` run outside Docker). With `keep_existing`, entries of models still on disk keep
    their settings (a policy or labels edited by hand survive an export); entries whose folder is gone are dropped,
    because the server would wait for them forever.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if policy not in POLICIES:
        raise AigcError(f"unknown version policy {policy!r}; use one of {', '.join(POLICIES)}")
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        raise AigcError(f"{base_dir} does not exist; export a model first (e.g. `aigc-tf gan export`)")
    path = base_dir / CONFIG_FILE
    previous = {}
    if keep_existing and path.exists():
        previous = {c.name: c for c in read_models_config(path).model_config_list.config}

    config = model_server_config_pb2.ModelServerConfig()
    for name in model_folders(base_dir):
        entry = config.model_config_list.config.add()
        if name in previous:
            entry.CopyFrom(previous[name])
            continue
        entry.name = name
        entry.base_path = f"{serving_base.rstrip('/')}/{name}"
        entry.model_platform = "tensorflow"
        if policy == "all":
            entry.model_version_policy.all.SetInParent()
        else:
            entry.model_version_policy.latest.num_versions = 1
    if not config.model_config_list.config:
        raise AigcError(f"no SavedModel versions under {base_dir}/<name>/<version>/; export a model first")
    header = ("# TF Serving model config, written by `aigc-tf` (regenerate: `aigc-tf serving config`).\n"
              "# Serve: tensorflow_model_server --model_config_file=<this file> (see README, Deploy).\n")
    tmp = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")  # one per writer: two exports may refresh it at once
    tmp.write_text(header + text_format.MessageToString(config))
    tmp.replace(path)  # atomic: a server polling the file never reads half of it
    return path


# ---------------------------------------------------------------------------------------------------- batching
BATCHING_FILE = "batching_parameters.txt"
ALLOWED_BATCH_SIZES = (1, 2, 4, 8, 16)  # powers of two: the XLA export's length buckets compile once per size


def batching_parameters(max_batch_size: int = 64, max_execution_batch_size: int = 16,
                        batch_timeout_micros: int = 5000, max_enqueued_batches: int = 100) -> str:
    """TF Serving's `BatchingParameters` text proto (`session_bundle_config.proto`) for `--batching_parameters_file`.

    The server merges concurrent requests along dimension 0 of every input, runs batches of at most
    `max_execution_batch_size` rows padded up to the next `allowed_batch_sizes` entry, and (with
    `enable_large_batch_splitting`) cuts a request of up to `max_batch_size` prompts into such batches instead of
    refusing it. Every input of a request must have the same dimension 0: our clients send each control once per
    prompt. `pad_variable_length_inputs` lets `generate_tokens` requests of different widths share a batch; the
    export never reads the padding (`aigc_tf.text.export`; the rules: `aigc_tf.serving.batching`).
    `num_batch_threads` is left to the server (its default: one per core).
    """
    if not 1 <= max_execution_batch_size <= max_batch_size:
        raise AigcError(f"need 1 <= max_execution_batch_size <= max_batch_size, got {max_execution_batch_size} "
                        f"and {max_batch_size}")
    sizes = [s for s in ALLOWED_BATCH_SIZES if s < max_execution_batch_size] + [max_execution_batch_size]
    if max_batch_size > max_execution_batch_size:  # the server wants the last entry to be max_batch_size
        sizes.append(max_batch_size)
    lines = [f"max_batch_size {{ value: {max_batch_size} }}",
             f"batch_timeout_micros {{ value: {batch_timeout_micros} }}",
             f"max_enqueued_batches {{ value: {max_enqueued_batches} }}",
             "enable_large_batch_splitting { value: true }",
             f"max_execution_batch_size {{ value: {max_execution_batch_size} }}"]
    lines += [f"allowed_batch_sizes: {s}" for s in sizes]
    lines.append("pad_variable_length_inputs: true")
    return "\n".join(lines) + "\n"


def write_batching_parameters(base_dir: Path, **kwargs) -> Path:
    path = Path(base_dir) / BATCHING_FILE
    path.write_text(batching_parameters(**kwargs))
    return path


def needs_xla_flag(base_dir: Path) -> bool:
    """Whether the newest version of any model under `base_dir` was exported with XLA (`aigc-tf text export --xla`,
    recorded in its `assets.extra/aigc_tf.json`), so that the server must be started with the XLA flag."""
    import json

    for name, found in model_folders(base_dir).items():
        metadata = Path(base_dir) / name / str(found[-1]) / METADATA_FILE
        if metadata.is_file() and json.loads(metadata.read_text()).get("xla"):
            return True
    return False


def serving_command(base_dir: Path, xla: bool = False, batching: bool = False) -> str:
    """The `docker run` that serves every model under `base_dir` with the flags its exports need."""
    flags = [f"--model_config_file={CONTAINER_BASE}/{CONFIG_FILE}", "--model_config_file_poll_wait_seconds=60"]
    if xla:
        flags.append(XLA_FLAG)
    if batching:
        flags += ["--enable_batching", f"--batching_parameters_file={CONTAINER_BASE}/{BATCHING_FILE}"]
    return (f'docker run --rm -p 8500:8500 -p 8501:8501 -v "{Path(base_dir).resolve()}:{CONTAINER_BASE}" '
            f"tensorflow/serving:2.21.0 " + " ".join(flags))


def configure_serving(base_dir: Path, serving_base: str = CONTAINER_BASE, policy: str = "latest",
                      batching: bool = False, max_batch_size: int = 64,
                      max_execution_batch_size: int = 16) -> list[str]:
    """`aigc-tf serving config`: rewrite `<base>/models.config` from the folders on disk (hand edits dropped) and,
    with `batching`, the batching parameters; returns what was written and how to serve it, one line each."""
    path = write_models_config(base_dir, serving_base=serving_base, policy=policy, keep_existing=False)
    lines = [f"  {name:<14} versions {', '.join(map(str, found))} -> {serving_base.rstrip('/')}/{name}"
             for name, found in model_folders(base_dir).items()]
    lines.append(f"Wrote {path} (version policy: {policy})")
    if batching:
        execution = min(max_execution_batch_size, max_batch_size)
        written = write_batching_parameters(base_dir, max_batch_size=max_batch_size,
                                            max_execution_batch_size=execution)
        lines.append(f"Wrote {written} (TF Serving's BatchingParameters: batches of up to {execution} rows, "
                     f"requests of up to {max_batch_size} prompts split into them; send every control once per "
                     "prompt, as aigc_tf.serving.client does)")
    lines.append(f"  serve:   {serving_command(base_dir, xla=needs_xla_flag(base_dir), batching=batching)}")
    return lines


def config_of_export(version_dir: Path) -> Path | None:
    """The `models.config` that serves an export (`<base>/<name>/<version>/` -> `<base>/models.config`), if any."""
    path = Path(version_dir).parent.parent / CONFIG_FILE
    return path if path.exists() else None
