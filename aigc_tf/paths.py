"""Where aigc_tf keeps what it downloads and caches.

One folder per user, like `~/tensorflow_datasets`, so fresh clones and CI runs on the same machine share the fetched
data and the evaluation classifier. `AIGC_TF_HOME` moves it (tests and read-only home folders).
"""

import os
from pathlib import Path


def home() -> Path:
    """The cache root: `$AIGC_TF_HOME`, else `$XDG_CACHE_HOME/aigc_tf`, else `~/.cache/aigc_tf`."""
    if os.environ.get("AIGC_TF_HOME"):
        return Path(os.environ["AIGC_TF_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "aigc_tf"


def data_dir() -> Path:
    return home() / "data"


def classifier_dir() -> Path:
    return home() / "classifiers"
