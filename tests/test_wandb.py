"""WandbLogger in offline mode as the wrapped logger: no network, sidecar beside the run's checkpoints."""

import gc
import os

import pytest
from helpers import KitchenSink, loader, seeded, trainer

import lmlogger
from lmlogger import VerifiedLogger

wandb = pytest.importorskip("wandb", reason="wandb is not installed: pip install wandb")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """wandb offline and silent, with every folder it writes inside tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield tmp_path
    wandb.finish()


def test_offline_wandb_run_is_verified(offline):
    """A wrapped WandbLogger(offline=True): transparent, verdicts as for any backend, references in the wandb run."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import WandbLogger

    seeded(0)
    save_dir = str(offline / "runs")
    logger = VerifiedLogger(WandbLogger(offline=True, save_dir=save_dir, project="lml"), on_mismatch="ignore")
    assert isinstance(logger, WandbLogger)
    ckpt = ModelCheckpoint(monitor="loss_epoch")
    t = trainer(logger, offline, max_epochs=2, callbacks=[ckpt], num_sanity_val_steps=0)
    t.fit(KitchenSink(val_loaders=1), loader(), loader(60, seed=1))

    run = logger.experiment
    assert run.offline and run.id == logger.version
    # the sidecar sits in the run's own folder, <save_dir>/<project>/<run id>, beside Lightning's checkpoints
    run_dir = os.path.join(save_dir, "lml", run.id)
    assert logger.sidecar_path == os.path.join(run_dir, "lmlogger", "provenance.jsonl")
    assert os.path.isfile(logger.sidecar_path)
    assert os.path.dirname(ckpt.best_model_path) == os.path.join(run_dir, "checkpoints")

    report = lmlogger.audit(save_dir)  # the folder holding the run is enough
    assert len(report.runs) == 1 and report.runs[0].complete and report.runs[0].backend == "WandbLogger"
    keys = report.by_key()
    assert keys["f1_compute"].verdict == "mismatch" and keys["f1_compute"].findings == ["running-value-averaged"]
    assert keys["prec_forward"].verdict == "mismatch" and keys["prec_forward"].findings == ["batch-values-averaged"]
    assert keys["f1_object"].verdict == "match" and keys["loss_epoch"].verdict == "match"
    assert keys["val_acc"].verdict == "match"
    assert [e.epoch for e in keys["f1_object"].epochs] == [0, 1]

    # the sidecar is among the run's own files (uploaded with the run, or by `wandb sync` when offline)
    in_run = os.path.join(run.dir, "lmlogger", "provenance.jsonl")
    assert os.path.isfile(in_run)
    with open(in_run) as a, open(logger.sidecar_path) as b:
        assert a.read() == b.read()
    # and so is the HTML report written when the run ended
    with open(os.path.join(run.dir, "lmlogger", "report.html")) as fh:
        assert "<title>lmlogger audit: " in fh.read()

    # reference metrics went through WandbLogger.log_metrics into the offline run
    summary = dict(run.summary)
    last = keys["f1_compute"].epochs[-1]
    assert summary["lmlogger/reference/f1_compute"] == pytest.approx(last.reference, rel=1e-6)
    assert summary["f1_compute"] == pytest.approx(last.logged, rel=1e-6)
    del logger, t, run
    gc.collect()
