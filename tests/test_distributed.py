"""Two CPU processes (gloo): global references, rank-local values flagged, no hang, no per-step collective."""

import glob
import json
import os

import ddp_run
import pytest
import torch
from helpers import accuracy, f1

import lmlogger

pytestmark = pytest.mark.slow


def launch(out, strategy, plain=False):
    proc = ddp_run.launch(out, strategy, *(["--plain"] if plain else []))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read_json(path):
    with open(path) as fh:
        return json.load(fh)


def truth(out, fn, phase, epoch):
    preds, target = [], []
    for path in sorted(glob.glob(os.path.join(out, "rank*.pt"))):
        data = torch.load(path)
        preds += data["preds"].get((phase, epoch, 0), [])
        target += data["target"].get((phase, epoch, 0), [])
    return float(fn(torch.cat(preds), torch.cat(target)))


@pytest.fixture(scope="module", params=["ddp_spawn", "ddp"])
def run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    launch(out, request.param)
    return out, lmlogger.audit(str(out))


def test_exactly_one_sidecar(run):
    out, report = run
    assert len(glob.glob(os.path.join(out, "**", "provenance.jsonl"), recursive=True)) == 1
    assert len(report.runs) == 1 and report.runs[0].complete


def test_unsynced_rank_dependent_value_is_rank_local_mismatch(run):
    """A value differing by rank, logged without sync_dist: rank 0's value vs the global mean."""
    _, report = run
    k = report.by_key()["rank_value"]
    assert k.verdict == "mismatch" and "rank-local" in k.findings
    assert "sync_dist=True" in k.fix
    for e in k.epochs:
        assert e.logged == pytest.approx(1.0)  # rank 0 alone
        # global batch-size-weighted mean: rank 0 (value 1) has 92 samples, rank 1 (value 2) has 84
        assert e.reference == pytest.approx((1 * 92 + 2 * 84) / (92 + 84), rel=1e-6)


def test_synced_value_matches(run):
    _, report = run
    k = report.by_key()["rank_value_synced"]
    assert k.verdict == "match" and "rank-local" not in k.findings
    assert k.epochs[0].reference == pytest.approx((1 * 92 + 2 * 84) / 176, rel=1e-6)


def test_metric_object_matches_the_global_value(run):
    out, report = run
    k = report.by_key()["f1_object"]
    assert k.verdict == "match"
    for e in k.epochs:
        assert e.reference == pytest.approx(truth(out, f1, "train", e.epoch), rel=1e-5)


def test_compute_at_step_mismatch_with_global_reference(run):
    out, report = run
    k = report.by_key()["f1_compute"]
    assert k.verdict == "mismatch" and "running-value-averaged" in k.findings
    for e in k.epochs:
        assert e.reference == pytest.approx(truth(out, f1, "train", e.epoch), rel=1e-5)


def test_uneven_validation_batches_and_different_key_sets(run):
    """Ranks with 4 and 2 validation batches, rank 0 logging an extra key: global references, no hang."""
    out, report = run
    k = report.by_key()["val_acc"]
    assert k.verdict == "match"
    for e in k.epochs:
        assert e.reference == pytest.approx(truth(out, accuracy, "val", e.epoch), rel=1e-5)
    assert report.by_key()["val_loss"].verdict == "match"
    assert "only_rank0" in report.by_key()


def test_collectives_zero_per_step_one_per_closed_epoch(run, tmp_path):
    """lmlogger adds no collective inside steps and exactly one per closed epoch window."""
    out, _ = run
    strategy = os.path.basename(str(out)).rstrip("0123456789")
    launch(tmp_path, strategy, plain=True)
    wrapped, plain = (read_json(os.path.join(d, "counts0.json")) for d in (out, tmp_path))
    assert wrapped["step"] == plain["step"]
    # 2 training epochs + 2 validation runs, closed before on_fit_end
    assert wrapped["lmlogger"] == 4
    assert wrapped["other"] - plain["other"] == 4  # nothing else: no hidden syncs at epoch end either


def test_no_rank_leaves_its_gloo_group_to_interpreter_teardown(run):
    """Each rank destroyed the default gloo group at exit, before the interpreter's teardown (a group left to it
    ends a rank with "terminate called without an active exception", or a hang, now and then)."""
    out, _ = run
    assert [read_json(os.path.join(out, f"exit{rank}.json")) for rank in (0, 1)] == [{"group_alive": False}] * 2


def test_on_mismatch_raise_raises_on_every_rank_without_hanging(tmp_path):
    """Ranks judge with rank 0's logged values, so "raise" stops all ranks together (no deadlock)."""
    proc = ddp_run.launch(tmp_path, "ddp_spawn", "--on-mismatch", "raise")
    assert proc.returncode != 0
    assert "MismatchError" in proc.stderr and "rank_value" in proc.stderr
    report = lmlogger.audit(str(tmp_path))
    assert report.by_key()["rank_value"].verdict == "mismatch"  # written before raising
