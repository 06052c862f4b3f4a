"""Lightning's documented pattern: the forward() value on step, the epoch value from the epoch-end hook.

``self.log("acc_step", self.acc(preds, y))`` in the step and ``self.log("acc_epoch", self.acc)`` in
``on_train_epoch_end`` (or ``compute()`` and ``reset()`` there) is verified from the first epoch on, in
training and validation, with the sanity check on. Ground truth: every prediction and target by epoch,
recorded outside lmlogger.
"""

import pytest
import torch
from helpers import N_FEATURES, Recorder, accuracy, f1, loader, precision, quiet, seeded, trainer
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score, BinaryPrecision

import lmlogger
from lmlogger import VerifiedLogger

EPOCHS = 3


class EpochEnd(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.rec = Recorder()
        self.train_acc = BinaryAccuracy()
        self.train_f1 = BinaryF1Score()
        self.train_prec = BinaryPrecision()
        self.val_acc = BinaryAccuracy()
        self.val_f1 = BinaryF1Score()

    def _preds(self, batch, phase):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        p = logits.sigmoid().detach()
        self.rec.add(("sanity" if self.trainer.sanity_checking else phase, self.current_epoch, 0), p, y)
        return logits, p, y

    def training_step(self, batch, batch_idx):
        logits, p, y = self._preds(batch, "train")
        self.log("train_acc_step", self.train_acc(p, y))  # on_step only (training default)
        self.log("train_f1_step", self.train_f1(p, y))
        self.train_prec.update(p, y)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())

    def on_train_epoch_end(self):
        self.log("train_acc_epoch", self.train_acc)
        self.log("train_f1_epoch", self.train_f1.compute())
        self.train_f1.reset()
        self.log("train_prec", self.train_prec.compute())
        self.train_prec.reset()

    def validation_step(self, batch, batch_idx):
        _, p, y = self._preds(batch, "val")
        self.log("val_acc_step", self.val_acc(p, y), on_step=True, on_epoch=False)
        self.log("val_f1_step", self.val_f1(p, y), on_step=True, on_epoch=False)

    def on_validation_epoch_end(self):
        self.log("val_acc_epoch", self.val_acc)
        self.log("val_f1_epoch", self.val_f1.compute())
        self.val_f1.reset()

    def train_dataloader(self):
        return loader(92, 16, 0)

    def val_dataloader(self):
        return loader(60, 16, 1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


@pytest.fixture(scope="module")
def epoch_end(tmp_path_factory):
    quiet()
    seeded(0)
    tmp = tmp_path_factory.mktemp("epoch_end")
    model = EpochEnd()
    logger = VerifiedLogger(CSVLogger(str(tmp), name="ee"), on_mismatch="ignore")
    trainer(logger, tmp, max_epochs=EPOCHS, num_sanity_val_steps=2, enable_checkpointing=False).fit(model)
    return model, lmlogger.audit(str(tmp)).by_key()


@pytest.mark.parametrize(
    ("key", "fn", "phase"),
    [
        ("train_acc_epoch", accuracy, "train"),
        ("train_f1_epoch", f1, "train"),
        ("train_prec", precision, "train"),
        ("val_acc_epoch", accuracy, "val"),
        ("val_f1_epoch", f1, "val"),
    ],
)
def test_epoch_value_logged_from_the_epoch_end_hook_is_verified_from_epoch_0(epoch_end, key, fn, phase):
    model, keys = epoch_end
    k = keys[key]
    assert k.verdict == "match" and k.findings == [], [(e.epoch, e.reason) for e in k.epochs]
    assert [e.epoch for e in k.epochs] == list(range(EPOCHS))
    for epoch in k.epochs:
        assert epoch.reference == pytest.approx(model.rec.true(fn, (phase, epoch.epoch, 0)), rel=1e-6)
        assert epoch.logged == pytest.approx(epoch.reference, rel=1e-6)
