"""lmlogger quickstart: the same F1 logged the wrong way and the right way, then the audit.

Run:  python examples/quickstart.py [--logdir DIR] [--epochs N]

The model is a tiny classifier on synthetic data. It logs
  * ``f1_wrong``: ``self.f1_running.compute()`` from ``training_step`` with ``on_epoch=True``; Lightning
    stores the mean of the *running* F1 values, not the epoch F1;
  * ``f1_right``: the metric object itself, ``self.log("f1_right", self.f1)``; Lightning calls
    ``compute()`` at epoch end.
``VerifiedLogger`` records how each value was made: a warning names ``f1_wrong`` when its first epoch
ends, and the audit printed at the end shows which value to trust.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryF1Score

import lmlogger
from lmlogger import VerifiedLogger


class Classifier(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.f1 = BinaryF1Score()
        self.f1_running = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        preds = logits.sigmoid()
        self.f1.update(preds, y)
        self.f1_running.update(preds, y)
        self.log("loss", loss, on_epoch=True)
        self.log("f1_right", self.f1, on_step=False, on_epoch=True)
        # the classic pitfall: a running compute() logged every step and averaged at epoch end
        self.log("f1_wrong", self.f1_running.compute(), on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.f1_running.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def data(n: int = 200) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = ((x[:, 0] + 0.5 * torch.randn(n, generator=g)) > 0.3).long()
    return DataLoader(TensorDataset(x, y), batch_size=32)  # 200 = 6 * 32 + 8: a short last batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default=None, help="where to write logs (default: a temporary dir)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    logdir = args.logdir or tempfile.mkdtemp(prefix="lmlogger-quickstart-")

    seed_everything(0, verbose=False)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # on_mismatch="warn" (the default): a warning names f1_wrong, its gap and its fix at the trainer.fit line
    logger = VerifiedLogger(TensorBoardLogger(logdir, name="quickstart"))
    trainer = Trainer(
        max_epochs=args.epochs,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    trainer.fit(Classifier(), data())

    run_dir = logger.log_dir
    print(f"\nRun written to {run_dir}")
    print(f"  audit again with:  lmlogger audit {run_dir}")
    print(f"  browse it with:    tensorboard --logdir {os.path.dirname(run_dir)}")
    print(f"  open the page:     {os.path.join(run_dir, 'lmlogger', 'report.html')}\n")
    report = lmlogger.audit(run_dir)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
