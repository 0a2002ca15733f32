"""The variational autoencoder: encoder/decoder and the ELBO `train_step` (`models`), training with `fit` (`train`)."""
