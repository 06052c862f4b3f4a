"""TensorBoard additions: a text summary of provenance and verdicts, and a custom-scalars layout that
draws each logged epoch value with its reference.

The text summary (tag ``lmlogger/verification``, shown by TensorBoard as
``lmlogger/verification/text_summary``) is a markdown table, one row per key (mismatches first), with six
narrow columns: the verdict, the relative gap at the key's worst epoch so far, which epoch, both values.
How each key was logged (provenance, hook), its findings and its fix follow the table, one key per line,
so that no word is broken at TensorBoard's common widths.

The layout has two categories. *lmlogger: logged vs reference*: one multi-line chart per key, titled
with both tags it draws. TensorBoard colours lines by run, not by tag, so both lines share a colour;
the second category, *lmlogger: gap to the reference*, draws per key a margin chart whose line is
the reference and whose shaded band reaches the logged value: no band, no gap.
"""

from __future__ import annotations

import re
from typing import Any

from lmlogger.records._gap import format_gap, relative_gap, worst_epoch
from lmlogger.records._records import ProvenanceRecord, VerificationRecord, vouches_for
from lmlogger.runtime.sinks.generic import GenericSink, metric_prefix_of

TEXT_TAG = "lmlogger/verification"
DECISIONS_TAG = "lmlogger/decisions"
LAYOUT_CATEGORY = "lmlogger: logged vs reference"
GAP_CATEGORY = "lmlogger: gap to the reference"
HEADERS = ("key", "verdict", "gap", "epoch", "logged", "reference")
DETAILS = "**Per key**: provenance in hook; what the verdict vouches for; findings; fix"
REDUCTION_MARK = "`match*`: vouches only for the reduction (a plain tensor), not for what the values mean"
_ORDER = {"mismatch": 0, "unverified": 1, "match": 2}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _cell(text: str) -> str:
    """A markdown table cell: pipes escaped, no line break."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


class TensorBoardSink(GenericSink):
    """Sidecar + reference scalars + text table + custom-scalars layout."""

    def __init__(self, vlogger: Any, trainer: Any) -> None:
        super().__init__(vlogger, trainer)
        self.provenance: dict[str, ProvenanceRecord] = {}
        self.latest: dict[str, VerificationRecord] = {}
        self.worst: dict[str, VerificationRecord] = {}
        self.charted: set[str] = set()
        self.stored = metric_prefix_of(self.logger)  # TensorBoardLogger(prefix=...) renames the tags

    def write(self, provenance: list[ProvenanceRecord], records: list[VerificationRecord]) -> None:
        super().write(provenance, records)
        for record in provenance:
            self.provenance[record.key] = record
        for record in records:
            self.latest[record.key] = record
            earlier = self.worst.get(record.key)
            self.worst[record.key] = record if earlier is None else worst_epoch([earlier, record])
        if not records or not self.options.tracker_extras:
            return
        experiment = self.logger.experiment
        step = max((r.step for r in records if r.step is not None), default=0)
        experiment.add_text(TEXT_TAG, self.table(), global_step=step)
        keys = {r.key for r in records}
        if not keys <= self.charted:
            self.charted |= keys
            experiment.add_custom_scalars(self.layout())
        experiment.flush()

    def layout(self) -> dict[str, dict[str, list[Any]]]:
        """The custom-scalars layout for every key charted so far."""
        lines, gaps = {}, {}
        for key in sorted(self.charted):
            # the tags as TensorBoard stores them: TensorBoardLogger(prefix=...) is put before both
            logged, reference = self.stored + key, self.stored + self.prefix + key
            lines[f"{logged} (logged) vs {reference} (reference)"] = [
                "Multiline",
                [f"^{re.escape(logged)}$", f"^{re.escape(reference)}$"],
            ]
            gaps[f"{logged}: reference (line), gap to the logged value (band)"] = [
                "Margin",
                [reference, logged, reference],
            ]
        return {LAYOUT_CATEGORY: lines, GAP_CATEGORY: gaps}

    def write_decisions(self, records: list[Any], decisions: list[Any]) -> None:
        super().write_decisions(records, decisions)
        if not decisions or not self.options.tracker_extras:
            return
        step = max((r.step for r in records if r.step is not None), default=0)
        experiment = self.logger.experiment
        experiment.add_text(DECISIONS_TAG, decisions_table(decisions), global_step=step)
        experiment.flush()

    def table(self) -> str:
        """The markdown TensorBoard's text plugin renders: one row per key (its worst epoch so far, mismatches
        first), then one line per key saying how it was logged, its findings and its fix."""
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        details = []

        def order(key: str) -> tuple[int, str]:
            rec = self.worst.get(key)
            return (_ORDER.get(rec.verdict, 3) if rec else 3, key)

        for key in sorted(set(self.provenance) | set(self.latest), key=order):
            prov = self.provenance.get(key)
            rec = self.worst.get(key)
            verdict = rec.verdict if rec else "step only"
            cells = [
                key,
                f"**{verdict}**" if verdict == "mismatch" else _marked(verdict, prov),
                format_gap(relative_gap(rec.logged, rec.reference)) if rec else "-",
                f"{rec.phase} {rec.epoch}" if rec else "-",
                _fmt(rec.logged) if rec else "-",
                _fmt(rec.reference) if rec else "-",
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            latest = self.latest.get(key)
            fix = (latest.fix if latest is not None else None) or (rec.fix if rec is not None else None)
            found = sorted({f for r in (rec, latest) if r is not None for f in r.findings})
            line = f"* {_cell(key)}: " + (f"{prov.kind} in {prov.hook}" if prov else "-")
            if prov:
                line += f"; vouches for {vouches_for(prov.kind)}"
            if found:
                line += "; " + ", ".join(found)
            if fix:
                line += f"; fix: `` {fix} ``"
            details.append(line)
        if details:
            lines += ["", DETAILS, "", *details]
        if any("match*" in line for line in lines[2:]):
            lines += ["", REDUCTION_MARK]
        return "\n".join(lines)


def _marked(verdict: str, prov: Any) -> str:
    """``match*`` where the match vouches only for Lightning's reduction (a plain tensor)."""
    return (
        f"{verdict}*" if verdict == "match" and prov is not None and vouches_for(prov.kind) == "reduction" else verdict
    )


def decisions_table(decisions: list[Any]) -> str:
    """The decisions as a markdown table for TensorBoard's text plugin (one row per callback)."""
    lines = ["| callback | monitor | agree | monitor verdict | decision |", "|---|---|---|---|---|"]
    for d in decisions:
        agree = {True: "agree", False: "**disagree**", None: "unverified"}[d.agree]
        cells = [d.callback, d.monitor, agree, d.monitor_verdict or "-", d.message]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
