"""One process: the true number of samples per step, seen through the metric updates (weight-mismatch).

The batch is a time-major dict ``{"x": (T, B, F), "y": (B,)}``: Lightning infers the batch size
from the first tensor, ``T``, for every step, although the steps hold 16, 16 and 12 samples. Ground
truth is every per-sample loss and prediction, recorded outside lmlogger.
"""

import json
import os

import pytest
import torch
from helpers import N_FEATURES, Recorder, accuracy, quiet, seeded, trainer
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import BinaryAccuracy

import lmlogger
from lmlogger import VerifiedLogger

T = 10  # sequence length: what Lightning takes for the batch size
N = 44  # 16 + 16 + 12: a short last batch


class Sequences(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, T, N_FEATURES, generator=g)
        self.y = ((self.x[:, :, 0].mean(1) + 0.3 * torch.randn(n, generator=g)) > 0).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def time_major(items):
    """Collate to ``{"x": (T, B, F), "y": (B,)}``."""
    return {"x": torch.stack([x for x, _ in items], dim=1), "y": torch.stack([y for _, y in items])}


class TimeMajor(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.rec = Recorder()
        self.losses: dict[tuple, list[torch.Tensor]] = {}
        self.train_acc = BinaryAccuracy()
        self.val_acc = BinaryAccuracy()

    def _step(self, batch, phase):
        logits = self.layer(batch["x"]).squeeze(-1).mean(0)  # one logit per sequence: (B,)
        y = batch["y"]
        per_sample = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float(), reduction="none")
        key = (phase, self.current_epoch, 0)
        self.rec.add(key, logits.sigmoid().detach(), y)
        self.losses.setdefault(key, []).append(per_sample.detach().clone())
        loss = per_sample.mean()
        # Lightning weights this step by T (the first tensor of the dict), not by len(y)
        self.log(f"{phase}_loss", loss, on_step=False, on_epoch=True)
        # control: the right weight given explicitly
        self.log(f"{phase}_loss_bs", loss, on_step=False, on_epoch=True, batch_size=len(y))
        metric = self.train_acc if phase == "train" else self.val_acc
        metric.update(logits.sigmoid().detach(), y)  # after the log call: evidence comes later in the step
        self.log(f"{phase}_acc", metric, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def train_dataloader(self):
        return DataLoader(Sequences(N, 0), batch_size=16, collate_fn=time_major)

    def val_dataloader(self):
        return DataLoader(Sequences(N, 1), batch_size=16, collate_fn=time_major)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def true_loss(self, phase, epoch):
        return float(torch.cat(self.losses[(phase, epoch, 0)]).double().mean())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    quiet()
    seeded(0)
    tmp = tmp_path_factory.mktemp("timemajor")
    model = TimeMajor()
    logger = VerifiedLogger(CSVLogger(str(tmp), name="tm"))
    trainer(logger, tmp, max_epochs=2, num_sanity_val_steps=0, enable_checkpointing=False).fit(model)
    return model, logger, lmlogger.audit(str(tmp))


@pytest.mark.parametrize("phase", ["train", "val"])
def test_mean_weighted_by_the_sequence_length_is_a_weight_mismatch(run, phase):
    """Lightning weights each step by T; the reference uses the rows the metric updates saw."""
    model, _, report = run
    key = report.by_key()[f"{phase}_loss"]
    assert key.verdict == "mismatch"
    assert key.findings == ["weight-mismatch"]
    assert "batch_size=n" in key.fix and "16 where Lightning weighted it 10" in key.fix
    for epoch in key.epochs:
        assert epoch.reference == pytest.approx(model.true_loss(phase, epoch.epoch), rel=1e-6)
        steps = [float(t.double().mean()) for t in model.losses[(phase, epoch.epoch, 0)]]
        assert epoch.logged == pytest.approx(sum(steps) / len(steps), rel=1e-5)  # what Lightning did
        assert (epoch.samples, epoch.dataset_size, epoch.duplicates) == (N, N, 0)


@pytest.mark.parametrize("phase", ["train", "val"])
def test_right_batch_size_given_is_a_match_without_finding(run, phase):
    model, _, report = run
    key = report.by_key()[f"{phase}_loss_bs"]
    assert key.verdict == "match" and key.findings == [] and key.fix is None
    for epoch in key.epochs:
        assert epoch.reference == pytest.approx(model.true_loss(phase, epoch.epoch), rel=1e-6)
        assert epoch.samples == N


@pytest.mark.parametrize("phase", ["train", "val"])
def test_metric_object_counts_its_samples(run, phase):
    model, _, report = run
    key = report.by_key()[f"{phase}_acc"]
    assert key.verdict == "match" and key.findings == []
    for epoch in key.epochs:
        assert epoch.reference == pytest.approx(model.rec.true(accuracy, (phase, epoch.epoch, 0)), rel=1e-6)
        assert (epoch.samples, epoch.dataset_size, epoch.duplicates) == (N, N, 0)


def test_sidecar_and_json_carry_the_sample_counts(run):
    _, logger, report = run
    with open(logger.sidecar_path) as fh:
        records = [json.loads(line) for line in fh if '"verification"' in line]
    loss = [r for r in records if r["key"] == "val_loss"]
    assert loss and all(r["samples"] == N and r["dataset_size"] == N and r["duplicates"] == 0 for r in loss)
    entry = report.to_dict()["runs"][0]
    epochs = next(k for k in entry["keys"] if k["key"] == "val_loss")["epochs"]
    assert epochs[0]["samples"] == N and epochs[0]["dataset_size"] == N and epochs[0]["duplicates"] == 0


def test_findings_reach_table_markdown_and_warning(run, tmp_path):
    from lmlogger.audit._render import to_markdown, to_table

    _, _, report = run
    assert "weight-mismatch" in to_table(report)
    assert "weight-mismatch" in to_markdown(report)


def test_warning_names_the_finding_and_the_fix(tmp_path):
    quiet()
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path), name="tm"), on_mismatch="warn")
    with pytest.warns(UserWarning, match=r"train_loss.*weight-mismatch.*batch_size=n"):
        trainer(logger, tmp_path, max_epochs=1, num_sanity_val_steps=0, enable_checkpointing=False).fit(TimeMajor())


def test_update_is_restored_after_the_run(run):
    model, _, _ = run
    from lmlogger.runtime._samples import _UpdateTap

    assert not isinstance(model.train_acc.__dict__.get("update"), _UpdateTap)
    assert os.path.basename(model.train_acc.update.__qualname__) != "_UpdateTap.__call__"


def tensorboard_texts(log_dir):
    import glob

    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    texts = []
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in EventFileLoader(path).Load():
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "text":
                    texts.append(tensor_util.make_ndarray(v.tensor).item().decode())
    return texts


def test_tensorboard_text_table_names_the_finding(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    seeded(0)
    logger = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="tb"), on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=1, num_sanity_val_steps=0, enable_checkpointing=False).fit(TimeMajor())
    table = tensorboard_texts(logger.log_dir)[-1]
    row = next(line for line in table.splitlines() if line.startswith("| val_loss |"))
    detail = next(line for line in table.splitlines() if line.startswith("* val_loss:"))  # findings below the table
    assert "mismatch" in row and "weight-mismatch" in detail
    # the fixes follow the table, one key per line
    fixes = table[table.index(row) :]
    assert any("val_loss" in line and "batch_size=n" in line for line in fixes.splitlines()), fixes


def test_mlflow_key_tags_carry_the_finding_and_the_counts(tmp_path):
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    seeded(0)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlf = MLFlowLogger(tracking_uri=uri, experiment_name="samples", artifact_location=str(tmp_path))
    logger = VerifiedLogger(mlf, on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=1, num_sanity_val_steps=0, enable_checkpointing=False).fit(TimeMajor())
    tags = MlflowClient(uri).get_run(mlf.run_id).data.tags
    tag = tags["lmlogger.key.train_loss"]  # one tag per key: verdict|provenance|findings|...|samples|fix
    assert tag.startswith("mismatch|tensor|")
    assert "weight-mismatch" in tag and f"samples: {N} (0 repeated) of a dataset of {N}" in tag


def test_sidecars_written_before_sample_counts_still_read():
    """Old verification records have no samples/dataset_size/duplicates: they read as unknown, 0 repeats."""
    from lmlogger.audit._model import EpochReport
    from lmlogger.records._records import from_json

    old = {"type": "verification", "key": "f1", "phase": "val", "epoch": 0, "step": 3, "logged": 0.5}
    record = from_json({**old, "reference": 0.5, "verdict": "match"})
    assert (record.samples, record.dataset_size, record.duplicates) == (None, None, 0)
    entry = EpochReport(0, 3, 0.5, 0.5, "match", phase="val").to_dict()
    assert "samples" not in entry and "dataset_size" not in entry and "duplicates" not in entry
