"""Reading a sidecar back into a :class:`RunReport`."""

from __future__ import annotations

import json
import os
from typing import Any

from lmlogger._provenance import is_step_hook
from lmlogger._records import (
    SCHEMA_VERSION,
    Close,
    Header,
    ProvenanceRecord,
    VerificationRecord,
    from_json,
    worst,
)
from lmlogger._verify import Facts, compare, findings_for, fix_for
from lmlogger.audit._model import EpochReport, KeyReport, RunReport

BACKENDS = {"TensorBoardLogger": "tensorboard", "CSVLogger": "csv", "MLFlowLogger": "mlflow"}


class AuditInputError(ValueError):
    """Bad input to the audit: the message names the problem (the CLI prints it and exits 2)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def read_records(path: str) -> tuple[list[Any], bool]:
    """Records of a sidecar and whether its last line was truncated (a killed run)."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except UnicodeDecodeError as err:
        raise AuditInputError(f"{path}: corrupt sidecar (not UTF-8 text: {err.reason})") from None
    except OSError as err:
        raise AuditInputError(f"{path}: cannot read the sidecar ({err.strerror})") from None
    truncated = False
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:  # no final newline: the last line was being written when the run died
        lines.pop()
        truncated = True
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line, parse_constant=_reject_constant)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("type") == "header" and int(data.get("schema", 0)) > SCHEMA_VERSION:
                raise AuditInputError(
                    f"{path}: sidecar schema version {data.get('schema')} is newer than this lmlogger "
                    f"understands ({SCHEMA_VERSION}); upgrade with `pip install -U lmlogger`"
                )
            records.append(from_json(data))
        except AuditInputError:
            raise
        except (ValueError, TypeError, KeyError) as err:
            raise AuditInputError(f"{path}: corrupt sidecar at line {number} ({err})") from None
    if not records or not isinstance(records[0], Header):
        raise AuditInputError(f"{path}: corrupt sidecar (it does not start with a header record)")
    return records, truncated


def run_report(
    source: str, path: str, rtol: float | None = None, atol: float | None = None
) -> tuple[RunReport, list[Any]]:
    """Build the report of one run from its sidecar; ``rtol``/``atol`` re-judge the recorded values."""
    records, truncated = read_records(path)
    headers = [r for r in records if isinstance(r, Header)]
    closes = [r for r in records if isinstance(r, Close)]
    provenance: dict[str, ProvenanceRecord] = {}
    verifications: dict[str, list[VerificationRecord]] = {}
    open_stages = 0
    for record in records:
        if isinstance(record, Header):
            open_stages += 1
        elif isinstance(record, Close):
            open_stages = max(0, open_stages - 1)
        elif isinstance(record, ProvenanceRecord):
            provenance[record.key] = record
        elif isinstance(record, VerificationRecord):
            verifications.setdefault(record.key, []).append(record)
    complete = open_stages == 0 and not truncated
    status = closes[-1].status if closes else None
    if any(c.status == "failed" for c in closes):
        status = "failed"
    header = headers[0]
    if rtol is None:
        rtol = header.options.get("rtol")
    if atol is None:
        atol = header.options.get("atol")
    report = RunReport(
        source=source,
        backend=BACKENDS.get(header.logger, header.logger),
        complete=complete,
        status=status,
        stages=[h.stage for h in headers],
        versions=dict(header.versions),
    )
    for key in sorted(set(provenance) | set(verifications)):
        prov = provenance.get(key)
        report.keys.append(_key_report(key, prov, verifications.get(key, []), rtol, atol))
    from lmlogger.audit._decisions import apply_decisions

    apply_decisions(report, records)  # checkpoint / early stopping / scheduler decisions, replayed
    return report, records


def _key_report(
    key: str, prov: ProvenanceRecord | None, records: list[VerificationRecord], rtol: Any, atol: Any
) -> KeyReport:
    kr = KeyReport(
        key=key,
        provenance=prov.kind if prov else "unknown",
        hook=prov.hook if prov else "unknown",
        phase=prov.phase if prov else (records[0].phase if records else "unknown"),
        reduce_fx=prov.reduce_fx if prov else "unknown",
        on_step=prov.on_step if prov else False,
        on_epoch=prov.on_epoch if prov else True,
        sync_dist=prov.sync_dist if prov else False,
        batch_size=prov.batch_size if prov else None,
        dataloader_idx=prov.dataloader_idx if prov else None,
        logged_keys=list(prov.logged_keys) if prov else [key],
        metric_attribute=prov.metric_attribute if prov else None,
    )
    findings: list[str] = []
    fix = None
    for record in records:
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
                    attribute=prov.metric_attribute,
                    phase=prov.phase,
                    carried="state-carried-over" in rec_findings,
                    shared="shared-metric" in rec_findings,
                    stale="stale-step-value" in rec_findings,
                    rank_local="rank-local" in rec_findings,
                )
                rec_findings = findings_for(facts, rejudged)
                rec_fix = fix_for(facts, rec_findings) if rejudged == "mismatch" or rec_findings else None
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


def find_sidecars(root: str) -> list[str]:
    """Every ``lmlogger/provenance.jsonl`` below ``root`` (sorted)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if os.path.basename(dirpath) == "lmlogger" and "provenance.jsonl" in filenames:
            found.append(os.path.join(dirpath, "provenance.jsonl"))
    return found
