"""What a user sees when something is wrong: warnings at their own line, `lmlogger.MismatchError` raised at the
end of the epoch that mismatched, and the renamed `reference_prefix` option."""

import csv
import os
import pickle
import traceback
import warnings

import pytest
from helpers import KitchenSink, loader, seeded, trainer
from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger

import lmlogger
from lmlogger import MismatchError, VerifiedLogger


class Epochs(Callback):
    """Which training epochs started and ended, as the user's own callback sees them."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.ended: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.started.append(trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module):
        self.ended.append(trainer.current_epoch)


def test_mismatch_warning_points_at_the_users_fit_line(tmp_path):
    """The warning's location is this file's `t.fit(...)` line, not a line inside lmlogger or Lightning."""
    seeded(0)
    t = trainer(VerifiedLogger(CSVLogger(str(tmp_path))), tmp_path, max_epochs=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit_line = _lineno() + 1
        t.fit(KitchenSink(val_loaders=1), loader(), loader(60, seed=1))
    ours = [w for w in record if str(w.message).startswith("lmlogger: `")]
    assert {str(w.message).split("`")[1] for w in ours} >= {"f1_compute", "f1_item", "f1_forward_epoch"}
    for w in ours:
        assert (w.filename, w.lineno) == (__file__, fit_line), str(w.message)
        assert w.category is UserWarning
    message = next(str(w.message) for w in ours if "`f1_compute`" in str(w.message))
    assert "% off)" in message and "Fix: self.log(" in message  # the size of the gap, then the fix


def _lineno() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_mismatch_error_is_lmlogger_mismatch_error():
    """Tracebacks say `lmlogger.MismatchError`, and the error pickles (DDP spawn sends it between processes)."""
    assert MismatchError.__module__ == "lmlogger" and lmlogger.MismatchError is MismatchError
    line = traceback.format_exception_only(MismatchError("lmlogger: `f1` ..."))[-1]
    assert line.startswith("lmlogger.MismatchError: lmlogger: `f1`")
    assert isinstance(pickle.loads(pickle.dumps(MismatchError("x"))), MismatchError)


def test_raise_comes_at_the_end_of_the_mismatched_epoch(tmp_path):
    """on_mismatch="raise": epoch 0's mismatch stops the run before epoch 1 starts, with epoch 0's values already
    in the logger, and names epoch 0."""
    seeded(0)
    epochs = Epochs()
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="raise")
    t = trainer(logger, tmp_path, max_epochs=3, callbacks=[epochs], num_sanity_val_steps=0)
    with pytest.raises(MismatchError) as failure:
        t.fit(KitchenSink(val_loaders=1), loader(), loader(60, seed=1))
    assert epochs.started == [0] and epochs.ended == [0]
    assert t.current_epoch == 0  # raised while epoch 0 closes, not at the start of epoch 1
    assert "`f1_compute` logged" in str(failure.value) and "for train epoch 0" in str(failure.value)
    with open(os.path.join(logger.log_dir, "metrics.csv"), newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("f1_compute")]
    key = lmlogger.audit(logger.log_dir).by_key()["f1_compute"]
    assert [float(r["f1_compute"]) for r in rows] == pytest.approx([key.epochs[0].logged], rel=1e-6)
    del logger


def test_raise_waits_until_every_logger_has_the_epoch(tmp_path):
    """With a plain CSVLogger after the VerifiedLogger, that logger still gets epoch 0's values; epoch 1 never
    starts."""
    seeded(0)
    epochs = Epochs()
    plain = CSVLogger(str(tmp_path), name="plain")
    logger = VerifiedLogger(CSVLogger(str(tmp_path), name="verified"), on_mismatch="raise")
    t = trainer([logger, plain], tmp_path, max_epochs=3, callbacks=[epochs], num_sanity_val_steps=0)
    with pytest.raises(MismatchError):
        t.fit(KitchenSink(val_loaders=1), loader(), loader(60, seed=1))
    assert epochs.started == [0]
    with open(os.path.join(plain.log_dir, "metrics.csv"), newline="") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh) if r.get("f1_compute")] == ["0"]
    del logger


def test_reference_prefix_and_its_deprecated_old_name(tmp_path):
    """`reference_prefix=` names the reference metrics; `prefix=` still works, with a DeprecationWarning at the
    user's line; anything else is a TypeError naming it."""
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), reference_prefix="ref/")
    assert logger.options.reference_prefix == "ref/"
    with pytest.warns(DeprecationWarning, match=r"use VerifiedLogger\(reference_prefix=\.\.\.\)") as record:
        old = VerifiedLogger(CSVLogger(str(tmp_path), name="old"), prefix="old/")
    assert record[0].filename == __file__
    assert old.options.reference_prefix == "old/"
    with pytest.raises(TypeError, match="give `reference_prefix` alone"):
        VerifiedLogger(CSVLogger(str(tmp_path)), prefix="a/", reference_prefix="b/")
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*: prefx"):
        VerifiedLogger(CSVLogger(str(tmp_path)), prefx="a/")
    seeded(0)
    trainer(old, tmp_path, max_epochs=1, num_sanity_val_steps=0).fit(KitchenSink(val_loaders=1), loader())
    with open(os.path.join(old.log_dir, "metrics.csv"), newline="") as fh:
        header = next(csv.reader(fh))
    assert "old/f1_compute" in header and "lmlogger/reference/f1_compute" not in header
    del logger, old
