"""TF Serving's request batching (`--enable_batching`), modelled rule for rule, to prove an export answers the same
batched as alone without a model server (none can be installed here).

What the server does with a request, from its source at 2.19.1 (the same in 2.16-2.20):
- `BatchingSession::ComputeInputSize` (`batching_util.h`): every input of a request must have at least one
  dimension and the same 0th-dimension size, or the request fails ("input tensors must have equal 0th-dimension
  size") before it is queued. So a control sent once ([1]) beside N > 1 prompts fails under batching.
- `SharedBatchScheduler`: a request larger than `max_batch_size` fails ("Task size N is larger than maximum input
  batch size"), unless `enable_large_batch_splitting`, which cuts it into pieces that fill the open batch first
  and then batches of `max_execution_batch_size`; the pieces' outputs are concatenated back (`tensor::Concat`, so
  every piece's outputs must agree beyond dimension 0). A batch closes when full or `batch_timeout_micros` after
  its first request; `num_batch_threads` threads run closed batches.
- `BatchingSession::MergeInputTensors`: with `pad_variable_length_inputs`, each request's tensor is padded at the
  end of every dimension past the 0th to the batch's largest, with the tensor's own first element
  (`batching_util.cc`: `T pad_value(input.flat<T>()(0))`); without it, different shapes fail the whole batch
  (FailedPrecondition). The batch is then padded up to the next `allowed_batch_sizes` entry with copies of the
  last request's first row, and run once.
- `SplitOutputTensors`: every output's 0th dimension must equal the padded batch size; each request gets its rows.

`BatchingSession(run, parameters)` applies these rules around `run(inputs) -> outputs` (numpy dicts), for example a
`tf.compat.v1.Session` holding the export; `parse_batching_parameters` reads the text proto that
`aigc-tf serving config --batching` writes.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import numpy as np


class ServingStatus(Exception):
    """An error status as the server returns it: a gRPC code name and the server's message."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass
class BatchingParameters:
    """The `BatchingParameters` proto's fields, with the defaults the server uses for fields left out
    (`SharedBatchScheduler::QueueOptions`, `::Options`)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 0  # 0: the server's default, one per core
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None  # None: max_batch_size

    def __post_init__(self):
        if self.allowed_batch_sizes and self.allowed_batch_sizes[-1] != self.max_batch_size:
            raise ServingStatus("INVALID_ARGUMENT", "Last entry in allowed_batch_sizes must match max_batch_size; "
                                f"last entry was {self.allowed_batch_sizes[-1]}; expected {self.max_batch_size}")
        if list(self.allowed_batch_sizes) != sorted(set(self.allowed_batch_sizes)):
            raise ServingStatus("INVALID_ARGUMENT", "allowed_batch_sizes entries must be monotonically increasing")

    @property
    def execution_limit(self) -> int:
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size


def parse_batching_parameters(text: str) -> BatchingParameters:
    """The text-format `BatchingParameters` of `--batching_parameters_file` (the fields this model knows)."""
    fields = {}
    for name, value in re.findall(r"(\w+)\s*\{\s*value:\s*(\w+)\s*\}", text):
        fields[name] = value == "true" if value in ("true", "false") else int(value)
    for name, value in re.findall(r"^\s*(\w+):\s*(\w+)\s*$", text, re.MULTILINE):
        if name == "allowed_batch_sizes":
            fields.setdefault(name, []).append(int(value))
        else:
            fields[name] = value == "true"
    fields["allowed_batch_sizes"] = tuple(fields.get("allowed_batch_sizes", ()))
    known = set(BatchingParameters.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"batching parameters this model does not know: {unknown}")
    return BatchingParameters(**fields)


# ---------------------------------------------------------------------------------------------------- the rules
def input_size(inputs: dict) -> int:
    """`ComputeTensorBatchSize`: the shared 0th dimension of a request's inputs."""
    if not inputs:
        raise ServingStatus("INVALID_ARGUMENT", "Batching Run() must have at least one input tensor")
    sizes = set()
    for value in inputs.values():
        if np.ndim(value) == 0:
            raise ServingStatus("INVALID_ARGUMENT", "Batching Run() input tensors must have at least one dimension")
        sizes.add(np.shape(value)[0])
    if len(sizes) != 1:
        raise ServingStatus("INVALID_ARGUMENT", "Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def pad_to(value: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    """`AddPadding`: pad every dimension past the 0th at its end to `dims`, with the tensor's own first element."""
    value = np.asarray(value)
    widths = [(0, 0)] + [(0, want - have) for have, want in zip(value.shape[1:], dims[1:])]
    if not any(after for _, after in widths):
        return value
    return np.pad(value, widths, mode="constant", constant_values=value.flat[0])


def round_up(size: int, allowed: tuple[int, ...]) -> int:
    """`RoundToLowestAllowedBatchSize`."""
    return next((s for s in allowed if s >= size), size)


def merge_inputs(requests: list[dict], parameters: BatchingParameters) -> tuple[dict, int]:
    """`MergeInputTensors`: one feed for a batch of requests, and the number of padding rows added."""
    size = sum(input_size(r) for r in requests)
    padding = round_up(size, parameters.allowed_batch_sizes) - size
    merged = {}
    for name in requests[0]:
        parts = [np.asarray(r[name]) for r in requests]
        if parameters.pad_variable_length_inputs:
            dims = tuple(np.max([p.shape for p in parts], axis=0))
            parts = [pad_to(p, dims) for p in parts]
        elif any(p.shape[1:] != parts[0].shape[1:] for p in parts):
            raise ServingStatus("FAILED_PRECONDITION", f"Tensors with name '{name}' from different tasks have "
                                "different shapes and padding is turned off.")
        if padding:
            parts.append(np.repeat(parts[-1][:1], padding, axis=0))  # the last request's first row
        merged[name] = np.concatenate(parts, axis=0)
    return merged, padding


def split_outputs(outputs: dict, sizes: list[int], padding: int) -> list[dict]:
    """`SplitOutputTensors`: each request's rows of the batch's outputs."""
    for name, value in outputs.items():
        if np.ndim(value) == 0:
            raise ServingStatus("FAILED_PRECONDITION", "Batched output tensor has 0 dimensions")
        if np.shape(value)[0] != sum(sizes) + padding:
            raise ServingStatus("FAILED_PRECONDITION", "Batched output tensor's 0th dimension does not equal the "
                                "sum of the 0th dimension sizes of the input tensors")
    bounds = np.cumsum([0] + sizes)
    return [{name: np.asarray(value)[a:b] for name, value in outputs.items()} for a, b in zip(bounds, bounds[1:])]


def split_sizes(size: int, open_slots: int, limit: int) -> list[int]:
    """`InputSplitMetadata`: a large request's pieces, the open batch's free slots first, then `limit` each."""
    pieces = []
    if open_slots > 0:
        pieces.append(min(open_slots, size))
        size -= pieces[0]
    while size > 0:
        pieces.append(min(limit, size))
        size -= pieces[-1]
    return pieces


def concat_outputs(pieces: list[dict]) -> dict:
    """`tensor::Concat` of a split request's pieces (fails if they differ past dimension 0)."""
    out = {}
    for name in pieces[0]:
        parts = [p[name] for p in pieces]
        if any(p.shape[1:] != parts[0].shape[1:] for p in parts):
            raise ServingStatus("INVALID_ARGUMENT", f"Ranks of all input tensors should match: output {name!r} "
                                f"pieces have shapes {[p.shape for p in parts]}")
        out[name] = np.concatenate(parts, axis=0)
    return out


# ---------------------------------------------------------------------------------------------------- the session
class _Piece:
    def __init__(self, inputs: dict, size: int):
        self.inputs, self.size = inputs, size
        self.done, self.outputs, self.error = threading.Event(), None, None


class BatchingSession:
    """`run(inputs)` answered as TF Serving's BatchingSession answers it: queued with other threads' requests,
    merged, padded, run once per batch by `run_batch(feeds) -> outputs`, and split back.

    One queue per `signature` (the server keys queues by the set of input and output tensor names). Thread-safe:
    call `run` from as many client threads as the test needs; `close()` stops the batch threads.
    """

    def __init__(self, run_batch, parameters: BatchingParameters, num_threads: int | None = None):
        import os

        self.run_batch, self.parameters = run_batch, parameters
        self.lock = threading.Condition()
        self.open: dict[str, list[_Piece]] = {}
        self.opened_at: dict[str, float] = {}
        self.closed: list[tuple[str, list[_Piece]]] = []
        self.stopping = False
        self.batches: list[int] = []  # the padded size of every batch run, for reports
        threads = num_threads or parameters.num_batch_threads or os.cpu_count() or 1
        self.threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def run(self, inputs: dict, signature: str = "serving_default") -> dict:
        size = input_size(inputs)
        p = self.parameters
        if size > p.max_batch_size:
            raise ServingStatus("INVALID_ARGUMENT", f"Task size {size} is larger than maximum input batch size "
                                f"{p.max_batch_size}")
        with self.lock:
            open_batch = self.open.get(signature, [])
            free = p.execution_limit - sum(piece.size for piece in open_batch)
            if p.enable_large_batch_splitting and size > free:
                sizes = split_sizes(size, free, p.execution_limit)
            else:
                sizes = [size]
            bounds = np.cumsum([0] + sizes)
            pieces = [_Piece({k: np.asarray(v)[a:b] for k, v in inputs.items()}, b - a)
                      for a, b in zip(bounds, bounds[1:])]
            if len(self.closed) >= p.max_enqueued_batches:
                raise ServingStatus("UNAVAILABLE", "The batch scheduling queue to which this task was submitted is "
                                    "full")
            for piece in pieces:
                self._enqueue(signature, piece)
            self.lock.notify_all()
        for piece in pieces:
            piece.done.wait()
        errors = [piece.error for piece in pieces if piece.error is not None]
        if errors:
            raise errors[0]
        return pieces[0].outputs if len(pieces) == 1 else concat_outputs([piece.outputs for piece in pieces])

    def _enqueue(self, signature: str, piece: _Piece) -> None:
        """Into the open batch if it fits, else close that batch and open a new one (called holding the lock)."""
        batch = self.open.get(signature)
        if batch and sum(x.size for x in batch) + piece.size > self.parameters.execution_limit:
            self._close(signature)
            batch = None
        if not batch:
            self.open[signature], self.opened_at[signature] = [], time.perf_counter()
        self.open[signature].append(piece)
        if sum(x.size for x in self.open[signature]) >= self.parameters.execution_limit:
            self._close(signature)

    def _close(self, signature: str) -> None:
        self.closed.append((signature, self.open.pop(signature)))
        self.opened_at.pop(signature, None)

    def _worker(self) -> None:
        timeout = self.parameters.batch_timeout_micros / 1e6
        while True:
            with self.lock:
                while True:
                    if self.stopping:
                        return
                    now = time.perf_counter()
                    for signature, opened in list(self.opened_at.items()):
                        if now - opened >= timeout:
                            self._close(signature)
                    if self.closed:
                        signature, batch = self.closed.pop(0)
                        break
                    waits = [opened + timeout - now for opened in self.opened_at.values()]
                    self.lock.wait(timeout=max(min(waits), 0) if waits else 0.05)
            self._run(batch)

    def _run(self, batch: list[_Piece]) -> None:
        try:
            feeds, padding = merge_inputs([piece.inputs for piece in batch], self.parameters)
            self.batches.append(len(next(iter(feeds.values()))))
            answers = split_outputs(self.run_batch(feeds), [piece.size for piece in batch], padding)
            for piece, outputs in zip(batch, answers):
                piece.outputs = outputs
        except ServingStatus as err:
            for piece in batch:
                piece.error = err
        except Exception as err:  # noqa: BLE001  (the model's own error: every request of the batch gets it)
            status = ServingStatus("INVALID_ARGUMENT", str(err).strip().splitlines()[0][:300])
            for piece in batch:
                piece.error = status
        for piece in batch:
            piece.done.set()

    def close(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        for thread in self.threads:
            thread.join()
