"""Reading the backend's own store (metrics.csv, TensorBoard event files) to check the sidecar.

The sidecar says which value each epoch key had when the logger received it; the store says what
was written. They must agree: a disagreement means the store was edited, the run dir mixes runs,
or a logger dropped values.
"""

from __future__ import annotations

import csv
import glob
import io
import math
import os
from collections.abc import Iterator
from typing import Any

from lmlogger.audit._escape import terminal
from lmlogger.audit._model import RunReport
from lmlogger.audit._sidecar import MAX_LINE_BYTES, AuditInputError, open_regular


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-6 + 1e-5 * abs(b)


def _csv_lines(fh: Any, path: str) -> Iterator[str]:
    """Lines of an open text file, each at most :data:`MAX_LINE_BYTES` characters (else :class:`AuditInputError`)."""
    number = 0
    while True:
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise AuditInputError(f"{path}: line {number} is longer than the {MAX_LINE_BYTES}-character limit")
        yield line


def read_csv_metrics(path: str, keys: set[str]) -> dict[str, dict[int, list[float]]]:
    """``{key: {step: [values]}}`` for ``keys`` from a CSVLogger ``metrics.csv`` (a step may hold several
    values when one logger ran several fits).

    Raises:
        AuditInputError: the file is not a regular file, not UTF-8, not CSV, or a cell of ``keys`` is not a number.
    """
    out: dict[str, dict[int, list[float]]] = {k: {} for k in keys}
    with open_regular(path, "metrics file") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(_csv_lines(fh, path))
        try:
            for row in reader:
                try:
                    step = int(float(row.get("step") or "nan"))
                except (ValueError, OverflowError, TypeError):
                    continue
                for key in keys:
                    cell = row.get(key)
                    if cell in (None, ""):
                        continue
                    try:
                        value = float(cell)
                    except (ValueError, TypeError):
                        raise AuditInputError(
                            f"{path}: line {reader.line_num}, column {terminal(key)!r}: "
                            f"{terminal(str(cell)[:40])!r} is not a number"
                        ) from None
                    out[key].setdefault(step, []).append(value)
        except UnicodeDecodeError as err:
            raise AuditInputError(f"{path}: not UTF-8 text ({err.reason})") from None
        except csv.Error as err:
            raise AuditInputError(f"{path}: not a readable CSV file at line {reader.line_num} ({err})") from None
    return out


def read_tb_scalars(run_dir: str, keys: set[str], steps: set[int] | None = None) -> dict[str, dict[int, list[float]]]:
    """``{key: {step: [values]}}`` for ``keys`` from the event files of ``run_dir``.

    Only events at ``steps`` are decoded (see :mod:`lmlogger.audit._tfrecord`), so auditing a run
    with millions of points reads the bytes once and decodes a few hundred events.
    """
    from lmlogger.audit._tfrecord import read_scalars

    paths = sorted(glob.glob(os.path.join(glob.escape(run_dir), "events.out.tfevents.*")))
    return read_scalars(paths, keys, steps)


def cross_check(run_dir: str, report: RunReport, metric_prefix: str = "") -> list[str]:
    """Disagreements between the sidecar's logged epoch values and the backend store.

    ``metric_prefix`` is the wrapped logger's own ``prefix=`` with its join character (``"exp-"``): the
    store holds each key under that name.
    """
    wanted: dict[str, list[Any]] = {}
    for key in report.keys:
        for epoch in key.epochs:
            if epoch.logged is not None and epoch.step is not None:
                wanted.setdefault(metric_prefix + key.key, []).append(epoch)
    if not wanted:
        return []
    store: dict[str, dict[int, list[float]]] | None = None
    name = None
    if report.backend == "csv" and os.path.lexists(os.path.join(run_dir, "metrics.csv")):
        store, name = read_csv_metrics(os.path.join(run_dir, "metrics.csv"), set(wanted)), "metrics.csv"
    elif report.backend == "tensorboard" and glob.glob(os.path.join(glob.escape(run_dir), "events.out.tfevents.*")):
        try:
            steps = {e.step for epochs in wanted.values() for e in epochs}
            store, name = read_tb_scalars(run_dir, set(wanted), steps), "TensorBoard event files"
        except ImportError:
            return [
                "tensorboard is not installed: the event files were not checked (pip install 'lmlogger[tensorboard]')"
            ]
    if store is None:
        return []
    problems = []
    for key, epochs in wanted.items():
        for epoch in epochs:
            stored = store.get(key, {}).get(epoch.step)
            where = f"{key}: epoch {epoch.epoch}{_stage(report, epoch.stage)} (step {epoch.step})"
            if not stored:
                problems.append(f"{where} is in the sidecar but not in {name}")
            elif not any(_close(value, epoch.logged) for value in stored):
                shown = ", ".join(f"{value:.6g}" for value in stored)
                problems.append(f"{where} is {shown} in {name} but {epoch.logged:.6g} in the sidecar")
    return problems


def _stage(report: RunReport, index: int) -> str:
    details = report.stage_details
    if len(details) < 2 or not 1 <= index <= len(details):
        return ""
    return f" of {details[index - 1].label or details[index - 1].stage}"
