"""How far a logged epoch value is from its reference, and which epoch shows it best (pure Python).

A key's verdict is its worst epoch; the headline of every view (table, HTML, TensorBoard text, MLflow tag)
shows that epoch and its relative gap, so that the size of the bug is what a reader sees first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

from lmlogger.records._records import VERDICT_RANK

E = TypeVar("E")


def relative_gap(logged: float | None, reference: float | None) -> float | None:
    """``|logged - reference| / |reference|``; ``None`` when either is missing.

    The same rule as the audit's ``EpochReport.gap``: 0 when both are NaN or the same infinity, ``inf`` when
    only one is NaN or infinite, or when the reference is 0 and the logged value is not.
    """
    if logged is None or reference is None:
        return None
    if math.isnan(logged) or math.isnan(reference):
        return 0.0 if math.isnan(logged) and math.isnan(reference) else math.inf
    if math.isinf(logged) or math.isinf(reference):
        return 0.0 if logged == reference else math.inf
    diff = abs(logged - reference)
    if diff == 0:
        return 0.0
    return diff / abs(reference) if reference != 0 else math.inf


def worst_epoch(entries: Iterable[E]) -> E | None:
    """The entry with the worst verdict and, among those, the largest relative gap (the latest on ties, as the
    audit's ``KeyReport.worst_epoch``).

    ``entries`` are any objects with ``verdict``, ``logged`` and ``reference`` (audit ``EpochReport``s,
    runtime ``VerificationRecord``s).
    """
    best: Any = None
    best_rank: tuple[int, float] | None = None
    for entry in entries:
        gap = relative_gap(entry.logged, entry.reference)  # type: ignore[attr-defined]
        rank = (VERDICT_RANK.get(entry.verdict, 0), -1.0 if gap is None else gap)  # type: ignore[attr-defined]
        if best_rank is None or rank >= best_rank:
            best, best_rank = entry, rank
    return best


def format_gap(gap: float | None) -> str:
    """``"18%"``, ``"0.21%"``, ``"119%"``, ``"<0.01%"``, ``"inf"``; ``"-"`` when there is none.

    The one formatter of a gap: the table, markdown, HTML, TensorBoard, MLflow tags and the runtime warning all
    print a gap with it. Two significant digits below 10%, whole percents from there (never ``1e+02%``).
    """
    if gap is None:
        return "-"
    if math.isinf(gap):
        return "inf"
    percent = gap * 100
    if percent == 0:
        return "0%"
    if gap < 1e-4:
        return "<0.01%"
    return f"{percent:.2g}%" if percent < 9.95 else f"{percent:.0f}%"
