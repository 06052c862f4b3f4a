"""Per-epoch accounting: which part of a metric's state belongs to which epoch, and tensor reductions.

Two ledgers live here.

:class:`MetricTap` follows one ``torchmetrics.Metric`` through a run. Lightning runs hooks in
*windows* (a training epoch, a validation run, a test run, the sanity check); at every window
boundary the tap folds the state accumulated since the last boundary into the window that owned
it. The fold subtracts the snapshot taken at the previous boundary: exact for ``sum`` and ``cat``
states, and exact for any state whose snapshot was the default (after ``reset()``). A ``reset()``
called by user code in the middle of a window is intercepted (on that instance only) and folds
first, so the epoch state survives it. Boundaries only compare integer update counts unless the
state changed, so the accounting costs nothing per step.

:class:`TensorLedger` recomputes Lightning's ``reduce_fx`` of plain logged tensors in float64. Step
values are buffered as device tensors (no host sync) and folded into float64 accumulators every
``_FOLD_EVERY`` values, so memory is bounded by the number of keys, not steps.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import data as tm_data

Owner = tuple[str, int]  # (phase, epoch index); phase "sanity" is discarded

_SUM = "sum"
_CAT = "cat"
_MAX = "max"
_MIN = "min"
_OTHER = "other"
_REDUCTIONS = {
    tm_data.dim_zero_sum: _SUM,
    tm_data.dim_zero_cat: _CAT,
    tm_data.dim_zero_max: _MAX,
    tm_data.dim_zero_min: _MIN,
}
# Metric.forward() resets the metric internally; those resets are not the user's.
_FORWARD_CODES = frozenset(
    fn.__code__
    for fn in (
        getattr(Metric, "_forward_full_state_update", None),
        getattr(Metric, "_forward_reduce_state_update", None),
        getattr(Metric, "forward", None),
    )
    if fn is not None
)


def _reduction_name(fn: Any) -> str:
    return _REDUCTIONS.get(fn, _OTHER)


@dataclass
class _Piece:
    """State accumulated by one metric during one stretch of a window."""

    states: dict[str, Any]
    count: int
    exact: bool = True
    reason: str | None = None


_NOT_KEPT = (
    "the metric was logged only with on_step=True when its state was folded, so lmlogger did not keep "
    "that part of the epoch's state"
)


def _combine(a: _Piece, b: _Piece, reductions: dict[str, str]) -> _Piece:
    """One piece holding ``a`` and ``b`` (consecutive stretches, or two ranks), as small as their states allow.

    ``a`` is consumed. A piece that cannot be merged keeps no state, only the reason.
    """
    count = a.count + b.count
    if not (a.exact and b.exact):
        return _Piece({}, count, False, a.reason if not a.exact else b.reason)
    states = a.states
    for name, red in reductions.items():
        x, y = states[name], b.states[name]
        if red == _CAT:
            if isinstance(x, list):
                x.extend(y if isinstance(y, list) else [y])  # ``a``'s own list (see _delta and merge)
            elif isinstance(y, list):
                states[name] = [x, *y]
            else:  # a tensor cat state stays a tensor, as the metric's own update keeps it
                states[name] = torch.cat([x.reshape(-1, *x.shape[1:]), y.reshape(-1, *y.shape[1:])])
        elif red == _SUM:
            states[name] = x + y
        elif red in (_MAX, _MIN):
            states[name] = (torch.maximum if red == _MAX else torch.minimum)(x, y)
        else:
            reason = f"state `{name}` has a custom reduction and was updated in several stretches"
            return _Piece({}, count, False, reason)
    return _Piece(states, count)


@dataclass
class _WindowState:
    """One window's share of a metric: its state so far, merged as it is folded (at most one piece,
    so memory is bounded by the metric's own state size, never by the number of folds)."""

    pieces: list[_Piece] = field(default_factory=list)
    carried: int = 0  # updates present when the window first began (before any reset in it)
    resets: int = 0
    reset_before_end: bool = False

    def add(self, piece: _Piece, reductions: dict[str, str]) -> None:
        if self.pieces:
            self.pieces[0] = _combine(self.pieces[0], piece, reductions)
        else:
            self.pieces.append(piece)


class _ResetTap:
    """Instance-level ``reset`` of a tapped metric: folds the state, then resets as usual.

    Copies of the metric (``deepcopy``, pickling) get a plain pass-through, never a second tap.
    """

    def __init__(self, metric: Metric, tap: MetricTap) -> None:
        self.metric = metric
        self.tap = tap

    def __call__(self) -> None:
        if sys._getframe(1).f_code not in _FORWARD_CODES:
            self.tap.on_user_reset()
        type(self.metric).reset(self.metric)

    def __deepcopy__(self, memo: dict[int, Any]) -> _PassThroughReset:
        return _PassThroughReset(copy.deepcopy(self.metric, memo))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_PassThroughReset, (self.metric,))


class _PassThroughReset:
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def __call__(self) -> None:
        type(self.metric).reset(self.metric)


class MetricTap:
    """Epoch accounting of one metric instance (see module docstring)."""

    def __init__(self, metric: Metric, attribute: str) -> None:
        self.metric = metric
        self.attribute = attribute
        self.reductions = {name: _reduction_name(fn) for name, fn in metric._reductions.items()}
        self.owner: Owner | None = None
        self.windows: dict[Owner, _WindowState] = {}
        self.phases_updated: set[str] = set()
        # Whether some key's epoch value may need this metric's per-epoch state: unknown (kept) until a
        # key is bound to the metric; a metric bound only to step-only keys keeps no folded state.
        self.bound = False
        self.epoch_needed = False
        self._shadow: Metric | None = None
        self._base_count = metric._update_count
        self._baseline: dict[str, Any] | None = self._snapshot() if self._base_count else None
        self._installed = False

    # -- installation -------------------------------------------------------------------------
    def install(self) -> None:
        if not self._installed and "reset" not in self.metric.__dict__:
            self.metric.__dict__["reset"] = _ResetTap(self.metric, self)
            self._installed = True

    def remove(self) -> None:
        if self._installed and isinstance(self.metric.__dict__.get("reset"), _ResetTap):
            del self.metric.__dict__["reset"]
        self._installed = False

    # -- state handling ----------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.reductions:
            value = getattr(self.metric, name)
            if isinstance(value, list):
                out[name] = len(value)
            elif isinstance(value, Tensor):
                out[name] = value.detach().clone()
            else:
                out[name] = copy.deepcopy(value)
        return out

    def _delta(self) -> _Piece:
        count = self.metric._update_count - self._base_count
        states: dict[str, Any] = {}
        base = self._baseline
        exact, reason = True, None
        for name, red in self.reductions.items():
            value = getattr(self.metric, name)
            if base is None:  # the snapshot was the default state: the whole state is new
                states[name] = list(value) if isinstance(value, list) else _clone(value)
            elif isinstance(value, list):
                start = base[name] if isinstance(base[name], int) else 0
                if red != _CAT or start > len(value):
                    exact, reason = (
                        False,
                        f"list state `{name}` changed in a way that cannot be split by epoch",
                    )
                states[name] = list(value[start:])
            elif red == _SUM and isinstance(value, Tensor):
                states[name] = value.detach() - base[name]
            else:
                exact = False
                reason = (
                    f"state `{name}` is reduced with `{red}` and the metric was not reset before the epoch, "
                    "so the epoch's own part of the state cannot be separated"
                )
                states[name] = _clone(value)
        return _Piece(states, count, exact, reason)

    def bind(self, on_epoch: bool) -> None:
        """A logged key uses this metric (``on_epoch``: its epoch value is verified against it)."""
        self.bound = True
        self.epoch_needed = self.epoch_needed or on_epoch

    def fold(self) -> None:
        """Move what accumulated since the last boundary into the current owner's window."""
        count = self.metric._update_count
        if count == self._base_count:
            return
        if count < self._base_count:  # reset by something we did not see (e.g. a class-level call)
            self._baseline = None
            self._base_count = 0
        if self.owner is not None:
            if self.bound and not self.epoch_needed:
                piece = _Piece({}, count - self._base_count, False, _NOT_KEPT)
            else:
                piece = self._delta()
            if piece.count > 0:
                self.windows.setdefault(self.owner, _WindowState()).add(piece, self.reductions)
                self.phases_updated.add(self.owner[0])
        self._baseline = self._snapshot()
        self._base_count = count

    def switch(self, owner: Owner | None, begins: bool = False) -> None:
        """A window boundary: fold into the current owner, then hand the metric to ``owner``."""
        self.fold()
        self.owner = owner
        if owner is not None and begins:
            window = self.windows.setdefault(owner, _WindowState())
            window.carried = self._base_count

    def mark_end(self, owner: Owner) -> None:
        """The window's epoch values are about to be computed (Lightning's epoch end)."""
        window = self.windows.get(owner)
        if window is not None and window.resets:
            window.reset_before_end = True

    def on_user_reset(self) -> None:
        self.fold()
        if self.owner is not None:
            self.windows.setdefault(self.owner, _WindowState()).resets += 1
        self._baseline = None
        self._base_count = 0

    def carried(self, owner: Owner) -> int:
        """Updates from before ``owner`` began that were still in the state at its epoch end."""
        window = self.windows.get(owner)
        if window is None or window.reset_before_end:
            return 0
        return window.carried

    def pop(self, owner: Owner) -> _WindowState | None:
        return self.windows.pop(owner, None)

    def window(self, owner: Owner) -> _WindowState | None:
        return self.windows.get(owner)

    # -- reference -----------------------------------------------------------------------------
    def merge(self, pieces: list[_Piece]) -> tuple[dict[str, Any] | None, int, str | None]:
        """Merge pieces into one state: ``(state, update_count, reason_if_impossible)``."""
        if not pieces:
            return None, 0, "the metric received no updates in this epoch"
        first = pieces[0]
        states = {k: list(v) if isinstance(v, list) else v for k, v in first.states.items()}
        merged = _Piece(states, first.count, first.exact, first.reason)
        for piece in pieces[1:]:
            merged = _combine(merged, piece, self.reductions)
        if not merged.exact:
            return None, 0, merged.reason
        return merged.states, merged.count, None

    def compute(self, state: dict[str, Any], count: int) -> Any:
        """``compute()`` of a private copy of the metric holding ``state`` (the user's metric is untouched)."""
        shadow = self._shadow
        if shadow is None:
            shadow = self._shadow = _empty_copy(self.metric)
        type(shadow).reset(shadow)
        device = getattr(self.metric, "device", None)
        for name, value in state.items():
            if isinstance(value, list):
                value = [v.to(device) if isinstance(v, Tensor) and device is not None else v for v in value]
            elif isinstance(value, Tensor) and device is not None:
                value = value.to(device)
            setattr(shadow, name, value)
        shadow._update_count = count
        shadow._computed = None
        shadow._to_sync = False  # the state is already global (lmlogger merges ranks itself)
        shadow._should_unsync = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return shadow.compute()


def _clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def _empty_copy(metric: Metric) -> Metric:
    """A copy of ``metric`` to compute references with: its own empty states, nothing else copied.

    States (of the metric and of metrics nested in it) start empty and caches are dropped; every
    other module it holds (a feature extractor of FID, KID, LPIPS, CLIPScore, BERTScore: millions of
    parameters) and every parameter or buffer is shared with the user's metric, never copied.
    """
    memo: dict[int, Any] = {}
    for module in metric.modules():
        if not isinstance(module, Metric):
            memo[id(module)] = module  # shared: deepcopy does not descend into it
            continue
        for name in module._defaults:
            value = getattr(module, name)
            memo[id(value)] = [] if isinstance(value, list) else value.detach().clone()
        for name in ("_forward_cache", "_computed", "_cache"):
            value = module.__dict__.get(name)
            if value is not None:
                memo[id(value)] = None
        reset = module.__dict__.get("reset")
        if reset is not None:
            memo[id(reset)] = None
        for tensor in (*module._parameters.values(), *module._buffers.values()):
            if tensor is not None:
                memo[id(tensor)] = tensor
    shadow = copy.deepcopy(metric, memo)
    for module in shadow.modules():
        if isinstance(module, Metric):
            module.__dict__.pop("reset", None)
    return shadow


# ---------------------------------------------------------------------------------------------
# tensor reductions
# ---------------------------------------------------------------------------------------------
_FOLD_EVERY = 256


class TensorLedger:
    """Float64 recomputation of Lightning's reduction of one key's step values, for one epoch."""

    __slots__ = ("_buf", "count", "max", "min", "reason", "reduce", "total", "weight")

    def __init__(self, reduce: str) -> None:
        self.reduce = reduce
        self._buf: list[tuple[Any, int, int]] = []  # (value, batch size, tensor version or -1)
        self.total: Any = 0.0  # sum of value * batch_size (mean) or of values (sum)
        self.weight = 0  # sum of batch sizes
        self.max: Any = -math.inf
        self.min: Any = math.inf
        self.count = 0
        self.reason: str | None = None

    def add(self, value: Any, batch_size: int) -> None:
        if isinstance(value, Tensor):
            value = value.detach()  # never keep the autograd graph alive
            # inference-mode tensors (validate/test) keep no version counter
            self._buf.append((value, batch_size, -1 if value.is_inference() else value._version))
        else:
            self._buf.append((value, batch_size, -1))
        self.count += 1
        if len(self._buf) >= _FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        buf, self._buf = self._buf, []
        if not buf:
            return
        for v, _, ver in buf:
            if ver >= 0 and v._version != ver:
                self.reason = "a logged tensor was modified in place after self.log; its value is unknowable"
        tensors = [v if isinstance(v, Tensor) else torch.tensor(float(v)) for v, _, _ in buf]
        bs = [b for _, b, _ in buf]
        device = next((t.device for t in tensors if t.device.type != "cpu"), torch.device("cpu"))
        values = torch.stack([t.reshape(()).to(device=device, dtype=torch.float64) for t in tensors])
        if self.reduce == "mean":
            weights = torch.tensor(bs, dtype=torch.float64).to(device, non_blocking=True)
            self.total = self.total + (values * weights).sum()
            self.weight += sum(bs)
        elif self.reduce == "sum":
            self.total = self.total + values.sum()
        elif self.reduce == "max":
            self.max = torch.maximum(torch.as_tensor(self.max, dtype=torch.float64, device=device), values.max())
        elif self.reduce == "min":
            self.min = torch.minimum(torch.as_tensor(self.min, dtype=torch.float64, device=device), values.min())

    def state(self) -> dict[str, Any]:
        """Host-side partial state (one sync, at epoch end), mergeable across ranks."""
        self._fold()
        return {
            "reduce": self.reduce,
            "total": float(self.total),
            "weight": self.weight,
            "max": float(self.max),
            "min": float(self.min),
            "count": self.count,
            "reason": self.reason,
        }


#: Lightning accumulates tensor epoch values in float32 (one rounding per step): over n steps the
#: relative error of a sum or mean can reach about n * 2**-24, which the comparison allows for.
FLOAT32_EPS = 2.0**-24


def accumulation_allowance(states: list[dict[str, Any]]) -> float:
    """Relative tolerance floor for a float32 running sum/mean over all ranks' step values."""
    if not states or states[0]["reduce"] not in ("mean", "sum"):
        return 0.0
    return sum(s["count"] for s in states) * FLOAT32_EPS


def reduce_states(states: list[dict[str, Any]]) -> tuple[float | None, str | None]:
    """The reduction over the partial states of all ranks: ``(value, reason_if_none)``."""
    states = [s for s in states if s["count"]]
    if not states:
        return None, "no step values were logged in this epoch"
    for s in states:
        if s["reason"]:
            return None, s["reason"]
    reduce = states[0]["reduce"]
    if reduce == "mean":
        weight = sum(s["weight"] for s in states)
        if weight == 0:
            return None, "the batch sizes of all steps sum to zero"
        return math.fsum(s["total"] for s in states) / weight, None
    if reduce == "sum":
        return math.fsum(s["total"] for s in states), None
    if reduce == "max":
        return max(s["max"] for s in states), None
    if reduce == "min":
        return min(s["min"] for s in states), None
    return None, f"reduce_fx `{reduce}` is a custom reduction lmlogger cannot recompute"
