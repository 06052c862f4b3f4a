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
from lmlogger.lint._config import ConfigError, codes, load
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
    settings = load(Path(paths[0]) if paths else Path.cwd())
    if select is not None:
        settings.select = codes(list(select), "select")
    if ignore is not None:
        settings.ignore = codes(list(ignore), "ignore")
    return check(paths, settings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lmlogger lint`` (shared by the ``lmlogger`` command line)."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Python files or folders to check")
    parser.add_argument("--format", choices=("text", "json", "sarif", "github"), default="text")
    parser.add_argument("--select", default=None, metavar="CODES", help="comma-separated finding codes to report")
    parser.add_argument("--ignore", default=None, metavar="CODES", help="comma-separated finding codes to skip")
    parser.add_argument(
        "--statistics", action="store_true", help="print the number of findings per code instead of each finding"
    )


def main(args: argparse.Namespace) -> int:
    """Run ``lmlogger lint`` with parsed arguments; print the report; return the exit code.

    Exit codes: 0 nothing found, 1 findings, 2 bad input (a path that is missing or does not parse, a bad
    setting); the other paths are still checked and reported before a 2.
    """
    from lmlogger.audit._escape import terminal
    from lmlogger.lint import _output

    try:
        select = codes(args.select, "--select") if args.select is not None else None
        ignore = codes(args.ignore, "--ignore") if args.ignore is not None else None
        result = lint(args.paths, select, ignore)
    except ConfigError as err:
        print(f"lmlogger: error: {terminal(err)}", file=sys.stderr)
        return 2
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
    return result.exit_code
