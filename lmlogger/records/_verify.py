"""Verdicts, findings and fixes: pure functions over numbers and provenance facts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
                return (
                    f'self.log("{name}", {attr}.compute(){_index_text(facts.index)}) in {epoch_hook}, once per '
                    f"epoch, before {attr}.reset()"
                )
            on_step = "True" if (facts.on_step and code == "batch-values-averaged") else "False"
            text = f'self.log("{name}", {attr}, on_epoch=True, on_step={on_step})'
            if code == "batch-values-averaged" and facts.on_step:
                text = f"{attr}(preds, target) (forward, for the step value), then {text}"
            return text + remove
        if code == "reset-before-log":
            hook = early[0] if early else epoch_hook
            return (
                f'remove the `{attr}.reset()` in `{hook}` and keep self.log("{name}", {attr}): Lightning computes '
                "a logged metric object after that hook and resets it itself"
            )
        if code == "derived-value":
            expression = facts.derived_epoch_expression or f"{facts.derived_source}"
            return f'self.log("{name}", {expression}) in {epoch_hook}, once per epoch, before the metric\'s reset()'
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
            text = f'self.log("{name}", ..., batch_size=n) with n the number of samples in the batch'
            if facts.weights is not None:
                text += f" (a step had {facts.weights[1]} where Lightning weighted it {facts.weights[0]})"
            return text
        if code == "padded-duplicates":
            return _padding_fix(facts)
    return None


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
    fix = fix_for(facts, findings) if verdict == "mismatch" or findings else None
    return verdict, findings, fix, reason
