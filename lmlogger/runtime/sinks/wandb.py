"""Weights & Biases addition: the sidecar saved into the W&B run's files (``lmlogger/provenance.jsonl``),
live, so it is uploaded with the run (offline runs keep it for ``wandb sync``), and the HTML report
(``lmlogger/report.html``) added to them when the run ends."""

from __future__ import annotations

import os
from typing import Any

from lmlogger.records._errors import warn_user
from lmlogger.runtime.sinks.generic import GenericSink


class WandbSink(GenericSink):
    """Sidecar + reference metrics + the sidecar among the W&B run's files."""

    def __init__(self, vlogger: Any, trainer: Any) -> None:
        super().__init__(vlogger, trainer)
        self.saved = False

    def close(self, status: str) -> None:
        super().close(status)  # writes lmlogger/report.html
        if self.options.tracker_extras and self.options.html_report and os.path.isfile(self.report_path):
            self._save(self.report_path, "now")

    def begin(self, stage: str) -> None:
        super().begin(stage)  # the file exists from here on
        if self.saved or not self.options.tracker_extras:
            return
        self.saved = True
        self._save(self.path, "live")

    def _save(self, path: str, policy: str) -> None:
        try:
            self.logger.experiment.save(path, base_path=self.run_dir, policy=policy)
        except Exception as err:  # lmlogger's own extra call: never an exception into training
            warn_user(
                f"lmlogger: could not add {os.path.basename(path)} to the W&B run's files "
                f"({type(err).__name__}: {err}); it is kept at {path}."
            )
