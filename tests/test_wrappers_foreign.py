"""lmlogger's instance-level taps on metrics next to another library's wrappers: results unchanged, the other
library's wrapper kept after the run, lmlogger's own tap inert once the run ended."""

from __future__ import annotations

import torch
from helpers import seeded, trainer
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAccuracy

import lmlogger
from lmlogger import VerifiedLogger


def counting(fn, counter):
    def wrapper(*args, **kwargs):
        counter.append(1)
        return fn(*args, **kwargs)

    wrapper.other_library = True
    return wrapper


class Module(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.acc = BinaryAccuracy()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        self.acc.update(logits.sigmoid(), y)
        self.log("train_acc", self.acc, on_step=False, on_epoch=True)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())

    def on_train_epoch_start(self):
        self.acc.reset()  # the user's reset, through whatever wrappers the instance holds

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class WrapsOnTop(Callback):
    """Another library wraps the metric's `update` and `reset` on the instance once training started."""

    def __init__(self):
        self.updates, self.resets = [], []

    def on_train_start(self, trainer, pl_module):
        pl_module.acc.update = counting(pl_module.acc.update, self.updates)
        pl_module.acc.reset = counting(pl_module.acc.reset, self.resets)


def fit(tmp_path, verified):
    seeded(0)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(40, 4, generator=g), torch.randint(0, 2, (40,), generator=g))
    logger = CSVLogger(str(tmp_path / str(verified)))
    if verified:
        logger = VerifiedLogger(logger, on_mismatch="ignore")
    other = WrapsOnTop()
    module = Module()
    tr = trainer(logger, tmp_path / str(verified), max_epochs=2, callbacks=[other])
    tr.fit(module, DataLoader(data, batch_size=8))
    return logger, module, other, tr.callback_metrics["train_acc"].item()


def test_metric_wrapped_by_another_library_on_top_of_lmlogger(tmp_path):
    _, plain_module, plain_other, plain_acc = fit(tmp_path, False)
    logger, module, other, acc = fit(tmp_path, True)
    assert acc == plain_acc
    assert (len(other.updates), len(other.resets)) == (len(plain_other.updates), len(plain_other.resets))
    assert len(other.updates) == 10 and len(other.resets) >= 2  # 5 steps per epoch; the user's and Lightning's resets
    assert torch.equal(module.layer.weight, plain_module.layer.weight)
    epochs = lmlogger.audit(logger.log_dir).by_key()["train_acc"].epochs
    assert [e.verdict for e in epochs] == ["match", "match"]
    # after the run: the other library's wrappers are still installed and lmlogger's taps below them pass through
    metric = module.acc
    assert getattr(metric.__dict__["update"], "other_library", False)
    assert getattr(metric.__dict__["reset"], "other_library", False)
    metric.update(torch.tensor([0.9, 0.1]), torch.tensor([1, 1]))
    assert metric.compute().item() == 0.5
    metric.reset()
    assert metric._update_count == 0
    assert (len(other.updates), len(other.resets)) == (11, len(plain_other.resets) + 1)
