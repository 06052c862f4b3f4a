"""Decisions replayed: what a checkpoint, early-stopping or LR-scheduler callback does with a sequence of values.

Pure Python (record layer): the runtime feeds each replay the values a callback read, once as logged
and once as their references; the audit re-runs the same replays from the sidecar's ``decision``
records, so both word a decision the same way.

Each replay follows the callback's own rules in Lightning 2.x / torch, step for step:

* :class:`CheckpointReplay`: ``ModelCheckpoint`` top-k bookkeeping (``check_monitor_top_k`` and
  ``_update_best_and_save``): strict comparison with the k-th best, NaN kept as the worst value, ties
  to the earliest checkpoint.
* :class:`EarlyStoppingReplay`: ``EarlyStopping._evaluate_stopping_criteria`` (``check_finite``,
  thresholds, ``min_delta``, ``patience``).
* :class:`PlateauReplay`: ``torch.optim.lr_scheduler.ReduceLROnPlateau.step`` (``threshold``,
  ``threshold_mode``, ``patience``, ``cooldown``, ``factor``, ``min_lr``, ``eps``).

``ModelCheckpoint`` and ``EarlyStopping`` compare float32 tensors, so their replays round each value
(and ``value - min_delta``) to float32 as Lightning does; ``ReduceLROnPlateau`` works on Python floats.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

CHECKPOINT = "checkpoint"
EARLY_STOPPING = "early_stopping"
LR_SCHEDULER = "lr_scheduler"
KINDS = (CHECKPOINT, EARLY_STOPPING, LR_SCHEDULER)


def f32(value: float) -> float:
    """``value`` rounded to the nearest float32 (what a float32 tensor holds)."""
    if math.isnan(value) or math.isinf(value):
        return value
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


@dataclass(frozen=True)
class Point:
    """One read: the epoch and global step at which the callback read ``value``."""

    epoch: int
    step: int | None
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "value": _json(self.value)}


def _json(value: float | None) -> float | str | None:
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _parse(value: Any) -> float:
    """The inverse of :func:`_json` (numbers from a sidecar or a checkpoint)."""
    if isinstance(value, str):
        return float(value)  # "nan", "inf", "-inf"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _point_state(p: Point | None) -> list[Any] | None:
    return None if p is None else [p.epoch, p.step, _json(p.value)]


def _point_load(data: Any) -> Point | None:
    if data is None:
        return None
    epoch, step, value = data
    return Point(int(epoch), None if step is None else int(step), _parse(value))


def _better(a: float, b: float, mode: str) -> bool:
    """``a`` is strictly better than ``b`` (torch.gt / torch.lt: NaN compares False)."""
    return a > b if mode == "max" else a < b


class CheckpointReplay:
    """``ModelCheckpoint(monitor=..., mode=..., save_top_k=...)``'s top-k checkpoints (see module docstring)."""

    def __init__(self, mode: str = "min", save_top_k: int = 1) -> None:
        self.mode = mode
        self.save_top_k = int(save_top_k)
        self.top: dict[int, Point] = {}  # insertion order, like ModelCheckpoint.best_k_models
        self.kth: int | None = None
        self.best: int | None = None
        self.n = 0

    def feed(self, point: Point) -> bool:
        """Replay one read; ``True`` when the callback keeps a checkpoint for it."""
        self.n += 1
        k = self.save_top_k
        if k == 0:
            return False
        value = f32(point.value)
        if k == -1 or len(self.top) < k:
            keep = True
        else:
            keep = self.kth is not None and _better(value, self.top[self.kth].value, self.mode)
        if not keep:
            return False
        size = len(self.top) + 1 if k == -1 else k
        if len(self.top) == size and size > 0 and self.kth is not None:
            del self.top[self.kth]
        if math.isnan(value):
            value = math.inf if self.mode == "min" else -math.inf
        self.top[self.n] = Point(point.epoch, point.step, value)
        if len(self.top) == size:
            pick = max if self.mode == "min" else min
            self.kth = pick(self.top, key=lambda i: self.top[i].value)
        pick = min if self.mode == "min" else max
        self.best = pick(self.top, key=lambda i: self.top[i].value)
        return True

    def state(self) -> dict[str, Any]:
        """The replay's state as plain values (to resume it: :meth:`load`)."""
        return {
            "top": [[n, *_point_state(p)] for n, p in self.top.items()],
            "kth": self.kth,
            "best": self.best,
            "n": self.n,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.top = {int(n): _point_load(rest) for n, *rest in state["top"]}
        self.kth, self.best, self.n = state["kth"], state["best"], int(state["n"])

    def outcome(self) -> Point | None:
        """The best checkpoint kept (``best_model_path``'s read)."""
        return self.top[self.best] if self.best is not None else None

    def kept(self) -> list[Point]:
        """Every checkpoint still kept (the top k), best first."""
        return sorted(self.top.values(), key=lambda p: p.value, reverse=self.mode == "max")


class EarlyStoppingReplay:
    """``EarlyStopping(monitor=..., mode=..., patience=..., min_delta=...)``: the read at which it stops."""

    def __init__(
        self,
        mode: str = "min",
        patience: int = 3,
        min_delta: float = 0.0,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
    ) -> None:
        self.mode = mode
        self.patience = int(patience)
        # EarlyStopping stores min_delta signed: +|d| for max, -|d| for min (it multiplies the given value)
        self.min_delta = f32(float(min_delta) * (1 if mode == "max" else -1))
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.best = -math.inf if mode == "max" else math.inf
        self.wait = 0
        self.stopped: Point | None = None

    def feed(self, point: Point) -> bool:
        """Replay one read; ``True`` when the callback signals the trainer to stop (the first time is kept)."""
        current = f32(point.value)
        stop = self._threshold_stop(current)
        if stop:
            pass
        elif _better(f32(current - self.min_delta), self.best, self.mode):
            self.best = current
            self.wait = 0
        else:
            self.wait += 1
            stop = self.wait >= self.patience
        if stop and self.stopped is None:
            self.stopped = point
        return stop

    def _threshold_stop(self, current: float) -> bool:
        """Non-finite value, ``stopping_threshold`` reached, or ``divergence_threshold`` passed."""
        if self.check_finite and not math.isfinite(current):
            return True
        if self.stopping_threshold is not None and _better(current, float(self.stopping_threshold), self.mode):
            return True
        return self.divergence_threshold is not None and _better(-current, -float(self.divergence_threshold), self.mode)

    def state(self) -> dict[str, Any]:
        """The replay's state as plain values (to resume it: :meth:`load`)."""
        return {"best": _json(self.best), "wait": self.wait, "stopped": _point_state(self.stopped)}

    def load(self, state: dict[str, Any]) -> None:
        self.best, self.wait = _parse(state["best"]), int(state["wait"])
        self.stopped = _point_load(state["stopped"])

    def outcome(self) -> Point | None:
        """The read at which it stopped (``None``: it would not have stopped on these reads)."""
        return self.stopped


class PlateauReplay:
    """``ReduceLROnPlateau``: the reads after which the learning rate dropped."""

    def __init__(
        self,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lrs: list[float] | None = None,
        eps: float = 1e-8,
        lrs: list[float] | None = None,
    ) -> None:
        self.mode = mode
        self.factor = float(factor)
        self.patience = int(patience)
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.cooldown = int(cooldown)
        self.lrs = [float(x) for x in (lrs or [1.0])]
        self.min_lrs = [float(x) for x in (min_lrs or [0.0] * len(self.lrs))]
        self.eps = float(eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.bad = 0
        self.cooldown_counter = 0
        self.drops: list[Point] = []

    def _better(self, a: float) -> bool:
        best = self.best
        if self.mode == "min":
            return a < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return a > (best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold)

    def feed(self, point: Point) -> bool:
        """Replay one ``scheduler.step(value)``; ``True`` when the learning rate dropped."""
        current = float(point.value)
        if self._better(current):
            self.best = current
            self.bad = 0
        else:
            self.bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.bad = 0
        dropped = False
        if self.bad > self.patience:
            for i, old in enumerate(self.lrs):
                new = max(old * self.factor, self.min_lrs[i] if i < len(self.min_lrs) else 0.0)
                if old - new > self.eps:
                    self.lrs[i] = new
                    dropped = True
            self.cooldown_counter = self.cooldown
            self.bad = 0
        if dropped:
            self.drops.append(point)
        return dropped

    def state(self) -> dict[str, Any]:
        """The replay's state as plain values (to resume it: :meth:`load`)."""
        return {
            "best": _json(self.best),
            "bad": self.bad,
            "cooldown_counter": self.cooldown_counter,
            "lrs": [_json(x) for x in self.lrs],
            "drops": [_point_state(p) for p in self.drops],
        }

    def load(self, state: dict[str, Any]) -> None:
        self.best, self.bad = _parse(state["best"]), int(state["bad"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.lrs = [_parse(x) for x in state["lrs"]]
        self.drops = [_point_load(p) for p in state["drops"]]

    def outcome(self) -> list[Point]:
        """The reads after which the learning rate dropped."""
        return list(self.drops)


def make_replay(kind: str, config: dict[str, Any]) -> Any:
    """A fresh replay of ``kind`` configured like the callback (``config`` as recorded)."""
    mode = config.get("mode", "min")
    if kind == CHECKPOINT:
        return CheckpointReplay(mode, config.get("save_top_k", 1))
    if kind == EARLY_STOPPING:
        return EarlyStoppingReplay(
            mode,
            config.get("patience", 3),
            # the recorded min_delta is the user's (unsigned) value
            config.get("min_delta", 0.0),
            config.get("check_finite", True),
            config.get("stopping_threshold"),
            config.get("divergence_threshold"),
        )
    if kind == LR_SCHEDULER:
        return PlateauReplay(
            mode,
            config.get("factor", 0.1),
            config.get("patience", 10),
            config.get("threshold", 1e-4),
            config.get("threshold_mode", "rel"),
            config.get("cooldown", 0),
            config.get("min_lrs"),
            config.get("eps", 1e-8),
            config.get("lrs"),
        )
    raise ValueError(f"unknown decision kind {kind!r}")


@dataclass
class Decision:
    """One callback's decision on the logged values and on their references.

    ``by_logged`` / ``by_reference`` are, per kind: the best checkpoint kept (a :class:`Point`), the read at
    which early stopping stopped (a :class:`Point`, ``None`` when it did not), the reads after which the LR
    dropped (a list of :class:`Point`). ``agree`` is ``None`` when some read had no reference.
    """

    callback: str
    kind: str
    monitor: str
    mode: str
    key: str | None
    config: dict[str, Any]
    by_logged: Any
    by_reference: Any
    agree: bool | None
    monitor_verdict: str | None
    reads: int = 0
    mismatched_epochs: list[int] = field(default_factory=list)
    unverified_reads: int = 0
    kept_by_logged: list[Point] = field(default_factory=list)
    kept_by_reference: list[Point] = field(default_factory=list)
    observed: Any = None

    @property
    def message(self) -> str:
        """The decision in one plain sentence (the runtime warning and the audit say the same)."""
        return describe(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "callback": self.callback,
            "kind": self.kind,
            "monitor": self.monitor,
            "key": self.key,
            "mode": self.mode,
            "by_logged": _outcome_dict(self.by_logged),
            "by_reference": _outcome_dict(self.by_reference),
            "agree": self.agree,
            "monitor_verdict": self.monitor_verdict,
            "reads": self.reads,
            "mismatched_epochs": list(self.mismatched_epochs),
            "config": dict(self.config),
            "message": self.message,
        }
        if self.kind == CHECKPOINT and self.config.get("save_top_k", 1) not in (0, 1):
            out["kept_by_logged"] = [p.to_dict() for p in self.kept_by_logged]
            out["kept_by_reference"] = [p.to_dict() for p in self.kept_by_reference]
        if self.unverified_reads:
            out["unverified_reads"] = self.unverified_reads
        if self.observed is not None:
            out["observed"] = self.observed
        return out


def _outcome_dict(outcome: Any) -> Any:
    if outcome is None:
        return None
    if isinstance(outcome, list):
        return {"drops": [p.to_dict() for p in outcome]}
    return outcome.to_dict()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return [p.epoch for p in a] == [p.epoch for p in b] and [p.step for p in a] == [p.step for p in b]
    if a is None or b is None:
        return a is None and b is None
    return (a.epoch, a.step) == (b.epoch, b.step)


class DecisionReplay:
    """Replays one callback on the logged values and on the references, read by read.

    Args:
        callback: the callback's label in this run (``ModelCheckpoint``, ``ModelCheckpoint-2``, ...).
        kind: ``checkpoint``, ``early_stopping`` or ``lr_scheduler``.
        monitor: the monitored key, as the callback names it.
        key: the key the logger received for it (``None`` when unknown).
        config: the callback's settings (see :func:`make_replay`).
    """

    def __init__(self, callback: str, kind: str, monitor: str, key: str | None, config: dict[str, Any]) -> None:
        self.callback, self.kind, self.monitor, self.key, self.config = callback, kind, monitor, key, dict(config)
        self.logged = make_replay(kind, config)
        self.reference = make_replay(kind, config)
        self.reads = 0
        self.verdict: str | None = None
        self.mismatched: list[int] = []
        self.unverified = 0
        self.observed: Any = None

    def feed(self, epoch: int, step: int | None, logged: float, reference: float | None, verdict: str) -> None:
        """One read: the value the callback read (``logged``), its reference and the key's verdict."""
        self.reads += 1
        if reference is None:
            self.unverified += 1
            verdict = "unverified" if verdict == "match" else verdict
        rank = {"match": 0, "unverified": 1, "mismatch": 2}
        if self.verdict is None or rank.get(verdict, 1) > rank.get(self.verdict, 1):
            self.verdict = verdict
        if verdict == "mismatch" and epoch not in self.mismatched:
            self.mismatched.append(epoch)
        self.logged.feed(Point(epoch, step, float(logged)))
        # without a reference the logged value stands in (agree is then None: the decision is not verified)
        self.reference.feed(Point(epoch, step, float(reference if reference is not None else logged)))

    def observe(self, epoch: int, step: int | None, observed: dict[str, Any] | None) -> None:
        """What the callback was seen to do after a read (``kept``/``best_epoch``, ``stop``,
        ``lr_before``/``lr_after``): kept beside the replay so that a reader can compare."""
        if observed:
            self._observe(epoch, step, observed)

    def _observe(self, epoch: int, step: int | None, observed: dict[str, Any]) -> None:
        seen = self.observed if self.observed is not None else {}
        if self.kind == CHECKPOINT and "best_epoch" in observed:
            seen["epoch"], seen["step"] = observed.get("best_epoch"), observed.get("best_step")
        elif self.kind == EARLY_STOPPING and observed.get("stop") and seen.get("epoch") is None:
            seen["epoch"], seen["step"] = epoch, step
        elif self.kind == EARLY_STOPPING:
            seen.setdefault("epoch", None)
        elif self.kind == LR_SCHEDULER:
            drops = seen.setdefault("drops", [])
            before, after = observed.get("lr_before") or [], observed.get("lr_after") or []
            if any(_lower(a, b) for a, b in zip(after, before, strict=False)):
                drops.append(epoch)
        self.observed = seen

    def state(self) -> dict[str, Any]:
        """Everything needed to go on after a resumed run (plain values: a checkpoint and a sidecar hold it)."""
        return {
            "callback": self.callback,
            "kind": self.kind,
            "monitor": self.monitor,
            "key": self.key,
            "logged": self.logged.state(),
            "reference": self.reference.state(),
            "reads": self.reads,
            "verdict": self.verdict,
            "mismatched": list(self.mismatched),
            "unverified": self.unverified,
            "observed": self.observed,
        }

    def load(self, state: dict[str, Any]) -> None:
        """Go on from :meth:`state` (a run resumed from a checkpoint)."""
        self.logged.load(state["logged"])
        self.reference.load(state["reference"])
        self.reads, self.verdict = int(state["reads"]), state["verdict"]
        self.mismatched = [int(e) for e in state["mismatched"]]
        self.unverified = int(state["unverified"])
        self.key = self.key or state.get("key")
        observed = state.get("observed")
        self.observed = dict(observed) if isinstance(observed, dict) else None

    def decision(self) -> Decision:
        """The decision so far."""
        by_logged, by_reference = self.logged.outcome(), self.reference.outcome()
        agree: bool | None = _same(by_logged, by_reference)
        if self.kind == CHECKPOINT:
            keys_l = sorted((p.epoch, p.step or 0) for p in self.logged.kept())
            keys_r = sorted((p.epoch, p.step or 0) for p in self.reference.kept())
            agree = agree and keys_l == keys_r
        if self.unverified:
            agree = None
        return Decision(
            callback=self.callback,
            kind=self.kind,
            monitor=self.monitor,
            mode=str(self.config.get("mode", "min")),
            key=self.key,
            config=self.config,
            by_logged=by_logged,
            by_reference=by_reference,
            agree=agree,
            monitor_verdict=self.verdict,
            reads=self.reads,
            mismatched_epochs=list(self.mismatched),
            unverified_reads=self.unverified,
            kept_by_logged=self.logged.kept() if self.kind == CHECKPOINT else [],
            kept_by_reference=self.reference.kept() if self.kind == CHECKPOINT else [],
            observed=self.observed,
        )


def _lower(a: Any, b: Any) -> bool:
    try:
        return float(a) < float(b)
    except (TypeError, ValueError):
        return False


def _num(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1000 or (value and abs(value) < 0.001) else f"{value:.3f}"


def describe(d: Decision) -> str:
    """One plain sentence, e.g. "ModelCheckpoint kept epoch 3 by `val_f1` = 0.812 (logged); by the reference,
    epoch 5 is best (0.797)"."""
    m = f"`{d.monitor}`"
    if d.reads == 0:
        return f"{d.callback} never read {m}"
    tail = ""
    if d.agree is None:
        tail = f" ({d.unverified_reads} of {d.reads} reads had no reference: not verified)"
    if d.kind == CHECKPOINT:
        lg, rf = d.by_logged, d.by_reference
        if lg is None:
            return f"{d.callback} kept no checkpoint by {m}" + tail
        text = f"{d.callback} kept epoch {lg.epoch} by {m} = {_num(lg.value)} (logged)"
        if rf is None:
            return text + tail
        if d.agree:
            return text + f"; the reference agrees (epoch {rf.epoch}: {_num(rf.value)})"
        if (rf.epoch, rf.step) == (lg.epoch, lg.step):
            return (
                text
                + f"; by the reference the same epoch is best ({_num(rf.value)}), but the other kept "
                + ("checkpoints differ" + tail)
            )
        return text + f"; by the reference, epoch {rf.epoch} is best ({_num(rf.value)})" + tail
    if d.kind == EARLY_STOPPING:
        lg, rf = d.by_logged, d.by_reference
        first = (
            f"{d.callback} stopped training at epoch {lg.epoch} by {m} = {_num(lg.value)} (logged)"
            if lg is not None
            else f"{d.callback} did not stop training by {m} (logged)"
        )
        if d.agree:
            return first + "; the reference agrees" + tail
        if rf is None:
            return first + "; by the reference, it would not have stopped then" + tail
        return first + f"; by the reference, it would have stopped at epoch {rf.epoch} ({_num(rf.value)})" + tail
    lg_epochs = [p.epoch for p in d.by_logged or []]
    rf_epochs = [p.epoch for p in d.by_reference or []]
    first = f"{d.callback} dropped the learning rate after epochs {_epochs(lg_epochs)} by {m} (logged)"
    if d.agree:
        return first + "; the reference agrees" + tail
    return first + f"; by the reference, after epochs {_epochs(rf_epochs)}" + tail


def _epochs(epochs: list[int]) -> str:
    return ", ".join(str(e) for e in epochs) if epochs else "none"


def replay_records(records: list[Any]) -> list[Decision]:
    """Decisions from ``decision`` records (sidecar order), one per callback label, in order of first read."""
    replays: dict[str, DecisionReplay] = {}
    for record in records:
        replay = replays.get(record.callback)
        if replay is None:
            replay = replays[record.callback] = DecisionReplay(
                record.callback, record.kind, record.monitor, record.key, dict(record.config)
            )
        if record.state:  # a run resumed from a checkpoint: the decisions so far
            replay.load(record.state)
            continue
        if record.logged is None:
            continue
        replay.feed(record.epoch, record.step, record.logged, record.reference, record.verdict)
        replay.observe(record.epoch, record.step, record.observed)
    return [r.decision() for r in replays.values()]
