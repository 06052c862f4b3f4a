"""Verification against ground truth recomputed from every prediction (torchmetrics functional API)."""

import math

import pytest
import torch
from helpers import accuracy, f1, helpers_for, loader, loggers_of, precision

import lmlogger
from lmlogger import VerifiedLogger

EPOCHS = 3


def running_mean(rec, fn, key):
    """What Lightning logs for compute()-at-step: batch-size-weighted mean of running values."""
    preds, target = rec.preds[key], rec.target[key]
    total = weight = 0.0
    for b in range(len(preds)):
        value = float(fn(torch.cat(preds[: b + 1]), torch.cat(target[: b + 1])))
        total += value * len(preds[b])
        weight += len(preds[b])
    return total / weight


def batch_mean(rec, fn, key):
    preds, target = rec.preds[key], rec.target[key]
    total = sum(float(fn(p, t)) * len(p) for p, t in zip(preds, target, strict=True))
    return total / sum(len(p) for p in preds)


@pytest.fixture(scope="module")
def run(tmp_path_factory, namespace):
    """One fit and test of the KitchenSink, under each Lightning namespace (its module, Trainer and logger)."""
    tmp = tmp_path_factory.mktemp("verify")
    h = helpers_for(namespace)
    h.seeded(0)
    model = h.KitchenSink(val_loaders=2)
    logger = VerifiedLogger(loggers_of(namespace).TensorBoardLogger(str(tmp), name="run"), on_mismatch="ignore")
    t = h.trainer(logger, tmp, max_epochs=EPOCHS, num_sanity_val_steps=2)
    t.fit(model, loader(), [loader(60, seed=1), loader(44, seed=2)])
    t.test(model, loader(50, seed=3))
    return model, logger, lmlogger.audit(logger.log_dir)


def epochs_of(report, key):
    return report.by_key()[key].epochs


def test_compute_at_step_is_a_mismatch_with_true_epoch_reference(run):
    """compute() logged at each step: mismatch, running-value-averaged, reference = true epoch F1."""
    model, _, report = run
    for key, name in (("f1_compute", "f1_compute"), ("f1_item", "f1_item")):
        k = report.by_key()[key]
        assert k.provenance == "metric_compute", key
        assert k.verdict == "mismatch"
        assert "running-value-averaged" in k.findings
        attr = "self.f1_c" if name == "f1_compute" else "self.f1_i"
        # KitchenSink resets its metrics in on_train_epoch_end: the fix says to drop that reset too
        assert k.fix == (
            f'self.log("{name}", {attr}, on_epoch=True, on_step=False); and remove the `{attr}.reset()` in '
            "`on_train_epoch_end`: Lightning resets logged metric objects itself"
        )
        assert len(k.epochs) == EPOCHS
        for e in k.epochs:
            truth = model.rec.true(f1, ("train", e.epoch, 0))
            assert e.reference == pytest.approx(truth, rel=1e-5)
            assert e.logged == pytest.approx(running_mean(model.rec, f1, ("train", e.epoch, 0)), rel=1e-5)
            assert e.verdict == "mismatch"


def test_forward_values_of_f1_and_precision_mismatch(run):
    """forward() batch values averaged: mismatch, batch-values-averaged, reference = true epoch value."""
    model, _, report = run
    for key, fn in (("f1_forward_epoch", f1), ("prec_forward", precision)):
        k = report.by_key()[key]
        assert k.provenance == "metric_forward"
        assert k.verdict == "mismatch", key
        assert k.findings == ["batch-values-averaged"]
        for e in k.epochs:
            key_ = ("train", e.epoch, 0)
            assert e.reference == pytest.approx(model.rec.true(fn, key_), rel=1e-5)
            assert e.logged == pytest.approx(batch_mean(model.rec, fn, key_), rel=1e-5)


def test_step_key_of_forward_has_provenance_and_no_epochs(run):
    """Step-level keys appear with provenance and an empty epochs list; they count in no total."""
    _, _, report = run
    k = report.by_key()["f1_forward_epoch"]
    assert k.logged_keys == ["f1_forward_step", "f1_forward_epoch"]
    loss = report.by_key()["loss_epoch"]
    assert loss.on_step and loss.on_epoch


def test_accuracy_forward_object_and_loss_match(run):
    """Batch-size-weighted accuracy, metric objects and a plain loss all match their references."""
    model, _, report = run
    acc = report.by_key()["acc_forward"]
    assert acc.provenance == "metric_forward" and acc.verdict == "match" and acc.findings == []
    for e in acc.epochs:
        assert e.reference == pytest.approx(model.rec.true(accuracy, ("train", e.epoch, 0)), rel=1e-5)
    obj = report.by_key()["f1_object"]
    assert obj.provenance == "metric_object" and obj.verdict == "match"
    for e in obj.epochs:
        assert e.logged == pytest.approx(model.rec.true(f1, ("train", e.epoch, 0)), rel=1e-5)
    loss = report.by_key()["loss_epoch"]
    assert loss.provenance == "tensor" and loss.verdict == "match" and len(loss.epochs) == EPOCHS


def test_validation_two_dataloaders(run):
    """Metric objects per val dataloader get keys with /dataloader_idx_N and match the true accuracy."""
    model, _, report = run
    for dl in (0, 1):
        k = report.by_key()[f"val_acc/dataloader_idx_{dl}"]
        assert k.provenance == "metric_object" and k.dataloader_idx == dl
        assert k.verdict == "match"
        assert [e.epoch for e in k.epochs] == list(range(EPOCHS))
        for e in k.epochs:
            assert e.reference == pytest.approx(model.rec.true(accuracy, ("val", e.epoch, dl)), rel=1e-5)
        loss = report.by_key()[f"val_loss/dataloader_idx_{dl}"]
        assert loss.provenance == "tensor" and loss.verdict == "match"


def test_compute_at_epoch_end_with_reset_matches(run):
    """compute() in on_validation_epoch_end followed by reset(): match."""
    model, _, report = run
    k = report.by_key()["val_f1_end"]
    assert k.provenance == "metric_compute" and k.hook == "on_validation_epoch_end"
    assert k.verdict == "match" and k.findings == []
    for e in k.epochs:
        assert e.reference == pytest.approx(model.rec.true(f1, ("val", e.epoch, 0)), rel=1e-5)


def test_never_reset_metric_fed_by_sanity_check_carries_state(run):
    """A metric never reset (and fed sanity batches): mismatch + state-carried-over, epoch-only reference."""
    model, _, report = run
    k = report.by_key()["val_f1_stale"]
    assert k.verdict == "mismatch"
    assert "state-carried-over" in k.findings
    assert "reset()" in k.fix
    for e in k.epochs:
        assert e.verdict == "mismatch"
        assert e.reference == pytest.approx(model.rec.true(f1, ("val", e.epoch, 0)), rel=1e-5)
        carried = [("sanity", 0, 0)] + [("val", i, 0) for i in range(e.epoch + 1)]
        assert e.logged == pytest.approx(model.rec.true(f1, *carried), rel=1e-5)


def test_test_stage(run):
    """trainer.test after fit: metric object matches, compute()-at-step mismatches."""
    model, _, report = run
    assert report.by_key()["test_f1"].verdict == "match"
    k = report.by_key()["test_f1_compute"]
    assert k.verdict == "mismatch" and k.findings == ["running-value-averaged"]
    assert k.epochs[0].reference == pytest.approx(model.rec.true(f1, ("test", EPOCHS, 0)), rel=1e-5)
    assert report.runs[0].stages == ["fit", "test"]
    assert report.runs[0].complete


def test_summary_and_exit_code(run):
    """Summary counts keys by their worst epoch; any mismatch makes the exit code 1."""
    _, _, report = run
    summary = report.summary
    mismatched = {k.key for k in report.runs[0].keys if k.verdict == "mismatch"}
    assert mismatched == {
        "f1_compute",
        "f1_item",
        "f1_forward_epoch",
        "prec_forward",
        "val_f1_stale",
        "test_f1_compute",
    }
    assert summary["mismatch"] == 6
    assert summary["unverified"] == 0
    assert report.exit_code == 1
    assert report.runs[0].problems == []  # the event files agree with the sidecar


def test_live_logger_gives_its_own_report(run):
    """VerifiedLogger.report() is the audit of its own run."""
    _, logger, report = run
    assert logger.report().to_dict() == report.to_dict()


def test_reference_values_are_finite_floats(run):
    _, _, report = run
    for k in report.runs[0].keys:
        for e in k.epochs:
            assert e.reference is not None and math.isfinite(e.reference)
