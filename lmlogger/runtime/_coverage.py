"""Keys the wrapped logger received without an observed ``self.log``: each is recorded ``unverified``.

Every VerifiedLogger of a trainer hands each of its ``log_metrics`` calls to :meth:`Coverage.received`. A key
that no observed ``self.log`` call produced is kept for that logger (its last value and step per phase and
epoch; memory grows with keys, not steps) and written to that logger's sidecar as a ``direct`` or ``unseen`` key
(:mod:`lmlogger.records._coverage`) when a window closes and when the run ends. The caller tells which of the
two: Lightning's logger connector hands the values of ``self.log`` calls over from its ``update_*_metrics``
methods; anything else (the user's ``self.logger.log_metrics``, ``LearningRateMonitor``, ``ThroughputMonitor``)
is a direct write.
"""

from __future__ import annotations

from types import FrameType
from typing import TYPE_CHECKING, Any

from lightning_utilities.core.rank_zero import rank_zero_only

from lmlogger.records._coverage import DIRECT, DIRECT_HOOK, UNSEEN, direct_reason, unseen_reason
from lmlogger.records._errors import warn_user
from lmlogger.records._records import ProvenanceRecord, VerificationRecord
from lmlogger.runtime import _lightning

if TYPE_CHECKING:
    from lmlogger.runtime._session import Session

#: Keys Lightning adds itself to the values of ``self.log`` calls (``epoch``, when no step is given).
_LIGHTNING_KEYS = frozenset({"epoch"})


class Coverage:
    """See module docstring. One per :class:`~lmlogger.runtime._session.Session`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        ns = _lightning.of(session.trainer) or _lightning.primary()
        self._connector_log = ns.connector_log_code
        self._from_self_log = ns.epoch_values_codes
        self._known: set[str] = set()
        self._trackers_seen = -1
        self.kinds: dict[str, tuple[str, str, str, str]] = {}  # key -> (kind, hook, phase, reason)
        # per VerifiedLogger (by id): (key, phase, epoch) -> (last value, its step); keys written so far
        self.pending: dict[int, dict[tuple[str, str, int], tuple[float | None, int | None]]] = {}
        self.recorded: dict[int, set[str]] = {}
        self.seen_observed = False  # a key of an observed self.log call reached the logger
        self.finished = False

    def _known_keys(self) -> set[str]:
        trackers = self.session.trackers
        if len(trackers) != self._trackers_seen:
            self._trackers_seen = len(trackers)
            self._known = {k for t in trackers.values() if t is not None for k in (t.epoch_key, t.step_key)}
        return self._known

    def received(self, logger: Any, metrics: dict[str, Any], step: int | None, caller: FrameType | None) -> None:
        """``logger.log_metrics(metrics, step)`` was called by ``caller`` (``logger``: a VerifiedLogger)."""
        try:
            self._received(logger, metrics, step, caller)
        except Exception as err:  # never break training
            self.session._internal_error("recording the keys the logger received", err)

    def _received(self, logger: Any, metrics: dict[str, Any], step: int | None, caller: FrameType | None) -> None:
        known = self._known_keys()
        outside = [key for key in metrics if key not in known]
        if len(outside) < len(metrics):
            self.seen_observed = True
        if not outside:
            return
        if caller is not None and caller.f_code is self._connector_log:
            caller = caller.f_back  # trainer._logger_connector.log_metrics(...): who called the connector
        from_self_log = caller is not None and caller.f_code in self._from_self_log
        trainer = self.session.trainer
        phase = "test" if trainer.testing else "val" if (trainer.validating or trainer.sanity_checking) else "train"
        epoch = int(trainer.current_epoch)
        pending = self.pending.setdefault(id(logger), {})
        for key in outside:
            if from_self_log and key in _LIGHTNING_KEYS:
                continue
            if key not in self.kinds:
                if from_self_log:
                    self.kinds[key] = (UNSEEN, "unknown", phase, unseen_reason(key))
                else:
                    name = getattr(caller.f_code, "co_qualname", caller.f_code.co_name) if caller else None
                    self.kinds[key] = (DIRECT, DIRECT_HOOK, phase, direct_reason(key, name))
            pending[(key, phase, epoch)] = (_number(metrics[key]), step)

    def flush(self, logger: Any) -> tuple[list[ProvenanceRecord], list[VerificationRecord]]:
        """Records of the keys ``logger`` received since the last flush: a provenance record the first time a key
        is written, one ``unverified`` verification record per key, phase and epoch."""
        provenance, records = [], []
        pending = self.pending.pop(id(logger), {})
        recorded = self.recorded.setdefault(id(logger), set())
        for (key, phase, epoch), (value, step) in pending.items():
            kind, hook, first_phase, reason = self.kinds[key]
            if key not in recorded:
                recorded.add(key)
                provenance.append(
                    ProvenanceRecord(
                        key=key,
                        name=key,
                        kind=kind,
                        hook=hook,
                        phase=first_phase,
                        on_step=False,
                        on_epoch=True,
                        reduce_fx="unknown",
                        sync_dist=False,
                        batch_size=None,
                        batch_size_source="unknown",
                        dataloader_idx=None,
                        logged_keys=(key,),
                    )
                )
            records.append(
                VerificationRecord(
                    key=key,
                    phase=phase,
                    epoch=epoch,
                    step=step,
                    logged=value,
                    reference=None,
                    verdict="unverified",
                    reason=reason,
                )
            )
        return provenance, records

    def emit(self) -> None:
        for logger in self.session.loggers:
            provenance, records = self.flush(logger)
            if provenance or records:
                logger._emit(provenance, records, None)

    def finish(self) -> None:
        """The run ends: write what is pending; one warning at the user's line when self.log calls went unseen."""
        if self.finished:
            return
        self.finished = True
        self.emit()
        unseen = [key for key, (kind, *_) in self.kinds.items() if kind == UNSEEN]
        if not unseen or rank_zero_only.rank != 0:
            return
        shown = ", ".join(f"`{k}`" for k in unseen[:5]) + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
        if not self.seen_observed:
            warn_user(
                f"lmlogger: the logger received {len(unseen)} key(s) from self.log ({shown}) but lmlogger saw none "
                "of those self.log calls: nothing in this run was verified. lmlogger follows "
                f"`LightningModule.log` of {_lightning.names()}; a module that logs some other way is outside it."
            )
        else:
            warn_user(
                f"lmlogger: the logger received {shown} from self.log calls lmlogger did not see: "
                "they are recorded `unverified`."
            )


def _number(value: Any) -> float | None:
    try:
        return float(value.detach().double().cpu()) if hasattr(value, "detach") else float(value)
    except (TypeError, ValueError, RuntimeError):
        return None
