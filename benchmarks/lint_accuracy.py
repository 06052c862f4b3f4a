"""Precision and recall of `lmlogger lint` on real public LightningModules labelled by hand.

Usage:
    python benchmarks/lint_accuracy.py CORPUS_ROOT [CORPUS_ROOT ...] [--json]

Each repository of ``tests/lint_data/MANIFEST.json`` is expected as a checkout of its commit in
``CORPUS_ROOT/<owner>+<name>/``, e.g.::

    git clone https://github.com/microsoft/torchgeo CORPUS_ROOT/microsoft+torchgeo
    git -C CORPUS_ROOT/microsoft+torchgeo checkout 7ea0616ded0cc27a8feb8b2aafefd7c14155f6fb

(no source of those repositories is kept in this one). A finding counts as a true positive when its
path, line and code match a label; a finding with no label is a false positive; a label no finding
matches is a false negative. Repositories missing from the roots are listed and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lmlogger.lint import lint

MANIFEST = Path(__file__).resolve().parent.parent / "tests" / "lint_data" / "MANIFEST.json"


def measure(roots: list[Path]) -> dict:
    manifest = json.loads(MANIFEST.read_text())
    sets: dict[str, dict] = {}
    missing = []
    for entry in manifest["repos"]:
        folder = next(
            (
                root / entry["repo"].replace("/", "+")
                for root in roots
                if (root / entry["repo"].replace("/", "+")).is_dir()
            ),
            None,
        )
        if folder is None:
            missing.append(entry["repo"])
            continue
        result = lint([str(folder)], None, None)
        found = set()
        for f in result.findings:
            relative = Path(f.path).resolve().relative_to(folder.resolve()).as_posix()
            found.add((relative, f.line, f.code))
        expected = {(e["path"], e["line"], e["code"]) for e in entry["expected"]}
        row = sets.setdefault(entry["set"], {"repos": 0, "files": 0, "tp": 0, "fp": [], "fn": []})
        row["repos"] += 1
        row["files"] += result.files
        row["tp"] += len(found & expected)
        row["fp"] += [f"{entry['repo']}:{p}:{line} {code}" for p, line, code in sorted(found - expected)]
        row["fn"] += [f"{entry['repo']}:{p}:{line} {code}" for p, line, code in sorted(expected - found)]
    for row in sets.values():
        tp, fp, fn = row["tp"], len(row["fp"]), len(row["fn"])
        row["precision"] = round(tp / (tp + fp), 3) if tp + fp else None
        row["recall"] = round(tp / (tp + fn), 3) if tp + fn else None
    return {"sets": sets, "missing": missing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding the <owner>+<name> checkouts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args.roots)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, row in report["sets"].items():
        print(
            f"{name:>8}: {row['repos']} repositories, {row['files']} files, TP {row['tp']}, FP {len(row['fp'])}, "
            f"FN {len(row['fn'])}, precision {row['precision']}, recall {row['recall']}"
        )
        for line in row["fp"]:
            print(f"          false positive: {line}")
        for line in row["fn"]:
            print(f"          false negative: {line}")
    if report["missing"]:
        print(f"not found under the roots: {', '.join(report['missing'])}")


if __name__ == "__main__":
    main()
