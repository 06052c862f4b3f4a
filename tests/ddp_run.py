"""A two-process CPU (gloo) run for the distributed tests. Not a test module: run as a script.

    python tests/ddp_run.py --strategy ddp|ddp_spawn --out DIR [--plain] [--rank0-logs-only] [--no-autolog-hparams]

Each rank saves its predictions and targets; rank 0 writes counts of collectives.
Tests start it with :func:`launch`, which kills the whole process group when it runs too long.
"""

import argparse
import atexit
import json
import os
import signal
import subprocess
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import N_FEATURES, Recorder, dataset, quiet, seeded
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score

_COLLECTIVES = (
    "all_reduce",
    "all_gather",
    "all_gather_object",
    "broadcast",
    "barrier",
    "reduce",
    "gather",
    "all_gather_into_tensor",
    "broadcast_object_list",
    "reduce_scatter",
    "scatter",
)
COUNTS = {"step": 0, "other": 0}
IN_STEP = [False]


def count_collectives():
    for name in _COLLECTIVES:
        fn = getattr(dist, name, None)
        if fn is None or getattr(fn, "_counted", False):
            continue

        def wrapper(*args, __fn=fn, **kwargs):
            COUNTS["step" if IN_STEP[0] else "other"] += 1
            return __fn(*args, **kwargs)

        wrapper._counted = True
        setattr(dist, name, wrapper)


def record_exit(path):
    """At interpreter exit: whether the default process group is still alive (left to interpreter teardown)."""
    with open(path, "w") as fh:
        json.dump({"group_alive": dist.is_available() and dist.is_initialized()}, fh)


class StepWindow(Callback):
    def on_train_batch_start(self, *a):
        IN_STEP[0] = True

    def on_train_batch_end(self, *a):
        IN_STEP[0] = False

    def on_validation_batch_start(self, *a):
        IN_STEP[0] = True

    def on_validation_batch_end(self, *a):
        IN_STEP[0] = False


def launch(out, strategy="ddp_spawn", *flags, timeout=240):
    """Run this script in a new process group; a run past ``timeout`` seconds (a hang) is killed, all
    ranks included, and raises ``TimeoutError``. Returns the finished ``CompletedProcess``."""
    cmd = [sys.executable, os.path.abspath(__file__), "--strategy", strategy, "--out", str(out), *flags]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise TimeoutError(f"{' '.join(cmd)} still running after {timeout} s (hung):\n{stderr[-3000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


class DDPModel(LightningModule):
    def __init__(self, out, rank0_logs_only=False):
        super().__init__()
        self.out = out
        self.rank0_logs_only = rank0_logs_only
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.rec = Recorder()
        self.f1 = BinaryF1Score()
        self.f1_c = BinaryF1Score()
        self.val_acc = BinaryAccuracy()

    def setup(self, stage):
        count_collectives()
        # registered before lmlogger's first exchange, so it runs after lmlogger's own exit handler
        atexit.register(record_exit, os.path.join(self.out, f"exit{self.global_rank}.json"))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        p = logits.sigmoid().detach()
        self.rec.add(("train", self.current_epoch, 0), p, y)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        if self.rank0_logs_only:  # rank 1 logs nothing at all (a metric compute() would sync: not here)
            if self.global_rank == 0:
                self.log("loss", loss, on_step=True, on_epoch=True)
            return loss
        value = torch.tensor(float(self.global_rank + 1))
        self.log("rank_value", value, on_step=False, on_epoch=True)
        self.log("rank_value_synced", value, on_step=False, on_epoch=True, sync_dist=True)
        self.f1.update(p, y)
        self.log("f1_object", self.f1, on_step=False, on_epoch=True)
        self.f1_c.update(p, y)
        self.log("f1_compute", self.f1_c.compute(), on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self):
        self.f1_c.reset()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        p = logits.sigmoid()
        self.rec.add(("val", self.current_epoch, 0), p, y)
        if self.rank0_logs_only:
            if self.global_rank == 0:
                self.log("val_loss", torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float()))
            return
        self.val_acc.update(p, y)
        self.log("val_acc", self.val_acc)
        self.log("val_loss", torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float()), sync_dist=True)
        if self.global_rank == 0:  # ranks log different key sets
            self.log("only_rank0", torch.tensor(1.0))

    def on_fit_end(self):
        torch.save(
            {"preds": dict(self.rec.preds), "target": dict(self.rec.target)},
            os.path.join(self.out, f"rank{self.global_rank}.pt"),
        )
        from lmlogger.runtime._distributed import Exchange

        with open(os.path.join(self.out, f"counts{self.global_rank}.json"), "w") as fh:
            json.dump({**COUNTS, "lmlogger": Exchange.collectives}, fh)

    def train_dataloader(self):
        # same number of batches on both ranks (gradient sync), different data and last-batch size
        n = 92 if self.global_rank == 0 else 84
        return DataLoader(dataset(n, seed=10 + self.global_rank), batch_size=16)

    def val_dataloader(self):
        # uneven batch counts per rank: 4 vs 2 batches
        n = 60 if self.global_rank == 0 else 30
        return DataLoader(dataset(n, seed=20 + self.global_rank), batch_size=16)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="ddp_spawn")
    parser.add_argument("--out", required=True)
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--on-mismatch", default="ignore")
    parser.add_argument("--rank0-logs-only", action="store_true")
    parser.add_argument("--no-autolog-hparams", action="store_true")
    args = parser.parse_args()
    quiet()
    seeded(0)
    logger = CSVLogger(args.out, name="ddp")
    if not args.plain:
        from lmlogger import VerifiedLogger

        logger = VerifiedLogger(logger, on_mismatch=args.on_mismatch)
    trainer = Trainer(
        strategy=args.strategy,
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        callbacks=[StepWindow()],
        enable_autolog_hparams=not args.no_autolog_hparams,
    )
    trainer.fit(DDPModel(args.out, rank0_logs_only=args.rank0_logs_only))


if __name__ == "__main__":
    main()
