"""Auditing an MLflow run (``runs:/<run_id>``) through ``MlflowClient``.

The audit downloads the run's ``lmlogger/provenance.jsonl`` artifact, builds the report from it exactly as for
a local sidecar, then reads the run's metric history and reports every epoch value (and every reference) the
sidecar holds but MLflow does not, or holds with another value.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from lmlogger.audit._model import RunReport
from lmlogger.audit._sidecar import AuditInputError, open_regular, run_report
from lmlogger.audit._stores import _close
from lmlogger.records._mlflow_names import (
    ARTIFACT_PATH,
    PROBE_TIMEOUT_S,
    _first_line,
    metric_name,
    redact,
    reference_name,
)
from lmlogger.records._records import Header


def server_down(uri: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the MLflow server at an ``http(s)`` tracking URI does not answer, or ``None`` when it does.

    Any HTTP answer (even an error status) counts as up; only a refused, failed or timed-out connection is
    down. Other URIs (``sqlite:``, ``file:``, ``databricks``) are never probed.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout).close()
    except requests.exceptions.SSLError:
        return None  # it answered; the client's own TLS settings are MLflow's business
    except requests.exceptions.RequestException as err:
        return f"{type(err).__name__}: {_first_line(err)}"
    return None


#: Used for the audit's own MLflow calls unless the environment already sets them: fail fast, not after minutes.
AUDIT_HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


@contextlib.contextmanager
def _fail_fast() -> Iterator[None]:
    """MLflow reads these per request: set them for the audit's calls only, and restore them."""
    added = [name for name in AUDIT_HTTP_SETTINGS if name not in os.environ]
    try:
        for name in added:
            os.environ[name] = AUDIT_HTTP_SETTINGS[name]
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _run_id_of(source: str) -> str:
    run_id = source[len("runs:/") :].strip("/").split("/", 1)[0]
    if not run_id:
        raise AuditInputError(f"{source}: no run id; expected runs:/<run_id>")
    return run_id


def audit_mlflow_run(
    source: str,
    tracking_uri: str | None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> RunReport:
    """The :class:`RunReport` of the MLflow run ``runs:/<run_id>``, checked against the run's metric history.

    Args:
        source: ``runs:/<run_id>``.
        tracking_uri: the MLflow tracking URI (``http(s)://``, ``sqlite:``, ``file:``...); default:
            ``MLFLOW_TRACKING_URI``.
        rtol: re-judge the recorded values with this relative tolerance (default: the run's own).
        atol: re-judge the recorded values with this absolute tolerance (default: the run's own).

    Raises:
        AuditInputError: no tracking URI, mlflow not installed, server unreachable, no such run, or the run
            has no lmlogger artifact.

    Example::

        from lmlogger.audit._mlflow import audit_mlflow_run

        report = audit_mlflow_run("runs:/0a1b2c", "http://127.0.0.1:5000")
        print(report.counts(), report.problems)
    """
    run_id = _run_id_of(source)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise AuditInputError(f"{source}: no MLflow tracking URI; pass --tracking-uri URI or set MLFLOW_TRACKING_URI")
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise AuditInputError(f"{source}: auditing MLflow runs needs mlflow: pip install 'lmlogger[mlflow]'") from None
    where = redact(uri)
    _existing_store(source, uri, where)
    with _fail_fast():
        down = server_down(uri)
        if down is not None:
            raise AuditInputError(f"{source}: cannot reach the MLflow tracking server at {where} ({down})")
        try:
            client = MlflowClient(uri)
        except Exception as err:  # a bad URI scheme, a store that cannot open: name the URI, no traceback
            raise AuditInputError(f"{source}: cannot open the MLflow store at {where}: {_line(err, 800)}") from None
        try:
            run = client.get_run(run_id)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise AuditInputError(f"{source}: no run with id {run_id!r} at {where}") from None
            raise AuditInputError(
                f"{source}: MLflow at {where} could not read run {run_id!r}: {_line(err, 800)}"
            ) from None
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = client.download_artifacts(run_id, ARTIFACT_PATH, tmp)
            except Exception as err:
                local = run.data.tags.get("lmlogger.sidecar.local")
                hint = f"; its local sidecar was {local}: `lmlogger audit` its folder" if local else ""
                raise AuditInputError(
                    f"{source}: run {run_id!r} at {where} has no {ARTIFACT_PATH} artifact ({_line(err)}); "
                    f"was it trained with VerifiedLogger?{hint}"
                ) from None
            report, records = run_report(source, path, rtol=rtol, atol=atol)
        try:
            report.problems.extend(check_history(client, run_id, report, records[0]))
        except MlflowException as err:
            raise AuditInputError(
                f"{source}: MLflow at {where} could not read the metric history: {_line(err)}"
            ) from None
    return report


def _existing_store(source: str, uri: str, where: str) -> None:
    """An audit never writes to a store: MLflow creates a missing ``sqlite:`` database or ``file:`` store (with a
    default experiment) on first contact, so a local store must exist before the client is made."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme.startswith("sqlite"):
        if parts.path in ("", "/", "/:memory:") or ":memory:" in uri:
            raise AuditInputError(f"{source}: {where} is an in-memory database; it holds no run")
        path = unquote(parts.path[1:])  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
        try:
            with open_regular(path, "MLflow database") as fh:
                magic = fh.read(16)
        except AuditInputError:
            raise AuditInputError(f"{source}: no MLflow database at {where} (the file {path} does not exist)") from None
        if magic != b"SQLite format 3\x00":
            raise AuditInputError(f"{source}: {where} is not an SQLite database")
    elif scheme == "file" or len(scheme) <= 1:  # file:, a plain path, or a Windows drive letter
        path = unquote(parts.path) if scheme == "file" else uri
        if not os.path.isdir(path):
            raise AuditInputError(f"{source}: no MLflow file store at {where} (no such folder)")


def check_history(client: Any, run_id: str, report: RunReport, header: Header) -> list[str]:
    """Disagreements between the sidecar's epoch values and references and the run's MLflow metric history."""
    metric_prefix = str(header.run.get("metric_prefix") or "")
    prefix = str(header.options.get("prefix") or "lmlogger/reference/")
    histories: dict[str, dict[int, list[float]]] = {}

    def history(name: str) -> dict[int, list[float]]:
        if name not in histories:
            steps: dict[int, list[float]] = {}
            for metric in client.get_metric_history(run_id, name):
                steps.setdefault(int(metric.step), []).append(float(metric.value))
            histories[name] = steps
        return histories[name]

    problems = []
    for key in report.keys:
        checks = [
            (metric_name(key.key, metric_prefix), "logged", [(e, e.logged) for e in key.epochs]),
            (
                reference_name(key.key, prefix, metric_prefix)[1],
                "reference",
                [(e, e.reference) for e in key.epochs if e.reference is not None and math.isfinite(e.reference)],
            ),
        ]
        for name, what, values in checks:
            for epoch, value in values:
                if value is None:
                    continue
                step = epoch.step or 0  # MLFlowLogger logs a missing step as 0
                stored = history(name).get(step, [])
                label = f"{key.key}: {what} value of {epoch.phase} epoch {epoch.epoch} (step {step})"
                if not stored:
                    problems.append(f"{label} is in the sidecar but not in the MLflow metric `{name}`")
                elif not any(_close(v, value) for v in stored):
                    shown = ", ".join(f"{v:.6g}" for v in stored)
                    problems.append(f"{label} is {shown} in the MLflow metric `{name}` but {value:.6g} in the sidecar")
    return problems


def _line(err: BaseException, limit: int = 300) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
