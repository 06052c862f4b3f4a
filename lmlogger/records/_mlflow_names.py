"""MLflow names lmlogger uses, shared by the runtime sink and the audit: pure Python, no MLflow or torch import.

The runtime (:mod:`lmlogger.runtime.sinks.mlflow`) writes under these names; the reader (:mod:`lmlogger.audit._mlflow`)
reads them back, so both take them from here.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

ARTIFACT_DIR = "lmlogger"
ARTIFACT_PATH = "lmlogger/provenance.jsonl"
RUN_VERDICT_TAG = "lmlogger.verdict"
SUMMARY_TAG = "lmlogger.summary"
SIDECAR_TAG = "lmlogger.sidecar"
# No longer written (no local path in a shared server); runs written before may carry it, and the audit reads it.
LOCAL_SIDECAR_TAG = "lmlogger.sidecar.local"
#: One tag per key: ``verdict|provenance|findings|worst epoch and its gap|fix or reason`` (see sinks/mlflow.py).
KEY_TAG = "lmlogger.key.{}"

#: MLflow's limit on metric, param and tag keys.
MAX_KEY_LENGTH = 250
#: MLflow's limit on tag values before 2.17 (8000 since); the smaller one keeps older servers happy.
MAX_TAG_VALUE_LENGTH = 5000
#: Tags per ``log_batch`` request (MLflow's limit).
TAGS_PER_BATCH = 100
#: Seconds lmlogger waits for ``<tracking uri>/health`` before it skips its own calls.
PROBE_TIMEOUT_S = 5.0

# What MLFlowLogger.log_metrics removes from metric keys (lightning/pytorch/loggers/mlflow.py).
_LIGHTNING_REMOVES = re.compile(r"[^a-zA-Z0-9_/. -]+")
_TAG_ROOM = MAX_KEY_LENGTH - len(KEY_TAG.format(""))


# -- names ------------------------------------------------------------------------------------------
def metric_name(key: str, metric_prefix: str = "") -> str:
    """The name MLFlowLogger gives ``key`` in MLflow: its own prefix added, characters MLflow rejects removed.

    Args:
        key: the key the logger received.
        metric_prefix: ``MLFlowLogger(prefix=...)`` with its join character (``"exp-"``), or ``""``.
    """
    return _LIGHTNING_REMOVES.sub("", metric_prefix + key)


def fit_name(name: str, limit: int, original: str) -> str:
    """``name`` as MLflow accepts it as a path-like key: no empty, ``.`` or ``..`` segments, at most ``limit``
    characters (a short hash of ``original`` keeps shortened names apart)."""
    parts = ["__" if part == ".." else part for part in name.split("/") if part not in ("", ".")]
    name = "/".join(parts) or "_"
    if len(name) > limit:
        digest = hashlib.sha1(original.encode("utf-8")).hexdigest()[:8]
        name = name[: limit - len(digest) - 1].rstrip("/") + "-" + digest
    return name


def reference_name(key: str, prefix: str, metric_prefix: str = "") -> tuple[str, str]:
    """``(what lmlogger passes to MLFlowLogger.log_metrics, the metric name MLflow shows)`` for ``key``'s reference."""
    clean_prefix = _LIGHTNING_REMOVES.sub("", metric_prefix)
    body = fit_name(_LIGHTNING_REMOVES.sub("", prefix + key), MAX_KEY_LENGTH - len(clean_prefix), prefix + key)
    return body, clean_prefix + body


def redact(uri: str) -> str:
    """``uri`` without a user name or password."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
