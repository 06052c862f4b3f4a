"""Records lmlogger writes: small frozen dataclasses with one JSON form each.

The sidecar (``lmlogger/provenance.jsonl``) is a sequence of these records, one JSON object per line,
each with a ``type`` field. See ``docs/file-format.md`` for the documented schema.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 1

Kind = Literal["metric_object", "metric_compute", "metric_forward", "tensor"]
Verdict = Literal["match", "mismatch", "unverified"]

KINDS: tuple[str, ...] = ("metric_object", "metric_compute", "metric_forward", "tensor")
VERDICTS: tuple[str, ...] = ("match", "mismatch", "unverified")
#: Verdicts ordered from best to worst: a key's verdict is its worst epoch.
VERDICT_RANK = {"match": 0, "unverified": 1, "mismatch": 2}

FINDINGS: dict[str, str] = {
    "running-value-averaged": "compute() logged from a step hook with on_epoch=True: the epoch value reduces "
    "running values, not the epoch metric",
    "batch-values-averaged": "a forward() batch value logged with on_epoch=True: the epoch value reduces "
    "per-batch values, not the epoch metric",
    "state-carried-over": "the metric's state at epoch end includes updates from before the epoch "
    "(never reset, or sanity-check batches)",
    "rank-local": "multi-process run, tensor logged with sync_dist=False: the epoch value is rank 0's alone",
    "stale-step-value": "a metric object logged on_step=True whose forward() was not called that step: "
    "the step value is stale",
    "shared-metric": "one Metric instance updated in more than one phase (e.g. train and validation), or by more "
    "than one dataloader of one phase",
    "derived-value": "a value computed from a compute()/forward() result logged with on_epoch=True from a step "
    "hook: its epoch value reduces running or per-batch values",
    "padded-duplicates": "distributed run: the sampler padded ranks to equal length, so some samples were counted "
    "twice in the epoch value",
    "weight-mismatch": "a mean over steps weighted by a batch size that disagrees with the number of samples the "
    "step really had",
    "reset-before-log": "a metric object logged for the epoch was reset by user code before Lightning computed its "
    "epoch value, so Lightning logged compute() of an empty or partial state",
    "decision-on-mismatch": "a callback (ModelCheckpoint, EarlyStopping, an LR scheduler's monitor) acted on this "
    "key in an epoch whose value was mismatched",
}


def worst(verdicts: Any) -> str | None:
    """The worst verdict in ``verdicts`` (``None`` when empty)."""
    result = None
    for verdict in verdicts:
        if result is None or VERDICT_RANK[verdict] > VERDICT_RANK[result]:
            result = verdict
    return result


def json_number(value: float | None) -> float | str | None:
    """A float as strict JSON allows: NaN and infinities become the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def parse_number(value: Any) -> float | None:
    """The inverse of :func:`json_number`."""
    if value is None:
        return None
    if isinstance(value, str):
        return float(value)  # "nan", "inf", "-inf"
    return float(value)


@dataclass(frozen=True)
class Header:
    """First record of each stage (fit, validate, test) written to a sidecar."""

    stage: str
    logger: str
    run: dict[str, Any]
    versions: dict[str, str]
    created: str
    options: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    type: str = "header"


@dataclass(frozen=True)
class ProvenanceRecord:
    """How one logged key was produced, with its Lightning context."""

    key: str
    name: str
    kind: str
    hook: str
    phase: str
    on_step: bool
    on_epoch: bool
    reduce_fx: str
    sync_dist: bool
    batch_size: int | None
    batch_size_source: str
    dataloader_idx: int | None
    logged_keys: tuple[str, ...]
    metric_attribute: str | None = None
    metric_class: str | None = None
    type: str = "provenance"


@dataclass(frozen=True)
class VerificationRecord:
    """The verdict for one key and epoch."""

    key: str
    phase: str
    epoch: int
    step: int | None
    logged: float | None
    reference: float | None
    verdict: str
    findings: tuple[str, ...] = ()
    reason: str | None = None
    fix: str | None = None
    rtol_floor: float = 0.0  # float32 accumulation allowance for tensor sums/means (n_steps * 2**-24)
    type: str = "verification"


@dataclass(frozen=True)
class Close:
    """Last record of a stage: ``status`` is ``success``, ``failed`` or ``finished``."""

    stage: str
    status: str
    closed: str
    type: str = "close"


@dataclass(frozen=True)
class DecisionRecord:
    """One read of a monitored value by a callback that acts on it (see ``lmlogger._replay``).

    ``callback`` is the callback's label in the run (``ModelCheckpoint``, ``ModelCheckpoint-2``,
    ``EarlyStopping``, ``ReduceLROnPlateau``); ``kind`` is ``checkpoint``, ``early_stopping`` or
    ``lr_scheduler``; ``config`` holds the callback's settings (plain values); ``logged`` is the value the
    callback read, ``reference`` and ``verdict`` those of the verified epoch value it read; ``observed`` is
    what the callback was seen to do with it (``kept``/``best_epoch``, ``stop``, ``lr_before``/``lr_after``).
    A record with ``state`` carries no read: it seeds the replays of a run resumed from a checkpoint.
    """

    callback: str
    kind: str
    monitor: str
    key: str | None
    config: dict[str, Any]
    epoch: int
    step: int | None
    logged: float | None
    reference: float | None
    verdict: str
    observed: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    #: Set on the first record of a run resumed from a checkpoint: the replays' state at the save (no read).
    state: dict[str, Any] | None = None
    type: str = "decision"


Record = Header | ProvenanceRecord | VerificationRecord | Close | DecisionRecord
_TYPES: dict[str, type] = {
    "header": Header,
    "provenance": ProvenanceRecord,
    "verification": VerificationRecord,
    "close": Close,
    "decision": DecisionRecord,
}


def to_json(record: Any) -> dict[str, Any]:
    """The JSON object of a record; floats made strict-JSON safe."""
    data = dataclasses.asdict(record)
    for name in ("logged", "reference"):
        if name in data:
            data[name] = json_number(data[name])
    for name in ("logged_keys", "findings"):
        if name in data:
            data[name] = list(data[name])
    return data


def from_json(data: dict[str, Any]) -> Any:
    """Build a record from its JSON object; unknown fields are ignored (forward compatible within a schema)."""
    cls = _TYPES.get(data.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown record type {data.get('type')!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    for name in ("logged", "reference"):
        if name in kwargs:
            kwargs[name] = parse_number(kwargs[name])
    for name in ("logged_keys", "findings"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    return cls(**kwargs)
