"""Post-hoc audits of runs recorded by `VerifiedLogger`.

Example:
    ```python
    import lmlogger

    report = lmlogger.audit("logs/lightning_logs/version_0")
    assert report.ok, report.to_dict()["summary"]
    ```
"""

from __future__ import annotations

import math
import os
import stat
from typing import Any

from lmlogger.audit._model import AuditReport, EpochReport, KeyReport, RunReport, StageReport
from lmlogger.audit._sidecar import AuditInputError, file_kind, find_sidecars, is_sidecar_name, run_report

#: File names audited as checkpoints (their ``checkpoint["lmlogger"]`` entry).
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")


def audit(
    source: str | os.PathLike[str],
    tracking_uri: str | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> AuditReport:
    """Audit a run dir, a folder of runs, or an MLflow run (``runs:/<run_id>``).

    Args:
        source: a TensorBoard or CSV run dir, a folder holding many runs, ``runs:/<run_id>``, or a checkpoint
            file (``.ckpt``) saved during a verified run.
        tracking_uri: MLflow tracking URI for ``runs:/`` sources (default: ``MLFLOW_TRACKING_URI``).
        rtol: re-judge the recorded values with this relative tolerance (default: the run's own).
        atol: re-judge the recorded values with this absolute tolerance (default: the run's own).

    Returns:
        The report. For a folder of runs, a run that cannot be read is named in ``errors`` (its
        ``exit_code`` is then 2) and the others are audited.

    Raises:
        AuditInputError: the source does not exist, holds no lmlogger run, its one sidecar is corrupt, or a
            checkpoint is malformed or over one of the reader's limits (docs/audit.md). Nothing else is
            raised for a bad checkpoint.
    """
    source = os.fspath(source)
    if source.startswith("runs:/"):
        from lmlogger.audit._mlflow import audit_mlflow_run

        return AuditReport(runs=[audit_mlflow_run(source, tracking_uri, rtol=rtol, atol=atol)])
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise AuditInputError(f"{name}={value}: a tolerance must be a finite number >= 0")
    try:
        info = os.stat(source)
    except OSError as err:
        reason = "no such file or directory" if isinstance(err, FileNotFoundError) else (err.strerror or str(err))
        raise AuditInputError(f"{source}: {reason}") from None
    if stat.S_ISREG(info.st_mode) and source.endswith(CHECKPOINT_SUFFIXES):
        from lmlogger.audit._checkpoint import audit_checkpoint

        return AuditReport(runs=[audit_checkpoint(source)])
    if stat.S_ISREG(info.st_mode):
        if not is_sidecar_name(os.path.basename(source)):
            raise AuditInputError(f"{source}: not a run dir nor an lmlogger sidecar (provenance.jsonl)")
        report, _, _ = _one(source, rtol, atol)
        return AuditReport(runs=[report])
    if not stat.S_ISDIR(info.st_mode):
        kind = file_kind(info.st_mode)
        raise AuditInputError(f"{source}: not a run dir, a folder of runs nor a sidecar (it is {kind})")
    try:
        if not os.listdir(source):
            raise AuditInputError(f"{source}: the folder is empty")
    except OSError as err:
        raise AuditInputError(f"{source}: cannot read the folder ({err.strerror or err})") from None
    sidecars, errors = find_sidecars(source)
    if not sidecars:
        if errors:
            raise AuditInputError(errors[0])
        raise AuditInputError(
            f"{source}: no lmlogger run found (no lmlogger/provenance.jsonl below it); "
            "was the run trained with VerifiedLogger?"
        )
    if len(sidecars) == 1 and not errors:
        report, _, _ = _one(sidecars[0], rtol, atol)
        return AuditReport(runs=[report])
    runs: list[tuple[RunReport, Any, str]] = []
    for path in sidecars:
        try:
            runs.append(_one(path, rtol, atol))
        except AuditInputError as err:
            errors.append(str(err))
    return AuditReport(runs=_distinct(runs), errors=errors)


def _one(path: str, rtol: float | None, atol: float | None) -> tuple[RunReport, Any, str]:
    """``(report, header, sidecar path)`` of one sidecar, checked against its backend's store."""
    from lmlogger.audit._stores import cross_check

    run_dir = os.path.dirname(os.path.dirname(path))
    report, records = run_report(run_dir, path, rtol=rtol, atol=atol)
    run = records[0].run
    metric_prefix = run.get("metric_prefix") if isinstance(run, dict) else None  # the logger's own prefix=
    report.problems.extend(cross_check(run_dir, report, metric_prefix if isinstance(metric_prefix, str) else ""))
    return report, records[0], path


def _distinct(runs: list[tuple[RunReport, Any, str]]) -> list[RunReport]:
    """Each run once. Two sidecars are the same run only when that is provable: the same tracker run id
    (MLflow, W&B), or one file a copy or a prefix of the other (a tracker's copy of the local sidecar, taken
    before the run ended). The copy holding more is kept. Two runs that merely share a logger class and a
    relative ``save_dir`` (two CI jobs with ``TensorBoardLogger("logs")``) stay two runs."""
    kept: list[tuple[RunReport, Any, str]] = []
    for run in runs:
        for i, other in enumerate(kept):
            if _same_run(run, other):
                if _size(run[2]) > _size(other[2]):
                    kept[i] = run
                break
        else:
            kept.append(run)
    return [report for report, _, _ in kept]


def _same_run(a: tuple[RunReport, Any, str], b: tuple[RunReport, Any, str]) -> bool:
    header_a, header_b = a[1], b[1]
    if header_a.logger != header_b.logger:
        return False
    ids = {"MLFlowLogger": "run_id", "WandbLogger": "version"}
    field = ids.get(header_a.logger)
    if field is not None:
        id_a, id_b = header_a.run.get(field), header_b.run.get(field)
        if isinstance(id_a, str) and id_a and id_a == id_b:
            return True
    return _prefix_of(a[2], b[2])


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _prefix_of(path_a: str, path_b: str) -> bool:
    """Whether one file's bytes are a prefix of the other's (both were read already; they are regular files)."""
    short, long = sorted((path_a, path_b), key=_size)
    try:
        with open(short, "rb") as fa, open(long, "rb") as fb:
            while True:
                chunk = fa.read(1 << 16)
                if not chunk:
                    return True
                if fb.read(len(chunk)) != chunk:
                    return False
    except OSError:
        return False


__all__ = ["AuditInputError", "AuditReport", "EpochReport", "KeyReport", "RunReport", "StageReport", "audit"]
