"""``lmlogger audit --format prov``: a W3C PROV-JSON document made and validated with the ``prov`` package."""

import json
import os
import sys
import warnings
from urllib.parse import quote

import pytest
from helpers import KitchenSink, loader, seeded, trainer
from lightning.pytorch.loggers import TensorBoardLogger

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.audit import AuditInputError
from lmlogger.cli import main as cli

prov_model = pytest.importorskip("prov.model", reason="the prov package is needed: pip install 'lmlogger[prov]'")
from lmlogger.audit._prov import VOCABULARY, to_prov_document, to_prov_json  # noqa: E402

P = prov_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prov")
    seeded(0)
    logger = VerifiedLogger(TensorBoardLogger(str(tmp), name="run"), on_mismatch="ignore")
    t = trainer(logger, tmp, max_epochs=2, num_sanity_val_steps=2, enable_checkpointing=False)
    model = KitchenSink(val_loaders=2)
    t.fit(model, loader(), [loader(60, seed=1), loader(44, seed=2)])
    t.test(model, loader(50, seed=3))
    run_dir = logger.log_dir
    del logger, t, model
    report = lmlogger.audit(run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", P.ProvWarning)  # nothing the library flags as invalid or deprecated
        text = to_prov_json(report)
    return run_dir, report, text


def records(doc, cls):
    return [r for r in doc.get_records() if isinstance(r, cls)]


def one(doc, ident, cls):
    found = [r for r in doc.get_record(ident) if isinstance(r, cls)]
    assert len(found) == 1, ident
    return found[0]


def attr(record, name):
    values = record.get_attribute(name)
    assert len(values) == 1, (record.identifier, name, values)
    return next(iter(values))


def test_document_deserializes_round_trips_and_unifies(run):
    """prov reads the PROV-JSON back into the same document, and unification (PROV-CONSTRAINTS) accepts it."""
    _, report, text = run
    doc = P.ProvDocument.deserialize(content=text, format="json")
    assert doc == to_prov_document(report)
    unified = doc.unified()  # raises ProvUnificationError on records that conflict
    assert len(list(unified.get_records())) == len(list(doc.get_records()))  # no identifier used twice
    assert not doc.has_bundles()
    assert json.loads(text)["prefix"]["lml"] == VOCABULARY


def test_document_validates_against_the_prov_json_schema(run):
    """The text validates against the W3C PROV-JSON submission's JSON schema (the copy shipped with prov)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = os.path.join(os.path.dirname(P.__file__), os.pardir, "tests", "schemas", "prov-json.schema.json")
    if not os.path.isfile(schema_path):
        pytest.skip("this prov installation does not ship the PROV-JSON schema")
    with open(schema_path) as fh:
        schema = json.load(fh)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(json.loads(run[2])), key=str)
    assert not errors, "\n".join(str(e) for e in errors[:5])


def test_counts_of_entities_activities_agents_and_relations(run):
    """One entity per key, four per key-epoch; one run activity and three per key-epoch; two agents."""
    _, report, text = run
    doc = P.ProvDocument.deserialize(content=text, format="json")
    keys = report.runs[0].keys
    epochs = [e for k in keys for e in k.epochs]
    assert epochs and all(e.logged is not None and e.reference is not None for e in epochs)
    n = len(epochs)
    assert len(records(doc, P.ProvEntity)) == len(keys) + 4 * n  # key, inputs, logged, reference, verdict
    assert len(records(doc, P.ProvActivity)) == 1 + 3 * n  # run, reduction, recomputation, verification
    agents = records(doc, P.ProvAgent)
    versions = report.runs[0].versions
    assert sorted(attr(a, P.PROV_LABEL) for a in agents) == sorted(
        [f"lightning {versions['lightning']}", f"lmlogger {versions['lmlogger']}"]
    )
    assert all(attr(a, P.PROV_TYPE) == P.PROV["SoftwareAgent"] for a in agents)
    assert len(records(doc, P.ProvGeneration)) == len(keys) + 4 * n  # key; inputs, logged, reference, verdict
    assert len(records(doc, P.ProvUsage)) == 4 * n  # reduction & recomputation use inputs; verification uses 2
    assert len(records(doc, P.ProvDerivation)) == 4 * n
    assert len(records(doc, P.ProvAttribution)) == 3 * n
    assert len(records(doc, P.ProvSpecialization)) == n
    assert len(records(doc, P.ProvAssociation)) == 2 + 3 * n
    assert len(records(doc, P.ProvCommunication)) == 3 * n


def test_values_and_relations_of_each_epoch(run):
    """Logged values come from Lightning's reduction, references from lmlogger's recomputation, both from the
    same inputs; the verdict entity holds the audit's verdict and findings."""
    run_dir, report, text = run
    doc = P.ProvDocument.deserialize(content=text, format="json")
    ns = P.Namespace("run1", f"urn:lmlogger:run:{quote(run_dir, safe='')}#")
    lml = P.Namespace("lml", VOCABULARY)
    generated_by = {(g.args[0], g.args[1]) for g in records(doc, P.ProvGeneration)}
    derived = {(d.args[0], d.args[1], d.args[2]) for d in records(doc, P.ProvDerivation)}
    associated = {(a.args[0], a.args[1]) for a in records(doc, P.ProvAssociation)}
    lightning = next(a.identifier for a in records(doc, P.ProvAgent) if "lightning" in str(a.identifier))
    ours = next(a.identifier for a in records(doc, P.ProvAgent) if "lmlogger" in str(a.identifier))
    run_activity = one(doc, ns["run"], P.ProvActivity)
    assert attr(run_activity, lml["mismatch"]) == report.summary["mismatch"] == 6
    assert attr(run_activity, lml["stages"]) == "fit,test"
    checked = 0
    for key in report.runs[0].keys:
        qkey = quote(key.key, safe="")
        series = one(doc, ns[f"key.{qkey}"], P.ProvEntity)
        assert attr(series, lml["provenance"]) == key.provenance
        assert attr(series, P.PROV_LABEL) == key.key
        for e in key.epochs:
            suffix = f"{qkey}.{e.phase}.{e.epoch}"
            logged = one(doc, ns[f"logged.{suffix}"], P.ProvEntity)
            reference = one(doc, ns[f"reference.{suffix}"], P.ProvEntity)
            verdict = one(doc, ns[f"verdict.{suffix}"], P.ProvEntity)
            assert attr(logged, P.PROV_VALUE) == pytest.approx(e.logged, rel=1e-12)
            assert attr(reference, P.PROV_VALUE) == pytest.approx(e.reference, rel=1e-12)
            assert attr(logged, P.PROV_TYPE) == lml["LoggedEpochValue"]
            assert attr(reference, P.PROV_TYPE) == lml["ReferenceEpochValue"]
            assert attr(verdict, P.PROV_VALUE) == e.verdict
            assert attr(logged, lml["epoch"]) == e.epoch and attr(logged, lml["key"]) == key.key
            if e.findings:
                assert attr(verdict, lml["findings"]) == ",".join(e.findings)
            reduction, recomputation = ns[f"reduction.{suffix}"], ns[f"recomputation.{suffix}"]
            inputs = ns[f"inputs.{suffix}"]
            assert attr(one(doc, reduction, P.ProvActivity), P.PROV_TYPE) == lml["LightningReduction"]
            assert attr(one(doc, recomputation, P.ProvActivity), P.PROV_TYPE) == lml["Recomputation"]
            assert (logged.identifier, reduction) in generated_by
            assert (reference.identifier, recomputation) in generated_by
            assert (logged.identifier, inputs, reduction) in derived
            assert (reference.identifier, inputs, recomputation) in derived
            assert (reduction, lightning) in associated and (recomputation, ours) in associated
            checked += 1
    assert checked == sum(len(k.epochs) for k in report.runs[0].keys)
    wrong = one(doc, ns["verdict.f1_compute.train.0"], P.ProvEntity)
    assert attr(wrong, P.PROV_VALUE) == "mismatch"
    assert attr(wrong, lml["findings"]) == "running-value-averaged"
    # keys with a "/" are percent-encoded in identifiers and kept verbatim in attributes
    val = one(doc, ns["logged.val_acc%2Fdataloader_idx_1.val.0"], P.ProvEntity)
    assert attr(val, lml["key"]) == "val_acc/dataloader_idx_1"


def test_cli_prints_the_same_document_and_keeps_the_exit_code(run, capsys):
    """`lmlogger audit RUN --format prov` prints the PROV-JSON; the exit code still says a key mismatched."""
    run_dir, _, text = run
    code = cli(["audit", run_dir, "--format", "prov"])
    out = capsys.readouterr().out
    assert code == 1
    assert P.ProvDocument.deserialize(content=out, format="json") == P.ProvDocument.deserialize(
        content=text, format="json"
    )


def test_missing_prov_package_names_the_extra(run, monkeypatch):
    """Without the prov package the error says how to install it."""
    monkeypatch.setitem(sys.modules, "prov", None)
    monkeypatch.setitem(sys.modules, "prov.model", None)
    with pytest.raises(AuditInputError, match=r"pip install 'lmlogger\[prov\]'"):
        to_prov_json(run[1])
