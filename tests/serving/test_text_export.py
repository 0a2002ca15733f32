"""GPT-2's export as a stock TF Serving runs it: XLA off, requests built by the server's rules, per-request controls."""

import json
import subprocess
import sys

import numpy as np
import pytest

from aigc_tf.serving.layout import METADATA_FILE
from aigc_tf.text.export import export_text
from aigc_tf.serving.check import signature_op_types
from stock_server import serve

pytestmark = pytest.mark.slow
PROMPTS = ["It is a beautiful day", "hello"]
CONTEXT = 64  # the tiny text run's max_sequence_length (conftest.tiny_text_run)


@pytest.fixture(scope="module")
def text_export(tiny_text_export):
    """Shared with tests/system/test_bad_input.py and tests/serving/test_serving.py (one export per session)."""
    return tiny_text_export


def _greedy(run_dir, prompts, new_tokens, precision="fp32"):
    """`aigc-tf text generate --sampler greedy` per prompt, each with room for `new_tokens` more."""
    from aigc_tf.text.sample import generate, prompt_lengths
    from aigc_tf.text.models import load_text_run

    causal_lm, _ = load_text_run(run_dir)
    return [generate(causal_lm, [p], "greedy", max_length=n + new_tokens, precision=precision)[0][0]
            for p, n in zip(prompts, prompt_lengths(causal_lm, prompts))]


def test_greedy_default_on_a_stock_server_equals_the_cli_greedy_text(text_export):
    run_dir, export, new_tokens = text_export
    (reply,) = serve(export, [{"inputs": {"prompts": PROMPTS}}])  # controls left out: the signature's defaults
    assert reply["text"] == _greedy(run_dir, PROMPTS, new_tokens)


def test_per_request_controls_are_applied_validated_and_do_not_stop_the_server(text_export):
    _, export, _ = text_export
    hello = {"prompts": ["hello"]}
    requests = {
        "greedy": {"inputs": hello},
        "seed7": {"signature": "sample", "inputs": {**hello, "seed": [7]}},
        "seed7_again": {"signature": "sample", "inputs": {**hello, "seed": [7]}},
        "seed8": {"signature": "sample", "inputs": {**hello, "seed": [8]}},
        "cold": {"signature": "sample", "inputs": {**hello, "temperature": [1e-4], "seed": [1]}},
        "top1": {"signature": "sample", "inputs": {**hello, "top_k": [1], "seed": [2]}},
        "hot": {"signature": "sample", "inputs": {"prompts": ["hello"] * 4, "temperature": [3.0],
                                                  "seed": [1, 2, 3, 4]}},
        "per_row": {"inputs": {"prompts": ["hello", "hello"], "temperature": [0.0, 3.0], "seed": [5, 5]}},
        "budget": {"signature": "generate_tokens",
                   "inputs": {"token_ids": [[50256, 31373, 7], [50256, 464, 3290]],
                              "lengths": [2, 3], "max_new_tokens": [2, 5]}},
        "bad_temperature": {"inputs": {**hello, "temperature": [-1.0]}},
        "bad_top_p": {"signature": "sample", "inputs": {**hello, "top_p": [0.0]}},
        "bad_top_k": {"signature": "sample", "inputs": {**hello, "top_k": [-2]}},
        "bad_budget": {"inputs": {**hello, "max_new_tokens": [0]}},
        "bad_count": {"inputs": {"prompts": ["a", "b"], "temperature": [1.0, 1.0, 1.0]}},
        "missing_prompts": {"inputs": {"temperature": [1.0]}},
        "unknown_input": {"inputs": {**hello, "beam_width": [4]}},
        "after_errors": {"inputs": hello},
    }
    replies = dict(zip(requests, serve(export, list(requests.values()))))
    text = {name: reply.get("text") for name, reply in replies.items()}
    greedy = text["greedy"][0]
    assert text["seed7"] == text["seed7_again"]  # same seed, same text
    assert text["seed7"] != text["seed8"]
    assert text["cold"] == [greedy] and text["top1"] == [greedy]  # T -> 0 and k = 1 are the argmax
    assert len(set(text["hot"])) > 1 and greedy not in text["hot"]  # a flat distribution wanders off
    assert text["per_row"][0] == greedy and text["per_row"][1] != greedy  # controls apply per prompt
    ids, lengths = np.array(replies["budget"]["token_ids"]), np.array(replies["budget"]["lengths"])
    assert ids.shape == (2, CONTEXT)  # one width whatever the request: batching never changes a reply's shape
    assert (lengths >= [3, 4]).all() and (lengths <= [4, 8]).all()  # each row within its own max_new_tokens
    assert ids[0, :2].tolist() == [50256, 31373] and ids[1, :3].tolist() == [50256, 464, 3290]
    assert not ids[0, lengths[0]:].any() and not ids[1, lengths[1]:].any()  # zeros after each row
    errors = {name: reply.get("error", "") for name, reply in replies.items() if name.startswith(("bad", "miss",
                                                                                                   "unknown"))}
    assert "temperature must be >= 0" in errors["bad_temperature"]
    assert "top_p must be in (0, 1]" in errors["bad_top_p"]
    assert "top_k must be >= 0" in errors["bad_top_k"]
    assert "max_new_tokens must be in [1," in errors["bad_budget"]
    assert "one value, or one per prompt" in errors["bad_count"]
    assert "Signature input alias: prompts" in errors["missing_prompts"]  # no default: GetInputValues refuses
    assert "not found in request and no default value provided" in errors["missing_prompts"]
    assert "Inputs contains invalid name" in errors["unknown_input"]
    assert all(e.startswith("InvalidArgument") for e in errors.values()), errors
    assert text["after_errors"] == [greedy]  # the server keeps serving


def test_token_signature_needs_core_tensorflow_only(text_export):
    _, export, _ = text_export
    token_ops = sorted(signature_op_types(export, "generate_tokens"))
    string_ops = sorted(signature_op_types(export, "serving_default"))
    script = f"""if True:
        import json, tensorflow as tf
        from tensorflow.python.framework import op_def_registry
        missing = lambda ops: [op for op in ops if op_def_registry.get(op) is None]
        print(json.dumps({{"tokens": missing({token_ops!r}), "strings": missing({string_ops!r})}}))
    """
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    assert report["tokens"] == []
    assert "RegexSplitWithOffsets" in report["strings"]  # the check can tell: the string path needs TF Text


def test_sampling_draws_anew_without_a_seed_and_edge_prompts_are_handled(text_export):
    _, export, new_tokens = text_export
    sample = {"signature": "sample", "inputs": {"prompts": ["hello"] * 3}}
    edge = {"inputs": {"prompts": ["", "mixed", "lengths in one batch", "caf\u00e9 \U0001f433"]}}
    too_many_tokens = {"inputs": {"prompts": ["word " * 400]}}
    too_many_bytes = {"inputs": {"prompts": ["x" * 5000]}}
    a, b, edged, tokens, size, after = serve(export, [sample, sample, edge, too_many_tokens, too_many_bytes, edge])
    assert a["text"] != b["text"] and len(set(a["text"])) > 1
    assert all(t.startswith("hello") for t in a["text"] + b["text"])
    assert all(len(t) > 0 for t in edged["text"]) and edged["text"][3].startswith("caf\u00e9 \U0001f433")
    assert f"a prompt may have at most {CONTEXT - 1} tokens" in tokens["error"]
    assert "a prompt may have at most 4096 bytes" in size["error"]
    assert after == edged  # refused requests leave the server serving


def test_xla_export_needs_the_servers_flag_and_then_gives_the_same_text(text_export, tmp_path):
    run_dir, stock_export, new_tokens = text_export
    export = export_text(run_dir, tmp_path / "gpt2", max_new_tokens=new_tokens, xla=True, precision="fp32")
    assert json.loads((export / METADATA_FILE).read_text())["xla"] is True
    stock = subprocess.run([sys.executable, "-m", "aigc_tf", "serving", "check", str(export)],
                           capture_output=True, text=True, timeout=600)
    assert stock.returncode == 2
    errors = [line for line in stock.stdout.splitlines() if "error:" in line]
    assert len(errors) == 3 and all("--xla_cpu_compilation_enabled=true" in line for line in errors), stock.stdout
    assert "will not load this version at all" in stock.stdout  # the warm-up replay fails the whole version
    flagged = subprocess.run([sys.executable, "-m", "aigc_tf", "serving", "check", "--xla", str(export)],
                             capture_output=True, text=True, timeout=600)
    assert flagged.returncode == 0, flagged.stdout + flagged.stderr[-2000:]
    request = [{"inputs": {"prompts": PROMPTS}}]
    assert serve(export, request, xla=True) == serve(stock_export, request)


def test_bf16_export_runs_on_a_stock_server(text_export, tmp_path):
    run_dir, _, new_tokens = text_export
    export = export_text(run_dir, tmp_path / "gpt2", max_new_tokens=new_tokens, precision="bf16")
    assert json.loads((export / METADATA_FILE).read_text())["precision"] == "bf16"
    (reply,) = serve(export, [{"inputs": {"prompts": PROMPTS}}])
    assert [t.startswith(p) and len(t) > len(p) for t, p in zip(reply["text"], PROMPTS)] == [True, True]
