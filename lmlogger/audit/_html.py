"""``lmlogger audit --format html``: one self-contained page (pure Python, no third-party import).

The page holds everything inline: styles in one ``<style>``, each chart an inline ``<svg>``. It loads
nothing (a Content-Security-Policy forbids every fetch), runs no script and reads the same with
JavaScript off. Every string that comes from a run (keys, hooks, fixes, reasons, paths) is escaped:
a sidecar is untrusted input.

Layout: the summary, then per run its state and a table of every key (its worst epoch and the gap
there), the decisions callbacks took, and per key a chart of logged vs reference by epoch with the
findings, the fix, the reason and every epoch.
"""

from __future__ import annotations

import math
from html import escape as _html_escape
from typing import Any

from lmlogger.audit._escape import terminal
from lmlogger.audit._model import AuditReport, EpochReport, KeyReport, RunReport
from lmlogger.audit._render import match_text
from lmlogger.records._gap import format_gap, relative_gap, worst_epoch
from lmlogger.records._records import FINDINGS

LOGGED_COLOUR = "#c62828"
REFERENCE_COLOUR = "#1565c0"

_STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24;
       margin: 0 auto; max-width: 1100px; padding: 24px 28px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 19px; margin: 36px 0 6px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px;
     overflow-wrap: anywhere; }
h3 { font-size: 16px; margin: 0 0 8px; overflow-wrap: anywhere; }
code, pre { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 10px;
      white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0 10px; }
.summary { font-size: 18px; margin: 4px 0 2px; }
.muted { color: #57606a; }
.badge { display: inline-block; border-radius: 10px; padding: 0 9px; font-size: 13px; font-weight: 600;
         white-space: nowrap; vertical-align: 1px; }
.match { background: #dafbe1; color: #116329; }
.mismatch { background: #ffebe9; color: #a40e26; }
.unverified { background: #fff8c5; color: #7d4e00; }
.steponly { background: #eaeef2; color: #424a53; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { border-bottom: 1px solid #d8dee4; padding: 4px 10px 4px 0; text-align: left; vertical-align: top; }
th { font-weight: 600; color: #424a53; white-space: nowrap; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; text-align: right; }
td.key { overflow-wrap: normal; word-break: normal; }
td.fix code { white-space: pre-wrap; overflow-wrap: break-word; }
.table-wrap { overflow-x: auto; }
.key-section { border: 1px solid #d0d7de; border-radius: 8px; padding: 14px 16px; margin: 16px 0; }
.key-section.is-mismatch { border-color: #ff818266; box-shadow: inset 4px 0 0 #cf222e; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0 10px;
           font-size: 14px; }
dl.facts dt { color: #57606a; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 6px 0 4px; }
ul.findings { margin: 4px 0 10px; padding-left: 20px; }
.problems li { color: #7d4e00; }
details summary { cursor: pointer; color: #0969da; margin: 6px 0; }
"""


_VOUCHES_TITLE = {
    "samples": "the reference is the metric over the epoch's samples",
    "reduction": "a plain tensor: lmlogger checked Lightning's reduction of the values logged, not what they mean",
}


def to_html(report: AuditReport) -> str:
    """The whole page for ``report`` (see the module docstring)."""
    s = report.summary
    headline = f"{s['match']} match, {s['mismatch']} mismatch, {s['unverified']} unverified"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        # No fetch of any kind: the page is complete as it is (and a hostile key cannot make it load one).
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>lmlogger audit: {escape(headline)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>lmlogger audit</h1>",
        '<p class="summary" id="summary">',
        _badge("match", match_text(report)),
        " ",
        _badge("mismatch" if s["mismatch"] else "steponly", f"{s['mismatch']} mismatch"),
        " ",
        _badge("unverified" if s["unverified"] else "steponly", f"{s['unverified']} unverified"),
        "</p>",
        '<p class="muted">Each logged epoch value is compared with a reference lmlogger computed independently '
        "during training. A key's verdict is its worst epoch; the table shows that epoch and how far the logged "
        "value is from the reference there.</p>",
        "</header>",
    ]
    for index, run in enumerate(report.runs):
        parts.append(_run(run, index, several=len(report.runs) > 1))
    if not report.runs:
        parts.append("<p>No run.</p>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# -- one run --------------------------------------------------------------------------------------
def _run(run: RunReport, index: int, several: bool) -> str:
    state = "complete" if run.complete else "INCOMPLETE: the run never closed (killed or crashed)"
    counts = run.counts()
    out = [f'<section class="run" id="run-{index}">', f"<h2>{escape(run.source)}</h2>"]
    facts = [
        ("backend", escape(run.backend)),
        ("state", escape(state) + (f" (status: {escape(str(run.status))})" if run.status else "")),
        ("stages", escape(", ".join(run.stages)) or "-"),
    ]
    if several:
        facts.insert(0, ("verdicts", escape(", ".join(f"{n} {v}" for v, n in counts.items()))))
    if run.versions:
        facts.append(("versions", escape(", ".join(f"{k} {v}" for k, v in sorted(run.versions.items())))))
    out.append(_facts(facts))
    if run.problems:
        out.append("<p><strong>Store check</strong> (the tracker disagrees with the sidecar):</p>")
        out.append('<ul class="problems">' + "".join(f"<li>{escape(p)}</li>" for p in run.problems) + "</ul>")
    if run.keys:
        out.append(_key_table(run, index))
    else:
        out.append("<p>No key was logged.</p>")
    decisions = run.to_dict().get("decisions") or []
    if decisions:
        out.append(_decisions(decisions))
    for n, key in _ordered(run):
        out.append(_key_section(key, f"run-{index}-key-{n}"))
    out.append("</section>")
    return "\n".join(out)


_ORDER = {"mismatch": 0, "unverified": 1, "match": 2}


def _ordered(run: RunReport) -> list[tuple[int, KeyReport]]:
    """The run's keys with their index, mismatches first, then unverified, matches, step-only keys (stable)."""
    return sorted(enumerate(run.keys), key=lambda item: _ORDER.get(item[1].verdict or "", 3))


def _key_name(key: str) -> str:
    """A key escaped, with line-break opportunities only after ``/``, ``.``, ``_`` and ``-``: a narrow cell
    breaks a long key between its parts, never inside a word."""
    out = []
    for ch in key:
        out.append(escape(ch))
        if ch in "/._-":
            out.append("<wbr>")
    return "".join(out)


def _key_table(run: RunReport, index: int) -> str:
    rows = [
        '<div class="table-wrap"><table>',
        '<thead><tr><th>key</th><th>verdict</th><th>vouches for</th><th class="num">gap</th><th>worst epoch</th>'
        '<th class="num">logged</th><th class="num">reference</th><th>provenance</th><th>hook</th>'
        "<th>findings</th><th>fix</th></tr></thead>",
        "<tbody>",
    ]
    for n, key in _ordered(run):
        worst = _worst(key)
        verdict = key.verdict or "step only"
        fix = f"<code>{escape(key.fix)}</code>" if key.fix else ""
        rows.append(
            "<tr>"
            f'<td class="key"><a href="#run-{index}-key-{n}"><code>{_key_name(key.key)}</code></a></td>'
            f"<td>{_badge(_css(verdict), verdict)}</td>"
            f'<td title="{_VOUCHES_TITLE.get(key.vouches_for, "")}">{escape(key.vouches_for)}</td>'
            f'<td class="num">{_gap(worst)}</td>'
            f"<td>{_epoch_label(worst)}</td>"
            f'<td class="num">{_num(worst.logged if worst else None)}</td>'
            f'<td class="num">{_num(worst.reference if worst else None)}</td>'
            f"<td>{escape(key.provenance)}</td>"
            f"<td>{escape(key.hook)}</td>"
            f"<td>{escape(', '.join(key.findings))}</td>"
            f'<td class="fix">{fix}</td>'
            "</tr>"
        )
    rows += ["</tbody>", "</table></div>"]
    return "\n".join(rows)


def _decisions(decisions: list[dict[str, Any]]) -> str:
    rows = [
        "<h3>Decisions callbacks took</h3>",
        "<table>",
        "<thead><tr><th>callback</th><th>monitor</th><th>mode</th><th>by the logged values</th>"
        "<th>by the references</th><th>agree</th><th>monitor verdict</th></tr></thead>",
        "<tbody>",
    ]
    for d in decisions:
        agree = d.get("agree")
        rows.append(
            "<tr>"
            f"<td>{escape(str(d.get('callback', '-')))}</td>"
            f"<td><code>{escape(str(d.get('monitor', '-')))}</code></td>"
            f"<td>{escape(str(d.get('mode', '-')))}</td>"
            f"<td>{_choice(d.get('by_logged'))}</td>"
            f"<td>{_choice(d.get('by_reference'))}</td>"
            f"<td>{_badge('match' if agree else 'mismatch', 'yes' if agree else 'no')}</td>"
            f"<td>{escape(str(d.get('monitor_verdict') or '-'))}</td>"
            "</tr>"
        )
    rows += ["</tbody>", "</table>"]
    return "\n".join(rows)


def _choice(choice: Any) -> str:
    if not isinstance(choice, dict):
        return "none"
    bits = [f"epoch {choice.get('epoch')}"]
    if choice.get("step") is not None:
        bits.append(f"step {choice.get('step')}")
    if choice.get("value") is not None:
        bits.append(f"value {_num(_float(choice.get('value')))}")
    return escape(", ".join(bits))


# -- one key --------------------------------------------------------------------------------------
def _key_section(key: KeyReport, anchor: str) -> str:
    verdict = key.verdict or "step only"
    css = "key-section is-mismatch" if key.verdict == "mismatch" else "key-section"
    out = [
        f'<section class="{css}" id="{anchor}" data-key="{escape(key.key)}">',
        f"<h3><code>{escape(key.key)}</code> {_badge(_css(verdict), verdict)}</h3>",
    ]
    worst = _worst(key)
    if worst is not None and key.verdict == "mismatch":
        out.append(
            f"<p>Worst at {escape(worst.phase)} epoch {worst.epoch}: logged <strong>{_num(worst.logged)}</strong>, "
            f"reference <strong>{_num(worst.reference)}</strong> ({_gap(worst)} apart).</p>"
        )
    how = f"{key.provenance} logged from {key.hook}"
    facts = [
        ("provenance", escape(how)),
        ("vouches for", escape(f"{key.vouches_for}: {_VOUCHES_TITLE.get(key.vouches_for, '')}")),
        (
            "options",
            escape(
                f"on_step={key.on_step}, on_epoch={key.on_epoch}, reduce_fx={key.reduce_fx}, "
                f"sync_dist={key.sync_dist}, batch_size={key.batch_size}"
            ),
        ),
    ]
    if key.metric_attribute:
        facts.append(("metric", f"<code>self.{escape(key.metric_attribute)}</code>"))
    if key.logged_keys and list(key.logged_keys) != [key.key]:
        facts.append(("keys logged", escape(", ".join(key.logged_keys))))
    if key.dataloader_idx is not None:
        facts.append(("dataloader", str(int(key.dataloader_idx))))
    out.append(_facts(facts))
    if key.epochs:
        out.append(chart(key))
    else:
        out.append('<p class="muted">Step values only: there is no epoch value to verify.</p>')
    if key.findings:
        out.append("<p><strong>Findings</strong></p>")
        out.append(
            '<ul class="findings">'
            + "".join(
                f"<li><code>{escape(code)}</code>: {escape(FINDINGS.get(code, 'see the documentation'))}</li>"
                for code in key.findings
            )
            + "</ul>"
        )
    if key.fix:
        out.append("<p><strong>Fix</strong></p>")
        out.append(f"<pre><code>{escape(key.fix)}</code></pre>")
    if key.reason:
        out.append(f"<p><strong>Reason:</strong> {escape(key.reason)}</p>")
    if key.epochs:
        out.append(_epoch_table(key))
    out.append("</section>")
    return "\n".join(out)


def _epoch_table(key: KeyReport) -> str:
    # <details> opens and closes without JavaScript; a mismatched key shows its epochs open.
    opened = " open" if key.verdict == "mismatch" and len(key.epochs) <= 20 else ""
    rows = [
        f"<details{opened}><summary>every epoch ({len(key.epochs)})</summary>",
        "<table>",
        '<thead><tr><th>phase</th><th class="num">epoch</th><th class="num">step</th><th class="num">logged</th>'
        '<th class="num">reference</th><th class="num">gap</th><th>verdict</th><th>findings / reason</th></tr></thead>',
        "<tbody>",
    ]
    for e in key.epochs:
        note = ", ".join(e.findings)
        if e.reason:
            note = f"{note}; {e.reason}" if note else e.reason
        rows.append(
            "<tr>"
            f"<td>{escape(e.phase)}</td>"
            f'<td class="num">{e.epoch}</td>'
            f'<td class="num">{"-" if e.step is None else e.step}</td>'
            f'<td class="num">{_num(e.logged)}</td>'
            f'<td class="num">{_num(e.reference)}</td>'
            f'<td class="num">{_gap(e)}</td>'
            f"<td>{_badge(_css(e.verdict), e.verdict)}</td>"
            f"<td>{escape(note)}</td>"
            "</tr>"
        )
    rows += ["</tbody>", "</table>", "</details>"]
    return "\n".join(rows)


# -- the chart ------------------------------------------------------------------------------------
W, H = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 34


def chart(key: KeyReport) -> str:
    """An inline SVG of the logged value (red, solid, circles) and the reference (blue, dashed, squares) by
    epoch; mismatched epochs are ringed. The legend is drawn in the chart and the colours are not the only cue."""
    epochs: list[EpochReport] = list(key.epochs)
    values = [v for e in epochs for v in (e.logged, e.reference) if v is not None and math.isfinite(v)]
    title = f"{key.key}: logged vs reference by epoch"
    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>',
    ]
    if not values:
        out.append(
            f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="13" fill="#57606a">'
            "no finite value to draw</text></svg>"
        )
        return "\n".join(out)
    low, high = min(values), max(values)
    if high == low:
        pad = abs(high) * 0.05 or 0.5
        low, high = low - pad, high + pad
    ticks, low, high = nice_ticks(low, high)
    n = len(epochs)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y(v: float) -> float:
        return TOP + plot_h * (high - v) / (high - low)

    # axes and grid: round values (0.55, 0.6, 0.65), as a person would draw them
    for value, label in ticks:
        gy = y(value)
        out.append(f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{W - RIGHT}" y2="{gy:.1f}" stroke="#d8dee4"/>')
        out.append(
            f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="11" fill="#57606a">'
            f"{escape(label)}</text>"
        )
    every = max(1, math.ceil(n / 12))
    for i, e in enumerate(epochs):
        if i % every == 0 or i == n - 1:
            out.append(
                f'<text x="{x(i):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" font-size="11" fill="#57606a">'
                f"{e.epoch}</text>"
            )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{H - 4}" text-anchor="middle" font-size="11" fill="#57606a">epoch</text>'
    )
    # the two series
    out.append(_series([e.logged for e in epochs], x, y, LOGGED_COLOUR, "", "circle", "logged"))
    out.append(_series([e.reference for e in epochs], x, y, REFERENCE_COLOUR, "6 4", "square", "reference"))
    for i, e in enumerate(epochs):
        if e.verdict == "mismatch" and e.logged is not None and math.isfinite(e.logged):
            out.append(
                f'<circle cx="{x(i):.1f}" cy="{y(e.logged):.1f}" r="8" fill="none" stroke="#1b1f24" '
                f'stroke-width="1.5"><title>epoch {e.epoch}: mismatch</title></circle>'
            )
    # legend
    out.append(
        f'<g font-size="12" fill="#1b1f24">'
        f'<line x1="{LEFT}" y1="14" x2="{LEFT + 26}" y2="14" stroke="{LOGGED_COLOUR}" stroke-width="2"/>'
        f'<circle cx="{LEFT + 13}" cy="14" r="3.5" fill="{LOGGED_COLOUR}"/>'
        f'<text x="{LEFT + 32}" y="18">logged (what the tracker shows)</text>'
        f'<line x1="{LEFT + 240}" y1="14" x2="{LEFT + 266}" y2="14" stroke="{REFERENCE_COLOUR}" stroke-width="2" '
        f'stroke-dasharray="6 4"/>'
        f'<rect x="{LEFT + 250}" y="10.5" width="7" height="7" fill="{REFERENCE_COLOUR}"/>'
        f'<text x="{LEFT + 272}" y="18">reference (lmlogger)</text>'
        f'<circle cx="{LEFT + 430}" cy="14" r="7" fill="none" stroke="#1b1f24" stroke-width="1.5"/>'
        f'<text x="{LEFT + 442}" y="18">mismatch</text>'
        "</g>"
    )
    out.append("</svg>")
    return "\n".join(out)


def nice_ticks(low: float, high: float, most: int = 6) -> tuple[list[tuple[float, str]], float, float]:
    """Round tick values covering ``[low, high]`` (steps of 1, 2 or 5 times a power of ten, at most ``most`` ticks)
    with their labels, and the axis range: from the tick at or below ``low`` to the one at or above ``high``."""
    span = high - low
    raw = span / max(1, most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if step / power == 2.5 else 0)
    label = (lambda v: f"{v:.{decimals}f}") if decimals <= 6 else (lambda v: f"{v:.6g}")
    ticks = [(i * step, label(i * step)) for i in range(first, last + 1)]
    return ticks, first * step, last * step


def _series(values: list[float | None], x: Any, y: Any, colour: str, dash: str, marker: str, name: str) -> str:
    path: list[str] = []
    marks: list[str] = []
    pen_down = False
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            pen_down = False  # a gap in the line where there is no value
            continue
        px, py = x(i), y(v)
        path.append(f"{'L' if pen_down else 'M'}{px:.1f},{py:.1f}")
        pen_down = True
        tip = f"<title>{name}: {_num(v)}</title>"
        if marker == "circle":
            marks.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}">{tip}</circle>')
        else:
            square = f'x="{px - 3.5:.1f}" y="{py - 3.5:.1f}" width="7" height="7"'
            marks.append(f'<rect {square} fill="{colour}">{tip}</rect>')
    # The logged line is wider and drawn first, so that where the two agree both stay visible.
    width = "2" if dash else "3.5"
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    stroke = f'fill="none" stroke="{colour}" stroke-width="{width}"{dash_attr}'
    line = f'<path d="{" ".join(path)}" {stroke}/>' if path else ""
    # markers only where they stay readable
    return f'<g class="series-{name}">' + line + ("".join(marks) if len(values) <= 60 else "") + "</g>"


# -- small pieces ---------------------------------------------------------------------------------
def escape(text: object) -> str:
    """``text`` for the page: controls, bidi overrides, zero-width characters and lone surrogates shown as
    escapes (``\\u202e``, as the terminal shows them), then HTML-escaped."""
    return _html_escape(terminal(text))


def _worst(key: KeyReport) -> EpochReport | None:
    """The epoch behind the key's verdict: the report's own ``KeyReport.worst_epoch()`` where the model has it,
    the same rule from ``lmlogger.records._gap`` otherwise."""
    method = getattr(key, "worst_epoch", None)
    if callable(method):
        found = method()
        return found[0] if found else None
    return worst_epoch(key.epochs)


def _facts(facts: list[tuple[str, str]]) -> str:
    """``facts`` are (label, already escaped HTML)."""
    return '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"


def _badge(css: str, text: str) -> str:
    return f'<span class="badge {css}">{escape(text)}</span>'


def _css(verdict: str) -> str:
    return verdict if verdict in ("match", "mismatch", "unverified") else "steponly"


def _num(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "-"
    return escape(f"{value:.{digits}g}")


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _gap(entry: EpochReport | None) -> str:
    if entry is None:
        return "-"
    return escape(format_gap(relative_gap(entry.logged, entry.reference)))


def _epoch_label(entry: EpochReport | None) -> str:
    if entry is None:
        return "-"
    return escape(f"{entry.phase} {entry.epoch}")


__all__ = ["chart", "to_html"]
