"""The one line lmlogger prints when a fit, validate or test ends: what it found and where to look.

It is Lightning's kind of line (``rank_zero_info``, beside "`Trainer.fit` stopped: `max_epochs=3` reached."),
printed once per stage and logger on rank 0, never a warning: each mismatched key has had its own warning at the
user's ``trainer.fit(...)`` line, so this line adds the counts and the places, not a second alarm.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from lmlogger.records._records import VERDICTS


def closing_line(
    report: Any,
    *,
    stage: str,
    run_dir: str,
    report_path: str | None,
    note: str | None = None,
) -> str:
    """``lmlogger (fit): 3 keys: 2 match, 1 mismatch. Report: <run>/lmlogger/report.html; `lmlogger audit <run>```.

    Args:
        report: the `AuditReport` of the run's sidecar (``None`` when it could not be read back).
        stage: ``fit``, ``validate`` or ``test``.
        run_dir: the directory ``lmlogger audit`` reads (for MLflow: the local copy of the records).
        report_path: the HTML page, or ``None`` when it was not written.
        note: one more sentence for a case the counts cannot say (e.g. lmlogger saw none of the ``self.log``
            calls of the keys the logger received).
    """
    head = f"lmlogger ({stage}): "
    if report is None:
        found = "the records could not be read back"
    else:
        counts = dict.fromkeys(VERDICTS, 0)
        keys = step_only = 0
        for run in report.runs:
            for key in run.keys:
                keys += 1
                if key.verdict is None:
                    step_only += 1
                else:
                    counts[key.verdict] += 1
        verified = keys - step_only
        parts = [f"{n} {verdict}" for verdict, n in counts.items() if n]
        if not keys:
            found = "no logged keys"
        else:
            found = f"{verified} key{'s' if verified != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")
            if step_only:
                found += f" (+{step_only} step-only, nothing to verify)"
    line = head + found + "."
    if note:
        line += f" {note}"
    where = [f"Report: {_display(report_path)}"] if report_path else []
    where.append(f"`lmlogger audit {shlex.quote(_display(run_dir))}`")
    return line + " " + "; ".join(where)


def _display(path: str) -> str:
    """A path as the user would type it from where they ran: relative below the working directory."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return rel if not rel.startswith("..") else os.path.abspath(path)
