"""``lmlogger`` command line: thin over :func:`lmlogger.audit`; the exit code means something.

Exit codes: 0 nothing mismatched, 1 at least one mismatch, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.print_usage(sys.stderr)
        print(f"lmlogger: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lmlogger", description="Verified epoch metrics for PyTorch Lightning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    audit = sub.add_parser("audit", help="audit a run dir, a folder of runs, or runs:/<run_id>")
    audit.add_argument("source", help="run dir, folder of runs, or runs:/<run_id> (MLflow)")
    audit.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    audit.add_argument("--format", choices=("table", "json", "markdown", "prov", "html"), default="table")
    audit.add_argument("--plot", metavar="FILE.png", default=None, help="draw logged vs reference per key")
    audit.add_argument("--rtol", type=float, default=None, help="re-judge with this relative tolerance")
    audit.add_argument("--atol", type=float, default=None, help="re-judge with this absolute tolerance")
    audit.add_argument("--no-color", action="store_true", help="no ANSI colour in the table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from lmlogger.audit import audit
    from lmlogger.audit._render import print_table, to_json, to_markdown
    from lmlogger.audit._sidecar import AuditInputError

    try:
        report = audit(args.source, tracking_uri=args.tracking_uri, rtol=args.rtol, atol=args.atol)
        if args.plot:
            from lmlogger.audit._plot import plot

            plot(report, args.plot)
        if args.format == "json":
            print(to_json(report))
        elif args.format == "markdown":
            print(to_markdown(report))
        elif args.format == "html":
            from lmlogger.audit._html import to_html

            sys.stdout.write(to_html(report))
        elif args.format == "prov":
            from lmlogger.audit._prov import to_prov_json

            print(to_prov_json(report))
        else:
            print_table(report, colour=False if args.no_color or "NO_COLOR" in os.environ else None)
        sys.stdout.flush()
    except AuditInputError as err:
        print(f"lmlogger: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lmlogger audit ... | head`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return report.exit_code
    except KeyboardInterrupt:
        return 2
    return report.exit_code


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
