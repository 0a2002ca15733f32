"""The GPT-2 causal LM: keras-hub's `GPT2Backbone` + `GPT2CausalLM`, built small offline or loaded from a preset.

keras-hub (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners") provides the transformer that
is trained, fine-tuned and saved; `kv_decoder` re-lays its weights out for fast decoding only. Offline there are no
downloadable weights, so the default is the project's own base model, pretrained once (`aigc_tf.text.pretrain`) and
shipped in the package as a keras-hub preset (`aigc_gpt2_base`); the same code path fine-tunes any preset that
`from_preset` accepts, and `preset=None` builds a new GPT-2 to train from scratch.
"""

from __future__ import annotations

from pathlib import Path

from aigc_tf import AigcError
from aigc_tf.compat import safe_mode_scope
from aigc_tf.hardware import MIXED_POLICIES, PRECISIONS, WEIGHT_DTYPES
from aigc_tf.runs import RunFolder
from aigc_tf.seeding import seeded
from aigc_tf.text import peft
from aigc_tf.text.tokenizer import VOCABULARY_SIZE, gpt2_tokenizer

PRESET_DIR = "preset"  # where a text run saves its model, as a keras-hub preset
SHIPPED_PRESETS = {"aigc_gpt2_base": Path(__file__).parent / "presets" / "aigc_gpt2_base"}  # inside the package


def resolve_preset(preset: str) -> str:
    """A shipped preset's name -> its folder inside the installed package; any other handle unchanged."""
    if preset in SHIPPED_PRESETS:
        folder = SHIPPED_PRESETS[preset]
        if not (folder / "config.json").exists() or not (folder / "model.weights.h5").exists():
            raise AigcError(f"the shipped preset {preset} is missing from {folder.parent}; reinstall aigc_tf "
                            "(pip install .), or train from zero with --from-scratch")
        return str(folder)
    return preset


def build_causal_lm(config):
    """A `GPT2CausalLM` with its preprocessor (sequence length = `config.sequence_length`); a new model's weights,
    and any model's dropout, are seeded from `config.seed`."""
    import keras_hub

    if config.precision not in MIXED_POLICIES:
        raise AigcError(f"unknown `precision` {config.precision!r}; choose one of {', '.join(MIXED_POLICIES)}")
    policy = MIXED_POLICIES[config.precision]  # fp16/bf16: 16-bit compute, float32 variables
    if config.preset:
        with seeded(config.seed):  # the dropout layers' seeds
            return load_preset(config.preset, config.sequence_length, dtype=policy)
    with seeded(config.seed):
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=VOCABULARY_SIZE, num_layers=config.num_layers, num_heads=config.num_heads,
            hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim, dropout=config.dropout,
            max_sequence_length=config.max_sequence_length, dtype=policy)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(gpt2_tokenizer(), sequence_length=config.sequence_length)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)


def load_preset(preset: str, sequence_length: int | None = None, dtype: str | None = None):
    """`GPT2CausalLM.from_preset` with one clear line when a hub preset cannot be reached.

    Offline, Kaggle handles (`gpt2_base_en`) fail at once with a connection error and `hf://` handles only after
    retries, with a misleading "no config.json"; both mean "this needs a network or a local folder".
    The sequence length is set on the preprocessor: `GPT2CausalLM.from_preset(..., sequence_length=)` ignores it.

    Loading runs in Keras' default safe mode even after `keras.config.enable_unsafe_deserialization()`: a preset
    whose config holds Python code (a serialized lambda) is refused instead of loaded. (Not `SafeModeScope(True)`:
    that also refuses keras-hub's own tokenizer files in the preset's assets; see `aigc_tf.compat.safe_mode_scope`.) The weights and the classes named
    in a preset are still trusted: load presets only from sources you trust.
    """
    import keras_hub

    preset = resolve_preset(preset)
    looks_local = preset.startswith((".", "/", "~")) or Path(preset).expanduser().exists()
    if looks_local and not (Path(preset).expanduser() / "config.json").exists():
        raise AigcError(f"preset folder {preset} does not exist or holds no config.json (write one with "
                        "`aigc-tf text train`, or with keras-hub's save_to_preset)")
    try:
        kwargs = {"sequence_length": sequence_length} if sequence_length else {}
        with safe_mode_scope():
            preprocessor = keras_hub.models.GPT2CausalLMPreprocessor.from_preset(preset, **kwargs)
            return keras_hub.models.GPT2CausalLM.from_preset(preset, preprocessor=preprocessor, dtype=dtype)
    except (OSError, ValueError) as err:
        if "lambda" in str(err).lower():
            raise AigcError(f"preset {preset} holds Python code (a serialized lambda), which Keras safe mode refuses "
                            "to run; load presets only from sources you trust") from None
        if looks_local:
            raise AigcError(f"preset folder {preset} cannot be loaded ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200]})") from None
        raise AigcError(f"preset {preset!r} could not be downloaded: hub presets (gpt2_base_en, hf://...) need a "
                        "network; offline, pass a local preset folder (for example a run's preset/)") from None


def trainable_parameters(model) -> int:
    import numpy as np

    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def with_precision(causal_lm, precision: str):
    """The same model with its weights in `precision` ("fp32" or "bf16"), sharing the preprocessor.

    Weights only (`dtype="bfloat16"`, not `mixed_bfloat16`): at batch-1 decoding the cost is reading them.
    """
    import keras_hub

    if precision not in PRECISIONS:
        raise AigcError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    dtype = WEIGHT_DTYPES[precision]
    if causal_lm.backbone.dtype_policy.name == dtype:
        return causal_lm
    backbone = keras_hub.models.GPT2Backbone.from_config({**causal_lm.backbone.get_config(), "dtype": dtype})
    backbone.set_weights(causal_lm.backbone.get_weights())
    copy = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=causal_lm.preprocessor)
    peft.copy(causal_lm.backbone, copy)  # a prefix- or adapter-tuned model keeps its parameters
    return copy


def load_text_run(run_dir: Path, sequence_length: int | None = None):
    """The trained `GPT2CausalLM` of a text run (from its preset) and the run's config."""
    run = RunFolder(Path(run_dir))
    config = run.load_config("text")
    preset = run.path / PRESET_DIR
    if not (preset / "config.json").exists():
        raise AigcError(f"{run.path} has no trained model yet; train it first (`aigc-tf text train --out {run.path}`)")
    # float32 whatever the training precision: a run trained in fp16 or bf16 stores float32 variables, and
    # decoding picks its own precision (`with_precision`, the KV-cache decoder).
    causal_lm = load_preset(str(preset), sequence_length or config.sequence_length, dtype="float32")
    method = peft.method_of(config)
    if method in ("prefix", "adapter"):  # the preset holds the frozen base model; the tuned parameters sit beside it
        peft.load(causal_lm, method, peft.size_of(config), run.path)
    return causal_lm, config
