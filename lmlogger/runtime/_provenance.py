"""Classification of one value passed to ``self.log``: which provenance kind, which metric."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric

from lmlogger.records._records import (  # noqa: F401  (pure names live in the record layer; importable from here too)
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
    index: tuple[Any, ...] | None = None  # an element of the result: a dict key or a tensor index


_PLAIN = Classified(TENSOR)
#: Samples of a Python number kept per key for the value comparison at epoch end (first and latest).
_EVIDENCE_SAMPLES = 8


@dataclass
class PendingNumber:
    """A Python number whose origin needs a value comparison with a device tensor.

    Comparing at log time would synchronise the device, so the candidates (the tensor objects
    themselves, as they were when logged) are kept and compared at epoch end.
    """

    value: float
    candidates: list[tuple[str, Metric, str, Tensor]]


class NumberEvidence:
    """The numbers one key logged in one epoch (a bounded sample of steps) and their candidate results.

    A number is taken for a metric's ``compute()``/``forward()`` value only on real evidence: it equalled
    the same metric's result at every sampled step, at two or more steps whose value is not a whole
    number (an accuracy of 1.0 on a one-sample batch equals any count), and no other key is bound to that
    metric by identity.
    """

    __slots__ = ("samples", "seen")

    def __init__(self) -> None:
        self.samples: list[PendingNumber] = []
        self.seen = 0

    def add(self, pending: PendingNumber) -> None:
        if len(self.samples) < _EVIDENCE_SAMPLES:
            self.samples.append(pending)
        else:  # keep the first half, rotate the latest through the second half
            half = _EVIDENCE_SAMPLES // 2
            self.samples[half + self.seen % half] = pending
        self.seen += 1

    def resolve(self, claimed: set[int]) -> Classified:
        consistent: dict[tuple[str, int], Classified] | None = None
        informative = 0
        for sample in self.samples:
            matched = {
                (kind, id(metric)): Classified(kind, metric, attribute, by_value=True)
                for kind, metric, attribute, tensor in sample.candidates
                if float(tensor) == sample.value
            }
            consistent = matched if consistent is None else {k: v for k, v in consistent.items() if k in matched}
            if math.isfinite(sample.value) and not float(sample.value).is_integer():
                informative += 1
            if not consistent:
                return _PLAIN
        if consistent is None or self.seen < 2 or informative < 2:
            return _PLAIN
        for match in consistent.values():
            if id(match.metric) not in claimed:
                return match
        return _PLAIN


def _element_index(view: Tensor, base: Tensor) -> tuple[int, ...] | None:
    """The index of the one-element ``view`` inside ``base`` (both share storage), from offsets only."""
    if not base.is_contiguous():
        return None
    offset = view.storage_offset() - base.storage_offset()
    if offset < 0 or offset >= base.numel():
        return None
    index = []
    for size in reversed(base.shape):
        index.append(offset % size)
        offset //= size
    return tuple(reversed(index))


def classify(
    value: Any,
    metrics: list[tuple[str, Metric]],
    claimed: set[int],
    wrappers: list[tuple[str, Metric]] = (),  # type: ignore[assignment]
) -> Classified | PendingNumber:
    """Classify ``value`` against the module's metrics ``[(attribute, metric), ...]``.

    Tensors are matched by identity with ``Metric._computed`` (the cached ``compute()`` result) and
    ``Metric._forward_cache`` (the last ``forward()`` result), or with the last results of a wrapper
    metric; an element of such a result (``compute()[1]``, a value of a ``ClasswiseWrapper`` dict) is
    traced through its view's base, to the element. No value is read, no device sync.
    Python numbers (``.item()`` of a result) are compared by value at epoch end
    (:class:`NumberEvidence`), never on the step's hot path; integers are counts, never metric values.
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
        for name, metric in wrappers:
            extra = metric.__dict__
            for kind, cached in (
                (METRIC_COMPUTE, extra.get("_lml_compute")),
                (METRIC_FORWARD, extra.get("_lml_forward")),
            ):
                if cached is value:
                    return Classified(kind, metric, name)
                if isinstance(cached, dict):
                    for key, item in cached.items():
                        if item is value:
                            return Classified(kind, metric, name, index=(key,))
        base = value._base
        if base is not None and value.numel() == 1:
            for name, metric in (*metrics, *wrappers):
                extra = metric.__dict__
                for kind, cached in (
                    (METRIC_COMPUTE, metric._computed),
                    (METRIC_FORWARD, metric._forward_cache),
                    (METRIC_COMPUTE, extra.get("_lml_compute")),
                    (METRIC_FORWARD, extra.get("_lml_forward")),
                ):
                    if isinstance(cached, Tensor) and (cached is base or cached._base is base):
                        index = _element_index(value, cached)
                        if index is not None:
                            return Classified(kind, metric, name, index=index)
        return _PLAIN
    if isinstance(value, float) or (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)):
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
    """Every ``Metric`` of the module, with its attribute path (``val_metrics.BinaryF1Score``).

    Submodules first; then metrics kept where ``named_modules`` does not look: plain ``dict``/``list``
    attributes of the module (``self.metrics = {"f1": BinaryF1Score()}``), one level deep.
    """
    found = [(name, m) for name, m in module.named_modules() if isinstance(m, Metric) and name]
    seen = {id(m) for _, m in found}
    for attr, value in vars(module).items():
        if attr.startswith("_") or not isinstance(value, (dict, list, tuple)):
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, Metric) and id(item) not in seen:
                for sub_name, sub in item.named_modules():
                    if isinstance(sub, Metric) and id(sub) not in seen:
                        seen.add(id(sub))
                        found.append((f"{attr}[{key!r}]" + (f".{sub_name}" if sub_name else ""), sub))
    return found


def callback_metrics(callbacks: Any) -> list[tuple[str, Metric]]:
    """Every ``Metric`` owned by a callback (``self.f1 = BinaryF1Score()`` in a ``Callback`` that logs it with
    ``pl_module.log``), as ``callbacks[MyCallback].f1``: the attributes of each callback, in ``nn.Module`` children
    and plain ``dict``/``list`` attributes one level deep, as :func:`module_metrics` finds a module's."""
    found: list[tuple[str, Metric]] = []
    seen: set[int] = set()
    for callback in callbacks:
        attrs = getattr(callback, "__dict__", None)
        if not attrs or isinstance(callback, Metric):
            continue
        label = f"callbacks[{type(callback).__name__}]"
        for attr, value in attrs.items():
            if attr.startswith("_"):
                continue
            if isinstance(value, (dict, list, tuple)):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                candidates = [(f"{attr}[{key!r}]", item) for key, item in items]
            else:
                candidates = [(attr, value)]
            for path, item in candidates:
                if not isinstance(item, torch.nn.Module):
                    continue
                for sub_name, sub in item.named_modules():
                    if isinstance(sub, Metric) and id(sub) not in seen:
                        seen.add(id(sub))
                        found.append((f"{label}.{path}" + (f".{sub_name}" if sub_name else ""), sub))
    return found


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
