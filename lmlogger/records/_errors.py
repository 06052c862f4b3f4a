"""lmlogger's exception and its warnings, both shown where the user's code is, not lmlogger's."""

from __future__ import annotations

import sys
import warnings
from types import FrameType


class MismatchError(AssertionError):
    """Raised by ``VerifiedLogger(on_mismatch="raise")`` at the end of the epoch whose value mismatched,
    once the records are written and every logger has received the epoch's values."""


# Tracebacks and reprs name the public class, `lmlogger.MismatchError`, not this private module.
MismatchError.__module__ = "lmlogger"

# Packages whose frames are never "the user's code": lmlogger itself and the stack that calls it.
_LIBRARY_ROOTS = frozenset(
    {
        "lmlogger",
        "lightning",
        "lightning_fabric",
        "lightning_utilities",
        "pytorch_lightning",
        "torch",
        "torchmetrics",
        "jsonargparse",
        "contextlib",
        "functools",
        "warnings",
    }
)


def user_frame(start: FrameType | None = None) -> FrameType | None:
    """The innermost frame outside lmlogger, Lightning and torch: the user's ``trainer.fit(...)`` line (or
    ``LightningCLI(...)``, or the test that trains); ``None`` when there is none."""
    frame = start if start is not None else sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__") or ""
        if name.split(".", 1)[0] not in _LIBRARY_ROOTS:
            return frame
        frame = frame.f_back
    return None


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn with the location of the user's code that started the work (see `user_frame`), so that
    Python prints ``train.py:42: UserWarning: lmlogger: ...`` and the user's own source line."""
    frame = user_frame(sys._getframe(1))
    if frame is None:
        warnings.warn(message, category, stacklevel=2)
        return
    module_globals = frame.f_globals
    warnings.warn_explicit(
        message,
        category,
        filename=frame.f_code.co_filename,
        lineno=frame.f_lineno,
        module=module_globals.get("__name__"),
        registry=module_globals.setdefault("__warningregistry__", {}),
        module_globals=module_globals,
    )
