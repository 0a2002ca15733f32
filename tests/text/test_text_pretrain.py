"""The base model's pretraining recipe (a tiny shape through the same code path) and the preset shipped with the
package: it loads with keras-hub's `from_preset`, its tokenizer is GPT-2's, its config is the card's, greedy decoding
is deterministic, and the perplexity the card states on a fixed slice is what the file computes."""

import json
import shutil

import numpy as np
import pytest

from aigc_tf import AigcError
from aigc_tf.text import data as text_data
from aigc_tf.text import pretrain

TINY = dict(num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=64,
            sequence_length=32, batch_size=4, epochs=2, steps_per_epoch=3, validation_fraction=0.002,
            validation_batches=2, warmup_fraction=0.2)


@pytest.fixture(scope="module")
def tiny_pretrain_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("pretrain") / "run"
    result = pretrain.pretrain(run, pretrain.pretrain_config(**TINY), verbose=False)
    return run, result


def test_joined_corpora_hold_out_a_tail_of_every_part(tiny_text_model):
    tokenizer = tiny_text_model.preprocessor.tokenizer
    train, validation = text_data.train_validation_windows("sotu+shakespeare", tokenizer, 32, 0.01)
    parts = [text_data.split_windows(text_data.pack_windows(text_data.corpus_token_ids(p, tokenizer), 32), 0.01)
             for p in ("sotu", "shakespeare")]
    assert len(validation) == len(parts[0][1]) + len(parts[1][1]) and len(parts[1][1]) > 0
    np.testing.assert_array_equal(validation, np.concatenate([parts[0][1], parts[1][1]]))  # each part's own tail
    np.testing.assert_array_equal(train, np.concatenate([parts[0][0], parts[1][0]]))  # and the heads, in order
    assert text_data.corpus_parts("sotu+shakespeare") == ["sotu", "shakespeare"]


def test_pretraining_trains_resumes_and_ships_a_preset_with_its_card(tiny_pretrain_run, tmp_path):
    import keras_hub

    run, result = tiny_pretrain_run
    history = [json.loads(json.dumps(row)) for row in result.history]
    assert len(history) == 2 and float(history[-1]["val_loss"]) < float(history[0]["val_loss"]) + 0.5
    assert json.loads((run / "machine.json").read_text())["cores"] >= 1
    again = pretrain.pretrain(run, pretrain.pretrain_config(**TINY), verbose=False)  # finished: nothing to redo
    assert len(again.history) == 2

    dest = tmp_path / "presets" / "tiny_base"
    outputs = pretrain.ship(run, dest)
    card = json.loads((dest / pretrain.CARD_JSON).read_text())
    assert card["architecture"]["hidden_dim"] == 32 and card["steps"] == 6
    assert card["tokens_seen"] == 6 * 4 * 32
    assert set(card["data"]) == {"sotu", "shakespeare"} and "public domain" in card["data"]["sotu"]["licence"]
    markdown = outputs["model card"].read_text()
    assert f"{card['held_out']['perplexity']:.1f}" in markdown and "Moby-Dick is kept out" in markdown
    assert not list(dest.parent.glob("*.staging")) and not list(dest.parent.glob("*.partial"))

    causal_lm = keras_hub.models.GPT2CausalLM.from_preset(str(dest))  # keras-hub's own loader, no aigc_tf
    assert causal_lm.backbone.hidden_dim == 32


def test_ship_refuses_an_unfinished_run_and_writes_nothing(tmp_path):
    with pytest.raises(AigcError, match="no finished pretraining run"):
        pretrain.ship(tmp_path / "empty", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_corpus_that_cannot_be_fetched_is_one_line(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    source = text_data.TextSource("nothing", "@nobody/none", "absent", r".*", registry="npm")
    monkeypatch.setattr(text_data.TextSource, "path", lambda self: __import__("pathlib").Path("/nonexistent/x"))
    with pytest.raises(AigcError, match="npm is not installed"):
        source.fetch()


# ------------------------------------------------------------------------------------------- the shipped preset
@pytest.fixture(scope="module")
def shipped():
    from aigc_tf.text.models import load_preset

    card = json.loads((pretrain.SHIPPED_PRESET / pretrain.CARD_JSON).read_text())
    return load_preset(pretrain.PRESET_NAME, card["training"]["sequence_length"], dtype="float32"), card


def test_the_shipped_preset_is_a_keras_hub_preset_matching_its_card(shipped):
    import keras_hub

    causal_lm, card = shipped
    plain = keras_hub.models.GPT2CausalLM.from_preset(str(pretrain.SHIPPED_PRESET))
    config = plain.backbone.get_config()
    for key, value in card["architecture"].items():
        assert config[key] == value, key
    assert card["size_bytes"] <= 64 * 2**20
    assert sum(f.stat().st_size for f in pretrain.SHIPPED_PRESET.rglob("*") if f.is_file()) <= 64 * 2**20
    tokenizer = causal_lm.preprocessor.tokenizer
    assert tokenizer.vocabulary_size() == 50257 and [int(i) for i in tokenizer("hello")] == [31373]
    sentence = "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014"
    text = tokenizer.detokenize([[int(i) for i in tokenizer(sentence)]])[0]
    assert (text.decode("utf-8") if isinstance(text, bytes) else str(text)) == sentence


def test_greedy_decoding_of_the_shipped_model_is_deterministic(shipped):
    from aigc_tf.text.sample import generate

    causal_lm, _ = shipped
    first = generate(causal_lm, ["The whale"], "greedy", max_length=24)
    assert first == generate(causal_lm, ["The whale"], "greedy", max_length=24)
    assert first[0][0].startswith("The whale") and len(first[0][0]) > len("The whale")


def test_the_shipped_weights_give_the_perplexity_the_card_states(shipped):
    """The one test on the weights' quality: a corrupted or swapped file changes this number."""
    from aigc_tf.config import TextConfig
    from aigc_tf.text.evaluate import window_perplexity

    causal_lm, card = shipped
    training = card["training"]
    config = TextConfig(**{k: training[k] for k in ("corpus", "sequence_length", "validation_fraction")})
    _, validation = text_data.train_validation_windows(config.corpus, causal_lm.preprocessor.tokenizer,
                                                       config.sequence_length, config.validation_fraction)
    check = card["check_slice"]
    measured = window_perplexity(causal_lm, validation[:check["windows"]], batch_size=training["batch_size"])
    assert measured["perplexity"] == pytest.approx(check["perplexity"], rel=2e-3)


def test_a_missing_or_corrupted_shipped_preset_is_one_line(tmp_path, monkeypatch):
    from aigc_tf.text import models

    monkeypatch.setitem(models.SHIPPED_PRESETS, "aigc_gpt2_base", tmp_path / "gone")
    with pytest.raises(AigcError, match="missing .*reinstall aigc_tf"):
        models.load_preset("aigc_gpt2_base")
    broken = tmp_path / "broken"
    shutil.copytree(pretrain.SHIPPED_PRESET, broken)
    weights = broken / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(AigcError, match="cannot be loaded") as info:
        models.load_preset(str(broken))
    assert "\n" not in str(info.value)


def test_from_scratch_and_preset_together_are_refused_in_one_line(tmp_path, capsys):
    from aigc_tf.cli import main

    assert main(["text", "train", "--out", str(tmp_path / "r"), "--from-scratch", "--preset", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--from-scratch" in err[0]
    assert not (tmp_path / "r").exists()
