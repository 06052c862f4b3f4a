"""lmlogger under DDP: two CPU processes (gloo), global references, rank-local values flagged.

Run:  python examples/ddp.py [--logdir DIR] [--epochs N]

Each rank sees a different half of the data (Lightning adds a DistributedSampler). The model logs
  * ``f1``: the metric object; Lightning syncs its state across ranks and calls ``compute()``: match;
  * ``loss``: a tensor logged without ``sync_dist``; the epoch value is rank 0's mean alone, while
    lmlogger's reference is the mean over both ranks: mismatch, finding ``rank-local``;
  * ``loss_synced``: the same tensor with ``sync_dist=True``: match.
Only rank 0 writes the sidecar and prints the audit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryF1Score

import lmlogger
from lmlogger import VerifiedLogger


class DDPClassifier(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.f1 = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        self.f1.update(logits.sigmoid(), y)
        self.log("f1", self.f1, on_step=False, on_epoch=True)
        self.log("loss", loss, on_step=False, on_epoch=True)  # rank 0's value only
        self.log("loss_synced", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def data(n: int = 256) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = ((x[:, 0] + 0.5 * torch.randn(n, generator=g)) > 0.3).long()
    return DataLoader(TensorDataset(x, y), batch_size=32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default=None, help="where to write logs (default: a temporary dir)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    # Lightning's "ddp" strategy runs this script again for rank 1; both ranks must use the same dir.
    logdir = args.logdir or os.environ.setdefault("LMLOGGER_DDP_EXAMPLE_DIR", tempfile.mkdtemp(prefix="lmlogger-ddp-"))

    seed_everything(0, verbose=False)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    logger = VerifiedLogger(CSVLogger(logdir, name="ddp"))  # the rank-local loss is warned about at trainer.fit
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=args.epochs,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    trainer.fit(DDPClassifier(), data())

    if trainer.is_global_zero:  # the sidecar is written by rank 0 only
        print(f"\nRun written to {logger.log_dir}")
        print(lmlogger.audit(logger.log_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
