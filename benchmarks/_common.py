"""Shared pieces of the benchmarks: a logging-heavy tiny model and process helpers."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score


class LoggingHeavy(LightningModule):
    """Five self.log calls per step, one of each provenance pattern (plus an extra tensor)."""

    def __init__(self, extra_calls: int = 0, time_calls: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16, 1)
        self.f1 = BinaryF1Score()
        self.f1_c = BinaryF1Score()
        self.acc = BinaryAccuracy()
        self.extra_calls = extra_calls
        self.time_calls = time_calls
        self.log_seconds = 0.0
        self.log_calls = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        p = logits.sigmoid().detach()
        self.f1.update(p, y)
        self.f1_c.update(p, y)
        acc = self.acc(p, y)
        computed = self.f1_c.compute()
        t0 = time.perf_counter()
        self.log("loss", loss, on_step=True, on_epoch=True)
        self.log("f1", self.f1, on_step=False, on_epoch=True)
        self.log("f1_running", computed, on_step=False, on_epoch=True)
        self.log("acc", acc, on_step=True, on_epoch=True)
        self.log("ratio", loss.detach() * 2, on_step=False, on_epoch=True)
        for i in range(self.extra_calls):
            self.log(f"extra_{i % 5}", loss.detach(), on_step=False, on_epoch=True)
        if self.time_calls:
            self.log_seconds += time.perf_counter() - t0
            self.log_calls += 5 + self.extra_calls
        return loss

    def on_train_epoch_end(self):
        self.f1_c.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def data(n: int, batch_size: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def make_trainer(logger, root: str, max_epochs: int = 1, **kwargs) -> Trainer:
    warnings.filterwarnings("ignore")
    options = dict(
        max_epochs=max_epochs,
        logger=logger,
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=50,
        accelerator="cpu",
        devices=1,
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return Trainer(**options)


def scratch_dir() -> str:
    """A new temporary folder, removed when the process exits (benchmarks leave nothing behind)."""
    root = tempfile.mkdtemp(prefix="lmlogger-bench-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def fresh_logger(kind: str, wrapped: bool) -> tuple[object, str]:
    """``(logger, root)``: a ``TensorBoardLogger`` or ``CSVLogger`` in a new temp dir (removed when the process
    exits), wrapped or not."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    seed()
    root = scratch_dir()
    logger = (TensorBoardLogger if kind == "tensorboard" else CSVLogger)(root)
    if wrapped:
        from lmlogger import VerifiedLogger

        logger = VerifiedLogger(logger, on_mismatch="ignore")
    return logger, root


def seed() -> None:
    seed_everything(0, verbose=False)
    torch.set_num_threads(1)


def run_child(script: str, *args: str) -> dict:
    """Run ``script`` in a fresh process; it prints one JSON line last."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def plain_vs_wrapped(
    doc: str, script: str, child: Callable[[bool, int], None], steps: int, repeats: int | None
) -> tuple[argparse.Namespace, list[dict[str, dict]]] | None:
    """The command line every benchmark shares: ``--steps``, ``--repeats`` (when given a default) and the
    internal ``--child plain|wrapped``. In a child, runs ``child`` and returns ``None``; else returns the
    arguments and the alternating pairs of child results."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=steps)
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--child", choices=["plain", "wrapped"])
    args = parser.parse_args()
    if args.child:
        child(args.child == "wrapped", args.steps)
        return None
    return args, alternating(script, getattr(args, "repeats", 1), args.steps)


def alternating(script: str, repeats: int, steps: int) -> list[dict[str, dict]]:
    """``repeats`` pairs of child runs ``{"plain": result, "wrapped": result}``, each in a fresh process,
    alternating which of the two goes first."""
    pairs = []
    for i in range(repeats):
        order = ("plain", "wrapped") if i % 2 == 0 else ("wrapped", "plain")
        pairs.append({kind: run_child(script, "--child", kind, "--steps", str(steps)) for kind in order})
    return pairs


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}"
