"""The variational autoencoder, one file per step of its life:

- `models`: encoder, decoder and the `VAE` model whose `train_step` holds the ELBO;
- `train`: training with `fit`, and the figures a learner wants, `train_vae(config, run_dir)`;
- `sample`: load a run's VAE, decode the prior, reconstruct, interpolate (`load_vae`, `prior_samples`, ...);
- `evaluate`: ELBO on the test split and FID / IS of prior samples, `evaluate_vae(run_dir)`;
- `export`: decoder and encoder as SavedModels for TF Serving, `export_vae(run_dir, base_dir)`.
"""
