"""``lmlogger`` command line: thin over :func:`lmlogger.audit`; the exit code means something.

Exit codes: 0 nothing mismatched, 1 at least one mismatch, 2 bad input or usage.

Each command is a subparser with its own ``run`` function (``set_defaults(run=...)``); a new command adds a
``_add_<name>(sub)`` and one line in :func:`parser`. Nothing here imports torch or Lightning.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

_FORMATS = ("table", "json", "markdown", "prov", "html")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (the usage banner only with --help)
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: a tolerance must be a finite number >= 0")
    return value


def _version() -> str:
    from lmlogger import __version__

    return f"lmlogger {__version__}"


def parser() -> argparse.ArgumentParser:
    """The ``lmlogger`` argument parser (one subparser per command)."""
    top = _Parser(prog="lmlogger", description="Verified epoch metrics for PyTorch Lightning.")
    top.add_argument("--version", action="version", version=_version())
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_audit(sub)
    _add_lint(sub)
    return top


def _add_audit(sub: Any) -> None:
    audit = sub.add_parser(
        "audit",
        prog="lmlogger audit",
        help="audit a run dir, a folder of runs, runs:/<run_id>, or a checkpoint (.ckpt)",
        description="Audit recorded runs. Exit 0: nothing mismatched; 1: a mismatch; 2: bad input or usage.",
    )
    audit.add_argument(
        "source",
        help="run dir, folder of runs, a provenance.jsonl, runs:/<run_id> (MLflow), or a checkpoint (.ckpt)",
    )
    audit.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    audit.add_argument("--format", choices=_FORMATS, default="table", help="output format (default: table)")
    audit.add_argument("--plot", metavar="FILE.png", default=None, help="draw logged vs reference per key")
    audit.add_argument("--rtol", type=_tolerance, default=None, help="re-judge with this relative tolerance")
    audit.add_argument("--atol", type=_tolerance, default=None, help="re-judge with this absolute tolerance")
    audit.add_argument("--no-color", action="store_true", help="no ANSI colour in the table")
    audit.set_defaults(run=_run_audit)


def _run_audit(args: argparse.Namespace) -> int:
    from lmlogger.audit import audit
    from lmlogger.audit._render import print_table, to_json, to_markdown

    report = audit(args.source, tracking_uri=args.tracking_uri, rtol=args.rtol, atol=args.atol)
    if args.plot:
        from lmlogger.audit._plot import plot

        plot(report, args.plot)
    try:
        if args.format == "json":
            print(to_json(report))
        elif args.format == "markdown":
            print(to_markdown(report), end="")
        elif args.format == "html":
            from lmlogger.audit._html import to_html

            sys.stdout.write(to_html(report))
        elif args.format == "prov":
            from lmlogger.audit._prov import to_prov_json

            print(to_prov_json(report))
        else:
            print_table(report, colour=False if args.no_color or "NO_COLOR" in os.environ else None)
        sys.stdout.flush()
    except BrokenPipeError:  # `lmlogger audit ... | head`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    for error in report.errors:  # runs of a folder that could not be read: one line each, exit 2
        _error(error)
    return report.exit_code


def _add_lint(sub: Any) -> None:
    from lmlogger.lint import add_arguments

    lint = sub.add_parser(
        "lint",
        prog="lmlogger lint",
        help="find wrong self.log patterns in Python source, before any run",
        description="Static check of LightningModules. Exit 0: nothing found; 1: findings; 2: bad input.",
    )
    add_arguments(lint)
    lint.set_defaults(run=_run_lint)


def _run_lint(args: argparse.Namespace) -> int:
    from lmlogger.lint import main as lint_main

    return lint_main(args)


def _error(message: str) -> None:
    from lmlogger.audit._escape import terminal

    print(f"lmlogger: error: {terminal(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    top = parser()
    args = top.parse_args(argv)
    if getattr(args, "run", None) is None:
        top.error("a command is required: audit or lint")
    from lmlogger.audit._sidecar import AuditInputError

    try:
        return args.run(args)
    except AuditInputError as err:
        _error(str(err))
        return 2
    except KeyboardInterrupt:
        return 2
    except Exception as err:  # the last guard of "exit 2 and one line": a bug of ours, named, never a traceback
        text = str(err).strip().splitlines()
        _error(
            f"{getattr(args, 'source', '')}: internal error ({type(err).__name__}: {text[0][:200] if text else ''}); "
            "please report it"
        )
        return 2


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
