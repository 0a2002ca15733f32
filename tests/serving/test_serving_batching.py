"""TF Serving's batching, as `aigc_tf.serving.batching` models it from the server's source, and the GPT-2 export under
it: every batched answer equals the same request answered alone."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from aigc_tf.serving.batching import (BatchingParameters, BatchingSession, ServingStatus, input_size, merge_inputs,
                                      pad_to, parse_batching_parameters, split_sizes)
from aigc_tf.serving.model_config import batching_parameters

ROOT = Path(__file__).resolve().parents[2]


def test_the_rules_follow_the_servers_source():
    with pytest.raises(ServingStatus, match="equal 0th-dimension size"):  # a control sent once beside 3 prompts
        input_size({"prompts": np.array(["a", "b", "c"], object), "temperature": np.array([0.5])})
    with pytest.raises(ServingStatus, match="at least one dimension"):
        input_size({"prompts": np.array("a", object)})
    # AddPadding: past dimension 0, a tensor is padded with its own first element (batching_util.cc).
    assert pad_to(np.array([[7, 1, 2]]), (1, 5)).tolist() == [[7, 1, 2, 7, 7]]
    parameters = BatchingParameters(max_batch_size=8, allowed_batch_sizes=(1, 2, 4, 8), pad_variable_length_inputs=True)
    merged, padding = merge_inputs([{"ids": np.array([[5, 6]])}, {"ids": np.array([[1, 2, 3, 4], [9, 9, 9, 9]])}],
                                   parameters)
    assert padding == 1  # 3 rows padded up to the allowed 4 with the last request's first row
    assert merged["ids"].tolist() == [[5, 6, 5, 5], [1, 2, 3, 4], [9, 9, 9, 9], [1, 2, 3, 4]]
    strict = BatchingParameters(max_batch_size=8, allowed_batch_sizes=(1, 2, 4, 8))
    with pytest.raises(ServingStatus, match="FAILED_PRECONDITION.*different shapes"):
        merge_inputs([{"ids": np.zeros((1, 2))}, {"ids": np.zeros((1, 3))}], strict)
    assert split_sizes(20, 3, 16) == [3, 16, 1] and split_sizes(5, 0, 16) == [5]
    with pytest.raises(ServingStatus, match="Last entry in allowed_batch_sizes must match max_batch_size"):
        BatchingParameters(max_batch_size=16, allowed_batch_sizes=(1, 2, 4, 8))


def _mask_counting_model(feeds):
    """The hazard the export's design removes: a model that reads a padding mask (1 on prompt tokens)."""
    return {"prompt_tokens": feeds["padding_mask"].sum(axis=1)}


def test_the_model_reproduces_the_padding_hazard_of_a_mask_input():
    """A request merged with a wider one is padded with its mask's first element, 1: the prompt grows. The model must
    show this (it is how the server behaves), or it could not prove the export safe."""
    parameters = BatchingParameters(max_batch_size=4, allowed_batch_sizes=(1, 2, 4), pad_variable_length_inputs=True)
    short, long = {"padding_mask": np.array([[1, 1, 1]])}, {"padding_mask": np.ones((1, 7), int)}
    merged, _ = merge_inputs([short, long], parameters)
    assert _mask_counting_model(short)["prompt_tokens"].tolist() == [3]
    assert _mask_counting_model(merged)["prompt_tokens"].tolist() == [7, 7]  # batched, the short prompt grew


def test_concurrent_clients_get_their_own_rows_splitting_and_refusals():
    parameters = parse_batching_parameters(batching_parameters(max_batch_size=64, max_execution_batch_size=16))

    def model(feeds):  # each row's answer depends on that row only; the batch size must not exceed 16
        assert len(feeds["x"]) <= 16
        return {"y": feeds["x"].sum(axis=1) * 2 + feeds["scale"]}

    session = BatchingSession(model, parameters)
    rng = np.random.default_rng(0)
    requests = [{"x": rng.integers(0, 9, (n, 3)), "scale": rng.integers(0, 5, n)} for n in rng.integers(1, 41, 60)]
    answers = [None] * len(requests)

    def client(indices):
        for i in indices:
            answers[i] = session.run(requests[i])["y"]

    threads = [threading.Thread(target=client, args=(range(c, len(requests), 16),)) for c in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for request, answer in zip(requests, answers):
        assert answer.tolist() == (request["x"].sum(axis=1) * 2 + request["scale"]).tolist()
    assert max(session.batches) == 16 and set(session.batches) <= {1, 2, 4, 8, 16}
    with pytest.raises(ServingStatus, match="Task size 65 is larger than maximum input batch size 64"):
        session.run({"x": np.zeros((65, 3)), "scale": np.zeros(65)})

    def failing(feeds):
        raise ValueError("the model refused this batch")

    broken = BatchingSession(failing, parameters, num_threads=1)
    with pytest.raises(ServingStatus, match="the model refused this batch"):
        broken.run({"x": np.zeros((2, 3)), "scale": np.zeros(2)})
    assert session.run({"x": np.ones((1, 3), int), "scale": np.zeros(1, int)})["y"].tolist() == [6]  # still serving
    session.close()
    broken.close()


@pytest.mark.slow
def test_batched_answers_equal_answers_alone_for_the_gpt2_export(tiny_text_export):
    """A seeded mix (mixed prompt lengths with junk past each prompt, text and token signatures, greedy and sampled
    rows, requests split across batches) answered alone and by 1 / 4 / 16 clients under the server's batching."""
    _, export, _ = tiny_text_export
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_batching.py"), "--worker", str(export),
                           "--requests", "24", "--seed", "3"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["alone_errors"] == 0 and report["differences"] == 0, report
    assert "generate_tokens" in report["by_signature"] and {"serving_default", "sample"} & set(report["by_signature"])
    assert report["clients"]["16"]["mean_padded_batch"] > 1  # requests really shared batches
