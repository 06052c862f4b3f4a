"""Rendering an :class:`AuditReport`: ``table`` (terminal), ``markdown`` (CI summaries), ``json``.

Every row shows the key's *worst* epoch (the one behind its verdict, with the largest relative gap), so the
numbers printed beside a ``mismatch`` are the disagreement, not the last epoch's. Every string read from the
run is escaped for the format (:mod:`lmlogger.audit._escape`).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from lmlogger.audit._escape import markdown_code, markdown_text, terminal
from lmlogger.audit._model import AuditReport, KeyReport, RunReport
from lmlogger.records._gap import format_gap


def to_json(report: AuditReport) -> str:
    """Strict JSON (NaN and infinities are strings; ``allow_nan=False`` guarantees it)."""
    return json.dumps(report.to_dict(), indent=2, allow_nan=False)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _gap(gap: float | None) -> str:
    """A relative gap as printed everywhere (``18%``, ``0.21%``, ``119%``; see `format_gap`)."""
    return format_gap(gap)


@dataclass
class _Row:
    """One key's line, every string already escaped for a terminal (markdown escapes from the raw key)."""

    key: KeyReport
    name: str
    provenance: str
    hook: str
    epoch: str
    logged: str
    reference: str
    gap: str
    verdict: str
    vouches: str
    findings: list[str]
    fix: str
    reason: str


def stage_label(run: RunReport, index: int) -> str:
    """The label of stage ``index`` (1-based) of ``run``: ``fit``, ``fit #2 (resumed from epoch 3)``."""
    if 1 <= index <= len(run.stage_details):
        return run.stage_details[index - 1].label or run.stage_details[index - 1].stage
    return f"stage {index}"


def _rows(run: RunReport) -> list[_Row]:
    several = len({e.stage for key in run.keys for e in key.epochs}) > 1
    ckpt = run.checkpoint is not None  # a checkpoint holds no provenance or hook: shown as not known, not a fact
    rows = []
    for key in run.keys:
        worst = key.worst_epoch()
        epoch, gap = worst if worst else (None, None)
        where = "-"
        if epoch is not None:
            where = str(epoch.epoch)
            if several:  # the stage's short label: "fit #2", not what it resumed from
                where += f" ({terminal(stage_label(run, epoch.stage).split(' (')[0])})"
        rows.append(
            _Row(
                key=key,
                name=terminal(key.key),
                provenance="-" if ckpt and key.provenance == "unknown" else terminal(key.provenance),
                hook="hook not in the checkpoint" if ckpt and key.hook == "unknown" else terminal(key.hook),
                epoch=where,
                logged=_num(epoch.logged) if epoch else "-",
                reference=_num(epoch.reference) if epoch else "-",
                gap=_gap(gap) if epoch and key.verdict in ("match", "mismatch") else "-",
                verdict=key.verdict or "step only",
                vouches=key.vouches_for,
                findings=[terminal(code) for code in key.findings],
                fix=terminal(key.fix or ""),
                reason=terminal(key.reason or ""),
            )
        )
    return rows


def _state(run: RunReport, escape: Any = terminal) -> str:
    if run.checkpoint is not None:
        sidecar = run.checkpoint.get("sidecar")
        run_dir = os.path.dirname(os.path.dirname(sidecar)) if isinstance(sidecar, str) and sidecar else None
        where = f": `lmlogger audit {escape(run_dir)}`" if run_dir else ""
        return (
            "checkpoint: each key's last closed epoch, the gap that epoch's, not the run's worst; provenance, hook "
            f"and stages are in the run{where}"
        )
    state = "complete" if run.complete else "INCOMPLETE (the last stage never closed: killed or crashed)"
    stages = ", ".join(escape(stage.label or stage.stage) for stage in run.stage_details)
    return f"{escape(run.backend)}, {state}; stages: {stages or '-'}"


def _details(rows: list[_Row]) -> list[str]:
    """Below each table: for every key with findings, a fix or a reason, where it was logged and what to do."""
    out = []
    for row in rows:
        if not (row.findings or row.fix or row.reason):
            continue
        head = f"  {row.name} ({row.hook})"
        out.append(head + (": " + ", ".join(row.findings) if row.findings else ""))
        if row.fix:
            out.append(f"    fix: {row.fix}")
        if row.reason and row.verdict == "unverified":
            out.append(f"    reason: {row.reason}")
    return out


def match_text(report: AuditReport) -> str:
    """``5 match (3 of them only the reduction)``: how many matches vouch only for Lightning's reduction."""
    s = report.summary
    plain = report.matched_reduction_only
    return f"{s['match']} match" + (f" ({plain} of them only the reduction)" if plain else "")


#: What ``reduction`` in the "vouches for" column means, printed under a table that has one.
REDUCTION_NOTE = (
    "vouches for `reduction`: a plain tensor; lmlogger checked Lightning's reduction of the values logged, "
    "not what they mean. `samples`: the reference is the metric over the epoch's samples."
)


def _summary_line(report: AuditReport) -> str:
    s = report.summary
    line = f"lmlogger audit: {match_text(report)}, {s['mismatch']} mismatch, {s['unverified']} unverified"
    if report.errors:
        line += f"; {len(report.errors)} could not be read"
    return line


#: The table's columns, in the order a reader needs them: the verdict and the size of the gap right after the
#: key, so that nothing a verdict depends on is ever pushed off an 80-column line; the hook and the finding codes
#: follow the table, one key per line. A key whose verdict vouches only for Lightning's reduction (a plain tensor,
#: not the metric over the samples) may carry a one-character marker on its verdict (``match*``).
PLAIN_HEADERS = ["key", "verdict", "gap", "epoch", "logged", "reference", "provenance"]


#: Under a plain table with a ``match*``: what the marker means (each line within 80 columns).
PLAIN_REDUCTION_NOTE = [
    "match*: vouches only for the reduction (a plain tensor): lmlogger checked",
    "Lightning's reduction of the values logged, not what they mean.",
]


def _verdict_cell(row: _Row) -> str:
    """The verdict, with ``*`` where the match vouches only for Lightning's reduction (not the samples)."""
    return f"{row.verdict}*" if row.verdict == "match" and row.vouches == "reduction" else row.verdict


def _cells(row: _Row) -> list[str]:
    return [row.name, _verdict_cell(row), row.gap, row.epoch, row.logged, row.reference, row.provenance]


def _table_lines(rows: list[_Row]) -> list[tuple[str, tuple[int, int, str] | None]]:
    """The table's lines, each with the span of its verdict cell (``(start, end, verdict)``) for colour.

    Columns are two spaces apart, one before a right-aligned number; a row with a 16-character key, an
    8-character gap and ``metric_compute`` is 74 characters wide, so the verdict is never cut at 80 columns.
    """
    table = [PLAIN_HEADERS] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(PLAIN_HEADERS))]
    right = {PLAIN_HEADERS.index(name) for name in ("gap", "logged", "reference")}
    verdict_col = PLAIN_HEADERS.index("verdict")
    out: list[tuple[str, tuple[int, int, str] | None]] = []
    for n, line in enumerate(table):
        text, span = "", None
        for i, cell in enumerate(line):
            if i:
                text += " " if i in right else "  "
            if n and i == verdict_col:
                span = (len(text), len(text) + len(cell), cell)
            text += cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
        out.append((text.rstrip(), span))
        if n == 0:
            out.append(("".join((" " if i in right else "  ") * bool(i) + "-" * w for i, w in enumerate(widths)), None))
    return out


def to_table(report: AuditReport, colour: bool = False) -> str:
    """A plain-text table (logs, pipes, ``print(report)``); ANSI colour on the verdict when ``colour``.

    One row per key with its worst epoch (verdict, relative gap, which epoch, logged, reference, provenance);
    a row with a 16-character key fits 80 columns. Hooks, findings, fixes and reasons follow each run's table,
    then the run's decisions.
    """
    out = [_summary_line(report)]
    for run in report.runs:
        out += ["", f"{terminal(run.source)} ({_state(run)})"]
        rows = _rows(run)
        for text, span in _table_lines(rows):
            code = {"match": "32", "mismatch": "1;31", "unverified": "33"}.get(span[2].rstrip("*")) if span else None
            if colour and span and code:
                start, end, _ = span
                text = f"{text[:start]}\x1b[{code}m{text[start:end]}\x1b[0m{text[end:]}"
            out.append(text)
        details = _details(rows)
        if details:
            out += ["findings / fix / reason:", *details]
        out += [f"problem: {terminal(p)}" for p in run.problems]
        out += _decisions_text_of(run)
    if any(r.vouches == "reduction" and r.verdict == "match" for run in report.runs for r in _rows(run)):
        out += ["", *PLAIN_REDUCTION_NOTE]
    out += _runs_read(report)
    out += [f"could not be read: {terminal(e)}" for e in report.errors]
    return "\n".join(out)


def _runs_read(report: AuditReport) -> list[str]:
    """After a folder's runs: how many were read (and how many could not be)."""
    if len(report.runs) + len(report.errors) <= 1:
        return []
    failed = f", {len(report.errors)} could not be read" if report.errors else ""
    return ["", f"{len(report.runs)} runs read{failed}"]


def to_markdown(report: AuditReport) -> str:
    """GitHub-flavoured markdown; every string from the run is a code span or backslash-escaped text."""
    s = report.summary
    lines = [
        "## lmlogger audit",
        "",
        f"**{match_text(report)}, {s['mismatch']} mismatch, {s['unverified']} unverified**"
        + (f" ({len(report.errors)} could not be read)" if report.errors else ""),
        "",
    ]
    headers = [
        "key",
        "provenance",
        "hook",
        "worst epoch",
        "logged",
        "reference",
        "gap",
        "verdict",
        "vouches for",
        "finding",
        "fix",
    ]
    for run in report.runs:
        lines += [f"### {markdown_code(run.source, in_table=False)} ({_state(run, markdown_text)})", ""]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "---|" * len(headers))
        for row in _rows(run):
            key = row.key
            verdict = "**mismatch**" if row.verdict == "mismatch" else markdown_text(row.verdict)
            fix = key.fix or (key.reason if key.verdict == "unverified" else "") or ""
            cells = [
                markdown_code(key.key),
                markdown_code(key.provenance),
                markdown_code(key.hook),
                _md_epoch(run, key),
                row.logged,
                row.reference,
                row.gap,
                verdict,
                markdown_text(key.vouches_for),
                ", ".join(markdown_code(code) for code in key.findings),
                (markdown_code(fix) if key.fix else markdown_text(fix)) if fix else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        for problem in run.problems:
            lines.append(f"- problem: {markdown_text(problem)}")
        lines.append("")
    if any(key.vouches_for == "reduction" for run in report.runs for key in run.keys):
        lines += [markdown_text(REDUCTION_NOTE.replace("`", "")), ""]
    for error in report.errors:
        lines.append(f"- could not be read: {markdown_text(error)}")
    lines += ["", *_decisions_markdown(report)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _md_epoch(run: RunReport, key: KeyReport) -> str:
    worst = key.worst_epoch()
    if worst is None:
        return "-"
    epoch = worst[0]
    if len({e.stage for k in run.keys for e in k.epochs}) > 1:
        return f"{epoch.epoch} ({markdown_text(stage_label(run, epoch.stage).split(' (')[0])})"
    return str(epoch.epoch)


_AGREE = {True: "agree", False: "disagree", None: "unverified"}


def _checkpoint_line(run: RunReport, escape: Any = terminal) -> str:
    c = run.checkpoint or {}
    saved = c.get("saved_by") or {}
    by = (
        f" by {escape(saved.get('callback'))} (monitor {escape(saved.get('monitor'))})" if saved.get("callback") else ""
    )
    return f"checkpoint saved at epoch {escape(c.get('epoch'))}, step {escape(c.get('global_step'))}{by}"


def _decisions_markdown(report: AuditReport) -> list[str]:
    """The decisions section: one row per callback that acted on a monitored key."""
    lines: list[str] = []
    for run in report.runs:
        if not run.decisions and run.checkpoint is None:
            continue
        lines += [f"### Decisions: {markdown_code(run.source, in_table=False)}", ""]
        if run.checkpoint is not None:
            lines += [_checkpoint_line(run, markdown_text), ""]
        if run.decisions:
            lines.append("| callback | monitor | monitor verdict | agree | decision |")
            lines.append("|---|---|---|---|---|")
            for d in run.decisions:
                agree = "**disagree**" if d.agree is False else _AGREE[d.agree]
                cells = [markdown_code(d.callback), markdown_code(d.monitor), markdown_text(d.monitor_verdict or "-")]
                lines.append("| " + " | ".join([*cells, agree, markdown_text(d.message)]) + " |")
        lines.append("")
    return lines


def _decisions_text_of(run: RunReport) -> list[str]:
    """The decisions of one run, printed right below its table: one line per callback, the sentence says it."""
    if not run.decisions and run.checkpoint is None:
        return []
    out = ["", f"decisions ({terminal(run.source)}):"]
    if run.checkpoint is not None:
        out.append(f"  {_checkpoint_line(run)}")
    for d in run.decisions:
        verdict = terminal(d.monitor_verdict or "-")
        out.append(f"  [{_AGREE[d.agree]}] {terminal(d.message)} (monitor verdict: {verdict})")
    return out


def _decisions_text(report: AuditReport) -> list[str]:
    """The decisions section of every run (each run's also follows its own table)."""
    return [line for run in report.runs for line in _decisions_text_of(run)]


_COLOURS = {"match": "green", "mismatch": "bold red", "unverified": "yellow"}


def print_table(report: AuditReport, colour: bool | None = None) -> None:
    """Print the report to stdout: on a terminal with rich (colour where the terminal supports it) when
    installed, else as plain aligned text (pipes, files, CI logs)."""
    try:
        from rich.console import Console
    except ImportError:
        Console = None
    if Console is None or not sys.stdout.isatty():
        print(to_table(report, colour=bool(colour) and sys.stdout.isatty()))
        return
    console = Console(no_color=colour is False, highlight=False, soft_wrap=False, emoji=False, markup=False)
    console.print(rich_renderable(report), end="")


def rich_renderable(report: AuditReport) -> Any:
    """The report as rich renderables, readable at 80 columns.

    The table holds only columns whose words fit (provenance kinds, verdicts and numbers never wrap); the hook,
    finding codes, fix and reason follow the table one key per line, where rich wraps them between words.
    Every string is a ``Text`` (never parsed as rich markup) and escaped for the terminal.
    """
    from rich.console import Group
    from rich.text import Text

    s = report.summary
    parts: list[Any] = [
        Text.assemble(
            "lmlogger audit: ",
            (match_text(report), "green"),
            ", ",
            (f"{s['mismatch']} mismatch", "bold red" if s["mismatch"] else ""),
            ", ",
            (f"{s['unverified']} unverified", "yellow" if s["unverified"] else ""),
            (f"; {len(report.errors)} could not be read", "bold red") if report.errors else "",
            "\n",
        )
    ]
    for run in report.runs:
        rows = _rows(run)
        title = f"{terminal(run.source)} ({_state(run)})"
        parts.append(Text(title, style="bold" if run.complete else "bold red"))
        for text, span in _table_lines(rows):
            line = Text(text, style="" if span or text.startswith("-") else "bold", no_wrap=True, overflow="ellipsis")
            if span:
                line.stylize(_COLOURS.get(span[2].rstrip("*"), ""), span[0], span[1])
            parts.append(line)
        details = _details(rows)
        if details:
            parts += [Text("findings / fix / reason:"), *(Text(line) for line in details)]
        parts += [Text(f"problem: {terminal(p)}", style="yellow") for p in run.problems]
        parts += [Text(line) for line in _decisions_text_of(run)]
    if any(r.vouches == "reduction" and r.verdict == "match" for run in report.runs for r in _rows(run)):
        parts += [Text(""), *(Text(line) for line in PLAIN_REDUCTION_NOTE)]
    parts += [Text(line) for line in _runs_read(report)]
    parts += [Text(f"could not be read: {terminal(e)}", style="bold red") for e in report.errors]
    return Group(*parts)
