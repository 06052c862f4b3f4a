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
values are copied into a preallocated float64 buffer on their device (no host sync, no Python object
per step) and folded into float64 accumulators every ``_FOLD_EVERY`` values, so memory is bounded by the
number of keys, not steps.
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
from torchmetrics.wrappers import Running
from torchmetrics.wrappers.abstract import WrapperMetric

from lmlogger.runtime import _lightning

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


def _lightning_reset_codes() -> frozenset[Any]:
    """Lightning resets a logged metric object itself, after computing its epoch value: not a user's reset
    (``_ResultMetric.reset`` of every loaded namespace).

    Asked at every reset (torchmetrics' ``forward`` resets too, once per step): the set is kept until a module
    is imported (a namespace loaded later changes ``len(sys.modules)``), so a step costs one comparison."""
    if _reset_codes[0] != len(sys.modules):
        codes = frozenset(code for ns in _lightning.loaded() if (code := ns.result_reset_code) is not None)
        _reset_codes[:] = [len(sys.modules), codes]
    return _reset_codes[1]


_reset_codes: list[Any] = [-1, frozenset()]  # [len(sys.modules) when computed, the codes]


#: How many frames above a reset to look for torchmetrics' or Lightning's own reset: the caller itself, or the
#: caller of up to two wrappers another library put on the instance's ``reset`` (on top of lmlogger's tap).
_RESET_CALLER_DEPTH = 3


def _reset_caller(frame: Any) -> Any:
    """The code that reset a metric: torchmetrics' ``forward`` or Lightning's reset where one of them is the caller
    or calls through another library's wrappers; otherwise the direct caller (a user's reset)."""
    first = frame.f_code
    lightning_resets = _lightning_reset_codes()
    for _ in range(_RESET_CALLER_DEPTH):
        if frame is None:
            break
        code = frame.f_code
        if code in _FORWARD_CODES or code in lightning_resets:
            return code
        frame = frame.f_back
    return first


def _reduction_name(fn: Any) -> str:
    return _REDUCTIONS.get(fn, _OTHER)


@dataclass
class _Piece:
    """State accumulated by one metric during one stretch of a window."""

    states: dict[str, Any]
    count: int
    exact: bool = True
    reason: str | None = None
    dl: int | None = None  # the evaluation dataloader that was running (None in training)
    from_default: bool = True  # the stretch started from the default state (after a reset)
    rank: int = 0


_NOT_KEPT = (
    "the metric was logged only with on_step=True when its state was folded, so lmlogger did not keep "
    "that part of the epoch's state"
)


def _combine(a: _Piece, b: _Piece, reductions: dict[str, str], replace: bool) -> _Piece:
    """One piece for two consecutive stretches ``a`` then ``b`` of one dataloader on one rank.

    ``a`` is consumed. A piece that cannot be merged keeps no state, only the reason.
    """
    count = a.count + b.count
    if replace:  # a state that is replaced, not accumulated (``Running``): the later one is the state
        return _Piece(b.states, count, b.exact, b.reason, a.dl, a.from_default, a.rank)
    if not (a.exact and b.exact):
        return _Piece({}, count, False, a.reason if not a.exact else b.reason, a.dl, a.from_default, a.rank)
    states = a.states
    for name, red in reductions.items():
        x, y = states[name], b.states[name]
        if red == _CAT:
            if isinstance(x, list):
                x.extend(y if isinstance(y, list) else [y])  # ``a``'s own list (see _delta)
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
            return _Piece({}, count, False, reason, a.dl, a.from_default, a.rank)
    return _Piece(states, count, True, None, a.dl, a.from_default, a.rank)


@dataclass
class _WindowState:
    """One window's share of a metric. Its pieces are merged as they are folded, so a window holds at
    most one piece per run of one dataloader plus the latest (kept apart so that a resumed window can
    undo the fold made at its pause): memory is bounded by the state size, never by the number of folds
    (a metric reset every step folds every step)."""

    pieces: list[_Piece] = field(default_factory=list)
    carried: int = 0  # updates present when the window first began (before any reset in it)
    resets: int = 0
    reset_before_end: bool = False
    reset_after_end: bool = False  # user code reset the metric after the window ended, before Lightning logged it

    def add(self, piece: _Piece, reductions: dict[str, str], replace: bool) -> None:
        pieces = self.pieces
        if len(pieces) >= 2 and pieces[-2].dl == pieces[-1].dl:
            pieces[-2:] = [_combine(pieces[-2], pieces[-1], reductions, replace)]
        pieces.append(piece)


class _ResetTap:
    """Instance-level ``reset`` of a tapped metric: folds the state, then resets as usual.

    Copies of the metric (``deepcopy``, pickling) get a plain pass-through, never a second tap.
    """

    def __init__(self, metric: Metric, tap: MetricTap) -> None:
        self.metric = metric
        self.tap: MetricTap | None = tap  # None: the run ended, this tap is a plain pass-through

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tap = self.tap
        if tap is None:
            return type(self.metric).reset(self.metric, *args, **kwargs)
        caller = _reset_caller(sys._getframe(1))
        user = caller not in _FORWARD_CODES
        if user:
            tap.on_user_reset(by_lightning=caller in _lightning_reset_codes())
        result = type(self.metric).reset(self.metric, *args, **kwargs)
        if user:
            tap.after_reset()
        return result

    def __deepcopy__(self, memo: dict[int, Any]) -> _PassThroughReset:
        return _PassThroughReset(copy.deepcopy(self.metric, memo))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_PassThroughReset, (self.metric,))


_MISSING = object()


class _ResultTap:
    """Instance-level ``compute``/``forward`` of a wrapper metric: remembers the last result it returned.

    Wrapper metrics (``torchmetrics.wrappers``) keep no ``_computed``/``_forward_cache`` of their own, so
    their results could not be told apart by identity. Copies get a plain bound method.
    """

    def __init__(self, metric: Metric, name: str, saved: Any, on_call: Any = None) -> None:
        self.metric = metric
        self.name = name
        self.saved = saved
        self.on_call = on_call  # told of every call (MinMaxMetric: each compute() moves its max/min)
        self.active = True  # False: the run ended, this tap is a plain pass-through

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.saved is _MISSING:
            result = getattr(type(self.metric), self.name)(self.metric, *args, **kwargs)
        else:
            result = self.saved(*args, **kwargs)
        if self.active:
            self.metric.__dict__["_lml_" + self.name] = result
            if self.on_call is not None:
                self.on_call()
        return result

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return _bound(copy.deepcopy(self.metric, memo), self.name)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_bound, (self.metric, self.name))


def remembers_results(metric: Metric) -> bool:
    """Whether lmlogger keeps ``metric``'s last results (``_lml_compute``/``_lml_forward``)."""
    return isinstance(metric.__dict__.get("compute"), _ResultTap)


def _caches_nothing(metric: Metric) -> bool:
    """Whether ``metric`` keeps no ``_computed`` of its own (wrappers, ``CompositionalMetric``)."""
    return isinstance(metric, WrapperMetric) or type(metric)._wrap_compute is not Metric._wrap_compute


def _bound(metric: Metric, name: str) -> Any:
    return getattr(type(metric), name).__get__(metric)


class _PassThroughReset:
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def __call__(self) -> None:
        type(self.metric).reset(self.metric)


class MetricTap:
    """Epoch accounting of one metric instance (see module docstring)."""

    def __init__(self, metric: Metric, attribute: str, hook_of: Any = None) -> None:
        self.metric = metric
        self.attribute = attribute
        self.reductions = {name: _reduction_name(fn) for name, fn in metric._reductions.items()}
        # ``Running`` keeps the last N updates in slots it overwrites: its state is replaced, not accumulated.
        self.replace = isinstance(metric, Running)
        self.owner: Owner | None = None
        self.windows: dict[Owner, _WindowState] = {}
        self.phases_updated: set[str] = set()
        self.dls_updated: dict[str, set[int | None]] = {}
        self.dl: int | None = None
        self.ended: Owner | None = None  # a window whose epoch values Lightning is computing now
        self.reset_hooks: set[str] = set()  # hooks in which user code reset the metric
        self._hook_of = hook_of
        # Whether some key's epoch value may need this metric's per-epoch state: unknown (kept) until a
        # key is bound to the metric; a metric bound only to step-only keys keeps no folded state.
        self.bound = False
        self.epoch_needed = False
        self._shadow: Metric | None = None
        self._base_count = self._count()
        self._reset_at = 0  # the update count right after the last reset (some metrics keep counting)
        self._baseline: dict[str, Any] | None = self._snapshot() if self._base_count else None
        self._last: tuple[Owner, _Piece, dict[str, Any] | None, int] | None = None
        self._installed = False
        self._saved: dict[str, Any] = {}
        # compute() calls since the last reset, and the rank of the latest one (wrappers only: a
        # MinMaxMetric's max/min are the extremes of its compute() results since its last reset)
        self.computes_since_reset = 0
        self.compute_rank = 0
        self.resets = 0  # resets seen (by user code or Lightning)
        self._installed_taps: list[Any] = []  # the _ResetTap / _ResultTap objects this tap put on the instance

    def _count(self) -> int:
        metric = self.metric
        if self.replace:
            return int(getattr(metric, "_num_vals_seen", 0))
        if isinstance(metric, WrapperMetric):
            return 0  # wrappers keep no count of their own (ClasswiseWrapper pins it at 1): children do
        return int(metric._update_count)

    # -- installation -------------------------------------------------------------------------
    def install(self) -> None:
        metric = self.metric
        if not self._installed and "reset" not in metric.__dict__:
            reset = metric.__dict__["reset"] = _ResetTap(metric, self)
            self._installed_taps = [reset]
            self._installed = True
            if _caches_nothing(metric):
                # Wrappers and compositions cache no result (``_computed``/``_forward_cache``): remember the
                # last ones so that a logged result can be told apart by identity, as for any other metric.
                for name in ("compute", "forward"):
                    self._saved[name] = metric.__dict__.get(name, _MISSING)
                    on_call = self._on_compute if name == "compute" else None
                    tap = metric.__dict__[name] = _ResultTap(metric, name, self._saved[name], on_call)
                    self._installed_taps.append(tap)

    def remove(self) -> None:
        """Put back what the instance held; a tap another library has wrapped since stays below its wrapper (removing
        it would remove that wrapper too) as a plain pass-through."""
        metric = self.metric
        for tap in self._installed_taps:
            tap_name = "reset" if isinstance(tap, _ResetTap) else tap.name
            if isinstance(tap, _ResetTap):
                tap.tap = None
            else:
                tap.active = False
            if metric.__dict__.get(tap_name) is tap:
                saved = self._saved.get(tap_name, _MISSING)
                if saved is _MISSING:
                    del metric.__dict__[tap_name]
                else:
                    metric.__dict__[tap_name] = saved
        self._installed_taps = []
        self._saved = {}
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
        count = self._count() - self._base_count
        states: dict[str, Any] = {}
        base = self._baseline
        exact, reason = True, None
        for name, red in self.reductions.items():
            value = getattr(self.metric, name)
            if base is None or self.replace:  # the snapshot was the default state: the whole state is new
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
        return _Piece(states, count, exact, reason, self.dl, base is None, _rank())

    def bind(self, on_epoch: bool) -> None:
        """A logged key uses this metric (``on_epoch``: its epoch value is verified against it)."""
        self.bound = True
        if on_epoch and not self.epoch_needed:
            self.epoch_needed = True
            self._keep_last()

    def _keep_last(self) -> None:
        """A key needs the epoch state only now (an object logged from ``on_train_epoch_end`` after its
        forward() values were logged on step only): fold the last stretch again, keeping its state.

        Exact when nothing was updated since that fold: the stretch is undone to its starting snapshot and
        folded into the same window and dataloader, as if the key had been known from the start.
        """
        last = self._last
        if last is None or self._count() != self._base_count:
            return
        owner, piece, baseline, base_count = last
        window = self.windows.get(owner)
        if piece.reason != _NOT_KEPT or window is None or not window.pieces or window.pieces[-1] is not piece:
            return
        window.pieces.pop()
        current, dl = self.owner, self.dl
        self._baseline, self._base_count = baseline, base_count
        self.owner, self.dl = owner, piece.dl
        try:
            self.fold()
        finally:
            self.owner, self.dl = current, dl

    def fold(self) -> bool:
        """Move what accumulated since the last boundary into the current owner's window."""
        count = self._count()
        if count == self._base_count:
            return False
        if count < self._base_count:  # reset by something we did not see (e.g. a class-level call)
            self.resets += 1
            self._baseline = None
            self._base_count = self._reset_at = 0
        if self.bound and not self.epoch_needed:  # no epoch value needs it: keep the count, not the state
            piece = _Piece({}, count - self._base_count, False, _NOT_KEPT, self.dl, self._baseline is None, _rank())
        else:
            piece = self._delta()
        self._last = None
        if self.owner is not None and piece.count > 0:
            self.windows.setdefault(self.owner, _WindowState()).add(piece, self.reductions, self.replace)
            self.phases_updated.add(self.owner[0])
            self.dls_updated.setdefault(self.owner[0], set()).add(self.dl)
            self._last = (self.owner, piece, self._baseline, self._base_count)
        self._baseline = self._snapshot()
        self._base_count = count
        return True

    def switch(self, owner: Owner | None, begins: bool = False) -> None:
        """A window boundary: fold into the current owner, then hand the metric to ``owner``."""
        folded = self.fold()
        if not begins and owner is not None and not folded and self._last is not None and self._last[0] == owner:
            # Resuming a window that another one interrupted (validation inside a training epoch) without
            # touching this metric: undo the fold made at the pause, so the window keeps its own starting
            # state and one stretch covers it (exact for every kind of state, max/min/custom included).
            window = self.windows.get(owner)
            _, piece, baseline, base_count = self._last
            if window is not None and window.pieces and window.pieces[-1] is piece:
                window.pieces.pop()
                self._baseline, self._base_count = baseline, base_count
            self._last = None
        self.owner = owner
        self.dl = None  # an evaluation window names its dataloader at its first batch
        if owner is not None and begins:
            window = self.windows.setdefault(owner, _WindowState())
            window.carried = self._base_count - self._reset_at

    def switch_dataloader(self, dl: int | None) -> None:
        """The evaluation loop moved to dataloader ``dl``: what accumulated belongs to the previous one."""
        if dl != self.dl:
            self.fold()
            self.dl = dl

    def mark_end(self, owner: Owner) -> None:
        """The window's epoch values are about to be computed (Lightning's epoch end)."""
        window = self.windows.get(owner)
        if window is not None and window.resets:
            window.reset_before_end = True
        self.ended = owner

    def adopt(self, owner: Owner, dl: int | None = None) -> None:
        """Count the whole current state as ``owner``'s (lmlogger attached in the middle of that window, or
        met the metric for the first time there: created lazily, or kept where Lightning does not look)."""
        self.owner = owner
        self.dl = dl
        self._baseline = None
        self._base_count = self._reset_at = 0
        self.windows.setdefault(owner, _WindowState()).carried = 0

    def _on_compute(self) -> None:
        self.computes_since_reset += 1
        self.compute_rank = self.computes_since_reset

    def count_now(self) -> int:
        """The metric's update count as this tap counts it."""
        return self._count()

    def on_user_reset(self, by_lightning: bool = False) -> None:
        self.computes_since_reset = 0
        self.resets += 1
        self.fold()
        if self.owner is not None:
            self.windows.setdefault(self.owner, _WindowState()).resets += 1
        elif self.ended is not None and not by_lightning:
            self.windows.setdefault(self.ended, _WindowState()).reset_after_end = True
        if self._hook_of is not None and not by_lightning:
            hook = self._hook_of()
            if hook:
                self.reset_hooks.add(hook)
        self._baseline = None
        self._base_count = self._reset_at = 0
        self._last = None

    def after_reset(self) -> None:
        """The state is the default now; some metrics keep counting updates across ``reset()``
        (``CompositionalMetric``, ``ClasswiseWrapper``): count from where the counter stands."""
        self._baseline = None
        self._base_count = self._reset_at = self._count()

    def carried(self, owner: Owner) -> int:
        """Updates from before ``owner`` began that were still in the state at its epoch end."""
        window = self.windows.get(owner)
        if window is None or window.reset_before_end:
            return 0
        return window.carried

    def pop(self, owner: Owner) -> _WindowState | None:
        if self.ended == owner:
            self.ended = None
        return self.windows.pop(owner, None)

    def window(self, owner: Owner) -> _WindowState | None:
        return self.windows.get(owner)

    # -- reference -----------------------------------------------------------------------------
    def merge(self, pieces: list[_Piece], dl: int | None = None) -> tuple[dict[str, Any] | None, int, str | None]:
        """Merge pieces into one state: ``(state, update_count, reason_if_impossible)``.

        With ``dl``, only the pieces of that evaluation dataloader (Lightning computes a key logged with
        ``dataloader_idx=dl`` when that dataloader ends).
        """
        if dl is not None:
            pieces = [p for p in pieces if p.dl == dl]
        if not pieces:
            return None, 0, "the metric received no updates in this epoch"
        if self.replace:
            window = int(getattr(self.metric, "window", 0))
            count = sum(p.count for p in pieces)
            if not pieces[0].from_default and count < window:
                return (
                    None,
                    0,
                    f"the running window of {window} updates still holds updates from before the epoch "
                    f"(the epoch had {count}); reset it at the start of each epoch",
                )
            last: dict[int, _Piece] = {}
            for piece in pieces:  # each rank holds its own window; the last stretch of each is its state
                last[piece.rank] = piece
            if len(last) == 1:
                return dict(pieces[-1].states), count, None
            return self._merge_states(list(last.values()), count)
        for piece in pieces:
            if not piece.exact:
                return None, 0, piece.reason
        return self._merge_states(pieces, sum(p.count for p in pieces))

    def _merge_states(self, pieces: list[_Piece], count: int) -> tuple[dict[str, Any] | None, int, str | None]:
        merged: dict[str, Any] = {}
        for name, red in self.reductions.items():
            values = [p.states[name] for p in pieces]
            if len(values) == 1:
                merged[name] = values[0]
            elif red == _CAT:
                merged[name] = [t for v in values for t in v]
            elif red == _SUM:
                merged[name] = _tree_sum(values)
            elif red in (_MAX, _MIN):
                op = torch.maximum if red == _MAX else torch.minimum
                acc = values[0]
                for v in values[1:]:
                    acc = op(acc, v)
                merged[name] = acc
            else:
                return None, 0, f"state `{name}` has a custom reduction and was updated in several stretches"
        return merged, count, None

    def compute(
        self,
        state: dict[str, Any] | None,
        count: int,
        children: dict[str, tuple[dict[str, Any] | None, int]] | None = None,
    ) -> Any:
        """``compute()`` of a private copy of the metric holding ``state`` (the user's metric is untouched).

        ``children`` gives the epoch state of each stateful sub-metric by its path below this one
        (``metric_a`` of ``1 - BinaryAccuracy()``, ``metrics.0`` of a ``BootStrapper``): composite and
        wrapper metrics compute from their children's states.
        """
        shadow = self._shadow
        if shadow is None:
            shadow = self._shadow = _empty_copy(self.metric)
        nodes = [("", shadow, state, count)]
        for path, (child_state, child_count) in (children or {}).items():
            nodes.append((path, shadow.get_submodule(path), child_state, child_count))
        device = getattr(self.metric, "device", None)
        for _, node, node_state, node_count in nodes:
            type(node).reset(node)
            for name, value in (node_state or {}).items():
                if isinstance(value, list):
                    value = [v.to(device) if isinstance(v, Tensor) and device is not None else v for v in value]
                elif isinstance(value, Tensor) and device is not None:
                    value = value.to(device)
                setattr(node, name, value)
            node._update_count = node_count
            if isinstance(node, Running):
                node._num_vals_seen = node_count
            node._computed = None
            node._to_sync = False  # the state is already global (lmlogger merges ranks itself)
            node._should_unsync = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return shadow.compute()


def stateful_children(metric: Metric) -> list[tuple[str, Metric]]:
    """Sub-metrics of ``metric`` that hold epoch state, with their paths below it.

    The slots of a ``Running`` wrapper are its own; its ``base_metric`` only passes updates through.
    """
    if isinstance(metric, Running):
        return []
    found = []
    skip: tuple[str, ...] = ()
    for path, sub in metric.named_modules():
        if not path or not isinstance(sub, Metric) or (skip and path.startswith(skip)):
            continue
        if isinstance(sub, Running):
            skip = (*skip, path + ".")
        found.append((path, sub))
    return found


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _tree_sum(values: list[Any]) -> Any:
    acc = values[0]
    for v in values[1:]:
        acc = acc + v
    return acc


def _clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def _empty_copy(metric: Metric) -> Metric:
    """A copy of ``metric`` (and of its sub-metrics) to compute references with: empty states of its own,
    no caches or taps, and nothing else copied.

    Every module without a metric inside (the feature extractor of FID, KID, LPIPS, CLIPScore,
    BERTScore: millions of parameters) and every parameter or buffer is shared with the user's metric.
    """
    memo: dict[int, Any] = {}
    nodes = [m for m in metric.modules() if isinstance(m, Metric)]
    for module in metric.modules():
        if not isinstance(module, Metric) and not any(isinstance(m, Metric) for m in module.modules()):
            memo[id(module)] = module  # shared: deepcopy does not descend into it
    for node in nodes:
        for tensor in (*node._parameters.values(), *node._buffers.values()):
            if tensor is not None:
                memo[id(tensor)] = tensor
        for name in node._defaults:
            value = getattr(node, name)
            memo[id(value)] = [] if isinstance(value, list) else value.detach().clone()
        for name in ("_forward_cache", "_computed", "_cache", "_lml_compute", "_lml_forward"):
            value = node.__dict__.get(name)
            if value is not None:
                memo[id(value)] = None
        for name in ("reset", "compute", "forward"):
            value = node.__dict__.get(name)
            if isinstance(value, (_ResetTap, _ResultTap)):
                memo[id(value)] = None
    shadow = copy.deepcopy(metric, memo)
    for node in shadow.modules():
        if isinstance(node, Metric):
            for name in ("reset", "forward"):
                if name in node.__dict__ and node.__dict__[name] is None:
                    del node.__dict__[name]
            if "compute" in node.__dict__ and node.__dict__["compute"] is None:
                node.__dict__["compute"] = node._wrap_compute(_bound(node, "compute"))
    return shadow


# ---------------------------------------------------------------------------------------------
# tensor reductions
# ---------------------------------------------------------------------------------------------
_FOLD_EVERY = 256


class TensorLedger:
    """Float64 recomputation of Lightning's reduction of one key's step values, for one epoch.

    Each step value is copied, on its device, into a slot of one preallocated float64 buffer of
    ``_FOLD_EVERY`` values (no host sync, and no Python object kept per step: a per-step tensor
    handle would be one more object for the garbage collector to track and promote); the buffer is
    folded into float64 accumulators when full and at epoch end.
    """

    __slots__ = ("_n", "_sizes", "_slots", "count", "max", "min", "reason", "reduce", "total", "weight")

    def __init__(self, reduce: str) -> None:
        self.reduce = reduce
        self._slots: Tensor | None = None  # float64 copies of the buffered step values, on their device
        self._n = 0  # slots in use
        self._sizes: list[int] = []  # the batch size of each buffered value
        self.total: Any = 0.0  # sum of value * batch_size (mean) or of values (sum)
        self.weight = 0  # sum of batch sizes
        self.max: Any = -math.inf
        self.min: Any = math.inf
        self.count = 0
        self.reason: str | None = None

    def add(self, value: Any, batch_size: int) -> None:
        # The value as logged: user code may change the tensor in place afterwards (an accumulator, an EMA, a
        # rescale). Lightning keeps its own copy for the same reason; this is a device-side copy of one element
        # into a slot, no host sync. A Python number becomes the float32 tensor Lightning makes of it.
        value = value.detach() if isinstance(value, Tensor) else torch.tensor(float(value))
        slots = self._slots
        if slots is None or slots.device != value.device:
            self._fold()
            slots = self._slots = torch.empty(_FOLD_EVERY, dtype=torch.float64, device=value.device)
        n = self._n
        slots[n] = value  # any one-element shape; the cheapest of the copies into a slot
        self._sizes.append(batch_size)
        self._n = n + 1
        self.count += 1
        if n + 1 >= _FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        n = self._n
        if not n:
            return
        values = self._slots[:n]  # type: ignore[index]
        bs, self._sizes, self._n = self._sizes, [], 0
        device = values.device
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
