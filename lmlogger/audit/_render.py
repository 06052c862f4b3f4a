"""Rendering an :class:`AuditReport`: ``table`` (terminal), ``markdown`` (CI summaries), ``json``."""

from __future__ import annotations

import json

from lmlogger.audit._model import AuditReport, KeyReport


def to_json(report: AuditReport) -> str:
    """Strict JSON (NaN and infinities are strings; ``allow_nan=False`` guarantees it)."""
    return json.dumps(report.to_dict(), indent=2, allow_nan=False)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _rows(report: AuditReport) -> list[tuple[str, list[list[str]], list[str], bool, str]]:
    out = []
    for run in report.runs:
        rows = []
        for key in run.keys:
            rows.append(_row(key))
        state = "complete" if run.complete else "INCOMPLETE (the run never closed: killed or crashed)"
        out.append((run.source, rows, run.problems, run.complete, f"{run.backend}, {state}"))
    return out


def _row(key: KeyReport) -> list[str]:
    last = key.epochs[-1] if key.epochs else None
    return [
        key.key,
        key.provenance,
        key.hook,
        _num(last.logged) if last else "-",
        _num(last.reference) if last else "-",
        key.verdict or "step only",
        ", ".join(key.findings),
        key.fix or (key.reason or ""),
    ]


HEADERS = ["key", "provenance", "hook", "logged", "reference", "verdict", "finding", "fix"]


def to_markdown(report: AuditReport) -> str:
    s = report.summary
    lines = [
        "## lmlogger audit",
        "",
        f"**{s['match']} match, {s['mismatch']} mismatch, {s['unverified']} unverified**",
        "",
    ]
    for source, rows, problems, _complete, state in _rows(report):
        lines += [f"### `{source}` ({state})", ""]
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "---|" * len(HEADERS))
        for row in rows:
            cells = [c.replace("|", "\\|") for c in row]
            cells[0] = f"`{cells[0]}`"
            if row[7] and row[5] == "mismatch":
                cells[7] = f"`{cells[7]}`"
            if row[5] == "mismatch":
                cells[5] = "**mismatch**"
            lines.append("| " + " | ".join(cells) + " |")
        for problem in problems:
            lines.append(f"- store check: {problem}")
        lines.append("")
    return "\n".join(lines)


_COLOURS = {"match": "green", "mismatch": "bold red", "unverified": "yellow"}


def to_table(report: AuditReport, colour: bool = False) -> str:
    """A plain-text table; ANSI colour when ``colour`` (a terminal that supports it)."""

    def paint(text: str, verdict: str) -> str:
        if not colour:
            return text
        code = {"match": "32", "mismatch": "1;31", "unverified": "33"}.get(verdict)
        return f"\x1b[{code}m{text}\x1b[0m" if code else text

    s = report.summary
    out = [
        f"lmlogger audit: {s['match']} match, {s['mismatch']} mismatch, {s['unverified']} unverified",
    ]
    for source, rows, problems, _complete, state in _rows(report):
        out += ["", f"{source} ({state})"]
        table = [HEADERS, *rows]
        widths = [min(max(len(r[i]) for r in table), 60 if i == 7 else 40) for i in range(len(HEADERS))]
        for n, row in enumerate(table):
            cells = []
            for i, cell in enumerate(row):
                text = cell if len(cell) <= widths[i] or i == 7 else cell[: widths[i] - 1] + "…"
                padded = text.ljust(widths[i]) if i < len(row) - 1 else text
                cells.append(paint(padded, row[5]) if n and i == 5 else padded)
            out.append("  ".join(cells).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        for problem in problems:
            out.append(f"store check: {problem}")
    return "\n".join(out)
