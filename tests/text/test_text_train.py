import math

import numpy as np
import pytest

from aigc_tf import AigcError
from aigc_tf.config import TextConfig
from aigc_tf.text.evaluate import perplexity
from aigc_tf.text.models import build_causal_lm, load_preset, trainable_parameters
from aigc_tf.text.models import load_text_run
from aigc_tf.text.train import train_text as train

UNIFORM_LOSS = math.log(50257)


def test_training_lowers_the_validation_loss_below_chance(tiny_text_run):
    run_dir, _, result = tiny_text_run
    losses = [float(row["val_loss"]) for row in result.history]
    assert len(losses) == 2 and losses[1] < losses[0] < UNIFORM_LOSS + 0.1
    for name in ("preset", "history", "samples", "loss_curve"):
        assert result.outputs[name].exists(), name
    assert "It is a beautiful day" in (run_dir / "samples.txt").read_text()
    assert list((run_dir / "tensorboard" / "samples").glob("events.out.tfevents.*"))  # the samples, as text


def test_rerunning_resumes_from_the_backup_instead_of_starting_over(tiny_text_run, tmp_path):
    import shutil

    run_dir, config, _ = tiny_text_run
    copy = tmp_path / "run"  # resume a copy: the session's run is shared with other tests
    shutil.copytree(run_dir, copy)
    resumed = train(config.replace(epochs=3), copy, verbose=False)
    assert [int(row["epoch"]) for row in resumed.history] == [0, 1, 2]


def test_perplexity_of_trained_model_beats_an_untrained_one(tiny_text_model, tiny_text_run):
    config = tiny_text_run[1]
    untrained = build_causal_lm(config)
    before = perplexity(untrained, "moby_dick", config.sequence_length, max_sequences=16)
    after = perplexity(tiny_text_model, "moby_dick", config.sequence_length, max_sequences=16)
    assert before["tokens"] == 16 * config.sequence_length
    assert 20_000 < before["perplexity"] < 100_000  # about uniform over 50,257 tokens
    assert after["perplexity"] < before["perplexity"]
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]))


def test_lora_trains_a_small_fraction_and_saves_a_plain_preset(tmp_path):
    config = TextConfig.tiny(lora_rank=2)
    result = train(config, tmp_path / "lora", verbose=False)
    assert 0 < result.trainable_parameters < 0.01 * result.total_parameters
    merged, _ = load_text_run(tmp_path / "lora")
    assert trainable_parameters(merged.backbone) == result.total_parameters  # LoRA merged into the weights


def test_a_merged_lora_preset_computes_what_the_model_with_adapters_computed(tmp_path):
    """What `train_text` relies on when it saves a LoRA run: the preset's plain weights give the adapted outputs."""
    config = TextConfig.tiny(lora_rank=2)
    causal_lm = build_causal_lm(config)
    ids = np.array([[50256, 464, 3290, 318, 257, 1332, 286, 262]], np.int32)
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    base = causal_lm.backbone(inputs).numpy()
    causal_lm.backbone.enable_lora(rank=2)
    rng = np.random.default_rng(0)
    for weight in causal_lm.backbone.trainable_weights:  # B starts at zero: make the adapters change something
        if "lora_kernel_b" in weight.path:
            weight.assign(rng.normal(0, 0.5, weight.shape).astype(np.float32))
    adapted = causal_lm.backbone(inputs).numpy()
    assert np.abs(adapted - base).max() > 1e-2
    causal_lm.save_to_preset(str(tmp_path / "preset"))
    merged = load_preset(str(tmp_path / "preset"), sequence_length=config.sequence_length)
    assert trainable_parameters(merged.backbone) == sum(int(np.prod(w.shape)) for w in merged.backbone.weights)
    np.testing.assert_allclose(merged.backbone(inputs).numpy(), adapted, atol=1e-4)


def test_a_saved_preset_loads_back_and_fine_tunes(tiny_text_run, tiny_text_model, tmp_path):
    """The offline test of the `--preset` path that real presets (gpt2_base_en, hf://...) take."""
    preset = str(tiny_text_run[0] / "preset")
    reloaded = load_preset(preset, sequence_length=32)
    for a, b in zip(tiny_text_model.backbone.weights, reloaded.backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    result = train(TextConfig.tiny(preset=preset, learning_rate=1e-3), tmp_path / "finetune", verbose=False)
    assert float(result.history[0]["val_loss"]) < float(tiny_text_run[2].history[0]["val_loss"])


def test_the_test_session_cannot_reach_the_network():
    import socket

    with pytest.raises(OSError, match="tests never reach the network"):
        socket.create_connection(("example.com", 443), timeout=5)


def test_unreachable_presets_fail_in_one_clear_line(tmp_path):
    with pytest.raises(AigcError, match="need a network; offline, pass a local preset folder"):
        load_preset("gpt2_base_en")
    with pytest.raises(AigcError, match="does not exist or holds no config.json"):
        load_preset(str(tmp_path / "no_such_preset"))


def test_too_short_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "tiny.txt").write_text("Too short.", encoding="utf-8")
    with pytest.raises(AigcError, match="too few for one sequence"):
        train(TextConfig.tiny(corpus=str(tmp_path / "tiny.txt")), tmp_path / "run", verbose=False)


def test_window_perplexity_on_the_validation_windows_matches_the_trainers_val_loss(tiny_text_run, tiny_text_model):
    """What notebook 3 relies on to score a model before and after fine-tuning on the same held-out windows."""
    from aigc_tf.text.evaluate import window_perplexity
    from aigc_tf.text.train import corpus_windows

    _, config, result = tiny_text_run
    _, validation = corpus_windows(config, tiny_text_model.preprocessor.tokenizer)
    seen = validation[: config.validation_batches * config.batch_size]  # the batches fit validated on
    report = window_perplexity(tiny_text_model, seen, batch_size=config.batch_size)
    assert report["sequences"] == len(seen) and report["sequence_length"] == config.sequence_length
    assert report["loss"] == pytest.approx(float(result.history[-1]["val_loss"]), rel=1e-4)
    assert report["perplexity"] == pytest.approx(math.exp(report["loss"]))
