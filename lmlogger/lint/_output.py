"""The four output formats of ``lmlogger lint``: text, json, sarif (2.1.0) and github (workflow annotations)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from lmlogger.audit._escape import terminal
from lmlogger.lint._model import CODES, LintResult, level
from lmlogger.records._records import FINDINGS

DOCS = "https://lmlogger.readthedocs.io/en/latest/lint/"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def shown_path(path: str) -> str:
    """``path`` for a line of text output: controls (a newline in a file name) escaped, and ``./`` before a
    relative path that starts with ``:``, so that no line can start a GitHub Actions command (``::``)."""
    shown = terminal(path)
    return f"./{shown}" if shown.startswith(":") else shown


def text(result: LintResult) -> str:
    """``path:line:col: code message``, the fix on the line below, then a summary line.

    Every path, message and fix comes from the checked tree and is escaped (:func:`shown_path`,
    :func:`~lmlogger.audit._escape.terminal`): each finding is exactly one line (two with its fix), and no
    line starts with ``::``."""
    out = []
    for f in result.findings:
        out.append(f"{shown_path(f.path)}:{f.line}:{f.col}: {f.code} {terminal(f.message)}")
        if f.fix:
            out.append(f"    fix: {terminal(f.fix)}")
    files = f"{result.files} file{'s' if result.files != 1 else ''}"
    count = len(result.findings)
    bad = len(result.errors)
    unread = f"; {bad} path{'s' if bad != 1 else ''} could not be checked" if bad else ""
    if count or bad:
        out.append(f"Found {count} finding{'s' if count != 1 else ''} in {files} checked{unread}.")
    else:
        out.append(f"All clear: {files} checked.")
    return "\n".join(out)


def statistics(result: LintResult) -> str:
    """One line per finding code with its count, most frequent first (as ``ruff check --statistics``), then the
    summary line."""
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.code] = counts.get(f.code, 0) + 1
    width = max((len(str(n)) for n in counts.values()), default=1)
    out = [
        f"{n:>{width}}  {code:<24}  {level(code)}"
        for code, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    return "\n".join([*out, text(result).splitlines()[-1]])


def to_json(result: LintResult) -> str:
    """``{"findings": [{"path", "line", "col", "code", "message", "fix"}], "summary": {...}, "errors": [...]}``."""
    return json.dumps(result.to_dict(), indent=2)


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def artifact_uri(path: str) -> str:
    """``path`` (forward slashes already) as a SARIF ``artifactLocation.uri``: percent-encoded (RFC 3986; ``/`` kept,
    so a relative path stays a relative reference resolved against ``uriBaseId``; the bytes of a name that
    is not UTF-8 encoded as they are)."""
    return quote(path, safe="/", errors="surrogateescape")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github(result: LintResult) -> str:
    """GitHub Actions workflow commands: one annotation per finding (``::error``, or ``::warning`` for advice, see
    `lmlogger.lint._model.ADVICE`) and one ``::error`` per unreadable file."""
    out = []
    for f in result.findings:
        body = f"{f.code} {terminal(f.message)}" + (f"\nfix: {terminal(f.fix)}" if f.fix else "")
        title = _escape_property(f"lmlogger {f.code}")
        props = f"file={_escape_property(f.path)},line={f.line},col={f.col},title={title}"
        out.append(f"::{level(f.code)} {props}::{_escape_data(body)}")
    for e in result.errors:
        props = f"file={_escape_property(e.path)}" + (f",line={e.line}" if e.line else "")
        out.append(f"::error {props},title=lmlogger lint::{_escape_data(terminal(e.message))}")
    return "\n".join(out)


def sarif(result: LintResult, version: str) -> str:
    """A SARIF 2.1.0 log with one run: the rules (one per finding code) and one result per finding."""
    rules = [
        {
            "id": code,
            "name": "".join(part.capitalize() for part in code.split("-")),
            "shortDescription": {"text": FINDINGS[code].split(":")[0]},
            "fullDescription": {"text": FINDINGS[code]},
            "helpUri": f"{DOCS}#{code}",
            "help": {"text": f"{FINDINGS[code]}. See {DOCS}#{code}"},
            "defaultConfiguration": {"level": level(code)},
        }
        for code in CODES
    ]
    index = {code: i for i, code in enumerate(CODES)}
    results: list[dict[str, Any]] = []
    for f in result.findings:
        text_ = f.message + (f" Fix: {f.fix}" if f.fix else "")
        entry: dict[str, Any] = {
            "ruleId": f.code,
            "ruleIndex": index[f.code],
            "level": level(f.code),
            "message": {"text": text_},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": artifact_uri(f.path), "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": f.line, "startColumn": f.col},
                    }
                }
            ],
            "partialFingerprints": {"lmloggerFinding/v1": f"{f.path}:{f.code}:{f.message}"},
        }
        if f.fix:
            entry["properties"] = {"fix": f.fix}
        results.append(entry)
    notifications = [
        {
            "level": "error",
            "message": {"text": e.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": artifact_uri(e.path), "uriBaseId": "%SRCROOT%"},
                        **({"region": {"startLine": e.line}} if e.line else {}),
                    }
                }
            ],
        }
        for e in result.errors
    ]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "lmlogger-lint",
                        "informationUri": DOCS,
                        "version": version,
                        "semanticVersion": version,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
                "invocations": [
                    {"executionSuccessful": not result.errors, "toolExecutionNotifications": notifications}
                ],
            }
        ],
    }
    return json.dumps(log, indent=2)
