import json
import subprocess
import sys
import textwrap

import pytest

from aigc_tf.export import export_text
from aigc_tf.serving.check import signature_op_types

pytestmark = pytest.mark.slow
MAX_LENGTH = 24
PROMPTS = ["It is a beautiful day", "hello"]


@pytest.fixture(scope="module")
def text_export(tiny_text_run, tmp_path_factory):
    run_dir = tiny_text_run[0]
    return run_dir, export_text(run_dir, tmp_path_factory.mktemp("saved_models") / "gpt2", max_length=MAX_LENGTH)


def _fresh(script: str) -> str:
    """Run `script` in a new interpreter that imports only tensorflow and tensorflow_text; returns its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_string_signature_in_a_fresh_process_equals_the_cli_greedy_output(text_export, tmp_path):
    run_dir, export = text_export
    served = json.loads(_fresh(f"""
        import json, sys, tensorflow as tf, tensorflow_text  # noqa: F401 (registers the BPE ops)
        model = tf.saved_model.load({str(export)!r})
        out = model.signatures["serving_default"](prompts=tf.constant({PROMPTS!r}))["text"].numpy()
        assert not [m for m in sys.modules if m.startswith(("aigc_tf", "keras_hub"))]
        print(json.dumps([t.decode("utf-8") for t in out]))
    """))
    cli = subprocess.run([sys.executable, "-m", "aigc_tf", "text", "generate", "--run", str(run_dir), "--sampler",
                          "greedy", "--max-length", str(MAX_LENGTH), "--json"]
                         + [arg for p in PROMPTS for arg in ("--prompt", p)],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert served == [item["texts"][0] for item in json.loads(cli.stdout)]


def test_token_signature_needs_core_tensorflow_only(text_export):
    _, export = text_export
    token_ops = sorted(signature_op_types(export, "generate_tokens"))
    string_ops = sorted(signature_op_types(export, "serving_default"))
    report = json.loads(_fresh(f"""
        import json, tensorflow as tf
        from tensorflow.python.framework import op_def_registry
        missing = lambda ops: [op for op in ops if op_def_registry.get(op) is None]
        print(json.dumps({{"tokens": missing({token_ops!r}), "strings": missing({string_ops!r})}}))
    """))
    assert report["tokens"] == []
    assert "RegexSplitWithOffsets" in report["strings"]  # the check can tell: the string path needs TF Text


def test_sampling_signature_draws_anew_and_edge_prompts_are_handled(text_export):
    _, export = text_export
    out = json.loads(_fresh(f"""
        import json, tensorflow as tf, tensorflow_text  # noqa: F401
        model = tf.saved_model.load({str(export)!r})
        sample = lambda p: [t.decode("utf-8", "replace") for t in
                            model.signatures["sample"](prompts=tf.constant(p))["text"].numpy()]
        greedy = model.signatures["serving_default"]
        edge = greedy(prompts=tf.constant(["", "word " * 200, "mixed", "lengths in one batch"]))["text"].numpy()
        tokens = model.signatures["generate_tokens"](token_ids=tf.constant([[50256, 31373]], tf.int32),
                                                     padding_mask=tf.constant([[1, 1]], tf.int32))
        print(json.dumps({{"a": sample(["hello"] * 3), "b": sample(["hello"] * 3),
                          "edge": [len(t) for t in edge], "long": edge[1].decode()[:30],
                          "token_shape": tokens["token_ids"].shape.as_list(),
                          "token_prefix": tokens["token_ids"].numpy()[0, :2].tolist()}}))
    """))
    assert out["a"] != out["b"] and len(set(out["a"])) > 1
    assert all(t.startswith("hello") for t in out["a"] + out["b"])
    assert all(length > 0 for length in out["edge"])
    assert out["long"].startswith("word word")  # cut to the first max_length - 1 tokens, no crash
    assert out["token_shape"] == [1, MAX_LENGTH] and out["token_prefix"] == [50256, 31373]
