"""The one collective lmlogger makes: an exchange of partial epoch states at each epoch close.

Every rank calls :meth:`Exchange.gather` at the same window boundary (callback hooks run on all
ranks in the same order), exactly once per closed epoch, whatever keys it logged. Nothing is
exchanged per step.

A process that took part in the exchange over a gloo group destroys the default process group at
interpreter exit (an ``atexit`` handler, registered once, that does nothing if the group is gone
already). Lightning never destroys a gloo group (it does so for NCCL only), so without it the group's
C++ worker threads, and the last collectives' work objects with the tensors they hold, are torn down
during interpreter finalization, when the interpreter can no longer be entered: a rank then ends
with "terminate called without an active exception" (SIGABRT), or hangs, at exit. Destroying the
group while the interpreter is still whole joins those threads first; at that point the run is over.
"""

from __future__ import annotations

import atexit
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


_release_registered = False


def _release_at_exit() -> None:
    """``atexit``: destroy a gloo default process group still alive (see module docstring); never raises."""
    try:
        if dist.is_available() and dist.is_initialized() and dist.get_backend() == "gloo":
            dist.destroy_process_group()
    except Exception:  # exiting anyway: nothing to report to
        pass


def _release_on_exit() -> None:
    global _release_registered
    if not _release_registered:
        _release_registered = True
        atexit.register(_release_at_exit)


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
        _release_on_exit()
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
