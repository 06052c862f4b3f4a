"""Classification of one value passed to ``self.log``: which provenance kind, which metric."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor
from torchmetrics import Metric

from lmlogger._records import (  # noqa: F401  (pure names live in the record layer; importable from here too)
    METRIC_COMPUTE,
    METRIC_FORWARD,
    METRIC_OBJECT,
    TENSOR,
    is_step_hook,
    phase_of,
)


class Classified(NamedTuple):
    """The provenance of one value: its kind and, for the ``metric_*`` kinds, the metric.

    A NamedTuple: one is made per ``self.log`` call, so it must be cheap.
    """

    kind: str
    metric: Metric | None = None
    attribute: str | None = None
    by_value: bool = False  # matched by value (a Python number), not by identity


_PLAIN = Classified(TENSOR)


def pick(matches: list[Classified], claimed: set[int]) -> Classified:
    """Among value matches, prefer a metric no other key is bound to by identity."""
    for match in matches:
        if id(match.metric) not in claimed:
            return match
    return matches[0]


@dataclass
class PendingNumber:
    """A Python number whose origin needs a value comparison with a device tensor.

    Comparing at log time would synchronise the device, so the candidates (the tensor objects
    themselves, as they were when logged) are kept, one set per key, the latest, and resolved at
    epoch end.
    """

    value: float
    candidates: list[tuple[str, Metric, str, Tensor]]

    def resolve(self, claimed: set[int]) -> Classified:
        matches = [
            Classified(kind, metric, attribute, by_value=True)
            for kind, metric, attribute, tensor in self.candidates
            if float(tensor) == self.value
        ]
        return pick(matches, claimed) if matches else _PLAIN


def classify(value: Any, metrics: list[tuple[str, Metric]], claimed: set[int]) -> Classified | PendingNumber:
    """Classify ``value`` against the module's metrics ``[(attribute, metric), ...]``.

    Tensors are matched by identity with ``Metric._computed`` (the cached ``compute()`` result) and
    ``Metric._forward_cache`` (the last ``forward()`` result): no value is read, no device sync.
    Python numbers (``.item()`` of a result) are compared by value at epoch end
    (:class:`PendingNumber`), never on the step's hot path.
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
        return _PLAIN
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        # Reading a tensor's value now would be a host-device sync on GPU (and a read of the user's
        # tensors on every step): keep the candidates, compare at epoch end.
        pending = [
            (kind, metric, name, cached)
            for name, metric in metrics
            for kind, cached in ((METRIC_COMPUTE, metric._computed), (METRIC_FORWARD, metric._forward_cache))
            if isinstance(cached, Tensor) and cached.numel() == 1
        ]
        if pending:
            return PendingNumber(float(value), pending)  # type: ignore[arg-type]
    return _PLAIN


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
