"""Mixed-precision `fit` for GPT-2: fp16 trains with loss scaling, bf16 without, and both save a float32 model."""

import keras
import numpy as np
import pytest

from aigc_tf import AigcError
from aigc_tf.config import TextConfig
from aigc_tf.text.models import build_causal_lm, load_text_run
from aigc_tf.text.train import compile_for_training, train_text


@pytest.mark.parametrize("precision, policy", [("fp16", "mixed_float16"), ("bf16", "mixed_bfloat16")])
def test_mixed_precision_fit_trains_and_saves_float32(tmp_path, precision, policy):
    config = TextConfig.tiny(corpus="moby_dick", precision=precision)
    model = build_causal_lm(config)
    assert model.backbone.dtype_policy.name == policy
    assert all(v.dtype == "float32" for v in model.backbone.trainable_variables)
    compile_for_training(model, config, total_steps=4)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "fp16")

    result = train_text(config, tmp_path / "run", verbose=False)
    assert np.isfinite(float(result.history[-1]["loss"]))
    causal_lm, stored = load_text_run(tmp_path / "run")
    assert stored.precision == precision
    assert causal_lm.backbone.dtype_policy.name == "float32"  # decoding picks its own precision


def test_fp32_and_fp16_losses_agree_on_the_same_weights():
    """The same tiny model and batch: the mixed_float16 forward pass gives the fp32 loss within 1%."""
    batch = {"token_ids": np.arange(2 * 32).reshape(2, 32) % 1000, "padding_mask": np.ones((2, 32), bool)}
    losses = {}
    weights = None
    for precision in ("fp32", "fp16"):
        model = build_causal_lm(TextConfig.tiny(precision=precision, dropout=0.0))
        if weights is None:
            weights = model.backbone.get_weights()
        model.backbone.set_weights(weights)
        logits = keras.ops.convert_to_numpy(keras.ops.cast(model(batch), "float32"))  # (2, 32, vocabulary)
        targets = np.roll(batch["token_ids"], -1, axis=1)
        losses[precision] = float(keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            targets, logits, from_logits=True)))
    assert losses["fp16"] == pytest.approx(losses["fp32"], rel=1e-2)


def test_unknown_precision_is_a_clear_error(tmp_path):
    with pytest.raises(AigcError, match="precision"):
        train_text(TextConfig.tiny(precision="int8"), tmp_path / "run", verbose=False)
