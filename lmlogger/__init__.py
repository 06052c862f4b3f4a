"""lmlogger: verified epoch metrics for PyTorch Lightning.

Wrap any Lightning logger with :class:`VerifiedLogger`; every ``self.log`` value is classified by
provenance, each epoch value gets an independent reference, and :func:`audit` reads it all back.
"""

from lmlogger._errors import MismatchError
from lmlogger._logger import VerifiedLogger
from lmlogger.audit import AuditReport, audit

__all__ = ["AuditReport", "MismatchError", "VerifiedLogger", "audit"]
__version__ = "0.1.0"
