"""Classification of one value passed to ``self.log``: which provenance kind, which metric."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torchmetrics import Metric

METRIC_OBJECT = "metric_object"
METRIC_COMPUTE = "metric_compute"
METRIC_FORWARD = "metric_forward"
TENSOR = "tensor"

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


@dataclass(frozen=True)
class Classified:
    """The provenance of one value: its kind and, for the ``metric_*`` kinds, the metric."""

    kind: str
    metric: Metric | None = None
    attribute: str | None = None
    by_value: bool = False  # matched by value (a Python number), not by identity


def pick(matches: list[Classified], claimed: set[int]) -> Classified:
    """Among value matches, prefer a metric no other key is bound to by identity."""
    for match in matches:
        if id(match.metric) not in claimed:
            return match
    return matches[0]


@dataclass
class PendingNumber:
    """A Python number whose origin needs a value comparison with a device tensor.

    Comparing at log time would synchronise the device, so the candidates are kept (one per key,
    the latest) and resolved at epoch end.
    """

    value: float
    candidates: list[tuple[str, Metric, str, Tensor]]

    def resolve(self, claimed: set[int]) -> Classified:
        matches = [
            Classified(kind, metric, attribute, by_value=True)
            for kind, metric, attribute, tensor in self.candidates
            if float(tensor) == self.value
        ]
        return pick(matches, claimed) if matches else Classified(TENSOR)


def classify(value: Any, metrics: list[tuple[str, Metric]], claimed: set[int]) -> Classified | PendingNumber:
    """Classify ``value`` against the module's metrics ``[(attribute, metric), ...]``.

    Tensors are matched by identity with ``Metric._computed`` (the cached ``compute()`` result) and
    ``Metric._forward_cache`` (the last ``forward()`` result): no value is read, no device sync.
    Python numbers (``.item()`` of a result) are compared by value; CPU candidates at once,
    device candidates later (:class:`PendingNumber`).
    """
    if isinstance(value, Metric):
        attribute = next((name for name, m in metrics if m is value), None)
        return Classified(METRIC_OBJECT, value, attribute)
    if isinstance(value, Tensor):
        for name, metric in metrics:
            if metric._computed is value:
                return Classified(METRIC_COMPUTE, metric, name)
            if metric._forward_cache is value:
                return Classified(METRIC_FORWARD, metric, name)
        return Classified(TENSOR)
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        number = float(value)  # type: ignore[arg-type]
        pending: list[tuple[str, Metric, str, Tensor]] = []
        matches: list[Classified] = []
        for name, metric in metrics:
            for kind, cached in ((METRIC_COMPUTE, metric._computed), (METRIC_FORWARD, metric._forward_cache)):
                if not isinstance(cached, Tensor) or cached.numel() != 1:
                    continue
                if cached.device.type == "cpu":
                    if float(cached) == number:
                        matches.append(Classified(kind, metric, name, by_value=True))
                else:
                    pending.append((kind, metric, name, cached))
        if matches:
            return pick(matches, claimed)
        if pending:
            return PendingNumber(number, pending)
    return Classified(TENSOR)


def module_metrics(module: Any) -> list[tuple[str, Metric]]:
    """Every ``Metric`` reachable as a submodule, with its attribute path (``val_metrics.BinaryF1Score``)."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, Metric) and name]


def reduce_name(meta: Any) -> str:
    """The name of a ``_Metadata``'s reduction: ``mean``, ``sum``, ``max``, ``min`` or the callable's name."""
    if meta.is_mean_reduction:
        return "mean"
    if meta.is_sum_reduction:
        return "sum"
    if meta.is_max_reduction:
        return "max"
    if meta.is_min_reduction:
        return "min"
    fn = meta.reduce_fx
    return getattr(fn, "__name__", repr(fn))
