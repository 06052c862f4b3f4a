"""Harder verification cases: resets mid-epoch, shared and stale metrics, evaluation alone, TensorBoard views."""

import glob
import os

import pytest
import torch
from helpers import KitchenSink, accuracy, f1, loader, seeded, trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.util import tensor_util
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score

import lmlogger
from lmlogger import VerifiedLogger


class Patterns(KitchenSink):
    """KitchenSink plus: a reset in the middle of the epoch, a metric shared by train and val,
    a metric object logged on_step without forward()."""

    def __init__(self):
        super().__init__(val_loaders=1)
        self.f1_midreset = BinaryF1Score()
        self.shared_acc = BinaryAccuracy()
        self.f1_stale = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        x, y = batch
        p = self(x).sigmoid().detach()
        if batch_idx == 3:
            self.f1_midreset.reset()  # user reset in the middle of the epoch
        self.f1_midreset.update(p, y)
        self.log("f1_midreset", self.f1_midreset, on_step=False, on_epoch=True)
        self.shared_acc.update(p, y)
        self.log("train_shared_acc", self.shared_acc, on_step=False, on_epoch=True)
        self.f1_stale.update(p, y)
        self.log("f1_stale", self.f1_stale, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        super().validation_step(batch, batch_idx, dataloader_idx)
        x, y = batch
        self.shared_acc.update(self(x).sigmoid(), y)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cases")
    seeded(0)
    model = Patterns()
    logger = VerifiedLogger(TensorBoardLogger(str(tmp), name="cases"), on_mismatch="ignore")
    trainer(logger, tmp, max_epochs=2, num_sanity_val_steps=0).fit(model, loader(), loader(60, seed=1))
    return model, logger, lmlogger.audit(logger.log_dir)


def test_reset_in_the_middle_of_the_epoch_is_survived(run):
    """The reference covers the whole epoch, before and after the user's reset; the logged value does not."""
    model, _, report = run
    k = report.by_key()["f1_midreset"]
    assert k.verdict == "mismatch"
    for e in k.epochs:
        assert e.reference == pytest.approx(model.rec.true(f1, ("train", e.epoch, 0)), rel=1e-5)
        after = model.rec.preds[("train", e.epoch, 0)][3:], model.rec.target[("train", e.epoch, 0)][3:]
        assert e.logged == pytest.approx(float(f1(torch.cat(after[0]), torch.cat(after[1]))), rel=1e-5)


def test_metric_shared_by_train_and_validation(run):
    """One instance updated in training and validation: shared-metric; the train reference is train-only."""
    model, _, report = run
    k = report.by_key()["train_shared_acc"]
    assert "shared-metric" in k.findings
    assert k.verdict == "mismatch"
    assert "one metric instance per phase" in k.fix
    for e in k.epochs:
        assert e.reference == pytest.approx(model.rec.true(accuracy, ("train", e.epoch, 0)), rel=1e-5)


def test_metric_object_on_step_without_forward_is_stale(run):
    _, _, report = run
    k = report.by_key()["f1_stale_epoch"]
    assert "stale-step-value" in k.findings
    assert k.verdict == "match"  # the epoch value itself is right
    assert "forward" in k.fix


def test_tensorboard_has_reference_scalars_text_table_and_layout(run):
    """Read back with tensorboard's reader: reference scalars, the verdict table, the custom-scalars layout."""
    model, logger, report = run
    scalars, texts, layouts = {}, [], []
    for path in glob.glob(os.path.join(logger.log_dir, "events.out.tfevents.*")):
        for event in EventFileLoader(path).Load():
            for v in event.summary.value:
                plugin = v.metadata.plugin_data.plugin_name
                if plugin == "text":
                    texts.append(tensor_util.make_ndarray(v.tensor).item().decode())
                elif plugin == "custom_scalars":
                    layout = layout_pb2.Layout()
                    layout.ParseFromString(tensor_util.make_ndarray(v.tensor).item())
                    layouts.append(layout)
                elif plugin == "scalars":
                    scalars.setdefault(v.tag, {})[event.step] = tensor_util.make_ndarray(v.tensor).item()
    ref = scalars["lmlogger/reference/f1_compute"]
    epochs = report.by_key()["f1_compute"].epochs
    assert sorted(ref) == [e.step for e in epochs]
    for e in epochs:
        assert ref[e.step] == pytest.approx(model.rec.true(f1, ("train", e.epoch, 0)), rel=1e-5)
        assert scalars["f1_compute"][e.step] == pytest.approx(e.logged, rel=1e-6)
    table = texts[-1]
    assert "* f1_compute: metric_compute in training_step; vouches for samples" in table
    assert "mismatch" in table and "running-value-averaged" in table
    charts = {c.title: list(c.multiline.tag) for cat in layouts[-1].category for c in cat.chart}
    assert charts["f1_compute (logged) vs lmlogger/reference/f1_compute (reference)"] == [
        "^f1_compute$",
        "^lmlogger/reference/f1_compute$",
    ]
    assert "val_acc (logged) vs lmlogger/reference/val_acc (reference)" in charts


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_validate_and_test_alone(tmp_path, stage):
    """trainer.validate / trainer.test on a fresh trainer: verified, complete, references right."""
    seeded(0)
    model = KitchenSink(val_loaders=1)
    logger = VerifiedLogger(CSVLogger(str(tmp_path), name=stage), on_mismatch="ignore")
    t = trainer(logger, tmp_path)
    getattr(t, stage)(model, loader(60, seed=1))
    report = lmlogger.audit(logger.log_dir)
    run = report.runs[0]
    assert run.stages == [stage] and run.complete and run.problems == []
    keys = report.by_key()
    if stage == "validate":
        assert keys["val_acc"].verdict == "match"
        truth = model.rec.true(accuracy, ("val", 0, 0))
        assert keys["val_acc"].epochs[0].reference == pytest.approx(truth, rel=1e-5)
        assert keys["val_f1_end"].verdict == "match"
        assert keys["val_f1_stale"].verdict == "match"  # no earlier state to carry in a single run
    else:
        assert keys["test_f1"].verdict == "match"
        assert keys["test_f1_compute"].verdict == "mismatch"
    del logger


def test_late_attach_without_autolog_hparams(tmp_path):
    """Trainer(enable_autolog_hparams=False) skips log_graph: lmlogger still attaches at the run start (setup)."""
    seeded(0)
    model = KitchenSink(val_loaders=1)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    t = trainer(logger, tmp_path, max_epochs=2, enable_autolog_hparams=False, num_sanity_val_steps=0)
    t.fit(model, loader(), loader(60, seed=1))
    keys = lmlogger.audit(logger.log_dir).by_key()
    assert keys["f1_compute"].verdict == "mismatch"
    assert keys["f1_object"].verdict == "match"
    assert [e.epoch for e in keys["f1_object"].epochs] == [0, 1]
    for e in keys["f1_compute"].epochs:
        assert e.reference == pytest.approx(model.rec.true(f1, ("train", e.epoch, 0)), rel=1e-5)
    del logger
