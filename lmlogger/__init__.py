"""lmlogger: verified epoch metrics for PyTorch Lightning.

Wrap any Lightning logger with `VerifiedLogger`; every `self.log` value is classified by provenance, each
epoch value gets an independent reference, and `audit` reads it all back.

`import lmlogger` stays light: `VerifiedLogger` (which needs torch and Lightning) is imported on first use,
so `lmlogger audit` and `lmlogger.audit(...)` run without loading the training stack.
"""

import typing as _typing

from lmlogger.audit import AuditReport, audit
from lmlogger.records._errors import MismatchError

if _typing.TYPE_CHECKING:
    from lmlogger.runtime._logger import VerifiedLogger

__all__ = ["AuditReport", "MismatchError", "VerifiedLogger", "audit"]
__version__ = "0.1.0"


def __getattr__(name: str) -> _typing.Any:
    # Only VerifiedLogger is lazy; any other unknown name is an AttributeError as usual.
    if name == "VerifiedLogger":
        from lmlogger.runtime._logger import VerifiedLogger

        globals()["VerifiedLogger"] = VerifiedLogger
        return VerifiedLogger
    raise AttributeError(f"module 'lmlogger' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
