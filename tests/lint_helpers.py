"""Helpers of the lint tests: write small modules into a folder and check them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from lmlogger.lint import lint

HEADER = """\
import lightning.pytorch as pl
import torch
import torchmetrics
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryPrecision,
    MulticlassAccuracy,
)
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def findings(root: Path, source: str | None = None, **files: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every finding in ``source`` (written as m.py after HEADER) and ``files``."""
    if source is not None:
        files["m.py"] = HEADER + textwrap.dedent(source)
    write(root, files)
    result = lint([str(root)])
    assert not result.errors, result.errors
    return [(f.line, f.code) for f in result.findings]


def codes(root: Path, source: str) -> list[str]:
    return [code for _, code in findings(root, source)]


def line_of(source: str, needle: str) -> int:
    """The 1-based line of ``needle`` in HEADER + source."""
    text = HEADER + textwrap.dedent(source)
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in source")


def cli(*args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "lmlogger", "lint", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )
