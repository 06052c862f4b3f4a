"""The public surface: exactly what __all__ lists, typed, importable without optional backends."""

import os
import subprocess
import sys

import pytest
from helpers import KitchenSink, loader, seeded, trainer
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

import lmlogger
from lmlogger import VerifiedLogger


def test_all_lists_exactly_the_public_names():
    import types

    public = {
        name
        for name, value in vars(lmlogger).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)  # submodules are not API
    }
    assert sorted(lmlogger.__all__) == lmlogger.__all__
    assert set(lmlogger.__all__) == public
    assert callable(lmlogger.audit)
    assert os.path.isfile(os.path.join(os.path.dirname(lmlogger.__file__), "py.typed"))


def test_import_and_a_csv_run_work_without_tensorboard_and_mlflow(tmp_path):
    """`import lmlogger`, a CSV run and its audit need only lightning and torchmetrics."""
    code = f"""
import sys
for name in ("tensorboard", "tensorboardX", "mlflow"):
    sys.modules[name] = None  # as if not installed
sys.path.insert(0, {os.path.dirname(__file__)!r})
import lmlogger
from helpers import KitchenSink, loader, quiet, trainer
from lightning.pytorch.loggers import CSVLogger
quiet()
logger = lmlogger.VerifiedLogger(CSVLogger({str(tmp_path)!r}), on_mismatch="ignore")
trainer(logger, {str(tmp_path)!r}, max_epochs=1, limit_val_batches=0).fit(KitchenSink(), loader())
print("verdict", lmlogger.audit(logger.log_dir).by_key()["f1_compute"].verdict)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "verdict mismatch"


class MyLogger(Logger):
    """A user's own logger: records every call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    @property
    def name(self):
        return "mine"

    @property
    def version(self):
        return "v1"

    @property
    def save_dir(self):
        return self._dir

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs):
        self.calls.append(("hparams", dict(params)))

    @rank_zero_only
    def log_metrics(self, metrics, step=None):
        self.calls.append(("metrics", dict(metrics), step))


def test_a_users_own_logger_subclass(tmp_path):
    """A custom Logger is wrapped too: same calls in, references added, sidecar in save_dir/name/version."""
    mine = MyLogger()
    mine._dir = str(tmp_path)
    logger = VerifiedLogger(mine, on_mismatch="ignore")
    assert isinstance(logger, MyLogger) and logger.name == "mine" and logger.version == "v1"
    seeded(0)
    trainer(logger, tmp_path, max_epochs=2, limit_val_batches=0).fit(KitchenSink(), loader())
    metric_calls = [c for c in mine.calls if c[0] == "metrics"]
    user = [c for c in metric_calls if not any(k.startswith("lmlogger/") for k in c[1])]
    ours = [c for c in metric_calls if all(k.startswith("lmlogger/reference/") for k in c[1])]
    assert len(user) + len(ours) == len(metric_calls)
    assert any("f1_compute" in c[1] for c in user)
    assert {c[2] for c in ours} <= {c[2] for c in user if "f1_compute" in c[1]}
    run_dir = tmp_path / "mine" / "v1"
    report = lmlogger.audit(run_dir)
    assert report.by_key()["f1_compute"].verdict == "mismatch"
    assert report.runs[0].backend == "MyLogger"
    del logger


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf")])
def test_options_are_validated(value):
    from lightning.pytorch.loggers import CSVLogger

    if value == 0:
        VerifiedLogger(CSVLogger("unused"), rtol=value)  # zero tolerance is allowed
        return
    with pytest.raises(ValueError, match="expected a finite number >= 0"):
        VerifiedLogger(CSVLogger("unused"), rtol=value)


def test_every_record_field_has_a_checked_type():
    """The audit checks the type of every field it reads: each record field is listed with its type."""
    import dataclasses

    from lmlogger.records import _records

    for type_, cls in _records._TYPES.items():
        names = {f.name for f in dataclasses.fields(cls)} - {"type"}
        assert names <= set(_records._FIELDS[type_]), (type_, names - set(_records._FIELDS[type_]))
