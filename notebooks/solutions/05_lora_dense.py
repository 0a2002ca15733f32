"""Notebook 5, exercise 1: a LoRA layer around a frozen Dense layer (Hu et al. 2021)."""

import keras


class LoRADense(keras.layers.Layer):
    """y = base(x) + (alpha / rank) * x A B, with the base frozen, A (in, rank) random and B (rank, out) zero."""

    def __init__(self, base, rank, alpha, **kwargs):
        super().__init__(**kwargs)
        self.base, self.rank, self.scale = base, rank, alpha / rank
        base.trainable = False

    def build(self, input_shape):
        units = self.base.units
        self.a = self.add_weight(shape=(input_shape[-1], self.rank), initializer="he_uniform", name="lora_a")
        self.b = self.add_weight(shape=(self.rank, units), initializer="zeros", name="lora_b")

    def call(self, x):
        return self.base(x) + self.scale * (x @ self.a) @ self.b
