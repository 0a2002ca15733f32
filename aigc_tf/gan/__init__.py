"""The MLP GAN, one file per step of its life:

- `models`: the generator and discriminator, Keras `Sequential` MLPs (Dense, BatchNormalization, LeakyReLU);
- `losses`: the losses as pure functions, with their formulas;
- `clusters`: k-means clusters of the training digits, which G draws from and D judges with (no labels);
- `augment`: DiffAugment, differentiable augmentation of every image D sees (an option);
- `train`: the XLA-compiled train step and the loop around it, `train_gan(config, run_dir)`;
- `sample`: load a run's generator, draw digits (`draw`, `sample_grid`);
- `evaluate`: FID and Inception-style score against real digits, `evaluate_gan(run_dir)`;
- `export`: the generator as a SavedModel for TF Serving, `export_gan(run_dir, model_dir)`.
"""
