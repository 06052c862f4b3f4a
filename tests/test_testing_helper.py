"""lmlogger.testing: assert_verified() and verified() fail a user's test with a message that says what to fix."""

import gc
from pathlib import Path

import pytest
import torch
from helpers import N_FEATURES, loader, seeded, trainer
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torchmetrics.classification import BinaryF1Score

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.audit import AuditInputError
from lmlogger.records._records import FINDINGS
from lmlogger.runtime import _intercept
from lmlogger.testing import assert_verified, verified


class Model(LightningModule):
    """``f1`` as a metric object (right); optionally ``f1_running`` as compute() at each step (wrong) and
    ``pct``, a value computed from compute() at each step (unverifiable: derived-value)."""

    def __init__(self, wrong: bool = False, derived: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.f1 = BinaryF1Score()
        self.f1_running = BinaryF1Score()
        self.wrong = wrong
        self.derived = derived
        self.f1_pct = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        p = logits.sigmoid().detach()
        self.f1.update(p, y)
        self.log("f1", self.f1, on_step=False, on_epoch=True)
        self.log("loss", loss, on_step=False, on_epoch=True)
        if self.wrong:
            self.f1_running.update(p, y)
            self.log("f1_running", self.f1_running.compute(), on_step=False, on_epoch=True)
        if self.derived:
            self.f1_pct.update(p, y)
            self.log("pct", self.f1_pct.compute() * 100, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.f1_running.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


def fit(tmp_path, model, epochs=1, logger=None):
    seeded(0)
    logger = logger or VerifiedLogger(CSVLogger(str(tmp_path), name="run"), on_mismatch="ignore")
    t = trainer(logger, tmp_path, max_epochs=epochs, enable_checkpointing=False)
    t.fit(model, loader())
    return t, logger


def test_clean_run_passes_for_every_kind_of_target(tmp_path):
    """A run with nothing mismatched passes whether given the trainer, the logger, the report or the path."""
    t, logger = fit(tmp_path, Model())
    expected = lmlogger.audit(logger.log_dir).to_dict()
    assert expected["summary"] == {"match": 2, "mismatch": 0, "unverified": 0}
    for target in (t, logger, lmlogger.audit(logger.log_dir), logger.log_dir, Path(logger.log_dir)):
        report = assert_verified(target)
        assert report.to_dict() == expected, type(target).__name__
    del t, logger


def test_mismatch_message_lists_key_values_finding_and_fix(tmp_path):
    """The AssertionError names each mismatched key, its logged and reference values, the finding and the fix."""
    t, logger = fit(tmp_path, Model(wrong=True), epochs=4)
    with pytest.raises(AssertionError) as failure:
        assert_verified(t)
    message = str(failure.value)
    key = lmlogger.audit(logger.log_dir).by_key()["f1_running"]
    assert key.verdict == "mismatch" and len(key.epochs) == 4
    lines = message.splitlines()
    assert lines[0] == "lmlogger: 1 key(s) mismatch (2 match, 1 mismatch, 0 unverified)"
    assert lines[1] == f"run {logger.log_dir}:"
    assert lines[2] == "  f1_running: mismatch (metric_compute logged from training_step)"
    for line, epoch in zip(lines[3:6], key.epochs[:3], strict=True):
        assert line == f"    train epoch {epoch.epoch}: logged {epoch.logged:.6g} != reference {epoch.reference:.6g}"
        assert abs(epoch.logged - epoch.reference) > 1e-4  # the values shown really differ
    assert lines[6] == "    ... and 1 more epoch(s)"
    assert lines[7] == f"    finding running-value-averaged: {FINDINGS['running-value-averaged']}"
    assert lines[8].startswith('    fix: self.log("f1_running", self.f1_running, on_epoch=True, on_step=False)')
    assert len(lines) == 9  # the matching keys f1 and loss are not listed
    del t, logger


def test_unverified_fails_only_when_not_allowed(tmp_path):
    """allow_unverified=False turns an unverified key into a failure that gives the reason."""
    t, logger = fit(tmp_path, Model(derived=True))
    report = assert_verified(t)  # unverified is allowed by default
    assert report.by_key()["pct"].verdict == "unverified"
    with pytest.raises(AssertionError) as failure:
        assert_verified(t, allow_unverified=False)
    message = str(failure.value)
    assert message.splitlines()[0] == "lmlogger: 1 key(s) mismatch or unverified (2 match, 0 mismatch, 1 unverified)"
    assert "  pct: unverified (tensor logged from training_step)" in message
    assert f"    reason: {report.by_key()['pct'].reason}" in message
    assert "self.f1_pct.compute()" in message
    del t, logger


def test_trainer_with_several_verified_loggers_checks_each(tmp_path):
    """Every VerifiedLogger of the trainer is audited; a mismatch in any of them fails."""
    seeded(0)
    tb = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="tb"), on_mismatch="ignore")
    csv = VerifiedLogger(CSVLogger(str(tmp_path), name="csv"), on_mismatch="ignore")
    t = trainer([tb, csv], tmp_path, max_epochs=1, enable_checkpointing=False)
    t.fit(Model(wrong=True), loader())
    with pytest.raises(AssertionError) as failure:
        assert_verified(t)
    message = str(failure.value)
    assert f"run {tb.log_dir}:" in message and f"run {csv.log_dir}:" in message
    assert message.count("  f1_running: mismatch") == 2
    del t, tb, csv


def test_wrong_targets_are_named(tmp_path):
    """A trainer without VerifiedLogger, a logger that never ran, or another object: a clear error."""
    t = trainer(CSVLogger(str(tmp_path)), tmp_path, max_epochs=1)
    with pytest.raises(ValueError, match=r"no VerifiedLogger among its loggers \(CSVLogger\)"):
        assert_verified(t)
    idle = VerifiedLogger(CSVLogger(str(tmp_path)))
    with pytest.raises(ValueError, match="has not run yet"):
        assert_verified(idle)
    with pytest.raises(TypeError, match="got int"):
        assert_verified(3)
    with pytest.raises(AuditInputError, match="no such file or directory"):
        assert_verified(str(tmp_path / "missing"))
    del idle


def test_verified_block_checks_at_exit_and_releases_the_patch(tmp_path):
    """verified(): passes a clean run, fails a mismatched one, and leaves nothing patched after the block."""
    with verified(CSVLogger(str(tmp_path), name="ok")) as logger:
        fit(tmp_path, Model(), logger=logger)
    assert isinstance(logger, CSVLogger) and logger.options.on_mismatch == "ignore"
    assert not _intercept.is_installed()  # released although `logger` is still referenced

    with pytest.raises(AssertionError, match="f1_running: mismatch"), verified(CSVLogger(str(tmp_path))) as bad:
        fit(tmp_path, Model(wrong=True), logger=bad)
    assert not _intercept.is_installed()
    del logger, bad
    gc.collect()


def test_verified_block_lets_the_users_exception_through(tmp_path):
    """An exception raised inside the block is the one the test sees, not an assertion about the run."""
    with pytest.raises(KeyError, match="from the test"), verified(CSVLogger(str(tmp_path))):
        raise KeyError("from the test")
    assert not _intercept.is_installed()


def test_public_names():
    """lmlogger.testing offers exactly these helpers."""
    import lmlogger.testing

    assert lmlogger.testing.__all__ == ["assert_verified", "verified"]
    assert all(callable(getattr(lmlogger.testing, name)) for name in lmlogger.testing.__all__)
