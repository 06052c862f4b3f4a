"""TensorBoard additions: a text summary of provenance and verdicts, and a custom-scalars layout
that draws each logged epoch value with its reference in one chart."""

from __future__ import annotations

from typing import Any

from lmlogger._records import ProvenanceRecord, VerificationRecord
from lmlogger.sinks.generic import GenericSink, metric_prefix_of

TEXT_TAG = "lmlogger/verification"
DECISIONS_TAG = "lmlogger/decisions"
LAYOUT_CATEGORY = "lmlogger: logged vs reference"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


class TensorBoardSink(GenericSink):
    """Sidecar + reference scalars + text table + custom-scalars layout."""

    def __init__(self, vlogger: Any, trainer: Any) -> None:
        super().__init__(vlogger, trainer)
        self.provenance: dict[str, ProvenanceRecord] = {}
        self.latest: dict[str, VerificationRecord] = {}
        self.charted: set[str] = set()
        self.stored = metric_prefix_of(self.logger)  # TensorBoardLogger(prefix=...) renames the tags

    def write(self, provenance: list[ProvenanceRecord], records: list[VerificationRecord]) -> None:
        super().write(provenance, records)
        for record in provenance:
            self.provenance[record.key] = record
        for record in records:
            self.latest[record.key] = record
        experiment = self.logger.experiment
        if not records:
            return
        step = max((r.step for r in records if r.step is not None), default=0)
        experiment.add_text(TEXT_TAG, self.table(), global_step=step)
        keys = {r.key for r in records}
        if not keys <= self.charted:
            self.charted |= keys
            layout = {
                LAYOUT_CATEGORY: {
                    key: [
                        "Multiline",
                        [f"^{_escape(self.stored + key)}$", f"^{_escape(self.stored + self.prefix + key)}$"],
                    ]
                    for key in sorted(self.charted)
                }
            }
            experiment.add_custom_scalars(layout)
        experiment.flush()

    def write_decisions(self, records: list[Any], decisions: list[Any]) -> None:
        super().write_decisions(records, decisions)
        if not decisions:
            return
        step = max((r.step for r in records if r.step is not None), default=0)
        experiment = self.logger.experiment
        experiment.add_text(DECISIONS_TAG, decisions_table(decisions), global_step=step)
        experiment.flush()

    def table(self) -> str:
        """The markdown table TensorBoard's text plugin renders."""
        lines = [
            "| key | provenance | hook | logged | reference | verdict | findings | fix |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key in sorted(set(self.provenance) | set(self.latest)):
            prov = self.provenance.get(key)
            rec = self.latest.get(key)
            lines.append(
                "| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                    key,
                    prov.kind if prov else "-",
                    prov.hook if prov else "-",
                    _fmt(rec.logged) if rec else "-",
                    _fmt(rec.reference) if rec else "-",
                    rec.verdict if rec else "step only",
                    ", ".join(rec.findings) if rec and rec.findings else "",
                    (rec.fix or "").replace("|", "\\|") if rec else "",
                )
            )
        return "\n".join(lines)


def decisions_table(decisions: list[Any]) -> str:
    """The decisions as a markdown table for TensorBoard's text plugin (one row per callback)."""
    lines = ["| callback | monitor | agree | monitor verdict | decision |", "|---|---|---|---|---|"]
    for d in decisions:
        agree = {True: "agree", False: "**disagree**", None: "unverified"}[d.agree]
        cells = [d.callback, d.monitor, agree, d.monitor_verdict or "-", d.message]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _escape(key: str) -> str:
    import re

    return re.escape(key)
