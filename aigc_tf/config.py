"""Small frozen configs, one per model family, each with a `tiny()` for tests.

A run folder stores its config as `config.json`; resuming reads it back, so a run can never silently continue with
a different architecture.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

DEFAULT_LORA_RANK = 8  # `peft="lora"` without a `lora_rank`


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """The MLP GAN of `aigc_tf.gan`: architecture, optimiser, stabilisers and schedule.

    The networks are the classic MLP GAN on MNIST (Goodfellow et al. 2014; Radford et al. 2015 for Adam 2e-4,
    beta_1 0.5): noise 100 -> 256 -> 512 -> 1024 -> 784 for the generator, 784 -> 512 -> 256 -> 1 for the
    discriminator. The rest is what measured best at the default budget (bench/gan_ablation.py, whose table has a
    row for each): G and D conditioned on 50 k-means clusters of the training digits, an EMA generator with its own
    BatchNormalization statistics, sampling truncated at 2, and a D without dropout or label smoothing. R1,
    DiffAugment, the hinge loss and spectral normalisation are options that measured worse or no better here.
    """

    family: str = "gan"
    dataset: str = "mnist"
    source: str | None = None  # offline source; None picks the fetched one (see aigc_tf.data.images)
    latent_dim: int = 100
    generator_units: tuple[int, ...] = (256, 512, 1024)
    discriminator_units: tuple[int, ...] = (512, 256)
    leaky_slope: float = 0.2
    dropout: float = 0.0  # discriminator only; the classic recipe used 0.3
    batch_size: int = 64
    learning_rate: float = 2e-4
    d_learning_rate_ratio: float = 1.0  # D's rate = learning_rate * this (TTUR, Heusel et al. 2017, when != 1)
    beta_1: float = 0.5
    beta_2: float = 0.999
    loss: str = "non_saturating"  # or "hinge" (aigc_tf.gan.losses)
    label_smoothing: float = 0.0  # one-sided: real targets are 1 - label_smoothing (non_saturating only)
    r1_gamma: float = 0.0  # R1 gradient penalty on real images (Mescheder et al. 2018); 0 disables it
    r1_interval: int = 1  # R1 on every k-th step, weighted by k (StyleGAN2's lazy regularisation); 1 = every step
    spectral_norm: bool = False  # spectrally normalised Dense layers in D (Miyato et al. 2018)
    augment: str = ""  # DiffAugment policy for every image D sees, e.g. "translation,cutout,color"; "" = none
    condition: str = "cluster"  # what G and D are conditioned on: "none", "digit" labels or "cluster" (gan.condition)
    clusters: int = 50  # the number of k-means clusters of the training digits when condition="cluster"
    truncation: float = 2.0  # > 0: sample from noise truncated to [-t, t] (BigGAN's trick, gan.models); 0 = off
    ema_decay: float = 0.999  # sample, evaluate and export an EMA of G's weights (Yazici et al. 2019); 0 = off
    epochs: int = 170  # 21,250 steps
    seed: int = 0
    jit_compile: bool = True
    precision: str = "fp32"  # "bf16": mixed_bfloat16 layers; "fp16": mixed_float16 with loss scaling (GPUs)
    grid_size: int = 8  # the fixed-noise sample grid is grid_size x grid_size
    num_classes: int = 10  # the digit labels of condition="digit" (a conditional GAN, Mirza & Osindero 2014)

    # Fields that define the networks and their variables: a run cannot resume with different values.
    # (ema_decay: the averaged generator is in the checkpoint or not; spectral_norm: D's power-iteration vectors.)
    ARCHITECTURE = ("family", "dataset", "latent_dim", "generator_units", "discriminator_units", "condition",
                    "clusters", "ema_decay", "spectral_norm", "dropout")

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
    preset: str | None = "aigc_gpt2_base"
    corpus: str = "moby_dick"
    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 64
    intermediate_dim: int = 256
    max_sequence_length: int = 256  # positions the model knows: the longest prompt + generation
    dropout: float = 0.1
    sequence_length: int = 128  # training window
    batch_size: int = 8
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.05
    weight_decay: float = 0.01
    clipnorm: float = 1.0
    epochs: int = 2
    steps_per_epoch: int | None = 100  # steps between validations; None: one pass over the corpus
    validation_fraction: float = 0.1  # the corpus's last tenth: never trained on, the held-out split eval reports
    validation_batches: int | None = 20  # per epoch; None evaluates the whole validation split
    peft: str = "full"  # what fine-tuning trains: full, lora, prefix or adapter (aigc_tf.text.peft)
    lora_rank: int | None = None  # LoRA's rank (--peft lora: DEFAULT_LORA_RANK unless given; alone: --peft lora)
    prefix_length: int = 16  # --peft prefix: learned key/value vectors per layer
    adapter_size: int = 16  # --peft adapter: the bottleneck's width
    sample_prompt: str = "It is a beautiful day"
    seed: int = 0
    jit_compile: bool = True
    precision: str = "fp32"  # training compute: "bf16" mixed_bfloat16, "fp16" mixed_float16 with loss scaling

    ARCHITECTURE = ("family", "preset", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                    "max_sequence_length", "peft", "lora_rank", "prefix_length", "adapter_size", "precision")  # precision: fp16 adds the loss scale

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
    dataset: str = "mnist"
    source: str | None = None
    architecture: str = "mlp"  # or "conv"
    latent_dim: int = 16  # 2 draws the latent manifold
    hidden_units: tuple[int, ...] = (512, 256)
    batch_size: int = 128
    learning_rate: float = 1e-3
    epochs: int = 30
    seed: int = 0
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
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return cls(**kwargs)


def save(config, path: Path) -> None:
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(to_json(config))
    tmp.replace(path)


def load(path: Path):
    return from_dict(json.loads(Path(path).read_text()))
