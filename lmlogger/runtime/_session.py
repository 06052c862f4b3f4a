"""One trainer run seen by lmlogger: observation of ``self.log``, epoch windows, verification.

A :class:`Session` is created when a trainer that holds a :class:`~lmlogger.VerifiedLogger` starts a
run (``fit``, ``validate`` or ``test``) and ends with the logger's ``finalize``. It owns:

* one :class:`KeyTracker` per Lightning result key (hook, name, dataloader): provenance and the
  tensor ledger for the current epoch;
* one :class:`~lmlogger.runtime._ledger.MetricTap` per ``Metric`` of the module;
* a callback (:class:`~lmlogger.runtime._windows.WindowCallback`) that marks window boundaries.

Data flows one way: observe -> trackers/taps -> close of an epoch window -> verification records ->
the sinks of every VerifiedLogger on the trainer.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lightning_utilities.core.rank_zero import rank_zero_only, rank_zero_warn
from torch import Tensor
from torch.nn import ModuleDict, ModuleList
from torchmetrics import MaxMetric, Metric, MetricCollection, MinMetric
from torchmetrics.wrappers import MinMaxMetric, Running

from lmlogger.records._derivation import call_site, derivation, user_frame
from lmlogger.records._errors import MismatchError, warn_user
from lmlogger.records._functional import data_parameters, functional_attribute
from lmlogger.records._gap import format_gap, relative_gap
from lmlogger.records._records import METRIC_FUNCTIONAL, VerificationRecord
from lmlogger.records._verify import Facts, compare, judge
from lmlogger.runtime import _functional, _intercept, _lightning
from lmlogger.runtime._coverage import Coverage
from lmlogger.runtime._decisions import DecisionTracker
from lmlogger.runtime._distributed import Exchange
from lmlogger.runtime._ledger import (
    MetricTap,
    Owner,
    TensorLedger,
    accumulation_allowance,
    reduce_states,
    remembers_results,
    stateful_children,
)
from lmlogger.runtime._provenance import _PLAIN as _PLAIN_TENSOR
from lmlogger.runtime._provenance import (
    METRIC_COMPUTE,
    METRIC_FORWARD,
    METRIC_OBJECT,
    TENSOR,
    Classified,
    NumberEvidence,
    PendingNumber,
    callback_metrics,
    classify,
    is_step_hook,
    module_metrics,
    phase_of,
    reduce_name,
)
from lmlogger.runtime._samples import EXCHANGE_KEY, Accounts, SampleAccountant
from lmlogger.runtime._tracker import KeyTracker
from lmlogger.runtime._windows import window_callback

if TYPE_CHECKING:
    from lmlogger.runtime._logger import VerifiedLogger


_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _skip_files() -> tuple[str, ...]:
    """Frames to step over to reach the user's ``self.log`` call site: lmlogger's own and LightningModule's (of
    every loaded namespace)."""
    return (_RUNTIME_DIR, *(ns.module_file for ns in _lightning.loaded()))


@dataclass
class _Best:
    """A ``MinMaxMetric``'s epoch raw values (reference, or the reason there is none) since its last reset."""

    owner: Owner
    rank: int  # compute() calls since the reset, up to the one of ``owner``'s epoch
    raws: list[tuple[float | None, str | None]]


@dataclass
class _Capture:
    """Epoch values the wrapped loggers received while a window was closing."""

    phase: str
    values: dict[str, tuple[float, int | None]] = field(default_factory=dict)


class Session:
    """See module docstring."""

    def __init__(self, trainer: Any, module: Any, owner: VerifiedLogger) -> None:
        self.trainer = trainer
        self.module = module
        self.namespace = _lightning.of(module) or _lightning.of(trainer) or _lightning.primary()
        self.loggers: list[VerifiedLogger] = [owner]
        self.options = owner.options
        self.trackers: dict[str, KeyTracker | None] = {}
        self.metrics = self._find_metrics()
        self.taps: dict[int, MetricTap] = {}
        self.samples = SampleAccountant(self)  # issue 14: samples behind each epoch value (_samples.py)
        self.owner: Owner | None = None
        self.dl: int | None = None  # the evaluation dataloader running now
        self.wrappers: list[tuple[str, Any]] = []  # metrics whose last results lmlogger remembers
        self._tap_all(adopt=False)
        self.outer: Owner | None = None  # the training epoch a validation run interrupts
        self.eval_owner: Owner | None = None  # the validation/test window in progress
        self.capture: _Capture | None = None
        self.open_train: Owner | None = None
        self.warned: set[str] = set()
        self.claimed: set[int] = set()  # metrics bound to a key by identity
        self._results: dict[str | None, Any] = {}
        self.failed_internally: str | None = None
        self.exchange = Exchange(trainer)
        self.callback = window_callback(self)
        self.decisions = DecisionTracker(self)  # checkpoint / early stopping / scheduler decisions
        self.best: dict[tuple[int, str, int | None], _Best] = {}  # MinMaxMetric histories (best-so-far)
        self.coverage = Coverage(self)  # keys the logger received without an observed self.log

    # -- lifecycle ------------------------------------------------------------------------------
    def _tap(self, metric: Any, attribute: str | None, adopt: bool = True) -> MetricTap:
        tap = self.taps.get(id(metric))
        if tap is None:
            module = self.module
            tap = self.taps[id(metric)] = MetricTap(
                metric, attribute or type(metric).__name__, hook_of=lambda: module._current_fx_name
            )
            tap.install()
            self.samples.watch(metric, tap)
            if adopt and self.owner is not None:
                # first met in the middle of a window (created lazily, or kept where Lightning does not
                # look): what it holds belongs to that window
                tap.adopt(self.owner, self.dl)
        return tap

    def _tap_all(self, adopt: bool) -> None:
        """A tap for every metric of the module, except the pass-through ``base_metric`` of ``Running``."""
        inner: set[int] = set()
        for _, metric in self.metrics:
            if isinstance(metric, Running):
                inner.update(id(m) for m in metric.base_metric.modules())
        for attribute, metric in self.metrics:
            if id(metric) not in inner:
                self._tap(metric, attribute, adopt)
        self.wrappers = [(a, m) for a, m in self.metrics if remembers_results(m)]

    def _metric_roots(self) -> set[str]:
        """Attributes of the module that are metrics or containers of metrics only (``self.f1``,
        ``self.val_metrics[i]``): a call of one of them is a metric's forward(). A model that merely
        holds metrics somewhere inside (``self.model``) is not one."""
        roots = set()
        for name in {n.split(".", 1)[0].split("[", 1)[0] for n, _ in self.metrics}:
            value = getattr(self.module, name, None)
            if isinstance(value, (Metric, MetricCollection)):
                roots.add(name)
            elif isinstance(value, (dict, ModuleDict)):
                if all(isinstance(v, (Metric, MetricCollection)) for v in value.values()):
                    roots.add(name)
            elif isinstance(value, (list, tuple, ModuleList)) and all(
                isinstance(v, (Metric, MetricCollection)) for v in value
            ):
                roots.add(name)
        return roots

    def _find_metrics(self) -> list[tuple[str, Any]]:
        """The metrics of the module and of the trainer's callbacks (a callback that owns a Metric and logs it
        with ``pl_module.log``)."""
        own = module_metrics(self.module)
        seen = {id(m) for _, m in own}  # a callback holding the module itself adds nothing
        others = callback_metrics(getattr(self.trainer, "callbacks", None) or ())
        return own + [(name, m) for name, m in others if id(m) not in seen]

    def _refresh_metrics(self) -> None:
        """Look for metrics made after the run started (in ``setup``, lazily in the first step)."""
        metrics = self._find_metrics()
        if [id(m) for _, m in metrics] != [id(m) for _, m in self.metrics]:
            self.metrics = metrics
            self._tap_all(adopt=True)

    def _bind(self, metric: Any, on_epoch: bool) -> None:
        """A key uses ``metric``: its folded state is kept only if some epoch value may need it (its
        sub-metrics' too, which wrapper and composite metrics compute from)."""
        for sub in metric.modules():
            tap = self.taps.get(id(sub))
            if tap is not None and (sub is metric or on_epoch):
                tap.bind(on_epoch)

    def start(self) -> None:
        """Called at the start of a run on every rank, before the module's ``setup`` hook (metrics made
        there are found at the first ``self.log``, see :meth:`_refresh_metrics`)."""
        self.trainer.callbacks.insert(0, self.callback)
        _intercept.register(self.trainer, self)
        _functional.activate((vars(self.module),))
        self._functional_active = True

    def detach(self) -> None:
        try:
            self.decisions.detach()
        except Exception as err:
            self._internal_error("ending the decisions record", err)
        _intercept.unregister(self.trainer)
        if self.__dict__.pop("_functional_active", False):
            _functional.deactivate()
        if self.callback in self.trainer.callbacks:
            self.trainer.callbacks.remove(self.callback)
        for tap in self.taps.values():
            tap.remove()
        self.samples.remove()

    def _internal_error(self, where: str, err: BaseException) -> None:
        """lmlogger's own failure: one warning per run; training goes on, verdicts become unverified."""
        if self.failed_internally is None:
            rank_zero_warn(
                f"lmlogger: internal error while {where} ({type(err).__name__}: {err}). Training continues; "
                "affected keys are reported as `unverified`. Please report this at the lmlogger issue tracker."
            )
        self.failed_internally = f"lmlogger internal error while {where}: {type(err).__name__}: {err}"

    # -- observation (hot path: every self.log) ---------------------------------------------------
    def observe(self, module: Any, name: str, value: Any, args: tuple, kwargs: dict) -> None:
        try:
            self._observe(module, name, value, args, kwargs)
        except Exception as err:  # never break training
            self._internal_error(f"recording self.log({name!r})", err)

    def _observe(self, module: Any, name: str, value: Any, args: tuple, kwargs: dict) -> None:
        if args:  # options passed positionally (rare): name them
            kwargs = self.namespace.log_signature.bind(module, name, value, *args, **kwargs).arguments
        fx = module._current_fx_name
        results = self._results.get(fx)
        if results is None:  # the loop's result collection, fixed per hook for a whole run
            results = self.trainer._results
            if fx is None or results is None:
                return
            self._results[fx] = results
        dl = results.dataloader_idx
        storage_key = f"{fx}.{name}"
        if dl is not None and kwargs.get("add_dataloader_idx", True):
            storage_key += f".{dl}"
        tracker = self.trackers.get(storage_key, False)
        if tracker is False:
            self._refresh_metrics()
            tracker = self.trackers[storage_key] = self._new_tracker(results, storage_key)
        if tracker is None:
            return
        tracker.active = True

        classified = classify(value, self.metrics, self.claimed, self.wrappers)
        call = None
        if isinstance(value, Tensor) and classified is _PLAIN_TENSOR:
            call = _functional.lookup(value)  # a torchmetrics functional metric's result (by identity)
            if call is not None:
                classified = _FUNCTIONAL
        plain = isinstance(classified, PendingNumber) or classified.kind == TENSOR
        if isinstance(classified, PendingNumber) or (tracker.evidence is not None and classified.kind == TENSOR):
            if tracker.evidence is None:
                tracker.evidence = NumberEvidence()
            tracker.evidence.add(classified if isinstance(classified, PendingNumber) else PendingNumber(0.0, []))
            if tracker.kind is None:
                tracker.kind = TENSOR
        else:
            tracker.evidence = None
            if (
                classified.kind != tracker.kind
                or classified.metric is not tracker.metric
                or classified.index != tracker.index
            ):
                tracker.kind, tracker.metric = classified.kind, classified.metric
                tracker.attribute, tracker.index = classified.attribute, classified.index
                if classified.metric is not None:
                    if not classified.by_value:
                        self.claimed.add(id(classified.metric))
                    tap = self._tap(classified.metric, classified.attribute)
                    self._bind(classified.metric, tracker.on_epoch)
                    tracker.attribute = tracker.attribute or tap.attribute
        if not tracker.call_checked and tracker.step_hook and tracker.on_epoch:
            tracker.call_checked = True  # once per key: the call as written, so a fix keeps its updates
            frame = user_frame(_skip_files())
            if frame is not None:
                tracker.call = call_site(frame, tracker.name, self._metric_roots())
        if plain and not tracker.derived_checked and tracker.step_hook and tracker.on_epoch:
            tracker.derived_checked = True  # once per key: read the call site's source, never per step
            frame = user_frame(_skip_files())
            if frame is not None:
                tracker.derived = derivation(frame, tracker.name, self._metric_roots())

        batch_size = kwargs.get("batch_size")
        if batch_size is None:
            batch_size = results.batch_size
            source = "inferred" if batch_size is not None else "default"
            if batch_size is None:
                batch_size = 1
        else:
            source = "given"
        if tracker.batch_size is None:
            tracker.batch_size, tracker.batch_size_source = int(batch_size), source

        if tracker.kind == METRIC_FUNCTIONAL and tracker.on_epoch:
            if call is None:
                if tracker.shadow is not None:
                    tracker.shadow.reason = "some steps logged a value that no torchmetrics functional metric returned"
            else:
                if tracker.shadow is None:
                    tracker.shadow = _functional.Shadow(call.name, self.options.functional_sample_cap)
                tracker.shadow.update(call)
        if tracker.on_epoch and plain:
            if tracker.ledger is None:
                tracker.ledger = TensorLedger(tracker.reduce)
            tracker.ledger.add(value, int(batch_size))
            self.samples.logged(storage_key, tracker.reduce, value, int(batch_size), results.batch, source == "given")
        elif tracker.on_epoch and tracker.step_hook and tracker.kind == METRIC_FORWARD:
            # Lightning weights a forward() value like any tensor: its weights are checked too (weight-mismatch)
            self.samples.logged(storage_key, tracker.reduce, value, int(batch_size), results.batch, source == "given")
        if tracker.kind == METRIC_OBJECT and tracker.on_step:
            forward = value._forward_cache
            if forward is None or forward is tracker.last_forward:
                tracker.stale = True
            tracker.last_forward = forward

    def _new_tracker(self, results: Any, storage_key: str) -> KeyTracker | None:
        result = results.get(storage_key)
        if result is None:
            return None
        meta = result.meta
        if not meta.logger:
            return None  # never reaches a logger: nothing to verify
        suffix = ""
        if meta.add_dataloader_idx and meta.dataloader_idx is not None:
            suffix = results.DATALOADER_SUFFIX.format(meta.dataloader_idx)
        hook = meta.fx.split(".", 1)[0]
        return KeyTracker(
            storage_key=storage_key,
            name=meta.name,
            hook=hook,
            phase=phase_of(hook),
            step_hook=is_step_hook(hook),
            on_step=meta.on_step,
            on_epoch=meta.on_epoch,
            reduce=reduce_name(meta),
            sync_dist=bool(meta.sync.should),
            dataloader_idx=meta.dataloader_idx,
            epoch_key=meta.forked_name(False) + suffix,
            step_key=meta.forked_name(True) + suffix,
        )

    # -- capture of epoch values sent to the loggers ---------------------------------------------
    def on_log_metrics(self, metrics: dict[str, Any], step: int | None) -> None:
        capture = self.capture
        if capture is None:
            return
        try:
            for key, value in metrics.items():
                capture.values[key] = (_to_float(value), step)
        except Exception as err:
            self._internal_error("reading epoch values", err)

    # -- windows ------------------------------------------------------------------------------
    def begin(self, owner: Owner) -> None:
        self.samples.begin(owner)
        self.owner = owner
        self.dl = None
        for tap in self.taps.values():
            tap.switch(owner, begins=True)

    def switch_dataloader(self, dl: int | None) -> None:
        """The evaluation loop started a batch of dataloader ``dl`` (Lightning computes the epoch values of
        the keys logged with the previous dataloader when it moves on)."""
        if dl != self.dl:
            self.dl = dl
            for tap in self.taps.values():
                tap.switch_dataloader(dl)

    def end(self, owner: Owner) -> None:
        """Lightning is about to compute the epoch values of ``owner``."""
        self.samples.end(owner)
        for tap in self.taps.values():
            tap.switch(None)
            tap.mark_end(owner)
        self.owner = None
        self.capture = _Capture(owner[0])

    def resume(self, owner: Owner | None) -> None:
        self.owner = owner
        self.dl = None
        for tap in self.taps.values():
            tap.switch(owner)

    def close(self, owner: Owner, discard: bool = False) -> None:
        """Verify every epoch-level key of ``owner``'s phase and hand the records to the sinks."""
        capture, self.capture = self.capture, None
        phase = owner[0]
        trackers = [t for t in self.trackers.values() if t is not None and t.phase == phase and t.active]
        if discard or phase == "sanity":
            if phase == "sanity" and not discard:
                self._sanity_extremes(owner)
            for tracker in self.trackers.values():
                if tracker is not None and tracker.phase == "val":
                    tracker.active, tracker.ledger, tracker.stale = False, None, False
                    if tracker.shadow is not None:
                        tracker.shadow.reset()
            for tap in self.taps.values():
                tap.pop(owner)
            self.samples.pop(owner)
            return
        try:
            records = self._verify(owner, trackers, capture)
        except Exception as err:
            self._internal_error(f"verifying the {phase} epoch {owner[1]}", err)
            records = []
        finally:
            for tap in self.taps.values():
                tap.pop(owner)
            self.samples.pop(owner)
            for tracker in trackers:
                tracker.active, tracker.ledger, tracker.stale = False, None, False
                if tracker.shadow is not None:
                    tracker.shadow.reset()
        provenance = []
        for tracker in trackers:
            state = (tracker.kind, tracker.attribute)
            if tracker.recorded != state:
                provenance.append(tracker.provenance())
                tracker.recorded = state
        for logger in self.loggers:
            try:
                outside_provenance, outside_records = self.coverage.flush(logger)  # keys not from self.log
            except Exception as err:
                self._internal_error("recording the keys lmlogger did not see", err)
                outside_provenance, outside_records = [], []
            logger._emit(provenance + outside_provenance, records + outside_records, owner)
        try:
            self.decisions.on_close(records)  # reads of a monitored key waiting for its epoch value
        except Exception as err:
            self._internal_error("recording decisions", err)
        self._report(records)

    def _verify(self, owner: Owner, trackers: list[KeyTracker], capture: _Capture | None) -> list:
        opts = self.options
        for tracker in trackers:
            if tracker.evidence is not None:
                resolved: Classified = tracker.evidence.resolve(self.claimed)
                tracker.evidence = None
                tracker.kind, tracker.metric = resolved.kind, resolved.metric
                tracker.attribute, tracker.index = resolved.attribute, resolved.index
                if resolved.metric is not None:
                    self._bind(resolved.metric, tracker.on_epoch)
        # one bounded exchange for the whole epoch: tensor partial states and metric pieces of every rank.
        # Local states are built defensively so that every rank always reaches the collective.
        metric_taps: dict[str, MetricTap] = {}
        for tracker in trackers:
            if tracker.metric is None or id(tracker.metric) not in self.taps:
                continue
            for metric in (tracker.metric, *(m for _, m in stateful_children(tracker.metric))):
                tap = self.taps.get(id(metric))
                if tap is not None:
                    metric_taps[tap.attribute] = tap
        try:
            local_tensor = {t.storage_key: t.ledger.state() for t in trackers if t.on_epoch and t.ledger is not None}
            local_pieces = {}
            for attribute, tap in metric_taps.items():
                window = tap.window(owner)
                local_pieces[attribute] = window.pieces if window is not None else []
                local_pieces[attribute] = self.samples.correct_pieces(owner, tap, local_pieces[attribute])
            local_tensor[EXCHANGE_KEY] = self.samples.payload(owner, metric_taps)
        except Exception as err:
            self._internal_error("collecting epoch states", err)
            local_tensor, local_pieces = {}, {}
        local_values = dict(capture.values) if capture is not None else {}
        gathered_tensor, gathered_pieces, values = self.exchange.gather(local_tensor, local_pieces, local_values)
        accounts = Accounts(gathered_tensor.pop(EXCHANGE_KEY, []))

        references: dict[tuple[int, int | None], tuple[Any, str | None]] = {}

        def reference_of(metric: Any, dl: int | None) -> tuple[Any, str | None]:
            cache_key = (id(metric), dl)
            if cache_key not in references:
                references[cache_key] = self._metric_reference(metric, dl, gathered_pieces)
            return references[cache_key]

        # functional shadows compute in one order on every rank (compute() is a collective in a distributed run)
        functional_refs: dict[str, tuple[float | None, str | None]] = {}
        for tracker in sorted(trackers, key=lambda t: t.storage_key):
            if tracker.kind == METRIC_FUNCTIONAL and tracker.on_epoch:
                try:
                    functional_refs[tracker.storage_key] = (
                        tracker.shadow.reference()
                        if tracker.shadow is not None
                        else (None, "no functional call was seen for this key in this epoch")
                    )
                except Exception as err:
                    functional_refs[tracker.storage_key] = (
                        None,
                        f"compute() of the functional's shadow raised {type(err).__name__}: {err}",
                    )

        records = []
        world = self.exchange.world_size
        for tracker in trackers:
            if not tracker.on_epoch:
                continue
            logged, step = values.get(tracker.epoch_key, (None, None))
            floor = 0.0
            tap = self.taps.get(id(tracker.metric)) if tracker.metric is not None else None
            window = tap.window(owner) if tap is not None else None
            derived = tracker.derived if tracker.kind == TENSOR else None
            if derived is not None:
                what = "per-batch" if derived.forward else "running"
                reference, reason = (
                    None,
                    f"`{tracker.name}` is computed from `{derived.source}` and logged with on_epoch=True from "
                    f"{tracker.hook}: its epoch value reduces {what} values, and lmlogger cannot recompute "
                    "the epoch value of an arithmetic on them",
                )
            elif tracker.kind == TENSOR:
                if tracker.reduce not in ("mean", "sum", "max", "min"):
                    reference, reason = (
                        None,
                        f"reduce_fx `{tracker.reduce}` is custom; lmlogger cannot recompute it",
                    )
                else:
                    states = gathered_tensor.get(tracker.storage_key, [])
                    reference, reason = reduce_states(states)
                    floor = accumulation_allowance(states)
            elif tracker.kind == METRIC_FUNCTIONAL:
                reference, reason = functional_refs.get(tracker.storage_key, (None, "no shadow for this key"))
            elif tap is None:
                reference, reason = None, "metric not tracked"
            elif isinstance(tracker.metric, MinMaxMetric) and tracker.index in (("max",), ("min",)):
                reference, reason = self._best_so_far(tracker, tap, owner, reference_of)
            elif _best_aggregator(tracker) and world == 1:
                reference, reason = self.samples.extreme(tracker.metric)
            else:
                dl = tracker.dataloader_idx if tracker.phase in ("val", "test") else None
                value, reason = reference_of(tracker.metric, dl)
                reference, reason = (None, reason) if reason is not None else _scalar(value, tracker.index)
            if isinstance(tracker.metric, MinMaxMetric) and tap is not None:
                self._best_so_far(tracker, tap, owner, reference_of)  # every epoch's raw value joins the history
            if tracker.kind == TENSOR:
                count = accounts.for_tensor(tracker)
                if count.corrected and reason is None:  # repeats left out, true rows as weights
                    reference, reason = count.reference, count.reason
            else:
                count = accounts.for_metric(tap.attribute if tap is not None else None, tracker.dataloader_idx)
                if tracker.kind == METRIC_FORWARD:
                    count = _forward_weights(count, accounts.for_tensor(tracker), logged, opts)
            if self.failed_internally:
                reference, reason = None, self.failed_internally
            phases = tap.phases_updated - {"sanity"} if tap is not None else set()
            shared_dl = tap is not None and len(tap.dls_updated.get(tracker.phase, ())) > 1
            # a forward() value is batch-local: sharing the instance reaches only keys that read its state
            reads_state = tracker.kind != METRIC_FORWARD
            facts = Facts(
                name=tracker.name,
                kind=tracker.kind or TENSOR,
                hook=tracker.hook,
                step_hook=tracker.step_hook,
                on_step=tracker.on_step,
                on_epoch=tracker.on_epoch,
                attribute=tracker.attribute
                if tracker.kind != METRIC_FUNCTIONAL
                else functional_attribute(tracker.name, tracker.phase),
                phase=tracker.phase,
                functional=tracker.shadow.expression if tracker.shadow is not None else None,
                functional_data=", ".join(data_parameters(tracker.shadow.name)) if tracker.shadow else "preds, target",
                carried=0 if _best_aggregator(tracker) else self._carried(tracker.metric, owner),
                shared=(len(phases) > 1 or shared_dl) and reads_state,
                shared_dataloaders=shared_dl and len(phases) <= 1 and reads_state,
                stale=tracker.stale,
                rank_local=world > 1 and tracker.kind == TENSOR and not tracker.sync_dist,
                reset_before_log=bool(
                    window is not None
                    and window.reset_after_end
                    and tracker.kind == METRIC_OBJECT
                    and (tracker.phase == "train" or not tracker.step_hook)
                ),
                reset_hooks=tuple(sorted(tap.reset_hooks)) if tap is not None else (),
                index=tracker.index,
                derived_source=derived.source if derived is not None else None,
                derived_epoch_expression=derived.epoch_expression if derived is not None else None,
                duplicates=count.duplicates,
                world_size=world,
                weights=count.weights,
                call=tracker.call,
                never_updated=bool(
                    tap is not None
                    and not tap.phases_updated
                    and not any(self.taps.get(id(c)) for _, c in stateful_children(tracker.metric))
                ),
            )
            verdict, findings, fix, reason = judge(facts, logged, reference, reason, max(opts.rtol, floor), opts.atol)
            records.append(
                VerificationRecord(
                    key=tracker.epoch_key,
                    phase=tracker.phase,
                    epoch=owner[1],
                    step=step,
                    logged=logged,
                    reference=reference,
                    verdict=verdict,
                    findings=tuple(findings),
                    reason=reason,
                    fix=fix,
                    rtol_floor=floor,
                    samples=count.samples,
                    dataset_size=count.dataset_size,
                    duplicates=count.duplicates,
                )
            )
        return records

    def _best_so_far(
        self, tracker: KeyTracker, tap: MetricTap, owner: Owner, reference_of: Any
    ) -> tuple[Any, str | None]:
        """The reference of a ``MinMaxMetric``'s ``max``/``min``: the extreme of the base metric's epoch values
        over the epochs since its last reset (each compute() moves the max/min by the raw value it returns).

        True when every compute() since the reset was an epoch's (its raw value verified here or in the sanity
        check); otherwise the reason says how many were not.
        """
        dl = tracker.dataloader_idx if tracker.phase in ("val", "test") else None
        key = (id(tracker.metric), tracker.phase, dl)
        best = self.best.get(key)
        if best is None or best.owner != owner:  # once per metric and window: max and min keys share it
            value, why = reference_of(tracker.metric, dl)
            raw, why = (None, why) if why is not None else _scalar(value, ("raw",))
            raws = list(best.raws) if best is not None and tap.compute_rank > 1 else []
            best = self.best[key] = _Best(owner, tap.compute_rank, [*raws, (raw, why)])
        which = tracker.index[0] if tracker.index else "max"
        missing = next((why for raw, why in best.raws if raw is None), None)
        if missing is not None:
            return None, f"the raw value of an epoch in `{tap.attribute}`'s {which} has no reference: {missing}"
        if len(best.raws) != best.rank:
            return None, (
                f"`{tap.attribute}`'s {which} is the {which} of its {best.rank} compute() results since its last "
                f"reset, and {len(best.raws)} of them were epoch values (compute() also ran within an epoch or "
                "in a multi-process sanity check)"
            )
        raws = [raw for raw, _ in best.raws]
        return (max(raws) if which == "max" else min(raws)), None

    def _sanity_extremes(self, owner: Owner) -> None:
        """A ``MinMaxMetric`` computed in the sanity check took its raw value into its max/min: keep it in the
        history (one process: the sanity state is local and exact)."""
        if self.exchange.world_size > 1:
            return
        gathered = {}
        for tap in self.taps.values():
            window = tap.window(owner)
            gathered[tap.attribute] = window.pieces if window is not None else []
        for tap in list(self.taps.values()):
            metric = tap.metric
            if not isinstance(metric, MinMaxMetric) or tap.computes_since_reset == 0:
                continue
            try:
                value, why = self._metric_reference(metric, None, gathered)
                raw, why = (None, why) if why is not None else _scalar(value, ("raw",))
            except Exception as err:
                raw, why = None, f"the sanity check's state could not be computed ({type(err).__name__}: {err})"
            self.best[(id(metric), "val", None)] = _Best(owner, tap.compute_rank, [(raw, why)])

    def _carried(self, metric: Any, owner: Owner) -> int:
        """Updates from before ``owner`` in the state at its end, for the metric and its sub-metrics."""
        if metric is None:
            return 0
        carried = 0
        for node in (metric, *(m for _, m in stateful_children(metric))):
            tap = self.taps.get(id(node))
            if tap is not None:
                carried = max(carried, tap.carried(owner))
        return carried

    def _metric_reference(self, metric: Any, dl: int | None, gathered: dict[str, list[Any]]) -> tuple[Any, str | None]:
        """``compute()`` of the epoch state of ``metric`` (and of its sub-metrics), for dataloader ``dl``."""

        def pieces_of(tap: MetricTap) -> list[Any]:
            return [p for p in gathered.get(tap.attribute, []) if dl is None or p.dl == dl]

        tap = self.taps[id(metric)]
        children = [(path, child) for path, child in stateful_children(metric) if child._defaults]
        state, count, reason = tap.merge(pieces_of(tap))
        if state is None and (pieces_of(tap) or not children):
            return None, reason
        child_states: dict[str, tuple[dict[str, Any] | None, int]] = {}
        for path, child in children:
            child_tap = self.taps.get(id(child))
            if child_tap is None:
                return None, f"sub-metric `{path}` of `{tap.attribute}` is not tracked"
            if not pieces_of(child_tap):
                child_states[path] = ({}, 0)  # not updated this epoch: its default state
                continue
            child_state, child_count, child_reason = child_tap.merge(pieces_of(child_tap))
            if child_state is None:
                return None, child_reason
            child_states[path] = (child_state, child_count)
        if children and not any(n for _, n in child_states.values()):
            return None, "the metric received no updates in this epoch"
        if state is None:
            state, count = {}, max(n for _, n in child_states.values())
        try:
            return tap.compute(state, count, child_states), None
        except Exception as err:
            return None, f"compute() of the epoch state raised {type(err).__name__}: {err}"

    def _report(self, records: list[VerificationRecord]) -> None:
        mismatches = [r for r in records if r.verdict == "mismatch"]
        mode = self.options.on_mismatch
        if not mismatches or mode == "ignore":
            return
        if mode == "raise":
            raise MismatchError("lmlogger: " + "; ".join(_describe(r) for r in mismatches))
        for record in mismatches:
            if record.key not in self.warned:
                self.warned.add(record.key)
                if rank_zero_only.rank == 0:  # shown at the user's trainer.fit(...) line, not inside lmlogger
                    warn_user(f"lmlogger: {_describe(record)}")


def _describe(record: VerificationRecord) -> str:
    gap = relative_gap(record.logged, record.reference)
    text = (
        f"`{record.key}` logged {record.logged:.6g} for {record.phase} epoch {record.epoch}, "
        f"but the epoch value is {record.reference:.6g}" + (f" ({format_gap(gap)} off)" if gap is not None else "")
    )
    if record.findings:
        text += f" ({', '.join(record.findings)})"
    if record.duplicates:
        text += f"; {record.duplicates} of its {record.samples or '?'} samples were repeats padding the ranks"
    if record.fix:
        text += f". Fix: {record.fix}"
    return text


def _best_aggregator(tracker: KeyTracker) -> bool:
    """A ``MaxMetric``/``MinMetric`` whose ``compute()`` is logged from an epoch-end hook: a best-so-far, whose
    state spans epochs on purpose (the lint's rule too), verified against every value it was given."""
    return (
        isinstance(tracker.metric, (MaxMetric, MinMetric))
        and tracker.kind == METRIC_COMPUTE
        and not tracker.step_hook
        and tracker.index is None
    )


def _forward_weights(count: Any, weighted: Any, logged: float | None, opts: Any) -> Any:
    """The sample count of a ``forward()`` key, with the weights of a step that disagreed when they moved its
    epoch value: Lightning's mean of the per-batch values differs from the same mean weighted by the true
    counts (weights off by one factor in every step change nothing, and nothing is claimed)."""
    if weighted.weights is None or weighted.reference is None or logged is None:
        return count
    if compare(logged, weighted.reference, opts.rtol, opts.atol) != "mismatch":
        return count
    return dataclasses.replace(count, weights=weighted.weights)


def _to_float(value: Any) -> float:
    if isinstance(value, Tensor):
        return float(value.detach().double().cpu())
    return float(value)


def _scalar(value: Any, index: tuple[Any, ...] | None = None) -> tuple[float | None, str | None]:
    if index is not None:
        try:
            value = value[index[0]] if isinstance(value, dict) else value[index]
        except (KeyError, IndexError, TypeError) as err:
            return None, f"the epoch result has no element {index!r} ({type(err).__name__})"
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value.detach().double().cpu()), None
    if isinstance(value, (int, float)):
        return float(value), None
    return None, f"compute() returned {type(value).__name__}, not a scalar"


_FUNCTIONAL = Classified(METRIC_FUNCTIONAL)
