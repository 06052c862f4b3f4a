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

import copy
import functools
import inspect
import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lightning_utilities.core.rank_zero import rank_zero_only
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lmlogger.records._errors import warn_user
from lmlogger.records._records import (
    SCHEMA_VERSION,
    VERDICTS,
    DecisionRecord,
    VerificationRecord,
    from_json,
    json_number,
    to_json,
    worst,
)
from lmlogger.records._replay import (
    CHECKPOINT,
    EARLY_STOPPING,
    KINDS,
    LR_SCHEDULER,
    Decision,
    DecisionReplay,
    replay_records,
)
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


# -- the stamp of a checkpoint a run resumes from: input, validated field by field ----------------------
_MAX_INT = 2**63  # the largest integer a record field may hold (records/_records.py)
_MISSING = object()


def _count(value: Any) -> bool:
    """An epoch or step count as a record holds it: a whole number >= 0, not a bool, not a float."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_INT


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# The stamp's fields (``payload``) and the check each must pass; unknown fields are ignored (newer versions).
_STAMP_FIELDS: dict[str, tuple[str, Any]] = {
    "schema": ("a whole number", _count),
    "lmlogger": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "epoch": ("a whole number >= 0", _count),
    "global_step": ("a whole number >= 0", _count),
    "saved_by": ("a dict or null", lambda v: v is None or isinstance(v, dict)),
    "monitors": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(m, str) for m in v)),
    "monitor_verdict": ("a verdict or null", lambda v: v is None or v in VERDICTS),
    "keys": ("a dict", lambda v: isinstance(v, dict)),
    "decisions": ("a list", lambda v: isinstance(v, list)),
    "replays": ("a list", lambda v: isinstance(v, list)),
    "pending": ("a list", lambda v: isinstance(v, list)),
    "sidecar": ("a string or null", lambda v: v is None or isinstance(v, str)),
}


def _seed_problem(seed: Any, epoch: int | None, step: int | None) -> str | None:
    """Why one ``replays`` entry of a stamp cannot seed a replay (``None``: it can).

    The entry is loaded into a fresh replay, exercised on a copy, and its seed record is read back exactly as
    the audit reads it, so a seed that passes can neither break the run's tracking nor its sidecar."""
    if not isinstance(seed, dict):
        return f"not a dict ({type(seed).__name__})"
    for name in ("callback", "kind", "monitor"):
        if not isinstance(seed.get(name), str):
            return f"its `{name}` is {_show(seed.get(name))}, not a string"
    if seed["kind"] not in KINDS:
        return f"its `kind` is {_show(seed['kind'])}"
    if not isinstance(seed.get("config"), dict):
        return "its `config` is not a dict"
    if seed.get("verdict") is not None and seed.get("verdict") not in VERDICTS:
        return f"its `verdict` is {_show(seed.get('verdict'))}"
    if seed.get("key") is not None and not isinstance(seed.get("key"), str):
        return f"its `key` is {_show(seed.get('key'))}, not a string"
    try:
        config = {k: _plain(v) for k, v in seed["config"].items()}
        replay = DecisionReplay(seed["callback"], seed["kind"], seed["monitor"], None, config)
        replay.load(seed)
        trial = copy.deepcopy(replay)
        trial.decision()
        trial.feed(epoch or 0, step, 0.0, 0.0, "match")
        trial.decision()
        record = DecisionRecord(
            callback=seed["callback"],
            kind=seed["kind"],
            monitor=seed["monitor"],
            key=replay.key,
            config=config,
            epoch=epoch or 0,
            step=step,
            logged=None,
            reference=None,
            verdict=replay.verdict or "unverified",
            state=replay.state(),
        )
        replay_records([from_json(json.loads(json.dumps(to_json(record), allow_nan=False)))])
    except Exception as err:  # any field the replays cannot use
        return f"its state cannot be replayed ({type(err).__name__}: {str(err)[:80]})"
    return None


def read_stamp(entry: Any) -> tuple[int | None, int | None, dict[str, dict[str, Any]], list[str]]:
    """``(epoch, global_step, {callback label: replay state}, problems)`` of a checkpoint's ``lmlogger`` entry.

    Every field is checked; what is valid is used, each invalid field is named in ``problems``."""
    if not isinstance(entry, dict):
        return None, None, {}, [f"the entry is {type(entry).__name__}, not a dict"]
    problems = [
        f"`{name}` is {_show(entry[name])}, not {want}"
        for name, (want, ok) in _STAMP_FIELDS.items()
        if name in entry and not ok(entry[name])
    ]
    epoch = entry.get("epoch") if _count(entry.get("epoch")) else None
    step = entry.get("global_step") if _count(entry.get("global_step")) else None
    seeds: dict[str, dict[str, Any]] = {}
    replays = entry.get("replays")
    for i, seed in enumerate(replays if isinstance(replays, list) else []):
        problem = _seed_problem(seed, epoch, step)
        if problem is not None:
            label = seed.get("callback") if isinstance(seed, dict) and isinstance(seed.get("callback"), str) else i
            problems.append(f"`replays[{i}]` ({_show(label)}): {problem}")
        elif seed["callback"] not in seeds:
            seeds[seed["callback"]] = seed
    return epoch, step, seeds, problems


class DecisionTracker:
    """See module docstring. One per :class:`~lmlogger.runtime._session.Session`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.watched: list[_Watched] = []
        self.by_target: dict[int, _Watched] = {}
        self.patched: list[tuple[Any, str, Any, Any]] = []  # (object, name, what it held before, our wrapper)
        self.detached = False
        self.latest: dict[str, VerificationRecord] = {}
        self.saving: _Watched | None = None
        self.resumed_at: tuple[Any, Any] = (None, None)
        self.finished = False
        self._labels: dict[str, int] = {}
        self.seeds: dict[str, dict[str, Any]] = {}  # label -> replay state, from the checkpoint a run resumes
        self.unwritten: list[DecisionRecord] = []  # seed records, written with the first records of the run

    # -- setup / teardown -----------------------------------------------------------------------
    def start(self, rescan: bool = False) -> None:
        """Wrap the monitoring callbacks of ``trainer.callbacks`` (``rescan``: only those not tracked yet)."""
        trainer = self.session.trainer
        if not rescan:
            self._read_seeds(trainer)
        # the callback classes of every loaded namespace: lightning.pytorch's and pytorch_lightning's
        checkpoints, stoppers = _lightning.classes("ModelCheckpoint"), _lightning.classes("EarlyStopping")
        for callback in list(trainer.callbacks):
            if id(callback) in self.by_target:
                continue
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
        if rescan:
            return
        loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        if loop is not None and hasattr(loop, "_update_learning_rates"):
            self._patch(loop, "_update_learning_rates", self._scheduler_wrapper(loop))

    def _read_seeds(self, trainer: Any) -> None:
        """A run resumed from a checkpoint saved during a verified run goes on from its decisions so far.

        Lightning holds the loaded checkpoint until the run starts (``_CheckpointConnector._loaded_checkpoint``,
        cleared by ``resume_end`` after ``log_graph``, where the session starts). The entry is input: each field
        is checked (:func:`read_stamp`), the valid ones are used and the others named in one warning."""
        loaded = getattr(getattr(trainer, "_checkpoint_connector", None), "_loaded_checkpoint", None)
        if not isinstance(loaded, dict) or CHECKPOINT_KEY not in loaded:
            return
        epoch, step, self.seeds, problems = read_stamp(loaded[CHECKPOINT_KEY])
        self.resumed_at = (epoch, step)
        if problems:
            _warn(
                f"lmlogger: the checkpoint's `{CHECKPOINT_KEY}` entry has invalid fields, not used: "
                + "; ".join(problems)
                + ". The resumed run is verified as usual; decisions without a valid state start afresh."
            )

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

    def _patch(self, obj: Any, name: str, wrapper: Any) -> bool:
        """Wrap ``obj.name`` on the instance; ``False`` (nothing changed) where it cannot be.

        What the instance held before (another library's instance-level wrapper) is what the wrapper calls and
        what :meth:`detach` puts back."""
        try:
            holder = obj.__dict__
            previous = holder.get(name, _MISSING)
            original = getattr(obj, name)
            if not callable(original) or isinstance(inspect.getattr_static(type(obj), name, None), property):
                return False
            wrapped = functools.wraps(original)(wrapper(original))
            holder[name] = wrapped
        except Exception:  # no instance dict (slots), a read-only attribute: not tracked, never in the way
            return False
        self.patched.append((obj, name, previous, wrapped))
        return True

    def detach(self) -> None:
        """Restore every wrapped method (idempotent).

        Where another library wrapped the method after lmlogger, its wrapper stays (removing ours would remove
        it too) and ours, below it, is a pass-through from now on (``self.detached``)."""
        try:
            self.finish()
        finally:
            self.detached = True
            for obj, name, previous, wrapped in self.patched:
                holder = getattr(obj, "__dict__", {})
                if holder.get(name) is not wrapped:
                    continue
                if previous is _MISSING:
                    del holder[name]
                else:
                    holder[name] = previous
            self.patched.clear()

    def scan(self) -> None:
        """Track the checkpoint / early-stopping callbacks added to ``trainer.callbacks`` since the run started."""
        if not self.detached and not self.finished:
            self.start(rescan=True)

    def _untracked(self) -> list[str]:
        """The monitoring callbacks in ``trainer.callbacks`` whose decisions were never tracked."""
        out = []
        watched_classes = _lightning.classes("ModelCheckpoint") + _lightning.classes("EarlyStopping")
        for callback in list(getattr(self.session.trainer, "callbacks", None) or []):
            monitors = isinstance(callback, watched_classes) and getattr(callback, "monitor", None)
            if monitors and id(callback) not in self.by_target:
                out.append(f"{type(callback).__name__}(monitor={callback.monitor!r})")
        return out

    # -- the wrappers: the callback's own method runs once, unchanged; lmlogger's part never raises --------
    # Each wrapper takes and passes ``*args, **kwargs`` exactly as received and returns what the method
    # returns: a subclass may add parameters, or call the method itself with other arguments. What lmlogger
    # needs is read by name or position; a call it cannot read is recorded as nothing.
    def _guard(self, where: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)``; lmlogger's own failure becomes one warning (and ``False``), never an exception."""
        try:
            return fn(*args)
        except Exception as err:
            self.session._internal_error(where, err)
            return False

    @staticmethod
    def _argument(signature: Any, args: tuple, kwargs: dict, name: str, position: int) -> Any:
        """The argument ``name`` of one call (by the method's own signature; else by keyword or position)."""
        if signature is not None:
            try:
                arguments = signature.bind(*args, **kwargs).arguments
            except TypeError:
                arguments = {}
            if name in arguments:
                return arguments[name]
        if name in kwargs:
            return kwargs[name]
        return args[position] if len(args) > position else _MISSING

    @staticmethod
    def _signature(fn: Any) -> Any:
        try:
            return inspect.signature(fn)
        except (TypeError, ValueError):
            return None

    def _checkpoint_wrapper(self, watched: _Watched) -> Any:
        def wrapper(original: Any) -> Any:
            signature = self._signature(original)

            def _save_topk_checkpoint(*args: Any, **kwargs: Any) -> Any:
                if self.detached:
                    return original(*args, **kwargs)
                read = score = None
                begun = self._guard(
                    "recording a checkpoint decision", self._before_checkpoint, watched, signature, args, kwargs
                )
                if isinstance(begun, tuple):
                    read, score = begun
                self.saving = watched
                try:
                    return original(*args, **kwargs)
                finally:
                    self.saving = None
                    if isinstance(read, _Read):
                        self._guard("recording a checkpoint decision", self._after_checkpoint, watched, read, score)

            return _save_topk_checkpoint

        return wrapper

    def _before_checkpoint(
        self, watched: _Watched, signature: Any, args: tuple, kwargs: dict
    ) -> tuple[_Read | None, Any] | None:
        callback = watched.target
        candidates = self._argument(signature, args, kwargs, "monitor_candidates", 1)
        if not hasattr(candidates, "get"):
            return None  # a call lmlogger cannot read: nothing recorded
        current = candidates.get(callback.monitor) if getattr(callback, "save_top_k", 1) != 0 else None
        score = getattr(callback, "current_score", None)
        if current is None:
            return None, score
        return self._read(watched, self.session.trainer, current), score

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
            signature = self._signature(original)

            def _evaluate_stopping_criteria(*args: Any, **kwargs: Any) -> Any:
                if self.detached:
                    return original(*args, **kwargs)
                read = self._guard(
                    "recording an early-stopping decision", self._before_stopping, watched, signature, args, kwargs
                )
                result = original(*args, **kwargs)
                if isinstance(read, _Read):
                    read.observed = {"stop": bool(result[0]) if isinstance(result, tuple) and result else None}
                    self._guard("recording an early-stopping decision", self._done, watched, read)
                return result

            return _evaluate_stopping_criteria

        return wrapper

    def _before_stopping(self, watched: _Watched, signature: Any, args: tuple, kwargs: dict) -> _Read | None:
        current = self._argument(signature, args, kwargs, "current", 0)
        if isinstance(current, Tensor) and current.numel() != 1:
            return None
        if not isinstance(current, (Tensor, int, float)) or isinstance(current, bool):
            return None  # a call lmlogger cannot read: nothing recorded
        return self._read(watched, self.session.trainer, current)

    def _scheduler_wrapper(self, loop: Any) -> Any:
        def wrapper(original: Any) -> Any:
            def _update_learning_rates(*args: Any, **kwargs: Any) -> Any:
                if self.detached:
                    return original(*args, **kwargs)
                before = self._guard("recording a scheduler decision", self._schedulers_before)
                result = original(*args, **kwargs)
                if isinstance(before, list) and before:
                    self._guard("recording a scheduler decision", self._schedulers_after, before)
                return result

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
        untracked = self._guard("finding the callbacks that act on logged values", self._untracked)
        if untracked:
            _warn(
                f"lmlogger: {', '.join(untracked)} joined trainer.callbacks after the last epoch began; lmlogger "
                "did not track its decisions (callbacks present when an epoch begins are tracked)."
            )
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
        records = [r for r in records if self._guard("writing a decision record", self._readable, r) is True]
        if not records:
            return
        decisions = self.decisions()
        for logger in self.session.loggers:
            sink = logger._lml_sink
            write = getattr(sink, "write_decisions", None)
            if write is not None:
                write(records, decisions)

    @staticmethod
    def _readable(record: DecisionRecord) -> bool:
        """``True``, or the :class:`RecordError` that a reader would meet (a record is written only if readable)."""
        from_json(json.loads(json.dumps(to_json(record), allow_nan=False)))
        return True

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


def _warn(message: str) -> None:
    """One warning on rank zero, at the user's ``trainer.fit(...)`` line (as the key warnings)."""
    if rank_zero_only.rank == 0:
        warn_user(message)
