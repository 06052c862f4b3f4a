"""pytest plugin for ``benchmarks/lightning_logger_tests.py``: every logger handed to a ``Trainer`` is wrapped.

Loaded with ``-p _peer_plugin`` when ``LMLOGGER_PEER_WRAP=1``: ``Trainer(logger=...)`` (one logger or a list)
gets ``VerifiedLogger(logger)`` for each ``Logger`` instance; anything else (``True``, ``False``, a mock that
is not a ``Logger``) is left as it is. ``LMLOGGER_PEER_OFF=1`` switches lmlogger's additions off
(``reference_metrics``, ``tracker_extras``, ``html_report``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

if os.environ.get("LMLOGGER_PEER_WRAP") == "1":
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import _LoggerConnector

    from lmlogger import VerifiedLogger

    _original = _LoggerConnector.configure_logger
    _OFF = os.environ.get("LMLOGGER_PEER_OFF") == "1"

    def _wrap(logger: Any) -> Any:
        if isinstance(logger, Logger) and not isinstance(logger, VerifiedLogger):
            if _OFF:
                return VerifiedLogger(
                    logger, on_mismatch="ignore", reference_metrics=False, tracker_extras=False, html_report=False
                )
            return VerifiedLogger(logger, on_mismatch="ignore")
        return logger

    def configure_logger(self: Any, logger: Any) -> None:
        if isinstance(logger, Logger):
            logger = _wrap(logger)
        elif isinstance(logger, Iterable) and not isinstance(logger, (str, bytes)):
            logger = [_wrap(lg) for lg in logger]
        _original(self, logger)

    _LoggerConnector.configure_logger = configure_logger  # type: ignore[method-assign]
