"""How fast `lmlogger lint` reads a large real tree, against parsing the same files with `ast.parse` alone.

Usage:
    python benchmarks/lint_speed.py [PATH ...] [--repeats 5] [--json]

Default tree: the installed sources of torch, lightning and torchmetrics (thousands of real files, with
many LightningModules and Metrics among them). Reports files per second for the lint and for a loop that
only reads and parses each file, the ratio of the two (target: within 2x), and the same for the files
that hold Lightning or torchmetrics code (the ones the lint analyses beyond parsing). Medians of
alternating runs.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lmlogger.lint._check import _MARKERS, check, python_files
from lmlogger.lint._config import Settings


def default_tree() -> list[str]:
    roots = []
    for name in ("torch", "lightning", "torchmetrics"):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            roots.append(next(iter(spec.submodule_search_locations)))
    return roots


def parse_only(files: list[Path]) -> int:
    """Read and ``ast.parse`` each file, then drop its tree: parsing alone, as Python does it by default."""
    parsed = 0
    for path in files:
        with contextlib.suppress(SyntaxError, ValueError):  # as the lint: reported, not fatal
            ast.parse(path.read_bytes(), filename=str(path))
            parsed += 1
    return parsed


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="folders to read (default: torch, lightning, torchmetrics)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    paths = args.paths or default_tree()
    settings = Settings(exclude=())
    files = python_files(paths, settings, [])
    relevant = [f for f in files if any(m in f.read_bytes() for m in _MARKERS)]
    rows = {}
    for label, subset in (("all files", files), ("Lightning/torchmetrics files", relevant)):
        lint_times, parse_times = [], []
        findings = 0
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            parse_times.append(timed(lambda subset=subset: parse_only(subset)))
            result = None

            def run(subset=subset):
                nonlocal result
                result = check([str(f) for f in subset], settings)

            lint_times.append(timed(run))
            findings = len(result.findings)
        lint_s, parse_s = statistics.median(lint_times), statistics.median(parse_times)
        rows[label] = {
            "files": len(subset),
            "findings": findings,
            "lint_s": round(lint_s, 3),
            "parse_s": round(parse_s, 3),
            "lint_files_per_s": round(len(subset) / lint_s, 1),
            "parse_files_per_s": round(len(subset) / parse_s, 1),
            "ratio": round(lint_s / parse_s, 2),
        }
    if args.json:
        print(json.dumps({"paths": paths, "cpus": os.cpu_count(), "rows": rows}, indent=2))
        return
    print(f"tree: {', '.join(paths)}")
    for label, row in rows.items():
        print(
            f"{label:>30}: {row['files']:5d} files, lint {row['lint_files_per_s']:8.1f} files/s, "
            f"ast.parse {row['parse_files_per_s']:8.1f} files/s, ratio {row['ratio']:.2f}x, "
            f"{row['findings']} findings"
        )


if __name__ == "__main__":
    main()
