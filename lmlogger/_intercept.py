"""The one seam on Lightning: a wrapper of ``LightningModule.log``.

Lightning has no public hook that sees the *object* passed to ``self.log`` (loggers only receive
floats), so lmlogger wraps ``LightningModule.log`` at class level. The wrapper:

* calls Lightning's own ``log`` first, so every user error surfaces exactly as without lmlogger;
* then, only for a trainer that has an active lmlogger session, hands the call to that session;
* is installed once (reference counted, thread-safe) and restored when the last holder releases it.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import TYPE_CHECKING, Any

from lightning.pytorch import LightningModule

if TYPE_CHECKING:
    from lmlogger._session import Session

_lock = threading.RLock()
_holders = 0
_original: Any = None
# trainer -> session. Weak keys: a trainer that is garbage collected takes its session with it.
_sessions: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


def _make_wrapper(original: Any) -> Any:
    sessions = _sessions

    @functools.wraps(original)
    def log(self: LightningModule, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        original(self, name, value, *args, **kwargs)
        trainer = self._trainer
        if trainer is None:
            return
        session = sessions.get(trainer)
        if session is None:
            session = _late_attach(self, trainer)
            if session is None:
                return
        session.observe(self, name, value, args, kwargs)

    log.__lmlogger_wrapper__ = True  # type: ignore[attr-defined]
    return log


def _late_attach(module: LightningModule, trainer: Any) -> Session | None:
    """Attach a VerifiedLogger that missed the start of the run (``Trainer(enable_autolog_hparams=False)``
    skips ``log_graph``, where VerifiedLogger normally attaches)."""
    for logger in getattr(trainer, "loggers", ()):
        attach = getattr(type(logger), "_lml_attach", None)
        if attach is not None:
            attach(logger, module, late=True)
    return _sessions.get(trainer)


def acquire() -> None:
    """Install the wrapper (idempotent; each call must be paired with one :func:`release`)."""
    global _holders, _original
    with _lock:
        if _holders == 0:
            current = LightningModule.log
            if getattr(current, "__lmlogger_wrapper__", False):  # left by an earlier import of this module
                current = current.__wrapped__
            _original = current
            LightningModule.log = _make_wrapper(current)  # type: ignore[method-assign]
        _holders += 1


def release() -> None:
    """Drop one hold; the last one restores Lightning's own ``LightningModule.log``."""
    global _holders, _original
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders == 0:
            if getattr(LightningModule.log, "__lmlogger_wrapper__", False):
                LightningModule.log = _original  # type: ignore[method-assign]
            # else: someone patched on top of us; our wrapper stays a pass-through (no sessions left).
            _original = None


def is_installed() -> bool:
    """Whether ``LightningModule.log`` is currently wrapped by lmlogger."""
    return getattr(LightningModule.log, "__lmlogger_wrapper__", False)


def register(trainer: Any, session: Session) -> None:
    with _lock:
        _sessions[trainer] = session


def unregister(trainer: Any) -> None:
    with _lock:
        _sessions.pop(trainer, None)


def session_for(trainer: Any) -> Session | None:
    return _sessions.get(trainer)
