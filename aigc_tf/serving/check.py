"""`aigc-tf serving check`: will TF Serving load this export and answer every signature? Find out without a server.

Each export is checked in a fresh Python process that imports only TensorFlow, the way a model server starts: the
SavedModel is loaded with the Session-based loader (`tf.compat.v1.saved_model.loader.load`, the C++ `LoadSavedModel`
path that TF Serving and `saved_model_cli run` use; `tf.saved_model.load` is more forgiving, so passing it proves
little), and every signature is run once on a small valid input built from the signature itself. Before anything
else, the graph's op types are listed and compared with the ops core TensorFlow registers: an op that only a library
registers (TF Text's `RegexSplitWithOffsets` for GPT-2's string signatures) is marked, because the server must be
built with that library's kernels.

The worker answers as a stock `tensorflow_model_server` would: that server calls `tensorflow::DisableXlaCompilation()`
at start-up unless it is given `--xla_cpu_compilation_enabled` (or the GPU flag), after which every `jit_compile=True`
function fails with "XLA compilation disabled" (`tensorflow_serving/model_servers/main.cc`). The worker calls the same
function, exported by TensorFlow's `libtensorflow_cc.so.2`, before it loads anything; `--xla` checks as a server
started with the flag. Requests are built the way the server builds them (`predict_util.cc`): inputs a client leaves
out are taken from the SignatureDef's `defaults`, and a request that leaves out an input without one is refused. The
export's warm-up file (`assets.extra/tf_serving_warmup_requests`) is replayed first, as the server does at load time,
and the first request after it is timed against the cold first call.

`python -m aigc_tf.serving.check EXPORT_DIR [--xla]` is the worker: it prints one JSON report on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aigc_tf import AigcError
from aigc_tf.compat import disable_xla_compilation, registered_op
from aigc_tf.serving.folders import METADATA_FILE, model_folders, version_dirs
from aigc_tf.serving.model_config import CONFIG_FILE, XLA_FLAG, read_models_config
from aigc_tf.serving.signatures import SERVE_TAG, example_input, read_meta_graph
from aigc_tf.serving.warmup import read_warmup

# Which model servers carry the kernels of the libraries whose ops we meet. TF Serving links all TF Text ops
# (`@org_tensorflow_text//tensorflow_text:ops_lib` in its model server's SUPPORTED_TENSORFLOW_OPS, since 2.x).
OP_LIBRARIES = {
    "tensorflow_text": ("TF Text", "included in the stock tensorflow/serving images and tensorflow-model-server "
                                   "builds; servers built without TF Text (custom or minimal builds) must use a "
                                   "core-only signature such as GPT-2's generate_tokens"),
}


# ---------------------------------------------------------------------------------------------------- the graph
def signature_op_types(export_dir_or_meta_graph, signature: str = "serving_default") -> set[str]:
    """The op types a signature's graph needs, following function calls transitively.

    A server can run the signature only if it has every one of these kernels: for example GPT-2's string signatures
    need TF Text's `RegexSplitWithOffsets`, its token signature only core TensorFlow ops.
    """
    return {node.op for node in _signature_nodes(export_dir_or_meta_graph, signature)}


def signature_needs_xla(meta_graph, signature: str = "serving_default") -> bool:
    """Whether a signature calls a function compiled with XLA (`jit_compile=True` marks it `_XlaMustCompile`) or an
    `Xla*` op (tf2xla's, compiled on demand): a stock model server, which disables XLA, cannot run it."""
    functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    for node in _signature_nodes(meta_graph, signature):
        if node.attr["_XlaMustCompile"].b or node.op.startswith("Xla"):  # Xla* ops run only through XLA
            return True
        called = [a.func.name for a in node.attr.values() if a.func.name]
        if any(functions[f].attr["_XlaMustCompile"].b for f in called if f in functions):
            return True
    return False


def _signature_nodes(export_dir_or_meta_graph, signature: str):
    """Every node a signature's outputs depend on, inside called functions too."""
    meta_graph = export_dir_or_meta_graph
    if isinstance(meta_graph, (str, Path)):
        meta_graph = read_meta_graph(meta_graph)
    if signature not in meta_graph.signature_def:
        raise AigcError(f"the export has no signature {signature!r}; it has {sorted(meta_graph.signature_def)}")
    functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    pending = [nodes[t.name.split(":")[0]] for t in meta_graph.signature_def[signature].outputs.values()]
    seen_functions, seen_nodes = set(), set()
    while pending:
        node = pending.pop()
        yield node
        called = [a.func.name for a in node.attr.values() if a.func.name]
        called += [f.name for a in node.attr.values() for f in a.list.func]
        for name in called:
            if name in functions and name not in seen_functions:
                seen_functions.add(name)
                pending.extend(functions[name].node_def)
        for source in node.input:  # graph-level inputs (function bodies reference their own args)
            name = source.lstrip("^").split(":")[0]
            if name in nodes and name not in seen_nodes:
                seen_nodes.add(name)
                pending.append(nodes[name])


def unregistered_ops(op_types) -> set[str]:
    """The op types this process has no definition for (called before any library registers its own)."""
    return {op for op in op_types if registered_op(op) is None}


# ---------------------------------------------------------------------------------------------------- the server
def request_feeds(signature_def, inputs: dict) -> dict:
    """{tensor name: value} the model server feeds for a request giving `inputs` ({input name: value}).

    As `predict_util.cc` (`VerifyRequestInputsSize`) and `saved_model/util.cc` (`GetInputValues`) do: more inputs
    than the signature has, or fewer when it has no defaults, is refused by count; then each signature input takes
    the request's value, else its default, else the request fails; a name the signature lacks fails last.
    """
    import tensorflow as tf

    sent, expected = set(inputs), set(signature_def.inputs)
    if len(sent) > len(expected) or (len(sent) < len(expected) and not signature_def.defaults):
        raise AigcError(f"input size does not match signature: {len(sent)}!={len(expected)} "
                        f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                        f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                        f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
    feeds = {}
    for name, info in signature_def.inputs.items():
        if name in inputs:
            feeds[info.name] = inputs[name]
        elif name in signature_def.defaults:
            feeds[info.name] = tf.make_ndarray(signature_def.defaults[name])
        else:
            raise AigcError(f"Signature input alias: {name}(feed name: {info.name}) not found in request and no "
                            f"default value provided. Inputs expected to be in the request "
                            f"{{{','.join(sorted(sent))}}}, or default input alias set: "
                            f"{','.join(sorted(signature_def.defaults))}")
    if sent - expected:
        raise AigcError(f"Inputs contains invalid name. Used request inputs: {','.join(sorted(sent & expected))}, "
                        f"request input: {','.join(sorted(sent))}")
    return feeds


def required_inputs(signature_def) -> list[str]:
    """The inputs a client must send: those without a default in the SignatureDef."""
    return sorted(k for k in signature_def.inputs if k not in signature_def.defaults)


# ---------------------------------------------------------------------------------------------------- the worker
def inspect_export(export_dir: Path, xla: bool = False) -> dict:
    """Everything `serving check` reports on one export, computed in this (fresh) process. Never raises.

    `xla=False` answers as a stock model server (XLA disabled); call it before this process has run any graph.
    """
    export_dir = Path(export_dir)
    report = {"path": str(export_dir), "ok": False, "errors": [], "signatures": {}, "xla": xla,
              "size_bytes": sum(f.stat().st_size for f in export_dir.rglob("*") if f.is_file())}
    try:
        if not xla:
            disable_xla_compilation()
        meta_graph = read_meta_graph(export_dir)
        all_ops = set()
        for name in meta_graph.signature_def:
            if name.startswith("__"):
                continue
            report["signatures"][name] = {"ops": sorted(signature_op_types(meta_graph, name)),
                                          "needs_xla": signature_needs_xla(meta_graph, name)}
            all_ops |= set(report["signatures"][name]["ops"])
        report["op_count"] = len(all_ops)
        metadata = export_dir / METADATA_FILE
        if metadata.is_file():
            report["precision"] = json.loads(metadata.read_text()).get("precision")
            if report["precision"] == "bf16":
                from aigc_tf.hardware import describe, native_bf16

                report["cpu_bf16"] = describe()
                if not native_bf16():
                    report["notes"] = [f"bf16 weights, but this CPU has {describe()}: bf16 matmuls are emulated "
                                       "and slower than fp32 here; export with --precision fp32 for such servers"]
        report["non_core_ops"] = _library_ops(unregistered_ops(all_ops))
        for signature in report["signatures"].values():
            signature["non_core_ops"] = sorted(set(signature["ops"]) & set(report["non_core_ops"]))
            del signature["ops"]
        text_ops = [op for op, library in report["non_core_ops"].items() if library == "tensorflow_text"]
        if text_ops:
            from aigc_tf.serving.server_ops import servers_covering

            report["servers"] = servers_covering(text_ops)
        if any(s["needs_xla"] for s in report["signatures"].values()) and not xla:
            report.setdefault("notes", []).append(
                "a default server will not load this version at all, not just refuse its XLA signatures: it replays "
                "the warm-up records at load, and one that fails fails the whole version "
                f"(saved_model_bundle_source_adapter.cc); start the server with {XLA_FLAG}")
        unknown = [op for op, library in report["non_core_ops"].items() if library is None]
        if unknown:
            raise AigcError(f"ops {unknown} are registered neither by TensorFlow nor by a known library; "
                            "no stock model server can run this export")
        _run_signatures(export_dir, meta_graph, report)
        report["ok"] = not report["errors"]
    except AigcError as err:
        report["errors"].append(str(err))
    except Exception as err:  # noqa: BLE001  (a loader failure of any kind is a finding, not a crash)
        report["errors"].append(_one_line(err))
    return report


def _library_ops(ops: set[str]) -> dict:
    """`{op: library or None}`: import each known op library in turn and see which of the ops it registers."""
    import importlib

    owner = {op: None for op in ops}
    for module in OP_LIBRARIES:
        if not unregistered_ops([op for op, lib in owner.items() if lib is None]):
            break
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        owner.update({op: module for op, lib in owner.items() if lib is None and not unregistered_ops([op])})
    return owner


def _run_signatures(export_dir: Path, meta_graph, report: dict) -> None:
    """Load with the Session-based loader, replay the warm-up file, then call each signature as a client would."""
    import numpy as np
    import tensorflow as tf


    warmup = read_warmup(export_dir)  # eager, before the Session's graph becomes the default
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        try:
            tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(export_dir))
        except Exception as err:  # noqa: BLE001
            raise AigcError(f"the Session-based loader (TF Serving's) cannot load it: {_one_line(err)}") from None
        signatures = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}

        def run(name, inputs):
            signature_def = signatures[name]
            fetch_names = sorted(signature_def.outputs)
            started = time.perf_counter()
            values = session.run([signature_def.outputs[k].name for k in fetch_names],
                                 feed_dict=request_feeds(signature_def, inputs))
            return dict(zip(fetch_names, values)), time.perf_counter() - started

        def failure(name, err, when: str = "") -> str:
            if "XLA compilation disabled" in str(err):
                return (f"signature {name!r} needs XLA, which a stock tensorflow_model_server disables: start it "
                        f"with {XLA_FLAG}, or export without XLA")
            return f"signature {name!r} failed{when}: {_one_line(err)}"

        refused = {name for name in signatures if report["signatures"][name]["needs_xla"] and not report["xla"]}
        for name in sorted(refused):  # one line each; running them would only repeat it
            report["errors"].append(failure(name, "XLA compilation disabled"))
        report["warmup_requests"] = len(warmup)
        for request in warmup:  # what the server does at load time, before any client is served
            name = request.model_spec.signature_name or "serving_default"
            if name in refused:
                continue
            if name not in signatures:
                report["errors"].append(f"the warm-up file calls signature {name!r}, which the export lacks; the "
                                        "server would refuse to load it")
                continue
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            try:
                _, seconds = run(name, inputs)
            except Exception as err:  # noqa: BLE001  (the server fails the whole load here)
                report["errors"].append(f"warm-up request failed, so the server would not load it: "
                                        f"{failure(name, err)}")
                continue
            signature = report["signatures"][name]
            if set(inputs) == set(required_inputs(signatures[name])):
                signature.setdefault("cold_seconds", round(seconds, 3))

        for name, signature_def in sorted(signatures.items()):
            entry = report["signatures"][name]
            entry["inputs"] = {k: _describe(v, signature_def.defaults.get(k)) for k, v in signature_def.inputs.items()}
            entry["outputs"] = {k: _describe(v) for k, v in signature_def.outputs.items()}
            if name in refused:
                continue
            inputs = {k: example_input(k, signature_def.inputs[k]) for k in required_inputs(signature_def)}
            try:
                values, seconds = run(name, inputs)
            except Exception as err:  # noqa: BLE001
                report["errors"].append(failure(name, err, " on an example input"))
                continue
            entry["warm_seconds" if "cold_seconds" in entry else "cold_seconds"] = round(seconds, 3)
            batch = len(next(iter(inputs.values()))) if inputs else None
            entry["example_output_shapes"] = {k: list(np.shape(v)) for k, v in values.items()}
            texts = [np.asarray(v).reshape(-1) for v in values.values() if np.asarray(v).dtype == object]
            if texts and texts[0].size:  # what a client would read back, to see the model speaks
                entry["example_text"] = texts[0][0].decode("utf-8", "replace")[:120]
            for key, value in values.items():
                value = np.asarray(value)
                if batch is not None and value.ndim and value.shape[0] != batch:
                    report["errors"].append(f"signature {name!r} output {key!r} has batch {value.shape[0]} "
                                            f"for an input batch of {batch}")
                if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                    report["errors"].append(f"signature {name!r} output {key!r} is not finite")


def _describe(tensor_info, default=None) -> dict:
    import tensorflow as tf

    dims = [d.size for d in tensor_info.tensor_shape.dim]
    described = {"dtype": tf.dtypes.as_dtype(tensor_info.dtype).name,
                 "shape": None if tensor_info.tensor_shape.unknown_rank else [None if d < 0 else d for d in dims]}
    if default is not None:
        described["default"] = tf.make_ndarray(default).tolist()
    return described


def status_message(err: Exception) -> str:
    """The error a model server would put in its status: TensorFlow's message without Python's wrapping
    ("Graph execution error:", "Detected at node ...", the Python trace)."""
    lines = [line.strip() for line in str(getattr(err, "message", err)).strip().splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(("Graph execution error", "Detected at node", "File ",
                                                           "[[", "Node:"))]
    return (kept or lines or [type(err).__name__])[0]


def _one_line(err: Exception) -> str:
    text = status_message(err)
    return f"{type(err).__name__}: {text}"[:400]


# ---------------------------------------------------------------------------------------------------- the parent
@dataclass
class ExportCheck:
    """One export's report, from its worker process."""

    path: Path
    report: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.report.get("ok"))


def check_export(export_dir: Path, timeout: float = 900, xla: bool = False) -> ExportCheck:
    """Run the worker on one export in a fresh process and collect its report.

    `xla=False` checks as a stock model server (XLA disabled); `xla=True` as one started with the XLA flag.
    """
    cmd = [sys.executable, "-m", "aigc_tf.serving.check", str(export_dir)] + (["--xla"] if xla else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    except subprocess.TimeoutExpired:
        return ExportCheck(Path(export_dir), {"ok": False, "errors": [f"the check took over {timeout:.0f} s"]})
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        report = {"ok": False, "errors": [f"the loader process died (exit {done.returncode}): {tail[0][:300]}"]}
    return ExportCheck(Path(export_dir), report)


def format_report(check: ExportCheck) -> str:
    """A few lines per export: size, signatures with their inputs and outputs, non-core ops, errors."""
    report = check.report
    size = report.get("size_bytes")
    server = "server with " + XLA_FLAG if report.get("xla") else "stock server flags, XLA off"
    if report.get("precision"):
        server += f"; {report['precision']} weights"
    lines = [f"{'PASS' if check.ok else 'FAIL'}  {check.path}" + (f"  ({size / 1e6:.1f} MB)" if size else "")
             + f"  [{server}]"]
    for name, sig in sorted(report.get("signatures", {}).items()):
        if name.startswith("__"):
            continue
        ins = ", ".join(f"{k}: {v['dtype']} {_shape(v['shape'])}" + (f" = {v['default']}" if "default" in v else "")
                        for k, v in sorted(sig.get("inputs", {}).items(), key=lambda kv: ("default" in kv[1], kv[0])))
        outs = ", ".join(f"{k}: {v['dtype']} {_shape(v['shape'])}" for k, v in sorted(sig.get("outputs", {}).items()))
        needs = list(sig.get("non_core_ops", [])) + ([XLA_FLAG] if sig.get("needs_xla") else [])
        extra = f"  [needs {', '.join(needs)}]" if needs else ""
        if "warm_seconds" in sig:
            extra += f"  first request {sig['warm_seconds']:.2f} s after warm-up ({sig['cold_seconds']:.2f} s cold)"
        elif "cold_seconds" in sig:
            extra += f"  first request {sig['cold_seconds']:.2f} s (no warm-up file)"
        lines.append(f"      {name}({ins}) -> {outs}{extra}")
        if "example_text" in sig:
            lines.append(f"        e.g. {sig['example_text']!r}")
    for op, library in sorted(report.get("non_core_ops", {}).items()):
        name, where = OP_LIBRARIES.get(library, (library or "an unknown library", "no stock model server has it"))
        lines.append(f"      non-core op {op}: {name}; {where}")
    servers = report.get("servers")
    if servers:
        lines.append(f"      TF Serving releases whose linked TF Text has its ops: {', '.join(servers['covered']) or 'none'}"
                     + "".join(f"; {release} lacks {', '.join(ops)}" for release, ops in servers["missing"].items()))
    if "op_count" in report:
        lines.append(f"      {report['op_count']} op types in all")
    lines += [f"      note: {n}" for n in report.get("notes", [])]
    lines += [f"      error: {e}" for e in report.get("errors", [])]
    return "\n".join(lines)


def config_report(base_dir: Path) -> list[str]:
    """Does `<base>/models.config` match the model folders on disk? Report lines, the first one PASS or FAIL
    (none without a config): a listed model without a version makes the server wait for it forever (an error); a
    model folder it leaves out is not served (a note)."""

    config = Path(base_dir) / CONFIG_FILE
    if not config.is_file():
        return []
    names = [e.name for e in read_models_config(config).model_config_list.config]
    on_disk = model_folders(base_dir)
    missing = [n for n in names if n not in on_disk]
    lines = [f"{'FAIL' if missing else 'PASS'}  {config}  ({len(names)} models: {', '.join(names)})"]
    if missing:
        lines.append(f"      error: it lists {', '.join(missing)} with no version on disk; run `aigc-tf serving config`")
    lines += [f"      note: {name} is not in it, so it will not be served; run `aigc-tf serving config`"
              for name in sorted(set(on_disk) - set(names))]
    return lines


def check_serving_folder(path: Path, xla: bool = False, all_versions: bool = False, on_export=None) -> list[ExportCheck]:
    """`check_export` for every export under `path` (newest versions only unless `all_versions`).

    `on_export(check)` is called as each one finishes (a check takes a fresh process and can take a minute):
    the CLI prints it at once. Raises `AigcError` when any export, or the folder's models.config, would fail.
    """
    config_failed = any(line.startswith("FAIL") for line in config_report(path))
    checks = []
    for export in version_dirs(path, all_versions=all_versions):
        checks.append(check_export(export, xla=xla))
        if on_export is not None:
            on_export(checks[-1])
    failed = sum(not c.ok for c in checks)
    if failed or config_failed:
        what = f"{failed} export(s)" if failed else f"{Path(path) / 'models.config'}"
        raise AigcError(f"{what} would fail in TF Serving; see the errors above")
    return checks


def _shape(shape) -> str:
    return "<unknown rank>" if shape is None else "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def main(argv: list[str] | None = None) -> int:
    """The worker: one export in, one JSON line out (imports only TensorFlow, like a model server)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = list(argv if argv is not None else sys.argv[1:])
    xla = "--xla" in args
    (export_dir,) = [a for a in args if a != "--xla"]
    print(json.dumps(inspect_export(Path(export_dir), xla=xla)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
