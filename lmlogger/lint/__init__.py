"""``lmlogger lint``: the logging patterns whose epoch values are wrong, found in source code before any run.

It parses Python source and never imports or runs it, nor torch or Lightning: it runs where training
never did (a CI job, a pre-commit hook). Findings carry the runtime's codes and fixes.

Example:
    >>> from lmlogger.lint import lint
    >>> result = lint(["src/"])  # doctest: +SKIP
    >>> [(f.path, f.line, f.code) for f in result.findings]  # doctest: +SKIP
    [('src/model.py', 42, 'running-value-averaged')]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lmlogger.lint._check import check
from lmlogger.lint._config import ConfigError, Settings, codes, load
from lmlogger.lint._model import ADVICE, CODES, Finding, InputError, LintResult

__all__ = ["ADVICE", "CODES", "ConfigError", "Finding", "InputError", "LintResult", "lint", "main"]

_VERSION = "0.1.0"


def lint(paths: Sequence[str], select: Sequence[str] | None = None, ignore: Sequence[str] | None = None) -> LintResult:
    """Check the Python files under ``paths`` (files or folders) together.

    Settings come from ``[tool.lmlogger.lint]`` in the nearest ``pyproject.toml`` (above the first path);
    ``select``/``ignore`` given here replace the file's.

    Raises:
        ConfigError: a code that is not a finding code, or a ``pyproject.toml`` that cannot be read.
    """
    return check(paths, _settings(paths, select, ignore))


def _settings(paths: Sequence[str], select: Sequence[str] | None, ignore: Sequence[str] | None) -> Settings:
    settings = load(Path(paths[0]) if paths else Path.cwd())
    if select is not None:
        settings.select = codes(list(select), "select")
    if ignore is not None:
        settings.ignore = codes(list(ignore), "ignore")
    return settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lmlogger lint`` (shared by the ``lmlogger`` command line)."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Python files or folders to check")
    parser.add_argument("--format", choices=("text", "json", "sarif", "github"), default="text")
    parser.add_argument("--select", default=None, metavar="CODES", help="comma-separated finding codes to report")
    parser.add_argument("--ignore", default=None, metavar="CODES", help="comma-separated finding codes to skip")
    parser.add_argument("--fix", action="store_true", help="apply the fixes in place, where they are sure")
    parser.add_argument("--diff", action="store_true", help="print the changes --fix would make; write nothing")
    parser.add_argument(
        "--statistics", action="store_true", help="print the number of findings per code instead of each finding"
    )


def main(args: argparse.Namespace) -> int:
    """Run ``lmlogger lint`` with parsed arguments; print the report; return the exit code.

    Exit codes: 0 nothing found, 1 findings, 2 bad input (a path that is missing, unreadable, not a regular
    file or does not parse, a bad ``pyproject.toml`` setting); the other paths are still checked, with the
    other settings, and reported before a 2. A bad ``--select``/``--ignore`` is exit 2 before any check.
    """
    from lmlogger.audit._escape import terminal
    from lmlogger.lint import _output

    try:
        select = codes(args.select, "--select") if args.select is not None else None
        ignore = codes(args.ignore, "--ignore") if args.ignore is not None else None
    except ConfigError as err:
        print(f"lmlogger: error: {terminal(err)}", file=sys.stderr)
        return 2
    problems: list[str] = []  # a bad pyproject setting is named and left out; the check goes on (exit 2)
    settings = load(Path(args.paths[0]), problems)
    if select is not None:
        settings.select = select
    if ignore is not None:
        settings.ignore = ignore
    if getattr(args, "fix", False) or getattr(args, "diff", False):
        for problem in problems:
            print(f"lmlogger: error: {terminal(problem)}", file=sys.stderr)
        fixed = _fix(args, settings)
        return 2 if problems else fixed
    result = check(args.paths, settings)
    for problem in problems:
        print(f"lmlogger: error: {terminal(problem)}", file=sys.stderr)
    for error in result.errors:  # paths and parser messages come from untrusted trees
        print(f"lmlogger: error: {terminal(error)}", file=sys.stderr)
    if args.format == "json":
        report = _output.to_json(result)
    elif args.format == "sarif":
        report = _output.sarif(result, _VERSION)
    elif args.format == "github":
        report = _output.github(result)
    elif getattr(args, "statistics", False):
        report = _output.statistics(result)
    else:
        report = "\n".join(terminal(line) for line in _output.text(result).splitlines())
    if report:
        print(report)
    return 2 if problems else result.exit_code


def _fix(args: argparse.Namespace, settings: Settings) -> int:
    """``--fix`` (write) or ``--diff`` (print a unified diff, write nothing), as ruff does.

    Exit codes: ``--fix`` 0 when nothing is left to report, 1 when findings remain; ``--diff`` 1 when it
    would change a file; 2 bad input.
    """
    import difflib

    from lmlogger.audit._escape import terminal
    from lmlogger.lint import _output
    from lmlogger.lint._apply import fix_paths

    done = fix_paths(list(args.paths), settings)
    for error in done.result.errors:
        print(f"lmlogger: error: {terminal(error)}", file=sys.stderr)
    if args.diff:
        for path, (before, after) in sorted(done.changed.items()):
            shown = terminal(path)
            lines = difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True), shown, shown
            )
            sys.stdout.write("".join(lines))
        count = len(done.fixed)
        print(f"Would fix {count} finding{'s' * (count != 1)} in {len(done.changed)} file(s).", file=sys.stderr)
        return 2 if done.result.errors else (1 if done.changed else 0)
    for path, (_, after) in sorted(done.changed.items()):
        Path(path).write_text(after, encoding="utf-8", newline="")
    report = LintResult(findings=[f for f, _ in done.left], errors=done.result.errors, files=done.result.files)
    if args.format != "text":  # the findings left, in the format asked for
        formats = {"json": _output.to_json, "github": _output.github}
        print(_output.sarif(report, _VERSION) if args.format == "sarif" else formats[args.format](report))
        return report.exit_code
    text = _output.text(report)
    reasons = {(f.path, f.line, f.col, f.code): why for f, why in done.left}
    pending = None
    for line in text.splitlines():
        if pending is not None and not line.startswith("    "):
            print(pending)
            pending = None
        print(terminal(line))
        head = line.split(" ", 1)[0]
        for (path, number, col, code), why in reasons.items():
            if head == f"{path}:{number}:{col}:" and f" {code} " in line:
                pending = f"    not auto-fixable: {terminal(why)}"
    if pending is not None:
        print(pending)
    count = len(done.fixed)
    print(f"Fixed {count} finding{'s' * (count != 1)} in {len(done.changed)} file(s); {len(done.left)} left.")
    return report.exit_code
