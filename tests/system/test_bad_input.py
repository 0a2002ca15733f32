"""Bad input, collected in one place: every case must end in one clear line (exit status 2), never a traceback,
and the serving signatures must answer or refuse without crashing the server.

The README's "Reliability and scale" section quotes the number of cases here: PARSER_CASES + HANDLER_CASES +
LIBRARY_CASES + the serving cases + the safe-mode case.
"""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from aigc_tf import AigcError
from aigc_tf.cli import build_parser, main

# Rejected by argparse before anything is imported or loaded: (argv, what the error line must say).
PARSER_CASES = [
    (["gan", "train", "--epochs", "0"], "must be a positive integer"),
    (["gan", "train", "--steps", "-3"], "must be a positive integer"),
    (["gan", "train", "--batch-size", "0"], "must be a positive integer"),
    (["gan", "train", "--latent-dim", "-1"], "must be a positive integer"),
    (["gan", "train", "--learning-rate", "0"], "must be > 0"),
    (["gan", "train", "--label-smoothing", "1.5"], "must be in [0, 1)"),
    (["gan", "train", "--seed", "-1"], "must be >= 0"),
    (["gan", "train", "--batch-size", "ten"], "invalid positive_int value"),
    (["gan", "train", "--dataset", "cifar10"], "invalid choice"),
    (["gan", "train", "--strategy", "horovod"], "invalid choice"),
    (["gan", "train", "--epochs", "2", "--steps", "3"], "not allowed with argument"),
    (["gan", "sample", "--num", "0"], "must be a positive integer"),
    (["gan", "sample", "--digit", "11"], "invalid choice"),
    (["vae", "train", "--latent-dim", "0"], "must be a positive integer"),
    (["vae", "train", "--architecture", "resnet"], "invalid choice"),
    (["vae", "train", "--learning-rate=-1e-3"], "must be > 0"),
    (["text", "train", "--sequence-length", "0"], "must be a positive integer"),
    (["text", "train", "--lora-rank", "0"], "must be a positive integer"),
    (["text", "train", "--steps-per-epoch", "-2"], "must be a positive integer"),
    (["text", "train", "--strategy", "tpu"], "invalid choice"),
    (["text", "eval", "--max-sequences", "0"], "must be a positive integer"),
    (["text", "generate", "--sampler", "nucleus"], "invalid choice"),
    (["text", "generate", "--temperature", "0"], "must be > 0"),
    (["text", "generate", "--temperature", "-0.5"], "must be > 0"),
    (["text", "generate", "--top-k", "0"], "must be a positive integer"),
    (["text", "generate", "--num-beams", "0"], "must be a positive integer"),
    (["text", "generate", "--max-length", "-1"], "must be a positive integer"),
    (["text", "generate", "--num-return-sequences", "0"], "must be a positive integer"),
    (["text", "export", "--top-p", "0"], "must be in (0, 1]"),
    (["text", "export", "--top-p", "1.5"], "must be in (0, 1]"),
    (["text", "export", "--temperature", "0"], "must be > 0"),
    (["text", "export", "--max-new-tokens", "0"], "must be a positive integer"),
    (["text", "export", "--precision", "int4"], "invalid choice"),
]


@pytest.mark.parametrize("argv,message", PARSER_CASES, ids=lambda c: " ".join(c) if isinstance(c, list) else None)
def test_bad_flags_are_one_line_parser_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"aigc-tf {argv[0]} {argv[1]}: error:") and message in last, last


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aigc-tf: error:"), err
    return err[0]


# Valid flags, bad values that only the command can judge (it needs the run, the model or the data).
HANDLER_CASES = [
    (["--prompt", "hi", "--sampler", "top_p", "--top-p", "1.5"], "top-p must be in (0, 1]"),
    (["--prompt", "hi", "--sampler", "top_p", "--top-p", "0"], "top-p must be in (0, 1]"),
    ([], "give a --prompt"),
    (["--prompt", "word " * 80], "leaves no room to generate"),
    (["--prompt", "hi", "--max-length", "100000"], "exceeds the model's context"),
    (["--prompt", "hi", "--num-return-sequences", "2"], "greedy decoding is deterministic"),
    (["--prompt", "hi", "--sampler", "beam", "--num-beams", "2", "--num-return-sequences", "3"], "at most --num-beams"),
    (["--prompt-file", "{tmp}/latin1.txt"], "is not UTF-8 text"),
    (["--prompt-file", "{tmp}/missing.txt"], "No such file"),
]


@pytest.mark.parametrize("flags,message", HANDLER_CASES, ids=[c[1] for c in HANDLER_CASES])
def test_bad_generate_input_is_one_line(flags, message, tiny_text_run, tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    flags = [f.format(tmp=tmp_path) for f in flags]
    assert message in _one_line_error(["text", "generate", "--run", str(tiny_text_run[0]), *flags], capsys)


def _corpus(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# Bad data and environments, through the library entry points the commands call.
LIBRARY_CASES = [
    ("text", lambda tmp: {"corpus": _corpus(tmp, "empty.txt", b"")}, "holds no text"),
    ("text", lambda tmp: {"corpus": _corpus(tmp, "short.txt", b"Too short for one window.")}, "too few for one"),
    ("text", lambda tmp: {"corpus": _corpus(tmp, "latin1.txt", "na\xefve".encode("latin-1") * 50)}, "not UTF-8"),
    ("text", lambda tmp: {"corpus": str(tmp / "no_such_corpus.txt")}, "no such file or folder"),
    ("gan", lambda tmp: {"batch_size": 100_000}, "larger than the"),
    ("vae", lambda tmp: {"batch_size": 100_000}, "larger than the"),
]


@pytest.mark.parametrize("family,overrides,message", LIBRARY_CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in LIBRARY_CASES])
def test_bad_training_data_is_one_line(family, overrides, message, tmp_path, mnist_train):
    from importlib import import_module

    from aigc_tf.config import CONFIGS

    config = CONFIGS[family].tiny(**overrides(tmp_path))
    with pytest.raises(AigcError, match=message) as info:
        getattr(import_module(f"aigc_tf.{family}.train"), f"train_{family}")(config, tmp_path / "run", verbose=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("tf_config,message", [
    (None, "needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is not valid"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "non-empty list"),
])
def test_bad_cluster_settings_are_one_line(tf_config, message, tmp_path, monkeypatch, capsys):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert message in _one_line_error(["gan", "train", "--out", str(tmp_path / "run"), "--strategy", "multiworker",
                                       "--steps", "1"], capsys)
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_and_source_are_one_line(capsys):
    assert "unknown dataset" in _one_line_error(["data", "fetch", "cifar10"], capsys)
    assert "has no offline source" in _one_line_error(["data", "fetch", "mnist", "--source", "ftp"], capsys)


@pytest.mark.slow
def test_serving_signatures_answer_bad_prompts_and_refuse_bad_tensors(tiny_text_export):
    """In a fresh process that imports only TensorFlow (and TF Text), like a model server."""
    _, export, _ = tiny_text_export
    script = f"""
        import json, tensorflow as tf, tensorflow_text  # noqa: F401
        model = tf.saved_model.load({str(export)!r})
        greedy = model.serving_default  # the endpoint keeps the controls' defaults (`.signatures[...]` does not)
        text = lambda prompts: [t.decode("utf-8") for t in greedy(prompts=tf.constant(prompts))["text"].numpy()]
        report = {{}}
        report["invalid_utf8"] = text([b"caf\\xe9 \\xff\\xfe", b"ok"])
        report["empty"] = text([""])
        try:
            text(["word " * 500])
            report["long"] = "accepted"
        except tf.errors.InvalidArgumentError as err:
            report["long"] = err.message
        batch = ["a", "a much longer prompt about the State of the Union", ""]
        report["mixed"] = text(batch) == [text([p])[0] for p in batch]
        refused = {{}}
        bad = {{"int prompts": lambda: greedy(prompts=tf.constant([1, 2])),
                "scalar prompt": lambda: greedy(prompts=tf.constant("hello")),
                "matrix of prompts": lambda: greedy(prompts=tf.constant([["a", "b"]])),
                "float token ids": lambda: model.generate_tokens(
                    token_ids=tf.constant([[50256.0]]), lengths=tf.constant([1], tf.int32)),
                "1-D token ids": lambda: model.generate_tokens(
                    token_ids=tf.constant([50256]), lengths=tf.constant([1])),
                "length past the ids": lambda: model.generate_tokens(
                    token_ids=tf.constant([[50256, 464]]), lengths=tf.constant([3]))}}
        for name, call in bad.items():
            try:
                call()
                refused[name] = "accepted"
            except (TypeError, ValueError, tf.errors.InvalidArgumentError) as err:
                refused[name] = type(err).__name__
        report["refused"] = refused
        print(json.dumps(report))
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["invalid_utf8"][0].startswith("caf\ufffd \ufffd\ufffd")  # replaced, not crashed
    assert report["invalid_utf8"][1].startswith("ok")
    assert report["empty"][0] and "a prompt may have at most 63 tokens" in report["long"]  # the limit, named
    assert report["mixed"] is True  # padding never leaks between prompts of one batch
    assert all(v != "accepted" for v in report["refused"].values()), report["refused"]


def test_presets_load_in_safe_mode_even_when_unsafe_loading_was_enabled(tiny_text_run, tmp_path):
    """A preset whose config carries a serialized Python lambda is refused, although the process had switched
    Keras' safe mode off globally."""
    import keras

    from aigc_tf.text.models import load_preset

    preset = tmp_path / "preset"
    shutil.copytree(tiny_text_run[0] / "preset", preset)
    config = json.loads((preset / "config.json").read_text())
    config["config"]["dtype"] = keras.saving.serialize_keras_object(lambda: print("code from a stranger"))
    (preset / "config.json").write_text(json.dumps(config))
    keras.config.enable_unsafe_deserialization()
    try:
        with pytest.raises(AigcError, match="holds Python code .* safe mode refuses"):
            load_preset(str(preset))
    finally:
        from keras.src.saving.serialization_lib import SafeModeScope

        SafeModeScope(None).__enter__()  # back to the default (None: safe unless a loader says otherwise)
