"""Every offline dataset by name, images and text alike: what `aigc-tf data fetch` and `data list` work from.

Image sets live in `aigc_tf.data.sources`, text corpora in `aigc_tf.data.text_sources`; this module is the one
place that knows both.
"""

from __future__ import annotations

from pathlib import Path


def fetch_dataset(name: str, source: str | None = None, force: bool = False, say=print) -> Path:
    """Fetch one dataset (`mnist`, `fashion_mnist`, `sotu`, `moby_dick`) into the cache; returns its path."""
    from aigc_tf.data import sources
    from aigc_tf.data.text_sources import TEXT_SOURCES

    src = TEXT_SOURCES[name] if name in TEXT_SOURCES else sources.get_source(name, source)
    say(f"Fetching {src.description} ...")
    return src.fetch(force=force)


def dataset_table() -> str:
    """One line per offline source: dataset, source, fetched or not, what it is; and where the cache is."""
    from aigc_tf import paths
    from aigc_tf.data import sources
    from aigc_tf.data.text_sources import TEXT_SOURCES

    rows = [(dataset, name, src) for (dataset, name), src in sources.SOURCES.items()]
    rows += [(name, src.registry, src) for name, src in TEXT_SOURCES.items()]
    lines = [f"{dataset:<14} {name:<8} {'fetched' if src.is_fetched() else 'not fetched':<12} {src.description}"
             for dataset, name, src in rows]
    return "\n".join(lines + [f"cache: {paths.data_dir()}  (set AIGC_TF_HOME to move it)"])
