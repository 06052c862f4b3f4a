"""Which samples reached each epoch value: sampler padding and the true number of samples per step.

Two facts decide whether an epoch value is right *for the data*, beyond matching the metric state
or Lightning's reduction:

* **Repeated samples.** ``DistributedSampler`` (and Lightning's ``DistributedSamplerWrapper``
  around a custom sampler) pads the global index list to ``ceil(N / W) * W`` by appending its own
  head, then strides it over the ranks: global position ``p`` goes to rank ``p % W`` at local
  position ``p // W``, and every position ``p >= N`` is a repeat, whatever the shuffle, seed or
  epoch. So on rank ``r`` the local positions from ``ceil((N - r) / W)`` on are repeats, and with a
  plain ``BatchSampler`` of batch size ``B`` they sit in known rows of known batches. A
  :class:`_Plan` is made per dataloader at each window start from the trainer's own dataloaders.
* **True rows per step.** Every tapped metric's ``update`` is wrapped on its instance (torchmetrics
  already made ``update`` an instance attribute at construction; the original is put back on
  teardown). The wrapper records only the length of the first tensor argument (a shape: no device
  sync). Those row counts, the batch's own first dimensions and the loader's items per batch are the
  evidence of how many samples that step had; :mod:`~lmlogger.runtime._batch_rows` decides which of them
  count (only evidence at the grain of samples: per-token or per-pixel rows are not samples).

Per step, the accountant keeps the logged tensor values of the step (one entry per ``self.log``)
until the step ends, then feeds a second, corrected :class:`~lmlogger.runtime._ledger.TensorLedger` per key:
weighted by the step's true count where the evidence gives one, and without the steps whose rows are
all repeats. Memory is bounded by keys (ledgers fold every 256 values).

For metric states, the one batch per rank that holds repeats is replayed: at its start the state
is snapshot, the ``update`` calls of the step are recorded, and at epoch end a private copy of the
metric replays them without the repeated rows. The step's contribution is then swapped for the
replayed one: subtracted and added for ``sum`` states, removed and appended for ``cat`` states.
Other reductions cannot be corrected exactly and the reference says ``unverified`` with the reason.

Nothing here runs a collective: the per-rank accounts travel in the one exchange at epoch close.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DistributedSampler
from torchmetrics import MaxMetric, Metric, MinMetric

from lmlogger.runtime._batch_rows import BatchShape, batch_shape, true_count
from lmlogger.runtime._ledger import _CAT, _SUM, MetricTap, Owner, TensorLedger, _empty_copy, _Piece, reduce_states

if TYPE_CHECKING:
    from lmlogger.runtime._session import Session
    from lmlogger.runtime._tracker import KeyTracker

#: Key under which each rank's sample accounts ride in the epoch exchange's tensor dict. Lightning
#: storage keys always start with a hook name and a dot, so this can never collide with one.
EXCHANGE_KEY = "<lmlogger.samples>"

_FULL_STATE_CODE = getattr(Metric, "_forward_full_state_update", None)
_FULL_STATE_CODE = _FULL_STATE_CODE.__code__ if _FULL_STATE_CODE is not None else None


# ---------------------------------------------------------------------------------------------
# where the repeats are
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """One dataloader on this rank: its dataset size and which rows of which batches are repeats."""

    dataset_size: int | None = None
    padded: bool = False
    rank: int = 0
    world: int = 1
    first_repeat: int = 0  # first local position that holds a repeat
    local: int = 0  # samples this rank's sampler yields
    batch_size: int = 0
    drop_last: bool = False  # the DataLoader's (batch-level) drop_last
    reason: str | None = None  # padded, but the repeats cannot be located
    # items per batch, for any loader with a plain BatchSampler over a sampler of known length
    items_total: int = 0
    items_batch: int = 0

    def items(self, batch_idx: int) -> int | None:
        """How many dataset items the batch sampler put in batch ``batch_idx`` (None where unknown)."""
        if not self.items_batch:
            return None
        n = min(self.items_batch, self.items_total - batch_idx * self.items_batch)
        return n if n > 0 else None

    def batch(self, batch_idx: int) -> tuple[int, list[int]]:
        """``(rows of the batch, rows that are repeats)`` for one batch of this rank."""
        if not self.padded or self.reason is not None:
            return 0, []
        start = batch_idx * self.batch_size
        end = min(start + self.batch_size, self.local)
        if end <= start or (self.drop_last and end - start < self.batch_size):
            return 0, []
        return end - start, [j - start for j in range(max(start, self.first_repeat), end)]


def _length(obj: Any) -> int | None:
    try:
        return len(obj)
    except Exception:
        return None


def plan_of(loader: Any) -> _Plan:
    """The plan of one dataloader, read from its samplers (never guessed): items per batch, and padding."""
    plan = _padding_plan(loader)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if type(batch_sampler) is BatchSampler and batch_sampler.batch_size:
        total = _length(batch_sampler.sampler)
        if total is not None:
            plan = dataclasses.replace(plan, items_total=total, items_batch=int(batch_sampler.batch_size))
    return plan


def _padding_plan(loader: Any) -> _Plan:
    dataset_size = _length(getattr(loader, "dataset", None))
    batch_sampler = getattr(loader, "batch_sampler", None)
    sampler = getattr(batch_sampler, "sampler", None)
    if not isinstance(sampler, DistributedSampler):
        sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, DistributedSampler):
        return _Plan(dataset_size)
    n = _length(sampler.dataset)
    if n is None or sampler.drop_last or sampler.total_size <= n:
        return _Plan(dataset_size)  # drop_last drops instead of padding; Unrepeated* never pads
    world, rank = int(sampler.num_replicas), int(sampler.rank)
    first = max(0, math.ceil((n - rank) / world))
    common = dict(dataset_size=dataset_size, padded=True, rank=rank, world=world, first_repeat=first)
    if not isinstance(batch_sampler, BatchSampler) or not getattr(batch_sampler, "batch_size", None):
        return _Plan(
            **common,
            reason=f"the sampler repeated {sampler.total_size - n} samples to pad the ranks, but the dataloader's "
            f"batch sampler ({type(batch_sampler).__name__}) does not say which batches hold them",
        )
    return _Plan(
        **common,
        local=int(sampler.num_samples),
        batch_size=int(batch_sampler.batch_size),
        drop_last=bool(batch_sampler.drop_last),
    )


def phase_loaders(trainer: Any, phase: str) -> list[Any]:
    """The dataloaders of the loop that runs ``phase`` (flattened, in dataloader index order)."""
    fn = getattr(trainer.state, "fn", None)
    fn = getattr(fn, "value", fn)  # TrainerFn is a str enum: "fit", "validate", "test", "predict"
    if phase == "train":
        loop = trainer.fit_loop
    elif phase in ("val", "sanity"):
        loop = trainer.validate_loop if fn == "validate" else trainer.fit_loop.epoch_loop.val_loop
    elif phase == "test":
        loop = trainer.test_loop
    else:
        return []
    combined = getattr(loop, "_combined_loader", None)
    return list(combined.flattened) if combined is not None else []


# ---------------------------------------------------------------------------------------------
# rank-local accounts of one window
# ---------------------------------------------------------------------------------------------
@dataclass
class _KeyAccount:
    """One tensor key in one window, on this rank."""

    reduce: str
    ledger: TensorLedger
    samples: int = 0
    duplicates: int = 0
    disagree: int = 0  # steps whose true rows differ from Lightning's weight (means only)
    example: tuple[int, int] | None = None  # (Lightning's weight, true rows) of the first such step
    outside_steps: bool = False  # a value logged outside a batch hook: its sample count is unknown
    reason: str | None = None
    unknown: set[tuple[int, ...]] = field(default_factory=set)  # batch shapes whose sample count is unknowable
    unknown_example: str = ""


@dataclass
class _Correction:
    """One metric's padded step (rank-local, never pickled): what it added, and how to replay it."""

    calls: list[tuple[tuple, dict]]  # the step's update calls (arguments cloned)
    dl: int | None  # the dataloader the metric tap files the step's state under (None in training)
    rows: int  # samples in the batch
    repeats: list[int]  # rows of the batch that are repeats
    step_sums: dict[str, Tensor] = field(default_factory=dict)  # what the step added to each sum state
    removed: dict[str, list[Tensor]] = field(default_factory=dict)  # the step's elements of each cat state


@dataclass
class _MetricAccount:
    """One metric in one window, on this rank."""

    rows: int = 0
    calls: int = 0
    unknown_rows: bool = False
    duplicates: int = 0
    corrections: list[_Correction] = field(default_factory=list)
    reason: str | None = None


@dataclass
class _Window:
    plans: list[_Plan] = field(default_factory=list)
    keys: dict[str, _KeyAccount] = field(default_factory=dict)
    metrics: dict[int, _MetricAccount] = field(default_factory=dict)


@dataclass
class _Recorded:
    """A metric seen during a step that holds repeats: its state at step start and its update calls."""

    snapshot: dict[str, Any]
    count: int
    calls: list[tuple[tuple, dict]] = field(default_factory=list)


@dataclass
class _Step:
    owner: Owner
    batch_idx: int
    dataloader_idx: int
    rows: set[int] = field(default_factory=set)  # first-dimension lengths of this step's metric updates
    pending: list[tuple[str, Any, int, bool]] = field(default_factory=list)  # (key, value, weight, weight given)
    shape: BatchShape | None = None  # the batch's first dimensions, read at the step's first logged value
    items: int | None = None  # dataset items in the batch, by the loader's batch sampler
    batch_rows: int = 0  # rows of the batch according to the sampler plan
    repeats: list[int] = field(default_factory=list)  # rows of the batch that are repeats
    recorded: dict[int, _Recorded] = field(default_factory=dict)
    reason: str | None = None


def _first_rows(args: tuple, kwargs: dict) -> int | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            return int(value.shape[0]) if value.dim() else None
    return None


class _UpdateTap:
    """Instance-level ``update`` of a tapped metric: notes the rows, then calls the original."""

    __slots__ = ("accountant", "metric", "original", "second_half")

    def __init__(self, metric: Metric, original: Any, accountant: SampleAccountant) -> None:
        self.metric = metric
        self.original = original
        self.accountant: SampleAccountant | None = accountant
        self.second_half = False  # forward() with full state update calls update twice per batch

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        accountant = self.accountant
        if accountant is None:  # the run ended below another library's wrapper: a plain pass-through
            return self.original(*args, **kwargs)
        accumulating = True
        if _FULL_STATE_CODE is not None and sys._getframe(1).f_code is _FULL_STATE_CODE:
            accumulating = not self.second_half  # the second call only computes the batch value
            self.second_half = not self.second_half
        if accumulating:
            accountant.on_update(self.metric, args, kwargs)
        return self.original(*args, **kwargs)


class _Extreme:
    """The max (``MaxMetric``) or min (``MinMetric``) of every value given to ``update()`` since the last
    reset, kept on the values' device (no host sync per update), NaNs treated as the metric's own
    ``nan_strategy`` treats them."""

    def __init__(self, metric: Metric, tap: MetricTap) -> None:
        self.metric = metric
        self.tap = tap
        self.is_max = isinstance(metric, MaxMetric)
        self.value: Tensor | None = None
        self.resets = tap.resets
        # the values given before lmlogger met the metric are unknown (a restored state: one read, at setup)
        state = metric._defaults.get("max_value" if self.is_max else "min_value")
        live = getattr(metric, "max_value" if self.is_max else "min_value", None)
        self.started = isinstance(live, Tensor) and state is not None and bool(torch.equal(live.cpu(), state.cpu()))

    def add(self, args: tuple, kwargs: dict) -> None:
        if self.tap.resets != self.resets:
            self.value, self.resets, self.started = None, self.tap.resets, True
        value = args[0] if args else kwargs.get("value")
        if value is None:
            return
        v = torch.as_tensor(value).detach().reshape(-1)
        dtype = getattr(self.metric, "dtype", None)  # the metric casts its inputs to its own dtype first
        v = (v.to(dtype) if isinstance(dtype, torch.dtype) and dtype.is_floating_point else v).to(torch.float64)
        if not v.numel():
            return
        strategy = getattr(self.metric, "nan_strategy", "error")
        if strategy in ("warn", "ignore"):
            v = torch.where(torch.isnan(v), torch.full_like(v, -math.inf if self.is_max else math.inf), v)
        elif isinstance(strategy, float):
            v = torch.nan_to_num(v, nan=strategy)
        top = v.max() if self.is_max else v.min()
        if self.value is None:
            self.value = top
        else:
            self.value = (torch.maximum if self.is_max else torch.minimum)(self.value, top.to(self.value.device))

    def result(self) -> tuple[float | None, str | None]:
        if self.tap.resets != self.resets:  # reset after its last update: the default state
            self.value, self.resets, self.started = None, self.tap.resets, True
        if not self.started:
            return None, "the metric held values from before lmlogger met it"
        if self.value is None:
            return None, "the metric received no values since its last reset"
        value = float(self.value)
        live = getattr(self.metric, "max_value" if self.is_max else "min_value", None)
        if isinstance(live, Tensor) and live.numel() == 1:
            held = float(live.detach().double().cpu())
            if (held > value) if self.is_max else (held < value):  # a value no update() call gave it
                return None, (
                    f"the metric holds {held:.6g}, a value none of its update() calls since its last reset gave it "
                    "(a state restored from a checkpoint?)"
                )
        return value, None


# ---------------------------------------------------------------------------------------------
# the accountant
# ---------------------------------------------------------------------------------------------
class SampleAccountant:
    """Sample accounting of one session (see module docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.windows: dict[Owner, _Window] = {}
        self.step: _Step | None = None
        self.watched: dict[int, tuple[Metric, MetricTap, _UpdateTap]] = {}
        self.extremes: dict[int, _Extreme] = {}  # best-so-far aggregators: their extreme since the last reset

    # -- installation -------------------------------------------------------------------------
    def watch(self, metric: Metric, tap: MetricTap) -> None:
        if id(metric) in self.watched:
            return
        original = metric.__dict__.get("update")
        if original is None or isinstance(original, _UpdateTap):
            return
        wrapper = _UpdateTap(metric, original, self)
        metric.__dict__["update"] = wrapper
        self.watched[id(metric)] = (metric, tap, wrapper)
        if isinstance(metric, (MaxMetric, MinMetric)):
            self.extremes[id(metric)] = _Extreme(metric, tap)

    def extreme(self, metric: Metric) -> tuple[float | None, str | None]:
        """``compute()`` of a ``MaxMetric``/``MinMetric`` recomputed from every value it was given since its
        last reset, in this process (a best-so-far keeps them on purpose, across epochs)."""
        found = self.extremes.get(id(metric))
        if found is None:
            return None, "metric not tracked"
        return found.result()

    def remove(self) -> None:
        for metric, _, wrapper in self.watched.values():
            if metric.__dict__.get("update") is wrapper:
                metric.__dict__["update"] = wrapper.original
            else:  # another library wrapped ours since: its wrapper stays, ours passes through
                wrapper.accountant = None
        self.watched.clear()
        self.step = None

    def _fail(self, where: str, err: BaseException) -> None:
        self.session._internal_error(f"counting samples ({where})", err)

    # -- windows and steps --------------------------------------------------------------------
    def begin(self, owner: Owner) -> None:
        try:
            self.flush()
            if owner not in self.windows:
                loaders = phase_loaders(self.session.trainer, owner[0])
                if owner[0] == "train" and len(loaders) != 1:
                    loaders = []  # a combined batch of several loaders: rows cannot be told apart
                self.windows[owner] = _Window(plans=[plan_of(dl) for dl in loaders])
        except Exception as err:
            self._fail("reading the dataloaders", err)

    def end(self, owner: Owner) -> None:
        try:
            self.flush()
        except Exception as err:
            self._fail("closing the last step", err)

    def pop(self, owner: Owner) -> None:
        self.windows.pop(owner, None)

    def step_start(self, batch_idx: int, dataloader_idx: int) -> None:
        """A batch begins (callback hook, every rank)."""
        try:
            self.flush()
            owner = self.session.owner
            window = self.windows.get(owner) if owner is not None else None
            if window is None:
                return
            step = self.step = _Step(owner, batch_idx, dataloader_idx)
            if dataloader_idx < len(window.plans):
                plan = window.plans[dataloader_idx]
                step.reason = plan.reason
                step.batch_rows, step.repeats = plan.batch(batch_idx)
                step.items = plan.items(batch_idx)
                if step.repeats:
                    for metric, tap, _ in self.watched.values():
                        step.recorded[id(metric)] = _Recorded(_snapshot(metric, tap), metric._update_count)
        except Exception as err:
            self._fail("starting a step", err)

    # -- observation (hot path) ----------------------------------------------------------------
    def on_update(self, metric: Metric, args: tuple, kwargs: dict) -> None:
        try:
            extreme = self.extremes.get(id(metric)) if self.extremes else None
            if extreme is not None:
                extreme.add(args, kwargs)
            owner = self.session.owner
            if owner is None:
                return
            window = self.windows.get(owner)
            if window is None:
                return
            account = window.metrics.get(id(metric))
            if account is None:
                account = window.metrics[id(metric)] = _MetricAccount()
            rows = _first_rows(args, kwargs)
            account.calls += 1
            if rows is None:
                account.unknown_rows = True
            else:
                account.rows += rows
            step = self.step
            if step is None or step.owner != owner:
                return
            if rows is not None:
                step.rows.add(rows)
            if step.reason is not None and account.reason is None:
                account.reason = step.reason
            recorded = step.recorded.get(id(metric))
            if recorded is not None:
                recorded.calls.append((_detached(args), _detached(kwargs)))
        except Exception as err:
            self._fail("reading a metric update", err)

    def logged(
        self, storage_key: str, reduce: str, value: Any, batch_size: int, batch: Any = None, given: bool = False
    ) -> None:
        """A tensor value logged for an epoch reduction (called from ``Session._observe``): ``batch`` is the
        step's batch as Lightning holds it, ``given`` whether ``batch_size`` is the user's ``batch_size=``."""
        owner = self.session.owner
        window = self.windows.get(owner) if owner is not None else None
        if window is None:
            return
        account = window.keys.get(storage_key)
        if account is None:
            account = window.keys[storage_key] = _KeyAccount(reduce, TensorLedger(reduce))
        step = self.step
        if step is not None and step.owner == owner:
            if step.shape is None:
                step.shape = batch_shape(batch) if batch is not None else BatchShape()
            step.pending.append((storage_key, value, batch_size, given))
        else:  # epoch-end hook: no step, no evidence; Lightning's weight stands
            account.outside_steps = True
            account.ledger.add(value, batch_size)

    # -- end of a step -------------------------------------------------------------------------
    def flush(self) -> None:
        step, self.step = self.step, None
        if step is None:
            return
        window = self.windows.get(step.owner)
        if window is None:
            return
        dup = len(step.repeats)
        for storage_key, value, weight, given in step.pending:
            account = window.keys[storage_key]
            true_rows = weight
            if account.reduce == "mean":  # the weight matters for means only (_batch_rows.py)
                evidence, unknown = true_count(step.shape, step.rows, given, weight, step.items)
                if evidence is not None and evidence != weight:
                    account.disagree += 1
                    if account.example is None:
                        account.example = (weight, evidence)
                    true_rows = evidence
                elif unknown and step.shape is not None:
                    account.unknown.add(step.shape.sizes)
                    account.unknown_example = account.unknown_example or step.shape.describe()
            account.samples += true_rows
            if step.reason is not None and account.reason is None:
                account.reason = step.reason
            if dup:
                account.duplicates += dup
                if dup == step.batch_rows:
                    continue  # the step holds repeats only: leaving it out is exact
                if account.reason is None:
                    account.reason = (
                        f"batch {step.batch_idx} of rank {_rank(window, step)} mixed {dup} repeated with "
                        f"{step.batch_rows - dup} unique samples in one {account.reduce}-reduced step value, "
                        "which cannot be split by sample"
                    )
            account.ledger.add(value, true_rows)
        for metric_id, recorded in step.recorded.items():
            metric, tap, _ = self.watched[metric_id]
            if metric._update_count == recorded.count:
                continue  # not updated in this step
            account = window.metrics.setdefault(metric_id, _MetricAccount())
            self._correct(metric, tap, recorded, step, account)

    def _correct(
        self, metric: Metric, tap: MetricTap, recorded: _Recorded, step: _Step, account: _MetricAccount
    ) -> None:
        """Keep what the padded step added to the state, and its update calls, for a replay at epoch close.

        Only device-side operations happen here (no value is read): the replay itself runs at epoch close.
        """
        if account.reason is not None:
            return
        if getattr(tap, "replace", False):  # Running: a window of slots overwritten in turn
            account.reason = (
                f"the metric keeps a running window of updates: the {len(step.repeats)} repeated samples' "
                "share of it cannot be removed exactly"
            )
            return
        other = [name for name, red in tap.reductions.items() if red not in (_SUM, _CAT)]
        if other:
            account.reason = (
                f"state `{other[0]}` is reduced with `{tap.reductions[other[0]]}`: the {len(step.repeats)} repeated "
                "samples' share of it cannot be removed exactly"
            )
            return
        if metric._update_count < recorded.count:
            account.reason = "the metric was reset during the batch that holds repeated samples"
            return
        if not recorded.calls:
            account.reason = (
                "the metric's state changed in the batch holding repeated samples without a call of its own "
                "update() (a shared compute group?), so the repeats cannot be replayed away"
            )
            return
        dl = step.dataloader_idx if step.owner[0] in ("val", "test", "sanity") else None
        correction = _Correction(recorded.calls, dl, step.batch_rows, list(step.repeats))
        for name, red in tap.reductions.items():
            live = getattr(metric, name)
            if red == _SUM:
                correction.step_sums[name] = live.detach() - recorded.snapshot[name]
            else:
                correction.removed[name] = list(live[recorded.snapshot[name] :])
        account.corrections.append(correction)
        account.duplicates += len(step.repeats)

    # -- epoch close ---------------------------------------------------------------------------
    def correct_pieces(self, owner: Owner, tap: MetricTap, pieces: list[_Piece]) -> list[_Piece]:
        """This rank's pieces of one metric's window with the repeated rows' share taken out."""
        window = self.windows.get(owner)
        account = window.metrics.get(id(tap.metric)) if window is not None else None
        if account is None or (not account.corrections and account.reason is None):
            return pieces
        if account.reason is not None:
            return [dataclasses.replace(p, exact=False, reason=account.reason) for p in pieces]
        try:
            return _apply(tap, pieces, account.corrections)
        except _CannotCorrect as err:
            reason = str(err)
        except Exception as err:  # the user's update() on the replay copy
            reason = f"replaying the batch holding repeated samples without them raised {type(err).__name__}: {err}"
        return [dataclasses.replace(p, exact=False, reason=reason) for p in pieces]

    def payload(self, owner: Owner, taps: dict[str, MetricTap]) -> dict[str, Any]:
        """This rank's accounts for the epoch exchange (plain numbers and host-side ledger states)."""
        window = self.windows.get(owner)
        if window is None:
            return {"keys": {}, "metrics": {}, "sizes": []}
        keys = {
            k: {
                "state": a.ledger.state(),
                "samples": None if a.outside_steps else a.samples,
                "duplicates": a.duplicates,
                "disagree": a.disagree,
                "example": a.example,
                "reason": a.reason or _unknown_reason(a),
            }
            for k, a in window.keys.items()
        }
        metrics = {}
        for attribute, tap in taps.items():
            account = window.metrics.get(id(tap.metric))
            if account is not None:
                metrics[attribute] = {
                    "samples": None if account.unknown_rows or not account.calls else account.rows,
                    "duplicates": account.duplicates,
                }
        return {"keys": keys, "metrics": metrics, "sizes": [p.dataset_size for p in window.plans]}


class _CannotCorrect(Exception):
    pass


def _unknown_reason(account: _KeyAccount) -> str | None:
    """Why a mean's true weights are unknowable: the batch disagreed with itself on its first dimension, in
    shapes that vary between steps (with one shape every step, any of its sizes weights the steps alike)."""
    if len(account.unknown) < 2:
        return None
    return (
        f"Lightning weighted each step by the first size in a batch whose tensors disagree on their first "
        f"dimension ({account.unknown_example}), and nothing in the step says which one counts samples "
        "(no metric update of one of those sizes, no target, no size shared by most tensors): pass "
        "self.log(..., batch_size=n)"
    )


def _rank(window: _Window, step: _Step) -> int:
    plans = window.plans
    return plans[step.dataloader_idx].rank if step.dataloader_idx < len(plans) else 0


def _snapshot(metric: Metric, tap: MetricTap) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, red in tap.reductions.items():
        value = getattr(metric, name)
        if isinstance(value, list):
            out[name] = len(value)
        elif isinstance(value, Tensor) and red == _SUM:
            out[name] = value.detach().clone()
    return out


def _detached(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, tuple):
        return tuple(_detached(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _detached(v) for k, v in obj.items()}
    return obj


def _select(args: tuple, kwargs: dict, rows: int, keep: list[int]) -> tuple[tuple, dict] | None:
    """The call's arguments without the repeated rows; ``None`` when no argument has a row per sample."""
    found = False

    def pick(value: Any) -> Any:
        nonlocal found
        if isinstance(value, Tensor) and value.dim() and value.shape[0] == rows:
            found = True
            return value[torch.tensor(keep, dtype=torch.long, device=value.device)]
        return value

    out = (tuple(pick(v) for v in args), {k: pick(v) for k, v in kwargs.items()})
    return out if found else None


def _replay(tap: MetricTap, correction: _Correction) -> dict[str, Any]:
    """The state the padded step's update calls make without the repeated rows (on a private copy)."""
    keep = [i for i in range(correction.rows) if i not in set(correction.repeats)]
    shadow = _empty_copy(tap.metric)
    type(shadow).reset(shadow)
    for args, kwargs in correction.calls:
        selected = _select(args, kwargs, correction.rows, keep)
        if selected is None:
            raise _CannotCorrect(
                "the update() arguments of the batch holding repeated samples do not have one row per sample "
                f"({_first_rows(args, kwargs)} rows for {correction.rows} samples)"
            )
        if keep:
            shadow.update(*selected[0], **selected[1])
    return {name: getattr(shadow, name) for name in tap.reductions}


def _apply(tap: MetricTap, pieces: list[_Piece], corrections: list[_Correction]) -> list[_Piece]:
    """The pieces with each padded step's contribution swapped for its replay without the repeats.

    The swap is one extra piece per dataloader (count 0): the replayed minus the recorded share for
    ``sum`` states, the replayed elements for ``cat`` states (whose recorded elements are removed).
    """
    pieces = [dataclasses.replace(p, states=dict(p.states)) for p in pieces]
    if any(not p.exact for p in pieces):
        return pieces
    cat_names = [name for name, red in tap.reductions.items() if red == _CAT]
    for piece in pieces:
        for name in cat_names:
            piece.states[name] = list(piece.states[name])
    extras: dict[int | None, dict[str, Any]] = {}
    for correction in corrections:
        replayed = _replay(tap, correction)
        same_dl = [p for p in pieces if p.dl == correction.dl]
        if cat_names:
            _remove_elements(same_dl, cat_names, correction.removed)
        extra = extras.setdefault(correction.dl, {})
        for name, step_part in correction.step_sums.items():
            default = tap.metric._defaults[name]
            delta = (replayed[name].detach() - default.to(replayed[name].device)) - step_part.to(replayed[name].device)
            extra[name] = extra[name] + delta if name in extra else delta
        for name in cat_names:
            extra.setdefault(name, []).extend(replayed[name])
    out = list(pieces)
    for dl, extra in extras.items():
        for name, red in tap.reductions.items():
            if name not in extra:
                extra[name] = [] if red == _CAT else torch.zeros_like(tap.metric._defaults[name])
        template = next(p for p in pieces if p.dl == dl) if any(p.dl == dl for p in pieces) else None
        piece = _Piece(extra, 0, dl=dl)
        if template is not None:
            piece = dataclasses.replace(template, states=extra, count=0)
        out.append(piece)
    return out


def _remove_elements(pieces: list[_Piece], names: list[str], removed: dict[str, list[Tensor]]) -> None:
    """Take the padded step's ``cat`` elements out of the pieces (by identity, else by equal content)."""
    n = len(removed[names[0]])
    for k in range(n):
        targets = {name: removed[name][k] for name in names}
        if not _remove_one(pieces, targets, lambda a, b: a is b) and not _remove_one(pieces, targets, _same):
            raise _CannotCorrect(
                "the repeated samples' entries of a `cat` state could not be found in the epoch state "
                "(the state was rewritten after the padded batch)"
            )


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b.to(a.device)))


def _remove_one(pieces: list[_Piece], targets: dict[str, Tensor], equal: Any) -> bool:
    for piece in reversed(pieces):
        lists = {name: piece.states[name] for name in targets}
        length = min(len(v) for v in lists.values())
        for i in range(length - 1, -1, -1):
            if all(equal(lists[name][i], target) for name, target in targets.items()):
                for name in targets:
                    del lists[name][i]
                return True
    return False


# ---------------------------------------------------------------------------------------------
# all ranks together
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyCount:
    """What is known about the samples behind one key's epoch value (all ranks)."""

    samples: int | None = None
    dataset_size: int | None = None
    duplicates: int = 0
    weights: tuple[int, int] | None = None  # (Lightning's weight, true rows) of a step that disagreed
    reference: float | None = None  # the corrected tensor reference (``corrected`` only)
    reason: str | None = None
    corrected: bool = False


class Accounts:
    """The gathered accounts of every rank for one closed window."""

    def __init__(self, payloads: list[dict[str, Any]]) -> None:
        self.payloads = [p for p in payloads if isinstance(p, dict)]

    def _size(self, dataloader_idx: int | None) -> int | None:
        sizes = self.payloads[0]["sizes"] if self.payloads else []
        if dataloader_idx is None:
            return sizes[0] if len(sizes) == 1 else None
        return sizes[dataloader_idx] if dataloader_idx < len(sizes) else None

    def for_tensor(self, tracker: KeyTracker) -> KeyCount:
        entries = [p["keys"][tracker.storage_key] for p in self.payloads if tracker.storage_key in p["keys"]]
        size = self._size(tracker.dataloader_idx)
        if not entries:
            return KeyCount(dataset_size=size)
        samples_each = [e["samples"] for e in entries]
        samples = None if any(s is None for s in samples_each) else sum(samples_each)
        duplicates = sum(e["duplicates"] for e in entries)
        disagree = sum(e["disagree"] for e in entries)
        example = next((tuple(e["example"]) for e in entries if e["example"]), None)
        reason = next((e["reason"] for e in entries if e["reason"]), None)
        if not (duplicates or disagree or reason):
            return KeyCount(samples, size)
        reference, why = reduce_states([e["state"] for e in entries])
        if reason is not None:
            reference, why = None, reason
        return KeyCount(samples, size, duplicates, example if disagree else None, reference, why, corrected=True)

    def for_metric(self, attribute: str | None, dataloader_idx: int | None) -> KeyCount:
        entries = [p["metrics"][attribute] for p in self.payloads if attribute in p["metrics"]]
        size = self._size(dataloader_idx)
        if not entries:
            return KeyCount(dataset_size=size)
        samples_each = [e["samples"] for e in entries]
        samples = None if any(s is None for s in samples_each) else sum(samples_each)
        return KeyCount(samples, size, sum(e["duplicates"] for e in entries))
