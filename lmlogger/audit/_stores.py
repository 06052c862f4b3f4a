"""Reading the backend's own store (metrics.csv, TensorBoard event files) to check the sidecar.

The sidecar says which value each epoch key had when the logger received it; the store says what
was written. They must agree: a disagreement means the store was edited, the run dir mixes runs,
or a logger dropped values.
"""

from __future__ import annotations

import csv
import glob
import math
import os
from typing import Any

from lmlogger.audit._model import RunReport


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-6 + 1e-5 * abs(b)


def read_csv_metrics(path: str, keys: set[str]) -> dict[str, dict[int, float]]:
    """``{key: {step: value}}`` for ``keys`` from a CSVLogger ``metrics.csv``."""
    out: dict[str, dict[int, float]] = {k: {} for k in keys}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                step = int(float(row.get("step") or "nan"))
            except ValueError:
                continue
            for key in keys:
                cell = row.get(key)
                if cell not in (None, ""):
                    out[key][step] = float(cell)
    return out


def read_tb_scalars(run_dir: str, keys: set[str], steps: set[int] | None = None) -> dict[str, dict[int, float]]:
    """``{key: {step: value}}`` for ``keys`` from the event files of ``run_dir``.

    Only events at ``steps`` are decoded (see :mod:`lmlogger.audit._tfrecord`), so auditing a run
    with millions of points reads the bytes once and decodes a few hundred events.
    """
    from lmlogger.audit._tfrecord import read_scalars

    paths = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
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
    store: dict[str, dict[int, float]] | None = None
    name = None
    if report.backend == "csv" and os.path.isfile(os.path.join(run_dir, "metrics.csv")):
        store, name = read_csv_metrics(os.path.join(run_dir, "metrics.csv"), set(wanted)), "metrics.csv"
    elif report.backend == "tensorboard" and glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
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
            if stored is None:
                problems.append(f"{key}: epoch {epoch.epoch} (step {epoch.step}) is in the sidecar but not in {name}")
            elif not _close(stored, epoch.logged):
                problems.append(
                    f"{key}: epoch {epoch.epoch} (step {epoch.step}) is {stored:.6g} in {name} "
                    f"but {epoch.logged:.6g} in the sidecar"
                )
    return problems
