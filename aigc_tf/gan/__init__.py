"""The MLP GAN, one file per step of its life:

- `models`: the generator and discriminator, Keras `Sequential` MLPs (Dense, BatchNormalization, LeakyReLU);
- `losses`: the losses as pure functions, with their formulas;
- `condition`: what G and D are conditioned on (`GANConfig.condition`): nothing, digit labels or k-means clusters;
- `clusters`: k-means clusters of the training digits, which G draws from and D judges with (no labels);
- `augment`: DiffAugment, differentiable augmentation of every image D sees (an option);
- `r1`: the R1 gradient penalty on real images, with its lazy interval (an option);
- `ema`: the averaged generator that samples, and its own BatchNormalization statistics;
- `train`: `GAN`, a `keras.Model` whose XLA-compiled `train_step` is one update, and `train_gan(config, run_dir)`,
  which trains it with `fit`;
- `sample`: load a run's generator, draw digits (`draw`, `sample_grid`);
- `evaluate`: FID and Inception-style score against real digits, `evaluate_gan(run_dir)`;
- `export`: the generator as a SavedModel for TF Serving, `export_gan(run_dir, model_dir)`.
"""
