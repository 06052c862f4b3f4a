"""A two-process CPU (gloo) run for the sample-accounting tests. Not a test module: run as a script.

    python tests/ddp_samples_run.py --strategy ddp|ddp_spawn --out DIR

Three validation dataloaders, each with its own metrics:

* 0: 33 samples, Lightning's own ``DistributedSampler`` pads it to 34 (one repeat, alone in the
  last batch of rank 1);
* 1: 34 samples (the control: divisible by the 2 ranks, nothing repeated);
* 2: 33 samples through the remedy lmlogger names, ``UnrepeatedDistributedSamplerWrapper``
  (Lightning keeps a sampler that is already distributed), so the ranks get 17 and 16 samples; its
  loss is logged as a ``MeanMetric`` of per-sample losses, as the fix says (Lightning's
  ``sync_dist`` mean truncates a per-rank sample total that is not divisible by the ranks).

The training loader (45 samples, batch 8, ``drop_last=True``) drops each rank's last partial batch.
Each rank saves every sample index it saw with its prediction, target and per-sample loss, per
phase, epoch and dataloader (``rank{r}.pt``), and the number of lmlogger collectives.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import N_FEATURES, quiet, seeded
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSamplerWrapper
from torch.utils.data import DataLoader, SequentialSampler, TensorDataset
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC, BinaryF1Score

N_TRAIN = 45
N_VAL = (33, 34, 33)
BATCH = 8


def indexed(n: int, seed: int) -> TensorDataset:
    """``(x, y, index)``; sample 0 (the one the sampler repeats) is a positive."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=g)
    y = ((x[:, 0] + 0.8 * torch.randn(n, generator=g)) > 0.2).long()
    x[0, 0], y[0] = 2.0, 1
    return TensorDataset(x, y, torch.arange(n))


class Model(LightningModule):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.seen: dict[tuple, list[dict]] = {}
        self.train_f1 = BinaryF1Score()
        self.val_f1 = torch.nn.ModuleList(BinaryF1Score() for _ in N_VAL)  # sum states
        self.val_auroc = torch.nn.ModuleList(BinaryAUROC() for _ in N_VAL)  # cat states
        self.remedy_loss = MeanMetric()

    def _record(self, phase, x, y, idx, dl=0):
        """Keep every sample's index, prediction, target and loss; return predictions and per-sample losses."""
        logits = self.layer(x).squeeze(-1)
        per_sample = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float(), reduction="none")
        p = logits.sigmoid().detach()
        rows = {"idx": idx.clone(), "preds": p.clone(), "target": y.clone(), "loss": per_sample.detach().clone()}
        self.seen.setdefault((phase, self.current_epoch, dl), []).append(rows)
        return p, per_sample

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        p, losses = self._record("train", x, y, idx)
        loss = losses.mean()
        self.train_f1.update(p, y)
        self.log("train_f1", self.train_f1, on_step=False, on_epoch=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y, idx = batch
        p, losses = self._record("val", x, y, idx, dataloader_idx)
        self.val_f1[dataloader_idx].update(p, y)
        self.log("val_f1", self.val_f1[dataloader_idx])
        self.val_auroc[dataloader_idx].update(p, y)
        self.log("val_auroc", self.val_auroc[dataloader_idx])
        if dataloader_idx == 2:
            self.remedy_loss.update(losses)
            self.log("val_loss", self.remedy_loss)
        else:
            self.log("val_loss", losses.mean(), sync_dist=True)

    def on_fit_end(self):
        from lmlogger.runtime._distributed import Exchange

        seen = {key: {name: torch.cat([r[name] for r in rows]) for name in rows[0]} for key, rows in self.seen.items()}
        torch.save(seen, os.path.join(self.out, f"rank{self.global_rank}.pt"))
        with open(os.path.join(self.out, f"counts{self.global_rank}.json"), "w") as fh:
            json.dump({"lmlogger": Exchange.collectives}, fh)

    def train_dataloader(self):
        return DataLoader(indexed(N_TRAIN, seed=1), batch_size=BATCH, shuffle=True, drop_last=True)

    def val_dataloader(self):
        padded, control, remedy = (indexed(n, seed=2 + i) for i, n in enumerate(N_VAL))
        return [
            DataLoader(padded, batch_size=BATCH),
            DataLoader(control, batch_size=BATCH),
            DataLoader(
                remedy, batch_size=BATCH, sampler=UnrepeatedDistributedSamplerWrapper(SequentialSampler(remedy))
            ),
        ]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="ddp_spawn")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    quiet()
    seeded(0)
    from lmlogger import VerifiedLogger

    trainer = Trainer(
        strategy=args.strategy,
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        logger=VerifiedLogger(CSVLogger(args.out, name="ddp"), on_mismatch="ignore"),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(Model(args.out))


if __name__ == "__main__":
    main()
