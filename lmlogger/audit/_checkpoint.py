"""Auditing a checkpoint file (``.ckpt``): its ``checkpoint["lmlogger"]`` entry, read without torch.

A torch checkpoint is a zip archive whose ``<name>/data.pkl`` pickles the checkpoint dict; tensors in it
are persistent references to storages in ``<name>/data/``. This reader unpickles ``data.pkl`` with a
restricted :class:`pickle.Unpickler`: only plain builtins (``dict``, ``list``, ``str``, numbers, ...) and
``collections.OrderedDict`` are built; every other global (torch's tensor rebuild functions, a class
from the training code, ``os.system`` in a hostile file) becomes an inert :class:`Opaque` stand-in that is
never imported nor called, and storages are never read. So the audit needs no torch, and a checkpoint
cannot run code in the auditor.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from typing import Any

from lmlogger.audit._model import EpochReport, KeyReport, RunReport
from lmlogger.audit._sidecar import AuditInputError
from lmlogger.records._records import worst
from lmlogger.records._replay import Decision, Point

#: data.pkl holds metadata only (tensors live in data/): a larger one is refused rather than read.
MAX_PICKLE_BYTES = 256 * 1024 * 1024
_ZIP_MAGIC = b"PK\x03\x04"


class Opaque:
    """Stands for an object of a class the reader does not load (a tensor, a torch or user type): inert."""

    __slots__ = ()
    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


_SAFE: dict[tuple[str, str], Any] = dict(
    {
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "tuple"): tuple,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "int"): int,
        ("builtins", "float"): float,
        ("builtins", "complex"): complex,
        ("builtins", "str"): str,
        ("builtins", "bytes"): bytes,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "bool"): bool,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("__builtin__", "dict"): dict,
        ("__builtin__", "list"): list,
        ("__builtin__", "set"): set,
    }
)


def _encode(text: Any = "", encoding: Any = "latin1", *args: Any) -> Any:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: strings only, nothing else."""
    if isinstance(text, str) and isinstance(encoding, str) and encoding in ("latin1", "latin-1"):
        return text.encode("latin1")
    return Opaque()


class _Unpickler(pickle.Unpickler):
    """Builds plain builtins only; see module docstring."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self._stubs: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        safe = _SAFE.get((module, name))
        if safe is not None:
            return safe
        if (module, name) == ("_codecs", "encode"):
            return _encode
        qualname = f"{module}.{name}"
        stub = self._stubs.get(qualname)
        if stub is None:
            stub = self._stubs[qualname] = type("Opaque", (Opaque,), {"__slots__": (), "qualname": qualname})
        return stub

    def persistent_load(self, pid: Any) -> Any:
        return Opaque()


def read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint dict of a torch zip checkpoint, with every non-plain object an :class:`Opaque`."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise AuditInputError(f"{path}: cannot read the checkpoint ({err.strerror})") from None
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
            info = archive.getinfo(names[0])
            if info.file_size > MAX_PICKLE_BYTES:
                raise AuditInputError(f"{path}: {names[0]} is {info.file_size} bytes; too large for a checkpoint")
            data = archive.read(names[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError) as err:
        raise AuditInputError(f"{path}: corrupt checkpoint archive ({err})") from None
    try:
        checkpoint = _Unpickler(data).load()
    except RecursionError:
        raise AuditInputError(f"{path}: corrupt checkpoint (data.pkl nests too deeply)") from None
    except Exception as err:  # any malformed pickle: one line, exit 2
        raise AuditInputError(f"{path}: corrupt checkpoint (data.pkl: {type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict):
        raise AuditInputError(f"{path}: not a Lightning checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint


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


def _decision(data: Any) -> Decision:
    if not isinstance(data, dict):
        raise ValueError("a decision is not an object")
    kind = _text(data.get("kind")) or "checkpoint"

    def outcome(raw: Any) -> Any:
        if kind == "lr_scheduler":
            drops = raw.get("drops", []) if isinstance(raw, dict) else []
            return [_point(p) for p in drops]
        return _point(raw)

    agree = data.get("agree")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
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
        observed=data.get("observed") if isinstance(data.get("observed"), dict) else None,
    )


def audit_checkpoint(path: str) -> RunReport:
    """The report of a checkpoint saved during a verified run: each key's last closed epoch, the decisions up
    to the save, and the monitored keys' verdicts (a mismatch makes the audit exit 1)."""
    checkpoint = read_checkpoint(path)
    entry = checkpoint.get("lmlogger")
    if entry is None:
        raise AuditInputError(
            f"{path}: this checkpoint has no lmlogger entry (checkpoint['lmlogger']); "
            "was it saved during a run with VerifiedLogger?"
        )
    try:
        return _report(path, entry)
    except (ValueError, TypeError, AttributeError) as err:
        raise AuditInputError(f"{path}: corrupt lmlogger entry in the checkpoint ({err})") from None


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
