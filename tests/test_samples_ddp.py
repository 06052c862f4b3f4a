"""Two CPU processes (gloo): samples repeated by DistributedSampler's padding are counted and taken out.

Ground truth comes from outside lmlogger: each rank saves every sample index it saw with its
prediction, target and per-sample loss (``tests/ddp_samples_run.py``); the tests recompute each
epoch value over the unique samples (by index) and over everything the ranks saw (repeats
included, which is what Lightning and torchmetrics log).
"""

import glob
import json
import os
import subprocess
import sys

import pytest
import torch
import torchmetrics.functional.classification as F

import lmlogger
from lmlogger.audit._render import to_markdown, to_table

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_samples_run.py")
pytestmark = pytest.mark.slow

PADDED, CONTROL, REMEDY = 0, 1, 2
N_VAL = {PADDED: 33, CONTROL: 34, REMEDY: 33}


@pytest.fixture(scope="module", params=["ddp_spawn", "ddp"])
def run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    cmd = [sys.executable, SCRIPT, "--strategy", request.param, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [torch.load(path) for path in sorted(glob.glob(os.path.join(out, "rank*.pt")))]
    return out, seen, lmlogger.audit(str(out))


def rows(seen, phase, epoch, dl=0, unique=True):
    """Every sample the ranks saw in one epoch (each index once when ``unique``)."""
    parts = [r[(phase, epoch, dl)] for r in seen if (phase, epoch, dl) in r]
    data = {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
    if unique:
        order = {}
        for i, idx in enumerate(data["idx"].tolist()):
            order.setdefault(idx, i)
        keep = torch.tensor(sorted(order.values()))
        data = {name: v[keep] for name, v in data.items()}
    return data


def truth(data, what):
    if what == "val_f1":
        return float(F.binary_f1_score(data["preds"], data["target"]))
    if what == "val_auroc":
        return float(F.binary_auroc(data["preds"], data["target"]))
    return float(data["loss"].double().mean())


def key(report, name, dl):
    return report.by_key()[f"{name}/dataloader_idx_{dl}"]


@pytest.mark.parametrize("name", ["val_f1", "val_auroc", "val_loss"])
def test_padded_validation_reference_is_the_value_over_unique_samples(run, name):
    """33 samples on 2 ranks: one sample counted twice; the reference takes it out, the verdict says mismatch."""
    _, seen, report = run
    k = key(report, name, PADDED)
    assert k.verdict == "mismatch" and k.findings == ["padded-duplicates"]
    assert "UnrepeatedDistributedSamplerWrapper" in k.fix and "divisible by the 2 ranks" in k.fix
    for e in k.epochs:
        assert len(rows(seen, "val", e.epoch, PADDED, unique=False)["idx"]) == 34
        assert e.reference == pytest.approx(truth(rows(seen, "val", e.epoch, PADDED), name), rel=1e-5)
        # what was logged is the value with the repeat counted twice, and that differs from the truth
        with_repeat = truth(rows(seen, "val", e.epoch, PADDED, unique=False), name)
        assert e.logged == pytest.approx(with_repeat, rel=1e-5)
        assert e.logged != pytest.approx(e.reference, rel=1e-4)
        assert (e.samples, e.dataset_size, e.duplicates) == (34, 33, 1)


@pytest.mark.parametrize("name", ["val_f1", "val_auroc", "val_loss"])
def test_divisible_validation_set_has_no_finding(run, name):
    _, seen, report = run
    k = key(report, name, CONTROL)
    assert k.verdict == "match" and k.findings == [] and k.fix is None
    for e in k.epochs:
        assert e.reference == pytest.approx(truth(rows(seen, "val", e.epoch, CONTROL), name), rel=1e-5)
        assert (e.samples, e.dataset_size, e.duplicates) == (34, 34, 0)


@pytest.mark.parametrize("name", ["val_f1", "val_auroc", "val_loss"])
def test_the_named_remedy_counts_every_sample_once(run, name):
    """UnrepeatedDistributedSamplerWrapper (and a MeanMetric for the loss): 17 + 16 samples, all match."""
    _, seen, report = run
    k = key(report, name, REMEDY)
    assert k.verdict == "match" and k.findings == []
    for e in k.epochs:
        data = rows(seen, "val", e.epoch, REMEDY, unique=False)
        assert len(data["idx"]) == len(set(data["idx"].tolist())) == 33
        assert e.reference == pytest.approx(truth(data, name), rel=1e-5)
        assert (e.samples, e.dataset_size, e.duplicates) == (33, 33, 0)


def test_training_with_drop_last_reports_fewer_samples_and_no_repeats(run):
    """45 samples padded to 2 x 23, batches of 8 with drop_last: 2 x 16 samples reach the epoch value."""
    _, seen, report = run
    for name in ("train_f1", "train_loss"):
        k = report.by_key()[name]
        assert k.verdict == "match" and k.findings == []
        for e in k.epochs:
            data = rows(seen, "train", e.epoch, unique=False)
            assert len(data["idx"]) == len(set(data["idx"].tolist())) == 32
            assert (e.samples, e.dataset_size, e.duplicates) == (32, 45, 0)
    e = report.by_key()["train_f1"].epochs[0]
    data = rows(seen, "train", 0)
    assert e.reference == pytest.approx(float(F.binary_f1_score(data["preds"], data["target"])), rel=1e-5)


def test_findings_and_counts_reach_every_output(run):
    out, _, report = run
    assert "padded-duplicates" in to_table(report) and "padded-duplicates" in to_markdown(report)
    entry = next(k for k in report.to_dict()["runs"][0]["keys"] if k["key"] == "val_f1/dataloader_idx_0")
    assert {"samples": 34, "dataset_size": 33, "duplicates": 1}.items() <= entry["epochs"][0].items()
    (sidecar,) = glob.glob(os.path.join(out, "**", "provenance.jsonl"), recursive=True)
    with open(sidecar) as fh:
        records = [json.loads(line) for line in fh]
    f1 = [r for r in records if r["type"] == "verification" and r["key"] == "val_f1/dataloader_idx_0"]
    assert f1 and all(r["duplicates"] == 1 and "padded-duplicates" in r["findings"] for r in f1)


def test_no_collective_beyond_one_per_closed_epoch(run):
    """Sample accounting rides in the one exchange per closed epoch: 2 training + 2 validation epochs."""
    out, _, _ = run
    for path in glob.glob(os.path.join(out, "counts*.json")):
        with open(path) as fh:
            assert json.load(fh)["lmlogger"] == 4
