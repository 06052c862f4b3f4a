"""Rendering an :class:`AuditReport`: ``table`` (terminal), ``markdown`` (CI summaries), ``json``."""

from __future__ import annotations

import json
from typing import Any

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
    lines += _decisions_markdown(report)
    return "\n".join(lines)


_AGREE = {True: "agree", False: "disagree", None: "unverified"}
_CONTROL = dict.fromkeys([*range(0x20), 0x7F], "?")


def _plain_text(text: Any) -> str:
    """A string from a file as it may reach a terminal: no control characters (no ANSI escapes)."""
    return str(text).translate(_CONTROL)


def _md_text(text: Any) -> str:
    """A string from a file inside a markdown table cell: no control characters, no raw HTML, no cell breaks."""
    return _plain_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _checkpoint_line(run: Any) -> str:
    c = run.checkpoint
    saved = c.get("saved_by") or {}
    by = f" by {saved.get('callback')} (monitor `{saved.get('monitor')}`)" if saved.get("callback") else ""
    return _plain_text(f"checkpoint saved at epoch {c.get('epoch')}, step {c.get('global_step')}{by}")


def _decisions_markdown(report: AuditReport) -> list[str]:
    """The decisions section: one row per callback that acted on a monitored key."""
    lines: list[str] = []
    for run in report.runs:
        if not run.decisions and run.checkpoint is None:
            continue
        lines += [f"### Decisions: {_md_text(run.source)}", ""]
        if run.checkpoint is not None:
            lines += [_md_text(_checkpoint_line(run)), ""]
        if run.decisions:
            lines.append("| callback | monitor | monitor verdict | agree | decision |")
            lines.append("|---|---|---|---|---|")
            for d in run.decisions:
                agree = "**disagree**" if d.agree is False else _AGREE[d.agree]
                cells = [_md_text(d.callback), _md_text(d.monitor), _md_text(d.monitor_verdict or "-")]
                lines.append("| " + " | ".join([*cells, agree, _md_text(d.message)]) + " |")
        lines.append("")
    return lines


def _decisions_text(report: AuditReport) -> list[str]:
    """The decisions section of the plain table: one line per callback, the sentence says it all."""
    out: list[str] = []
    for run in report.runs:
        if not run.decisions and run.checkpoint is None:
            continue
        out += ["", f"decisions ({_plain_text(run.source)}):"]
        if run.checkpoint is not None:
            out.append(f"  {_checkpoint_line(run)}")
        for d in run.decisions:
            line = f"  [{_AGREE[d.agree]}] {d.message} (monitor verdict: {d.monitor_verdict or '-'})"
            out.append(_plain_text(line))
    return out


_COLOURS = {"match": "green", "mismatch": "bold red", "unverified": "yellow"}


def print_table(report: AuditReport, colour: bool | None = None) -> None:
    """Print the table to stdout: on a terminal with rich (colour where the terminal supports it) when
    installed, else as plain aligned text (pipes, files, CI logs)."""
    import sys

    try:
        from rich.console import Console
    except ImportError:
        Console = None
    if Console is None or not sys.stdout.isatty():
        print(to_table(report, colour=bool(colour) and sys.stdout.isatty()))
        return
    console = Console(no_color=colour is False, highlight=False, soft_wrap=False)
    console.print(_rich_renderables(report), end="")


def _rich_renderables(report: AuditReport):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    s = report.summary
    parts: list = [
        Text.assemble(
            "lmlogger audit: ",
            (f"{s['match']} match", "green"),
            ", ",
            (f"{s['mismatch']} mismatch", "bold red" if s["mismatch"] else ""),
            ", ",
            (f"{s['unverified']} unverified", "yellow" if s["unverified"] else ""),
            "\n",
        )
    ]
    for source, rows, problems, complete, state in _rows(report):
        table = Table(title=f"{source} ({state})", title_justify="left", title_style="bold" if complete else "bold red")
        for header in HEADERS[:-1]:
            fixed = header in ("logged", "reference", "verdict")
            table.add_column(header, overflow="fold", no_wrap=fixed, min_width=None if fixed else 8)
        fixes = []
        for row in rows:
            cells = list(row)
            table.add_row(*cells[:5], Text(cells[5], style=_COLOURS.get(cells[5], "")), cells[6])
            if cells[7]:
                fixes.append(Text.assemble((f"  {cells[0]}: ", "bold"), cells[7]))
        parts.append(table)
        if fixes:
            parts += [Text("fix / reason:"), *fixes]
        parts += [Text(f"store check: {p}", style="yellow") for p in problems]
    decisions = _decisions_text(report)
    if decisions:
        parts.append(Text("\n".join(decisions).lstrip("\n")))
    return Group(*parts)


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
        table = [HEADERS[:-1], *(r[:-1] for r in rows)]
        widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS) - 1)]
        for n, row in enumerate(table):
            cells = []
            for i, cell in enumerate(row):
                padded = cell.ljust(widths[i]) if i < len(row) - 1 else cell
                cells.append(paint(padded, row[5]) if n and i == 5 else padded)
            out.append("  ".join(cells).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        fixes = [f"  {r[0]}: {r[7]}" for r in rows if r[7]]
        if fixes:
            out += ["fix / reason:", *fixes]
        for problem in problems:
            out.append(f"store check: {problem}")
    out += _decisions_text(report)
    return "\n".join(out)
