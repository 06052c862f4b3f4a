"""Regression on real public code labelled by hand (tests/lint_data/MANIFEST.json): the findings are exactly
the labelled wrong call sites. Runs where checkouts of those commits are at hand; see benchmarks/lint_accuracy.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = [
    *filter(None, os.environ.get("LMLOGGER_LINT_CORPUS", "").split(os.pathsep)),
    "/work/shared/lint-realcode",
    "/work/shared/lint-realcode-heldout",
]
ROOTS = [Path(p) for p in CANDIDATES if Path(p).is_dir()]


@pytest.fixture(autouse=True)
def _no_patch_left_behind():
    """The static check patches nothing: the suite's gc-heavy check is moot here."""
    yield


def test_manifest_names_repository_commit_licence_and_labels():
    """Every entry says where the code is (repo, 40-hex commit), its licence, its set and its labels."""
    manifest = json.loads((ROOT / "tests" / "lint_data" / "MANIFEST.json").read_text())
    assert len(manifest["repos"]) >= 10
    for entry in manifest["repos"]:
        assert entry["repo"].count("/") == 1
        assert len(entry["commit"]) == 40 and int(entry["commit"], 16) >= 0
        assert entry["licence"] and entry["set"] in ("dev", "heldout")
        for label in entry["expected"]:
            assert set(label) == {"path", "line", "code", "why"}


@pytest.mark.slow
@pytest.mark.skipif(not ROOTS, reason="no checkout of the labelled repositories (set LMLOGGER_LINT_CORPUS)")
def test_findings_on_real_code_are_exactly_the_labelled_ones():
    """No false positive and no false negative on the labelled repositories found under the roots."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from lint_accuracy import measure
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    report = measure(ROOTS)
    assert report["sets"], f"no labelled repository under {ROOTS}"
    for name, row in report["sets"].items():
        assert row["fp"] == [] and row["fn"] == [], (name, row)
        assert row["tp"] > 0
