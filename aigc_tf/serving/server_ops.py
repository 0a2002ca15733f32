"""Which TF Serving releases link the library ops an export needs.

A stock `tensorflow_model_server` links TF Text's ops at the version its `tensorflow_serving/workspace.bzl` pins
(`org_tensorflow_text`): TF Text 2.12.1 in TF Serving 2.16-2.19, 2.20.0 in 2.20 and after. An export built here
uses the installed TF Text, so the question for each release is whether its pinned TF Text registers every op the
export's graph names. `server_ops.json` answers it per release, written by this module's `main` from checkouts of
tensorflow/serving and tensorflow/text (an op counts as registered at a tag when its name occurs in that tag's
`tensorflow_text/core`, where TF Text registers its ops and kernels):

    python -m aigc_tf.serving.server_ops SERVING_GIT_DIR TEXT_GIT_DIR > aigc_tf/serving/server_ops.json
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

TABLE = Path(__file__).with_name("server_ops.json")
RELEASES = ("2.16.1", "2.17.1", "2.18.1", "2.19.1", "2.20.0", "HEAD")


def servers_covering(ops) -> dict[str, list[str]]:
    """`{"covered": [releases], "missing": {release: [ops]}}` for the TF Text ops `ops` of an export."""
    table = json.loads(TABLE.read_text())
    covered, missing = [], {}
    for release, entry in table["releases"].items():
        lacking = sorted(set(ops) - set(entry["tf_text_ops"]))
        if lacking:
            missing[release] = lacking
        else:
            covered.append(release)
    return {"covered": covered, "missing": missing}


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True, text=True, check=True).stdout


def main(serving_git: str, text_git: str) -> dict:
    """The table, from the ops the installed TF Text registers and the two repositories' history."""
    import glob
    import os

    import tensorflow as tf
    import tensorflow_text

    installed = set()
    for library in glob.glob(os.path.join(os.path.dirname(tensorflow_text.__file__), "**", "*.so"), recursive=True):
        try:
            module = tf.load_op_library(library)
        except Exception:  # noqa: BLE001  (helper libraries register no ops)
            continue
        installed |= {n for n in dir(module) if re.fullmatch(r"[A-Z][A-Za-z0-9]+", n)} - {"Annotated", "Any",
                                                                                          "List", "TypeVar"}
    releases = {}
    for release in RELEASES:
        workspace = _git(serving_git, "show", f"{release}:tensorflow_serving/workspace.bzl")
        pin = re.search(r'strip_prefix = "text-([0-9.]+)"', workspace).group(1)
        registered = [op for op in sorted(installed) if subprocess.run(
            ["git", "--git-dir", text_git, "grep", "-q", "-w", op, f"v{pin}", "--", "tensorflow_text/core"]).returncode
            == 0]
        releases[release if release != "HEAD" else "main " + _git(serving_git, "log", "-1", "--format=%cs").strip()] = {
            "tf_text": pin, "tf_text_ops": registered}
    return {"tf_text_installed": tensorflow_text.__version__, "releases": releases}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3]), indent=1))
