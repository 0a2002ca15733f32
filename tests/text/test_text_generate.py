import pytest

from aigc_tf import AigcError
from aigc_tf.text.sample import generate, make_sampler


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="nucleus"), "unknown sampler"),
    (dict(name="top_k", temperature=0.0), "`temperature` must be > 0"),
    (dict(name="top_p", top_p=1.5), r"`top_p` must be in \(0, 1\]"),
    (dict(name="top_p", top_p=0.0), r"`top_p` must be in \(0, 1\]"),
    (dict(name="top_k", top_k=0), "`top_k` must be >= 1"),
])
def test_bad_sampler_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(AigcError, match=message):
        make_sampler(**kwargs)


def test_greedy_is_deterministic_and_equals_top_1(tiny_text_model):
    greedy = generate(tiny_text_model, ["hello", "It is a beautiful day"], "greedy", max_length=20)
    assert greedy == generate(tiny_text_model, ["hello", "It is a beautiful day"], "greedy", max_length=20)
    assert greedy == generate(tiny_text_model, ["hello", "It is a beautiful day"], "top_k", top_k=1,
                              max_length=20, seed=5)
    assert greedy[0][0].startswith("hello") and greedy[1][0].startswith("It is a beautiful day")


def test_sampling_is_reproducible_by_seed_and_varies_across_sequences(tiny_text_model):
    kwargs = dict(max_length=20, num_return_sequences=3, temperature=1.5)
    first = generate(tiny_text_model, ["hello"], "random", seed=1, **kwargs)
    assert first == generate(tiny_text_model, ["hello"], "random", seed=1, **kwargs)
    assert first != generate(tiny_text_model, ["hello"], "random", seed=2, **kwargs)
    assert len(first[0]) == 3 and len(set(first[0])) > 1
    nucleus = generate(tiny_text_model, ["hello"], "top_p", top_p=0.95, seed=1, **kwargs)
    assert len(nucleus[0]) == 3 and all(t.startswith("hello") for t in nucleus[0])


def test_beam_search_returns_the_best_beams(tiny_text_model):
    beams = generate(tiny_text_model, ["hello"], "beam", num_beams=3, num_return_sequences=2, max_length=16)
    assert len(beams[0]) == 2 and beams[0][0] != beams[0][1]
    assert all(t.startswith("hello") for t in beams[0])
    best = generate(tiny_text_model, ["hello"], "beam", num_beams=3, max_length=16)
    assert best[0][0] == beams[0][0]


def test_length_and_count_errors(tiny_text_model):
    with pytest.raises(AigcError, match="leaves no room to generate"):
        generate(tiny_text_model, ["word " * 40], max_length=20)
    with pytest.raises(AigcError, match="exceeds the model's context of 64"):
        generate(tiny_text_model, ["hello"], max_length=65)
    with pytest.raises(AigcError, match="greedy decoding is deterministic"):
        generate(tiny_text_model, ["hello"], "greedy", num_return_sequences=2)
    with pytest.raises(AigcError, match="at most `num_beams`"):
        generate(tiny_text_model, ["hello"], "beam", num_beams=2, num_return_sequences=3)


def test_empty_prompt_generates_from_the_start_token(tiny_text_model):
    (texts,) = generate(tiny_text_model, [""], "greedy", max_length=12)
    assert isinstance(texts[0], str) and len(texts[0]) > 0


def test_sampling_leaves_the_callers_model_and_random_state_as_they_were(tiny_text_model):
    import random

    import numpy as np

    sampler = getattr(tiny_text_model, "sampler", None)
    state = random.getstate(), np.random.get_state()[1].copy()
    first = generate(tiny_text_model, ["It is"], "top_k", max_length=16, seed=4)
    assert getattr(tiny_text_model, "sampler", None) is sampler  # not recompiled with our sampler
    assert random.getstate() == state[0] and (np.random.get_state()[1] == state[1]).all()  # nothing reseeded
    assert generate(tiny_text_model, ["It is"], "top_k", max_length=16, seed=4) == first
