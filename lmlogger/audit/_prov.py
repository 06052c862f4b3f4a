"""The audit as a W3C PROV document (``lmlogger audit --format prov``), built with the ``prov`` package.

The document says, for every key and epoch, where each number came from:

* entities: the values passed to ``self.log`` in that epoch (``lml:LoggedInputs``), the epoch value
  Lightning stored (``lml:LoggedEpochValue``), lmlogger's reference (``lml:ReferenceEpochValue``),
  the verdict (``lml:Verdict``), and one ``lml:LoggedKey`` per key that each epoch value specializes;
* activities: the training run (``lml:TrainingRun``), Lightning's epoch reduction
  (``lml:LightningReduction``), lmlogger's independent recomputation (``lml:Recomputation``) and the
  comparison of the two (``lml:Verification``);
* agents: Lightning and lmlogger (``prov:SoftwareAgent``, one per version).

Identifiers live in one namespace per audited run (``run1``, ``run2``, ...); keys are percent-encoded
in them (``val_acc/dataloader_idx_0`` -> ``val_acc%2Fdataloader_idx_0``). The vocabulary is ``lml``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from lmlogger.audit._escape import terminal
from lmlogger.audit._model import AuditReport, EpochReport, KeyReport, RunReport
from lmlogger.audit._sidecar import AuditInputError

#: Namespace of lmlogger's PROV vocabulary (types and attributes).
VOCABULARY = "urn:lmlogger:prov#"
#: Namespace of the software agents.
SOFTWARE = "urn:lmlogger:software:"
_METRIC_KINDS = ("metric_object", "metric_compute", "metric_forward")


def _quote(text: str) -> str:
    """``text`` percent-encoded for an identifier: one identifier per string, lone surrogates included."""
    return quote(text, safe="", errors="surrogatepass")


def _text(value: Any) -> Any:
    """A string read from a run, with controls, bidi overrides and surrogates shown as escapes (as in the
    table): the document is printed to a terminal, and JSON does not carry a lone surrogate."""
    return terminal(value) if isinstance(value, str) else value


def _import_prov() -> Any:
    try:
        import prov.model
    except ImportError as err:
        raise AuditInputError(
            "--format prov needs the `prov` package, which is not installed: pip install 'lmlogger[prov]'"
        ) from err
    return prov.model


def to_prov_json(report: AuditReport) -> str:
    """The PROV-JSON document of ``report`` (every run, key and epoch), as text.

    Args:
        report: an audit, e.g. ``lmlogger.audit("logs/lightning_logs/version_0")``.

    Raises:
        AuditInputError: the ``prov`` package is not installed.

    Example:
        ```python
        import lmlogger
        from lmlogger.audit._prov import to_prov_json

        text = to_prov_json(lmlogger.audit("logs/lightning_logs/version_0"))
        ```
    """
    return to_prov_document(report).serialize(format="json", indent=2)


def to_prov_document(report: AuditReport) -> Any:
    """The ``prov.model.ProvDocument`` of ``report`` (see the module docstring for its shape)."""
    model = _import_prov()
    doc = model.ProvDocument()
    lml = doc.add_namespace("lml", VOCABULARY)
    software = doc.add_namespace("sw", SOFTWARE)
    for index, run in enumerate(report.runs, start=1):
        ns = doc.add_namespace(f"run{index}", f"urn:lmlogger:run:{_quote(run.source)}#")
        _RunWriter(model, doc, lml, software, ns, run).write()
    return doc


class _RunWriter:
    """Adds one run's records to a document."""

    def __init__(self, model: Any, doc: Any, lml: Any, software: Any, ns: Any, run: RunReport) -> None:
        self.model = model
        self.doc = doc
        self.lml = lml
        self.ns = ns
        self.run = run
        self.lightning = self._agent(software, "lightning", run.versions.get("lightning", "unknown"))
        self.lmlogger = self._agent(software, "lmlogger", run.versions.get("lmlogger", "unknown"))

    def _agent(self, software: Any, name: str, version: str) -> Any:
        identifier = software[f"{name}-{_quote(version)}"]
        found = self.doc.get_record(identifier)
        if found:
            return found[0]
        return self.doc.agent(
            identifier,
            {
                self.model.PROV_TYPE: self.model.PROV["SoftwareAgent"],
                self.model.PROV_LABEL: _text(f"{name} {version}"),
                self.lml["version"]: _text(version),
            },
        )

    def _attrs(self, type_: str, label: str, **values: Any) -> dict[Any, Any]:
        attrs: dict[Any, Any] = {self.model.PROV_TYPE: self.lml[type_], self.model.PROV_LABEL: _text(label)}
        for name, value in values.items():
            if value is None or value == "":
                continue  # PROV has no null: an absent attribute
            attrs[self.model.PROV_VALUE if name == "value" else self.lml[name]] = _text(value)
        return attrs

    def write(self) -> None:
        run = self.run
        counts = run.counts()
        stages = [stage.label or stage.stage for stage in run.stage_details] or list(run.stages)
        self.activity = self.doc.activity(
            self.ns["run"],
            other_attributes=self._attrs(
                "TrainingRun",
                f"Lightning run {', '.join(stages) or '(no stage)'} at {run.source}",
                source=run.source,
                backend=run.backend,
                stages=",".join(stages),
                complete=run.complete,
                status=run.status,
                match=counts["match"],
                mismatch=counts["mismatch"],
                unverified=counts["unverified"],
                torchmetricsVersion=run.versions.get("torchmetrics"),
                torchVersion=run.versions.get("torch"),
            ),
        )
        self.doc.wasAssociatedWith(self.activity, self.lightning)
        self.doc.wasAssociatedWith(self.activity, self.lmlogger)
        for key in run.keys:
            self._key(key)

    def _key(self, key: KeyReport) -> None:
        qkey = _quote(key.key)
        series = self.doc.entity(
            self.ns[f"key.{qkey}"],
            self._attrs(
                "LoggedKey",
                key.key,
                key=key.key,
                provenance=key.provenance,
                hook=key.hook,
                phase=key.phase,
                reduceFx=key.reduce_fx,
                onStep=key.on_step,
                onEpoch=key.on_epoch,
                syncDist=key.sync_dist,
                batchSize=key.batch_size,
                dataloaderIdx=key.dataloader_idx,
                loggedKeys=",".join(key.logged_keys),
                metricAttribute=key.metric_attribute,
                verdict=key.verdict,
                findings=",".join(key.findings),
                fix=key.fix,
                reason=key.reason,
            ),
        )
        self.doc.wasGeneratedBy(series, self.activity)
        several = len({epoch.stage for epoch in key.epochs}) > 1
        for epoch in key.epochs:
            stage = f".stage{epoch.stage}" if several else ""
            self._epoch(key, series, epoch, f"{qkey}.{epoch.phase}.{epoch.epoch}{stage}")

    def _derived(
        self, activity_id: str, activity_attrs: Any, entity_id: str, entity_attrs: Any, inputs: Any, agent: Any
    ) -> Any:
        """An epoch value (entity) made by ``agent``'s computation (activity) from what ``self.log`` received."""
        doc, ns = self.doc, self.ns
        activity = doc.activity(ns[activity_id], other_attributes=activity_attrs)
        doc.wasInformedBy(activity, self.activity)
        doc.wasAssociatedWith(activity, agent)
        doc.used(activity, inputs)
        entity = doc.entity(ns[entity_id], entity_attrs)
        doc.wasGeneratedBy(entity, activity)
        doc.wasDerivedFrom(entity, inputs, activity)
        doc.wasAttributedTo(entity, agent)
        return entity

    def _epoch(self, key: KeyReport, series: Any, epoch: EpochReport, suffix: str) -> None:
        doc, ns = self.doc, self.ns
        where = f"{key.key}, {epoch.phase} epoch {epoch.epoch}"
        common = {"key": key.key, "phase": epoch.phase, "epoch": epoch.epoch, "step": epoch.step}
        inputs = doc.entity(
            ns[f"inputs.{suffix}"],
            self._attrs(
                "LoggedInputs",
                f"what self.log received for {where} ({key.provenance}, {key.hook})",
                provenance=key.provenance,
                hook=key.hook,
                metricAttribute=key.metric_attribute,
                **common,
            ),
        )
        doc.wasGeneratedBy(inputs, self.activity)
        compared = []
        if epoch.logged is not None:
            how = (
                f"{key.metric_attribute or 'metric'}.compute() at epoch end"
                if key.provenance == "metric_object"
                else f"reduce_fx={key.reduce_fx} of the values logged in {key.hook}"
            )
            reduction = self._attrs(
                "LightningReduction",
                f"Lightning: {how}",
                reduceFx=None if key.provenance == "metric_object" else key.reduce_fx,
            )
            value = self._attrs("LoggedEpochValue", f"logged {where}", value=float(epoch.logged), **common)
            logged = self._derived(f"reduction.{suffix}", reduction, f"logged.{suffix}", value, inputs, self.lightning)
            doc.specializationOf(logged, series)
            compared.append(logged)
        if epoch.reference is not None:
            how = (
                "compute() over this epoch's metric state, across ranks"
                if key.provenance in _METRIC_KINDS
                else "compute() of a shadow Metric fed with the functional call's inputs, across ranks"
                if key.provenance == "metric_functional"
                else f"float64 {key.reduce_fx} of the step values, across ranks"
            )
            recomputation = self._attrs("Recomputation", f"lmlogger: {how}")
            value = self._attrs("ReferenceEpochValue", f"reference {where}", value=float(epoch.reference), **common)
            activity_id, entity_id = f"recomputation.{suffix}", f"reference.{suffix}"
            compared.append(self._derived(activity_id, recomputation, entity_id, value, inputs, self.lmlogger))
        verification = doc.activity(
            ns[f"verification.{suffix}"],
            other_attributes=self._attrs("Verification", f"lmlogger: compare logged and reference, {where}"),
        )
        doc.wasInformedBy(verification, self.activity)
        doc.wasAssociatedWith(verification, self.lmlogger)
        verdict = doc.entity(
            ns[f"verdict.{suffix}"],
            self._attrs(
                "Verdict",
                f"{epoch.verdict}: {where}",
                value=epoch.verdict,
                findings=",".join(epoch.findings),
                reason=epoch.reason,
                **common,
            ),
        )
        doc.wasGeneratedBy(verdict, verification)
        doc.wasAttributedTo(verdict, self.lmlogger)
        for entity in compared:
            doc.used(verification, entity)
            doc.wasDerivedFrom(verdict, entity, verification)
