"""Shared test models: real LightningModules that log every pattern and record every prediction.

Ground truth comes from outside lmlogger: ``Recorder`` keeps every prediction and target by
(phase, epoch, dataloader), and tests recompute true epoch values with torchmetrics' functional API.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

import torch
import torchmetrics.functional.classification as F
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score, BinaryPrecision, BinaryRecall

N_FEATURES = 8


def dataset(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=g)
    y = ((x[:, 0] + 0.8 * torch.randn(n, generator=g)) > 0.2).long()
    return TensorDataset(x, y)


def loader(n: int = 92, batch_size: int = 16, seed: int = 0) -> DataLoader:
    """92 = 5 * 16 + 12: the last batch is smaller than the others."""
    return DataLoader(dataset(n, seed), batch_size=batch_size)


class Recorder:
    """Every prediction and target by (phase, epoch, dataloader index)."""

    def __init__(self) -> None:
        self.preds: dict[tuple, list[torch.Tensor]] = defaultdict(list)
        self.target: dict[tuple, list[torch.Tensor]] = defaultdict(list)

    def add(self, key: tuple, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.preds[key].append(preds.detach().clone())
        self.target[key].append(target.detach().clone())

    def true(self, fn: Any, *keys: tuple) -> float:
        preds = torch.cat([p for k in keys for p in self.preds[k]])
        target = torch.cat([t for k in keys for t in self.target[k]])
        return float(fn(preds, target))


def f1(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.binary_f1_score(p, t)


def precision(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.binary_precision(p, t)


def accuracy(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.binary_accuracy(p, t)


class KitchenSink(LightningModule):
    """Logs every provenance pattern at once, each with its own metric instance.

    Training (``training_step``):
      f1_compute       compute() at step, on_epoch            -> mismatch, running-value-averaged
      f1_item          compute().item() at step, on_epoch     -> mismatch, running-value-averaged
      f1_forward       forward() value, on_step+on_epoch      -> mismatch, batch-values-averaged
      prec_forward     forward() value of precision           -> mismatch, batch-values-averaged
      acc_forward      forward() value of accuracy            -> match (batch-size-weighted mean is exact)
      f1_object        the metric object                      -> match
      loss             a plain tensor                         -> match
    Validation (two dataloaders) and test:
      val_acc          metric object per dataloader           -> match
      val_f1_end       compute() in on_validation_epoch_end, then reset() -> match
      val_f1_stale     compute() in on_validation_epoch_end, never reset (fed by sanity check too)
                                                              -> mismatch, state-carried-over
      val_loss         plain tensor per dataloader            -> match
      test_f1          metric object                          -> match
      test_f1_compute  compute() at step                      -> mismatch
    """

    def __init__(self, val_loaders: int = 2) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.rec = Recorder()
        self.f1_c = BinaryF1Score()
        self.f1_i = BinaryF1Score()
        self.f1_f = BinaryF1Score()
        self.prec_f = BinaryPrecision()
        self.acc_f = BinaryAccuracy()
        self.f1_o = BinaryF1Score()
        self.val_acc = torch.nn.ModuleList([BinaryAccuracy() for _ in range(val_loaders)])
        self.val_f1_end = BinaryF1Score()
        self.val_f1_stale = BinaryF1Score()
        self.test_f1 = BinaryF1Score()
        self.test_f1_c = BinaryF1Score()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x).squeeze(-1)

    def _phase_key(self, phase: str, dl: int = 0) -> tuple:
        if self.trainer.sanity_checking:
            phase = "sanity"
        return (phase, self.current_epoch, dl)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        p = logits.sigmoid().detach()
        self.rec.add(self._phase_key("train"), p, y)
        self.f1_c.update(p, y)
        self.log("f1_compute", self.f1_c.compute(), on_step=False, on_epoch=True)
        self.f1_i.update(p, y)
        self.log("f1_item", self.f1_i.compute().item(), on_step=False, on_epoch=True)
        self.log("f1_forward", self.f1_f(p, y), on_step=True, on_epoch=True)
        self.log("prec_forward", self.prec_f(p, y), on_step=False, on_epoch=True)
        self.log("acc_forward", self.acc_f(p, y), on_step=False, on_epoch=True)
        self.f1_o.update(p, y)
        self.log("f1_object", self.f1_o, on_step=False, on_epoch=True)
        self.log("loss", loss, on_step=True, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.f1_c.reset()
        self.f1_i.reset()
        self.f1_f.reset()
        self.prec_f.reset()
        self.acc_f.reset()

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        logits = self(x)
        p = logits.sigmoid()
        self.rec.add(self._phase_key("val", dataloader_idx), p, y)
        self.val_acc[dataloader_idx].update(p, y)
        self.log("val_acc", self.val_acc[dataloader_idx])
        self.log("val_loss", torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float()))
        if dataloader_idx == 0:
            self.val_f1_end.update(p, y)
            self.val_f1_stale.update(p, y)

    def on_validation_epoch_end(self) -> None:
        self.log("val_f1_end", self.val_f1_end.compute())
        self.val_f1_end.reset()
        self.log("val_f1_stale", self.val_f1_stale.compute())

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        p = self(x).sigmoid()
        self.rec.add(("test", self.current_epoch, 0), p, y)
        self.test_f1.update(p, y)
        self.log("test_f1", self.test_f1)
        self.test_f1_c.update(p, y)
        self.log("test_f1_compute", self.test_f1_c.compute())

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.3)


class CollectionModule(LightningModule):
    """MetricCollection (compute groups on) logged as objects and as forward dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.rec = Recorder()
        metrics = {"f1": BinaryF1Score(), "prec": BinaryPrecision(), "rec": BinaryRecall()}
        self.objects = MetricCollection({k: v.clone() for k, v in metrics.items()}, prefix="obj_")
        self.forwards = MetricCollection({k: v.clone() for k, v in metrics.items()}, prefix="fwd_")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        p = logits.sigmoid().detach()
        self.rec.add(("train", self.current_epoch, 0), p, y)
        self.objects.update(p, y)
        self.log_dict(self.objects, on_step=False, on_epoch=True)
        self.log_dict(self.forwards(p, y), on_step=False, on_epoch=True)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())

    def on_train_epoch_end(self) -> None:
        self.forwards.reset()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.3)


def trainer(logger: Any, tmp_path: Any, **kwargs: Any) -> Trainer:
    options = dict(
        max_epochs=3,
        logger=logger,
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
    )
    options.update(kwargs)
    return Trainer(**options)


_namespaced: dict[str, Any] = {}


def helpers_for(namespace: str) -> Any:
    """This module with every ``lightning.pytorch`` import read as ``namespace`` (``pytorch_lightning``): the same
    test models, built on that namespace's ``LightningModule`` and run by its ``Trainer``."""
    import importlib
    import inspect
    import sys
    import types

    if namespace == "lightning.pytorch":
        return sys.modules[__name__]
    module = _namespaced.get(namespace)
    if module is None:
        importlib.import_module(namespace)
        source = inspect.getsource(sys.modules[__name__]).replace("lightning.pytorch", namespace)
        module = types.ModuleType(f"helpers_{namespace.replace('.', '_')}")
        module.__file__ = __file__
        sys.modules[module.__name__] = module
        exec(compile(source, __file__, "exec"), module.__dict__)
        _namespaced[namespace] = module
    return module


def loggers_of(namespace: str) -> Any:
    """``namespace.loggers`` (``lightning.pytorch.loggers`` or ``pytorch_lightning.loggers``)."""
    import importlib

    return importlib.import_module(f"{namespace}.loggers")


def quiet() -> None:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")


def seeded(seed: int = 0) -> None:
    seed_everything(seed, verbose=False)
