"""lmlogger in your own test suite: fail the test when an epoch metric is not what it claims.

Run:  python -m pytest examples/pytest_example

``assert_verified(trainer)`` audits every VerifiedLogger of the trainer and raises an
``AssertionError`` listing each mismatched key with its logged and reference values, the finding
and the fix. ``verified(logger)`` does the same for a ``with`` block.
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryF1Score

from lmlogger import VerifiedLogger
from lmlogger.testing import assert_verified, verified


class MyModel(LightningModule):
    """Your model. ``running_f1=True`` logs F1 the classic wrong way (compute() at every step)."""

    def __init__(self, running_f1: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.f1 = BinaryF1Score()
        self.running_f1 = running_f1

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        self.f1.update(logits.sigmoid(), y)
        if self.running_f1:
            self.log("train_f1", self.f1.compute(), on_step=False, on_epoch=True)
        else:
            self.log("train_f1", self.f1, on_step=False, on_epoch=True)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())

    def on_train_epoch_end(self) -> None:
        if self.running_f1:
            self.f1.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 4, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(100, generator=g) > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16)


def fit(model: LightningModule, logger) -> Trainer:
    trainer = Trainer(
        max_epochs=1,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, loader())
    return trainer


def test_epoch_metrics_are_what_they_claim(tmp_path):
    """The check a project keeps in its suite: every epoch value matches lmlogger's reference."""
    trainer = fit(MyModel(), VerifiedLogger(CSVLogger(tmp_path), on_mismatch="ignore"))
    report = assert_verified(trainer)
    assert report.by_key()["train_f1"].verdict == "match"


def test_the_classic_mistake_fails_with_the_fix(tmp_path):
    """What a failing check looks like: the message names the key, the values, the finding and the fix."""
    with pytest.raises(AssertionError) as failure, verified(CSVLogger(tmp_path)) as logger:
        fit(MyModel(running_f1=True), logger)
    message = str(failure.value)
    print(message)
    assert "train_f1: mismatch" in message
    assert "running-value-averaged" in message
    assert 'fix: self.log("train_f1", self.f1, on_epoch=True, on_step=False)' in message
