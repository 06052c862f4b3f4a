"""Errors: the user's surface exactly as without lmlogger; lmlogger's own become a warning."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers import KitchenSink, loader, seeded, trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

import lmlogger
from lmlogger import MismatchError, VerifiedLogger


class Boom(KitchenSink):
    def training_step(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 2:
            raise RuntimeError("user bug in training_step at batch 2")
        return super().training_step(batch, batch_idx)


def run_boom(tmp_path, wrap):
    seeded(0)
    logger = TensorBoardLogger(str(tmp_path), name="boom")
    if wrap:
        logger = VerifiedLogger(logger, on_mismatch="ignore")
    t = trainer(logger, tmp_path, max_epochs=3, limit_val_batches=0)
    with pytest.raises(BaseException) as info:
        t.fit(Boom(), loader())
    return info, logger


def test_user_exception_surfaces_unchanged_and_sidecar_closes_failed(tmp_path):
    """An exception in training_step is the same exception; the sidecar ends with status failed."""
    plain, _ = run_boom(tmp_path / "plain", wrap=False)
    wrapped, logger = run_boom(tmp_path / "wrapped", wrap=True)
    assert type(wrapped.value) is type(plain.value) is RuntimeError
    assert str(wrapped.value) == str(plain.value)
    with open(os.path.join(logger.log_dir, "lmlogger", "provenance.jsonl")) as fh:
        records = [json.loads(line) for line in fh]
    assert records[-1] == {**records[-1], "type": "close", "status": "failed"}
    report = lmlogger.audit(logger.log_dir)
    run = report.runs[0]
    assert run.status == "failed" and run.complete  # closed, though failed
    assert [e.epoch for e in report.by_key()["f1_object"].epochs] == [0]  # epoch 0 was verified
    del logger


def test_user_errors_in_self_log_are_lightnings_own(tmp_path):
    """A misuse of self.log raises Lightning's own MisconfigurationException, message unchanged."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    class BadKey(KitchenSink):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("x/dataloader_idx_0", 1.0)

    messages = []
    for wrap in (False, True):
        seeded(0)
        logger = CSVLogger(str(tmp_path / str(wrap)))
        if wrap:
            logger = VerifiedLogger(logger)
        t = trainer(logger, tmp_path, max_epochs=1, num_sanity_val_steps=1)
        with pytest.raises(MisconfigurationException) as info:
            t.fit(BadKey(), loader(), loader(30))
        messages.append(str(info.value))
        del logger
    assert messages[0] == messages[1]


def test_internal_error_is_one_warning_and_unverified(tmp_path, monkeypatch):
    """Fault injection: lmlogger's own failure never stops training; keys become unverified."""
    from lmlogger.runtime import _ledger

    def broken(self, value, batch_size):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(_ledger.TensorLedger, "add", broken)
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    t = trainer(logger, tmp_path, max_epochs=2, limit_val_batches=0)
    with pytest.warns(UserWarning, match="lmlogger: internal error while recording self.log") as record:
        t.fit(KitchenSink(), loader())
    assert len([w for w in record if "internal error" in str(w.message)]) == 1
    assert t.current_epoch == 2  # training completed
    keys = lmlogger.audit(logger.log_dir).by_key()
    assert keys["loss_epoch"].verdict == "unverified"
    assert "injected" in keys["loss_epoch"].reason
    del logger


def test_on_mismatch_warn_is_one_clear_warning_per_key(tmp_path):
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)))  # default: warn
    t = trainer(logger, tmp_path, max_epochs=3, limit_val_batches=0)
    with pytest.warns(UserWarning) as record:
        t.fit(KitchenSink(), loader())
    ours = [str(w.message) for w in record if str(w.message).startswith("lmlogger:")]
    about_compute = [m for m in ours if m.startswith("lmlogger: `f1_compute`")]
    assert len(about_compute) == 1
    msg = about_compute[0]
    assert "running-value-averaged" in msg and 'self.log("f1_compute", self.f1_c' in msg
    assert "but the epoch value is" in msg
    del logger


def test_on_mismatch_raise_raises_after_records_are_written(tmp_path):
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="raise")
    t = trainer(logger, tmp_path, max_epochs=3, limit_val_batches=0)
    with pytest.raises(MismatchError, match="f1_compute"):
        t.fit(KitchenSink(), loader())
    report = lmlogger.audit(logger.log_dir)
    assert report.by_key()["f1_compute"].verdict == "mismatch"
    assert report.runs[0].status == "failed"
    del logger


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from helpers import KitchenSink, loader, seeded, trainer, quiet
    from lightning.pytorch.loggers import TensorBoardLogger
    from lmlogger import VerifiedLogger
    quiet()

    class Killed(KitchenSink):
        def training_step(self, batch, batch_idx):
            if self.current_epoch == 3 and batch_idx == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().training_step(batch, batch_idx)

    seeded(0)
    logger = VerifiedLogger(TensorBoardLogger({tmp!r}, name="killed"), on_mismatch="ignore")
    t = trainer(logger, {tmp!r}, max_epochs=6)
    t.fit(Killed(), loader(), [loader(60, seed=1), loader(44, seed=2)])
    """
)


def test_run_killed_in_fourth_epoch_audits_three_epochs(tmp_path):
    """SIGKILL in epoch 4: the audit shows the three finished epochs and complete: false."""
    script = KILL_SCRIPT.format(tests=os.path.dirname(__file__), tmp=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run_dir = os.path.join(str(tmp_path), "killed", "version_0")
    cli = subprocess.run(
        [sys.executable, "-m", "lmlogger", "audit", run_dir, "--format", "json"], capture_output=True, text=True
    )
    assert cli.returncode == 1, cli.stderr
    data = json.loads(cli.stdout)
    run = data["runs"][0]
    assert run["complete"] is False
    keys = {k["key"]: k for k in run["keys"]}
    assert [e["epoch"] for e in keys["f1_object"]["epochs"]] == [0, 1, 2]
    assert [e["epoch"] for e in keys["val_acc/dataloader_idx_0"]["epochs"]] == [0, 1, 2]
    assert keys["f1_compute"]["verdict"] == "mismatch"
