"""What checkpoint, early-stopping and LR-scheduler callbacks acted on, replayed on the references.

The runtime half of decisions (the replays themselves are pure: :mod:`lmlogger.records._replay`). For a run's
``ModelCheckpoint`` and ``EarlyStopping`` callbacks with a ``monitor`` and its ``ReduceLROnPlateau``
schedulers (``"monitor"`` in ``configure_optimizers``), a :class:`DecisionTracker`:

* sees each *read* of the monitored value at the one place the callback reads it
  (``ModelCheckpoint._save_topk_checkpoint``, ``EarlyStopping._evaluate_stopping_criteria``, the epoch
  loop's ``_update_learning_rates``), by wrapping that method on the instance for the run and
  restoring it at the end; the callback's own code runs exactly as before, once, with the same arguments;
* pairs the value read with the verified epoch value it came from (the latest closed window of the
  monitored key whose logged value is that value) and feeds both to the replays;
* writes one ``decision`` record per read to the sidecar, shows the decisions in TensorBoard / MLflow,
  warns once per callback whose decision would differ on the references, and puts
  ``checkpoint["lmlogger"]`` (plain Python types only) into every checkpoint saved during the run.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lightning_utilities.core.rank_zero import rank_zero_only
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lmlogger.records._errors import warn_user
from lmlogger.records._records import SCHEMA_VERSION, DecisionRecord, VerificationRecord, json_number, worst
from lmlogger.records._replay import CHECKPOINT, EARLY_STOPPING, LR_SCHEDULER, Decision, DecisionReplay
from lmlogger.runtime import _lightning

if TYPE_CHECKING:
    from lmlogger.runtime._session import Session

#: Key of lmlogger's entry in a Lightning checkpoint dict.
CHECKPOINT_KEY = "lmlogger"


@dataclass
class _Read:
    """One read of the monitored value, waiting for its verified epoch value."""

    epoch: int
    step: int | None
    value: float
    key: str | None = None
    reference: float | None = None
    verdict: str | None = None  # None: not resolved yet
    reason: str | None = None
    observed: dict[str, Any] = field(default_factory=dict)
    done: bool = False  # the callback's own method returned
    fed: bool = False  # given to the replays


@dataclass
class _Watched:
    """One callback (or plateau scheduler) whose decisions are tracked."""

    label: str
    kind: str
    monitor: str
    config: dict[str, Any]
    target: Any
    replay: DecisionReplay
    queue: deque = field(default_factory=deque)
    paths: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # kept checkpoint -> its read


def _close(a: float, b: float | None) -> bool:
    if b is None:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def _float(value: Any) -> float:
    if isinstance(value, Tensor):
        return float(value.detach().double().cpu())
    return float(value)


def _plain(value: Any) -> Any:
    """A config value as strict JSON and ``torch.load(weights_only=True)`` accept it."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, Tensor) and value.numel() == 1:
        return json_number(float(value.detach().double().cpu()))
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _settings(config: Any) -> Any:
    """A callback's settings as compared on resume: the learning rates a scheduler starts from change by design."""
    return {k: v for k, v in config.items() if k != "lrs"} if isinstance(config, dict) else None


def _lrs(scheduler: Any) -> list[float]:
    return [float(group["lr"]) for group in scheduler.optimizer.param_groups]


class DecisionTracker:
    """See module docstring. One per :class:`~lmlogger.runtime._session.Session`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.watched: list[_Watched] = []
        self.by_target: dict[int, _Watched] = {}
        self.patched: list[tuple[Any, str]] = []
        self.latest: dict[str, VerificationRecord] = {}
        self.saving: _Watched | None = None
        self.resumed_at: tuple[Any, Any] = (None, None)
        self.finished = False
        self._labels: dict[str, int] = {}
        self.seeds: dict[str, dict[str, Any]] = {}  # label -> replay state, from the checkpoint a run resumes
        self.unwritten: list[DecisionRecord] = []  # seed records, written with the first records of the run

    # -- setup / teardown -----------------------------------------------------------------------
    def start(self) -> None:
        trainer = self.session.trainer
        self._read_seeds(trainer)
        # the callback classes of every loaded namespace: lightning.pytorch's and pytorch_lightning's
        checkpoints, stoppers = _lightning.classes("ModelCheckpoint"), _lightning.classes("EarlyStopping")
        for callback in list(trainer.callbacks):
            if isinstance(callback, checkpoints) and callback.monitor is not None:
                watched = self._watch(
                    callback,
                    CHECKPOINT,
                    callback.monitor,
                    {
                        "mode": callback.mode,
                        "save_top_k": callback.save_top_k,
                        "every_n_epochs": callback.every_n_epochs,
                        "every_n_train_steps": getattr(callback, "_every_n_train_steps", None),
                    },
                )
                self._patch(callback, "_save_topk_checkpoint", self._checkpoint_wrapper(watched))
            elif isinstance(callback, stoppers) and callback.monitor is not None:
                watched = self._watch(
                    callback,
                    EARLY_STOPPING,
                    callback.monitor,
                    {
                        "mode": callback.mode,
                        "patience": callback.patience,
                        # EarlyStopping keeps min_delta signed by mode; the record keeps the user's value
                        "min_delta": abs(float(callback.min_delta)),
                        "check_finite": callback.check_finite,
                        "stopping_threshold": callback.stopping_threshold,
                        "divergence_threshold": callback.divergence_threshold,
                        "check_on_train_epoch_end": getattr(callback, "_check_on_train_epoch_end", None),
                    },
                )
                self._patch(callback, "_evaluate_stopping_criteria", self._stopping_wrapper(watched))
        loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        if loop is not None and hasattr(loop, "_update_learning_rates"):
            self._patch(loop, "_update_learning_rates", self._scheduler_wrapper(loop))

    def _read_seeds(self, trainer: Any) -> None:
        """A run resumed from a checkpoint saved during a verified run goes on from its decisions so far.

        Lightning holds the loaded checkpoint until the run starts (``_CheckpointConnector._loaded_checkpoint``,
        cleared by ``resume_end`` after ``log_graph``, where the session starts)."""
        loaded = getattr(getattr(trainer, "_checkpoint_connector", None), "_loaded_checkpoint", None)
        entry = loaded.get(CHECKPOINT_KEY) if isinstance(loaded, dict) else None
        if not isinstance(entry, dict):
            return
        self.resumed_at = (entry.get("epoch"), entry.get("global_step"))
        for state in entry.get("replays") or []:
            if isinstance(state, dict) and isinstance(state.get("callback"), str):
                self.seeds[state["callback"]] = state

    def _watch(self, target: Any, kind: str, monitor: str, config: dict[str, Any]) -> _Watched:
        name = type(target).__name__
        n = self._labels[name] = self._labels.get(name, 0) + 1
        label = name if n == 1 else f"{name}-{n}"
        config = {k: _plain(v) for k, v in config.items()}
        watched = _Watched(label, kind, monitor, config, target, DecisionReplay(label, kind, monitor, None, config))
        seed = self.seeds.pop(label, None)
        same = seed is not None and (seed.get("kind"), seed.get("monitor"), _settings(seed.get("config"))) == (
            kind,
            monitor,
            _settings(config),
        )
        if same and self._guard("resuming the decisions of the checkpoint", watched.replay.load, seed) is False:
            watched.replay = DecisionReplay(label, kind, monitor, None, config)  # a corrupt entry: start afresh
        elif same:
            epoch, step = self.resumed_at
            self.unwritten.append(
                DecisionRecord(
                    callback=label,
                    kind=kind,
                    monitor=monitor,
                    key=watched.replay.key,
                    config=dict(config),
                    epoch=int(epoch or 0),
                    step=step,
                    logged=None,
                    reference=None,
                    verdict=watched.replay.verdict or "unverified",
                    state=watched.replay.state(),
                )
            )
        self.watched.append(watched)
        self.by_target[id(target)] = watched
        return watched

    def _patch(self, obj: Any, name: str, wrapper: Any) -> None:
        original = getattr(obj, name)
        wrapped = functools.wraps(original)(wrapper(original))
        wrapped.__lmlogger_wrapper__ = True
        obj.__dict__[name] = wrapped
        self.patched.append((obj, name))

    def detach(self) -> None:
        """Restore every wrapped method (idempotent)."""
        try:
            self.finish()
        finally:
            for obj, name in self.patched:
                current = obj.__dict__.get(name)
                if getattr(current, "__lmlogger_wrapper__", False):
                    del obj.__dict__[name]
            self.patched.clear()

    # -- the wrappers: the callback's own method runs once, unchanged; lmlogger's part never raises --------
    def _guard(self, where: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)``; lmlogger's own failure becomes one warning (and ``False``), never an exception."""
        try:
            return fn(*args)
        except Exception as err:
            self.session._internal_error(where, err)
            return False

    def _checkpoint_wrapper(self, watched: _Watched) -> Any:
        def wrapper(original: Any) -> Any:
            def _save_topk_checkpoint(trainer: Any, monitor_candidates: dict[str, Any]) -> None:
                callback = watched.target
                current = monitor_candidates.get(callback.monitor) if callback.save_top_k != 0 else None
                read = None
                if current is not None:
                    read = self._guard("recording a checkpoint decision", self._read, watched, trainer, current)
                score = callback.current_score
                self.saving = watched
                try:
                    original(trainer, monitor_candidates)
                finally:
                    self.saving = None
                    if isinstance(read, _Read):
                        self._guard("recording a checkpoint decision", self._after_checkpoint, watched, read, score)

            return _save_topk_checkpoint

        return wrapper

    def _after_checkpoint(self, watched: _Watched, read: _Read, score: Any) -> None:
        callback = watched.target
        kept = callback.current_score is not score
        if kept:
            for path, value in callback.best_k_models.items():
                if value is callback.current_score:
                    watched.paths[path] = (read.epoch, read.step)
        watched.paths = {p: v for p, v in watched.paths.items() if p in callback.best_k_models}
        best = watched.paths.get(callback.best_model_path)
        read.observed = {"kept": kept}
        if best is not None:
            read.observed.update(best_epoch=best[0], best_step=best[1])
        self._done(watched, read)

    def _stopping_wrapper(self, watched: _Watched) -> Any:
        def wrapper(original: Any) -> Any:
            def _evaluate_stopping_criteria(current: Any) -> Any:
                trainer = self.session.trainer
                read = self._guard("recording an early-stopping decision", self._read, watched, trainer, current)
                result = original(current)
                if isinstance(read, _Read):
                    read.observed = {"stop": bool(result[0]) if isinstance(result, tuple) else None}
                    self._guard("recording an early-stopping decision", self._done, watched, read)
                return result

            return _evaluate_stopping_criteria

        return wrapper

    def _scheduler_wrapper(self, loop: Any) -> Any:
        def wrapper(original: Any) -> Any:
            def _update_learning_rates(*args: Any, **kwargs: Any) -> None:
                before = self._guard("recording a scheduler decision", self._schedulers_before)
                original(*args, **kwargs)
                if isinstance(before, list) and before:
                    self._guard("recording a scheduler decision", self._schedulers_after, before)

            return _update_learning_rates

        return wrapper

    def _schedulers_before(self) -> list[tuple[Any, int, list[float]]]:
        # Lightning calls this twice per training step: which configs hold a ReduceLROnPlateau is worked
        # out once per list of configs (and again if the list changes), not on every call.
        configs = self.session.trainer.lr_scheduler_configs
        if not configs:
            return []
        key = (id(configs), len(configs))
        plateau = self.__dict__.get("_plateau")
        if plateau is None or plateau[0] != key:
            found = [
                c for c in configs if c.reduce_on_plateau and c.monitor and isinstance(c.scheduler, ReduceLROnPlateau)
            ]
            plateau = self._plateau = (key, configs, found)
        return [(config, config.scheduler.last_epoch, _lrs(config.scheduler)) for config in plateau[2]]

    def _schedulers_after(self, before: list[tuple[Any, int, list[float]]]) -> None:
        trainer = self.session.trainer
        for config, last_epoch, lrs in before:
            scheduler = config.scheduler
            if scheduler.last_epoch == last_epoch:
                continue  # it did not step
            value = trainer.callback_metrics.get(config.monitor)
            if value is None:
                continue
            watched = self.by_target.get(id(scheduler))
            if watched is None:
                watched = self._watch(
                    scheduler,
                    LR_SCHEDULER,
                    config.monitor,
                    {
                        "mode": scheduler.mode,
                        "factor": scheduler.factor,
                        "patience": scheduler.patience,
                        "threshold": scheduler.threshold,
                        "threshold_mode": scheduler.threshold_mode,
                        "cooldown": scheduler.cooldown,
                        "min_lrs": list(scheduler.min_lrs),
                        "eps": scheduler.eps,
                        "lrs": lrs,
                        "interval": config.interval,
                        "frequency": config.frequency,
                    },
                )
            read = self._read(watched, trainer, value)
            read.observed = {"lr_before": lrs, "lr_after": _lrs(scheduler)}
            self._done(watched, read)

    # -- reads -------------------------------------------------------------------------------------
    def _read(self, watched: _Watched, trainer: Any, value: Any) -> _Read:
        read = _Read(epoch=int(trainer.current_epoch), step=int(trainer.global_step), value=_float(value))
        watched.queue.append(read)
        for key in self._candidates(watched.monitor):
            record = self.latest.get(key)
            if record is not None and _close(read.value, record.logged):
                self._resolve(read, record)
                break
        self._drain(watched)
        return read

    def _done(self, watched: _Watched, read: _Read) -> None:
        read.done = True
        self._drain(watched)

    @staticmethod
    def _candidates(monitor: str) -> tuple[str, ...]:
        # `self.log("f1", ..., on_step=True, on_epoch=True)`: the callbacks read "f1", the logger got "f1_epoch"
        return (monitor, f"{monitor}_epoch")

    @staticmethod
    def _resolve(read: _Read, record: VerificationRecord) -> None:
        read.key, read.reference, read.verdict, read.reason = (
            record.key,
            record.reference,
            record.verdict,
            record.reason,
        )

    def _drain(self, watched: _Watched) -> None:
        """Feed the resolved reads at the head of the queue to the replays, in read order (at once, so that a
        checkpoint saved for a read carries it), and write each one once the callback's method returned."""
        out = []
        for read in watched.queue:
            if read.verdict is None:
                break
            if not read.fed:
                read.fed = True
                if read.key is not None and watched.replay.key is None:
                    watched.replay.key = read.key
                watched.replay.feed(read.epoch, read.step, read.value, read.reference, read.verdict)
        while watched.queue and watched.queue[0].fed and watched.queue[0].done:
            read = watched.queue.popleft()
            watched.replay.observe(read.epoch, read.step, read.observed)
            out.append(
                DecisionRecord(
                    callback=watched.label,
                    kind=watched.kind,
                    monitor=watched.monitor,
                    key=read.key,
                    config=dict(watched.config),
                    epoch=read.epoch,
                    step=read.step,
                    logged=read.value,
                    reference=read.reference,
                    verdict=read.verdict,
                    observed={k: _plain(v) for k, v in read.observed.items()},
                    reason=read.reason,
                )
            )
        if out:
            self._emit(out)

    def on_close(self, records: list[VerificationRecord]) -> None:
        """A window closed with ``records``: resolve the reads that waited for them."""
        for record in records:
            self.latest[record.key] = record
        by_key = {r.key: r for r in records}
        for watched in self.watched:
            for read in watched.queue:
                if read.verdict is not None:
                    continue
                for key in self._candidates(watched.monitor):
                    record = by_key.get(key)
                    if record is None:
                        continue
                    if _close(read.value, record.logged):
                        self._resolve(read, record)
                    elif record.epoch >= read.epoch:
                        read.key, read.verdict = key, "unverified"
                        read.reason = (
                            f"{watched.label} read `{watched.monitor}` = {read.value:.6g}, which is not the epoch "
                            f"value the logger received ({record.logged})"
                        )
                    break
            self._drain(watched)
        if self.unwritten:
            self._emit([])

    def finish(self) -> None:
        """The run ended: reads still waiting are unverified; one warning per callback that would decide otherwise."""
        if self.finished:
            return
        self.finished = True
        for watched in self.watched:
            for read in watched.queue:
                if read.verdict is None:
                    read.verdict = "unverified"
                    read.reason = (
                        f"`{watched.monitor}` has no verified epoch value equal to the value {watched.label} read"
                    )
                read.done = True
            self._drain(watched)
        if self.session.options.on_mismatch == "ignore":
            return
        if rank_zero_only.rank != 0:
            return
        for decision in self.decisions():
            if decision.agree is False:  # at the user's trainer.fit(...) line, as the key warnings
                warn_user(f"lmlogger: {decision.message}")

    # -- outputs -----------------------------------------------------------------------------------
    def decisions(self) -> list[Decision]:
        """Every tracked callback's decision so far."""
        return [w.replay.decision() for w in self.watched if w.replay.reads]

    def _emit(self, records: list[DecisionRecord]) -> None:
        if self.unwritten:
            records, self.unwritten = [*self.unwritten, *records], []
        if rank_zero_only.rank != 0 or not records:
            return
        decisions = self.decisions()
        for logger in self.session.loggers:
            sink = logger._lml_sink
            write = getattr(sink, "write_decisions", None)
            if write is not None:
                write(records, decisions)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the run's verification into a checkpoint being saved (plain Python types only)."""
        checkpoint[CHECKPOINT_KEY] = self.payload()

    def payload(self) -> dict[str, Any]:
        """``checkpoint["lmlogger"]``: see ``docs/decisions.md``."""
        from lmlogger.records._versions import versions

        trainer = self.session.trainer
        monitors = sorted({w.monitor for w in self.watched})
        keys = {}
        for key, r in sorted(self.latest.items()):
            keys[key] = {
                "phase": r.phase,
                "epoch": r.epoch,
                "step": r.step,
                "logged": r.logged,
                "reference": r.reference,
                "verdict": r.verdict,
                "findings": list(r.findings),
                "fix": r.fix,
            }
        pending = [
            {"callback": w.label, "monitor": w.monitor, "epoch": r.epoch, "step": r.step, "logged": r.value}
            for w in self.watched
            for r in w.queue
            if not r.fed
        ]
        monitored = [k for m in monitors for k in self._candidates(m) if k in keys]
        decisions = self.decisions()
        verdict = worst(
            [keys[k]["verdict"] for k in monitored] + [d.monitor_verdict for d in decisions if d.monitor_verdict]
        )
        saver = self.saving
        return {
            "schema": SCHEMA_VERSION,
            "lmlogger": versions().get("lmlogger"),
            "epoch": int(trainer.current_epoch),
            "global_step": int(trainer.global_step),
            "saved_by": (
                {"callback": saver.label, "monitor": saver.monitor, "mode": saver.config.get("mode")}
                if saver is not None
                else None
            ),
            "monitors": monitors,
            "monitor_verdict": verdict,
            "keys": keys,
            "decisions": [d.to_dict() for d in decisions],
            "replays": [{**w.replay.state(), "config": dict(w.config)} for w in self.watched],
            "pending": pending,
            "sidecar": next((lg.sidecar_path for lg in self.session.loggers if lg.sidecar_path), None),
        }
