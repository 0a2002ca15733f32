"""The KV-cache decoder computes keras-hub's greedy tokens, in fp32 exactly, in bf16 with half the bytes."""

import numpy as np
import pytest
import tensorflow as tf

from aigc_tf.text.kv_decoder import KVCacheDecoder


@pytest.fixture(scope="module")
def causal_lm():
    import keras
    import keras_hub

    keras.utils.set_random_seed(3)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=300, num_layers=2, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=32, dropout=0.0)
    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    lm.compile(sampler="greedy", jit_compile=False)
    return lm


def ragged_prompts(total=20):
    """Two left-aligned prompts of 7 and 3 tokens in a (2, total) layout, as keras-hub's preprocessor lays them."""
    ids = np.zeros([2, total], np.int32)
    ids[0, :7] = [5, 17, 42, 99, 3, 250, 8]
    ids[1, :3] = [11, 12, 13]
    return {"token_ids": tf.constant(ids), "padding_mask": tf.constant(ids > 0)}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fp32_decoding_equals_keras_hub_greedy_generate_step(causal_lm, jit_compile):
    inputs = ragged_prompts()
    expected = causal_lm.generate_step(inputs, stop_token_ids=None)
    got = KVCacheDecoder(causal_lm.backbone, "fp32", jit_compile=jit_compile).generate_step(inputs)
    np.testing.assert_array_equal(got["token_ids"].numpy(), expected["token_ids"].numpy())
    assert got["padding_mask"].numpy().all()
    # the prompt tokens are kept, the rest was generated
    np.testing.assert_array_equal(got["token_ids"].numpy()[0, :7], inputs["token_ids"].numpy()[0, :7])


def test_stop_token_ends_decoding_and_masks_what_follows_as_keras_hub_does(causal_lm):
    inputs = ragged_prompts()
    free = causal_lm.generate_step(inputs, stop_token_ids=None)["token_ids"].numpy()
    stop = int(free[1, 5])  # a token row 1 generates (after its 3-token prompt)
    expected = causal_lm.generate_step(inputs, stop_token_ids=[stop])
    got = KVCacheDecoder(causal_lm.backbone, "fp32").generate_step(inputs, stop_token_ids=[stop])
    np.testing.assert_array_equal(got["padding_mask"].numpy(), expected["padding_mask"].numpy())
    keep = expected["padding_mask"].numpy()
    np.testing.assert_array_equal(got["token_ids"].numpy()[keep], expected["token_ids"].numpy()[keep])
    assert not keep[1, 6:].any()  # everything after row 1's stop token is masked


def test_bf16_halves_the_bytes_read_and_keeps_the_logits_close(causal_lm):
    fp32 = KVCacheDecoder(causal_lm.backbone, "fp32")
    bf16 = KVCacheDecoder(causal_lm.backbone, "bf16", jit_compile=True)
    assert bf16.lm_head.dtype == tf.bfloat16 and bf16.layers[0]["qkv"].dtype == tf.bfloat16
    assert bf16.layers[0]["ln1_gamma"].dtype == tf.float32  # LayerNorm stays fp32
    assert bf16.layers[0]["qkv"].shape == (48, 17) and bf16.layers[0]["qkv_bias"] is None  # [out, in + bias]
    assert 0.45 < bf16.weight_bytes / fp32.weight_bytes < 0.55
    ids = tf.constant(np.random.default_rng(0).integers(1, 300, [2, 10]), tf.int32)
    reference = causal_lm({"token_ids": ids, "padding_mask": tf.ones_like(ids, tf.bool)}).numpy()
    np.testing.assert_allclose(fp32.logits(ids).numpy(), reference, atol=1e-4)
    error = np.abs(bf16.logits(ids).numpy() - reference).max() / np.abs(reference).max()
    assert 0 < error < 0.05  # bf16 rounds (so not identical) but stays close


def test_unknown_precision_is_refused(causal_lm):
    with pytest.raises(ValueError, match="precision"):
        KVCacheDecoder(causal_lm.backbone, "fp8")


def test_with_precision_casts_the_weights_and_refuses_unknown_ones(causal_lm):
    from aigc_tf import AigcError
    from aigc_tf.text.models import with_precision

    lm = with_precision(causal_lm, "bf16")
    assert lm.backbone.weights[0].dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(lm.backbone.weights[0].numpy(), np.float32),
                               causal_lm.backbone.weights[0].numpy(), rtol=1e-2, atol=1e-3)
    assert with_precision(causal_lm, "fp32") is causal_lm
    with pytest.raises(AigcError, match="precision"):
        with_precision(causal_lm, "int3")


def test_bf16_compiled_per_step_gives_the_tokens_of_the_whole_loop_compiled_at_once(causal_lm):
    inputs = ragged_prompts()
    per_step = KVCacheDecoder(causal_lm.backbone, "bf16", jit_compile=True)
    whole = KVCacheDecoder(causal_lm.backbone, "bf16", jit_compile=True, compile_per_step=False)
    assert per_step.compile_per_step and not whole.compile_per_step
    got = per_step.generate_step(inputs)["token_ids"].numpy()
    np.testing.assert_array_equal(got, whole.generate_step(inputs)["token_ids"].numpy())
    np.testing.assert_array_equal(got[:, :3], inputs["token_ids"].numpy()[:, :3])
