"""Memory over 100,000 logged steps: lmlogger's traced allocations at 10k and 100k steps.

    python benchmarks/memory.py [--steps 100000]

Runs a real fit of a minimal module (two self.log calls per step) under tracemalloc, plain and
wrapped, and prints the growth of traced memory between step 10k and the last step.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
from _common import fresh_logger, machine, make_trainer, plain_vs_wrapped
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryF1Score


class Minimal(LightningModule):
    def __init__(self, marks):
        super().__init__()
        self.automatic_optimization = False
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.f1 = BinaryF1Score()
        self.marks, self.mem, self.n = marks, {}, 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.f1.update(x[:, 0], y)
        self.log("loss", x.sum(), on_step=False, on_epoch=True)
        self.log("f1", self.f1, on_step=False, on_epoch=True)
        self.n += 1
        if self.n in self.marks:
            gc.collect()
            self.mem[self.n] = tracemalloc.get_traced_memory()[0]

    def configure_optimizers(self):
        return None


def child(wrapped: bool, steps: int) -> None:
    logger, root = fresh_logger("csv", wrapped)
    first = min(10_000, steps // 10)
    model = Minimal({first, steps})
    data = TensorDataset(torch.rand(steps, 1), torch.randint(0, 2, (steps,)))
    tracemalloc.start()
    make_trainer(logger, root, max_epochs=1, log_every_n_steps=10_000).fit(model, DataLoader(data, batch_size=1))
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*lmlogger*")])
    tracemalloc.stop()
    ours = sum(s.size for s in snapshot.statistics("filename"))
    print(json.dumps({"first": first, "growth": model.mem[steps] - model.mem[first], "lmlogger_bytes": ours}))


def main() -> None:
    parsed = plain_vs_wrapped(__doc__, __file__, child, steps=100_000, repeats=None)
    if parsed is None:
        return
    args, pairs = parsed
    plain, wrapped = pairs[0]["plain"], pairs[0]["wrapped"]
    print(f"machine: {machine()}")
    print(f"traced memory growth from step {plain['first']} to {args.steps}:")
    print(f"  plain CSVLogger:   {plain['growth'] / 1024:10.1f} KiB")
    print(f"  VerifiedLogger:    {wrapped['growth'] / 1024:10.1f} KiB")
    print(f"  allocations held by lmlogger's own code at the end: {wrapped['lmlogger_bytes'] / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
