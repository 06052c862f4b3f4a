"""Per-key state of a run: one tracker per Lightning result key (hook, name, dataloader)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmlogger.records._records import METRIC_FUNCTIONAL, ProvenanceRecord, vouches_for
from lmlogger.runtime._ledger import TensorLedger
from lmlogger.runtime._provenance import TENSOR, NumberEvidence


@dataclass
class KeyTracker:
    """What lmlogger knows about one logged key: its context, provenance and this epoch's ledger."""

    storage_key: str
    name: str
    hook: str
    phase: str
    step_hook: bool
    on_step: bool
    on_epoch: bool
    reduce: str
    sync_dist: bool
    dataloader_idx: int | None
    epoch_key: str
    step_key: str
    kind: str | None = None
    metric: Any = None
    attribute: str | None = None
    index: tuple[Any, ...] | None = None  # the element of the metric's result that was logged
    evidence: NumberEvidence | None = None  # Python numbers logged this epoch, for the value comparison
    derived: Any = None  # a Derivation when the value is computed from a metric result (read once)
    derived_checked: bool = False
    call: Any = None  # the CallSite of the self.log call as written (read once)
    call_checked: bool = False
    batch_size: int | None = None
    batch_size_source: str = "default"
    ledger: TensorLedger | None = None
    active: bool = False
    stale: bool = False
    last_forward: Any = None
    recorded: tuple[str | None, str | None] | None = None
    shadow: Any = None  # metric_functional: the shadow Metric of this key's epoch (runtime._functional.Shadow)

    @property
    def key(self) -> str:
        return self.epoch_key if self.on_epoch else self.step_key

    def provenance(self) -> ProvenanceRecord:
        keys = (self.step_key, self.epoch_key) if self.on_step and self.on_epoch else (self.key,)
        return ProvenanceRecord(
            key=self.key,
            name=self.name,
            kind=self.kind or TENSOR,
            hook=self.hook,
            phase=self.phase,
            on_step=self.on_step,
            on_epoch=self.on_epoch,
            reduce_fx=self.reduce,
            sync_dist=self.sync_dist,
            batch_size=self.batch_size,
            batch_size_source=self.batch_size_source,
            dataloader_idx=self.dataloader_idx,
            logged_keys=keys,
            metric_attribute=self.attribute,
            metric_class=type(self.metric).__name__
            if self.metric is not None
            else (self.shadow.cls if self.kind == METRIC_FUNCTIONAL and self.shadow is not None else None),
            vouches_for=vouches_for(self.kind or TENSOR),
        )
