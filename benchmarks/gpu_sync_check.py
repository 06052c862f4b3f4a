"""GPU check: a short fit under torch.cuda.set_sync_debug_mode("error"), plain and wrapped.

    python benchmarks/gpu_sync_check.py [--epochs 2] [--samples 600]

Any host-device synchronisation inside training/validation steps raises. Lightning itself
synchronises when it converts step metrics for the logger, so sync checking is switched on only
inside the steps (on_*_batch_start .. on_*_batch_end), where every self.log call happens. Prints
PASS/FAIL per variant. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
from _common import LoggingHeavy, data, scratch_dir, seed
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


def run(wrapped: bool, epochs: int = 2, samples: int = 600) -> str:
    from lightning.pytorch.loggers import TensorBoardLogger

    seed()
    root = scratch_dir()
    logger = TensorBoardLogger(root)
    if wrapped:
        from lmlogger import VerifiedLogger

        logger = VerifiedLogger(logger, on_mismatch="ignore")
    from lightning.pytorch import Trainer

    trainer = Trainer(
        max_epochs=epochs,
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
        trainer.fit(GpuModel(), data(samples))
    except RuntimeError as err:
        return f"FAIL: {err}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    if wrapped:
        report = logger.report()
        return f"PASS (audit: {report.summary})"
    return "PASS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Exit code: 0 both PASS (or no CUDA device), 1 a FAIL."
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs per fit (default: 2)")
    parser.add_argument("--samples", type=int, default=600, help="training samples, batch size 8 (default: 600)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    print(f"device: {torch.cuda.get_device_name()}")
    results = {"plain TensorBoardLogger": run(False, args.epochs, args.samples)}
    results["VerifiedLogger"] = run(True, args.epochs, args.samples)
    for name, result in results.items():
        print(f"{name + ':':24} {result}")
    return 0 if all(r.startswith("PASS") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
