"""Values returned by torchmetrics' functional metrics: which call made a logged tensor, and its shadow.

``binary_f1_score(probs, y)`` returns a fresh tensor that no ``Metric`` caches, so it cannot be told apart
from a loss by identity with a metric's state. While a session is active, every public functional metric
(:data:`lmlogger.records._functional.FUNCTIONAL`) is replaced by a thin wrapper that remembers its last
results (the result tensor and the call's arguments, a bounded number of them): in the functional packages
(``torchmetrics.functional``, ``...classification``, ``...regression``, ...) and in every loaded module and
LightningModule whose namespace bound the function at import time (``from torchmetrics.functional...
import binary_f1_score``). The wrapper reads no value (no host-device sync); it is installed once,
idempotently, and the namespaces are restored when the last session ends (a module imported meanwhile keeps
the wrapper, which then passes calls through untouched).

A logged tensor that is the result of such a call is ``metric_functional``. Its reference is the epoch value
of a *shadow* ``Metric`` of the same class and arguments (``BinaryF1Score(threshold=0.3)`` for
``binary_f1_score(p, y, threshold=0.3)``) fed with the same inputs at each step: its memory is the metric's
own state (a few counters; the predictions themselves for ``cat`` states such as AUROC's, capped by
``VerifiedLogger(functional_sample_cap=...)``).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import warnings
from collections import OrderedDict
from functools import wraps
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lmlogger.records._functional import FUNCTIONAL, class_expression, render_value

#: Results remembered between a functional call and the ``self.log`` of its value (a step rarely makes more).
_KEEP = 64
#: A shadow receives its inputs in groups: one ``update`` with the concatenated inputs of up to this many
#: steps, or of fewer steps once they hold ``_FLUSH_ELEMENTS`` elements. torchmetrics' ``update`` of binary
#: classification reads one boolean (are ``preds`` probabilities?): grouping makes that read once per group,
#: not once per step, and the Python cost of ``update`` is paid once per group too.
_FLUSH_STEPS = 32
_FLUSH_ELEMENTS = 1 << 20
#: Packages whose namespaces export the functional metrics (their defining modules are left alone).
_PACKAGES = (
    "torchmetrics.functional",
    "torchmetrics.functional.classification",
    "torchmetrics.functional.regression",
)
#: Modules never scanned for bound functions: lmlogger's own, torch's, the libraries around it.
_SKIP_PREFIXES = (
    "torch.",
    "lmlogger.",
    "lightning.",
    "lightning_fabric.",
    "lightning_utilities.",
    "pytorch_lightning.",
    "numpy.",
    "scipy.",
    "sympy.",
    "sklearn.",
    "pandas.",
    "matplotlib.",
    "mlflow.",
    "tensorboard.",
    "google.",
    "wandb.",
    "jinja2.",
    "networkx.",
    "PIL.",
    "IPython.",
)


class Call(NamedTuple):
    """One call of a functional metric: its result and what it was called with."""

    result: Tensor
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class _State:
    """The process-wide wrapping (one per process: the functions are process-wide too)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions = 0
        self.recent: OrderedDict[int, Call] = OrderedDict()
        self.wrappers: dict[int, Any] = {}  # id(original) -> wrapper
        self.originals: dict[str, Any] = {}  # name -> original function
        self.patched: list[tuple[dict[str, Any], str, Any, Any]] = []  # (namespace, name, original, wrapper)


_STATE = _State()


def _wrap(name: str, fn: Any) -> Any:
    state = _STATE

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if state.sessions and isinstance(result, Tensor):
            recent = state.recent
            recent[id(result)] = Call(result, name, args, kwargs)
            if len(recent) > _KEEP:
                recent.popitem(last=False)
        return result

    wrapper.__lmlogger_functional__ = name  # type: ignore[attr-defined]
    return wrapper


def _originals() -> dict[str, Any]:
    state = _STATE
    if not state.originals:
        for package in _PACKAGES:
            try:
                module = importlib.import_module(package)
            except Exception:  # pragma: no cover - a torchmetrics without this package
                continue
            for name in FUNCTIONAL:
                fn = module.__dict__.get(name)
                if callable(fn) and not hasattr(fn, "__lmlogger_functional__"):
                    state.originals.setdefault(name, fn)
        for name, fn in state.originals.items():
            state.wrappers.setdefault(id(fn), _wrap(name, fn))
    return state.originals


def _patch_namespace(namespace: dict[str, Any], by_id: dict[int, Any]) -> None:
    try:
        hits = [(attr, value) for attr, value in namespace.items() if id(value) in by_id]
    except RuntimeError:  # the namespace changed while read (another thread importing): skip it
        return
    for attr, value in hits:
        wrapper = by_id[id(value)]
        namespace[attr] = wrapper
        _STATE.patched.append((namespace, attr, value, wrapper))


def activate(namespaces: tuple[dict[str, Any], ...] = ()) -> None:
    """A session starts: wrap the functional metrics (once) where they are bound, and in ``namespaces``
    (the LightningModule's ``__dict__``: ``self.metric_fn = binary_f1_score``)."""
    state = _STATE
    with state.lock:
        state.sessions += 1
        originals = _originals()
        by_id = {id(fn): state.wrappers[id(fn)] for fn in originals.values()}
        if state.sessions == 1:
            for module_name, module in list(sys.modules.items()):
                if module is None or module_name.startswith(_SKIP_PREFIXES) or module_name == "torch":
                    continue
                if module_name.startswith("torchmetrics") and (
                    module_name not in _PACKAGES and not module_name.startswith("torchmetrics.functional")
                ):
                    continue
                if module_name.startswith("torchmetrics.functional") and module_name not in _PACKAGES:
                    continue  # a defining module: its own calls stay unwrapped
                namespace = getattr(module, "__dict__", None)
                if isinstance(namespace, dict):
                    _patch_namespace(namespace, by_id)
        for namespace in namespaces:
            _patch_namespace(namespace, by_id)


def deactivate() -> None:
    """A session ends: the last one restores every namespace it changed and forgets the remembered calls."""
    state = _STATE
    with state.lock:
        state.sessions = max(0, state.sessions - 1)
        if state.sessions:
            return
        for namespace, attr, original, wrapper in reversed(state.patched):
            if namespace.get(attr) is wrapper:
                namespace[attr] = original
        state.patched.clear()
        state.recent.clear()


def lookup(value: Tensor) -> Call | None:
    """The functional call that returned ``value`` (by identity), if one did recently."""
    call = _STATE.recent.get(id(value))
    if call is not None and call.result is value:
        return call
    return None


_SIGNATURES: dict[str, inspect.Signature] = {}


def _signature(name: str) -> inspect.Signature:
    sig = _SIGNATURES.get(name)
    if sig is None:
        sig = _SIGNATURES[name] = inspect.signature(_STATE.originals[name])
    return sig


def _metric_class(cls: str) -> Any:
    for module in ("torchmetrics", "torchmetrics.classification", "torchmetrics.regression"):
        found = getattr(importlib.import_module(module), cls, None)
        if found is not None:
            return found
    raise LookupError(f"torchmetrics has no class {cls}")


def _same(a: Any, b: Any) -> bool:
    """Whether two arguments are the same: by identity first (the literals of a call site are one object), tensors
    only by identity (comparing their values would read them from the device)."""
    if a is b:
        return True
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


class Shadow:
    """The shadow ``Metric`` of one key's functional values in one epoch (see module docstring)."""

    def __init__(self, name: str, cap: int | None) -> None:
        self.name = name
        self.cap = cap
        cls, params, ndata = FUNCTIONAL.get(name, (None, (), 0))
        self.cls = cls
        self.data = params[:ndata] if ndata else ("preds", "target")
        self.params = params
        if name in _STATE.originals:  # the installed torchmetrics' own parameter order
            self.params = tuple(_signature(name).parameters)
            if cls is not None and self.params[:ndata] != self.data:
                self.cls = None
        self.metric: Any = None
        self.options: dict[str, Any] | None = None
        self.expression: str | None = None  # the class with the call's arguments, for the fix
        self.reason: str | None = (
            None
            if self.cls is not None
            else f"`{name}` has no torchmetrics Metric class that computes it over many batches, so lmlogger has "
            "no exact epoch value for it"
        )
        self.updates = 0
        self.pending: list[tuple[Any, ...]] = []  # inputs of steps not yet given to the shadow
        self.versions: list[tuple[int, ...]] = []  # their tensors' version counters when logged
        self.pending_elements = 0
        self._shape: tuple[int, tuple[str, ...]] | None = None  # positional count and keywords of the last call
        self._option_values: tuple[Any, ...] = ()

    def update(self, call: Call) -> None:
        """Feed the shadow with the call's inputs (device work only, as the Metric's own ``update``)."""
        if call.name != self.name:
            self.reason = self.reason or f"the key logged values of `{self.name}` and of `{call.name}`"
        if self.reason is not None:
            return
        args, kwargs = call.args, call.kwargs
        ndata = len(self.data)
        shape = (len(args), tuple(kwargs))
        if shape == self._shape and len(args) >= ndata:
            # the same call site as the last step: the same option objects mean the same options
            last = self._option_values
            values = (*args[ndata:], *kwargs.values())
            if len(values) == len(last) and all(a is b for a, b in zip(values, last, strict=True)):
                self._add(args[:ndata])
                return
        self._shape = shape
        self._option_values = (*args[ndata:], *kwargs.values()) if len(args) >= ndata else ()
        if len(args) > len(self.params) or any(k not in self.params for k in kwargs):
            _signature(self.name).bind(*args, **kwargs)  # raises the call's own TypeError (it cannot happen)
        # torchmetrics' functional metrics take no positional-only or variadic parameters: positions are names
        arguments = dict(zip(self.params, args, strict=False))
        arguments.update(kwargs)
        ndata = len(self.data)
        options = {k: v for k, v in arguments.items() if k not in self.data}
        if self.options is None:
            self.options = options
            self.expression = class_expression(self.cls, [(k, render_value(v)) for k, v in options.items()])  # type: ignore[arg-type]
            made = dict(options)
            cls = _metric_class(self.cls)  # type: ignore[arg-type]
            if "validate_args" in inspect.signature(cls).parameters or "validate_args" in options:
                made["validate_args"] = False  # the functional call has validated these inputs already
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.metric = cls(**made)
            except Exception as err:
                self.reason = f"{self.expression} could not be made ({type(err).__name__}: {err})"
                return
            first = arguments.get(self.data[0])
            if isinstance(first, Tensor):
                self.metric = self.metric.to(first.device)
        elif options.keys() != self.options.keys() or not all(_same(v, self.options[k]) for k, v in options.items()):
            self.reason = f"`{self.name}` was called with different arguments within the epoch"
            self.metric = None
            return
        self._add(tuple(arguments.get(name) for name in self.data))

    def _add(self, inputs: tuple[Any, ...]) -> None:
        """Keep one step's data inputs for the next group (references and version counters: no copy, no read)."""
        data = []
        versions = []
        for value in inputs:
            if isinstance(value, Tensor):
                value = value.detach()
                versions.append(value._version)
                self.pending_elements += value.numel()
            else:
                versions.append(-1)
            data.append(value)
        self.pending.append(tuple(data))
        self.versions.append(tuple(versions))
        self.updates += 1
        if len(self.pending) >= _FLUSH_STEPS or self.pending_elements >= _FLUSH_ELEMENTS:
            self.flush()

    def flush(self) -> None:
        """Give the pending steps' inputs to the shadow: one ``update`` of their concatenation (the same state as
        one update per step, for every metric whose state is a sum or a concatenation over samples)."""
        pending, versions = self.pending, self.versions
        self.pending, self.versions, self.pending_elements = [], [], 0
        if not pending or self.metric is None or self.reason is not None:
            return
        for data, seen in zip(pending, versions, strict=True):
            if any(isinstance(d, Tensor) and d._version != v for d, v in zip(data, seen, strict=True)):
                self.reason = (
                    f"the inputs of `{self.name}` were changed in place after the call, before lmlogger read them"
                )
                self.metric = None
                return
        groups: list[tuple[Any, ...]] = pending
        if len(pending) > 1 and all(isinstance(d, Tensor) and d.ndim for data in pending for d in data):
            try:
                groups = [tuple(torch.cat(column) for column in zip(*pending, strict=True))]
            except RuntimeError:  # inputs of different shapes (sequence lengths): one update per step
                groups = pending
        for data in groups:
            self.metric.update(*data)
        if self.cap is not None and self._cat_samples() > self.cap:
            self.reason = (
                f"the shadow of `{self.name}` keeps every prediction and reached "
                f"VerifiedLogger(functional_sample_cap={self.cap})"
            )
            self.metric = None

    def _cat_samples(self) -> int:
        """Rows held in the metric's ``cat`` states (shapes only: no sync)."""
        total = 0
        for name in self.metric._defaults:
            value = getattr(self.metric, name)
            if isinstance(value, list):
                total = max(total, sum(int(t.shape[0]) if t.ndim else 1 for t in value if isinstance(t, Tensor)))
        return total

    def reference(self) -> tuple[float | None, str | None]:
        """The epoch value over every sample the shadow received (a collective in a distributed run)."""
        self.flush()
        if self.reason is not None:
            return None, self.reason
        if self.metric is None or not self.updates:
            return None, "the functional metric received no inputs in this epoch"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = self.metric.compute()
        if isinstance(value, Tensor) and value.numel() == 1:
            return float(value.detach().double().cpu()), None
        return None, f"{self.expression}.compute() returned {type(value).__name__}, not a scalar"

    def reset(self) -> None:
        """A new epoch: an empty state, the same class and arguments."""
        if self.metric is not None:
            self.metric.reset()
        self.updates = 0
        self.pending, self.versions, self.pending_elements = [], [], 0
        if self.cls is not None and self.reason is not None:
            self.options, self.reason, self.metric = None, None, None  # a new epoch may verify again
            self._shape, self._option_values = None, ()
