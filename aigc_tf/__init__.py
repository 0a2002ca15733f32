"""aigc_tf: generative AI on TensorFlow/Keras, written to be read.

Images: an MLP GAN trained by an XLA-compiled step (`aigc_tf.gan`), measured with a classifier-based FID and
Inception-style score (`aigc_tf.metrics`). Data: real digits that ship in packages, so everything runs offline
(`aigc_tf.data`). Deployment: SavedModels in TF Serving's `<name>/<version>/` layout (`aigc_tf.export`).
The command line (`aigc-tf`, `python -m aigc_tf`) only parses flags and calls these modules.
"""

__version__ = "0.1.0"


class AigcError(Exception):
    """An error the user can fix; the CLI prints its message as one line instead of a traceback."""


class TrainingInterrupted(AigcError):
    """Ctrl-C during training: a checkpoint was saved and re-running the same command resumes."""
