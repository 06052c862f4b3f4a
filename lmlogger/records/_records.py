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

Kind = Literal["metric_object", "metric_compute", "metric_forward", "metric_functional", "tensor"]
Verdict = Literal["match", "mismatch", "unverified"]

#: The provenance kinds (DESIGN.md).
METRIC_OBJECT = "metric_object"
METRIC_COMPUTE = "metric_compute"
METRIC_FORWARD = "metric_forward"
METRIC_FUNCTIONAL = "metric_functional"
TENSOR = "tensor"

#: What a key's reference is built from (``vouches_for``): the metric over the epoch's samples (the four
#: ``metric_*`` kinds), or only Lightning's reduction of the values logged (a plain ``tensor``).
SAMPLES = "samples"
REDUCTION = "reduction"
VOUCHES: tuple[str, ...] = (SAMPLES, REDUCTION)


def vouches_for(kind: str | None) -> str:
    """``samples`` for the ``metric_*`` kinds, ``reduction`` for a plain tensor (and an unknown kind)."""
    return SAMPLES if kind is not None and kind.startswith("metric_") else REDUCTION


_STEP_HOOKS = frozenset(
    {
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "on_before_zero_grad",
        "optimizer_step",
        "optimizer_zero_grad",
        "lr_scheduler_step",
    }
)


def is_step_hook(hook: str) -> bool:
    """Whether ``hook`` runs once per batch (``training_step``, ``on_train_batch_end``, ...)."""
    base = hook.split(".", 1)[0]
    return base.endswith("_step") or "_batch_" in base or base in _STEP_HOOKS


def phase_of(hook: str) -> str:
    """``train``, ``val`` or ``test`` for a Lightning hook name."""
    if "validation" in hook:
        return "val"
    if "test" in hook:
        return "test"
    return "train"


KINDS: tuple[str, ...] = ("metric_object", "metric_compute", "metric_forward", "metric_functional", "tensor")
VERDICTS: tuple[str, ...] = ("match", "mismatch", "unverified")
#: Verdicts ordered from best to worst: a key's verdict is its worst epoch.
VERDICT_RANK = {"match": 0, "unverified": 1, "mismatch": 2}

FINDINGS: dict[str, str] = {
    "running-value-averaged": "compute() logged from a step hook with on_epoch=True: the epoch value reduces "
    "running values, not the epoch metric",
    "batch-values-averaged": "a batch value (a metric's forward(), or a functional metric of torchmetrics or sklearn) "
    "logged with on_epoch=True: the epoch value reduces per-batch values, not the epoch metric",
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
    "never-updated": "a metric object logged whose update()/forward() is never called: Lightning logs compute() "
    "of an empty state",
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
    """The inverse of :func:`json_number` (a JSON number too large for a float, ``1e999``, is infinite)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ("nan", "inf", "-inf"):
            raise ValueError(f"not a number: {value[:40]!r}")
        return float(value)
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf if value > 0 else -math.inf


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
    #: ``trainer.ckpt_path`` when the stage resumed from a checkpoint (absent in older sidecars).
    ckpt_path: str | None = None
    #: The epoch the resumed stage continued at (absent in older sidecars and for fresh stages).
    resumed_from_epoch: int | None = None
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
    #: What the key's reference is built from: ``samples`` or ``reduction`` (see :func:`vouches_for`; absent in
    #: sidecars written before 0.3, where the audit derives it from ``kind``).
    vouches_for: str | None = None
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
    samples: int | None = None  # samples that reached the epoch value, all ranks, repeats included
    dataset_size: int | None = None  # len() of the dataloader's dataset, where it has one
    duplicates: int = 0  # of ``samples``, how many were repeats (sampler padding)
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
    """One read of a monitored value by a callback that acts on it (see ``lmlogger.records._replay``).

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
#: The ``type`` of every record this schema defines.
RECORD_TYPES: frozenset[str] = frozenset(_TYPES)


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


class RecordError(ValueError):
    """A JSON object that is not a valid record of this schema (the message names the field)."""


#: The largest integer a record field may hold (epochs, steps, batch sizes are far below it).
_MAX_INT = 2**63
_NUMBER_WORDS = {"nan", "inf", "-inf"}

# Each field's accepted JSON form: "str", "int", "bool", "number" (a float, or "nan" / "inf" / "-inf"),
# "strs" (a list of strings), "dict"; a trailing "?" allows null.
_FIELDS: dict[str, dict[str, str]] = {
    "header": {
        "stage": "str",
        "logger": "str",
        "run": "dict",
        "versions": "dict",
        "created": "str",
        "options": "dict",
        "schema": "int",
        "ckpt_path": "str?",
        "resumed_from_epoch": "int?",
    },
    "provenance": {
        "key": "str",
        "name": "str",
        "kind": "str",
        "hook": "str",
        "phase": "str",
        "on_step": "bool",
        "on_epoch": "bool",
        "reduce_fx": "str",
        "sync_dist": "bool",
        "batch_size": "int?",
        "batch_size_source": "str",
        "dataloader_idx": "int?",
        "logged_keys": "strs",
        "metric_attribute": "str?",
        "metric_class": "str?",
        "vouches_for": "str?",
    },
    "verification": {
        "key": "str",
        "phase": "str",
        "epoch": "int",
        "step": "int?",
        "logged": "number?",
        "reference": "number?",
        "verdict": "str",
        "findings": "strs",
        "reason": "str?",
        "fix": "str?",
        "rtol_floor": "number",
        "samples": "int?",
        "dataset_size": "int?",
        "duplicates": "int",
    },
    "close": {"stage": "str", "status": "str", "closed": "str"},
    "decision": {
        "callback": "str",
        "kind": "str",
        "monitor": "str",
        "key": "str?",
        "config": "dict",
        "epoch": "int",
        "step": "int?",
        "logged": "number?",
        "reference": "number?",
        "verdict": "str",
        "observed": "dict",
        "reason": "str?",
        "state": "dict?",
    },
}


def _checked(type_: str, name: str, value: Any, spec: str) -> Any:
    """``value`` as field ``name`` of a ``type_`` record holds it, or :class:`RecordError`."""
    if value is None and spec.endswith("?"):
        return None
    want = spec.rstrip("?")
    if want == "str":
        ok = isinstance(value, str)
    elif want == "bool":
        ok = isinstance(value, bool)
    elif want == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and -_MAX_INT < value < _MAX_INT
    elif want == "number":
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            isinstance(value, str) and value in _NUMBER_WORDS
        )
    elif want == "strs":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, dict)
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise RecordError(f"{type_} field {name!r} must be {want.replace('strs', 'a list of strings')}, not {shown}")
    if want == "number":
        return parse_number(value)
    if want == "strs":
        return tuple(value)
    return value


def from_json(data: dict[str, Any]) -> Any:
    """Build a record from its JSON object, checking every field's type.

    Unknown fields are ignored (forward compatible within a schema); a missing field or a field of the wrong
    type raises :class:`RecordError` naming it; an unknown ``type`` raises :class:`RecordError` too.
    """
    type_ = data.get("type")
    cls = _TYPES.get(type_) if isinstance(type_, str) else None
    if cls is None:
        raise RecordError(f"unknown record type {str(type_)[:40]!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "type":
            continue
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{type_} record without its {f.name!r} field")
            continue
        kwargs[f.name] = _checked(type_, f.name, data[f.name], _FIELDS[type_][f.name])
    if type_ == "verification":
        if kwargs["verdict"] not in VERDICTS:
            raise RecordError(f"verification field 'verdict' must be one of {', '.join(VERDICTS)}")
        floor = kwargs.get("rtol_floor", 0.0)
        if not (math.isfinite(floor) and floor >= 0):
            raise RecordError("verification field 'rtol_floor' must be a finite number >= 0")
    if type_ == "header":
        if not all(isinstance(v, str) for v in kwargs["versions"].values()):
            raise RecordError("header field 'versions' must map names to strings")
        for name in ("rtol", "atol"):
            value = kwargs.get("options", {}).get(name)
            if value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
            ):
                raise RecordError(f"header field 'options.{name}' must be a finite number >= 0")
    return cls(**kwargs)
