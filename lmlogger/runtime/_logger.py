"""``VerifiedLogger``: a drop-in wrapper of any Lightning logger."""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union

from lightning_utilities.core.rank_zero import rank_zero_only, rank_zero_warn

from lmlogger.records._errors import warn_user
from lmlogger.records._records import ProvenanceRecord, VerificationRecord
from lmlogger.records._verify import DEFAULT_ATOL, DEFAULT_RTOL
from lmlogger.runtime import _intercept, _lightning
from lmlogger.runtime._session import Session

if TYPE_CHECKING:
    from lmlogger.audit import AuditReport
from lmlogger.runtime.sinks import make_sink

_ON_MISMATCH = ("warn", "raise", "ignore")
# VerifiedLogger derives from the Logger of the preferred installed namespace (lightning.pytorch, else
# pytorch_lightning); the class made for each wrapped logger also derives from that logger's own class, so
# isinstance holds in the logger's namespace (see _transparent_class).
Logger = _lightning.primary().Logger
# rank_zero_only/rank_zero_warn come from lightning_utilities: both namespaces re-export these same objects,
# and the strategies of both set the one `rank_zero_only.rank`.


def _run_start_codes() -> frozenset[Any]:
    """Lightning's `_call_setup_hook(trainer)` reads `logger.experiment` of every logger, on every rank, at the
    start of every fit/validate/test/predict, before any hook can `self.log` (and whatever
    `enable_autolog_hparams` says, unlike `log_graph`). Recognised by its code object (one per loaded
    namespace), so a user's own `logger.experiment` is never taken for the start of a run."""
    return frozenset(ns.run_start_code for ns in _lightning.loaded())


@dataclass(frozen=True)
class Options:
    """Settings of a `VerifiedLogger` (see its docstring)."""

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    on_mismatch: str = "warn"
    reference_prefix: str = "lmlogger/reference/"
    reference_metrics: bool = True
    tracker_extras: bool = True
    html_report: bool = True
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
        reference_metrics: log each epoch's reference values through the wrapped logger (its own
            ``log_metrics(metrics=..., step=...)`` and ``save()``, once per closed epoch). ``False``: the
            wrapped logger receives exactly the calls Lightning makes; the references stay in the sidecar.
        tracker_extras: what lmlogger adds to the backend beside the metrics: TensorBoard's text summary and
            custom-scalars layout, MLflow's ``lmlogger.*`` tags and ``lmlogger/`` artifacts (the sidecar and
            the HTML report, uploaded when the run ends), the files added to a W&B run. ``False``: none of them.
        html_report: write ``lmlogger/report.html`` beside the sidecar when the run ends (``False``: the
            page is still one ``lmlogger audit RUN --format html`` away).
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
        logger: AnyLogger,
        *,
        rtol: float = 1e-4,
        atol: float = 1e-6,
        on_mismatch: Literal["warn", "raise", "ignore"] = "warn",
        reference_prefix: str = "lmlogger/reference/",
        reference_metrics: bool = True,
        tracker_extras: bool = True,
        html_report: bool = True,
        functional_sample_cap: int | None = None,
        **deprecated: Any,
    ) -> VerifiedLogger:
        if isinstance(logger, VerifiedLogger):
            raise ValueError(
                f"VerifiedLogger({logger!r}): this logger is already a VerifiedLogger; wrap the original logger "
                "once (pass it to the Trainer as it is)."
            )
        accept_loaded_namespaces()
        if not isinstance(logger, _accepted[0]):
            raise TypeError(_refusal(logger))
        return object.__new__(_transparent_class(type(logger)))

    def __init__(
        self,
        logger: AnyLogger,
        *,
        rtol: float = 1e-4,
        atol: float = 1e-6,
        on_mismatch: Literal["warn", "raise", "ignore"] = "warn",
        reference_prefix: str = "lmlogger/reference/",
        reference_metrics: bool = True,
        tracker_extras: bool = True,
        html_report: bool = True,
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
        switches = {
            "reference_metrics": reference_metrics,
            "tracker_extras": tracker_extras,
            "html_report": html_report,
        }
        for label, switch in switches.items():
            if not isinstance(switch, bool):
                raise ValueError(f"VerifiedLogger({label}={switch!r}): expected True or False.")
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
        d["_lml_options"] = Options(
            float(rtol),
            float(atol),
            on_mismatch,
            reference_prefix,
            functional_sample_cap=functional_sample_cap,
            **switches,
        )
        d["_lml_session"] = None
        d["_lml_sink"] = None
        d["_lml_held"] = False  # whether this logger holds the seam (from run start to finalize)
        d["_lml_unseen_warned"] = False
        d["_lml_ran"] = False  # whether a trainer run ever started with this logger

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
        # Fabric loggers (LitLogger, lightning.fabric's TensorBoard/CSV loggers) have no save_dir.
        return getattr(self._lml_logger, "save_dir", None)

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
        code = caller.f_code
        if code.co_name == "_call_setup_hook" and code in _run_start_codes():  # a run starts (see _run_start_codes)
            self._lml_run_start(caller.f_locals.get("trainer"))
        return experiment

    @property
    def group_separator(self) -> str:
        return self._lml_logger.group_separator

    # Each method forwards the call exactly as it was made (the same positional and keyword arguments, nothing
    # added), so a spy reading ``call.kwargs["metrics"]`` or an override with its own parameter order sees what
    # Lightning passed; lmlogger reads what it needs from the call by name (see _argument).
    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        self._lml_logger.log_hyperparams(*args, **kwargs)

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        self._lml_logger.log_metrics(*args, **kwargs)
        session = self._lml_session
        metrics = _argument(args, kwargs, 0, "metrics")
        if not isinstance(metrics, Mapping):
            return
        step = _argument(args, kwargs, 1, "step")
        if session is not None:
            session.coverage.received(self, metrics, step, sys._getframe(1))  # keys that did not come from self.log
            if session.loggers[0] is self:
                session.on_log_metrics(metrics, step)
                session.callback.epoch_values_logged(metrics)
        elif not self._lml_unseen_warned and not self._lml_ran and metrics:
            self._lml_unseen_warned = True  # never silent: values arrive, but lmlogger never saw a run start
            warn_user(
                f"lmlogger: {type(self._lml_logger).__name__} received {', '.join(map(repr, list(metrics)[:5]))} "
                "but lmlogger never saw a trainer run start with this VerifiedLogger, so nothing is verified. "
                f"lmlogger follows the Trainer of {_lightning.names()} (fit/validate/test)."
            )

    def log_graph(self, *args: Any, **kwargs: Any) -> None:
        # With enable_autolog_hparams (the default) Lightning calls log_graph(pl_module) at the start
        # of every run, on every rank: a second start signal, in case the first one was not seen.
        self._lml_logger.log_graph(*args, **kwargs)
        model = _argument(args, kwargs, 0, "model")
        if model is not None:
            self._lml_attach(model)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._lml_logger.save(*args, **kwargs)
        session = self._lml_session
        # Lightning calls log_metrics then save on each logger in turn: after the last one's save, every logger
        # has the epoch's values, and a mismatch of that epoch can be raised (on_mismatch="raise").
        if session is not None and session.callback.pending is not None and session.trainer.loggers[-1] is self:
            session.callback.raise_pending()

    def after_save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self._lml_logger.after_save_checkpoint(*args, **kwargs)

    def finalize(self, *args: Any, **kwargs: Any) -> None:
        status = _argument(args, kwargs, 0, "status")
        try:
            self._lml_finish(status if isinstance(status, str) else "finished")
        finally:
            self._lml_logger.finalize(*args, **kwargs)

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
        fn = trainer.state.fn
        if fn is not None and fn.value == "predict":  # self.log is not allowed in predict: nothing to verify
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
        self._lml_ran = True
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
            try:
                session.coverage.finish()  # keys that reached the logger without self.log, written before the close
            except Exception as err:
                session._internal_error("recording the keys lmlogger did not see", err)
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


def accept_loaded_namespaces() -> None:
    """Make VerifiedLogger a Logger of every loaded namespace, for LightningCLI (idempotent, cheap).

    jsonargparse checks ``class_path: lmlogger.VerifiedLogger`` against the Trainer's ``logger`` type (the
    ``Logger`` of its own namespace) and the nested ``logger`` against VerifiedLogger's annotation, before any
    Trainer runs. VerifiedLogger is registered as a virtual subclass of each loaded namespace's ``Logger`` (it
    implements that interface), and ``AnyLogger``, the annotation of its ``logger`` parameter (read when the
    parser is built), becomes the union of them. Called when this module is imported and by every
    ``VerifiedLogger(...)``: a script run by ``pytorch_lightning.cli`` imports ``pytorch_lightning`` before
    ``lmlogger`` (or leaves ``lmlogger.VerifiedLogger`` to the YAML ``class_path``), so that the first lookup
    finds the namespace loaded.
    """
    global AnyLogger
    bases = _lightning.logger_bases()
    if bases == _accepted[0]:
        return
    for base in bases:
        if not issubclass(VerifiedLogger, base):
            base.register(VerifiedLogger)
    _accepted[0] = bases
    AnyLogger = Union[bases]  # noqa: UP007 (a union built from a tuple of classes)


_accepted: list[tuple[type, ...]] = [()]
#: What ``VerifiedLogger(logger)`` accepts, as a type: the Logger (and fabric Logger) of every loaded namespace.
AnyLogger: Any = Logger
accept_loaded_namespaces()


def _refusal(logger: Any) -> str:
    """Why ``logger`` cannot be wrapped: what was given, what is accepted, and what to do."""
    if isinstance(logger, type):
        return (
            f"VerifiedLogger(logger) takes a logger instance, got the class `{logger.__module__}.{logger.__qualname__}`"
            f": create the logger first, e.g. VerifiedLogger({logger.__qualname__}(...))."
        )
    accepted = ", ".join(f"`{_public_name(base)}`" for base in _lightning.logger_bases())
    return (
        f"VerifiedLogger(logger) wraps a Lightning logger (a subclass of {accepted}); got {_shown(logger)}, "
        "which is none of them. A logger of your own derives from one of these (the Logger of the namespace its "
        "Trainer comes from, usually)."
    )


def _shown(obj: Any) -> str:
    """What was given, as a user recognises it: ``'logs' (a str)``, ``a mypkg.MyLogger``."""
    cls = type(obj)
    if cls.__module__ == "builtins":
        text = repr(obj)
        return f"{text if len(text) <= 40 else text[:37] + '...'} (a {cls.__qualname__})"
    return f"a `{cls.__module__}.{cls.__qualname__}`"


def _public_name(cls: type) -> str:
    """``lightning.pytorch.loggers.Logger`` for the class defined in ``lightning.pytorch.loggers.logger``."""
    return f"{cls.__module__.rsplit('.', 1)[0]}.{cls.__qualname__}"


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    """The argument of Lightning's ``Logger`` method at ``index`` / named ``name`` in a call as it was made."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


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
        reference_metrics=options.reference_metrics,
        tracker_extras=options.tracker_extras,
        html_report=options.html_report,
        functional_sample_cap=options.functional_sample_cap,
    )


_DEFAULT_PREFIX = "lmlogger/reference/"


def _renamed_prefix(reference_prefix: str, deprecated: dict[str, Any]) -> str:
    """``reference_prefix``, or the value of its old name ``prefix`` (with a DeprecationWarning)."""
    unknown = sorted(set(deprecated) - {"prefix"})
    if unknown:
        raise TypeError(
            f"VerifiedLogger() got unexpected keyword argument(s): {', '.join(unknown)}; it takes the logger to wrap "
            "and rtol, atol, on_mismatch, reference_prefix (the wrapped logger's own options go to that logger)."
        )
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
