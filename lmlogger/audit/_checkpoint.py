"""Auditing a checkpoint file (``.ckpt``): its ``checkpoint["lmlogger"]`` entry, read without torch.

A torch checkpoint is a zip archive whose ``<name>/data.pkl`` pickles the checkpoint dict; tensors in it
are persistent references to storages in ``<name>/data/``. This reader unpickles ``data.pkl`` with its own
restricted pickle machine (:mod:`lmlogger.audit._unpickle`): only plain builtins are built, every other
global (torch's tensor rebuild functions, a class from the training code, ``os.system`` in a hostile file)
is an inert :class:`Opaque` token that is never imported nor called, and storages are never read. So the
audit needs no torch, and a checkpoint cannot run code in the auditor nor change its state.

A checkpoint is untrusted input, and every cost of reading it is capped (``MAX_*`` here and in
``_unpickle``; docs/audit.md lists them): a file over a limit, or malformed, is one
:class:`AuditInputError` naming it (exit 2).
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from typing import Any

from lmlogger.audit._model import EpochReport, KeyReport, RunReport
from lmlogger.audit._sidecar import AuditInputError
from lmlogger.audit._unpickle import MAX_NESTING, Opaque, UnpickleError, loads, to_plain
from lmlogger.records._records import worst
from lmlogger.records._replay import CHECKPOINT, EARLY_STOPPING, LR_SCHEDULER, Decision, Point

#: data.pkl holds metadata only (tensors live in data/): one that is larger, compressed or not, is refused
#: (bytes read and bytes decompressed; the reader reads no other member).
MAX_PICKLE_BYTES = 64 * 1024 * 1024
#: The archive's table of contents: its size and its number of members (one per tensor storage, and a few),
#: checked before ``zipfile`` builds an object per member.
MAX_DIRECTORY_BYTES = 16 * 1024 * 1024
MAX_MEMBERS = 200_000
#: Values of the ``lmlogger`` entry once shared references are expanded (what ``--format json`` prints).
MAX_EXPANDED_VALUES = 1_000_000
_ZIP_MAGIC = b"PK\x03\x04"
_CHUNK = 1 << 20

__all__ = ["MAX_EXPANDED_VALUES", "MAX_PICKLE_BYTES", "Opaque", "audit_checkpoint", "read_checkpoint"]


def _directory(path: str, fh: Any) -> None:
    """Refuse an archive whose table of contents claims more than the limits, before ``zipfile`` reads it."""
    size = fh.seek(0, io.SEEK_END)
    tail_size = min(size, 22 + 65535)
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise AuditInputError(f"{path}: corrupt checkpoint archive (no end of central directory)")
    _, _, _, _, members, directory, _, _ = struct.unpack("<4s4H2LH", tail[at : at + 22])
    if members == 0xFFFF or directory == 0xFFFFFFFF:  # zip64: the real numbers are in the zip64 record
        locator = tail.rfind(b"PK\x06\x07", 0, at)
        if locator >= 0 and len(tail) - locator >= 20:
            offset = struct.unpack("<Q", tail[locator + 8 : locator + 16])[0]
            if offset + 56 <= size:
                fh.seek(offset)
                record = fh.read(56)
                if record[:4] == b"PK\x06\x06":
                    members, directory = struct.unpack("<QQ", record[32:48])
    if members > MAX_MEMBERS:
        raise AuditInputError(
            f"{path}: the archive claims {members:,} members, over the reader's limit of {MAX_MEMBERS:,} (MAX_MEMBERS)"
        )
    if directory > MAX_DIRECTORY_BYTES:
        raise AuditInputError(
            f"{path}: the archive's directory claims {directory:,} bytes, over the reader's limit of "
            f"{MAX_DIRECTORY_BYTES:,} (MAX_DIRECTORY_BYTES)"
        )


def _member(path: str, archive: zipfile.ZipFile, name: str) -> bytes:
    """``name``'s bytes, read through a bounded stream: never more than ``MAX_PICKLE_BYTES`` decompressed."""
    info = archive.getinfo(name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise AuditInputError(
            f"{path}: {name} uses zip compression method {info.compress_type}; torch writes it stored"
        )
    limit = f"over the reader's limit of {MAX_PICKLE_BYTES:,} bytes (MAX_PICKLE_BYTES)"
    if info.file_size > MAX_PICKLE_BYTES:
        raise AuditInputError(f"{path}: {name} is {info.file_size:,} bytes, {limit}")
    out = bytearray()
    with archive.open(info) as stream:
        while True:
            chunk = stream.read(min(_CHUNK, MAX_PICKLE_BYTES + 1 - len(out)))
            if not chunk:
                break
            out += chunk
            if len(out) > MAX_PICKLE_BYTES:
                raise AuditInputError(f"{path}: {name} decompresses to more than {MAX_PICKLE_BYTES:,} bytes, {limit}")
    return bytes(out)


def read_checkpoint(path: str) -> dict[Any, Any]:
    """The checkpoint dict of a torch zip checkpoint, with every non-plain object an :class:`Opaque`.

    Raises:
        AuditInputError: not a readable zip checkpoint, malformed, or over a limit (one line naming it).
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
            if magic == _ZIP_MAGIC:
                _directory(path, fh)
    except OSError as err:
        raise AuditInputError(f"{path}: cannot read the checkpoint ({err.strerror or err})") from None
    if magic != _ZIP_MAGIC:
        if magic[:2] == b"\x80\x02" or magic[:1] == b"\x80":
            raise AuditInputError(
                f"{path}: a checkpoint in torch's legacy (non-zip) format; lmlogger reads the zip format "
                "(torch >= 1.6). Re-save it: torch.save(torch.load(path, weights_only=False), path)"
            )
        raise AuditInputError(f"{path}: not a torch checkpoint (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not names:
                raise AuditInputError(f"{path}: not a torch checkpoint (no <name>/data.pkl in the archive)")
            data = _member(path, archive, names[0])
    except AuditInputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, ValueError) as err:
        raise AuditInputError(f"{path}: corrupt checkpoint archive ({_line(err)})") from None
    except (NotImplementedError, struct.error, UnicodeError, MemoryError, OverflowError) as err:
        raise AuditInputError(f"{path}: corrupt checkpoint archive ({type(err).__name__}: {_line(err)})") from None
    try:
        checkpoint = loads(data)
    except UnpickleError as err:
        raise AuditInputError(f"{path}: corrupt checkpoint ({err})") from None
    if not isinstance(checkpoint, dict):
        raise AuditInputError(f"{path}: not a Lightning checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint


def _line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    raise ValueError(f"expected a number, got {type(value).__name__}")


def _int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {type(value).__name__}")
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _point(data: Any) -> Point | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("expected an object for a decision outcome")
    value = _number(data.get("value"))
    return Point(_int(data.get("epoch")) or 0, _int(data.get("step")), value if value is not None else math.nan)


_KINDS = (CHECKPOINT, EARLY_STOPPING, LR_SCHEDULER)


def _finite(value: Any) -> Any:
    """A plain tree with NaN and infinities written as strings (``"nan"``, ``"inf"``), as JSON output needs."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _decision(data: Any) -> Decision:
    if not isinstance(data, dict):
        raise ValueError("a decision is not an object")
    kind = _text(data.get("kind")) or "checkpoint"
    if kind not in _KINDS:
        raise ValueError(f"unknown decision kind {kind!r:.60}")

    def outcome(raw: Any) -> Any:
        if kind == "lr_scheduler":
            drops = raw.get("drops", []) if isinstance(raw, dict) else []
            return [_point(p) for p in drops]
        return _point(raw)

    agree = data.get("agree")
    config = _finite(data.get("config")) if isinstance(data.get("config"), dict) else {}
    return Decision(
        callback=_text(data.get("callback")) or "?",
        kind=kind,
        monitor=_text(data.get("monitor")) or "?",
        mode=_text(data.get("mode")) or "min",
        key=_text(data.get("key")),
        config=dict(config),
        by_logged=outcome(data.get("by_logged")),
        by_reference=outcome(data.get("by_reference")),
        agree=agree if isinstance(agree, bool) else None,
        monitor_verdict=_text(data.get("monitor_verdict")),
        reads=_int(data.get("reads")) or 0,
        mismatched_epochs=[e for e in data.get("mismatched_epochs") or [] if isinstance(e, int)],
        unverified_reads=_int(data.get("unverified_reads")) or 0,
        kept_by_logged=[_point(p) for p in data.get("kept_by_logged") or []],
        kept_by_reference=[_point(p) for p in data.get("kept_by_reference") or []],
        observed=_finite(data.get("observed")) if isinstance(data.get("observed"), dict) else None,
    )


def audit_checkpoint(path: str) -> RunReport:
    """The report of a checkpoint saved during a verified run: each key's last closed epoch, the decisions up
    to the save, and the monitored keys' verdicts (a mismatch makes the audit exit 1)."""
    path = os.fspath(path)
    checkpoint = read_checkpoint(path)
    entry = checkpoint.get("lmlogger")
    if entry is None:
        raise AuditInputError(
            f"{path}: this checkpoint has no lmlogger entry (checkpoint['lmlogger']); "
            "was it saved during a run with VerifiedLogger?"
        )
    try:
        entry = to_plain(entry, MAX_EXPANDED_VALUES, MAX_NESTING, "the lmlogger entry")
        return _report(path, entry)
    except AuditInputError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as err:
        raise AuditInputError(f"{path}: corrupt lmlogger entry in the checkpoint ({_line(err)})") from None


def _report(path: str, entry: Any) -> RunReport:
    if not isinstance(entry, dict):
        raise ValueError("checkpoint['lmlogger'] is not a dict")
    from lmlogger.records._records import SCHEMA_VERSION

    schema = entry.get("schema")
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise AuditInputError(
            f"{path}: lmlogger entry schema version {schema} is newer than this lmlogger understands "
            f"({SCHEMA_VERSION}); upgrade with `pip install -U lmlogger`"
        )
    decisions = [_decision(d) for d in entry.get("decisions") or []]
    keys = entry.get("keys") or {}
    if not isinstance(keys, dict):
        raise ValueError("keys is not a dict")
    report = RunReport(
        source=path,
        backend="checkpoint",
        complete=True,
        status=None,
        stages=["fit"],
        versions={"lmlogger": _text(entry.get("lmlogger")) or "unknown"},
        decisions=decisions,
    )
    monitored: dict[str, list[Decision]] = {}
    for d in decisions:
        monitored.setdefault(d.key or d.monitor, []).append(d)
    for key, data in keys.items():
        if not isinstance(data, dict):
            raise ValueError(f"key {key!r} is not an object")
        epoch = EpochReport(
            epoch=_int(data.get("epoch")) or 0,
            step=_int(data.get("step")),
            logged=_number(data.get("logged")),
            reference=_number(data.get("reference")),
            verdict=_text(data.get("verdict")) or "unverified",
            phase=_text(data.get("phase")) or "unknown",
            findings=[str(f) for f in data.get("findings") or []],
        )
        kr = KeyReport(
            key=str(key),
            provenance="unknown",
            hook="unknown",
            phase=epoch.phase,
            reduce_fx="unknown",
            on_step=False,
            on_epoch=True,
            sync_dist=False,
            batch_size=None,
            dataloader_idx=None,
            logged_keys=[str(key)],
            metric_attribute=None,
            findings=list(epoch.findings),
            fix=_text(data.get("fix")),
            epochs=[epoch],
        )
        acted = monitored.get(str(key), [])
        verdicts = [epoch.verdict] + [d.monitor_verdict for d in acted if d.monitor_verdict]
        kr.verdict = worst(verdicts)
        if any(d.monitor_verdict == "mismatch" for d in acted) and "decision-on-mismatch" not in kr.findings:
            kr.findings.append("decision-on-mismatch")
        report.keys.append(kr)
    saved_by = entry.get("saved_by")
    report.checkpoint = {
        "epoch": _int(entry.get("epoch")),
        "global_step": _int(entry.get("global_step")),
        "saved_by": {str(k): v for k, v in saved_by.items() if isinstance(v, str)}
        if isinstance(saved_by, dict)
        else None,
        "monitors": [str(m) for m in entry.get("monitors") or []],
        "monitor_verdict": _text(entry.get("monitor_verdict")),
        "sidecar": _text(entry.get("sidecar")),
    }
    return report
