"""Prefix tuning and bottleneck adapters (aigc_tf.text.peft) beside LoRA: what is trained, what is saved, and that
every decoding path (keras-hub's samplers, the KV-cache decoder, the TF Serving export) runs the tuned model."""

import numpy as np
import pytest

from aigc_tf import AigcError
from aigc_tf.config import TextConfig
from aigc_tf.text import peft
from aigc_tf.text.kv_decoder import KVCacheDecoder
from aigc_tf.text.models import build_causal_lm, load_preset, load_text_run, with_precision
from aigc_tf.text.sample import greedy_generate
from aigc_tf.text.train import train_text

IDS = np.array([[50256, 464, 3290, 318, 257, 1332, 286, 262, 995, 13]], np.int32)
METHODS = ("prefix", "adapter")


def _logits(causal_lm, ids=IDS):
    return causal_lm({"token_ids": ids, "padding_mask": np.ones_like(ids)}).numpy()


def _tuned(method, seed=0):
    """A tiny model with `method` attached and its parameters randomised (an adapter starts as the identity)."""
    causal_lm = build_causal_lm(TextConfig.tiny())
    base = _logits(causal_lm)
    tuned = peft.attach(causal_lm, method, 3)
    rng = np.random.default_rng(seed)
    tuned.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in tuned.weights])
    return causal_lm, tuned, base


@pytest.mark.parametrize("method", METHODS)
def test_only_the_new_parameters_train_and_they_change_the_model(method):
    causal_lm = build_causal_lm(TextConfig.tiny())
    base = _logits(causal_lm)
    tuned = peft.attach(causal_lm, method, 3)
    backbone = causal_lm.backbone
    assert backbone.trainable_weights == [] and len(backbone.weights) == len(build_causal_lm(TextConfig.tiny())
                                                                              .backbone.weights)
    heads, width, layers = backbone.num_heads, backbone.hidden_dim, backbone.num_layers
    expected = layers * 2 * 3 * width if method == "prefix" else layers * 2 * (width * 3 + 3 + 3 * width + width)
    assert peft.parameter_count(tuned) == expected == sum(int(np.prod(w.shape)) for w in tuned.trainable_weights)
    if method == "adapter":  # W_up starts at zero: the adapted model starts as the base model
        np.testing.assert_allclose(_logits(causal_lm), base, atol=1e-6)
    else:  # the prefix starts as INIT_TEXT's keys and values, which the tokens now attend to
        assert np.abs(_logits(causal_lm) - base).max() > 1e-3
    assert heads * (width // heads) == width


@pytest.mark.parametrize("method", METHODS)
def test_the_kv_cache_decoder_computes_what_the_keras_hub_model_computes(method):
    causal_lm, _, base = _tuned(method)
    logits = _logits(causal_lm)
    assert np.abs(logits - base).max() > 1e-2  # the tuned parameters matter
    np.testing.assert_allclose(KVCacheDecoder(causal_lm.backbone).logits(IDS).numpy(), logits, atol=2e-4)
    prompts = ["It is a beautiful day", "hello"]
    causal_lm.compile(sampler="greedy")  # keras-hub's own loop, through the wrapped layers
    assert greedy_generate(causal_lm, prompts, 20) == list(causal_lm.generate(prompts, max_length=20))


@pytest.mark.parametrize("method", METHODS)
def test_a_bf16_copy_keeps_the_tuned_parameters(method):
    causal_lm, _, base = _tuned(method)
    bf16 = with_precision(causal_lm, "bf16")
    assert bf16.backbone.peft.method == method
    logits, bf16_logits = _logits(causal_lm), _logits(bf16).astype(np.float32)
    assert np.abs(bf16_logits - logits).max() < 0.1 * np.abs(logits - base).max()


def test_a_model_cannot_take_two_sets_of_parameters():
    causal_lm, _, _ = _tuned("adapter")
    with pytest.raises(AigcError, match="already has"):
        peft.attach(causal_lm, "prefix", 2)


@pytest.fixture(scope="module")
def tuned_runs(tiny_text_run, tmp_path_factory):
    """The tiny run's preset fine-tuned by each method for 6 steps."""
    base = tiny_text_run[0] / "preset"
    root = tmp_path_factory.mktemp("peft")
    runs = {}
    for method in ("full", "lora", "prefix", "adapter"):
        config = TextConfig.tiny(preset=str(base), corpus="moby_dick", peft=method, prefix_length=4, adapter_size=4,
                                 steps_per_epoch=6, learning_rate=1e-2)
        runs[method] = (root / method, train_text(config, root / method, verbose=False))
    return base, runs


def test_each_method_trains_its_share_and_saves_what_loads_back(tuned_runs):
    base_preset, runs = tuned_runs
    base = load_preset(str(base_preset), sequence_length=32)
    counts = {m: r.trainable_parameters for m, (_, r) in runs.items()}
    assert counts["full"] == runs["full"][1].total_parameters
    assert 0 < counts["prefix"] < counts["adapter"] < counts["lora"] < counts["full"] / 100
    for method in ("prefix", "adapter"):
        run_dir, result = runs[method]
        assert result.outputs["peft_weights"].exists()
        reloaded, config = load_text_run(run_dir)
        assert config.peft == method and reloaded.backbone.peft.method == method
        for a, b in zip(base.backbone.weights, reloaded.backbone.weights):  # the base model stayed frozen
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert np.abs(_logits(reloaded) - _logits(base)).max() > 1e-3  # ...and the tuned parameters moved


def test_a_lora_run_ships_the_adapter_alone_and_it_rebuilds_the_merged_model(tuned_runs):
    base_preset, runs = tuned_runs
    run_dir, result = runs["lora"]
    adapter = result.outputs["lora_weights"]
    assert adapter.name == peft.LORA_FILE and adapter.stat().st_size < 100_000
    rebuilt = load_preset(str(base_preset), sequence_length=32)
    rebuilt.backbone.load_lora_weights(str(adapter))  # keras-hub's way back: base model + adapter file
    merged, _ = load_text_run(run_dir)
    np.testing.assert_allclose(_logits(rebuilt), _logits(merged), atol=1e-4)


def test_an_old_config_with_lora_rank_alone_still_means_lora():
    assert peft.method_of(TextConfig.tiny(lora_rank=2)) == "lora"
    assert peft.method_of(TextConfig.tiny()) == "full"
    with pytest.raises(AigcError, match="unknown `peft`"):
        peft.method_of(TextConfig.tiny(peft="bitfit"))


def test_each_method_fine_tunes_at_its_own_rate_unless_given_one_and_the_run_records_the_number(tiny_text_run,
                                                                                                 tmp_path):
    from aigc_tf.config import FINE_TUNING_LEARNING_RATES, FROM_SCRATCH_LEARNING_RATE

    rates = {m: TextConfig(peft=m).peak_learning_rate for m in peft.METHODS}
    assert rates == FINE_TUNING_LEARNING_RATES and rates["full"] < rates["lora"] < rates["prefix"]
    assert TextConfig(lora_rank=4).peak_learning_rate == rates["lora"]  # a rank alone means LoRA
    assert TextConfig().replace(peft="prefix").peak_learning_rate == rates["prefix"]  # resolved when read
    assert TextConfig(preset=None).peak_learning_rate == FROM_SCRATCH_LEARNING_RATE
    assert TextConfig(peft="prefix", learning_rate=1e-4).peak_learning_rate == 1e-4
    config = TextConfig.tiny(preset=str(tiny_text_run[0] / "preset"), corpus="moby_dick", peft="adapter",
                             adapter_size=2, learning_rate=None, steps_per_epoch=1)
    train_text(config, tmp_path / "run", verbose=False)
    _, stored = load_text_run(tmp_path / "run")
    assert stored.learning_rate == rates["adapter"]  # the number, so a later change of default cannot move it


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_tuned_run_exports_for_a_stock_server_with_its_parameters(tuned_runs, method, tmp_path):
    from stock_server import serve

    from aigc_tf.text.export import export_text
    from aigc_tf.text.sample import prompt_lengths

    run_dir = tuned_runs[1][method][0]
    export = export_text(run_dir, tmp_path / "gpt2", max_new_tokens=6, precision="fp32")
    (reply,) = serve(export, [{"inputs": {"prompts": ["It is a beautiful day"]}}])
    causal_lm, _ = load_text_run(run_dir)
    (length,) = prompt_lengths(causal_lm, ["It is a beautiful day"])
    assert reply["text"] == [greedy_generate(causal_lm, ["It is a beautiful day"], length + 6)[0]]


def test_the_cli_flags_reach_the_runs_config(tmp_path):
    from aigc_tf.cli import build_parser
    from aigc_tf.commands import train_config

    args = build_parser().parse_args(["text", "train", "--out", str(tmp_path / "r"), "--preset", "p",
                                      "--peft", "adapter", "--adapter-size", "5"])
    config = train_config(args)
    assert (config.peft, config.adapter_size, peft.size_of(config)) == ("adapter", 5, 5)
    args = build_parser().parse_args(["text", "train", "--out", str(tmp_path / "r"), "--lora-rank", "4"])
    assert peft.method_of(train_config(args)) == "lora"
