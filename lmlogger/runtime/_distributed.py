"""The one collective lmlogger makes: an exchange of partial epoch states at each epoch close.

Every rank calls :meth:`Exchange.gather` at the same window boundary (callback hooks run on all
ranks in the same order), exactly once per closed epoch, whatever keys it logged. Nothing is
exchanged per step.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from torch import Tensor


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if hasattr(obj, "__dataclass_fields__"):
        return type(obj)(**{k: _to_cpu(getattr(obj, k)) for k in obj.__dataclass_fields__})
    return obj


class Exchange:
    """Gathers ``{key: partial}`` dicts from all ranks; a local pass-through in one process."""

    collectives = 0  # class-wide counter, read by tests

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    @property
    def world_size(self) -> int:
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
        return 1

    def gather(
        self, tensors: dict[str, Any], pieces: dict[str, list[Any]], logged: dict[str, Any]
    ) -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, Any]]:
        """``({key: [partial of each rank]}, {metric: [pieces of all ranks]}, rank 0's logged values)``.

        Every rank judges with rank 0's logged values (the ones the tracker stores), so all ranks
        reach the same verdicts, and ``on_mismatch="raise"`` raises on all ranks or on none.
        """
        if self.world_size == 1:
            return {k: [v] for k, v in tensors.items()}, dict(pieces), logged
        payload = (_to_cpu(tensors), _to_cpu(pieces), logged)
        out: list[Any] = [None] * self.world_size
        Exchange.collectives += 1
        dist.all_gather_object(out, payload)
        all_tensors: dict[str, list[Any]] = {}
        all_pieces: dict[str, list[Any]] = {}
        for rank_tensors, rank_pieces, _ in out:
            for k, v in rank_tensors.items():
                all_tensors.setdefault(k, []).append(v)
            for k, v in rank_pieces.items():
                all_pieces.setdefault(k, []).extend(v)
        return all_tensors, all_pieces, out[0][2]
