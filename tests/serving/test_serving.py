"""The deployment kit: models.config, the Session-loader check, and the REST / gRPC clients against replay servers
that answer in TF Serving's documented formats with the real exports' outputs."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import aigc_tf.serving
from aigc_tf import AigcError
from aigc_tf.gan.export import export_gan
from aigc_tf.vae.export import export_vae
from aigc_tf.serving.check import check_export, read_meta_graph
from aigc_tf.serving.layout import version_dirs
from aigc_tf.serving.client import GrpcClient, RestClient, rest_request_body
from aigc_tf.serving.model_config import read_models_config, write_models_config
from serving_replay import GrpcReplayServer, RestReplayServer

PROMPTS = ["It is a beautiful day", "The"]


def _fake_version(base: Path, name: str, version) -> None:
    (base / name / str(version)).mkdir(parents=True)
    (base / name / str(version) / "saved_model.pb").write_bytes(b"")


def test_models_config_is_tf_servings_format_keeps_hand_edits_and_drops_removed_models(tmp_path):
    _fake_version(tmp_path, "gan", 1)
    _fake_version(tmp_path, "gan", 2)
    _fake_version(tmp_path, "gpt2", 1)
    (tmp_path / "gan" / ".partial-3").mkdir()  # an export still being written: not a version
    (tmp_path / "notes").mkdir()  # no versions: not a model
    path = write_models_config(tmp_path)
    entries = {c.name: c for c in read_models_config(path).model_config_list.config}
    assert sorted(entries) == ["gan", "gpt2"]
    assert entries["gan"].base_path == "/models/gan" and entries["gan"].model_platform == "tensorflow"
    assert entries["gan"].model_version_policy.latest.num_versions == 1

    # A hand edit survives the next export's update; a model whose folder is gone is dropped.
    text = path.read_text().replace("latest {\n        num_versions: 1\n      }", "all {\n      }", 1)
    path.write_text(text)
    _fake_version(tmp_path, "vae_decoder", 1)
    (tmp_path / "gpt2" / "1" / "saved_model.pb").unlink()
    entries = {c.name: c for c in read_models_config(write_models_config(tmp_path)).model_config_list.config}
    assert sorted(entries) == ["gan", "vae_decoder"]
    assert entries["gan"].model_version_policy.HasField("all")

    regenerated = write_models_config(tmp_path, serving_base="/srv/models/", keep_existing=False)
    entries = {c.name: c for c in read_models_config(regenerated).model_config_list.config}
    assert entries["gan"].model_version_policy.HasField("latest") and entries["gan"].base_path == "/srv/models/gan"

    path.write_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(AigcError, match="not a valid TF Serving model config"):
        write_models_config(tmp_path)


def test_request_bodies_are_tf_servings_documented_forms():
    noise, labels = np.zeros((2, 3), np.float32), np.array([4, 7])
    assert rest_request_body({"noise": noise}) == {"signature_name": "serving_default", "instances": noise.tolist()}
    assert rest_request_body({"noise": noise, "labels": labels}) == {
        "signature_name": "serving_default",
        "instances": [{"noise": [0.0, 0.0, 0.0], "labels": 4}, {"noise": [0.0, 0.0, 0.0], "labels": 7}]}
    assert rest_request_body({"noise": noise, "labels": labels}, form="inputs") == {
        "signature_name": "serving_default", "inputs": {"noise": noise.tolist(), "labels": [4, 7]}}
    prompts = np.array(["hi", b"\xff\xfe"], dtype=object)  # not UTF-8: sent as {"b64": ...}
    assert rest_request_body({"prompts": prompts}, "sample")["instances"] == ["hi", {"b64": "//4="}]
    with pytest.raises(AigcError, match="first \\(batch\\) dimension"):
        rest_request_body({"noise": noise, "labels": np.array([1, 2, 3])})


# ---------------------------------------------------------------------------------------------------- real exports
@pytest.fixture(scope="module")
def saved_models(tiny_gan_run, tiny_vae_run, tiny_text_export, tmp_path_factory):
    """A base folder as `make demo` leaves it: gan, gpt2, vae_decoder, vae_encoder and models.config."""
    import shutil

    base = tmp_path_factory.mktemp("deploy") / "saved_models"
    export_gan(tiny_gan_run[0], base / "gan")
    export_vae(tiny_vae_run[0], base)
    shutil.copytree(tiny_text_export[1], base / "gpt2" / "1")
    write_models_config(base)
    return base


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "aigc_tf", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_check_passes_on_every_fresh_export_and_names_the_non_core_op(saved_models):
    done = _cli("serving", "check", str(saved_models))
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "4 of 4 exports pass" in done.stdout
    assert done.stdout.count("[stock server flags, XLA off") == 4  # answered as a server with default flags
    signature_lines = [line for line in done.stdout.splitlines() if line.startswith("      ") and "(" in line
                       and "->" in line]
    assert len(signature_lines) == 6 and all("after warm-up" in line for line in signature_lines), done.stdout
    assert "(4 models: gan, gpt2, vae_decoder, vae_encoder)" in done.stdout
    assert "non-core op RegexSplitWithOffsets: TF Text" in done.stdout
    # every release's pinned TF Text (2.12.1 in TF Serving 2.16-2.19) registers the one TF Text op GPT-2 uses
    assert "TF Serving releases whose linked TF Text has its ops: 2.16.1, 2.17.1, 2.18.1, 2.19.1, 2.20.0" in done.stdout
    token_line = next(line for line in done.stdout.splitlines() if "generate_tokens(" in line)
    assert "[needs" not in token_line  # the core-only signature for servers without TF Text
    assert "serving_default(noise: float32 [None, 8]) -> images: float32 [None, 28, 28, 1]" in done.stdout


@pytest.fixture(scope="module")
def broken_exports(saved_models, tiny_gan_run, tmp_path_factory):
    """Exports TF Serving would refuse: truncated graph, lost variables, and a plain tf.Module SavedModel."""
    import shutil

    from aigc_tf.gan.sample import load_generator

    base = tmp_path_factory.mktemp("broken")
    good = version_dirs(saved_models / "gan")[0]
    truncated = shutil.copytree(good, base / "truncated" / "1")
    pb = truncated / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    no_variables = shutil.copytree(good, base / "no_variables" / "1")
    shutil.rmtree(no_variables / "variables")

    generator = load_generator(tiny_gan_run[0])[0]

    class Plain(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, generator.input_shape[-1]], tf.float32, name="noise")])
        def serve(self, noise):
            return {"images": self.model(noise, training=False)}

    plain = Plain(generator)
    tf.saved_model.save(plain, str(base / "plain_module" / "1"), signatures={"serving_default": plain.serve})
    return base


@pytest.mark.slow
@pytest.mark.parametrize("name, message", [
    ("truncated", "saved_model.pb is corrupt"),
    ("no_variables", "the Session-based loader (TF Serving's) cannot load it"),
    ("plain_module", "failed on an example input"),
])
def test_check_fails_clearly_on_exports_tf_serving_would_refuse(broken_exports, name, message):
    check = check_export(broken_exports / name / "1")
    assert not check.ok
    assert any(message in error for error in check.report["errors"]), check.report


@pytest.mark.slow
def test_check_command_exits_2_with_one_line_per_failure(broken_exports):
    done = _cli("serving", "check", str(broken_exports / "truncated"))
    assert done.returncode == 2
    assert "FAIL" in done.stdout and "0 of 1 exports pass" in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("aigc-tf: error: 1 export(s) would fail in TF Serving")


# ---------------------------------------------------------------------------------------------------- clients
@pytest.fixture(scope="module")
def rest_server(saved_models):
    server = RestReplayServer(saved_models)
    yield server
    server.close()


@pytest.fixture(scope="module")
def grpc_server(saved_models):
    server = GrpcReplayServer(saved_models)
    yield server
    server.close()


def _direct(saved_models: Path, model: str, signature: str = "serving_default", **inputs):
    loaded = tf.saved_model.load(str(version_dirs(saved_models / model)[0]))
    return {k: v.numpy() for k, v in getattr(loaded, signature)(**inputs).items()}  # the endpoint keeps defaults


@pytest.mark.slow
@pytest.mark.parametrize("form", ["instances", "inputs"])
def test_rest_client_sends_documented_bodies_and_reads_both_reply_forms(saved_models, rest_server, form):
    client = RestClient(rest_server.url, form=form)
    noise = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    images = client.generate_images(noise)
    method, path, body = rest_server.requests[-1]
    assert (method, path) == ("POST", "/v1/models/gan:predict")
    expected_body = {"signature_name": "serving_default",
                     **({"instances": noise.tolist()} if form == "instances" else {"inputs": {"noise": noise.tolist()}})}
    assert body == expected_body
    np.testing.assert_allclose(images, _direct(saved_models, "gan", noise=tf.constant(noise))["images"], atol=1e-6)

    latents = np.random.default_rng(1).standard_normal((2, 2)).astype(np.float32)
    decoded = client.decode(latents, version=1)
    assert rest_server.requests[-1][1] == "/v1/models/vae_decoder/versions/1:predict"
    np.testing.assert_allclose(decoded, _direct(saved_models, "vae_decoder", latent=tf.constant(latents))["images"],
                               atol=1e-6)
    mean, log_variance = client.encode(decoded)  # two outputs: an object per row / per name in the reply
    assert mean.shape == log_variance.shape == (2, 2)

    texts = client.generate_text(PROMPTS)
    expected = _direct(saved_models, "gpt2", prompts=tf.constant(PROMPTS))["text"]
    assert texts == [t.decode("utf-8", "replace") for t in expected]
    assert all(text.startswith(prompt) for text, prompt in zip(texts, PROMPTS))
    sent = rest_server.requests[-1][2]  # REST needs every input: the client filled the controls' defaults
    sent_names = set(sent["inputs"]) if form == "inputs" else set(sent["instances"][0])
    assert sent_names == {"prompts", "max_new_tokens", "temperature", "top_k", "top_p", "seed"}
    if form == "inputs":  # one value per prompt, never one for all: TF Serving's batching needs equal dimension 0
        assert all(len(value) == len(PROMPTS) for value in sent["inputs"].values())
    seeded = [client.generate_text(["hello"], signature="sample", seed=3, max_new_tokens=4) for _ in range(2)]
    assert seeded[0] == seeded[1] and seeded[0][0].startswith("hello")
    inputs = client.signature_inputs("gpt2", "generate_tokens")
    assert inputs["token_ids"] == {"dtype": "int32", "shape": [None, None]}
    assert inputs["lengths"] == {"dtype": "int32", "shape": [None]}
    assert inputs["temperature"] == {"dtype": "float32", "shape": [None], "default": [0.0]}
    assert inputs["max_new_tokens"]["default"] == [8.0]
    with pytest.raises(AigcError, match="unknown generation control 'beams'"):
        client.generate_text(["hello"], beams=4)


@pytest.mark.slow
def test_rest_client_errors_are_one_clear_line(rest_server):
    client = RestClient(rest_server.url)
    with pytest.raises(AigcError, match=r"HTTP 404: Servable not found for request: Latest\(gan3"):
        client.generate_images(np.zeros((1, 8), np.float32), model="gan3")
    with pytest.raises(AigcError, match="HTTP 400"):
        client.generate_images(np.zeros((1, 8), np.float32), model="gpt2")  # wrong inputs for the signature
    client.generate_text(["caf"], max_new_tokens=1)  # reads the signature's defaults once
    rest_server.canned = (200, b'{"predictions": ["caf\xc3"]}')  # a reply cut inside a character, as raw bytes
    assert client.generate_text(["caf"], max_new_tokens=1) == ["caf\ufffd"]  # U+FFFD, not an exception
    for canned, message in [((200, b"<html>busy</html>"), "not JSON"),
                            ((200, b'{"result": [1]}'), "no `predictions` or `outputs`"),
                            ((200, b'{"predictions": [[1, 2], [3]]}'), "malformed reply")]:
        rest_server.canned = canned
        with pytest.raises(AigcError, match=message):
            client.generate_images(np.zeros((2, 8), np.float32))

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AigcError, match="cannot reach TF Serving at http://127.0.0.1:.*(refused|Connection)"):
        RestClient(f"127.0.0.1:{port}", timeout=5).generate_text(["hello"])


@pytest.mark.slow
def test_grpc_client_builds_predict_requests_and_reads_tensor_protos(saved_models, grpc_server):
    client = GrpcClient(grpc_server.target)
    noise = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    images = client.generate_images(noise)
    request = grpc_server.requests[-1]
    assert (request.model_spec.name, request.model_spec.signature_name) == ("gan", "serving_default")
    assert request.inputs["noise"].dtype == tf.float32.as_datatype_enum
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["noise"]), noise)
    np.testing.assert_allclose(images, _direct(saved_models, "gan", noise=tf.constant(noise))["images"], atol=1e-6)

    texts = client.generate_text(PROMPTS, version=1)
    assert grpc_server.requests[-1].model_spec.version.value == 1
    sent = grpc_server.requests[-1].inputs  # every control once per prompt, or batching refuses the request
    assert set(sent) == {"prompts", "max_new_tokens", "temperature", "top_k", "top_p", "seed"}
    assert all(tf.make_ndarray(sent[name]).shape == (len(PROMPTS),) for name in sent)
    assert tf.make_ndarray(sent["temperature"]).tolist() == [0.0, 0.0]  # the signature's default, from metadata
    tokens = client.generate_tokens([[50256, 464], [50256, 464, 3290, 318]], max_new_tokens=3)
    assert [len(t) for t in tokens] == [5, 7] and tokens[1][:4] == [50256, 464, 3290, 318]
    expected = _direct(saved_models, "gpt2", prompts=tf.constant(PROMPTS))["text"]
    assert texts == [t.decode("utf-8", "replace") for t in expected]
    assert client.signature_inputs("vae_decoder") == {"latent": {"dtype": "float32", "shape": [None, 2]}}
    with pytest.raises(AigcError, match="NOT_FOUND"):
        client.decode(np.zeros((1, 2), np.float32), model="missing")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AigcError, match="cannot reach TF Serving"):
        GrpcClient(f"127.0.0.1:{port}", timeout=5).generate_text(["hello"])


@pytest.mark.slow
def test_predict_command_reads_the_models_kind_from_metadata(rest_server, grpc_server, tmp_path):
    png = tmp_path / "served.png"
    done = _cli("serving", "predict", "--url", rest_server.url, "--model", "gan", "--num", "4", "--out", str(png))
    assert done.returncode == 0, done.stderr[-1500:]
    assert png.stat().st_size > 0 and str(png) in done.stderr
    done = _cli("serving", "predict", "--grpc", grpc_server.target, "--model", "gpt2", "--prompt", PROMPTS[0])
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.startswith(PROMPTS[0])
    seeded = [_cli("serving", "predict", "--url", rest_server.url, "--model", "gpt2", "--signature", "sample",
                   "--prompt", "hello", "--seed", "11", "--temperature", "2", "--max-new-tokens", "5") for _ in "ab"]
    assert seeded[0].returncode == 0 and seeded[0].stdout == seeded[1].stdout
    done = _cli("serving", "predict", "--url", rest_server.url, "--model", "gpt2", "--prompt", "hi", "--top-p", "0")
    assert done.returncode == 2 and "top_p must be in (0, 1]" in done.stderr
    done = _cli("serving", "predict", "--url", rest_server.url, "--model", "vae_encoder")
    assert done.returncode == 2 and "knows noise (GAN), latent (VAE decoder)" in done.stderr


def test_check_fails_on_a_config_that_lists_a_model_with_no_versions(tmp_path, capsys):
    from aigc_tf.cli import main

    _fake_version(tmp_path, "gan", 1)  # an empty saved_model.pb: parses, but has no `serve` MetaGraph
    _fake_version(tmp_path, "ghost", 1)
    write_models_config(tmp_path)
    (tmp_path / "ghost" / "1" / "saved_model.pb").unlink()
    _fake_version(tmp_path, "extra", 1)
    assert main(["serving", "check", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "error: it lists ghost with no version on disk" in out
    assert "note: extra is not in it" in out
    assert "no MetaGraph tagged 'serve'" in out


def test_batching_parameters_are_tf_servings_text_proto_with_sizes_up_to_the_max(tmp_path):

    from aigc_tf.serving.model_config import BATCHING_FILE, serving_command, write_batching_parameters

    from aigc_tf.serving.batching import parse_batching_parameters

    path = write_batching_parameters(tmp_path)
    assert path == tmp_path / BATCHING_FILE
    parameters = parse_batching_parameters(path.read_text())
    # Batches of at most 16 padded to a power of two; requests of up to 64 prompts split into them, not refused; the
    # server requires the last allowed size to equal max_batch_size.
    assert parameters.allowed_batch_sizes == (1, 2, 4, 8, 16, 64) and parameters.max_batch_size == 64
    assert parameters.enable_large_batch_splitting and parameters.max_execution_batch_size == 16
    assert parameters.pad_variable_length_inputs
    text = write_batching_parameters(tmp_path, max_batch_size=12, max_execution_batch_size=12).read_text()
    assert parse_batching_parameters(text).allowed_batch_sizes == (1, 2, 4, 8, 12)
    with pytest.raises(AigcError, match="max_execution_batch_size <= max_batch_size"):
        write_batching_parameters(tmp_path, max_batch_size=8, max_execution_batch_size=16)
    command = serving_command(tmp_path, xla=True, batching=True)
    assert "--enable_batching --batching_parameters_file=/models/batching_parameters.txt" in command
    assert "--xla_cpu_compilation_enabled=true" in command
    assert "--xla_cpu" not in serving_command(tmp_path)


@pytest.mark.slow
def test_every_export_carries_warmup_requests_the_server_can_parse(saved_models):
    from tensorflow_serving.apis import prediction_log_pb2

    from aigc_tf.serving.warmup import WARMUP_FILE, read_warmup

    for export in version_dirs(saved_models):
        records = list(tf.data.TFRecordDataset(str(export / WARMUP_FILE)).as_numpy_iterator())
        logs = [prediction_log_pb2.PredictionLog.FromString(r) for r in records]
        assert logs and all(log.WhichOneof("log_type") == "predict_log" for log in logs)
        signatures = set(read_meta_graph(export).signature_def) - {"__saved_model_init_op"}
        assert {r.model_spec.signature_name for r in read_warmup(export)} == signatures
    gpt2 = [r for r in read_warmup(version_dirs(saved_models / "gpt2")[0]) if r.model_spec.signature_name == "sample"]
    assert [sorted(r.inputs) for r in gpt2] == [["prompts"], sorted(["prompts", "max_new_tokens", "temperature",
                                                                        "top_k", "top_p", "seed"])]


def test_the_per_release_op_table_names_the_releases_that_lack_an_op():
    from aigc_tf.serving.server_ops import servers_covering

    table = json.loads((Path(aigc_tf.serving.__file__).parent / "server_ops.json").read_text())
    assert {r["tf_text"] for name, r in table["releases"].items() if name.startswith("2.1")} == {"2.12.1"}
    covered = servers_covering(["RegexSplitWithOffsets"])
    assert covered["missing"] == {} and "2.16.1" in covered["covered"]
    lacking = servers_covering(["RegexSplitWithOffsets", "NotARealTextOp"])
    assert lacking["covered"] == [] and lacking["missing"]["2.19.1"] == ["NotARealTextOp"]


def test_the_client_sends_the_exports_generation_controls_in_their_dtypes():
    from aigc_tf.text.export import CONTROLS
    from aigc_tf.serving.client import TEXT_CONTROLS

    assert {name: np.dtype(dtype) for name, dtype in TEXT_CONTROLS.items()} == {
        name: np.dtype(dtype.as_numpy_dtype) for name, (dtype, _) in CONTROLS.items()}


def test_the_printed_serving_command_asks_for_xla_only_when_the_newest_export_needs_it(tmp_path):
    from aigc_tf.serving.layout import METADATA_FILE
    from aigc_tf.serving.model_config import needs_xla_flag

    for version, xla in ((1, True), (2, False)):
        _fake_version(tmp_path, "gpt2", version)
        (tmp_path / "gpt2" / str(version) / METADATA_FILE).parent.mkdir(exist_ok=True)
        (tmp_path / "gpt2" / str(version) / METADATA_FILE).write_text(json.dumps({"xla": xla}))
    assert not needs_xla_flag(tmp_path)  # version 2, the one served, runs without XLA
    _fake_version(tmp_path, "gpt2", 3)
    (tmp_path / "gpt2" / "3" / METADATA_FILE).parent.mkdir(exist_ok=True)
    (tmp_path / "gpt2" / "3" / METADATA_FILE).write_text(json.dumps({"xla": True}))
    assert needs_xla_flag(tmp_path)


def test_the_check_sees_every_integer_folder_as_the_server_does_models_config_only_complete_ones(tmp_path):
    from aigc_tf.serving.layout import model_folders, versions

    _fake_version(tmp_path, "gan", 1)
    (tmp_path / "gan" / "2").mkdir()  # a version without saved_model.pb: the server tries to load it, and fails
    (tmp_path / "gan" / ".partial-7-0").mkdir()  # an export being written: not a version at all
    assert versions(tmp_path / "gan") == [1] and versions(tmp_path / "gan", complete=False) == [1, 2]
    assert version_dirs(tmp_path) == [tmp_path / "gan" / "2"]  # the newest, as the server would pick it
    assert model_folders(tmp_path) == {"gan": [1]}
