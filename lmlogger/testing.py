"""Helpers for your own test suite: fail a test when a run logged an epoch value that is not what it claims.

Example:
    ```python
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger
    from lmlogger import VerifiedLogger
    from lmlogger.testing import assert_verified

    def test_my_model_logs_true_epoch_metrics(tmp_path):
        trainer = Trainer(max_epochs=1, logger=VerifiedLogger(CSVLogger(tmp_path)))
        trainer.fit(MyModel(), train_loader)
        assert_verified(trainer)
    ```
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lmlogger.audit import AuditReport, KeyReport, audit
from lmlogger.records._records import FINDINGS

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

    from lmlogger.runtime._logger import VerifiedLogger

__all__ = ["assert_verified", "verified"]

#: At most this many epochs are listed per key in an assertion message.
_EPOCHS_SHOWN = 3


def assert_verified(
    target: Any,
    *,
    allow_unverified: bool = True,
    tracking_uri: str | None = None,
) -> AuditReport:
    """Fail with a readable message when a run has a mismatched (or, optionally, unverified) key.

    Args:
        target: what to check: a ``Trainer`` (every `VerifiedLogger` among its loggers),
            a `VerifiedLogger`, an `AuditReport`, or what `lmlogger.audit` accepts (a run dir, a folder of
            runs, ``runs:/<run_id>``, or a checkpoint file saved during a verified run, e.g.
            ``checkpoint_callback.best_model_path``).
        allow_unverified: when ``False``, a key with no trustworthy reference fails the check too.
        tracking_uri: MLflow tracking URI, for a ``runs:/<run_id>`` target.

    Returns:
        The `AuditReport` that was checked, for further assertions.

    Raises:
        AssertionError: a key mismatched (or was unverified with ``allow_unverified=False``), or lmlogger saw
            none of the run's ``self.log`` calls (nothing was verified). The message lists each such key with its
            logged and reference values, finding and fix.
        ValueError: the trainer has no VerifiedLogger, or the VerifiedLogger has not run yet.
        TypeError: ``target`` is none of the above.

    Example:
        ```python
        trainer.fit(model, loader)
        report = assert_verified(trainer)
        assert report.by_key()["val_f1"].verdict == "match"
        assert_verified(trainer.checkpoint_callback.best_model_path)  # kept on a right number?
        ```
    """
    report = _report_of(target, tracking_uri)
    bad = {"mismatch"} if allow_unverified else {"mismatch", "unverified"}
    failing = [(run.source, key) for run in report.runs for key in run.keys if key.verdict in bad]
    if failing:
        raise AssertionError(_message(report, failing, allow_unverified))
    blind = [run for run in report.runs if run.blind]
    if blind:  # nothing was verified: never a pass, whatever allow_unverified says
        raise AssertionError("\n".join(f"run {run.source}: {run.problems[0]}" for run in blind))
    return report


@contextmanager
def verified(logger: Logger, *, allow_unverified: bool = True, **options: Any) -> Iterator[VerifiedLogger]:
    """Wrap ``logger`` for the duration of a ``with`` block and check the run when the block ends.

    On a clean exit the run is checked with `assert_verified`; the wrapper's hold on
    ``LightningModule.log`` is released either way, so nothing stays patched after the block.

    Args:
        logger: the Lightning logger to wrap.
        allow_unverified: passed to `assert_verified`.
        **options: `VerifiedLogger` options (``rtol``, ``atol``, ``on_mismatch``,
            ``reference_prefix``);
            ``on_mismatch`` defaults to ``"ignore"`` here: the check at the end reports every key at once.

    Example:
        ```python
        with verified(CSVLogger(tmp_path)) as logger:
            Trainer(max_epochs=1, logger=logger).fit(model, loader)
        ```
    """
    from lmlogger.runtime._logger import VerifiedLogger

    options.setdefault("on_mismatch", "ignore")
    vlogger = VerifiedLogger(logger, **options)
    try:
        yield vlogger
        assert_verified(vlogger, allow_unverified=allow_unverified)
    finally:
        vlogger._lml_release()


def _report_of(target: Any, tracking_uri: str | None) -> AuditReport:
    if isinstance(target, AuditReport):
        return target
    if isinstance(target, (str, os.PathLike)):
        return audit(target, tracking_uri=tracking_uri)
    from lmlogger.runtime._logger import VerifiedLogger

    if isinstance(target, VerifiedLogger):
        return _logger_report(target)
    loggers = getattr(target, "loggers", None)
    if isinstance(loggers, list) and hasattr(target, "fit"):
        verified_loggers = [lg for lg in loggers if isinstance(lg, VerifiedLogger)]
        if not verified_loggers:
            raise ValueError(
                "assert_verified(trainer): the trainer has no VerifiedLogger among its loggers "
                f"({', '.join(type(lg).__name__ for lg in loggers) or 'none'}). "
                "Wrap one: Trainer(logger=VerifiedLogger(CSVLogger('logs')))"
            )
        report = AuditReport()
        for lg in verified_loggers:
            report.runs.extend(_logger_report(lg).runs)
        return report
    raise TypeError(
        "assert_verified() takes a Trainer, a VerifiedLogger, an AuditReport or a run path, "
        f"got {type(target).__name__}"
    )


def _logger_report(logger: VerifiedLogger) -> AuditReport:
    try:
        return logger.report()
    except RuntimeError as err:
        raise ValueError(f"assert_verified: {err}") from None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _message(report: AuditReport, failing: list[tuple[str, KeyReport]], allow_unverified: bool) -> str:
    s = report.summary
    what = "mismatch" if allow_unverified else "mismatch or unverified"
    lines = [
        f"lmlogger: {len(failing)} key(s) {what} "
        f"({s['match']} match, {s['mismatch']} mismatch, {s['unverified']} unverified)"
    ]
    source = None
    for run_source, key in failing:
        if run_source != source:
            source = run_source
            lines.append(f"run {source}:")
        lines.append(f"  {key.key}: {key.verdict} ({key.provenance} logged from {key.hook})")
        bad = [e for e in key.epochs if e.verdict == key.verdict]
        for epoch in bad[:_EPOCHS_SHOWN]:
            sign = "!=" if epoch.verdict == "mismatch" else "vs"
            lines.append(
                f"    {epoch.phase} epoch {epoch.epoch}: logged {_num(epoch.logged)} {sign} "
                f"reference {_num(epoch.reference)}"
            )
        if len(bad) > _EPOCHS_SHOWN:
            lines.append(f"    ... and {len(bad) - _EPOCHS_SHOWN} more epoch(s)")
        for code in key.findings:
            lines.append(f"    finding {code}: {FINDINGS.get(code, '')}".rstrip(": "))
        if key.reason and key.verdict == "unverified":
            lines.append(f"    reason: {key.reason}")
        if key.fix:
            lines.append(f"    fix: {key.fix}")
    for run in report.runs:
        for decision in run.decisions:
            if decision.monitor_verdict == "mismatch" or decision.agree is False:
                lines.append(f"decision ({run.source}): {decision.message}")
    return "\n".join(lines)
