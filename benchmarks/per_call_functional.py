"""Per-call cost of self.log for torchmetrics functional values: lmlogger's own work as a fraction of Lightning's.

    python benchmarks/per_call_functional.py [--steps 2000] [--repeats 5]

A functional-heavy step: five values from torchmetrics' functional API logged with on_epoch=True
(``binary_f1_score``, ``binary_auroc``, ``binary_accuracy``, ``mean_squared_error``, a macro
``multiclass_accuracy``) and a loss. Each repetition runs a plain and a wrapped fit in separate processes
(alternating order). Timed in the wrapped runs, in the same process: lmlogger's own work per ``self.log``
(the session's observe, which feeds each functional key's shadow Metric with the step's inputs), and the
functional calls themselves (the thin wrapper that remembers their results is inside that time).
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
from lightning.pytorch import LightningModule
from torchmetrics.functional import mean_squared_error
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_f1_score,
    multiclass_accuracy,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import data, fresh_logger, machine, make_trainer, median, plain_vs_wrapped

CALLS = 6  # self.log calls per step


class FunctionalHeavy(LightningModule):
    """Five functional metric values and a loss, logged every step with on_epoch=True."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16, 3)
        self.log_seconds = 0.0
        self.functional_seconds = 0.0
        self.log_calls = 0
        self.functional_calls = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        scores = self.layer(x)
        loss = torch.nn.functional.cross_entropy(scores, y)
        p = scores[:, 1].sigmoid().detach()
        t0 = time.perf_counter()
        values = (
            binary_f1_score(p, y),
            binary_auroc(p, y),
            binary_accuracy(p, y),
            mean_squared_error(p, y.float()),
            multiclass_accuracy(scores.detach(), y, num_classes=3),
        )
        t1 = time.perf_counter()
        for name, value in zip(("f1", "auroc", "acc", "mse", "macc"), values, strict=True):
            self.log(name, value, on_step=False, on_epoch=True)
        self.log("loss", loss, on_step=True, on_epoch=True)
        t2 = time.perf_counter()
        self.functional_seconds += t1 - t0
        self.log_seconds += t2 - t1
        self.functional_calls += len(values)
        self.log_calls += CALLS
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def child(wrapped: bool, steps: int) -> None:
    logger, root = fresh_logger("tensorboard", wrapped)
    spent = [0.0]
    if wrapped:
        from lmlogger.runtime import _session

        original = _session.Session.observe

        def timed(self, *a, **k):
            t0 = time.perf_counter()
            original(self, *a, **k)
            spent[0] += time.perf_counter() - t0

        _session.Session.observe = timed
    model = FunctionalHeavy()
    make_trainer(logger, root, max_epochs=1, limit_train_batches=steps).fit(model, data(steps * 8))
    print(
        json.dumps(
            {
                "us_per_call": 1e6 * model.log_seconds / model.log_calls,
                "observe_us_per_call": 1e6 * spent[0] / model.log_calls,
                "functional_us_per_call": 1e6 * model.functional_seconds / model.functional_calls,
                "calls": model.log_calls,
            }
        )
    )


def main() -> None:
    parsed = plain_vs_wrapped(__doc__, __file__, child, steps=2000, repeats=5)
    if parsed is None:
        return
    args, pairs = parsed
    p = median([x["plain"]["us_per_call"] for x in pairs])
    w = median([x["wrapped"]["us_per_call"] for x in pairs])
    o = median([x["wrapped"]["observe_us_per_call"] for x in pairs])
    fp = median([x["plain"]["functional_us_per_call"] for x in pairs])
    fw = median([x["wrapped"]["functional_us_per_call"] for x in pairs])
    own = w - o
    print(f"machine: {machine()}")
    print(f"self.log, Lightning alone:     {p:8.2f} us/call (median of {args.repeats}, {CALLS} calls a step)")
    print(f"self.log, with lmlogger:       {w:8.2f} us/call")
    print(f"lmlogger's own work, timed:    {o:8.2f} us/call (shadow updates included)")
    print(f"  = {100 * o / own:.1f}% of Lightning's own cost in the same runs ({own:.2f} us/call)")
    print(f"functional call, plain:        {fp:8.2f} us/call")
    print(f"functional call, wrapped:      {fw:8.2f} us/call (two processes: noisy)")


if __name__ == "__main__":
    main()
