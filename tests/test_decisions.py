"""Decisions: what ModelCheckpoint, EarlyStopping and ReduceLROnPlateau did with a wrongly logged key, replayed on
the references, in the audit, TensorBoard, MLflow and the checkpoints themselves.

The validation predictions are built per epoch so that the logged `val_f1` (a mean of per-batch F1 values) and
the true epoch F1 rank the epochs differently; the truth is recomputed from the recorded predictions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from helpers import Recorder, f1, seeded, trainer
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryF1Score

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.cli import main as cli_main

# One validation epoch = two batches of 10 samples, each given as (TP, FP, FN, TN).
PATTERNS = {
    "Y": ((4, 6, 0, 0), (4, 6, 0, 0)),  # batch F1 0.444, 0.444 -> logged 0.444; true 0.444
    "X": ((1, 0, 0, 9), (1, 0, 9, 0)),  # batch F1 1.0, 0.182   -> logged 0.591; true 0.308
    "W": ((3, 0, 0, 7), (0, 0, 1, 9)),  # batch F1 1.0, 0.0     -> logged 0.500; true 0.857
}
SCHEDULE = "YXWYX"


def batch(pattern: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    tp, fp, fn, tn = pattern
    preds = torch.tensor([0.9] * tp + [0.9] * fp + [0.1] * fn + [0.1] * tn)
    target = torch.tensor([1] * tp + [0] * fp + [1] * fn + [0] * tn)
    return preds, target


class Decided(LightningModule):
    """Logs `val_f1` wrongly (forward() batch values averaged) and `val_f1_obj` rightly (the metric object)."""

    def __init__(self, scheduler: bool = True) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.rec = Recorder()
        self.val_f1_fwd = BinaryF1Score()
        self.val_f1_obj = BinaryF1Score()
        self.scheduler = scheduler

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x).squeeze(-1), y)

    def validation_step(self, batch, batch_idx):
        epoch = 0 if self.trainer.sanity_checking else self.current_epoch
        preds, target = globals()["batch"](PATTERNS[SCHEDULE[epoch]][batch_idx])
        if not self.trainer.sanity_checking:
            self.rec.add(("val", epoch, 0), preds, target)
        self.log("val_f1", self.val_f1_fwd(preds, target), batch_size=10)  # wrong: per-batch values averaged
        self.val_f1_obj.update(preds, target)
        self.log("val_f1_obj", self.val_f1_obj, batch_size=10)  # right

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        if not self.scheduler:
            return optimizer
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=0, factor=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val_f1"}}


def loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.randn(20, 4, generator=g), torch.randn(20, generator=g))
    val = TensorDataset(torch.zeros(20, 1))
    return DataLoader(train, batch_size=10), DataLoader(val, batch_size=10)


def epoch_of(path: str) -> int:
    return int(re.search(r"epoch=(\d+)", os.path.basename(path)).group(1))


def true_f1(module: Decided) -> dict[int, float]:
    epochs = sorted({k[1] for k in module.rec.preds})
    return {e: module.rec.true(f1, ("val", e, 0)) for e in epochs}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One fit: three ModelCheckpoints (max top-1, min top-2, every 2nd epoch), two EarlyStoppings, a plateau LR
    scheduler; EarlyStopping on `val_f1` stops training at epoch 2 (so epochs 0, 1, 2 run)."""
    root = tmp_path_factory.mktemp("decisions")
    seeded(0)
    module = Decided()
    callbacks = [
        ModelCheckpoint(dirpath=root / "best", monitor="val_f1", mode="max", filename="{epoch}-{step}"),
        ModelCheckpoint(dirpath=root / "low", monitor="val_f1", mode="min", save_top_k=2, filename="{epoch}-{step}"),
        ModelCheckpoint(dirpath=root / "even", monitor="val_f1", mode="max", every_n_epochs=2, filename="{epoch}"),
        ModelCheckpoint(dirpath=root / "obj", monitor="val_f1_obj", mode="max", filename="{epoch}-{step}"),
        EarlyStopping(monitor="val_f1", mode="max", patience=1),
        EarlyStopping(monitor="val_f1_obj", mode="max", patience=3, min_delta=0.01, check_on_train_epoch_end=False),
    ]
    logger = VerifiedLogger(TensorBoardLogger(str(root), name="tb"))
    tr = trainer(logger, root, max_epochs=5, callbacks=callbacks, enable_checkpointing=True)
    train, val = loaders()
    with pytest.warns(UserWarning, match="ModelCheckpoint kept epoch 1 by `val_f1`"):
        tr.fit(module, train, val)
    report = lmlogger.audit(logger.log_dir)
    lr = tr.optimizers[0].param_groups[0]["lr"]
    del logger
    return {"root": root, "module": module, "callbacks": callbacks, "report": report, "lr": lr, "trainer": tr}


def decision(run, callback):
    return next(d for d in run["report"].runs[0].to_dict()["decisions"] if d["callback"] == callback)


def test_the_data_make_logged_and_true_best_epochs_differ(run):
    """Ground truth from the recorded predictions: the true best epoch is 2, the logged values pick epoch 1."""
    truth = true_f1(run["module"])
    assert sorted(truth) == [0, 1, 2]
    assert max(truth, key=truth.get) == 2
    logged = {e.epoch: e.logged for e in run["report"].by_key()["val_f1"].epochs}
    assert max(logged, key=logged.get) == 1


def test_model_checkpoint_kept_the_logged_best_and_the_reference_disagrees(run):
    """by_logged is the epoch of the real best_model_path; by_reference is the true best epoch."""
    best = run["callbacks"][0]
    truth = true_f1(run["module"])
    d = decision(run, "ModelCheckpoint")
    assert d["monitor"] == "val_f1" and d["mode"] == "max"
    assert d["by_logged"]["epoch"] == epoch_of(best.best_model_path) == 1
    assert d["by_logged"]["value"] == pytest.approx(float(best.best_model_score))
    assert d["by_reference"]["epoch"] == max(truth, key=truth.get) == 2
    assert d["by_reference"]["value"] == pytest.approx(truth[2], abs=1e-6)
    assert d["agree"] is False and d["monitor_verdict"] == "mismatch"
    assert d["observed"]["epoch"] == 1
    assert (
        d["message"]
        == "ModelCheckpoint kept epoch 1 by `val_f1` = 0.591 (logged); by the reference, epoch 2 is best (0.857)"
    )


def test_top_k_in_min_mode(run):
    """save_top_k=2, mode=min: the two kept checkpoints by the logged values are the real files; by the reference
    another pair is kept and another epoch is best."""
    low = run["callbacks"][1]
    truth = true_f1(run["module"])
    d = decision(run, "ModelCheckpoint-2")
    assert sorted(p["epoch"] for p in d["kept_by_logged"]) == sorted(epoch_of(p) for p in low.best_k_models)
    assert d["by_logged"]["epoch"] == epoch_of(low.best_model_path)
    ranked = sorted(truth, key=lambda e: (truth[e], e))
    assert d["by_reference"]["epoch"] == ranked[0]
    assert sorted(p["epoch"] for p in d["kept_by_reference"]) == sorted(ranked[:2])
    assert d["agree"] is False


def test_every_n_epochs_reads_only_its_epochs(run):
    even = run["callbacks"][2]
    d = decision(run, "ModelCheckpoint-3")
    assert d["reads"] == 1 and d["by_logged"]["epoch"] == epoch_of(even.best_model_path) == 1
    assert d["config"]["every_n_epochs"] == 2


def test_the_metric_object_control_agrees(run):
    """The same callbacks on the rightly logged `val_f1_obj` keep the true best epoch, and agree."""
    truth = true_f1(run["module"])
    d = decision(run, "ModelCheckpoint-4")
    assert d["agree"] is True and d["monitor_verdict"] == "match"
    assert d["by_logged"]["epoch"] == d["by_reference"]["epoch"] == max(truth, key=truth.get)
    assert epoch_of(run["callbacks"][3].best_model_path) == 2
    es = decision(run, "EarlyStopping-2")
    assert es["agree"] is True and es["by_logged"] is None and es["by_reference"] is None
    assert es["config"]["check_on_train_epoch_end"] is False and es["config"]["min_delta"] == 0.01


def test_early_stopping_stop_epoch_by_logged_and_by_reference(run):
    """Logged: improves at 1, worse at 2 -> stops at 2 (the real stop). Reference: worse at 1 -> would stop at 1."""
    es = run["callbacks"][4]
    d = decision(run, "EarlyStopping")
    assert d["by_logged"]["epoch"] == es.stopped_epoch == 2
    assert d["by_reference"]["epoch"] == 1
    assert d["agree"] is False
    assert d["config"]["check_on_train_epoch_end"] is True and d["config"]["patience"] == 1


def test_plateau_scheduler_drops(run):
    """ReduceLROnPlateau(mode=max, patience=0) on `val_f1`: the LR dropped after epoch 2 by the logged values
    (the real LR halved once); by the reference it would have dropped after epoch 1 instead."""
    d = decision(run, "ReduceLROnPlateau")
    assert [p["epoch"] for p in d["by_logged"]["drops"]] == [2] == d["observed"]["drops"]
    assert [p["epoch"] for p in d["by_reference"]["drops"]] == [1]
    assert run["lr"] == pytest.approx(0.05)
    assert d["agree"] is False


def test_the_monitored_key_gets_decision_on_mismatch(run):
    keys = run["report"].by_key()
    assert "decision-on-mismatch" in keys["val_f1"].findings
    marked = [e.epoch for e in keys["val_f1"].epochs if "decision-on-mismatch" in e.findings]
    assert marked == [1, 2]  # epoch 0 matched (both batches alike)
    assert "decision-on-mismatch" not in keys["val_f1_obj"].findings


# -- where users look ------------------------------------------------------------------------------------
def test_tensorboard_text_shows_the_decisions(run):
    """Read back with tensorboard's reader: the `lmlogger/decisions` text holds each callback's sentence."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    texts = []
    for path in sorted((run["root"] / "tb" / "version_0").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.tag.startswith("lmlogger/decisions"):
                    texts.append(tensor_util.make_ndarray(v.tensor).item().decode())
    assert texts
    last = texts[-1]
    assert "| ModelCheckpoint | val_f1 | **disagree** | mismatch |" in last
    assert "by the reference, epoch 2 is best (0.857)" in last
    assert "| ModelCheckpoint-4 | val_f1_obj | agree | match |" in last


def test_audit_table_and_markdown_have_a_decisions_section(run):
    from lmlogger.audit._render import to_markdown, to_table

    table = to_table(run["report"])
    assert "decisions (" in table
    assert (
        "[disagree] ModelCheckpoint kept epoch 1 by `val_f1` = 0.591 (logged); by the reference, epoch 2 is best "
        "(0.857) (monitor verdict: mismatch)" in table
    )
    markdown = to_markdown(run["report"])
    assert "### Decisions:" in markdown
    assert "| `ModelCheckpoint` | `val_f1` | mismatch | **disagree** |" in markdown
    assert "| `ModelCheckpoint-4` | `val_f1_obj` | match | agree |" in markdown


# -- checkpoints carry their verification ----------------------------------------------------------------
def test_every_checkpoint_saved_holds_lmlogger_entry(run):
    """torch.load(..., weights_only=False)["lmlogger"]: the monitored keys, the keys' last closed epoch, the
    decisions up to the save; the best checkpoint of `val_f1` says its monitor mismatched."""
    paths = sorted((run["root"]).glob("*/*.ckpt"))
    assert len(paths) >= 5
    for path in paths:
        entry = torch.load(path, weights_only=False)["lmlogger"]
        assert entry["schema"] == 1 and entry["monitors"] == ["val_f1", "val_f1_obj"]
    best = torch.load(run["callbacks"][0].best_model_path, weights_only=False)["lmlogger"]
    assert best["epoch"] == 1 and best["saved_by"] == {
        "callback": "ModelCheckpoint",
        "monitor": "val_f1",
        "mode": "max",
    }
    key = best["keys"]["val_f1"]
    assert key["epoch"] == 1 and key["verdict"] == "mismatch" and key["phase"] == "val"
    assert key["reference"] == pytest.approx(true_f1(run["module"])[1], abs=1e-6)
    assert best["monitor_verdict"] == "mismatch"
    mc = next(d for d in best["decisions"] if d["callback"] == "ModelCheckpoint")
    assert mc["by_logged"]["epoch"] == 1 and mc["reads"] == 2  # the read that saved this file included
    obj = torch.load(run["callbacks"][3].best_model_path, weights_only=False)["lmlogger"]
    assert obj["keys"]["val_f1_obj"]["verdict"] == "match"


def test_checkpoint_loads_without_lmlogger_and_holds_only_plain_types(run):
    """In a process where lmlogger cannot be imported, torch.load with weights_only=True (plain types only) reads it."""
    code = (
        "import sys, json\n"
        "class Block:\n"
        "    def find_spec(self, name, *a):\n"
        "        if name.split('.')[0] == 'lmlogger': raise ImportError('lmlogger is not installed here')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import torch\n"
        "entry = torch.load(sys.argv[1], weights_only=True)['lmlogger']\n"
        "assert 'lmlogger' not in sys.modules\n"
        "print(json.dumps({'monitors': entry['monitors'], 'verdict': entry['monitor_verdict']}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, run["callbacks"][0].best_model_path], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"monitors": ["val_f1", "val_f1_obj"], "verdict": "mismatch"}


@pytest.mark.parametrize("verified", [False, True])
def test_resuming_from_a_verified_checkpoint(tmp_path, verified):
    """A run stopped after 2 epochs is resumed from its last.ckpt to 4 epochs, with a plain logger or with
    VerifiedLogger. Verified, the resumed run goes on from the decisions in the checkpoint: the audit of the
    second run knows the kept checkpoint (epoch 1, restored by Lightning) and the true best (epoch 2)."""
    from lightning.pytorch.loggers import CSVLogger

    def fit(logger, epochs, ckpt_path=None):
        seeded(0)
        ckpt = ModelCheckpoint(
            dirpath=tmp_path / "ckpt", monitor="val_f1", mode="max", save_last=True, filename="{epoch}-{step}"
        )
        train, val = loaders()
        tr = trainer(logger, tmp_path, max_epochs=epochs, callbacks=[ckpt])
        module = Decided(scheduler=False)
        tr.fit(module, train, val, ckpt_path=ckpt_path)
        return tr, ckpt, module

    fit(VerifiedLogger(CSVLogger(str(tmp_path), name="first"), on_mismatch="ignore"), 2)
    assert "lmlogger" in torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    logger = CSVLogger(str(tmp_path), name="second")
    if verified:
        logger = VerifiedLogger(logger, on_mismatch="ignore")
    tr, ckpt, module = fit(logger, 4, str(tmp_path / "ckpt" / "last.ckpt"))
    assert tr.current_epoch == 4
    saved = torch.load(ckpt.last_model_path, weights_only=False)
    assert ("lmlogger" in saved) is verified
    if verified:
        d = lmlogger.audit(logger.log_dir).runs[0].to_dict()["decisions"][0]
        assert d["reads"] == 4  # 2 before the resume (from the checkpoint), 2 after
        assert d["by_logged"]["epoch"] == epoch_of(ckpt.best_model_path) == 1
        assert d["by_reference"]["epoch"] == 2 and d["agree"] is False
        truth = true_f1(module)
        assert d["by_reference"]["value"] == pytest.approx(truth[2], abs=1e-6)
        assert saved["lmlogger"]["decisions"][0]["by_reference"]["epoch"] == 2


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """`lmlogger ...` in this process (the CLI's own main); `subprocess=True` runs the real command line."""

    def run(*args, subprocess_=False):
        if subprocess_:
            return subprocess.run(
                [sys.executable, "-m", "lmlogger", *map(str, args)], capture_output=True, text=True, timeout=300
            )
        capsys.readouterr()
        code = cli_main([str(a) for a in args])
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def audit_formats():
    """Every --format the CLI offers (html once the HTML report is there)."""
    from lmlogger.cli import _FORMATS

    return _FORMATS


@pytest.mark.parametrize("fmt", audit_formats())
def test_cli_audits_a_checkpoint_in_every_format(run, cli, fmt):
    """`lmlogger audit best.ckpt`: exit 1 (its monitored key mismatched), the decision and the keys in each format."""
    proc = cli("audit", run["callbacks"][0].best_model_path, "--format", fmt, subprocess_=fmt == "table")
    assert proc.returncode == 1, proc.stderr
    if fmt == "json":
        data = json.loads(proc.stdout)
        r = data["runs"][0]
        assert r["backend"] == "checkpoint" and r["checkpoint"]["epoch"] == 1
        assert r["checkpoint"]["saved_by"]["callback"] == "ModelCheckpoint"
        keys = {k["key"]: k for k in r["keys"]}
        assert keys["val_f1"]["verdict"] == "mismatch" and "decision-on-mismatch" in keys["val_f1"]["findings"]
        mc = next(d for d in r["decisions"] if d["callback"] == "ModelCheckpoint")
        # two reads when this file was saved: by the references, epoch 0 was still the better one
        assert (mc["by_logged"]["epoch"], mc["by_reference"]["epoch"], mc["agree"]) == (1, 0, False)
    elif fmt in ("prov", "html"):
        assert "val_f1" in proc.stdout or fmt == "html"
    else:
        assert "checkpoint saved at epoch 1" in proc.stdout and "ModelCheckpoint kept epoch 1" in proc.stdout


def test_cli_checkpoint_of_the_right_key_exits_0(run, cli):
    proc = cli("audit", run["callbacks"][3].best_model_path)
    assert proc.returncode == 1  # this file also records val_f1, which mismatched in its last closed epoch
    data = json.loads(cli("audit", run["callbacks"][3].best_model_path, "--format", "json").stdout)
    keys = {k["key"]: k for k in data["runs"][0]["keys"]}
    assert keys["val_f1_obj"]["verdict"] == "match" and "decision-on-mismatch" not in keys["val_f1_obj"]["findings"]


def test_assert_verified_accepts_a_checkpoint(run):
    from lmlogger.testing import assert_verified

    with pytest.raises(AssertionError, match="val_f1: mismatch") as err:
        assert_verified(run["callbacks"][0].best_model_path)
    assert "ModelCheckpoint" in str(err.value)


def test_hostile_checkpoint_runs_no_code_and_is_exit_2(tmp_path, cli):
    """A pickle that would call os.system when loaded by torch/pickle is read inertly: no file is created."""
    import pickle
    import zipfile

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"state_dict": Evil(), "lmlogger": Evil()}, protocol=2))
    proc = cli("audit", path)
    assert proc.returncode == 2 and not marker.exists()
    assert "corrupt lmlogger entry" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: torch.save({"a": 1}, p, _use_new_zipfile_serialization=False), "legacy (non-zip) format"),
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "not a torch checkpoint"),
        (lambda p: torch.save({"state_dict": {}}, p), "has no lmlogger entry"),
    ],
)
def test_bad_checkpoints_are_one_line_and_exit_2(tmp_path, cli, make, message):
    path = tmp_path / "x.ckpt"
    make(path)
    proc = cli("audit", path)
    assert proc.returncode == 2, proc.stdout
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# -- a monitored training key (read before its window closes), every_n_train_steps, MLflow -----------------------
class TrainDecided(Decided):
    """`train_f1` logged wrongly from training_step (compute() running values averaged); its epochs are built
    like the validation ones (two batches per epoch)."""

    def __init__(self) -> None:
        super().__init__(scheduler=False)
        self.train_f1 = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        preds, target = globals()["batch"](PATTERNS[SCHEDULE[self.current_epoch]][batch_idx])
        self.rec.add(("train", self.current_epoch, 0), preds, target)
        self.train_f1.update(preds, target)
        self.log("train_f1", self.train_f1.compute(), on_step=False, on_epoch=True, batch_size=10)
        return super().training_step(batch, batch_idx)

    def on_train_epoch_end(self):
        self.train_f1.reset()


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    """MLflow (file store): ModelCheckpoint and EarlyStopping on `train_f1` at train epoch end, a ModelCheckpoint
    every 2 training steps on `val_f1` (reads a previous validation's value)."""
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("train-decisions")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"file:{root}/mlruns"
    seeded(0)
    module = TrainDecided()
    callbacks = [
        ModelCheckpoint(dirpath=root / "best", monitor="train_f1", mode="max", filename="{epoch}"),
        EarlyStopping(monitor="train_f1", mode="max", patience=5, check_on_train_epoch_end=True),
        ModelCheckpoint(dirpath=root / "steps", monitor="val_f1", mode="max", every_n_train_steps=2, save_top_k=-1),
    ]
    logger = VerifiedLogger(MLFlowLogger(experiment_name="decisions", tracking_uri=uri), on_mismatch="ignore")
    tr = trainer(logger, root, max_epochs=3, callbacks=callbacks, enable_checkpointing=True)
    train, val = loaders()
    tr.fit(module, train, val)
    report = lmlogger.audit(os.path.dirname(os.path.dirname(logger.sidecar_path)))
    tags = MlflowClient(uri).get_run(logger.run_id).data.tags
    patch.undo()
    return {"module": module, "callbacks": callbacks, "report": report, "tags": tags}


def test_training_key_read_before_its_window_closed_is_paired_with_its_epoch(train_run):
    """ModelCheckpoint reads `train_f1` in on_train_epoch_end, before lmlogger closes the training window: the read
    still gets that epoch's reference (the truth from the recorded predictions)."""
    module = train_run["module"]
    truth = {e: module.rec.true(f1, ("train", e, 0)) for e in range(3)}
    d = next(x for x in train_run["report"].runs[0].to_dict()["decisions"] if x["callback"] == "ModelCheckpoint")
    assert d["reads"] == 3 and "unverified_reads" not in d and d["mismatched_epochs"] == [1, 2]
    assert d["by_logged"]["epoch"] == epoch_of(train_run["callbacks"][0].best_model_path)
    assert d["by_reference"]["epoch"] == max(truth, key=truth.get)
    assert d["by_reference"]["value"] == pytest.approx(max(truth.values()), abs=1e-6)
    assert d["agree"] == (d["by_logged"]["epoch"] == d["by_reference"]["epoch"])
    es = next(x for x in train_run["report"].runs[0].to_dict()["decisions"] if x["callback"] == "EarlyStopping")
    assert es["reads"] == 3 and es["by_logged"] is None and es["agree"] is True


def test_every_n_train_steps_reads_the_last_validation_value(train_run):
    """Reads at the last training batch of epochs 1 and 2 see the previous validation's `val_f1`: each is paired
    with the validation epoch it came from (epoch 1's value is the mismatched one, marked on epoch 1)."""
    steps = train_run["callbacks"][2]
    d = next(x for x in train_run["report"].runs[0].to_dict()["decisions"] if x["callback"] == "ModelCheckpoint-2")
    assert d["reads"] == len(steps.best_k_models) == 2
    assert d["by_logged"]["epoch"] == epoch_of(steps.best_model_path)
    val = {e.epoch: e for e in train_run["report"].by_key()["val_f1"].epochs}
    assert d["by_logged"]["value"] == pytest.approx(val[1].logged)
    assert [e for e, v in val.items() if "decision-on-mismatch" in v.findings] == [1]


def test_mlflow_tags_say_agree_or_disagree(train_run):
    tags, decisions = train_run["tags"], train_run["report"].runs[0].decisions
    for d in decisions:
        assert (
            tags[f"lmlogger.decision.{d.callback}"] == {True: "agree", False: "disagree", None: "unverified"}[d.agree]
        )
        assert tags[f"lmlogger.decision.{d.callback}.detail"] == d.message
    assert tags["lmlogger.decision.EarlyStopping"] == "agree"


def test_the_replay_on_logged_values_is_what_each_callback_did(run):
    """For every callback, the replay on the values it read equals what it was seen to do (kept checkpoint,
    stop epoch, LR drops): the replays follow Lightning's and torch's own rules."""
    for d in run["report"].runs[0].to_dict()["decisions"]:
        observed = d["observed"]
        if d["kind"] == "lr_scheduler":
            assert [p["epoch"] for p in d["by_logged"]["drops"]] == observed["drops"], d
        elif d["by_logged"] is None:
            assert observed["epoch"] is None, d
        else:
            assert (d["by_logged"]["epoch"], d["by_logged"]["step"]) == (observed["epoch"], observed["step"]), d


def test_a_failure_in_lmlogger_decisions_never_breaks_training(tmp_path, monkeypatch):
    """Fault injected into the replay: training and checkpointing go on exactly as without lmlogger, one warning
    names the failure, and the checkpoints are those Lightning keeps."""
    from lightning.pytorch.loggers import CSVLogger

    from lmlogger.records import _replay

    def broken(self, *args):
        raise RuntimeError("injected")

    monkeypatch.setattr(_replay.DecisionReplay, "feed", broken)
    seeded(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_f1", mode="max", filename="{epoch}")
    train, val = loaders()
    tr = trainer(
        VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore"), tmp_path, max_epochs=3, callbacks=[ckpt]
    )
    # the injected fault breaks the audit's replay too, so the page is not written: its own warning says so
    with (
        pytest.warns(UserWarning, match="lmlogger: could not write the HTML report"),
        pytest.warns(UserWarning, match="lmlogger: internal error while recording a checkpoint decision"),
    ):
        tr.fit(Decided(scheduler=False), train, val)
    assert tr.current_epoch == 3 and epoch_of(ckpt.best_model_path) == 1
