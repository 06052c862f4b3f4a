"""Lightning's own logger tests, plain and with every logger handed to a Trainer wrapped in VerifiedLogger.

    python benchmarks/lightning_logger_tests.py CHECKOUT [TEST_FILE_OR_NODE ...] [--off] [-k EXPR]

CHECKOUT is a clone of github.com/Lightning-AI/pytorch-lightning (a tag close to the installed lightning,
e.g. ``git clone --branch 2.6.5 ...``); without it (or when it does not exist) the script says so and exits 0.
Tests default to ``tests/tests_pytorch/loggers``. Each selection runs twice, in one pytest process each:
plain, then wrapped (``benchmarks/_peer_plugin.py``; ``--off`` switches lmlogger's additions off). Prints the
tests that pass plain and do not pass wrapped; exit 1 when there are any. Run small batches (one file at a
time): the files are long and the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def outcomes(checkout: str, tests: list[str], wrap: bool, off: bool, keyword: str | None) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.xml")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [HERE, ROOT, os.path.join(checkout, "tests"), os.environ.get("PYTHONPATH", "")]
            ),
            "LMLOGGER_PEER_WRAP": "1" if wrap else "0",
            "LMLOGGER_PEER_OFF": "1" if off else "0",
        }
        cmd = [sys.executable, "-m", "pytest", "-p", "_peer_plugin", "-p", "no:cacheprovider", "-q"]
        cmd += [f"--junitxml={report}", *tests]
        if keyword:
            cmd += ["-k", keyword]
        subprocess.run(cmd, cwd=os.path.join(checkout, "tests"), env=env, capture_output=True, text=True)
        if not os.path.exists(report):
            return {}
        result = {}
        for case in ET.parse(report).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            state = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    state = "failed"
                elif child.tag == "skipped":
                    state = "skipped"
            result[name] = state
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", nargs="?", default=os.environ.get("LIGHTNING_CHECKOUT"))
    parser.add_argument("tests", nargs="*", default=["tests_pytorch/loggers"])
    parser.add_argument("--off", action="store_true", help="switch lmlogger's additions off in the wrapped run")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    args = parser.parse_args()
    if not args.checkout or not os.path.isdir(os.path.join(args.checkout, "tests", "tests_pytorch")):
        print("no Lightning checkout given (CHECKOUT or LIGHTNING_CHECKOUT): nothing to run")
        return 0
    tests = [t[len("tests/") :] if t.startswith("tests/") else t for t in args.tests]
    plain = outcomes(args.checkout, tests, wrap=False, off=False, keyword=args.keyword)
    wrapped = outcomes(args.checkout, tests, wrap=True, off=args.off, keyword=args.keyword)
    count = {s: sum(1 for v in plain.values() if v == s) for s in ("passed", "failed", "skipped")}
    wcount = {s: sum(1 for v in wrapped.values() if v == s) for s in ("passed", "failed", "skipped")}
    print(f"plain:   {count}")
    print(f"wrapped: {wcount}" + ("  (lmlogger's additions off)" if args.off else ""))
    lost = sorted(name for name, state in plain.items() if state == "passed" and wrapped.get(name) != "passed")
    for name in lost:
        print(f"passes plain, {wrapped.get(name, 'missing')} wrapped: {name}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
