"""`lmlogger lint` understands LightningModules and metrics however they are imported, built and held."""

from __future__ import annotations

import pytest
from lint_helpers import findings

WRONG_STEP = """
    def training_step(self, batch, batch_idx):
        x, y = batch
        self.f1.update(self(x), y)
        self.log("f1", self.f1.compute(), on_epoch=True)
"""


@pytest.fixture(autouse=True)
def _no_patch_left_behind():
    """The static check patches nothing: the suite's gc-heavy check is moot here."""
    yield


@pytest.mark.parametrize(
    ("imports", "base"),
    [
        ("import pytorch_lightning as pl", "pl.LightningModule"),
        ("import lightning as L", "L.LightningModule"),
        ("import lightning.pytorch as pl", "pl.LightningModule"),
        ("import lightning", "lightning.pytorch.LightningModule"),
        ("from lightning.pytorch import LightningModule", "LightningModule"),
        ("from pytorch_lightning import LightningModule as LM", "LM"),
        ("from pytorch_lightning.core.lightning import LightningModule", "LightningModule"),
        ("from lightning.pytorch.core.module import LightningModule", "LightningModule"),
    ],
)
def test_every_import_style_of_lightning_module(tmp_path, imports, base):
    """pl./L./lightning.pytorch./pytorch_lightning./aliases: each is a LightningModule."""
    src = f"""{imports}
from torchmetrics.classification import BinaryF1Score


class M({base}):
    def __init__(self):
        super().__init__()
        self.f1 = BinaryF1Score()
{WRONG_STEP}"""
    assert findings(tmp_path, **{"m.py": src}) == [(13, "running-value-averaged")]


@pytest.mark.parametrize(
    ("imports", "made"),
    [
        ("import torchmetrics", "torchmetrics.F1Score(task='binary')"),
        ("import torchmetrics as tm", "tm.classification.BinaryF1Score()"),
        ("from torchmetrics import F1Score", "F1Score(task='binary')"),
        ("from torchmetrics import classification as C", "C.BinaryF1Score()"),
        ("from torchmetrics.classification import BinaryF1Score as F1", "F1()"),
        ("import pytorch_lightning as pl", "pl.metrics.F1(num_classes=2)"),  # Lightning 1.x
    ],
)
def test_every_import_style_of_torchmetrics(tmp_path, imports, made):
    """torchmetrics., aliases, submodules, Lightning 1.x's pl.metrics: each builds a metric attribute."""
    src = f"""import pytorch_lightning as pl
{imports}


class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.f1 = {made}
{WRONG_STEP}"""
    assert findings(tmp_path, **{"m.py": src}) == [(13, "running-value-averaged")]


def test_project_base_class_in_another_file_and_metrics_made_in_setup(tmp_path):
    """class Base(pl.LightningModule) in base.py; class M(Base) in m.py with metrics made in setup()."""
    base = """import pytorch_lightning as pl


class Base(pl.LightningModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        self.f1.update(self(x), y)
        self.log("f1", self.f1.compute(), on_epoch=True)
"""
    model = """from torchmetrics.classification import BinaryF1Score
from .base import Base


class M(Base):
    def setup(self, stage):
        self.f1 = BinaryF1Score()
"""
    assert findings(tmp_path, **{"pkg/base.py": base, "pkg/m.py": model}) == [(8, "running-value-averaged")]


def test_mixin_in_the_same_tree_lends_its_hooks(tmp_path):
    """class M(LoggingMixin, pl.LightningModule): the mixin's hooks log the module's metrics."""
    src = """import pytorch_lightning as pl
from torchmetrics.classification import BinaryF1Score


class LoggingMixin:
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_f1", self.val_f1(self(x), y))


class M(LoggingMixin, pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.val_f1 = BinaryF1Score()
"""
    assert findings(tmp_path, **{"m.py": src}) == [(8, "batch-values-averaged")]


COLLECTION = """import pytorch_lightning as pl
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score, BinaryPrecision


class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        metrics = MetricCollection([BinaryAccuracy(), BinaryF1Score()])
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.extra = torch.nn.ModuleDict({"p": BinaryPrecision(), "acc": BinaryAccuracy()})
        self.listed = torch.nn.ModuleList([BinaryPrecision()])

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.log_dict(self.train_metrics(self(x), y), on_epoch=True)
        self.log("p", self.extra["p"](self(x), y), on_epoch=True)
        self.log("acc", self.extra["acc"](self(x), y), on_epoch=True)
        self.log("l0", self.listed[0](self(x), y), on_epoch=True)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_metrics.update(self(x), y)
        self.log_dict(self.val_metrics.compute())
        self.log_dict({"val_p": self.extra["p"].compute(), "val_acc": self.extra["acc"].compute()})
"""


def test_metric_collections_clone_module_dict_and_list(tmp_path):
    """MetricCollection(...).clone(prefix=...), nn.ModuleDict/ModuleList members, log_dict of results."""
    got = findings(tmp_path, **{"m.py": COLLECTION})
    assert got == [
        (18, "batch-values-averaged"),  # the collection holds an F1 score
        (19, "batch-values-averaged"),  # precision; the accuracy on line 20 is a mean of samples
        (21, "batch-values-averaged"),
        (26, "running-value-averaged"),
        (27, "running-value-averaged"),  # two keys, one line: reported once per key
        (27, "running-value-averaged"),
    ]


def test_log_dict_of_a_collection_fix_names_the_collection(tmp_path):
    """The fix of a log_dict(collection(...)) logs the collection object itself."""
    from lmlogger.lint import lint

    (tmp_path / "m.py").write_text(COLLECTION)
    result = lint([str(tmp_path)])
    first = result.findings[0]
    assert first.fix == (
        "self.train_metrics(self(x), y); self.log_dict(self.train_metrics, on_epoch=True, on_step=True)"
    )  # training_step logs on_step; the forward() the call made stays
    assert first.message.startswith("`self.train_metrics`:")
