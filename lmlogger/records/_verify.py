"""Verdicts, findings and fixes: pure functions over numbers and provenance facts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lmlogger.records._derivation import CallSite
from lmlogger.records._records import METRIC_COMPUTE, METRIC_FORWARD, METRIC_FUNCTIONAL, METRIC_OBJECT, TENSOR

#: Default tolerances. Lightning accumulates epoch means in float32; lmlogger's references are
#: float64 (tensors) or a fresh ``compute()`` (metrics), so honest values agree to ~1e-6 relative.
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-6


@dataclass(frozen=True)
class Facts:
    """What is known about one key in one epoch, as input to :func:`judge`."""

    name: str
    kind: str
    hook: str
    step_hook: bool
    on_step: bool
    on_epoch: bool
    attribute: str | None
    phase: str
    carried: int = 0
    shared: bool = False
    stale: bool = False
    rank_local: bool = False
    shared_dataloaders: bool = False  # the sharing is between dataloaders of one phase
    reset_before_log: bool = False
    reset_hooks: tuple[str, ...] = ()  # hooks in which user code resets the metric
    index: tuple[Any, ...] | None = None  # an element of the metric's result was logged
    derived_source: str | None = None  # the value is computed from this metric result
    derived_epoch_expression: str | None = None
    duplicates: int = 0  # samples repeated by the sampler's padding that reached the value (all ranks)
    world_size: int = 1
    weights: tuple[int, int] | None = None  # (Lightning's weight, true rows) of a step that disagreed
    weight_mismatch: bool = False  # set without ``weights`` when re-judging from a record
    call: CallSite | None = None  # the logging call as written (None: its source was not read)
    never_updated: bool = False  # a metric object logged that nothing has updated in the run
    #: ``metric_functional``: the Metric class that computes the functional over the epoch, with the call's
    #: arguments (``BinaryF1Score(threshold=0.3)``), and its data parameters (``preds, target``)
    functional: str | None = None
    functional_data: str = "preds, target"


def compare(logged: float | None, reference: float | None, rtol: float, atol: float) -> str:
    """``match`` or ``mismatch`` (NaN equals NaN; infinities must be equal)."""
    if logged is None or reference is None:
        return "unverified"
    if math.isnan(logged) or math.isnan(reference):
        return "match" if math.isnan(logged) and math.isnan(reference) else "mismatch"
    if math.isinf(logged) or math.isinf(reference):
        return "match" if logged == reference else "mismatch"
    return "match" if abs(logged - reference) <= atol + rtol * abs(reference) else "mismatch"


def findings_for(facts: Facts, verdict: str) -> list[str]:
    """Finding codes (DESIGN.md) that explain ``verdict`` or describe a risk in the logging pattern."""
    found: list[str] = []
    if verdict == "mismatch":
        if facts.kind == METRIC_COMPUTE and facts.step_hook and facts.on_epoch:
            found.append("running-value-averaged")
        if facts.kind in (METRIC_FORWARD, METRIC_FUNCTIONAL) and facts.on_epoch and facts.step_hook:
            found.append("batch-values-averaged")
        if facts.reset_before_log:
            found.append("reset-before-log")
    if facts.derived_source is not None and facts.step_hook and facts.on_epoch:
        found.append("derived-value")
    # a forward() value is batch-local: state carried in from earlier epochs does not reach it
    if facts.carried and facts.kind in (METRIC_OBJECT, METRIC_COMPUTE) and not facts.reset_before_log:
        found.append("state-carried-over")
    if facts.rank_local:
        found.append("rank-local")
    if facts.stale:
        found.append("stale-step-value")
    if facts.shared:
        found.append("shared-metric")
    if facts.duplicates:
        found.append("padded-duplicates")
    if verdict == "mismatch" and (facts.weights is not None or facts.weight_mismatch):
        found.append("weight-mismatch")
    if facts.never_updated and facts.kind == METRIC_OBJECT:
        found.append("never-updated")
    return found


#: Hooks that run before Lightning computes a logged metric object's epoch value (training): a reset
#: there empties the state Lightning is about to compute.
_EARLY_RESET_HOOKS = ("on_train_epoch_end",)


def _index_text(index: tuple[Any, ...]) -> str:
    if len(index) == 1:
        return f"[{index[0]!r}]"
    return "[" + ", ".join(str(i) for i in index) + "]"


def fix_for(facts: Facts, findings: list[str]) -> str | None:
    """A concrete change to the user's code for the first finding that has one.

    Every fix is one that works when applied as printed, including with the module's own resets: logging
    the metric object from a training step is only right without a ``reset()`` in ``on_train_epoch_end``
    (Lightning computes the object after that hook, and resets it itself).
    """
    attr = f"self.{facts.attribute}" if facts.attribute else "self.<metric>"
    name = facts.name
    epoch_hook = f"on_{_hook_phase(facts.phase)}_epoch_end"
    early = [h for h in facts.reset_hooks if h in _EARLY_RESET_HOOKS] if facts.phase == "train" else []
    remove = (
        f"; and remove the `{attr}.reset()` in `{early[0]}`: Lightning resets logged metric objects itself"
        if early
        else ""
    )
    for code in findings:
        if code == "batch-values-averaged" and facts.kind == METRIC_FUNCTIONAL:
            return functional_fix(facts)
        if code in ("running-value-averaged", "batch-values-averaged"):
            if facts.index is not None:
                return _kept_updates(facts) + (
                    f'self.log("{name}", {attr}.compute(){_index_text(facts.index)}) in {epoch_hook}, once per '
                    f"epoch, before {attr}.reset()"
                )
            on_step = "True" if (facts.on_step and code == "batch-values-averaged") else "False"
            text = f'self.log("{name}", {attr}, on_epoch=True, on_step={on_step})'
            if facts.call is not None:  # the call as written: keep the update it made, in its own statement
                return "; ".join(_object_statements(facts, attr, on_step == "True")) + remove
            if code == "batch-values-averaged" and facts.on_step:
                text = f"{attr}(preds, target) (forward, for the step value), then {text}"
            elif code == "batch-values-averaged":  # the call as written is unknown: keep its update in words
                text = f"{attr}.update(preds, target) in place of the forward() call, then {text}"
            return text + remove
        if code == "reset-before-log":
            hook = early[0] if early else epoch_hook
            return (
                f'remove the `{attr}.reset()` in `{hook}` and keep self.log("{name}", {attr}): Lightning computes '
                "a logged metric object after that hook and resets it itself"
            )
        if code == "derived-value":
            expression = facts.derived_epoch_expression or f"{facts.derived_source}"
            return _kept_updates(facts) + (
                f'self.log("{name}", {expression}) in {epoch_hook}, once per epoch, before the metric\'s reset()'
            )
        if code == "state-carried-over":
            if facts.kind == METRIC_OBJECT:
                return f'{attr}.reset() at the start of each epoch, or log it only with self.log("{name}", {attr})'
            return f"{attr}.reset() in {epoch_hook}, right after logging {name!r}"
        if code == "rank-local":
            return f'self.log("{name}", ..., sync_dist=True)'
        if code == "shared-metric":
            if facts.shared_dataloaders:
                return (
                    f"use one metric instance per dataloader (e.g. an nn.ModuleList: "
                    f'{attr}[dataloader_idx].update(...) and self.log("{name}", {attr}[dataloader_idx]))'
                )
            return f"use one metric instance per phase (e.g. self.train_{_short(attr)} and self.val_{_short(attr)})"
        if code == "stale-step-value":
            return f'call {attr}(preds, target) (forward) before self.log("{name}", {attr}, on_step=True)'
        if code == "weight-mismatch":
            return _weight_fix(facts)
        if code == "padded-duplicates":
            return _padding_fix(facts)
        if code == "never-updated":
            return f'{attr}.update(preds, target) in the step, before self.log("{name}", {attr})'
    return None


def _object_statements(facts: Facts, attr: str, on_step: bool) -> list[str]:
    """The statements that log the metric object instead of a value, keeping every update the old value's
    expression made (``self.f1(p, y)`` inside the call): as ``update()``, or as ``forward()`` where the step
    value is logged too."""
    call = facts.call or CallSite()
    verb = "" if on_step else ".update"
    out = [f"{receiver}{verb}({args})" for receiver, args in call.updates]
    if call.entry:  # log_dict({"f1": self.f1(p, y), "loss": loss}): the entry changes, the call stays
        flags = f"on_epoch=True, on_step={on_step}"
        entry = f'"{facts.name}": {attr} as its entry in the self.log_dict(..., {flags}) call'
        return [f"{'; '.join(out)} before the call, and {entry}" if out else entry]
    if call.collection is not None:  # log_dict(self.metrics(p, y)): the collection is logged whole
        out.append(f"self.log_dict({call.collection}, on_epoch=True, on_step={on_step})")
    else:
        out.append(f'self.log("{facts.name}", {attr}, on_epoch=True, on_step={on_step})')
    return out


def _kept_updates(facts: Facts) -> str:
    """``self.mc.update(p, y) in place of the call; `` when the logged expression made updates itself."""
    if facts.call is None or not facts.call.updates:
        return ""
    kept = "; ".join(f"{receiver}.update({args})" for receiver, args in facts.call.updates)
    return f"{kept} in place of the call; "


@dataclass(frozen=True)
class FixPlan:
    """The edits of :func:`fix_for`'s fix, for a tool that applies them (``lmlogger lint --fix``).

    ``replace``: the statements that take the logging statement's place (``()`` deletes it, ``None`` keeps
    it); ``after``: statements inserted right after it; ``epoch_statements`` go first in the class's
    ``epoch_hook``; ``remove_reset``: ``(metric, hook)``, the ``metric.reset()`` statement to delete there.
    """

    code: str
    replace: tuple[str, ...] | None = None
    after: tuple[str, ...] = ()
    epoch_hook: str | None = None
    epoch_statements: tuple[str, ...] = ()
    remove_reset: tuple[str, str] | None = None


def fix_plan(facts: Facts, findings: list[str]) -> FixPlan | None:
    """The edits of the fix :func:`fix_for` prints for the same facts, or ``None`` where that fix is not
    a mechanical edit of the source (a new metric instance, a sampler, ``batch_size=``) or the call as
    written is not known (``facts.call``)."""
    attr = f"self.{facts.attribute}" if facts.attribute else "self.<metric>"
    epoch_hook = f"on_{_hook_phase(facts.phase)}_epoch_end"
    early = [h for h in facts.reset_hooks if h in _EARLY_RESET_HOOKS] if facts.phase == "train" else []
    call = facts.call
    if facts.kind == METRIC_FUNCTIONAL:
        return None  # the fix adds a Metric attribute in __init__: not a mechanical edit of the logging line
    for code in findings:
        if fix_for(facts, [code]) is None:
            continue
        if code in ("running-value-averaged", "batch-values-averaged", "derived-value"):
            if call is None or call.entry:
                return None  # unknown, or one entry of a log_dict dict: the other keys share the call
            updates = tuple(f"{receiver}.update({args})" for receiver, args in call.updates)
            if code == "derived-value":
                expression = facts.derived_epoch_expression or f"{facts.derived_source}"
                log = f'self.log("{facts.name}", {expression})'
                return FixPlan(code, replace=updates, epoch_hook=epoch_hook, epoch_statements=(log,))
            if facts.index is not None:
                log = f'self.log("{facts.name}", {attr}.compute(){_index_text(facts.index)})'
                return FixPlan(code, replace=updates, epoch_hook=epoch_hook, epoch_statements=(log,))
            on_step = facts.on_step and code == "batch-values-averaged"
            removed = (attr, early[0]) if early else None
            return FixPlan(code, replace=tuple(_object_statements(facts, attr, on_step)), remove_reset=removed)
        if code == "reset-before-log":
            return FixPlan(code, remove_reset=(attr, early[0] if early else epoch_hook))
        if code == "state-carried-over" and facts.kind != METRIC_OBJECT:
            return FixPlan(code, after=(f"{attr}.reset()",))
        return None
    return None


def _weight_fix(facts: Facts) -> str:
    text = f'self.log("{facts.name}", ..., batch_size=n) with n the number of samples in the batch'
    if facts.weights is not None:
        text += f" (a step had {facts.weights[1]} where Lightning weighted it {facts.weights[0]})"
    return text


def with_weights(facts: Facts, findings: list[str], fix: str | None) -> str | None:
    """``fix``, completed with ``batch_size=`` when the key also has ``weight-mismatch`` and the fix of an
    earlier finding (a ``forward()`` value's ``batch-values-averaged``) does not say it: both apply."""
    if fix is None or "weight-mismatch" not in findings or "batch_size=" in fix:
        return fix
    return f"{fix}; and Lightning weighted its steps by a wrong batch size: {_weight_fix(facts)}"


def functional_fix(facts: Facts) -> str:
    """``batch-values-averaged`` of a functional metric's value: keep a Metric of the same semantics on the
    module, update it where the functional was called, and log the object (Lightning computes it at epoch end).

    The same shape as the ``metric_forward`` fix: the update stays in the step, the object is logged.
    """
    attr = f"self.{facts.attribute}" if facts.attribute else "self.<metric>"
    cls = facts.functional or "<the torchmetrics Metric class of this function>"
    data = facts.functional_data
    if facts.on_step:
        use = f"{attr}({data}) (forward, for the step value), then "
        log = f'self.log("{facts.name}", {attr}, on_epoch=True, on_step=True)'
    else:
        use = f"{attr}.update({data}), then "
        log = f'self.log("{facts.name}", {attr}, on_epoch=True, on_step=False)'
    return f"{attr} = {cls} in __init__; in {facts.hook}: {use}{log}"


def _padding_fix(facts: Facts) -> str:
    ranks = f"{facts.world_size} ranks" if facts.world_size > 1 else "number of ranks"
    if facts.phase == "train":
        return (
            "DataLoader(ds, sampler=DistributedSampler(ds, drop_last=True)), "
            f"or a dataset size divisible by the {ranks}"
        )
    fix = (
        "DataLoader(ds, sampler=UnrepeatedDistributedSamplerWrapper(SequentialSampler(ds))) "
        "(from lightning.pytorch.overrides.distributed) for evaluation"
    )
    if facts.kind == TENSOR:  # Lightning's sync_dist mean truncates uneven per-rank sample totals
        fix += f", with {facts.name!r} logged as a torchmetrics MeanMetric of per-sample values"
    return fix + f", or a dataset size divisible by the {ranks}"


def _hook_phase(phase: str) -> str:
    return {"train": "train", "val": "validation", "test": "test"}.get(phase, phase)


def _short(attr: str) -> str:
    return attr.rsplit(".", 1)[-1].removeprefix("train_").removeprefix("val_").removeprefix("test_")


def judge(
    facts: Facts, logged: float | None, reference: float | None, reason: str | None, rtol: float, atol: float
) -> tuple[str, list[str], str | None, str | None]:
    """``(verdict, findings, fix, reason)`` for one key and epoch."""
    if logged is None and reason is None:
        reason = "no epoch value for this key reached the logger"
    if reference is None or logged is None:
        verdict = "unverified"
    else:
        verdict = compare(logged, reference, rtol, atol)
        reason = None
    findings = findings_for(facts, verdict)
    fix = with_weights(facts, findings, fix_for(facts, findings) if verdict == "mismatch" or findings else None)
    return verdict, findings, fix, reason
