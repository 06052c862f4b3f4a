"""Reading a sidecar back into a :class:`RunReport`."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from typing import Any, BinaryIO

from lmlogger.audit._model import EpochReport, KeyReport, RunReport, StageReport
from lmlogger.records._coverage import blind_line
from lmlogger.records._functional import functional_attribute
from lmlogger.records._records import (
    METRIC_FUNCTIONAL,
    RECORD_TYPES,
    SCHEMA_VERSION,
    Close,
    Header,
    ProvenanceRecord,
    RecordError,
    VerificationRecord,
    from_json,
    is_step_hook,
    worst,
)
from lmlogger.records._verify import Facts, compare, findings_for, fix_for, with_weights

BACKENDS = {"TensorBoardLogger": "tensorboard", "CSVLogger": "csv", "MLFlowLogger": "mlflow"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


class AuditInputError(ValueError):
    """Bad input to the audit: the message names the problem (the CLI prints it and exits 2)."""


#: The longest sidecar line the audit reads (bytes). Records are a few hundred bytes; a longer line is
#: reported as damaged and skipped without being held in memory.
MAX_LINE_BYTES = 1 << 20
#: The deepest JSON nesting a record may have (records nest two levels; this only stops abuse).
MAX_DEPTH = 32
_BOM = b"\xef\xbb\xbf"


def open_regular(path: str, what: str) -> BinaryIO:
    """``path`` opened for binary reading when it is a regular file (after symlinks), else :class:`AuditInputError`.

    A FIFO, a device (``/dev/zero``), a socket or a directory is never opened for reading, so nothing blocks
    and nothing endless is read.
    """
    try:
        info = os.stat(path)
    except OSError as err:
        raise AuditInputError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise AuditInputError(f"{path}: the {what} is not a regular file ({file_kind(info.st_mode)})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise AuditInputError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else since the stat above
        os.close(fd)
        raise AuditInputError(f"{path}: the {what} is not a regular file")
    return os.fdopen(fd, "rb")


def file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def _depth_ok(text: str) -> bool:
    """Whether the JSON text nests at most :data:`MAX_DEPTH` levels (brackets in strings count too: a record
    never nests deeply, so an over-estimate only rejects text that is not a record anyway)."""
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _lines(fh: BinaryIO) -> Iterator[tuple[int, bytes | None, bool]]:
    """``(line number, bytes or None when longer than the limit, ended by a newline)`` for each line."""
    number = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            ended = False
            while True:  # skip the rest of the line without keeping it
                rest = fh.readline(1 << 16)
                if not rest or rest.endswith(b"\n"):
                    ended = bool(rest)
                    break
            yield number, None, ended
            continue
        yield number, raw, raw.endswith(b"\n")


def read_records(path: str) -> tuple[list[Any], bool, list[str]]:
    """Records of a sidecar, whether its last line was cut short (a killed run), and the damaged lines.

    Read line by line, each line at most :data:`MAX_LINE_BYTES`. A line that is not complete JSON text (a write
    cut short and later appended to, binary garbage, an over-long line) is skipped and named in the returned
    problems; a line that is JSON but not a valid record makes the sidecar corrupt (:class:`AuditInputError`).
    Records of an unknown ``type`` (written by a newer lmlogger of the same schema) are skipped.
    """
    records: list[Any] = []
    damaged: list[str] = []
    truncated = False
    with open_regular(path, "sidecar") as fh:
        try:
            for number, raw, ended in _lines(fh):
                if raw is None:
                    damaged.append(f"line {number} is longer than the {MAX_LINE_BYTES}-byte limit")
                    continue
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                if not ended:  # the last line, cut short: the run died while writing it
                    truncated = True
                    break
                record = _parse(path, number, raw, damaged, first=not records)
                if record is not None:
                    records.append(record)
        except OSError as err:
            raise AuditInputError(f"{path}: cannot read the sidecar ({err.strerror or err})") from None
    if not records:
        if damaged:
            raise AuditInputError(f"{path}: corrupt sidecar ({damaged[0]}; no header record)")
        raise AuditInputError(f"{path}: empty sidecar (no header record)")
    if not isinstance(records[0], Header):
        raise AuditInputError(f"{path}: corrupt sidecar (it does not start with a header record)")
    problems = [f"sidecar {msg}: skipped" for msg in damaged]
    return records, truncated, problems


def _parse(path: str, number: int, raw: bytes, damaged: list[str], first: bool) -> Any:
    """The record on one line; ``None`` for a blank, damaged (noted in ``damaged``) or unknown-type line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        damaged.append(f"line {number} is not UTF-8 text ({err.reason})")
        return None
    if not text.strip():
        return None
    if not _depth_ok(text):
        raise AuditInputError(f"{path}: corrupt sidecar at line {number} (JSON nested deeper than {MAX_DEPTH} levels)")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        damaged.append(f"line {number} is not complete JSON ({err.msg} at column {err.colno})")
        return None
    except (ValueError, RecursionError) as err:  # NaN constants, integers with thousands of digits
        raise AuditInputError(f"{path}: corrupt sidecar at line {number} ({_short(err)})") from None
    if not isinstance(data, dict):
        raise AuditInputError(f"{path}: corrupt sidecar at line {number} (not a JSON object)")
    if data.get("type") == "header":
        schema = data.get("schema")
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
            raise AuditInputError(
                f"{path}: sidecar schema version {schema} is newer than this lmlogger "
                f"understands ({SCHEMA_VERSION}); upgrade with `pip install -U lmlogger`"
            )
    elif data.get("type") not in RECORD_TYPES:
        if first:
            raise AuditInputError(f"{path}: corrupt sidecar at line {number} (it does not start with a header record)")
        return None  # a record type from a newer lmlogger: not ours to judge
    try:
        return from_json(data)
    except (RecordError, ValueError, TypeError) as err:
        raise AuditInputError(f"{path}: corrupt sidecar at line {number} ({_short(err)})") from None


def _short(err: BaseException, limit: int = 200) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_report(
    source: str, path: str, rtol: float | None = None, atol: float | None = None
) -> tuple[RunReport, list[Any]]:
    """Build the report of one run from its sidecar; ``rtol``/``atol`` re-judge the recorded values.

    Each header opens a stage (``fit``, ``validate``, ``test``; a resumed or repeated ``fit`` is a stage of its
    own) and every verification record belongs to the stage it follows, so repeated epochs are told apart. The
    run is complete when its last stage closed.
    """
    records, truncated, problems = read_records(path)
    stages: list[StageReport] = []
    provenance: dict[str, ProvenanceRecord] = {}
    verifications: dict[str, list[tuple[int, VerificationRecord]]] = {}
    for record in records:
        if isinstance(record, Header):
            stages.append(
                StageReport(
                    index=len(stages) + 1,
                    stage=record.stage,
                    ckpt_path=record.ckpt_path,
                    resumed_from_epoch=record.resumed_from_epoch,
                )
            )
        elif isinstance(record, Close):
            stages[-1].closed = True
            stages[-1].status = record.status
        elif isinstance(record, ProvenanceRecord):
            provenance[record.key] = record
        elif isinstance(record, VerificationRecord):
            verifications.setdefault(record.key, []).append((stages[-1].index, record))
            stage = stages[-1]
            if stage.stage == "fit" and not stage.trained and record.phase == "train":
                stage.trained = True
                if stage.resumed_from_epoch is None and (record.epoch > 0 or stage.ckpt_path is not None):
                    # the header cannot always know (a stage starts before Lightning restores a checkpoint):
                    # a fit whose first trained epoch is not 0 goes on from an earlier run or fit
                    stage.resumed_from_epoch = record.epoch
    _label(stages)
    last = stages[-1]
    header = records[0]
    if rtol is None:
        rtol = header.options.get("rtol")
    if atol is None:
        atol = header.options.get("atol")
    report = RunReport(
        source=source,
        backend=BACKENDS.get(header.logger, header.logger),
        complete=last.closed and not truncated,
        status=last.status if last.closed else None,
        stages=[stage.stage for stage in stages],
        stage_details=stages,
        versions=dict(header.versions),
        problems=problems,
    )
    for key in sorted(set(provenance) | set(verifications)):
        prov = provenance.get(key)
        report.keys.append(_key_report(key, prov, verifications.get(key, []), rtol, atol))
    blind = blind_line(report.keys)
    if blind is not None:  # never silent: a run lmlogger saw nothing of does not read as all-clear
        report.problems.insert(0, blind)
    from lmlogger.audit._decisions import apply_decisions

    apply_decisions(report, records)  # checkpoint / early stopping / scheduler decisions, replayed
    return report, records


def _label(stages: list[StageReport]) -> None:
    """``fit``, or ``fit #1`` / ``fit #2 (resumed from epoch 3)`` when a stage kind repeats."""
    counts: dict[str, int] = {}
    for stage in stages:
        counts[stage.stage] = counts.get(stage.stage, 0) + 1
    seen: dict[str, int] = {}
    for stage in stages:
        seen[stage.stage] = seen.get(stage.stage, 0) + 1
        label = stage.stage if counts[stage.stage] == 1 else f"{stage.stage} #{seen[stage.stage]}"
        if stage.ckpt_path is not None or stage.resumed_from_epoch is not None:
            label += (
                f" (resumed from epoch {stage.resumed_from_epoch})"
                if stage.resumed_from_epoch is not None
                else " (resumed from a checkpoint)"
            )
        stage.label = label


def _key_report(
    key: str, prov: ProvenanceRecord | None, records: list[tuple[int, VerificationRecord]], rtol: Any, atol: Any
) -> KeyReport:
    kr = KeyReport(
        key=key,
        provenance=prov.kind if prov else "unknown",
        hook=prov.hook if prov else "unknown",
        phase=prov.phase if prov else (records[0][1].phase if records else "unknown"),
        reduce_fx=prov.reduce_fx if prov else "unknown",
        on_step=prov.on_step if prov else False,
        on_epoch=prov.on_epoch if prov else True,
        sync_dist=prov.sync_dist if prov else False,
        batch_size=prov.batch_size if prov else None,
        dataloader_idx=prov.dataloader_idx if prov else None,
        logged_keys=list(prov.logged_keys) if prov else [key],
        metric_attribute=prov.metric_attribute if prov else None,
        vouches_for=(prov.vouches_for or "") if prov else "",  # older sidecars: derived from the kind
    )
    findings: list[str] = []
    fix = None
    for stage, record in records:
        verdict, rec_findings, rec_fix = record.verdict, list(record.findings), record.fix
        if rtol is not None and atol is not None and record.logged is not None and record.reference is not None:
            rejudged = compare(record.logged, record.reference, max(float(rtol), record.rtol_floor), float(atol))
            if rejudged != verdict and prov is not None:
                facts = Facts(
                    name=prov.name,
                    kind=prov.kind,
                    hook=prov.hook,
                    step_hook=is_step_hook(prov.hook),
                    on_step=prov.on_step,
                    on_epoch=prov.on_epoch,
                    attribute=prov.metric_attribute
                    if prov.kind != METRIC_FUNCTIONAL
                    else functional_attribute(prov.name, prov.phase),
                    phase=prov.phase,
                    functional=f"{prov.metric_class}(...)" if prov.metric_class else None,
                    carried="state-carried-over" in rec_findings,
                    shared="shared-metric" in rec_findings,
                    stale="stale-step-value" in rec_findings,
                    rank_local="rank-local" in rec_findings,
                    duplicates=record.duplicates,
                    weight_mismatch="weight-mismatch" in rec_findings,
                    reset_before_log="reset-before-log" in rec_findings,
                    shared_dataloaders="per dataloader" in (record.fix or ""),
                )
                rec_findings = findings_for(facts, rejudged)
                rec_fix = fix_for(facts, rec_findings) if rejudged == "mismatch" or rec_findings else None
                rec_fix = with_weights(facts, rec_findings, rec_fix)
            verdict = rejudged
        kr.epochs.append(
            EpochReport(
                epoch=record.epoch,
                step=record.step,
                logged=record.logged,
                reference=record.reference,
                verdict=verdict,
                phase=record.phase,
                reason=record.reason,
                findings=rec_findings,
                stage=stage,
                samples=record.samples,
                dataset_size=record.dataset_size,
                duplicates=record.duplicates,
            )
        )
        for code in rec_findings:
            if code not in findings:
                findings.append(code)
        if rec_fix and (fix is None or verdict == "mismatch"):
            fix = rec_fix if fix is None or verdict == "mismatch" else fix
        if verdict == "unverified" and record.reason and kr.reason is None:
            kr.reason = record.reason
    kr.verdict = worst(e.verdict for e in kr.epochs)
    kr.findings = findings
    kr.fix = fix
    return kr


def is_sidecar_name(name: str) -> bool:
    """``provenance.jsonl``, or ``provenance-<logger>.jsonl`` (a second VerifiedLogger on the same log dir)."""
    return name == "provenance.jsonl" or (name.startswith("provenance-") and name.endswith(".jsonl"))


def find_sidecars(root: str) -> tuple[list[str], list[str]]:
    """Every sidecar (``lmlogger/provenance*.jsonl``) below ``root``, sorted, and the folders that could not
    be read (each as a one-line message). Symlinked folders are not followed (no loops)."""
    found: list[str] = []
    errors: list[str] = []

    def unreadable(err: OSError) -> None:
        errors.append(f"{err.filename}: cannot read the folder ({err.strerror or err})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames.sort()
        if os.path.basename(dirpath) == "lmlogger":
            found.extend(os.path.join(dirpath, name) for name in sorted(filenames) if is_sidecar_name(name))
    return found, errors
