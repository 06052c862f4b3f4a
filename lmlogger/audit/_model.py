"""The audit report: plain dataclasses whose ``to_dict()`` is the ``--format json`` contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmlogger.records._coverage import blind_line
from lmlogger.records._gap import relative_gap
from lmlogger.records._records import VERDICTS, VOUCHES, json_number, vouches_for


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
    #: The stage (``RunReport.stage_details[stage - 1]``) this epoch belongs to: repeated fits are told apart.
    stage: int = 1
    samples: int | None = None  # samples behind the value, all ranks, repeats included
    dataset_size: int | None = None
    duplicates: int = 0  # of ``samples``, repeats padding the ranks

    def gap(self) -> float | None:
        """The relative gap ``|logged - reference| / |reference|`` (``None`` without both values; 0 when both
        are NaN or the same infinity; infinite when the reference is 0 and the logged value is not)."""
        return relative_gap(self.logged, self.reference)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "stage": self.stage,
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
        if self.samples is not None:
            out["samples"] = self.samples
        if self.dataset_size is not None:
            out["dataset_size"] = self.dataset_size
        if self.samples is not None or self.duplicates:
            out["duplicates"] = self.duplicates
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
    #: What the reference was built from: ``samples`` (the metric over the epoch's samples: the ``metric_*``
    #: kinds) or ``reduction`` (a plain tensor: Lightning's reduction of the values logged, not what they mean).
    vouches_for: str = ""
    findings: list[str] = field(default_factory=list)
    fix: str | None = None
    reason: str | None = None
    epochs: list[EpochReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.vouches_for not in VOUCHES:
            self.vouches_for = vouches_for(self.provenance)

    def worst_epoch(self) -> tuple[EpochReport, float | None] | None:
        """The epoch behind the key's verdict and its relative gap (see `EpochReport.gap`).

        Among the epochs whose verdict is the key's verdict (its worst), the one with the largest relative gap
        (ties go to the latest epoch); ``None`` for a step-only key. This is the headline a report shows: the
        size of the worst disagreement, not the last epoch's.

        Example:
            >>> worst = report.by_key()["f1"].worst_epoch()
            >>> if worst: print(f"epoch {worst[0].epoch}: {worst[1]:.1%} off")
        """
        candidates = [e for e in self.epochs if e.verdict == self.verdict]
        if not candidates:
            return None
        best = max(candidates, key=lambda e: (-1.0 if e.gap() is None else e.gap(), e.stage, e.epoch))
        return best, best.gap()

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst_epoch()
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
            "vouches_for": self.vouches_for,
            "verdict": self.verdict,
            "findings": list(self.findings),
            "fix": self.fix,
            "reason": self.reason,
            "worst_epoch": None
            if worst is None
            else {"epoch": worst[0].epoch, "stage": worst[0].stage, "gap": json_number(worst[1])},
            "epochs": [e.to_dict() for e in self.epochs],
        }


@dataclass
class StageReport:
    """One stage of a run: a ``fit``, ``validate`` or ``test`` call (a resumed fit is a stage of its own)."""

    index: int
    stage: str
    closed: bool = False
    status: str | None = None
    ckpt_path: str | None = None
    resumed_from_epoch: int | None = None
    trained: bool = field(default=False, repr=False, compare=False)  # reading state: a training epoch was seen
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "stage": self.stage,
            "label": self.label or self.stage,
            "closed": self.closed,
            "status": self.status,
            "ckpt_path": self.ckpt_path,
            "resumed_from_epoch": self.resumed_from_epoch,
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
    #: One entry per stage, in order (``stages`` holds their names): labels, closes, resumes.
    stage_details: list[StageReport] = field(default_factory=list)
    #: What checkpoint / early-stopping / scheduler callbacks decided on the logged values and would have
    #: decided on the references (:class:`lmlogger.records._replay.Decision`, one per callback).
    decisions: list[Any] = field(default_factory=list)
    #: For a checkpoint file: when it was saved and by which callback (``None`` for a run).
    checkpoint: dict[str, Any] | None = None

    @property
    def blind(self) -> bool:
        """Whether lmlogger saw none of the ``self.log`` calls whose keys the logger received: nothing in the run
        was verified (see ``lmlogger.records._coverage``)."""
        return blind_line(self.keys) is not None

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(VERDICTS, 0)
        for key in self.keys:
            if key.verdict is not None:
                counts[key.verdict] += 1
        return counts

    def matched_reduction_only(self) -> int:
        """Keys whose ``match`` vouches only for Lightning's reduction of the values logged (plain tensors)."""
        return sum(1 for key in self.keys if key.verdict == "match" and key.vouches_for == "reduction")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "backend": self.backend,
            "complete": self.complete,
            "status": self.status,
            "stages": list(self.stages),
            "stage_details": [stage.to_dict() for stage in self.stage_details],
            "summary": self.counts(),
            "matched_reduction_only": self.matched_reduction_only(),
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
    #: Runs (or folders) that could not be read, one line each: the audit is incomplete and exits 2.
    errors: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        total = dict.fromkeys(VERDICTS, 0)
        for run in self.runs:
            for verdict, n in run.counts().items():
                total[verdict] += n
        return total

    @property
    def ok(self) -> bool:
        """True when every run could be read and nothing mismatched."""
        return self.summary["mismatch"] == 0 and not self.errors

    @property
    def exit_code(self) -> int:
        """The CLI's exit code: 2 when a run could not be read, else 1 when something mismatched, else 0."""
        if self.errors:
            return 2
        return 0 if self.summary["mismatch"] == 0 else 1

    @property
    def matched_reduction_only(self) -> int:
        """Of the ``match`` keys, how many vouch only for the reduction (plain tensors), all runs."""
        return sum(run.matched_reduction_only() for run in self.runs)

    def by_key(self) -> dict[str, KeyReport]:
        """All keys of all runs by key name (the last run wins on duplicates)."""
        return {k.key: k for run in self.runs for k in run.keys}

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "matched_reduction_only": self.matched_reduction_only,
            "runs": [run.to_dict() for run in self.runs],
            "errors": list(self.errors),
        }

    def to_table(self) -> str:
        """The report as plain text: the summary, one table per run, findings and fixes (what ``print`` shows).

        Every string read from the run is escaped, so the text is safe to print on a terminal.
        """
        from lmlogger.audit._render import to_table

        return to_table(self)

    def to_markdown(self) -> str:
        """The report as GitHub-flavoured markdown (a CI job summary, a pull request comment); every string
        read from the run is escaped for markdown."""
        from lmlogger.audit._render import to_markdown

        return to_markdown(self)

    def to_json(self) -> str:
        """``to_dict()`` as strict JSON text (what ``lmlogger audit --format json`` prints)."""
        from lmlogger.audit._render import to_json

        return to_json(self)

    def to_html(self) -> str:
        """The report as one self-contained HTML page (what ``lmlogger audit --format html`` prints and what a run
        saves as ``lmlogger/report.html``): mismatches first, each key's chart, findings and fix; every string
        read from the run is escaped, and the page loads nothing.

        Example:
            >>> page = lmlogger.audit("logs/lightning_logs/version_0").to_html()  # doctest: +SKIP
            >>> open("audit.html", "w").write(page)  # doctest: +SKIP
        """
        from lmlogger.audit._html import to_html

        return to_html(self)

    def __str__(self) -> str:
        return self.to_table()
