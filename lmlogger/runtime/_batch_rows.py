"""How many samples one step really had: the batch's own first dimensions, and metric updates of that grain.

Lightning weights each step of an ``on_epoch`` mean by the ``batch_size=`` given to ``self.log`` or, without
one, by the first size it meets walking the batch (``len()`` of the first tensor of a dict, tuple or
dataclass; strings skipped). When the batch's tensors disagree on their first dimension it warns ("Trying
to infer the `batch_size` from an ambiguous collection") and keeps that first size.

This module reads the same batch, once per step and shapes only (no device sync), and decides what the
step's true number of samples is, or that it cannot be known. The rule (docs/samples.md, "The evidence"):

1. **Only batch-granular evidence counts.** A metric update's rows are evidence only when they equal the
   first dimension of some tensor of the batch: per-token rows (``preds.flatten()`` of ``(B, T)``) or
   per-pixel rows (``(B*H*W,)``) are not samples, and say nothing about the step's weight.
2. **An explicit ``batch_size=`` is trusted** when some tensor of the batch has that first dimension;
   otherwise only the step's metric updates, agreeing at batch grain on another count, outweigh it.
3. **Inferred**: the number of dataset items the loader's batch sampler put in the batch (a plain
   ``BatchSampler`` over a sampler of known length), when some tensor of the batch has that size; else the
   metric updates' batch-granular rows if they agree on one; else, with one size in the batch, Lightning's
   guess is that size and there is nothing to claim.
4. **Inferred, the batch disagrees with itself and nothing above decides**: the size of the targets (a dict
   entry or field named ``y``, ``target(s)``, ``label(s)``, or the second element of an ``(x, y)`` pair);
   else a size shared by more than half of the batch's tensors; else the count is unknown, and the key says
   so (``unverified``) when the steps' shapes vary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

#: Names of a batch entry that holds the targets (compared in lower case).
TARGET_NAMES = frozenset({"y", "target", "targets", "label", "labels"})
_MAX_LEAVES = 64  # a batch is walked for its shapes only this far: bounded work per step
_MAX_DEPTH = 4
_PARALLEL = 4  # a nested list of at most this many equally long tensors is parallel inputs, not samples


@dataclass(frozen=True)
class BatchShape:
    """The first dimensions of one batch's entries, in Lightning's order, and which one is the target."""

    sizes: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    target: int | None = None

    @property
    def ambiguous(self) -> bool:
        return len(set(self.sizes)) > 1

    def describe(self) -> str:
        return ", ".join(f"{n}: {s}" for n, s in zip(self.names, self.sizes, strict=True))


def batch_shape(batch: Any) -> BatchShape:
    """The :class:`BatchShape` of ``batch`` (empty when nothing in it has a first dimension)."""
    sizes: list[int] = []
    names: list[str] = []
    targets: list[int] = []

    def leaf(size: int, name: str, target: bool) -> None:
        sizes.append(size)
        names.append(name)
        if target:
            targets.append(size)

    def visit(obj: Any, name: str, depth: int, target: bool) -> None:
        if len(sizes) >= _MAX_LEAVES or depth > _MAX_DEPTH:
            return
        if isinstance(obj, Tensor):
            leaf(int(obj.shape[0]) if obj.dim() else 1, name, target)
        elif isinstance(obj, Mapping):
            for key, value in obj.items():
                visit(value, str(key), depth + 1, str(key).lower() in TARGET_NAMES)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                visit(getattr(obj, f.name), f.name, depth + 1, f.name.lower() in TARGET_NAMES)
        elif isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple: named like a dict
            for key, value in zip(obj._fields, obj, strict=False):
                visit(value, key, depth + 1, key.lower() in TARGET_NAMES)
        elif isinstance(obj, (list, tuple)):
            containers = [isinstance(v, (Tensor, Mapping, list, tuple)) for v in obj]
            if depth == 0 and any(containers):  # the batch itself: (x, y), [x, y, lengths]
                for i, value in enumerate(obj):
                    pair_target = len(obj) == 2 and i == 1 and isinstance(value, Tensor)
                    visit(value, f"[{i}]", depth + 1, pair_target)
            elif _parallel(obj):  # a few inputs of one batch: [x1, x2]
                for i, value in enumerate(obj):
                    visit(value, f"{name}[{i}]", depth + 1, target)
            elif obj:  # one entry per sample: strings, ids, per-sample tensors of varying length, dicts
                leaf(len(obj), name, target)

    try:
        visit(batch, "batch", 0, False)
    except Exception:  # a batch type that cannot be walked: no evidence
        return BatchShape()
    target = targets[0] if len(set(targets)) == 1 else None
    return BatchShape(tuple(sizes), tuple(names), target)


def _parallel(obj: list | tuple) -> bool:
    if not obj or len(obj) > _PARALLEL or not all(isinstance(v, Tensor) and v.dim() for v in obj):
        return False
    return len({int(v.shape[0]) for v in obj}) == 1


def true_count(
    shape: BatchShape | None, rows: set[int], given: bool, weight: int | None = None, items: int | None = None
) -> tuple[int | None, bool]:
    """``(samples of the step or None, unknown)`` by the module docstring's rule.

    ``rows`` are the first dimensions of the step's metric updates; ``given`` says whether Lightning's
    ``weight`` was the user's ``batch_size=``; ``items`` is how many dataset items the loader's batch sampler
    put in the batch. ``unknown`` is true when the batch disagrees with itself and nothing tells which of
    its sizes counts samples.
    """
    if shape is None or not shape.sizes:
        return None, False  # nothing at batch grain to compare with
    granular = {r for r in rows if r in shape.sizes}
    metric = next(iter(granular)) if len(granular) == 1 else None
    if given:  # the user's own count: trusted when the batch has it, else only a metric's rows outweigh it
        return (None if weight in shape.sizes else metric), False
    if items is not None and items in shape.sizes:
        return items, False
    if metric is not None:
        return metric, False
    if not shape.ambiguous:
        return None, False  # Lightning's guess is the batch's only size
    if shape.target is not None:
        return shape.target, False
    for size in dict.fromkeys(shape.sizes):
        if 2 * shape.sizes.count(size) > len(shape.sizes):
            return size, False
    return None, True
