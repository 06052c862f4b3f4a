"""The one place that knows which Lightning namespaces exist: ``lightning.pytorch`` and ``pytorch_lightning``.

About half of public LightningModules are written for the standalone ``pytorch_lightning`` package
(``import pytorch_lightning as pl``), the rest for ``lightning.pytorch``. The two are the same code under two
names, with distinct classes: a ``pytorch_lightning`` Trainer runs ``pytorch_lightning`` modules and
callbacks only. lmlogger serves both, and every other runtime module asks this one for the classes it needs.

* :func:`installed` says which namespaces are importable (``importlib.util.find_spec``, which imports
  nothing), decided once per process.
* :func:`loaded` gives the installed namespaces that the process has imported. An object of a namespace
  exists only once its namespace is imported, so ``isinstance`` against the classes of the loaded namespaces
  (:func:`classes`) sees every object a run can hand lmlogger. Both may be loaded in one process.
* :func:`primary` is the namespace ``VerifiedLogger`` and the base classes are built on
  (``lightning.pytorch`` when installed, else ``pytorch_lightning``); importing the runtime imports it.
  No other namespace is ever imported by lmlogger: importing ``pytorch_lightning`` has process-wide effects
  (Lightning's shared ``rank_zero`` helpers then log to the ``pytorch_lightning`` logger), so a namespace the
  user's code does not import stays unimported.
* :func:`of` gives the namespace of a trainer, module or callback, by its class's module.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import threading
from functools import cached_property
from types import CodeType
from typing import Any

#: (pytorch namespace, its fabric namespace, the top-level package whose presence decides it), in preference order.
_CANDIDATES: tuple[tuple[str, str, str], ...] = (
    ("lightning.pytorch", "lightning.fabric", "lightning"),
    ("pytorch_lightning", "lightning_fabric", "pytorch_lightning"),
)
#: Installed fabric-only packages, whose loggers a Trainer also accepts.
_FABRIC_ONLY = ("lightning_fabric",)

_lock = threading.Lock()
_installed: tuple[str, ...] | None = None
_namespaces: dict[str, Namespace] = {}


class Namespace:
    """The classes lmlogger needs from one Lightning namespace, imported on first use."""

    def __init__(self, name: str, fabric: str) -> None:
        self.name = name  # "lightning.pytorch" or "pytorch_lightning"
        self.fabric = fabric  # "lightning.fabric" or "lightning_fabric"

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def _get(self, module: str, attribute: str) -> Any:
        return getattr(importlib.import_module(f"{self.name}.{module}" if module else self.name), attribute)

    @cached_property
    def LightningModule(self) -> type:
        return self._get("", "LightningModule")

    @cached_property
    def Callback(self) -> type:
        return self._get("callbacks", "Callback")

    @cached_property
    def ModelCheckpoint(self) -> type:
        return self._get("callbacks", "ModelCheckpoint")

    @cached_property
    def EarlyStopping(self) -> type:
        return self._get("callbacks", "EarlyStopping")

    @cached_property
    def Logger(self) -> type:
        return self._get("loggers", "Logger")

    @cached_property
    def FabricLogger(self) -> type:
        return importlib.import_module(f"{self.fabric}.loggers").Logger

    @cached_property
    def run_start_code(self) -> CodeType:
        """``_call_setup_hook``: it reads ``logger.experiment`` of every logger at the start of every run."""
        return self._get("trainer.call", "_call_setup_hook").__code__

    @cached_property
    def epoch_values_codes(self) -> frozenset[CodeType]:
        """The logger connector's methods that hand the values of ``self.log`` calls to ``log_metrics``."""
        connector = self._get("trainer.connectors.logger_connector.logger_connector", "_LoggerConnector")
        return frozenset(
            fn.__code__ for name, fn in vars(connector).items() if inspect.isfunction(fn) and name != "log_metrics"
        )

    @cached_property
    def connector_log_code(self) -> CodeType:
        connector = self._get("trainer.connectors.logger_connector.logger_connector", "_LoggerConnector")
        return connector.log_metrics.__code__

    @cached_property
    def result_reset_code(self) -> CodeType | None:
        """``_ResultMetric.reset``: Lightning resetting a logged metric object after its epoch value."""
        try:
            return self._get("trainer.connectors.logger_connector.result", "_ResultMetric").reset.__code__
        except (ImportError, AttributeError):  # pragma: no cover - other Lightning layouts
            return None

    @cached_property
    def log_signature(self) -> inspect.Signature:
        return inspect.signature(self.LightningModule.log)

    @cached_property
    def module_file(self) -> str:
        """The source file of ``LightningModule`` (its frames are stepped over to find the user's line)."""
        return inspect.getfile(self.LightningModule)


def installed() -> tuple[str, ...]:
    """The importable pytorch namespaces, in preference order (decided once; imports nothing)."""
    global _installed
    if _installed is None:
        found = []
        for name, _, package in _CANDIDATES:
            try:
                if importlib.util.find_spec(package) is not None:
                    found.append(name)
            except (ImportError, ValueError):  # a broken or half-removed install
                continue
        _installed = tuple(found)
    return _installed


def _namespace(name: str) -> Namespace:
    ns = _namespaces.get(name)
    if ns is None:
        with _lock:
            ns = _namespaces.get(name)
            if ns is None:
                fabric = next(f for n, f, _ in _CANDIDATES if n == name)
                ns = _namespaces[name] = Namespace(name, fabric)
    return ns


def primary() -> Namespace:
    """The namespace lmlogger's own base classes come from; importing it here is the runtime's one import of
    Lightning."""
    names = installed()
    if not names:
        raise ImportError(
            "lmlogger's VerifiedLogger needs PyTorch Lightning: neither `lightning` nor `pytorch_lightning` is "
            "installed. Install one: pip install lightning"
        )
    ns = _namespace(names[0])
    importlib.import_module(ns.name)
    return ns


def loaded() -> tuple[Namespace, ...]:
    """The installed namespaces this process has imported (always includes :func:`primary` once the runtime is
    imported)."""
    return tuple(_namespace(name) for name in installed() if name in sys.modules)


def classes(attribute: str) -> tuple[type, ...]:
    """``attribute`` (``"ModelCheckpoint"``, ``"LightningModule"``, ...) of every loaded namespace, for
    ``isinstance``."""
    return tuple(getattr(ns, attribute) for ns in loaded())


def logger_bases() -> tuple[type, ...]:
    """Every logger base class a Trainer of a loaded namespace accepts: its own ``Logger`` and the fabric
    ``Logger`` (``LitLogger`` and Fabric's TensorBoard/CSV loggers derive from it)."""
    bases: list[type] = []
    for ns in loaded():
        bases += [ns.Logger, ns.FabricLogger]
    for fabric in _FABRIC_ONLY:
        module = sys.modules.get(f"{fabric}.loggers")
        if module is not None and getattr(module, "Logger", None) not in bases:
            bases.append(module.Logger)
    return tuple(bases)


def of(obj: Any) -> Namespace | None:
    """The namespace of a trainer, module, callback or logger (by its class's module), ``None`` for another
    object. A subclass defined in user code is traced through its bases."""
    for klass in type(obj).__mro__:
        module = klass.__module__ or ""
        for ns in loaded():
            if module == ns.name or module.startswith(ns.name + ".") or module.startswith(ns.fabric):
                return ns
    return None


def names() -> str:
    """The installed namespaces as a user reads them: ``lightning.pytorch, pytorch_lightning``."""
    return ", ".join(installed())
