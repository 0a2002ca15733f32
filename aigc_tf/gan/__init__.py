"""The MLP GAN: Sequential networks (`models`), pure losses (`losses`), the XLA-compiled step and loop (`train`)."""
