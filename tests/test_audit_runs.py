"""The audit on real runs that used to fool it: CI jobs with relative paths, a damaged line then a resume,
a killed run resumed with ``ckpt_path=``, repeated fits, and two VerifiedLoggers on one log dir."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import KitchenSink, loader, seeded, trainer
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torchmetrics.classification import BinaryF1Score

import lmlogger
from lmlogger import VerifiedLogger

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "lmlogger", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": ROOT},
    )


class Clean(LightningModule):
    """Logs only right patterns: a metric object and the loss (every verdict is match)."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.f1 = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        self.f1.update(logits.sigmoid().detach(), y)
        self.log("f1", self.f1, on_step=False, on_epoch=True)
        self.log("loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


def epochs_of(report, key):
    return [(e.stage, e.epoch) for e in report.by_key()[key].epochs]


def test_two_ci_jobs_with_relative_paths_are_two_runs(tmp_path, monkeypatch):
    """Two jobs that both used TensorBoardLogger("logs"): the folder audit lists both and the mismatching
    one sets the exit code (they used to count as one run, and the audit exited 0)."""
    for job, module in (("job_a", Clean), ("job_b", KitchenSink)):
        (tmp_path / "ci" / job).mkdir(parents=True)
        monkeypatch.chdir(tmp_path / "ci" / job)
        seeded(0)
        logger = VerifiedLogger(TensorBoardLogger("logs"), on_mismatch="ignore")
        trainer(logger, ".", max_epochs=1, limit_val_batches=0).fit(
            module() if module is Clean else module(val_loaders=1), loader()
        )
    monkeypatch.chdir(tmp_path)
    headers = [
        json.loads(
            (tmp_path / "ci" / job / "logs/lightning_logs/version_0/lmlogger/provenance.jsonl").open().readline()
        )
        for job in ("job_a", "job_b")
    ]
    assert headers[0]["logger"] == headers[1]["logger"] and headers[0]["run"] == headers[1]["run"]  # same identity
    proc = cli("audit", "ci", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    sources = sorted(run["source"].split(os.sep)[1] for run in data["runs"])
    assert sources == ["job_a", "job_b"]
    by_job = {run["source"].split(os.sep)[1]: run for run in data["runs"]}
    assert by_job["job_a"]["summary"]["mismatch"] == 0
    assert by_job["job_b"]["summary"]["mismatch"] == 4


def test_a_copy_or_prefix_of_a_sidecar_is_the_same_run(tmp_path):
    """A tracker's copy of a sidecar (complete, or taken before the run ended) is audited once, the fuller kept."""
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path / "runs")), on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=2, limit_val_batches=0).fit(Clean(), loader())
    with open(logger.sidecar_path) as fh:
        text = fh.read()
    lines = text.splitlines(keepends=True)
    copy = tmp_path / "runs" / "copy" / "lmlogger" / "provenance.jsonl"
    copy.parent.mkdir(parents=True)
    copy.write_text("".join(lines[:4]))  # the copy as uploaded after the first epoch
    report = lmlogger.audit(tmp_path / "runs")
    assert len(report.runs) == 1 and report.runs[0].complete
    assert epochs_of(report, "f1") == [(1, 0), (1, 1)]


def test_damaged_line_then_resume_keeps_every_epoch(tmp_path):
    """A line cut short (disk full) and a later resume into the same dir: the writer ends the partial line,
    the reader skips it, says so, and audits every other epoch."""
    seeded(0)
    logger = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="run", version=0), on_mismatch="ignore")
    t = trainer(logger, tmp_path, max_epochs=2, limit_val_batches=0)
    t.fit(KitchenSink(val_loaders=1), loader())
    ckpt = t.checkpoint_callback.best_model_path
    path = logger.sidecar_path
    with open(path) as fh:
        lines = fh.read().splitlines(keepends=True)
    damaged = len(lines) - 1  # the line before the close record: a verification record of epoch 1
    lost = json.loads(lines[damaged - 1])
    assert lost["type"] == "verification" and lost["epoch"] == 1
    with open(path, "w") as fh:  # disk full while writing it: half of it on disk, no close record
        fh.write("".join(lines[: damaged - 1]) + lines[damaged - 1][:40])
    seeded(0)
    resumed = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="run", version=0), on_mismatch="ignore")
    trainer(resumed, tmp_path, max_epochs=3, limit_val_batches=0).fit(
        KitchenSink(val_loaders=1), loader(), ckpt_path=ckpt
    )
    proc = cli("audit", tmp_path / "run" / "version_0", "--format", "json")
    assert proc.returncode == 1, proc.stderr  # KitchenSink's mismatches, not a rejected file
    run = json.loads(proc.stdout)["runs"][0]
    assert run["complete"] is True
    damaged_notes = [p for p in run["problems"] if p.startswith("sidecar line")]
    assert len(damaged_notes) == 1 and damaged_notes[0].startswith(f"sidecar line {damaged} is not complete JSON")
    assert damaged_notes[0].endswith(": skipped")
    for key in run["keys"]:
        if key["epochs"]:
            expected = [(1, 0), (2, 2)] if key["key"] == lost["key"] else [(1, 0), (1, 1), (2, 2)]
            assert [(e["stage"], e["epoch"]) for e in key["epochs"]] == expected, key["key"]
    assert run["stages"] == ["fit", "fit"]
    assert [s["label"] for s in run["stage_details"]] == ["fit #1", "fit #2 (resumed from epoch 2)"]
    assert [s["closed"] for s in run["stage_details"]] == [False, True]


KILLED = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    from helpers import KitchenSink, loader, quiet, seeded, trainer
    from lightning.pytorch import Callback
    from lightning.pytorch.loggers import TensorBoardLogger
    from lmlogger import VerifiedLogger
    quiet()

    class Kill(Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 2:
                os._exit(9)  # killed: no close record, no cleanup

    seeded(0)
    logger = VerifiedLogger(TensorBoardLogger({root!r}, name="run", version=0), on_mismatch="ignore")
    trainer(logger, {root!r}, max_epochs=4, limit_val_batches=0, callbacks=[Kill()]).fit(
        KitchenSink(val_loaders=1), loader()
    )
    """
)


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A run killed at the start of epoch 2, then resumed with ckpt_path= into the same version dir."""
    root = tmp_path_factory.mktemp("killed")
    proc = subprocess.run(
        [sys.executable, "-c", KILLED.format(tests=TESTS, root=str(root))],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 9, proc.stderr[-3000:]
    run_dir = root / "run" / "version_0"
    killed = lmlogger.audit(run_dir).runs[0]
    (ckpt,) = (run_dir / "checkpoints").iterdir()
    seeded(0)
    # TensorBoard keeps the killed run's event files (CSVLogger would delete its metrics.csv, and the audit
    # would rightly say the store lost epochs 0 and 1)
    logger = VerifiedLogger(TensorBoardLogger(str(root), name="run", version=0), on_mismatch="ignore")
    trainer(logger, root, max_epochs=4, limit_val_batches=0).fit(KitchenSink(val_loaders=1), loader(), ckpt_path=ckpt)
    return run_dir, killed


def test_killed_run_is_incomplete(resumed_run):
    _, killed = resumed_run
    assert killed.complete is False and killed.status is None
    assert [s.label for s in killed.stage_details] == ["fit"]


def test_resumed_run_is_complete_with_its_stages(resumed_run):
    """Resumed with ckpt_path=: complete once the last stage closed; each epoch once, tagged by its stage."""
    run_dir, _ = resumed_run
    report = lmlogger.audit(run_dir)
    run = report.runs[0]
    assert run.complete is True and run.status == "success"
    assert [(s.label, s.closed, s.resumed_from_epoch) for s in run.stage_details] == [
        ("fit #1", False, None),
        ("fit #2 (resumed from epoch 2)", True, 2),
    ]
    # the stage starts (setup) before Lightning selects the checkpoint: the epoch it goes on from tells the resume
    assert epochs_of(report, "loss_epoch") == [(1, 0), (1, 1), (2, 2), (2, 3)]
    assert run.problems == []  # the event files hold every epoch of both stages
    table = report.to_table()
    assert "stages: fit #1, fit #2 (resumed from epoch 2)" in table and "complete" in table


def test_repeated_fits_are_told_apart(tmp_path):
    """Two fit calls with one logger: epochs 0,1 of fit #1 and 0,1 of fit #2, no false store-check line."""
    for cls in (TensorBoardLogger, CSVLogger):
        seeded(0)
        logger = VerifiedLogger(cls(str(tmp_path), name=cls.__name__), on_mismatch="ignore")
        model = KitchenSink(val_loaders=1)
        for _ in range(2):
            trainer(logger, tmp_path, max_epochs=2, limit_val_batches=0).fit(model, loader())
        report = logger.report()
        run = report.runs[0]
        assert [s.label for s in run.stage_details] == ["fit #1", "fit #2"], cls
        assert run.complete is True
        assert epochs_of(report, "f1_object") == [(1, 0), (1, 1), (2, 0), (2, 1)]
        assert run.problems == [], (cls, run.problems)
        assert "(fit #" in report.to_table()  # the worst epoch says which fit


def test_two_verified_loggers_on_one_dir_each_get_their_own_run(tmp_path):
    """TensorBoard and CSV with one name and version: a warning at start; each run audited once, against its
    own backend."""
    seeded(0)
    tb = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="x", version=0), on_mismatch="ignore")
    csv = VerifiedLogger(CSVLogger(str(tmp_path), name="x", version=0), on_mismatch="ignore")
    with pytest.warns(UserWarning, match=r"TensorBoardLogger and CSVLogger write to one log dir"):
        trainer([tb, csv], tmp_path, max_epochs=2, limit_val_batches=0).fit(KitchenSink(val_loaders=1), loader())
    assert os.path.basename(tb.sidecar_path) == "provenance.jsonl"
    assert os.path.basename(csv.sidecar_path) == "provenance-csvlogger.jsonl"
    report = lmlogger.audit(tmp_path / "x" / "version_0")
    assert sorted(run.backend for run in report.runs) == ["csv", "tensorboard"]
    for run in report.runs:
        f1 = next(k for k in run.keys if k.key == "f1_object")
        assert [e.epoch for e in f1.epochs] == [0, 1]
        assert run.problems == [] and run.complete
    assert report.runs[0].counts() == report.runs[1].counts()  # the same epochs, each checked once per logger
    assert report.summary["mismatch"] == 2 * 4
    assert tb.report().runs[0].backend == "tensorboard" and csv.report().runs[0].backend == "csv"
