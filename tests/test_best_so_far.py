"""Best-so-far values: a ``MinMaxMetric``'s max and min, and the lightning-hydra-template's ``MaxMetric`` of
the validation accuracy, are verified against the epochs' own values.

Validation accuracy goes up and down from epoch to epoch (the predictions are drawn per epoch), so the
max and min differ from the raw value in most epochs. Ground truth: every prediction and target by
epoch, recorded outside lmlogger, and the running extreme of the true epoch accuracies.
"""

import pytest
import torch
from helpers import N_FEATURES, Recorder, accuracy, loader, quiet, seeded, trainer
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger
from torchmetrics import MaxMetric, MinMetric
from torchmetrics.classification import BinaryAccuracy
from torchmetrics.wrappers import MinMaxMetric

import lmlogger
from lmlogger import VerifiedLogger

EPOCHS = 5


class Best(LightningModule):
    """``val_mm`` keeps the best validation accuracy: its base metric is reset each epoch, the wrapper never.
    ``val_busy`` is the same, but also computed at every validation step (for a progress bar)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.rec = Recorder()
        self.val_mm = MinMaxMetric(BinaryAccuracy())
        self.val_busy = MinMaxMetric(BinaryAccuracy())
        # the lightning-hydra-template: the best accuracy so far, reset when training starts
        self.val_acc = BinaryAccuracy()
        self.val_acc_best = MaxMetric()
        self.val_acc_worst = MinMetric()  # never reset: it took the sanity check's accuracy too

    def on_train_start(self):
        self.val_acc_best.reset()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.binary_cross_entropy_with_logits(self.layer(x).squeeze(-1), y.float())

    def validation_step(self, batch, batch_idx):
        _, y = batch
        g = torch.Generator().manual_seed(1000 * self.current_epoch + batch_idx + 7 * self.trainer.sanity_checking)
        p = torch.rand(len(y), generator=g)  # an accuracy that goes up and down between epochs
        phase = "sanity" if self.trainer.sanity_checking else "val"
        self.rec.add((phase, self.current_epoch, 0), p, y)
        self.val_mm.update(p, y)
        self.val_busy.update(p, y)
        self.val_acc(p, y)
        self.log("val_busy_bar", self.val_busy.compute()["max"], prog_bar=True, logger=False)

    def on_validation_epoch_end(self):
        out = self.val_mm.compute()
        self.log("val_acc", out["raw"])
        self.log("val_acc_max", out["max"])
        self.log("val_acc_min", out["min"])
        self.val_mm._base_metric.reset()
        busy = self.val_busy.compute()
        self.log("val_busy_max", busy["max"])
        self.val_busy._base_metric.reset()
        acc = self.val_acc.compute()
        self.val_acc.reset()
        self.val_acc_best(acc)
        self.log("val/acc_best", self.val_acc_best.compute())
        self.val_acc_worst.update(acc)
        self.log("val/acc_worst", self.val_acc_worst.compute())

    def train_dataloader(self):
        return loader(64, 16, 0)

    def val_dataloader(self):
        return loader(60, 16, 1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    quiet()
    seeded(0)
    tmp = tmp_path_factory.mktemp("best")
    model = Best()
    logger = VerifiedLogger(CSVLogger(str(tmp), name="best"), on_mismatch="ignore")
    trainer(logger, tmp, max_epochs=EPOCHS, num_sanity_val_steps=2, enable_checkpointing=False).fit(model)
    return model, lmlogger.audit(str(tmp)).by_key()


def true_accuracies(model):
    """The true epoch accuracies in the order the metric computed them: the sanity check's first."""
    values = [model.rec.true(accuracy, ("sanity", 0, 0))]
    return values + [model.rec.true(accuracy, ("val", e, 0)) for e in range(EPOCHS)]


def test_max_and_min_are_the_extremes_of_the_epoch_values_so_far(best):
    """Each epoch's reference is the running max (min) of the true accuracies, the sanity check's included:
    the wrapper took that one too."""
    model, keys = best
    truth = true_accuracies(model)
    assert max(truth[1:]) > min(truth[1:])  # the test means something: the extremes move
    for name, extreme in (("val_acc_max", max), ("val_acc_min", min)):
        key = keys[name]
        assert key.verdict == "match" and key.findings == [], (name, [e.reason for e in key.epochs])
        assert len(key.epochs) == EPOCHS
        for epoch in key.epochs:
            assert epoch.reference == pytest.approx(extreme(truth[: epoch.epoch + 2]), rel=1e-6)
    assert [e.epoch for e in keys["val_acc_max"].epochs if e.logged != keys["val_acc"].epochs[e.epoch].logged]


def test_raw_value_is_the_epoch_accuracy(best):
    model, keys = best
    key = keys["val_acc"]
    assert key.verdict == "match"
    for epoch in key.epochs:
        assert epoch.reference == pytest.approx(model.rec.true(accuracy, ("val", epoch.epoch, 0)), rel=1e-6)


def test_a_max_moved_by_compute_calls_within_the_epoch_is_unverified_with_the_count(best):
    _, keys = best
    key = keys["val_busy_max"]
    assert key.verdict == "unverified" and key.findings == []
    for epoch in key.epochs:
        assert "compute() results since its last reset" in epoch.reason


def test_a_best_so_far_max_metric_is_verified_and_not_reported_as_carried_over(best):
    """Carrying its state across epochs is what a best-so-far is for (the lint agrees): no
    state-carried-over, and the reference is the extreme of every value it was given since its reset."""
    model, keys = best
    truth = true_accuracies(model)
    for name, extreme, start in (("val/acc_best", max, 1), ("val/acc_worst", min, 0)):
        key = keys[name]
        assert key.verdict == "match" and key.findings == [] and key.fix is None, (name, key.findings)
        for epoch in key.epochs:
            assert epoch.reference == pytest.approx(extreme(truth[start : epoch.epoch + 2]), rel=1e-6)
