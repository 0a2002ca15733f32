"""Streaming generation: the pieces `stream` yields join to exactly the text `generate` returns."""

import queue
import threading

import pytest

from aigc_tf import AigcError
from aigc_tf.cli import main
from aigc_tf.text.sample import _pieces, generate, stream

PROMPT = "It is a beautiful day"


@pytest.mark.parametrize("sampler, kwargs", [
    ("greedy", {}),
    ("top_p", dict(top_p=0.9, seed=3)),
    ("top_k", dict(top_k=20, seed=5, temperature=1.3)),
    ("random", dict(seed=1, temperature=1.5)),
    ("top_p", dict(top_p=0.95, seed=2, repetition_penalty=1.3, no_repeat_ngram_size=2)),
    ("greedy", dict(no_repeat_ngram_size=3)),
], ids=["greedy", "top_p", "top_k", "random", "top_p+repetition_controls", "greedy+no_repeat"])
def test_streamed_text_equals_the_generated_text(tiny_text_model, sampler, kwargs):
    (expected,), = generate(tiny_text_model, [PROMPT], sampler, max_length=28, **kwargs)
    pieces = list(stream(tiny_text_model, PROMPT, sampler, max_length=28, **kwargs))
    assert "".join(pieces) == expected
    assert pieces[0] == PROMPT  # the prompt first, then the new tokens one piece at a time
    assert len(pieces) > 10 and all(pieces)


def test_sampled_streams_follow_the_seed(tiny_text_model):
    def text(seed):
        return "".join(stream(tiny_text_model, "hello", "random", max_length=20, seed=seed, temperature=1.5))

    assert text(1) == text(1) != text(2)


def test_beam_search_and_bad_arguments_fail_before_any_decoding(tiny_text_model):
    with pytest.raises(AigcError, match="beam search cannot be streamed"):
        stream(tiny_text_model, PROMPT, "beam")
    with pytest.raises(AigcError, match="leaves no room to generate"):
        stream(tiny_text_model, "word " * 40, max_length=20)
    with pytest.raises(AigcError, match="takes one prompt"):
        stream(tiny_text_model, [PROMPT, "hello"])
    with pytest.raises(AigcError, match=r"`top_p` must be in \(0, 1\]"):
        stream(tiny_text_model, PROMPT, "top_p", top_p=1.5)


def test_an_exception_in_the_decoding_thread_reaches_the_caller(tiny_text_model, monkeypatch):
    import keras_hub

    def broken(self, *args, **kwargs):
        raise ValueError("decoding broke")

    monkeypatch.setattr(keras_hub.models.GPT2CausalLM, "generate", broken)
    pieces = stream(tiny_text_model, PROMPT, "top_p", max_length=20)
    assert next(pieces) == PROMPT
    with pytest.raises(ValueError, match="decoding broke"):
        next(pieces)
    assert not [t for t in threading.enumerate() if t.name == "aigc_tf-stream"]


def test_closing_the_stream_early_stops_the_decoding_thread(tiny_text_model):
    pieces = stream(tiny_text_model, PROMPT, "top_p", max_length=60, seed=1)
    first, second = next(pieces), next(pieces)
    pieces.close()
    assert first == PROMPT and second
    assert not [t for t in threading.enumerate() if t.name == "aigc_tf-stream"]


def test_a_character_split_across_tokens_is_held_back_until_complete():
    """GPT-2's byte-level BPE cuts an emoji's four UTF-8 bytes over two tokens: no piece may show U+FFFD."""
    from aigc_tf.text.tokenizer import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    text = "héllo 😀 wörld"
    ids = [int(t) for t in tokenizer(text)]
    assert "\ufffd" in tokenizer.detokenize([ids[:4]])[0]  # the emoji's first token alone is half a character
    events = queue.Queue()

    def decode():  # what the sampler reports: each token at the next step (index), then the finished text
        for position, token in enumerate(ids, start=1):
            events.put(("token", token, position + 1))
        events.put(("done", text))

    pieces = list(_pieces(decode, events, threading.Event(), tokenizer, [], prompt_length=1))
    assert pieces == ["h", "é", "llo", " ", "😀", " w", "ör", "ld"]  # " \xf0\x9f\x98" gives " ", then "\x80" "😀"


def test_cli_stream_prints_what_generate_prints(tiny_text_run, capsys):
    flags = ["text", "generate", "--run", str(tiny_text_run[0]), "--prompt", "hello", "--sampler", "top_p",
             "--seed", "3", "--max-length", "20", "--no-repeat-ngram", "2"]
    assert main(flags) == 0
    printed = capsys.readouterr().out
    assert main(flags + ["--stream"]) == 0
    assert capsys.readouterr().out == printed


@pytest.mark.parametrize("flags, message", [
    (["--sampler", "beam"], "beam search cannot be streamed"),
    (["--json", "--num-return-sequences", "2", "--sampler", "top_k"], "drop --json, --num-return-sequences"),
    (["--precision", "bf16"], "drop --precision bf16"),
    (["--prompt", "another"], "--stream takes one prompt, got 2"),
])
def test_cli_stream_conflicts_are_one_line_errors(tiny_text_run, capsys, flags, message):
    assert main(["text", "generate", "--run", str(tiny_text_run[0]), "--prompt", "hi", "--stream", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aigc-tf: error:") and message in err[0], err
