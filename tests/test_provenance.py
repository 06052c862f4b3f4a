"""Provenance of every self.log pattern, read back from the sidecar, for TensorBoard and CSV."""

import json
import os

import pytest
import torch
from helpers import CollectionModule, KitchenSink, f1, loader, precision, seeded, trainer
from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

import lmlogger
from lmlogger import VerifiedLogger

BACKENDS = {"tensorboard": TensorBoardLogger, "csv": CSVLogger}


def sidecar(run_dir):
    with open(os.path.join(run_dir, "lmlogger", "provenance.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def provenance(run_dir):
    return {r["key"]: r for r in sidecar(run_dir) if r["type"] == "provenance"}


class LogsFromCallback(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pl_module.log("cb_loss", outputs["loss"], on_step=False, on_epoch=True, reduce_fx="max")

    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("cb_val_acc", pl_module.val_acc[0].compute())


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def run(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    seeded(0)
    logger = VerifiedLogger(BACKENDS[request.param](str(tmp), name="exp"), on_mismatch="ignore")
    model = KitchenSink(val_loaders=2)
    t = trainer(logger, tmp, max_epochs=2, callbacks=[LogsFromCallback()])
    t.fit(model, loader(), [loader(60, seed=1), loader(44, seed=2)])
    t.test(model, loader(50, seed=3))
    return request.param, logger, provenance(logger.log_dir)


EXPECTED = {
    # key: (kind, hook, phase, on_step, on_epoch, logged_keys)
    "f1_compute": ("metric_compute", "training_step", "train", False, True, ["f1_compute"]),
    "f1_item": ("metric_compute", "training_step", "train", False, True, ["f1_item"]),
    "f1_forward_epoch": (
        "metric_forward",
        "training_step",
        "train",
        True,
        True,
        ["f1_forward_step", "f1_forward_epoch"],
    ),
    "prec_forward": ("metric_forward", "training_step", "train", False, True, ["prec_forward"]),
    "acc_forward": ("metric_forward", "training_step", "train", False, True, ["acc_forward"]),
    "f1_object": ("metric_object", "training_step", "train", False, True, ["f1_object"]),
    "loss_epoch": ("tensor", "training_step", "train", True, True, ["loss_step", "loss_epoch"]),
    "cb_loss": ("tensor", "on_train_batch_end", "train", False, True, ["cb_loss"]),
    "val_acc/dataloader_idx_0": ("metric_object", "validation_step", "val", False, True, ["val_acc/dataloader_idx_0"]),
    "val_acc/dataloader_idx_1": ("metric_object", "validation_step", "val", False, True, ["val_acc/dataloader_idx_1"]),
    "val_loss/dataloader_idx_1": ("tensor", "validation_step", "val", False, True, ["val_loss/dataloader_idx_1"]),
    "val_f1_end": ("metric_compute", "on_validation_epoch_end", "val", False, True, ["val_f1_end"]),
    "val_f1_stale": ("metric_compute", "on_validation_epoch_end", "val", False, True, ["val_f1_stale"]),
    "cb_val_acc": ("metric_compute", "on_validation_epoch_end", "val", False, True, ["cb_val_acc"]),
    "test_f1": ("metric_object", "test_step", "test", False, True, ["test_f1"]),
    "test_f1_compute": ("metric_compute", "test_step", "test", False, True, ["test_f1_compute"]),
}


def test_every_pattern_has_the_right_provenance(run):
    """Each key's kind, hook, phase, step/epoch flags and received keys, in train, val (2 loaders) and test."""
    _, _, prov = run
    for key, (kind, hook, phase, on_step, on_epoch, keys) in EXPECTED.items():
        record = prov[key]
        got = (record["kind"], record["hook"], record["phase"], record["on_step"], record["on_epoch"])
        assert got == (kind, hook, phase, on_step, on_epoch), key
        assert record["logged_keys"] == keys, key


def test_context_is_recorded(run):
    """Reduction, metric attribute and class, inferred batch size, dataloader index, sync_dist."""
    _, _, prov = run
    assert prov["cb_loss"]["reduce_fx"] == "max"
    assert prov["loss_epoch"]["reduce_fx"] == "mean"
    assert prov["loss_epoch"]["batch_size"] == 16 and prov["loss_epoch"]["batch_size_source"] == "inferred"
    assert prov["f1_item"]["metric_attribute"] == "f1_i"
    assert prov["f1_item"]["metric_class"] == "BinaryF1Score"
    assert prov["val_acc/dataloader_idx_1"]["metric_attribute"] == "val_acc.1"
    assert prov["val_acc/dataloader_idx_1"]["dataloader_idx"] == 1
    assert prov["cb_val_acc"]["metric_attribute"] == "val_acc.0"
    assert all(r["sync_dist"] is False for r in prov.values())


def test_sidecar_structure(run):
    """Header per stage with versions and schema, records in between, a closing record per stage."""
    backend, logger, _ = run
    records = sidecar(logger.log_dir)
    headers = [r for r in records if r["type"] == "header"]
    closes = [r for r in records if r["type"] == "close"]
    assert [h["stage"] for h in headers] == ["fit", "test"]
    assert headers[0]["schema"] == 1
    assert set(headers[0]["versions"]) - {"pytorch_lightning"} == {"lmlogger", "lightning", "torchmetrics", "torch"}
    assert headers[0]["logger"] == {"tensorboard": "TensorBoardLogger", "csv": "CSVLogger"}[backend]
    assert [c["status"] for c in closes] == ["success", "success"]
    assert records[-1]["type"] == "close"
    report = lmlogger.audit(logger.log_dir)
    assert report.runs[0].backend == backend and report.runs[0].complete
    assert report.runs[0].problems == []


def test_metric_collection_objects_and_forward_dicts(tmp_path):
    """A MetricCollection with compute groups: members as objects match, forward dict values mismatch."""
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path), name="mc"), on_mismatch="ignore")
    model = CollectionModule()
    trainer(logger, tmp_path, max_epochs=2, limit_val_batches=0).fit(model, loader())
    report = lmlogger.audit(logger.log_dir)
    keys = report.by_key()
    for name, fn in (("f1", f1), ("prec", precision)):
        obj, fwd = keys[f"obj_{name}"], keys[f"fwd_{name}"]
        assert obj.provenance == "metric_object" and obj.verdict == "match"
        assert obj.metric_attribute == f"objects.{name}"
        assert fwd.provenance == "metric_forward" and fwd.verdict == "mismatch"
        assert fwd.findings == ["batch-values-averaged"]
        for e in obj.epochs + fwd.epochs:
            assert e.reference == pytest.approx(model.rec.true(fn, ("train", e.epoch, 0)), rel=1e-5)
    assert keys["obj_rec"].verdict == "match"
    del logger


def test_value_derived_from_a_metric_result_is_flagged(tmp_path):
    """A hand-made ratio derived from a compute() result is a plain tensor whose epoch value reduces running
    values: never a silent match, but `unverified` with `derived-value` and a fix that works per epoch."""
    from helpers import KitchenSink as Base

    class Scaled(Base):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("f1_percent", self.f1_c.compute() * 100, on_step=False, on_epoch=True)
            return loss

    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=1, limit_val_batches=0).fit(Scaled(), loader())
    assert provenance(logger.log_dir)["f1_percent"]["kind"] == "tensor"
    key = lmlogger.audit(logger.log_dir).by_key()["f1_percent"]
    assert key.verdict == "unverified"
    assert key.findings == ["derived-value"]
    assert "self.f1_c.compute()" in key.reason
    assert key.fix.startswith('self.log("f1_percent", self.f1_c.compute() * 100) in on_train_epoch_end')
    del logger


def test_values_reach_logger_unchanged_with_torch_float64(tmp_path):
    """Non-float32 tensors and Python numbers pass through untouched."""

    class Typed(KitchenSink):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("d64", torch.tensor(0.1, dtype=torch.float64), on_step=False, on_epoch=True)
            self.log("py", 3.25, on_step=False, on_epoch=True)
            return loss

    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    t = trainer(logger, tmp_path, max_epochs=1, limit_val_batches=0)
    t.fit(Typed(), loader())
    keys = lmlogger.audit(logger.log_dir).by_key()
    assert keys["py"].provenance == "tensor" and keys["py"].epochs[0].logged == 3.25
    assert keys["d64"].epochs[0].logged == pytest.approx(0.1)
    assert keys["d64"].verdict == "match"
    del logger
