"""Weights & Biases addition: the sidecar saved into the W&B run's files (``lmlogger/provenance.jsonl``),
live, so it is uploaded with the run (offline runs keep it for ``wandb sync``)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

from lmlogger.sinks.generic import GenericSink


class WandbSink(GenericSink):
    """Sidecar + reference metrics + the sidecar among the W&B run's files."""

    def __init__(self, vlogger: Any, trainer: Any) -> None:
        super().__init__(vlogger, trainer)
        self.saved = False

    def begin(self, stage: str) -> None:
        super().begin(stage)  # the file exists from here on
        if self.saved:
            return
        self.saved = True
        try:
            self.logger.experiment.save(self.path, base_path=self.run_dir, policy="live")
        except Exception as err:  # lmlogger's own extra call: never an exception into training
            rank_zero_warn(
                f"lmlogger: could not add the sidecar to the W&B run's files ({type(err).__name__}: {err}); "
                f"it is kept at {self.path}."
            )
