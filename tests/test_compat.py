"""Every private API aigc_tf reaches into, exercised against the installed Keras, keras-hub and TensorFlow.

If an upgrade moves one of them, the test named after it fails here, instead of training or serving failing later.
"""

import random
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from aigc_tf import compat


def test_safe_mode_scope_refuses_code_even_after_unsafe_deserialization_was_enabled():
    from keras.src.saving import serialization_lib

    lam = serialization_lib.serialize_keras_object(lambda x: x)
    keras.config.enable_unsafe_deserialization()
    try:
        with compat.safe_mode_scope():
            with pytest.raises(ValueError, match="lambda"):
                serialization_lib.deserialize_keras_object(lam)
    finally:
        serialization_lib.SafeModeScope(None).__enter__()  # back to the default for the rest of the session


def test_xla_ops_slice_and_update_in_place_under_xla():
    xla = compat.xla_ops()

    @tf.function(jit_compile=True)
    def step(cache, update, start):
        return xla.dynamic_slice(xla.dynamic_update_slice(cache, update, [start, 0]), [start, 0], [2, 3])

    out = step(tf.zeros([6, 3]), tf.ones([2, 3]), tf.constant(3))
    np.testing.assert_array_equal(out.numpy(), np.ones([2, 3]))


def test_build_cache_gives_keras_hubs_prefill(tiny_text_model):
    ids = tf.constant([[50256, 40, 716, 0, 0]])
    hidden, cache = compat.build_cache(tiny_text_model, ids)
    backbone = tiny_text_model.backbone
    assert hidden.shape == (1, 5, backbone.hidden_dim)
    assert cache.shape[0] == 1 and cache.shape[1] == backbone.num_layers and cache.shape[2] == 2  # (B, L, K/V, ...)


def test_set_initial_epoch_makes_fit_start_there():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    seen = []

    class Start(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            compat.set_initial_epoch(self.model, 2)

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    model.fit(np.zeros((4, 1)), np.zeros((4, 1)), epochs=4, verbose=0, callbacks=[Start()])
    assert seen == [2, 3]


def test_train_under_scope_strategy_makes_fit_use_the_strategy_in_scope():
    import keras
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
    assert model.distribute_strategy is strategy  # remembered from the scope it was built in
    compat.train_under_scope_strategy(model)
    assert model.distribute_strategy is not strategy  # outside the scope: the default strategy
    with strategy.scope():
        assert model.distribute_strategy is strategy
        model.fit(np.ones((4, 2), np.float32), np.ones((4, 1), np.float32), verbose=0)


def test_disable_xla_compilation_makes_jit_functions_fail_as_in_the_model_server():
    code = """
import tensorflow as tf
from aigc_tf.compat import disable_xla_compilation
disable_xla_compilation()
try:
    tf.function(lambda x: x * 2, jit_compile=True)(tf.constant(1.0)).numpy()
    print("ran")
except Exception as err:
    print("refused" if "XLA compilation disabled" in str(err) else repr(err)[:200])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip().splitlines()[-1] == "refused", done.stdout + done.stderr[-1000:]


def test_keras_global_seed_generator_is_scoped():
    with compat.keras_global_seed_generator(7):
        a = keras.random.normal([3]).numpy()
    with compat.keras_global_seed_generator(7):
        b = keras.random.normal([3]).numpy()
    np.testing.assert_array_equal(a, b)
    outside = keras.random.normal([3]).numpy()  # the caller's own generator again, not the scoped one's stream
    with compat.keras_global_seed_generator(7):
        keras.random.normal([3])
        continued = keras.random.normal([3]).numpy()
    assert not np.allclose(outside, continued)


def test_seeded_gives_the_same_weights_and_leaves_the_callers_streams_alone():
    from aigc_tf.seeding import seeded

    def dense_kernel():
        layer = keras.layers.Dense(4)
        layer.build((None, 3))
        return layer.kernel.numpy()

    random.seed(123)
    np.random.seed(123)
    expected_python, expected_numpy = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    with seeded(5):
        first = dense_kernel()
    assert (random.random(), np.random.rand()) == (expected_python, expected_numpy)  # as if nothing happened
    with seeded(5):
        second = dense_kernel()
    with seeded(6):
        other = dense_kernel()
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


def test_bpe_tokenize_uncached_gives_keras_hubs_ids_and_keeps_no_state():
    from aigc_tf.text.tokenizer import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    texts = ["Call me Ishmael. Some years ago<|endoftext|>never mind how long", "", "caf\u00e9 \U0001f433 na\u00efve",
             "  spaces   and\ttabs\n\nnew lines", "x" * 300, "It's 1851; the whale's 'white'!"]
    ours = tf.function(lambda t: compat.bpe_tokenize_uncached(tokenizer, t))(tf.constant(texts)).to_list()
    assert ours == [np.asarray(tokenizer(t)).tolist() for t in texts]
    assert ours[0].count(50256) == 1  # the special token kept whole, not split into "<", "|", ...
    graph = tf.function(lambda t: compat.bpe_tokenize_uncached(tokenizer, t)).get_concrete_function(
        tf.TensorSpec([None], tf.string)).graph.as_graph_def()
    ops = {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}
    assert not ops & {"LookupTableInsertV2", "LookupTableImportV2"}  # nothing written per request: memory bounded


def test_registered_op_tells_registered_op_types_from_unknown_ones():
    assert compat.registered_op("MatMul").name == "MatMul"
    assert compat.registered_op("NoSuchOpAnywhere") is None


@pytest.fixture
def small_backbone():
    import keras_hub

    return keras_hub.models.GPT2Backbone(vocabulary_size=11, num_layers=2, num_heads=2, hidden_dim=8,
                                         intermediate_dim=16, max_sequence_length=6)


def backbone_inputs():
    return {"token_ids": np.array([[1, 2, 3, 0]]), "padding_mask": np.array([[1, 1, 1, 0]])}


def test_gpt2_block_parts_are_the_attention_and_the_two_output_projections(small_backbone):
    block = small_backbone.transformer_layers[0]
    attention, attention_output, feedforward_output = compat.gpt2_block_parts(block)
    assert isinstance(attention, keras.layers.MultiHeadAttention)
    x = np.ones((1, 3, 8), np.float32)
    assert attention(x, x).shape == (1, 3, 8)
    assert attention_output.kernel.shape[-1] == 8  # projects the heads back to the hidden width
    assert feedforward_output.kernel.shape == (16, 8)  # intermediate -> hidden


def test_wrap_compute_attention_runs_the_wrapper_inside_the_layer(small_backbone):
    attention = compat.gpt2_block_parts(small_backbone.transformer_layers[1])[0]
    before = np.asarray(small_backbone(backbone_inputs()))
    seen = []

    def wrap(compute):
        def spy(query, key, value, attention_mask=None, **kwargs):
            seen.append(tuple(key.shape))
            return compute(query, key, value, attention_mask=attention_mask, **kwargs)
        return spy

    compat.wrap_compute_attention(attention, wrap)
    np.testing.assert_allclose(np.asarray(small_backbone(backbone_inputs())), before, atol=1e-6)
    assert seen and seen[0][1] == 4  # (B, T, heads, head_dim): called with this layer's keys


def test_sublayers_lists_nested_layers_but_not_the_layer_itself():
    inner = keras.layers.Dense(2, name="inner")
    outer = keras.Sequential([keras.Input((3,)), keras.Sequential([inner], name="block"), keras.layers.Dense(1)])
    names = [layer.name for layer in compat.sublayers(outer)]
    assert "inner" in names and "block" in names and outer.name not in names


def test_gpt2_backbone_weights_name_every_weight_by_role(small_backbone):
    weights = compat.gpt2_backbone_weights(small_backbone)
    assert weights["token_embedding"].shape == (11, 8) and weights["position_embedding"].shape == (6, 8)
    assert len(weights["layers"]) == 2
    layer = weights["layers"][0]
    assert layer["query"][0].shape == (8, 2, 4) and layer["query"][1].shape == (2, 4)
    assert layer["feedforward_intermediate"][0].shape == (8, 16)
    tensors = [weights["token_embedding"], weights["position_embedding"], *weights["final_norm"]]
    tensors += [t for layer in weights["layers"] for pair in layer.values() for t in pair]
    assert len(tensors) == len(small_backbone.weights)  # nothing of the backbone left out
    assert all(t.dtype == tf.float32 for t in tensors)


def test_long_options_walks_every_subcommand():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--top")
    sub = parser.add_subparsers().add_parser("run")
    sub.add_argument("--deep-flag", "-d")
    sub.add_subparsers().add_parser("more").add_argument("--deeper")
    assert compat.long_options(parser) == {"--help", "--top", "--deep-flag", "--deeper"}


# ---------------------------------------------------------------------------------------------------- the rule
PRIVATE_MODULES = re.compile(r"\b(tensorflow\.python|keras\.src|keras_hub\.src)\b")
# A private attribute of a Keras / keras-hub object or of argparse: `x._name` read on something that is not `self`
# or `cls` (a class's own private state is its business). Dunder names are public protocol.
PRIVATE_ATTRIBUTE = re.compile(r"\b(?!self\b|cls\b)[A-Za-z_][A-Za-z0-9_]*\._(?!_)[A-Za-z][A-Za-z0-9_]*")


def package_sources():
    import aigc_tf

    root = Path(aigc_tf.__file__).parent
    return {path.relative_to(root.parent).as_posix(): path.read_text(encoding="utf-8") for path in root.rglob("*.py")}


def code_of(source: str) -> str:
    """The source without docstrings, comments and other strings (only code may reach into private APIs)."""
    import io
    import tokenize

    kept = [token.string for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type not in (tokenize.STRING, tokenize.COMMENT)]
    return re.sub(r"\s*\.\s*", ".", " ".join(kept))  # `a . b` back to `a.b`


def private_uses(source: str, own_modules: set[str]) -> list[str]:
    """Private-API uses in `source`: imports of private modules, `obj._private` on another object. `_name` of a
    module of our own (`sources._run`) is the package's own business, not a third party's."""
    code = code_of(source)
    found = PRIVATE_MODULES.findall(code)
    for match in PRIVATE_ATTRIBUTE.finditer(code):
        owner = match.group(0).split(".")[0]
        if owner not in own_modules:
            found.append(match.group(0))
    return found


def test_the_rule_catches_each_kind_of_private_use():
    assert private_uses("from tensorflow.python.framework import op_def_registry", set())
    assert private_uses("import keras_hub.src.models", set())
    assert private_uses("layer._self_attention_layer", set())
    assert private_uses("parser._actions", set())
    assert not private_uses("self._cache = 1\ncls._registry\nx.__class__\n'''keras.src in a docstring'''", set())
    assert not private_uses("sources._run(cmd)", {"sources"})


def test_only_compat_reaches_into_private_apis():
    sources = package_sources()
    own = {Path(name).stem for name in sources} | {"aigc_tf"}
    offenders = {name: uses for name, source in sources.items()
                 if name != "aigc_tf/compat.py" and (uses := private_uses(source, own))}
    assert offenders == {}, "route these through a named function of aigc_tf/compat.py"


def test_the_library_never_reseeds_the_callers_process():
    """`keras.utils.set_random_seed` / `tf.random.set_seed` / `np.random.seed` outside a scope would reseed a
    learner's notebook; the library seeds locally (`aigc_tf.seeding.seeded`, seeded generators) instead."""
    global_seeding = re.compile(r"set_random_seed|tf\.random\.set_seed|random\.seed\(")
    offenders = [name for name, source in package_sources().items()
                 if name != "aigc_tf/seeding.py" and global_seeding.search(code_of(source))]
    assert offenders == []
