"""Decisions in the audit: the sidecar's ``decision`` records replayed (the same replays as the runtime's)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from lmlogger.audit._model import RunReport
from lmlogger.records._records import DecisionRecord
from lmlogger.records._replay import replay_records

FINDING = "decision-on-mismatch"


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def apply_decisions(report: RunReport, records: list[Any]) -> None:
    """Fill ``report.decisions`` from ``records`` and mark each monitored key that a callback acted on in an
    epoch whose value was mismatched with ``decision-on-mismatch`` (the key and that epoch)."""
    reads = [r for r in records if isinstance(r, DecisionRecord)]
    if not reads:
        return
    keys = {k.key: k for k in report.keys}
    judged = []
    for read in reads:
        if read.state:  # seeds a resumed run's replays: no read of its own
            judged.append(read)
            continue
        key = keys.get(read.key) if read.key is not None else None
        epoch = None
        if key is not None:
            epoch = next((e for e in key.epochs if e.epoch == read.epoch and _same(e.logged, read.logged)), None)
            epoch = epoch or next((e for e in reversed(key.epochs) if _same(e.logged, read.logged)), None)
        if epoch is not None and epoch.verdict != read.verdict:  # re-judged with other tolerances
            read = dataclasses.replace(read, verdict=epoch.verdict)
        judged.append(read)
        if read.verdict == "mismatch" and key is not None:
            if FINDING not in key.findings:
                key.findings.append(FINDING)
            if epoch is not None and FINDING not in epoch.findings:
                epoch.findings.append(FINDING)
    report.decisions = replay_records(judged)
