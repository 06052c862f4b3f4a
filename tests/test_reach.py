"""Reach: code written for `pytorch_lightning` is verified like `lightning.pytorch` code, every key the logger
receives is in the audit, and a run lmlogger saw nothing of is said to be so.

Ground truth is recomputed from every prediction (the test models' `Recorder`), as in test_verification.py.
"""

import importlib.util
import os
import warnings

import pytest
import torch
from helpers import accuracy, f1, helpers_for, loader, precision
from torchmetrics.classification import BinaryF1Score

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.testing import assert_verified

pytest.importorskip("pytorch_lightning", reason="pip install pytorch-lightning")
import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

EPOCHS = 3
PL = helpers_for("pytorch_lightning")

#: Every key of the run and its verdict (`f1_forward_step`, `loss_step` are listed with their epoch keys).
VERDICTS = {
    "f1_compute": "mismatch",
    "f1_item": "mismatch",
    "f1_forward_epoch": "mismatch",
    "prec_forward": "mismatch",
    "acc_forward": "match",
    "f1_object": "match",
    "loss_epoch": "match",
    "val_acc": "match",
    "val_loss": "match",
    "val_f1_end": "match",
    "val_f1_stale": "mismatch",
    "cb_f1": "mismatch",  # a callback's forward() value, logged on_epoch: batch values averaged
    "cb_lazy": "match",  # a callback's metric made lazily in a dict, compute() logged at epoch end, then reset
    "direct_lr": "unverified",  # self.logger.log_metrics(...): not through self.log
    "lr-SGD": "unverified",  # LearningRateMonitor writes to every logger itself
}


class F1Callback(pl.Callback):
    """Owns a Metric, updates it in on_validation_batch_end and logs its forward() value with pl_module.log."""

    def __init__(self) -> None:
        self.f1 = BinaryF1Score()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        with torch.no_grad():
            p = pl_module(x).sigmoid()
        pl_module.log("cb_f1", self.f1(p, y), on_step=False, on_epoch=True)


class LazyCallback(pl.Callback):
    """Keeps its Metric in a plain dict, made at the first batch; logs compute() at epoch end and resets."""

    def __init__(self) -> None:
        self.metrics = {}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        with torch.no_grad():
            p = pl_module(x).sigmoid()
        self.metrics.setdefault("f1", BinaryF1Score()).update(p, y)

    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("cb_lazy", self.metrics["f1"].compute())
        self.metrics["f1"].reset()


class Reach(PL.KitchenSink):
    """The KitchenSink (every provenance pattern) for pytorch_lightning, plus a key sent to the logger directly."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.logger.log_metrics({"direct_lr": 0.3}, step=self.global_step)
        return loss


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reach")
    PL.seeded(0)
    model = Reach(val_loaders=1)
    tb = VerifiedLogger(TensorBoardLogger(str(tmp), name="tb"))
    csv = VerifiedLogger(CSVLogger(str(tmp), name="csv"))
    checkpoint = ModelCheckpoint(dirpath=str(tmp / "ckpt"), monitor="val_f1_stale", mode="max")
    trainer = PL.trainer(
        [tb, csv],
        tmp,
        max_epochs=EPOCHS,
        callbacks=[F1Callback(), LazyCallback(), checkpoint, LearningRateMonitor(logging_interval="epoch")],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, loader(), loader(60, seed=1))
    return model, tb, csv, checkpoint, caught


def test_pytorch_lightning_loggers_are_wrapped_transparently(run):
    """The wrapper of a pytorch_lightning logger is that logger for Lightning: isinstance and its log dir."""
    _, tb, csv, _, _ = run
    assert isinstance(tb, TensorBoardLogger) and isinstance(tb, pl.loggers.Logger)
    assert isinstance(csv, CSVLogger)
    assert os.path.isfile(os.path.join(tb.log_dir, "lmlogger", "provenance.jsonl"))
    assert os.path.isfile(os.path.join(csv.log_dir, "lmlogger", "provenance.jsonl"))


@pytest.mark.parametrize("which", ["tensorboard", "csv"])
def test_every_key_has_its_verdict_and_references_are_the_truth(run, which):
    """Both backends' audits list every key the logger received with the right verdict, and each reference is the
    epoch value recomputed from every prediction."""
    model, tb, csv, _, _ = run
    report = lmlogger.audit((tb if which == "tensorboard" else csv).log_dir)
    keys = report.by_key()
    # `direct_lr` went to `self.logger` (the TensorBoard one) only: the CSV run never received it
    expected = {k: v for k, v in VERDICTS.items() if which == "tensorboard" or k != "direct_lr"}
    assert {k: v.verdict for k, v in keys.items()} == expected
    assert report.runs[0].problems == []  # the store agrees with the sidecar
    truths = {
        "f1_compute": ("train", f1),
        "f1_forward_epoch": ("train", f1),
        "prec_forward": ("train", precision),
        "acc_forward": ("train", accuracy),
        "f1_object": ("train", f1),
        "val_acc": ("val", accuracy),
        "val_f1_end": ("val", f1),
        "val_f1_stale": ("val", f1),
        "cb_f1": ("val", f1),
        "cb_lazy": ("val", f1),
    }
    for key, (phase, fn) in truths.items():
        epochs = keys[key].epochs
        assert [e.epoch for e in epochs] == list(range(EPOCHS)), key
        for e in epochs:
            assert e.reference == pytest.approx(model.rec.true(fn, (phase, e.epoch, 0)), rel=1e-5, abs=1e-7), key


def test_callback_owned_metric_is_traced_like_a_module_attribute(run):
    """A Metric owned by a Callback, logged with pl_module.log(self.f1(p, y), on_epoch=True): metric_forward."""
    _, tb, _, _, _ = run
    key = lmlogger.audit(tb.log_dir).by_key()["cb_f1"]
    assert key.provenance == "metric_forward"
    assert key.metric_attribute == "callbacks[F1Callback].f1"
    assert key.findings == ["batch-values-averaged"]
    assert key.hook == "on_validation_batch_end"
    lazy = lmlogger.audit(tb.log_dir).by_key()["cb_lazy"]  # made lazily, kept in a plain dict
    assert (lazy.provenance, lazy.metric_attribute) == ("metric_compute", "callbacks[LazyCallback].metrics['f1']")


def test_a_key_sent_to_the_logger_directly_is_unverified_with_the_reason(run):
    """self.logger.log_metrics({...}) reaches the logger without self.log: listed, unverified, and why."""
    _, tb, _, _, _ = run
    report = lmlogger.audit(tb.log_dir)
    key = report.by_key()["direct_lr"]
    assert key.provenance == "direct"
    assert key.verdict == "unverified" and [e.logged for e in key.epochs] == [0.3] * EPOCHS
    assert "not through `self.log`" in key.reason and "Reach.training_step" in key.reason
    monitor = report.by_key()["lr-SGD"]  # a callback writing to the logger directly
    assert monitor.provenance == "direct" and monitor.verdict == "unverified"
    assert "`LearningRateMonitor." in monitor.reason and "not through `self.log`" in monitor.reason
    assert report.summary["unverified"] == 2  # the summary never reads as all-clear


def test_pytorch_lightning_model_checkpoint_decisions_are_recorded(run):
    """pl's ModelCheckpoint: each read is recorded and the saved checkpoint carries lmlogger's entry."""
    _, tb, _, checkpoint, _ = run
    (decision,) = lmlogger.audit(tb.log_dir).runs[0].decisions
    assert (decision.callback, decision.monitor, decision.reads) == ("ModelCheckpoint", "val_f1_stale", EPOCHS)
    assert decision.monitor_verdict == "mismatch"
    entry = torch.load(checkpoint.best_model_path, weights_only=True)["lmlogger"]
    assert entry["monitors"] == ["val_f1_stale"] and entry["keys"]["val_f1_stale"]["verdict"] == "mismatch"


def test_the_live_warning_points_at_the_users_fit_line(run):
    """A mismatch warns once per key, at the trainer.fit(...) line of the user's file (this one)."""
    *_, caught = run
    ours = [w for w in caught if str(w.message).startswith("lmlogger: `f1_compute` logged")]
    assert len(ours) == 1
    assert ours[0].filename == __file__
    assert 'Fix: self.log("f1_compute", self.f1_c, on_epoch=True' in str(ours[0].message)


def test_both_namespaces_run_in_one_process(run, tmp_path):
    """After the pytorch_lightning run, a lightning.pytorch run in the same process is verified too."""
    import helpers
    from lightning.pytorch.loggers import CSVLogger as LCSVLogger

    helpers.seeded(1)
    model = helpers.KitchenSink(val_loaders=1)
    logger = VerifiedLogger(LCSVLogger(str(tmp_path)), on_mismatch="ignore")
    helpers.trainer(logger, tmp_path, max_epochs=1).fit(model, loader(), loader(40, seed=2))
    keys = lmlogger.audit(logger.log_dir).by_key()
    assert {k: keys[k].verdict for k in ("f1_compute", "f1_object", "val_f1_end")} == {
        "f1_compute": "mismatch",
        "f1_object": "match",
        "val_f1_end": "match",
    }
    assert keys["f1_object"].epochs[0].reference == pytest.approx(model.rec.true(f1, ("train", 0, 0)), rel=1e-5)


def test_a_lightning_pytorch_logger_around_a_pytorch_lightning_trainer_is_verified(tmp_path):
    """Loggers of either namespace serve a Trainer of either: the wrong F1 is found, not passed silently."""
    from lightning.pytorch.loggers import CSVLogger as LCSVLogger

    PL.seeded(0)
    model = PL.KitchenSink(val_loaders=1)
    logger = VerifiedLogger(LCSVLogger(str(tmp_path)), on_mismatch="ignore")
    PL.trainer(logger, tmp_path, max_epochs=1, limit_val_batches=0).fit(model, loader())
    keys = lmlogger.audit(logger.log_dir).by_key()
    assert keys["f1_compute"].verdict == "mismatch"
    assert keys["f1_compute"].epochs[0].reference == pytest.approx(model.rec.true(f1, ("train", 0, 0)), rel=1e-5)


def test_a_run_lmlogger_saw_nothing_of_is_never_silent(tmp_path, monkeypatch):
    """Fault injected: lmlogger observes no self.log call. One warning at the fit line, one audit line, and
    assert_verified fails."""
    from lmlogger.runtime._session import Session

    monkeypatch.setattr(Session, "observe", lambda self, *args: None)
    PL.seeded(0)
    model = PL.KitchenSink(val_loaders=1)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    trainer = PL.trainer(logger, tmp_path, max_epochs=1, limit_val_batches=0)
    with pytest.warns(UserWarning, match=r"lmlogger saw none of those self.log calls") as caught:
        trainer.fit(model, loader())
    (warning,) = [w for w in caught if "saw none" in str(w.message)]
    assert warning.filename == __file__
    report = lmlogger.audit(logger.log_dir)
    run = report.runs[0]
    assert run.blind and run.problems[0].startswith("lmlogger saw none of the self.log calls of this run")
    assert {k.provenance for k in run.keys} == {"unseen"}
    assert {k.verdict for k in run.keys} == {"unverified"}
    with pytest.raises(AssertionError, match=r"saw none of the self\.log calls"):
        assert_verified(trainer)


def test_a_run_that_never_started_for_lmlogger_is_never_silent(tmp_path, monkeypatch):
    """Fault injected: lmlogger never sees the run start. The first values the logger receives warn, at the fit
    line, that nothing is verified; assert_verified refuses the run."""
    monkeypatch.setattr(VerifiedLogger, "_lml_attach", lambda self, model: None)
    PL.seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    trainer = PL.trainer(logger, tmp_path, max_epochs=1, limit_val_batches=0)
    with pytest.warns(UserWarning, match=r"never saw a trainer run start with this VerifiedLogger") as caught:
        trainer.fit(PL.KitchenSink(1), loader())
    assert [w.filename for w in caught if "never saw" in str(w.message)] == [__file__]
    with pytest.raises(ValueError, match="has not run yet"):
        assert_verified(trainer)


def test_a_logger_of_lightning_fabric_is_wrapped(tmp_path):
    """A logger the Trainer accepts that derives from lightning.fabric's Logger (as LitLogger does) is wrapped."""
    import helpers
    from lightning.fabric.loggers import Logger as FabricLogger

    class MemoryLogger(FabricLogger):
        def __init__(self, root):
            self.metrics = []
            self._root = root

        name = "memory"
        version = 0

        @property
        def log_dir(self):
            return os.path.join(self._root, "memory")

        def log_metrics(self, metrics, step=None):
            self.metrics.append((dict(metrics), step))

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        def after_save_checkpoint(self, checkpoint_callback):
            pass

    inner = MemoryLogger(str(tmp_path))
    logger = VerifiedLogger(inner, on_mismatch="ignore")
    assert isinstance(logger, MemoryLogger)
    helpers.seeded(0)
    helpers.trainer(logger, tmp_path, max_epochs=1, limit_val_batches=0).fit(helpers.KitchenSink(1), loader())
    assert any("f1_compute" in m for m, _ in inner.metrics)
    assert lmlogger.audit(logger.log_dir).by_key()["f1_compute"].verdict == "mismatch"


@pytest.mark.skipif(importlib.util.find_spec("lightning") is None, reason="needs lightning too")
def test_refusals_name_what_was_given_and_what_is_accepted():
    with pytest.raises(TypeError) as refused:
        VerifiedLogger(object())
    message = str(refused.value)
    assert "got a `builtins.object`" not in message and "got <object object" in message
    for accepted in ("lightning.pytorch.loggers.Logger", "pytorch_lightning.loggers.Logger"):
        assert accepted in message


class CLIModel(PL.KitchenSink):
    def train_dataloader(self):
        return loader()


def test_pytorch_lightning_cli_takes_a_verified_logger(tmp_path):
    """pytorch_lightning.cli.LightningCLI: `--trainer.logger=lmlogger.VerifiedLogger` around a pl CSVLogger."""
    pytest.importorskip("jsonargparse", reason="LightningCLI needs jsonargparse")
    from pytorch_lightning.cli import LightningCLI

    args = [
        "fit",
        "--trainer.max_epochs=1",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=lmlogger.VerifiedLogger",
        "--trainer.logger.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.logger.save_dir={tmp_path}",
        "--trainer.logger.on_mismatch=ignore",
    ]
    cli = LightningCLI(CLIModel, args=args, save_config_kwargs={"overwrite": True})
    logger = cli.trainer.logger
    assert isinstance(logger, VerifiedLogger) and isinstance(logger, CSVLogger)
    assert lmlogger.audit(logger.log_dir).by_key()["f1_compute"].verdict == "mismatch"


ONE_NAMESPACE = """
import sys
sys.modules[{absent!r}] = None  # as if not installed: find_spec finds nothing, import fails
import torch
from {ns} import LightningModule, Trainer
from {ns}.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryF1Score
import lmlogger
from lmlogger import VerifiedLogger

class M(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.f1 = BinaryF1Score()
    def training_step(self, batch, i):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        self.f1.update(logits.sigmoid(), y)
        self.log("f1", self.f1, on_epoch=True, on_step=False)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
y = (x[:, 0] > 0).long()
logger = VerifiedLogger(CSVLogger(sys.argv[1]))
Trainer(max_epochs=1, logger=logger, enable_progress_bar=False, enable_checkpointing=False).fit(
    M(), DataLoader(TensorDataset(x, y), batch_size=8))
assert sys.modules[{absent!r}] is None, "lmlogger imported the absent namespace"
print("VERDICT", lmlogger.audit(logger.log_dir).by_key()["f1"].verdict)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ns", "absent"), [("lightning.pytorch", "pytorch_lightning"), ("pytorch_lightning", "lightning")]
)
def test_either_namespace_alone_is_verified(tmp_path, ns, absent):
    """With only one namespace installed, lmlogger never imports the other and verifies the run."""
    import subprocess
    import sys

    script = tmp_path / "one.py"
    script.write_text(ONE_NAMESPACE.format(ns=ns, absent=absent))
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "VERDICT match" in done.stdout


@pytest.mark.slow
def test_an_installed_namespace_the_user_does_not_import_stays_unimported(tmp_path):
    """lmlogger imports pytorch_lightning only when the user's code does (importing it reroutes Lightning's shared
    rank-zero log lines to the `pytorch_lightning` logger)."""
    import subprocess
    import sys

    code = (
        "import sys, lightning.pytorch\n"
        "from lightning.pytorch.loggers import CSVLogger\n"
        "from lmlogger import VerifiedLogger\n"
        f"VerifiedLogger(CSVLogger({str(tmp_path)!r}))\n"
        "print('LOADED', 'pytorch_lightning' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED False" in done.stdout
