"""Post-hoc audits of runs recorded by `VerifiedLogger`.

Example:
    ```python
    import lmlogger

    report = lmlogger.audit("logs/lightning_logs/version_0")
    assert report.ok, report.to_dict()["summary"]
    ```
"""

from __future__ import annotations

import json
import os

from lmlogger.audit._model import AuditReport, EpochReport, KeyReport, RunReport
from lmlogger.audit._sidecar import AuditInputError, find_sidecars, run_report


def audit(
    source: str | os.PathLike[str],
    tracking_uri: str | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> AuditReport:
    """Audit a run dir, a folder of runs, or an MLflow run (``runs:/<run_id>``).

    Args:
        source: a TensorBoard or CSV run dir, a folder holding many runs, or ``runs:/<run_id>``.
        tracking_uri: MLflow tracking URI for ``runs:/`` sources (default: ``MLFLOW_TRACKING_URI``).
        rtol: re-judge the recorded values with this relative tolerance (default: the run's own).
        atol: re-judge the recorded values with this absolute tolerance (default: the run's own).

    Raises:
        AuditInputError: the source does not exist, holds no lmlogger run, or a sidecar is corrupt.
    """
    source = os.fspath(source)
    if source.startswith("runs:/"):
        from lmlogger.audit._mlflow import audit_mlflow_run

        return AuditReport(runs=[audit_mlflow_run(source, tracking_uri, rtol=rtol, atol=atol)])
    if not os.path.exists(source):
        raise AuditInputError(f"{source}: no such file or directory")
    if os.path.isfile(source):
        if os.path.basename(source) != "provenance.jsonl":
            raise AuditInputError(f"{source}: not a run dir nor an lmlogger sidecar (provenance.jsonl)")
        sidecars = [source]
    else:
        if not os.listdir(source):
            raise AuditInputError(f"{source}: the folder is empty")
        sidecars = find_sidecars(source)
        if not sidecars:
            raise AuditInputError(
                f"{source}: no lmlogger run found (no lmlogger/provenance.jsonl below it); "
                "was the run trained with VerifiedLogger?"
            )
    from lmlogger.audit._stores import cross_check

    runs: list[RunReport] = []
    seen: dict[str, int] = {}  # run identity (logger class + run info of the first header) -> index
    sizes: list[int] = []
    for path in sidecars:
        run_dir = os.path.dirname(os.path.dirname(path))
        report, records = run_report(run_dir, path, rtol=rtol, atol=atol)
        metric_prefix = records[0].run.get("metric_prefix") if isinstance(records[0].run, dict) else None
        report.problems.extend(cross_check(run_dir, report, metric_prefix if isinstance(metric_prefix, str) else ""))
        # The same run can sit twice below a folder (the local sidecar and a tracker's own copy of it:
        # MLflow's local artifact store, W&B's run files): audit it once, keeping the copy that holds more.
        identity = json.dumps([records[0].logger, records[0].run], sort_keys=True, default=str)
        if identity in seen:
            index = seen[identity]
            if (report.complete, len(records)) > (runs[index].complete, sizes[index]):
                runs[index], sizes[index] = report, len(records)
            continue
        seen[identity] = len(runs)
        runs.append(report)
        sizes.append(len(records))
    return AuditReport(runs=runs)


__all__ = ["AuditInputError", "AuditReport", "EpochReport", "KeyReport", "RunReport", "audit"]
