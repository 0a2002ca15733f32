"""`text generate` and `text export` straight from a keras-hub preset, without a training run."""

import json

import pytest

from aigc_tf import AigcError
from aigc_tf.cli import build_parser, main

PROMPTS = ["It is a beautiful day", "hello"]


def _printed(argv, capsys) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("flags", [[], ["--sampler", "top_p", "--seed", "4"]], ids=["greedy", "top_p"])
def test_generate_from_a_runs_preset_prints_what_the_run_prints(tiny_text_run, capsys, flags):
    run = tiny_text_run[0]
    common = ["--prompt", "It is a beautiful day", "--prompt", "hello", "--max-length", "24", *flags]
    from_run = _printed(["text", "generate", "--run", str(run), *common], capsys)
    assert _printed(["text", "generate", "--preset", str(run / "preset"), *common], capsys) == from_run
    assert from_run.count("---") == 2


@pytest.mark.parametrize("command", ["generate", "export"])
@pytest.mark.parametrize("flags, message", [
    (["--run", "runs/gpt2", "--preset", "runs/gpt2/preset"], "argument --preset: not allowed with argument --run"),
    ([], "one of the arguments --run --preset is required"),
])
def test_run_and_preset_are_exclusive_and_one_is_required(command, flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["text", command, *flags])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"aigc-tf text {command}: error: {message}"


def test_hub_presets_offline_and_missing_folders_are_one_line_errors(tmp_path, capsys):
    for argv, message in [(["text", "generate", "--preset", "gpt2_base_en", "--prompt", "hi"], "need a network"),
                          (["text", "export", "--preset", str(tmp_path / "nope"), "--to", str(tmp_path / "m")],
                           "holds no config.json")]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_export_needs_a_run_or_a_preset(tmp_path):
    from aigc_tf.text.export import export_text

    with pytest.raises(AigcError, match="give one of the two"):
        export_text(model_dir=tmp_path / "gpt2")
    with pytest.raises(AigcError, match="give one of the two"):
        export_text(tmp_path / "run", tmp_path / "gpt2", preset=str(tmp_path / "preset"))


@pytest.mark.slow
def test_export_from_a_preset_serves_what_the_run_export_serves(tiny_text_export, tmp_path):
    import tensorflow as tf

    from aigc_tf.serving.layout import METADATA_FILE
    from aigc_tf.text.export import export_text

    run_dir, run_export, new_tokens = tiny_text_export
    export = export_text(model_dir=tmp_path / "gpt2", max_new_tokens=new_tokens, precision="fp32",
                         preset=str(run_dir / "preset"))
    metadata = json.loads((export / METADATA_FILE).read_text())
    assert metadata["preset"] == str((run_dir / "preset").resolve()) and "run" not in metadata

    def served(path):
        model = tf.saved_model.load(str(path))  # kept alive while its endpoint runs
        return [t.decode("utf-8") for t in model.serving_default(prompts=tf.constant(PROMPTS))["text"].numpy()]

    texts = served(export)
    assert texts == served(run_export)
    assert texts[0].startswith(PROMPTS[0]) and len(texts[0]) > len(PROMPTS[0])
