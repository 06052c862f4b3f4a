"""``VerifiedLogger``: a drop-in wrapper of any Lightning logger."""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lightning.pytorch.loggers import Logger
from lightning.pytorch.trainer import call as _trainer_call
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn

from lmlogger.records._records import ProvenanceRecord, VerificationRecord
from lmlogger.records._verify import DEFAULT_ATOL, DEFAULT_RTOL
from lmlogger.runtime import _intercept
from lmlogger.runtime._session import Session

if TYPE_CHECKING:
    from lmlogger.audit import AuditReport
from lmlogger.runtime.sinks import make_sink

_ON_MISMATCH = ("warn", "raise", "ignore")
# Lightning's `_call_setup_hook(trainer)` reads `logger.experiment` of every logger, on every rank, at
# the start of every fit/validate/test/predict, before any hook can `self.log` (and whatever
# `enable_autolog_hparams` says, unlike `log_graph`). Recognised by its code object, so a user's
# own `logger.experiment` is never taken for the start of a run.
_RUN_START_CODE = _trainer_call._call_setup_hook.__code__


@dataclass(frozen=True)
class Options:
    """Settings of a `VerifiedLogger` (see its docstring)."""

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    on_mismatch: str = "warn"
    reference_prefix: str = "lmlogger/reference/"
    functional_sample_cap: int | None = None

    @property
    def prefix(self) -> str:
        """The same as ``reference_prefix`` (its name before 0.2)."""
        return self.reference_prefix


class VerifiedLogger(Logger):
    """Wrap a Lightning logger so that every epoch value it receives is verified.

    The wrapper is transparent: ``isinstance(VerifiedLogger(tb), TensorBoardLogger)`` holds, and
    ``name``, ``version``, ``save_dir``, ``log_dir``, ``experiment`` and every other attribute are the
    wrapped logger's own, so ``trainer.log_dir`` and checkpoint paths do not change. Every value the
    user logs reaches the wrapped logger unchanged, at the same step. lmlogger adds, beside them,
    reference values under ``reference_prefix``, a sidecar ``lmlogger/provenance.jsonl`` in the run's log dir,
    the audit as a page (``lmlogger/report.html``) when the run ends and, where the backend has them, a text
    summary and chart layout (TensorBoard) or tags and artifacts (MLflow).

    Args:
        logger: the Lightning logger to wrap (TensorBoardLogger, CSVLogger, MLFlowLogger, your own).
        rtol: relative tolerance when comparing a logged epoch value with its reference.
        atol: absolute tolerance for the same comparison.
        on_mismatch: ``"warn"`` (one warning per key per run, shown at your ``trainer.fit(...)`` line),
            ``"raise"`` (``lmlogger.MismatchError`` at the end of the epoch whose value mismatched, once the
            records are written and every logger has the epoch's values) or ``"ignore"``.
        reference_prefix: prefix of the reference metrics logged through the wrapped logger
            (``lmlogger/reference/f1`` for ``f1``). Named apart from the wrapped logger's own ``prefix``.
        functional_sample_cap: the most predictions the shadow of a torchmetrics functional metric that keeps
            every prediction (``binary_auroc``, ``binary_average_precision``: ``cat`` states) may hold per key
            and epoch; past it the key is ``unverified``. ``None`` (default): no cap, the shadow's memory is what
            the ``Metric`` itself would hold (see docs/performance.md).
        **deprecated: ``prefix=``, the old name of ``reference_prefix``: still accepted, with a
            ``DeprecationWarning``.

    Example:
        ```python
        from lightning.pytorch import Trainer
        from lightning.pytorch.loggers import TensorBoardLogger
        from lmlogger import VerifiedLogger

        trainer = Trainer(logger=VerifiedLogger(TensorBoardLogger("logs")))
        ```
    """

    # Names served by the wrapper itself; everything else is the wrapped logger's (see _transparent_class).
    _lml_logger: Logger

    # __new__ spells out __init__'s parameters because jsonargparse (LightningCLI) reads a class's
    # parameters from __new__ when the class defines one: `class_path: lmlogger.VerifiedLogger` in YAML.
    def __new__(
        cls,
        logger: Logger,
        *,
        rtol: float = 1e-4,
        atol: float = 1e-6,
        on_mismatch: Literal["warn", "raise", "ignore"] = "warn",
        reference_prefix: str = "lmlogger/reference/",
        functional_sample_cap: int | None = None,
        **deprecated: Any,
    ) -> VerifiedLogger:
        if not isinstance(logger, Logger):
            raise TypeError(
                f"VerifiedLogger wraps a `lightning.pytorch.loggers.Logger`, got {type(logger).__name__}. "
                "Example: VerifiedLogger(TensorBoardLogger('logs'))"
            )
        if isinstance(logger, VerifiedLogger):
            raise ValueError("This logger is already a VerifiedLogger: wrap the original logger once.")
        return object.__new__(_transparent_class(type(logger)))

    def __init__(
        self,
        logger: Logger,
        *,
        rtol: float = 1e-4,
        atol: float = 1e-6,
        on_mismatch: Literal["warn", "raise", "ignore"] = "warn",
        reference_prefix: str = "lmlogger/reference/",
        functional_sample_cap: int | None = None,
        **deprecated: Any,
    ) -> None:
        if on_mismatch not in _ON_MISMATCH:
            raise ValueError(f"VerifiedLogger(on_mismatch={on_mismatch!r}): expected one of {_ON_MISMATCH}.")
        for label, tol in (("rtol", rtol), ("atol", atol)):
            if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (math.isfinite(tol) and tol >= 0):
                raise ValueError(f"VerifiedLogger({label}={tol!r}): expected a finite number >= 0, e.g. {label}=1e-4.")
        reference_prefix = _renamed_prefix(reference_prefix, deprecated)
        if not isinstance(reference_prefix, str) or not reference_prefix:
            raise ValueError(f"VerifiedLogger(reference_prefix={reference_prefix!r}): expected a non-empty string.")
        d = self.__dict__
        d["_lml_logger"] = logger
        if functional_sample_cap is not None and (
            isinstance(functional_sample_cap, bool)
            or not isinstance(functional_sample_cap, int)
            or functional_sample_cap < 1
        ):
            raise ValueError(
                f"VerifiedLogger(functional_sample_cap={functional_sample_cap!r}): expected None or an integer >= 1, "
                "e.g. functional_sample_cap=1_000_000."
            )
        d["_lml_options"] = Options(float(rtol), float(atol), on_mismatch, reference_prefix, functional_sample_cap)
        d["_lml_session"] = None
        d["_lml_sink"] = None
        d["_lml_held"] = False  # whether this logger holds the seam (from run start to finalize)

    # -- transparency helpers ---------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not define: instance attributes of the wrapped logger.
        try:
            inner = self.__dict__["_lml_logger"]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_lml_"):
            self.__dict__[name] = value
        else:
            setattr(self._lml_logger, name, value)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The class is made at run time, so pickle (ddp_spawn, deepcopy) rebuilds through the public one.
        return (_rebuild, (self._lml_logger, self._lml_options))

    def __repr__(self) -> str:
        return f"VerifiedLogger({self._lml_logger!r})"

    @property
    def wrapped(self) -> Logger:
        """The logger this VerifiedLogger wraps."""
        return self._lml_logger

    @property
    def options(self) -> Options:
        """The verification settings."""
        return self._lml_options

    @property
    def sidecar_path(self) -> str | None:
        """Path of this run's ``lmlogger/provenance.jsonl`` (``None`` before the run starts)."""
        sink = self._lml_sink
        return sink.path if sink is not None else None

    # -- Logger API: each call goes to the wrapped logger first, exactly as without lmlogger --------
    @property
    def name(self) -> str | None:
        return self._lml_logger.name

    @property
    def version(self) -> int | str | None:
        return self._lml_logger.version

    @property
    def save_dir(self) -> str | None:
        return self._lml_logger.save_dir

    @property
    def root_dir(self) -> str | None:
        return self._lml_logger.root_dir

    @property
    def log_dir(self) -> str | None:
        return self._lml_logger.log_dir

    @property
    def experiment(self) -> Any:
        experiment = self._lml_logger.experiment
        caller = sys._getframe(1)
        if caller.f_code is _RUN_START_CODE:  # the start of a trainer run (see _RUN_START_CODE)
            self._lml_run_start(caller.f_locals.get("trainer"))
        return experiment

    @property
    def group_separator(self) -> str:
        return self._lml_logger.group_separator

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._lml_logger.log_hyperparams(params, *args, **kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._lml_logger.log_metrics(metrics, step)
        session = self._lml_session
        if session is not None and session.loggers[0] is self:
            session.on_log_metrics(metrics, step)
            session.callback.epoch_values_logged(metrics)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        # With enable_autolog_hparams (the default) Lightning calls log_graph(pl_module) at the start
        # of every run, on every rank: a second start signal, in case the first one was not seen.
        self._lml_logger.log_graph(model, input_array)
        self._lml_attach(model)

    def save(self) -> None:
        self._lml_logger.save()
        session = self._lml_session
        # Lightning calls log_metrics then save on each logger in turn: after the last one's save, every logger
        # has the epoch's values, and a mismatch of that epoch can be raised (on_mismatch="raise").
        if session is not None and session.callback.pending is not None and session.trainer.loggers[-1] is self:
            session.callback.raise_pending()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._lml_logger.after_save_checkpoint(checkpoint_callback)

    def finalize(self, status: str) -> None:
        try:
            self._lml_finish(status)
        finally:
            self._lml_logger.finalize(status)

    # -- lmlogger's own lifecycle --------------------------------------------------------------
    def report(self) -> AuditReport:
        """The `AuditReport` of this logger's run so far (read back from its sidecar)."""
        from lmlogger.audit import audit

        if self.sidecar_path is None:
            raise RuntimeError("This VerifiedLogger has not run yet: call it after trainer.fit/validate/test.")
        return audit(self._lml_sink.path, rtol=self.options.rtol, atol=self.options.atol)

    def _lml_hold(self) -> None:
        if not self._lml_held:
            _intercept.acquire()
            self._lml_held = True

    def _lml_release(self) -> None:
        if self._lml_held:
            self._lml_held = False
            _intercept.release()

    def _lml_run_start(self, trainer: Any) -> None:
        """A trainer run starts on this rank: attach, so that every rank holds a session (and so
        enters lmlogger's per-epoch collective) whatever the user logs where."""
        if trainer is None or not any(lg is self for lg in getattr(trainer, "loggers", ())):
            return
        if trainer.state.fn == TrainerFn.PREDICTING:  # self.log is not allowed in predict: nothing to verify
            return
        model = trainer.lightning_module
        if model is None:
            return
        try:
            self._lml_attach(model)
        except Exception as err:  # lmlogger's own failure never stops the run (nor hides in `hasattr`)
            self._lml_finish("failed")
            rank_zero_warn(
                f"lmlogger: internal error while starting to record this run ({type(err).__name__}: {err}). "
                "Training continues; lmlogger records nothing for this run."
            )

    def _lml_attach(self, model: Any) -> None:
        trainer = getattr(model, "_trainer", None)
        if trainer is None or self._lml_session is not None:
            return
        self._lml_hold()
        session = _intercept.session_for(trainer)
        if session is None:
            session = Session(trainer, model, self)
            session.start()
        elif self not in session.loggers:
            session.loggers.append(self)
        self._lml_session = session
        if rank_zero_only.rank == 0:
            try:
                sink = self._lml_sink
                if sink is None or sink.run_key() != _run_key(self._lml_logger):
                    sink = self._lml_sink = make_sink(self, trainer)
                stage = trainer.state.fn.value if trainer.state.fn is not None else "unknown"
                sink.begin(stage)
            except Exception as err:  # e.g. a tracking server that is down: training goes on, unrecorded
                self._lml_sink = None
                rank_zero_warn(
                    f"lmlogger: cannot record this run for {type(self._lml_logger).__name__} "
                    f"({type(err).__name__}: {err}). Training continues; lmlogger writes nothing for this logger."
                )

    def _lml_finish(self, status: str) -> None:
        """The run ends (Lightning's ``finalize``, on every rank, however the run ended)."""
        session = self._lml_session
        try:
            if session is None:
                return
            self.__dict__["_lml_session"] = None
            if self in session.loggers and all(lg._lml_session is None for lg in session.loggers):
                session.detach()
            sink = self._lml_sink
            if sink is not None and rank_zero_only.rank == 0:
                try:
                    sink.close(status)
                except Exception as err:
                    session._internal_error("closing the sidecar", err)
        finally:
            self._lml_release()

    def _emit(self, provenance: list[ProvenanceRecord], records: list[VerificationRecord], owner: Any) -> None:
        """Write one closed epoch's records (rank 0 only). Called by the session."""
        sink = self._lml_sink
        if sink is None or rank_zero_only.rank != 0:
            return
        sink.write(provenance, records)


def _run_key(logger: Logger) -> Any:
    try:
        return (logger.save_dir, logger.name, logger.version)
    except Exception:
        return None


def _rebuild(logger: Logger, options: Options) -> VerifiedLogger:
    return VerifiedLogger(
        logger,
        rtol=options.rtol,
        atol=options.atol,
        on_mismatch=options.on_mismatch,
        reference_prefix=options.reference_prefix,
        functional_sample_cap=options.functional_sample_cap,
    )


_DEFAULT_PREFIX = "lmlogger/reference/"


def _renamed_prefix(reference_prefix: str, deprecated: dict[str, Any]) -> str:
    """``reference_prefix``, or the value of its old name ``prefix`` (with a DeprecationWarning)."""
    unknown = sorted(set(deprecated) - {"prefix"})
    if unknown:
        raise TypeError(f"VerifiedLogger() got unexpected keyword argument(s): {', '.join(unknown)}")
    if "prefix" not in deprecated:
        return reference_prefix
    if reference_prefix != _DEFAULT_PREFIX:
        raise TypeError("VerifiedLogger(prefix=..., reference_prefix=...): give `reference_prefix` alone.")
    warnings.warn(
        "VerifiedLogger(prefix=...) is deprecated: use VerifiedLogger(reference_prefix=...). "
        "(`prefix` is also the name of the wrapped logger's own option.)",
        DeprecationWarning,
        stacklevel=3,  # the user's VerifiedLogger(...) call: _renamed_prefix <- __init__ <- the call
    )
    return deprecated["prefix"]


_classes: dict[type, type] = {}


def _transparent_class(base: type) -> type:
    """``VerifiedX(VerifiedLogger, X)`` for the wrapped logger's class ``X``, made once per class.

    Subclassing makes ``isinstance(wrapper, X)`` hold, which Lightning itself relies on
    (``trainer.log_dir`` and ``ModelCheckpoint`` test for TensorBoardLogger/CSVLogger). Every
    attribute of ``X`` that VerifiedLogger does not define is turned into a property that reads
    and writes the wrapped instance, so no method of ``X`` ever runs on the (stateless) wrapper.
    """
    cls = _classes.get(base)
    if cls is not None:
        return cls
    own = set()
    for klass in VerifiedLogger.__mro__:
        if klass is Logger:
            break
        own.update(vars(klass))
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": f"Verified{base.__name__}"}
    for name in dir(base):
        if name in own or (name.startswith("__") and name.endswith("__")) or name == "_abc_impl":
            continue
        namespace[name] = _delegate(name)
    cls = type(f"Verified{base.__name__}", (VerifiedLogger, base), namespace)
    _classes[base] = cls
    return cls


def _delegate(name: str) -> property:
    def fget(self: VerifiedLogger) -> Any:
        return getattr(self._lml_logger, name)

    def fset(self: VerifiedLogger, value: Any) -> None:
        setattr(self._lml_logger, name, value)

    return property(fget, fset, doc=f"The wrapped logger's `{name}`.")
