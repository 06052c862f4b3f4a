"""VerifiedLogger is a drop-in: same values, same dirs, same checkpoints, isinstance holds."""

import csv
import glob
import importlib
import os
import pickle

import pytest
from helpers import KitchenSink, helpers_for, loader, loggers_of, seeded, trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

from lmlogger import VerifiedLogger
from lmlogger.runtime import _intercept
from lmlogger.runtime._windows import WindowCallback

BACKENDS = {"tensorboard": TensorBoardLogger, "csv": CSVLogger}


def tb_scalars(run_dir):
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in EventFileLoader(path).Load():
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name != "scalars" and not v.HasField("simple_value"):
                    continue
                value = v.simple_value if v.HasField("simple_value") else tensor_util.make_ndarray(v.tensor).item()
                out.setdefault(v.tag, []).append((event.step, float(value)))
    return out


def csv_scalars(run_dir):
    out = {}
    with open(os.path.join(run_dir, "metrics.csv")) as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                if k != "step" and v != "":
                    out.setdefault(k, []).append((int(row["step"]), float(v)))
    return out


def scalars(backend, run_dir):
    return tb_scalars(run_dir) if backend == "tensorboard" else csv_scalars(run_dir)


def fit(tmp_path, backend, wrap, namespace="lightning.pytorch"):
    h, loggers = helpers_for(namespace), loggers_of(namespace)
    h.seeded(0)
    logger = getattr(loggers, BACKENDS[backend].__name__)(str(tmp_path), name="exp")
    if wrap:
        logger = VerifiedLogger(logger, on_mismatch="ignore")
    ckpt = importlib.import_module(f"{namespace}.callbacks").ModelCheckpoint(monitor="loss_epoch", save_top_k=1)
    t = h.trainer(logger, tmp_path, max_epochs=2, callbacks=[ckpt], enable_checkpointing=True)
    t.fit(h.KitchenSink(), loader(), [loader(60, seed=1), loader(44, seed=2)])
    return t, logger, ckpt


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_wrapped_run_logs_identical_values_dirs_and_checkpoints(tmp_path, backend, namespace):
    """Every user scalar, the log dir and the checkpoint path equal those of an unwrapped run (the logger, Trainer
    and module of each Lightning namespace)."""
    plain_t, _, plain_ckpt = fit(tmp_path / "plain", backend, wrap=False, namespace=namespace)
    wrapped_t, wrapped_logger, wrapped_ckpt = fit(tmp_path / "wrapped", backend, wrap=True, namespace=namespace)

    loggers = loggers_of(namespace)
    assert isinstance(wrapped_logger, getattr(loggers, BACKENDS[backend].__name__))
    assert isinstance(wrapped_logger, loggers.Logger)
    rel = os.path.relpath
    assert rel(wrapped_t.log_dir, tmp_path / "wrapped") == rel(plain_t.log_dir, tmp_path / "plain")
    assert wrapped_t.log_dir == wrapped_logger.wrapped.log_dir
    assert rel(wrapped_ckpt.best_model_path, tmp_path / "wrapped") == rel(
        plain_ckpt.best_model_path, tmp_path / "plain"
    )
    assert os.path.isfile(wrapped_ckpt.best_model_path)
    for attr in ("name", "version", "save_dir", "log_dir", "root_dir"):
        assert getattr(wrapped_logger, attr) == getattr(wrapped_logger.wrapped, attr)
    assert wrapped_logger.experiment is wrapped_logger.wrapped.experiment

    plain = scalars(backend, plain_t.log_dir)
    wrapped = scalars(backend, wrapped_t.log_dir)
    prefix = "lmlogger/reference/"
    added = {k for k in wrapped if k.startswith(prefix)}
    assert added, "reference metrics were written beside the user's"
    user = {k: v for k, v in wrapped.items() if k not in added}
    assert set(user) == set(plain)
    for key in plain:
        assert [s for s, _ in user[key]] == [s for s, _ in plain[key]], key
        assert [v for _, v in user[key]] == pytest.approx([v for _, v in plain[key]], rel=1e-6, abs=1e-7), key
    # each reference sits at the step of the epoch value it checks
    for key in added:
        logged_steps = {s for s, _ in wrapped[key[len(prefix) :]]}
        assert {s for s, _ in wrapped[key]} <= logged_steps
    assert os.path.isfile(os.path.join(wrapped_t.log_dir, "lmlogger", "provenance.jsonl"))


def test_pickle_round_trip_keeps_wrapping(tmp_path):
    """A VerifiedLogger pickles (ddp_spawn needs it) and comes back wrapped, with its options."""
    logger = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="p"), rtol=0.01, on_mismatch="raise")
    _ = logger.experiment
    clone = pickle.loads(pickle.dumps(logger))
    assert isinstance(clone, VerifiedLogger) and isinstance(clone, TensorBoardLogger)
    assert clone.options == logger.options
    assert clone.log_dir == logger.log_dir
    del logger, clone


def test_wrong_arguments_are_named():
    """Each refusal names what it got and what it accepts."""
    with pytest.raises(TypeError, match=r"subclass of `lightning\.pytorch\.loggers\.Logger`.*got 'logs' \(a str\)"):
        VerifiedLogger("logs")
    with pytest.raises(TypeError, match=r"takes a logger instance, got the class .*TensorBoardLogger"):
        VerifiedLogger(TensorBoardLogger)
    tb = TensorBoardLogger("unused")
    with pytest.raises(ValueError, match="on_mismatch='loud'"):
        VerifiedLogger(tb, on_mismatch="loud")
    with pytest.raises(ValueError, match="already a VerifiedLogger"):
        VerifiedLogger(VerifiedLogger(tb))


def test_attribute_typos_still_raise(tmp_path):
    logger = VerifiedLogger(CSVLogger(str(tmp_path)))
    with pytest.raises(AttributeError):
        _ = logger.no_such_attribute
    del logger


def test_patch_is_removed_after_the_run_and_plain_trainer_is_unaffected(tmp_path):
    """After a wrapped run nothing stays patched; a plain Trainer in the same process logs as usual."""
    from lightning.pytorch import LightningModule

    lightning_log = LightningModule.log
    _, logger, _ = fit(tmp_path / "a", "csv", wrap=True)
    del logger
    import gc

    gc.collect()
    assert not _intercept.is_installed()
    assert LightningModule.log is lightning_log
    t, _, _ = fit(tmp_path / "b", "csv", wrap=False)
    assert not os.path.exists(os.path.join(t.log_dir, "lmlogger"))
    assert not any(isinstance(cb, WindowCallback) for cb in t.callbacks)


def test_multiple_loggers_in_a_list(tmp_path):
    """Trainer(logger=[VerifiedLogger(tb), csv]) works; the CSV logger receives no lmlogger metrics."""
    seeded(0)
    tb = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="tb"), on_mismatch="ignore")
    plain = CSVLogger(str(tmp_path), name="csv")
    t = trainer([tb, plain], tmp_path, max_epochs=1)
    t.fit(KitchenSink(), loader(), [loader(60, seed=1), loader(44, seed=2)])
    assert os.path.isfile(os.path.join(tb.log_dir, "lmlogger", "provenance.jsonl"))
    assert not any(k.startswith("lmlogger/") for k in csv_scalars(plain.log_dir))
    assert "lmlogger/reference/f1_object" in tb_scalars(tb.log_dir)
    del tb


def test_seam_is_idempotent_thread_safe_and_restorable():
    """Many threads acquiring and releasing the seam leave exactly Lightning's own method behind."""
    import threading

    from lightning.pytorch import LightningModule

    original = LightningModule.log
    assert not _intercept.is_installed()

    def hold():
        for _ in range(200):
            _intercept.acquire()
            assert _intercept.is_installed()
            assert LightningModule.log.__wrapped__ is original  # never wrapped twice
            _intercept.release()

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert LightningModule.log is original
    _intercept.release()  # an extra release is harmless
    assert LightningModule.log is original


def test_plain_trainer_beside_a_live_verified_logger_is_untouched(tmp_path):
    """While another run holds the seam, a trainer without a VerifiedLogger gets no session, no files."""
    live = VerifiedLogger(CSVLogger(str(tmp_path / "live")))
    assert not _intercept.is_installed()  # a VerifiedLogger holds the seam only while its run is in progress
    _intercept.acquire()  # as a run of `live` in another thread would
    try:
        t, _, _ = fit(tmp_path / "plain", "csv", wrap=False)
    finally:
        _intercept.release()
    assert _intercept.session_for(t) is None
    assert not os.path.exists(os.path.join(t.log_dir, "lmlogger"))
    assert not any(isinstance(cb, WindowCallback) for cb in t.callbacks)
    del live


def test_two_verified_loggers_on_one_trainer(tmp_path):
    """Each VerifiedLogger in the list gets its own complete sidecar with the same verdicts."""
    seeded(0)
    tb = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="tb"), on_mismatch="ignore")
    cs = VerifiedLogger(CSVLogger(str(tmp_path), name="csv"), on_mismatch="ignore")
    trainer([tb, cs], tmp_path, max_epochs=2, limit_val_batches=0).fit(KitchenSink(), loader())
    from lmlogger import audit

    a, b = audit(tb.log_dir), audit(cs.log_dir)
    assert a.runs[0].complete and b.runs[0].complete
    assert {k: v.verdict for k, v in a.by_key().items()} == {k: v.verdict for k, v in b.by_key().items()}
    assert a.by_key()["f1_compute"].verdict == "mismatch"
    assert b.runs[0].problems == [] and a.runs[0].problems == []
    del tb, cs
