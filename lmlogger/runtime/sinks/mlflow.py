"""MLflow additions: reference metrics under MLflow's naming rules, run and per-key tags a person can read
and search in the MLflow UI, and the sidecar uploaded as the run artifact ``lmlogger/provenance.jsonl``.

For ``VerifiedLogger(MLFlowLogger(...))`` lmlogger writes:

* the local sidecar ``<trainer.default_root_dir>/lmlogger_mlflow/<experiment_id>/<run_id>/lmlogger/provenance.jsonl``
  (one log line at the start of the run says where). It is kept, so a run that crashed or lost its tracking
  server can still be audited: ``lmlogger audit <that dir>``;
* the artifacts ``lmlogger/provenance.jsonl`` and ``lmlogger/report.html`` (the audit as a page), both
  uploaded once, when the run ends, however it ends (the local copy holds every record meanwhile);
* run tags: ``lmlogger.verdict`` (``match`` / ``mismatch`` / ``unverified``, kept current after every epoch),
  ``lmlogger.summary`` (the counts, the mismatched keys and lmlogger's version) and ``lmlogger.sidecar`` (the
  artifact path). No tag or param holds a path of the training machine: the local copy is named in the log only;
* the run's description (``mlflow.note.content``, shown as markdown on the run page): the per-key verdict table,
  kept current after every epoch, unless the run has a description lmlogger did not write (never overwritten);
* one tag per key, ``lmlogger.key.<metric>`` (``<metric>`` is the metric's name in MLflow), whose value
  starts with three fixed fields, ``verdict|provenance|findings``, then what its reference vouches for
  (``vouches for samples`` or ``vouches for reduction``), the worst epoch and its gap, the
  samples behind it, the fix or the reason:
  ``mismatch|metric_compute|running-value-averaged|worst train epoch 0 (step 6): logged 0.4713,
  reference 0.57377 (18% apart)|samples: ...|fix: self.log(...)``. Search them in the UI, e.g.
  ``tags.`lmlogger.verdict` = 'mismatch'`` or ``tags.`lmlogger.key.f1` LIKE 'mismatch|%'``;
* reference metrics ``lmlogger/reference/<metric>`` through the wrapped logger, at the epoch value's step.

``VerifiedLogger(..., tracker_extras=False)`` leaves out the tags and artifacts, ``reference_metrics=False`` the
reference metrics, ``html_report=False`` the page; the local sidecar is always written.

Names follow MLflow's rules (alphanumerics, ``_ - . /`` and spaces, at most 250 characters); a key that has
to change gets one warning naming both forms, and the sidecar keeps the full key. lmlogger only writes tags
under ``lmlogger.`` and never overwrites one it did not write. Its own MLflow calls (tags, the artifact,
reference metrics) never break training: a failure is one warning and the local sidecar keeps every record.
The wrapped logger's own calls are untouched, so a dead server surfaces exactly as without lmlogger.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from lightning_utilities.core.rank_zero import rank_zero_info

from lmlogger.audit._mlflow import server_down
from lmlogger.records._errors import warn_user
from lmlogger.records._gap import format_gap, relative_gap, worst_epoch
from lmlogger.records._mlflow_names import (  # noqa: F401  (names importable from here too)
    _LIGHTNING_REMOVES,
    _TAG_ROOM,
    ARTIFACT_DIR,
    ARTIFACT_PATH,
    KEY_TAG,
    MAX_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    PROBE_TIMEOUT_S,
    RUN_VERDICT_TAG,
    SIDECAR_TAG,
    SUMMARY_TAG,
    TAGS_PER_BATCH,
    _first_line,
    fit_name,
    metric_name,
    redact,
    reference_name,
)
from lmlogger.records._records import REDUCTION, ProvenanceRecord, VerificationRecord, vouches_for, worst
from lmlogger.records._versions import versions
from lmlogger.runtime.sinks.generic import GenericSink, metric_prefix_of

#: Where the local copy of an MLflow run's sidecar lives, below ``trainer.default_root_dir``.
LOCAL_DIR = "lmlogger_mlflow"
REPORT_ARTIFACT_PATH = "lmlogger/report.html"
#: ``lmlogger.decision.<callback>`` = agree / disagree / unverified; ``<tag>.detail`` holds the sentence.
DECISION_TAG = "lmlogger.decision.{}"
#: MLflow's run description (markdown on the run page); lmlogger's starts with `DESCRIPTION_HEAD`.
NOTE_TAG = "mlflow.note.content"
DESCRIPTION_HEAD = "## lmlogger"


def _clip(value: str, limit: int = MAX_TAG_VALUE_LENGTH) -> str:
    if len(value) <= limit:
        return value
    tail = f" ... (cut at {limit} characters; the full text is in the {ARTIFACT_PATH} artifact)"
    return value[: limit - len(tail)] + tail


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _fit_rows(head: list[str], rows: list[str], tail: list[str], limit: int = MAX_TAG_VALUE_LENGTH) -> str:
    """``head + rows + tail`` joined by lines, within ``limit`` characters: rows that do not fit are left out
    whole (worst first are kept) and counted in one line; the tail is clipped last."""
    kept = list(rows)
    while True:
        more = [f"| ... {len(rows) - len(kept)} more keys in the report |"] if len(kept) < len(rows) else []
        text = "\n".join([*head, *kept, *more, *tail])
        if len(text) <= limit or not kept:
            return _clip(text, limit)
        kept.pop()


@dataclass(frozen=True)
class _Names:
    metric: str  # the user's metric in MLflow
    reference_arg: str  # what lmlogger passes to MLFlowLogger.log_metrics
    reference: str  # the reference metric in MLflow
    tag_base: str  # <metric> in lmlogger.key.<metric>


class MLflowSink(GenericSink):
    """Sidecar (local and as an artifact) + reference metrics + searchable run and per-key tags."""

    def __init__(self, vlogger: Any, trainer: Any) -> None:
        logger = vlogger.wrapped
        self.tracking_uri = str(getattr(logger, "_tracking_uri", "") or "")
        if not getattr(logger, "_initialized", True):
            # The run is created on first contact. A server that does not answer would make lmlogger wait
            # through MLflow's retries before the user's own first call waits through them again.
            down = server_down(self.tracking_uri)
            if down is not None:
                raise ConnectionError(
                    f"the MLflow tracking server at {redact(self.tracking_uri)} does not answer ({down}); "
                    "lmlogger records nothing for this run"
                )
        self.run_id = str(logger.run_id)
        self.experiment_id = str(logger.experiment_id)
        self.metric_prefix = metric_prefix_of(logger)
        super().__init__(vlogger, trainer)
        self.client = logger.experiment
        self.version = versions()["lmlogger"]
        self.provenance: dict[str, ProvenanceRecord] = {}
        self.latest: dict[str, VerificationRecord] = {}
        self.worst: dict[str, VerificationRecord] = {}  # each key's worst epoch so far
        self.verdicts: dict[str, list[str]] = defaultdict(list)
        self.names: dict[str, _Names] = {}
        self.tags_written: dict[str, str] = {}  # lmlogger's own tags, as last written
        self.protected: set[str] = set()  # lmlogger.* tags somebody else set: never written
        self.adopted = False
        self.failed: set[str] = set()  # kinds of lmlogger's own MLflow calls that failed: skipped until the end
        self.unreachable = False  # the server did not answer: every call skipped until the end
        self.warned = False  # one warning per run for all of them
        self.announced = False
        self.decisions: list[Any] = []

    # -- where the sidecar lives --------------------------------------------------------------------
    def _run_dir(self, trainer: Any) -> str:
        # A folder named for what it holds, below the trainer's root dir. Not under a file: store's save_dir:
        # there the run dir also holds the artifact copy (artifacts/lmlogger/...), and one run would be audited twice.
        return os.path.join(trainer.default_root_dir, LOCAL_DIR, self.experiment_id, self.run_id)

    def run_info(self) -> dict[str, Any]:
        info = super().run_info()
        info.update(
            run_id=self.run_id,
            experiment_id=self.experiment_id,
            tracking_uri=redact(self.tracking_uri),
            metric_prefix=self.metric_prefix,
            artifact=ARTIFACT_PATH,
        )
        return info

    # -- Sink --------------------------------------------------------------------------------------
    def begin(self, stage: str) -> None:
        if not self.adopted and self.options.tracker_extras and self._reachable():
            self.adopted = True
            self._extra("read the run's tags", False, self._adopt_earlier_run)
        super().begin(stage)
        if not self.announced:
            self.announced = True
            rank_zero_info(
                f"lmlogger: MLflow run {self.run_id}: verdicts in its `lmlogger.*` tags and `{ARTIFACT_DIR}/` "
                f"artifacts; local copy of the records in {os.path.abspath(self.run_dir)} "
                f"(`lmlogger audit {self.run_dir}` works without the server)"
            )

    def write(self, provenance: list[ProvenanceRecord], records: list[VerificationRecord]) -> None:
        self._append([*provenance, *records])
        for record in provenance:
            self.provenance[record.key] = record
            self._names_of(record.key)
        for record in records:
            self.latest[record.key] = record
            earlier = self.worst.get(record.key)
            self.worst[record.key] = record if earlier is None else worst_epoch([earlier, record])
            self.verdicts[record.key].append(record.verdict)
            self._names_of(record.key)
        self._publish(records, final=False)

    def close(self, status: str) -> None:
        super().close(status)
        self._publish([], final=True)

    def announce_close(self, report_written: bool, note: str | None = None) -> None:
        where = "its description and `lmlogger.*` tags" if NOTE_TAG not in self.protected else "its `lmlogger.*` tags"
        mlflow_note = f"MLflow run {self.run_id}: verdicts in {where}. Local copy (works without the server):"
        super().announce_close(report_written, f"{note} {mlflow_note}" if note else mlflow_note)

    def write_decisions(self, records: list[Any], decisions: list[Any]) -> None:
        super().write_decisions(records, decisions)
        self.decisions = list(decisions)
        self._publish([], final=False)

    # -- lmlogger's own MLflow calls ------------------------------------------------------------
    def _publish(self, records: list[VerificationRecord], final: bool) -> None:
        """Reference metrics, tags and, when the run ends, the artifacts. A kind of call that failed (or a server
        that did not answer) is skipped until the run ends, then tried once more.

        The sidecar is uploaded once, when the run ends (Lightning's ``finalize`` runs however it ends, on a
        failure too), not after every epoch: re-uploading one growing file costs O(epochs x size) of traffic,
        and the local copy holds every record meanwhile (a killed run keeps it).
        """
        options = self.options
        if not (options.tracker_extras or (records and options.reference_metrics)):
            return  # nothing of lmlogger's goes to the server: not even the reachability probe
        if (self.unreachable and not final) or not self._reachable():
            return
        if records:
            self._extra("log reference metrics", final, self.log_references, records)
        if not options.tracker_extras:
            return
        self._extra("set tags", final, self._write_tags)
        if not final:
            return
        self._extra(
            "upload the sidecar artifact", final, self.client.log_artifact, self.run_id, self.path, ARTIFACT_DIR
        )
        if options.html_report and os.path.isfile(self.report_path):
            self._extra(
                "upload the HTML report", final, self.client.log_artifact, self.run_id, self.report_path, ARTIFACT_DIR
            )

    def _reachable(self) -> bool:
        # A dead server would hold every call through MLflow's retries (minutes): ask it once, briefly, first.
        down = server_down(self.tracking_uri)
        self.unreachable = down is not None
        if down is not None:
            self._warn_once("reach the tracking server", down)
        return down is None

    def _extra(self, what: str, final: bool, fn: Any, *args: Any) -> None:
        if what in self.failed and not final:
            return
        try:
            fn(*args)
        except Exception as err:  # lmlogger's own call: never an exception into training
            self.failed.add(what)
            self._warn_once(what, f"{type(err).__name__}: {_first_line(err)}")

    def _warn_once(self, what: str, why: str) -> None:
        if not self.warned:
            self.warned = True
            warn_user(
                f"lmlogger: could not {what} for MLflow run {self.run_id} at {redact(self.tracking_uri)} ({why}). "
                "lmlogger's tags, reference metrics and artifact in MLflow may be incomplete; the local sidecar "
                f"{self.path} keeps every record (audit it with `lmlogger audit {self.run_dir}`).",
                category=UserWarning,
            )

    def log_references(self, records: list[VerificationRecord]) -> None:
        if not self.options.reference_metrics:
            return
        by_step: dict[int | None, dict[str, float]] = defaultdict(dict)
        for record in records:
            if record.reference is not None and math.isfinite(record.reference):
                by_step[record.step][self._names_of(record.key).reference_arg] = record.reference
        for step, metrics in by_step.items():
            self.logger.log_metrics(metrics=metrics, step=step)

    def _adopt_earlier_run(self) -> None:
        """A run lmlogger wrote before (``MLFlowLogger(run_id=...)``): its lmlogger tags and sidecar are ours."""
        tags = self.client.get_run(self.run_id).data.tags
        if tags.get(SIDECAR_TAG) != ARTIFACT_PATH:
            return
        self.tags_written.update({k: v for k, v in tags.items() if k.startswith("lmlogger.")})
        if tags.get(NOTE_TAG, "").startswith(DESCRIPTION_HEAD + ":"):
            self.tags_written[NOTE_TAG] = tags[NOTE_TAG]
        if not os.path.exists(self.path):
            with tempfile.TemporaryDirectory() as tmp:
                local = self.client.download_artifacts(self.run_id, ARTIFACT_PATH, tmp)
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                shutil.copyfile(local, self.path)

    # -- names ------------------------------------------------------------------------------------
    def _names_of(self, key: str) -> _Names:
        names = self.names.get(key)
        if names is not None:
            return names
        metric = metric_name(key, self.metric_prefix)
        reference_arg, reference = reference_name(key, self.prefix, self.metric_prefix)
        base = fit_name(metric, _TAG_ROOM, key)
        taken = {n.tag_base for n in self.names.values()}
        if base in taken:  # two keys MLflow would name alike: keep their tags apart
            base = fit_name(f"{metric[: _TAG_ROOM - 9]}-{hashlib.sha1(key.encode()).hexdigest()[:8]}", _TAG_ROOM, key)
        names = self.names[key] = _Names(metric, reference_arg, reference, base)
        natural = self.metric_prefix + key
        if metric != natural or reference != self.metric_prefix + self.prefix + key or base != natural:
            warn_user(
                f"lmlogger: `{key}` is not a valid MLflow name as it is; in MLflow its reference metric is "
                f"`{reference}` and its tag is `{KEY_TAG.format(base)}` (the {ARTIFACT_PATH} artifact "
                "keeps the full key).",
                category=UserWarning,
            )
        return names

    # -- tags -------------------------------------------------------------------------------------
    def tags(self) -> dict[str, str]:
        """Every tag lmlogger wants on the run now (before the user's own are set aside)."""
        tags = {SIDECAR_TAG: ARTIFACT_PATH}
        key_verdicts = {key: worst(v) for key, v in self.verdicts.items() if v}
        if key_verdicts:
            tags[RUN_VERDICT_TAG] = worst(key_verdicts.values()) or "unverified"
            counts = {v: sum(1 for x in key_verdicts.values() if x == v) for v in ("match", "mismatch", "unverified")}
            summary = ", ".join(f"{n} {v}" for v, n in counts.items())
            plain = sum(
                1
                for k, v in key_verdicts.items()
                if v == "match" and k in self.provenance and vouches_for(self.provenance[k].kind) == REDUCTION
            )
            if plain:  # the words of the audit's summary line
                summary = summary.replace(" match,", f" match ({plain} of them only the reduction),", 1)
            mismatched = sorted(k for k, v in key_verdicts.items() if v == "mismatch")
            if mismatched:
                summary += "; mismatch: " + ", ".join(mismatched)
            tags[SUMMARY_TAG] = _clip(summary, 1000 - 20) + f" (lmlogger {self.version})"
        for d in self.decisions:
            name = fit_name(_LIGHTNING_REMOVES.sub("", d.callback), _TAG_ROOM, d.callback)
            tags[DECISION_TAG.format(name)] = {True: "agree", False: "disagree", None: "unverified"}[d.agree]
            tags[DECISION_TAG.format(name) + ".detail"] = _clip(d.message)
        for key in sorted(set(self.provenance) | set(self.latest)):
            tags[KEY_TAG.format(self._names_of(key).tag_base)] = _clip(self.key_tag(key, key_verdicts.get(key)))
        if key_verdicts or self.provenance:
            tags[NOTE_TAG] = self.description(key_verdicts)
        return tags

    def findings_of(self, key: str) -> list[str]:
        """Every finding of ``key`` so far: its epochs' and ``decision-on-mismatch`` when a callback acted on it in
        a mismatched epoch (as the audit says)."""
        found = {f for r in (self.worst.get(key), self.latest.get(key)) if r is not None for f in r.findings}
        if any(d.monitor == key and d.mismatched_epochs for d in self.decisions):
            found.add("decision-on-mismatch")
        return sorted(found)

    def description(self, key_verdicts: dict[str, str]) -> str:
        """The run's description: one markdown row per key (verdict, gap, worst epoch, values, provenance,
        findings), then each key's fix, the decisions, and where the full audit is. Every string from the user's
        code is a code span or escaped text. Rows that would pass MLflow's length limit are named, not cut."""
        from lmlogger.audit._escape import markdown_code, markdown_text

        counts = {v: sum(1 for x in key_verdicts.values() if x == v) for v in ("match", "mismatch", "unverified")}
        head = [
            f"{DESCRIPTION_HEAD}: {', '.join(f'{n} {v}' for v, n in counts.items())}",
            "",
            "| key | verdict | gap | worst epoch | logged | reference | provenance | findings |",
            "|---|---|---|---|---|---|---|---|",
        ]
        rows, fixes = [], []
        order = {"mismatch": 0, "unverified": 1, "match": 2}
        keys = sorted(set(self.provenance) | set(self.latest), key=lambda k: (order.get(key_verdicts.get(k), 3), k))
        for key in keys:
            verdict = key_verdicts.get(key) or "step only"
            rec = self.worst.get(key)
            prov = self.provenance.get(key)
            gap = format_gap(relative_gap(rec.logged, rec.reference)) if rec is not None else "-"
            cells = [
                markdown_code(key),
                "**mismatch**" if verdict == "mismatch" else markdown_text(verdict),
                gap if verdict in ("match", "mismatch") else "-",
                f"{markdown_text(rec.phase)} {rec.epoch}" if rec is not None else "-",
                _num(rec.logged) if rec is not None else "-",
                _num(rec.reference) if rec is not None else "-",
                markdown_code(prov.kind) if prov is not None else "-",
                ", ".join(markdown_code(f) for f in self.findings_of(key)) or "-",
            ]
            rows.append("| " + " | ".join(cells) + " |")
            latest = self.latest.get(key)
            fix = (latest.fix if latest is not None else None) or (rec.fix if rec is not None else None)
            reason = (latest.reason if latest is not None else None) or (rec.reason if rec is not None else None)
            if fix:
                fixes.append(f"- {markdown_code(key, in_table=False)}: fix {markdown_code(fix, in_table=False)}")
            elif reason and verdict == "unverified":
                fixes.append(f"- {markdown_code(key, in_table=False)}: {markdown_text(reason)}")
        tail = [""]
        if fixes:
            tail += ["**What to change**", "", *fixes, ""]
        for d in self.decisions:
            agree = {True: "agrees", False: "**disagrees**", None: "unverified"}[d.agree]
            tail.append(f"- {markdown_text(d.callback)} on {markdown_code(d.monitor, in_table=False)}: {agree}. ")
            tail[-1] += markdown_text(d.message)
        tail += [
            "",
            f"The full audit: the `{REPORT_ARTIFACT_PATH}` artifact, or `lmlogger audit runs:/{self.run_id}`. "
            f"Written by lmlogger {self.version} after every epoch; "
            "give the run a description of your own and lmlogger leaves it alone.",
        ]
        return _fit_rows(head, rows, tail)

    def key_tag(self, key: str, verdict: str | None) -> str:
        """``verdict|provenance|findings|vouches for|worst epoch and gap|fix or reason[|key: <full key>]`` (see the
        module docstring); the first three fields are always there, so that ``LIKE 'mismatch|%'`` finds a verdict."""
        prov = self.provenance.get(key)
        rec = self.worst.get(key)
        latest = self.latest.get(key)
        fields = [
            verdict or "step-only",
            prov.kind if prov is not None else "-",
            ",".join(self.findings_of(key)) or "-",
            f"vouches for {vouches_for(prov.kind)}" if prov is not None else "vouches for -",
        ]
        if rec is None:
            fields.append("step values only: no epoch value to verify")
        else:
            gap = format_gap(relative_gap(rec.logged, rec.reference))
            fields.append(
                f"worst {rec.phase} epoch {rec.epoch} (step {rec.step}): logged {_num(rec.logged)}, "
                f"reference {_num(rec.reference)} ({gap} apart)"
            )
            if rec.samples is not None or rec.duplicates:
                size = f" of a dataset of {rec.dataset_size}" if rec.dataset_size is not None else ""
                fields.append(f"samples: {rec.samples} ({rec.duplicates} repeated){size}")
            fix = (latest.fix if latest is not None else None) or rec.fix
            reason = (latest.reason if latest is not None else None) or rec.reason
            if fix:
                fields.append(f"fix: {fix}")
            if reason:
                fields.append(f"reason: {reason}")
        if self._names_of(key).metric != key:
            fields.append(f"key: {key}")
        return "|".join(field.replace("|", "/") for field in fields[:3]) + "|" + "|".join(fields[3:])

    def _write_tags(self) -> None:
        from mlflow.entities import RunTag

        wanted = {k: v for k, v in self.tags().items() if k not in self.protected}
        unseen = [k for k in wanted if k not in self.tags_written]
        if NOTE_TAG in wanted and self.tags_written.get(NOTE_TAG) != wanted[NOTE_TAG] and NOTE_TAG not in unseen:
            unseen.append(NOTE_TAG)  # the user may have written a description since: look again before replacing
        if unseen:  # never overwrite a tag lmlogger did not write: look before writing a new key
            existing = self.client.get_run(self.run_id).data.tags
            for key in unseen:
                if key == NOTE_TAG:
                    if existing.get(NOTE_TAG) not in (None, "", self.tags_written.get(NOTE_TAG)):
                        self.protected.add(key)  # the user's own description: kept as it is, silently
                        del wanted[key]
                    continue
                if key in existing:
                    self.protected.add(key)
                    del wanted[key]
                    warn_user(
                        f"lmlogger: MLflow run {self.run_id} already has the tag `{key}` = {existing[key]!r}, "
                        "not set by lmlogger; lmlogger leaves it as it is.",
                        category=UserWarning,
                    )
        changed = [RunTag(k, v) for k, v in wanted.items() if self.tags_written.get(k) != v]
        for start in range(0, len(changed), TAGS_PER_BATCH):
            batch = changed[start : start + TAGS_PER_BATCH]
            self.client.log_batch(self.run_id, tags=batch, synchronous=True)
            self.tags_written.update({t.key: t.value for t in batch})


__all__ = ["ARTIFACT_PATH", "MLflowSink", "metric_name", "reference_name", "server_down"]
