"""GPU check: a short fit under torch.cuda.set_sync_debug_mode("error"), plain and wrapped.

    python benchmarks/gpu_sync_check.py

Any host-device synchronisation inside training/validation steps raises. Lightning itself
synchronises when it converts step metrics for the logger, so sync checking is switched on only
inside the steps (on_*_batch_start .. on_*_batch_end), where every self.log call happens. Prints
PASS/FAIL per variant. Needs a CUDA device.
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
from _common import LoggingHeavy, data, seed
from lightning.pytorch import Callback


class SyncErrorsInSteps(Callback):
    def _on(self, *args):
        torch.cuda.set_sync_debug_mode("error")

    def _off(self, *args):
        torch.cuda.set_sync_debug_mode("default")

    on_train_batch_start = on_validation_batch_start = _on
    on_train_batch_end = on_validation_batch_end = _off


class GpuModel(LoggingHeavy):
    def on_train_epoch_end(self):
        super().on_train_epoch_end()


def run(wrapped: bool) -> str:
    from lightning.pytorch.loggers import TensorBoardLogger

    seed()
    root = tempfile.mkdtemp()
    logger = TensorBoardLogger(root)
    if wrapped:
        from lmlogger import VerifiedLogger

        logger = VerifiedLogger(logger, on_mismatch="ignore")
    from lightning.pytorch import Trainer

    trainer = Trainer(
        max_epochs=2,
        logger=logger,
        default_root_dir=root,
        accelerator="gpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
        callbacks=[SyncErrorsInSteps()],
    )
    try:
        trainer.fit(GpuModel(), data(600))
    except RuntimeError as err:
        return f"FAIL: {err}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    if wrapped:
        report = logger.report()
        return f"PASS (audit: {report.summary})"
    return "PASS"


def main() -> None:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return
    print(f"device: {torch.cuda.get_device_name()}")
    print(f"plain TensorBoardLogger: {run(False)}")
    print(f"VerifiedLogger:          {run(True)}")


if __name__ == "__main__":
    main()
