"""Picking a `tf.distribute` strategy: one device, every local device, or several machines.

TensorFlow's own strategies do the work; this module only chooses one from a flag and answers the two questions
every trainer asks under it: "am I the chief?" (only the chief writes the run folder) and "where do I write?".

| `--strategy`  | strategy                                  | when                                              |
|---------------|-------------------------------------------|---------------------------------------------------|
| `one`         | the default strategy (no distribution)    | one device; the GAN keeps its XLA-compiled step   |
| `mirrored`    | `MirroredStrategy` over the local GPUs    | one machine, several GPUs (or logical CPUs)       |
| `multiworker` | `MultiWorkerMirroredStrategy`             | several machines (or processes), from `TF_CONFIG` |
| `auto`        | multiworker if `TF_CONFIG` names a cluster, else mirrored if there are 2+ GPUs, else one |

Synchronous data parallelism: each replica takes `global_batch / replicas` examples of every batch, gradients are
all-reduced, and every replica applies the same update, so N replicas compute the update one device would on the
same global batch.

`MultiWorkerMirroredStrategy` must be created before TensorFlow initialises its devices (before the first op), so
trainers call `select_strategy` first thing.

Under a distributed strategy the train steps are plain `tf.function` graphs, not XLA: an XLA-compiled function
around `strategy.run` (or Keras' `fit` with `jit_compile=True`) fails on mirrored variables ("Trying to access
resource .../replica_1 located in device CPU:1 from device CPU:0", tensorflow.org/xla/known_issues). On one device
the GAN and `fit` keep XLA.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

from aigc_tf import AigcError

STRATEGIES = ("auto", "one", "mirrored", "multiworker")


def tf_config() -> dict | None:
    """The parsed `TF_CONFIG` (the cluster and this task), or None when unset; a clear error when malformed."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        value = json.loads(raw)
        workers = value["cluster"]["worker"]
        task = value["task"]
        task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise AigcError('TF_CONFIG is not valid: it must be JSON like {"cluster": {"worker": ["host1:port", '
                        '"host2:port"]}, "task": {"type": "worker", "index": 0}}') from None
    if not isinstance(workers, list) or not workers:
        raise AigcError("TF_CONFIG's cluster.worker must be a non-empty list of host:port addresses")
    return value


def select_strategy(name: str = "auto"):
    """The `tf.distribute.Strategy` for `--strategy name`, one instance per process and kind.

    Reusing the instance matters: two MirroredStrategy instances that both train in one process hand out the same
    collective-op keys and abort with "Shape mismatch in the collective instance", and a process can create only
    one MultiWorkerMirroredStrategy.
    """
    if name not in STRATEGIES:
        raise AigcError(f"unknown `strategy` {name!r}; choose one of {', '.join(STRATEGIES)}")
    return _strategy(_resolve(name), os.environ.get("TF_CONFIG"))


def _resolve(name: str) -> str:
    import tensorflow as tf

    cluster = tf_config()
    if name == "auto":
        if cluster and len(cluster["cluster"]["worker"]) + len(cluster["cluster"].get("chief", [])) > 1:
            name = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "one"
    return name


@functools.lru_cache(maxsize=None)
def _strategy(name: str, _tf_config: str | None):
    import tensorflow as tf

    cluster = tf_config()
    if name == "one":
        return tf.distribute.get_strategy()  # the default strategy: no replicas, no cross-device ops
    if name == "multiworker":
        if cluster is None:
            raise AigcError("the multiworker `strategy` needs TF_CONFIG (the cluster's workers and this task's index) "
                            "in the environment of every worker; see the README's 'Reliability and scale'")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy(local_devices())


def local_devices() -> list[str]:
    """Every local GPU, or every logical CPU when there is no GPU (tests split the CPU into logical devices)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def is_distributed(strategy) -> bool:
    """False for the default strategy, whose trainers keep their single-device fast path."""
    return type(strategy).__name__ != "_DefaultDistributionStrategy"


def is_chief(strategy) -> bool:
    """True on the one task that writes the run folder: the only task of a one-machine strategy, else the
    `chief` task, or worker 0 when the cluster names no chief (TensorFlow's convention)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def task_name(strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "local"
    return f"{resolver.task_type} {resolver.task_id}"


def write_dir(strategy, path: Path) -> Path:
    """Where this task saves checkpoints: `path` on the chief, a fresh temporary folder on the other workers.

    Every worker must take part in a save (the variables are read with collective ops), but only the chief's copy
    is kept: two writers on a shared file system would race on the same files.
    """
    if is_chief(strategy):
        return Path(path)
    return Path(tempfile.mkdtemp(prefix=f"aigc_tf-{task_name(strategy).replace(' ', '')}-"))


def enable_determinism() -> None:
    """Deterministic kernels (`tf.config.experimental.enable_op_determinism`): the same seed and data give the
    same weights, on GPUs too, at some cost in speed; an op without a deterministic kernel then raises instead of
    silently differing. Process-wide, so it is the entry point's call (`aigc-tf ... --deterministic`, or a notebook's
    first cell), never a library function's. (Seeds are fixed by every trainer from its config regardless.)"""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def start(name: str, batch_size: int):
    """A trainer's first call: `(strategy, chief)`, the `tf.distribute.Strategy` for `name` (a `strategy` name)
    with the global batch checked against its replicas, and whether this task is the chief, which writes the run
    folder. First, because a multi-worker strategy must be created before any other TensorFlow op."""
    strategy = select_strategy(name)
    check_batch_size(strategy, batch_size)
    return strategy, is_chief(strategy)


def check_batch_size(strategy, batch_size: int) -> int:
    """The per-replica batch: the global batch must split evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise AigcError(f"`batch_size` {batch_size} does not split evenly over {replicas} replicas; use a multiple "
                        f"of {replicas}")
    return batch_size // replicas
