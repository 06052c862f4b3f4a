"""The audit report: plain dataclasses whose ``to_dict()`` is the ``--format json`` contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmlogger._records import VERDICTS, json_number


@dataclass
class EpochReport:
    """One key's verdict for one epoch."""

    epoch: int
    step: int | None
    logged: float | None
    reference: float | None
    verdict: str
    phase: str = "train"
    reason: str | None = None
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "phase": self.phase,
            "step": self.step,
            "logged": json_number(self.logged),
            "reference": json_number(self.reference),
            "verdict": self.verdict,
        }
        if self.findings:
            out["findings"] = list(self.findings)
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class KeyReport:
    """One logged key: its provenance and context, and the verdict of each epoch."""

    key: str
    provenance: str
    hook: str
    phase: str
    reduce_fx: str
    on_step: bool
    on_epoch: bool
    sync_dist: bool
    batch_size: int | None
    dataloader_idx: int | None
    logged_keys: list[str]
    metric_attribute: str | None
    verdict: str | None = None
    findings: list[str] = field(default_factory=list)
    fix: str | None = None
    reason: str | None = None
    epochs: list[EpochReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "provenance": self.provenance,
            "hook": self.hook,
            "phase": self.phase,
            "reduce_fx": self.reduce_fx,
            "on_step": self.on_step,
            "on_epoch": self.on_epoch,
            "sync_dist": self.sync_dist,
            "batch_size": self.batch_size,
            "dataloader_idx": self.dataloader_idx,
            "logged_keys": list(self.logged_keys),
            "metric_attribute": self.metric_attribute,
            "verdict": self.verdict,
            "findings": list(self.findings),
            "fix": self.fix,
            "reason": self.reason,
            "epochs": [e.to_dict() for e in self.epochs],
        }


@dataclass
class RunReport:
    """The audit of one run (one sidecar)."""

    source: str
    backend: str
    complete: bool
    status: str | None
    stages: list[str]
    keys: list[KeyReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    #: What checkpoint / early-stopping / scheduler callbacks decided on the logged values and would have
    #: decided on the references (:class:`lmlogger._replay.Decision`, one per callback).
    decisions: list[Any] = field(default_factory=list)
    #: For a checkpoint file: when it was saved and by which callback (``None`` for a run).
    checkpoint: dict[str, Any] | None = None

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(VERDICTS, 0)
        for key in self.keys:
            if key.verdict is not None:
                counts[key.verdict] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "backend": self.backend,
            "complete": self.complete,
            "status": self.status,
            "stages": list(self.stages),
            "summary": self.counts(),
            "problems": list(self.problems),
            "versions": dict(self.versions),
            "keys": [k.to_dict() for k in self.keys],
        }
        if self.decisions:
            out["decisions"] = [d.to_dict() for d in self.decisions]
        if self.checkpoint is not None:
            out["checkpoint"] = dict(self.checkpoint)
        return out


@dataclass
class AuditReport:
    """The audit of one or more runs. ``to_dict()`` is exactly what ``lmlogger audit --format json`` prints."""

    runs: list[RunReport] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        total = dict.fromkeys(VERDICTS, 0)
        for run in self.runs:
            for verdict, n in run.counts().items():
                total[verdict] += n
        return total

    @property
    def ok(self) -> bool:
        """True when nothing mismatched."""
        return self.summary["mismatch"] == 0

    @property
    def exit_code(self) -> int:
        """0 when nothing mismatched, 1 otherwise (the CLI's exit code)."""
        return 0 if self.ok else 1

    def by_key(self) -> dict[str, KeyReport]:
        """All keys of all runs by key name (the last run wins on duplicates)."""
        return {k.key: k for run in self.runs for k in run.keys}

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "runs": [run.to_dict() for run in self.runs]}
