"""The sink every backend gets: the sidecar file and reference metrics through the wrapped logger."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Protocol

from lightning_utilities.core.rank_zero import rank_zero_info, rank_zero_warn

from lmlogger.records._records import Close, Header, ProvenanceRecord, VerificationRecord, to_json
from lmlogger.records._versions import versions

SIDECAR = os.path.join("lmlogger", "provenance.jsonl")
#: The audit of the run as one self-contained page, written beside the sidecar when a run ends.
REPORT = os.path.join("lmlogger", "report.html")


class Sink(Protocol):
    """What a VerifiedLogger writes to. One instance per wrapped logger and run directory."""

    path: str
    run_dir: str

    def run_key(self) -> Any: ...
    def begin(self, stage: str) -> None: ...
    def write(self, provenance: list[ProvenanceRecord], records: list[VerificationRecord]) -> None: ...
    def close(self, status: str) -> None: ...


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_dir_of(logger: Any, trainer: Any) -> str:
    """The directory of the wrapped logger's run, where the sidecar goes."""
    log_dir = getattr(logger, "log_dir", None)
    if isinstance(log_dir, str) and log_dir:
        return log_dir
    save_dir = logger.save_dir
    if save_dir:
        version = logger.version
        version = version if isinstance(version, str) else f"version_{version}"
        return os.path.join(save_dir, str(logger.name), version)
    return os.path.join(trainer.default_root_dir, "lmlogger_runs", str(logger.name), str(logger.version))


class GenericSink:
    """Appends records to ``<run dir>/lmlogger/provenance.jsonl`` and logs reference metrics."""

    def __init__(self, vlogger: Any, trainer: Any) -> None:
        self.vlogger = vlogger
        self.logger = vlogger.wrapped
        self.options = vlogger.options
        self.prefix = vlogger.options.prefix
        self.run_dir = self._run_dir(trainer)
        self.path = os.path.join(self.run_dir, self._sidecar_name(trainer))
        self.report_path = report_path_of(self.path)
        self.stage = "unknown"
        self.last_report: Any = None  # the audit read back when the run closed
        self._key = self.run_key()

    def _sidecar_name(self, trainer: Any) -> str:
        """``lmlogger/provenance.jsonl``, or ``lmlogger/provenance-<logger class>.jsonl`` for the second and later
        VerifiedLogger of one trainer whose log dir is this one (e.g. TensorBoard and CSV with one ``version``):
        each logger's run is then audited once, against its own backend. Says so in one warning."""
        sharing = []
        for logger in getattr(trainer, "loggers", None) or ():
            inner = logger.__dict__.get("_lml_logger") if hasattr(logger, "__dict__") else None
            if inner is None:
                continue  # not a VerifiedLogger
            if {"MLFlowLogger", "WandbLogger"} & {k.__name__ for k in type(inner).__mro__}:
                continue  # their sidecars live in a folder of their own run id
            if logger is self.vlogger:
                run_dir = self.run_dir
            else:
                sink = logger.__dict__.get("_lml_sink")
                try:
                    run_dir = sink.run_dir if sink is not None else run_dir_of(inner, trainer)
                except Exception:  # a logger whose dirs cannot be known yet: it does not share ours
                    continue
            if os.path.abspath(run_dir) == os.path.abspath(self.run_dir):
                sharing.append(logger)
        if len(sharing) < 2 or sharing[0] is self.vlogger:
            return SIDECAR
        mine = type(self.logger).__name__
        same = [lg for lg in sharing if type(lg.__dict__["_lml_logger"]).__name__ == mine]
        suffix = mine.lower() + (f"-{same.index(self.vlogger) + 1}" if len(same) > 1 else "")
        name = os.path.join("lmlogger", f"provenance-{suffix}.jsonl")
        classes = " and ".join(type(lg.__dict__["_lml_logger"]).__name__ for lg in sharing)
        rank_zero_warn(
            f"lmlogger: {classes} write to one log dir ({self.run_dir}); each VerifiedLogger keeps its own "
            f"sidecar there ({SIDECAR} for the first, {name} for {mine}) and is audited on its own. "
            "Give the loggers different `version`s or `save_dir`s to keep their files apart."
        )
        return name

    def _run_dir(self, trainer: Any) -> str:
        return run_dir_of(self.logger, trainer)

    def run_key(self) -> Any:
        try:
            return (self.logger.save_dir, self.logger.name, self.logger.version)
        except Exception:
            return None

    def run_info(self) -> dict[str, Any]:
        return {
            "name": _plain(getattr(self.logger, "name", None)),
            "version": _plain(getattr(self.logger, "version", None)),
            "save_dir": _plain(getattr(self.logger, "save_dir", None)),
            "log_dir": self.run_dir,
            # the wrapped logger's own `prefix=` renames every key it stores (`exp-f1`): readers need it
            "metric_prefix": metric_prefix_of(self.logger),
        }

    # -- sidecar ------------------------------------------------------------------------------
    def _append(self, records: list[Any]) -> None:
        """Append ``records`` in one write. A last line left unfinished (a full disk, a run killed mid-write,
        then resumed into this dir) is ended first, so it stays one damaged line the audit skips, and the
        records after it stay readable."""
        data = "".join(json.dumps(to_json(r), allow_nan=False, sort_keys=True) + "\n" for r in records).encode()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "a+b", buffering=0) as fh:
            end = fh.seek(0, os.SEEK_END)
            if end:
                fh.seek(end - 1)
                if fh.read(1) != b"\n":
                    data = b"\n" + data
            view = memoryview(data)
            while view:  # one write() call; the loop only covers a short write
                view = view[fh.write(view) :]
            os.fsync(fh.fileno())

    def begin(self, stage: str) -> None:
        self.stage = stage
        vlogger = self.vlogger
        session = vlogger.__dict__.get("_lml_session")
        ckpt_path, resumed_from = _resumed(getattr(session, "trainer", None))
        header = Header(
            stage=stage,
            logger=type(self.logger).__name__,
            run=self.run_info(),
            versions=versions(),
            created=_now(),
            options={
                "rtol": vlogger.options.rtol,
                "atol": vlogger.options.atol,
                "on_mismatch": vlogger.options.on_mismatch,
                "prefix": vlogger.options.prefix,
            },
            ckpt_path=ckpt_path,
            resumed_from_epoch=resumed_from,
        )
        self._append([header])

    def write(self, provenance: list[ProvenanceRecord], records: list[VerificationRecord]) -> None:
        self._append([*provenance, *records])
        self.log_references(records)

    def close(self, status: str) -> None:
        self._append([Close(stage=self.stage, status=status, closed=_now())])
        written = self.write_report() if self.options.html_report else False
        self.announce_close(written)

    def announce_close(self, report_written: bool, note: str | None = None) -> None:
        """The closing line (:func:`~lmlogger.runtime._closing.closing_line`), unless ``on_mismatch="ignore"``."""
        if self.vlogger.options.on_mismatch == "ignore":
            return
        from lmlogger.runtime._closing import closing_line

        rank_zero_info(
            closing_line(
                self.last_report,
                stage=self.stage,
                run_dir=self.run_dir,
                report_path=self.report_path if report_written else None,
                note=note,
            )
        )

    def write_report(self) -> bool:
        """Write ``lmlogger/report.html`` (the audit of this run, ``lmlogger audit --format html``) beside the
        sidecar. A failure is one warning: the sidecar is the record, the page only a view of it."""
        self.last_report = None
        try:
            from lmlogger.audit import audit
            from lmlogger.audit._html import to_html

            self.last_report = audit(self.path)
            page = to_html(self.last_report)
            partial = self.report_path + ".partial"
            with open(partial, "w", encoding="utf-8") as fh:
                fh.write(page)
            os.replace(partial, self.report_path)  # a reader never sees half a page
            return True
        except Exception as err:
            from lmlogger.records._errors import warn_user

            warn_user(
                f"lmlogger: could not write the HTML report {self.report_path} ({type(err).__name__}: {err}); "
                f"the run's records are complete in {self.path} (`lmlogger audit {self.run_dir} --format html`)."
            )
            return False

    def write_decisions(self, records: list[Any], decisions: list[Any]) -> None:
        """Append ``decision`` records (one per read of a monitored key); ``decisions`` is each callback's
        decision so far (:class:`lmlogger.records._replay.Decision`), for sinks that show it."""
        self._append(records)

    # -- extra metrics ------------------------------------------------------------------------
    def log_references(self, records: list[VerificationRecord]) -> None:
        """The epoch's reference values through the wrapped logger, called as Lightning calls it
        (``reference_metrics=False``: not at all)."""
        if not self.options.reference_metrics:
            return
        by_step: dict[int | None, dict[str, float]] = defaultdict(dict)
        for record in records:
            if record.reference is not None and math.isfinite(record.reference):
                by_step[record.step][self.prefix + record.key] = record.reference
        for step, metrics in by_step.items():
            self.logger.log_metrics(metrics=metrics, step=step)
        if by_step:
            self.logger.save()


def metric_prefix_of(logger: Any) -> str:
    """A Lightning logger's ``prefix=`` with the join character Lightning puts after it (``"exp-"``), or ``""``."""
    prefix = getattr(logger, "_prefix", "") or ""
    return f"{prefix}{getattr(logger, 'LOGGER_JOIN_CHAR', '-')}" if isinstance(prefix, str) and prefix else ""


def report_path_of(sidecar: str) -> str:
    """The HTML report beside a sidecar: ``lmlogger/report.html`` for ``lmlogger/provenance.jsonl`` (and
    ``report-<suffix>.html`` for a ``provenance-<suffix>.jsonl`` of a second logger sharing the run dir)."""
    folder, name = os.path.split(sidecar)
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    return os.path.join(folder, stem.replace("provenance", "report", 1) + ".html")


def _resumed(trainer: Any) -> tuple[str | None, int | None]:
    """``(trainer.ckpt_path, the epoch the fit continues at)`` when this stage starts from a checkpoint.

    The sink begins before Lightning restores the loops, so the epoch is read from the loaded checkpoint's fit
    loop progress (``processed``: epochs whose training finished, the next one to run); ``None`` if unknown.
    """
    if trainer is None or getattr(getattr(trainer, "state", None), "fn", None) is None:
        return None, None
    ckpt_path = getattr(trainer, "ckpt_path", None)
    if not ckpt_path or trainer.state.fn.value != "fit":  # validate/test load weights; only a fit resumes
        return None, None
    loaded = getattr(getattr(trainer, "_checkpoint_connector", None), "_loaded_checkpoint", None) or {}
    try:
        epoch: int | None = int(loaded["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        epoch = None
    return str(ckpt_path), epoch


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
