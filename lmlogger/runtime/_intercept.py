"""The one seam on Lightning: a wrapper of ``LightningModule.log``, in every Lightning namespace.

Lightning has no public hook that sees the *object* passed to ``self.log`` (loggers only receive
floats), so lmlogger wraps ``LightningModule.log`` at class level, in each namespace the process has
loaded (``lightning.pytorch`` and ``pytorch_lightning`` have distinct ``LightningModule`` classes; see
:mod:`lmlogger.runtime._lightning`). The wrapper:

* calls Lightning's own ``log`` first, so every user error surfaces exactly as without lmlogger;
* then, only for a trainer that has an active lmlogger session, hands the call to that session;
* is installed only while a run with a VerifiedLogger is in progress: reference counted and
  thread-safe, held from the run's start to its ``finalize`` (which Lightning calls however the run
  ends), so ``LightningModule.log`` is Lightning's own again as soon as the trainer call returns.

Our wrapper is recognised by identity, never by an attribute: ``functools.wraps`` copies a
function's ``__dict__``, so another library's wrapper of ours would carry any marker we set.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import TYPE_CHECKING, Any

from lmlogger.runtime import _lightning

if TYPE_CHECKING:
    from lmlogger.runtime._session import Session

_lock = threading.RLock()
_holders = 0


class _Seam:
    """lmlogger's wrapper on one namespace's ``LightningModule.log``."""

    __slots__ = ("cls", "original", "wrapper")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.wrapper: Any = None  # the function lmlogger installed (it may since have been wrapped by another library)
        self.original: Any = None  # what wrapper calls


# LightningModule class -> its seam (one per namespace)
_seams: dict[type, _Seam] = {}
# trainer -> session. Weak keys: a trainer that is garbage collected takes its session with it.
_sessions: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()
_live = 0  # sessions registered and not yet unregistered: the wrapper's one-global-read fast exit
_CHAIN_DEPTH = 32  # how far down a chain of ``__wrapped__`` wrappers to look for ours


def _make_wrapper(seam: _Seam, original: Any) -> Any:
    sessions = _sessions

    @functools.wraps(original)
    def log(self: Any, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        original(self, name, value, *args, **kwargs)
        if not _live or seam.wrapper is not log:  # no session, or a stale wrapper of ours: a pass-through
            return
        trainer = self._trainer
        if trainer is None:
            return
        session = sessions.get(trainer)
        if session is not None:
            session.observe(self, name, value, args, kwargs)

    return log


def _in_chain(cls: type, fn: Any) -> bool:
    """Whether ``fn`` is ``cls.log`` or is wrapped (``__wrapped__``) by it."""
    if fn is None:
        return False
    current = cls.__dict__.get("log")
    for _ in range(_CHAIN_DEPTH):
        if current is fn:
            return True
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return False
    return False


def _install(cls: type) -> None:
    seam = _seams.get(cls)
    if seam is None:
        seam = _seams[cls] = _Seam(cls)
    if not _in_chain(cls, seam.wrapper):
        seam.original = cls.__dict__["log"]
        seam.wrapper = _make_wrapper(seam, seam.original)
        cls.log = seam.wrapper


def acquire() -> None:
    """Install the wrapper on the ``LightningModule`` of every loaded namespace (idempotent; each call must be
    paired with one :func:`release`). A namespace first imported while a hold is on is covered by the next
    acquire, which every run start makes."""
    global _holders
    with _lock:
        for cls in _lightning.classes("LightningModule"):
            _install(cls)
        _holders += 1


def release() -> None:
    """Drop one hold; the last one restores Lightning's own ``LightningModule.log`` in every namespace.

    When another library has wrapped ``LightningModule.log`` on top of ours since, its wrapper stays
    installed (removing ours would remove it too); ours stays below it as a pass-through (no session
    is registered any more) and is reused by the next :func:`acquire`, so it is never stacked twice.
    """
    global _holders
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders:
            return
        for cls, seam in _seams.items():
            if seam.wrapper is not None and cls.__dict__.get("log") is seam.wrapper:
                cls.log = seam.original
                seam.wrapper = seam.original = None


def is_installed() -> bool:
    """Whether lmlogger's wrapper is part of ``LightningModule.log`` of any namespace (directly or below another
    wrapper)."""
    with _lock:
        return any(_in_chain(cls, seam.wrapper) for cls, seam in _seams.items())


def register(trainer: Any, session: Session) -> None:
    global _live
    with _lock:
        _sessions[trainer] = session
        _live = len(_sessions)


def unregister(trainer: Any) -> None:
    global _live
    with _lock:
        _sessions.pop(trainer, None)
        _live = len(_sessions)


def session_for(trainer: Any) -> Session | None:
    return _sessions.get(trainer)
