"""aigc_tf: generative AI on TensorFlow/Keras, written to be read.

Each model family is one folder with the same files, `models`, `train`, `sample`, `evaluate`, `export`:
`aigc_tf.gan` (an MLP GAN trained by an XLA-compiled step), `aigc_tf.vae` (a VAE trained with `fit`) and
`aigc_tf.text` (GPT-2 with keras-hub, with prefix tuning and adapters beside LoRA in `aigc_tf.text.peft`), and
adversarial examples against the digit classifier (`aigc_tf.robustness`). Around them: real digits and text that ship in packages, so everything runs
offline (`aigc_tf.data`, `aigc_tf.text.data`); a classifier-based FID and Inception-style score (`aigc_tf.metrics`);
run folders, checkpoints and locks (`aigc_tf.runs`, `aigc_tf.training`, `aigc_tf.locks`); TF Serving's layout, a
pre-flight check and clients (`aigc_tf.serving`). The command line (`aigc-tf`, `python -m aigc_tf`) only parses
flags and calls these modules.
"""

__version__ = "0.1.0"


class AigcError(Exception):
    """An error the user can fix, in one line. Messages name arguments the way a library caller writes them
    (`learning_rate`); the CLI prints the message with its own flag names (`--learning-rate`) instead."""


class TrainingInterrupted(AigcError):
    """Ctrl-C during training: a checkpoint was saved and re-running the same command resumes."""
