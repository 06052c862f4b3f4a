"""torchmetrics functional metrics logged from step hooks: `metric_functional`, a true epoch reference, and the
`match` that says whether it vouches for the samples or only the reduction."""

from __future__ import annotations

import importlib
import inspect
import json
import pathlib
import sys
import textwrap

import pytest
import torch
import torchmetrics
import torchmetrics.functional as tmf
import torchmetrics.functional.classification as tmfc
from helpers import Recorder, loader, seeded, trainer
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics.classification import BinaryF1Score
from torchmetrics.functional.classification import binary_f1_score

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.records._functional import FUNCTIONAL

EPOCHS = 2
RECORDED = "functional_user_module"

# A user's module, imported (and its functional names bound) before any VerifiedLogger exists.
USER_MODULE = textwrap.dedent(
    """
    import torch
    import torchmetrics.functional.classification as tmfc
    from lightning.pytorch import LightningModule
    from torchmetrics.classification import BinaryF1Score
    from torchmetrics.functional import f1_score, mean_squared_error
    from torchmetrics.functional.classification import (
        binary_accuracy,
        binary_auroc,
        binary_f1_score,
        multiclass_accuracy,
    )


    try:
        from sklearn.metrics import f1_score as f1_score_sk
    except ImportError:  # lint reads this line; the run computes the same with numpy
        def f1_score_sk(y, p):
            tp = float((y * p).sum())
            return 2 * tp / max(float(y.sum() + p.sum()), 1.0)


    def classes(x):
        return (x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()


    class Functional(LightningModule):
        def __init__(self, recorder):
            super().__init__()
            self.layer = torch.nn.Linear(8, 1)
            self.head = torch.nn.Linear(8, 3)
            self.f1_obj = BinaryF1Score()
            self.rec = recorder

        def _forward(self, batch, phase):
            x, y = batch
            logits = self.layer(x).squeeze(-1)
            probs = torch.sigmoid(logits)
            scores = self.head(x)
            y3 = classes(x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
            loss = loss + torch.nn.functional.cross_entropy(scores, y3)
            if not self.trainer.sanity_checking:
                self.rec.add((phase, self.current_epoch, "binary"), probs, y)
                self.rec.add((phase, self.current_epoch, "multi"), scores, y3)
            return probs, y, scores, y3, loss

        def training_step(self, batch, batch_idx):
            probs, y, scores, y3, loss = self._forward(batch, "train")
            self.log("train_f1", binary_f1_score(probs, y), on_epoch=True)
            self.log("train_auroc", binary_auroc(probs, y), on_epoch=True)
            self.log("train_acc", binary_accuracy(probs, y), on_epoch=True)
            self.log("train_mse", mean_squared_error(probs, y.float()), on_epoch=True)
            self.log("train_f1_task", f1_score(probs, y, task="binary", threshold=0.4), on_epoch=True)
            self.log("train_macc", multiclass_accuracy(scores, y3, 3), on_epoch=True)
            self.log("train_f1_attr", tmfc.binary_f1_score(probs, y), on_epoch=True)
            self.f1_obj(probs, y)
            self.log("train_f1_obj", self.f1_obj, on_epoch=True, on_step=False)
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            probs, y, scores, y3, loss = self._forward(batch, "val")
            self.log("val_f1", binary_f1_score(probs, y))
            auroc = binary_auroc(probs, y)
            self.log("val_auroc", auroc)
            self.log("val_acc", binary_accuracy(probs, y))
            self.log("val_mse", mean_squared_error(probs, y.float()))
            self.log("val_f1_task", f1_score(probs, y, task="binary", threshold=0.4))
            self.log("val_macc", multiclass_accuracy(scores, y3, num_classes=3))
            self.log("val_f1_attr", tmfc.binary_f1_score(probs, y))
            self.log("val_loss", loss)
            self.log("val_sk_f1", f1_score_sk(y.cpu().numpy(), (probs > 0.5).cpu().numpy()))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)
    """
)

#: key suffix -> (recorded inputs, the functional that recomputes the epoch value, Metric class in the fix)
KEYS = {
    "f1": ("binary", lambda p, t: tmfc.binary_f1_score(p, t), "BinaryF1Score()"),
    "auroc": ("binary", lambda p, t: tmfc.binary_auroc(p, t), "BinaryAUROC()"),
    "acc": ("binary", lambda p, t: tmfc.binary_accuracy(p, t), "BinaryAccuracy()"),
    "mse": ("binary", lambda p, t: tmf.mean_squared_error(p, t.float()), "MeanSquaredError()"),
    "f1_task": (
        "binary",
        lambda p, t: tmf.f1_score(p, t, task="binary", threshold=0.4),
        'F1Score(task="binary", threshold=0.4)',
    ),
    "macc": ("multi", lambda p, t: tmfc.multiclass_accuracy(p, t, num_classes=3), "MulticlassAccuracy(num_classes=3)"),
    "f1_attr": ("binary", lambda p, t: tmfc.binary_f1_score(p, t), "BinaryF1Score()"),
}


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_code")
    (folder / f"{RECORDED}.py").write_text(USER_MODULE)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(RECORDED)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(RECORDED, None)


@pytest.fixture(scope="module")
def run(user_module, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("functional")
    seeded(0)
    rec = Recorder()
    model = user_module.Functional(rec)
    logger = VerifiedLogger(TensorBoardLogger(str(tmp), name="run"), on_mismatch="ignore")
    t = trainer(logger, tmp, max_epochs=EPOCHS, num_sanity_val_steps=2)
    t.fit(model, loader(92, 16), loader(60, 16, seed=1))  # 92 = 5 * 16 + 12, 60 = 3 * 16 + 12: short last batches
    return user_module, rec, logger, lmlogger.audit(logger.log_dir)


def batch_mean(rec, fn, key):
    """What Lightning stores for a batch value logged with on_epoch=True: the batch-size-weighted mean."""
    preds, target = rec.preds[key], rec.target[key]
    return sum(float(fn(p, t)) * len(p) for p, t in zip(preds, target, strict=True)) / sum(len(p) for p in preds)


def test_functional_values_get_the_true_epoch_value_as_reference(run):
    """Every functional key, training and validation, is `metric_functional` and its reference is the metric over
    all the epoch's predictions; the verdict is `mismatch` exactly where the stored batch mean differs from it."""
    _, rec, _, report = run
    keys = report.by_key()
    for phase in ("train", "val"):
        for suffix, (inputs, fn, cls) in KEYS.items():
            name = f"{phase}_{suffix}"
            key = keys[f"{name}_epoch"] if phase == "train" else keys[name]
            assert key.provenance == "metric_functional", name
            assert key.vouches_for == "samples"
            assert len(key.epochs) == EPOCHS, name
            differs = False
            for e in key.epochs:
                truth = rec.true(fn, (phase, e.epoch, inputs))
                assert e.reference == pytest.approx(truth, rel=1e-5), (name, e.epoch)
                assert e.logged == pytest.approx(batch_mean(rec, fn, (phase, e.epoch, inputs)), rel=1e-5)
                off = abs(e.logged - truth) > 1e-4 * abs(truth) + 1e-6
                assert e.verdict == ("mismatch" if off else "match"), (name, e.epoch)
                differs = differs or off
            if differs:
                assert key.findings == ["batch-values-averaged"], name
                attr = f"self.{name}"
                on_step = "True" if phase == "train" else "False"
                use = (
                    f"{attr}(preds, target) (forward, for the step value)"
                    if phase == "train"
                    else (f"{attr}.update(preds, target)")
                )
                hook = "training_step" if phase == "train" else "validation_step"
                log_name = name
                assert key.fix == (
                    f"{attr} = {cls} in __init__; in {hook}: {use}, then "
                    f'self.log("{log_name}", {attr}, on_epoch=True, on_step={on_step})'
                ), name
            else:
                assert key.findings == [] and key.fix is None, name


def test_non_mean_functionals_are_mismatches_and_mean_type_ones_match(run):
    """F1, AUROC and macro accuracy averaged over batches are not the epoch value; micro accuracy and MSE are."""
    _, _, _, report = run
    keys = report.by_key()
    for name in ("train_f1_epoch", "train_auroc_epoch", "train_macc_epoch", "val_f1", "val_auroc", "val_macc"):
        assert keys[name].verdict == "mismatch", name
    for name in ("train_acc_epoch", "train_mse_epoch", "val_acc", "val_mse"):
        assert keys[name].verdict == "match", name


def test_a_loss_and_a_metric_object_in_the_same_module_are_unchanged(run):
    """The loss stays a `tensor` whose match vouches only for the reduction; the metric object stays itself."""
    _, _, _, report = run
    keys = report.by_key()
    assert keys["train_loss_epoch"].provenance == "tensor"
    assert keys["train_loss_epoch"].vouches_for == "reduction"
    assert keys["train_loss_epoch"].verdict == "match"
    assert keys["val_loss"].provenance == "tensor" and keys["val_loss"].verdict == "match"
    assert keys["train_f1_obj"].provenance == "metric_object"
    assert keys["train_f1_obj"].vouches_for == "samples"
    assert keys["train_f1_obj"].verdict == "match"


def test_the_summary_says_how_many_matches_vouch_only_for_the_reduction(run):
    """The table's summary line counts the matches that only checked Lightning's reduction, and the JSON says
    what each key's reference was built from."""
    _, _, _, report = run
    summary = report.summary
    plain = sum(1 for k in report.by_key().values() if k.verdict == "match" and k.vouches_for == "reduction")
    assert plain == 3  # train_loss, val_loss and val_sk_f1 (sklearn at run time: a plain number)
    assert f"{summary['match']} match ({plain} of them only the reduction)" in report.to_table()
    data = json.loads(report.to_json())
    by_key = {k["key"]: k for k in data["runs"][0]["keys"]}
    assert by_key["val_loss"]["vouches_for"] == "reduction"
    assert by_key["val_f1"]["vouches_for"] == "samples"
    assert data["runs"][0]["matched_reduction_only"] == plain
    assert "only the reduction" in report.to_markdown()


def test_the_functional_names_are_restored_after_the_run(run):
    """The user's module, torchmetrics' namespaces and the LightningModule hold the original functions again."""
    user_module, _, _, _ = run
    assert user_module.binary_f1_score is sys.modules["torchmetrics.functional.classification.f_beta"].binary_f1_score
    assert not hasattr(tmfc.binary_auroc, "__lmlogger_functional__")
    assert not hasattr(user_module.f1_score, "__lmlogger_functional__")


def test_the_catalog_agrees_with_the_installed_torchmetrics():
    """Each functional's class and parameters in the record layer's static table are torchmetrics' own."""
    from lmlogger.runtime._functional import _metric_class

    for name, (cls, params, ndata) in FUNCTIONAL.items():
        fn = getattr(tmf, name, None) or getattr(tmfc, name, None)
        fn = fn or getattr(torchmetrics.functional.regression, name)
        assert tuple(inspect.signature(fn).parameters)[: len(params)] == params, name
        if cls is not None:
            metric = _metric_class(cls)
            assert issubclass(metric, torchmetrics.Metric) or hasattr(metric, "__new__"), name
            assert ndata >= 1


def test_an_auroc_shadow_past_its_cap_is_unverified(user_module, tmp_path):
    """`functional_sample_cap` bounds a cat-state shadow: past it the key says so, never a silent match."""
    seeded(0)
    model = user_module.Functional(Recorder())
    logger = VerifiedLogger(
        TensorBoardLogger(str(tmp_path), name="cap"), on_mismatch="ignore", functional_sample_cap=40
    )
    t = trainer(logger, tmp_path, max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    t.fit(model, loader(92, 16))
    keys = lmlogger.audit(logger.log_dir).by_key()
    assert keys["train_auroc_epoch"].verdict == "unverified"
    assert "functional_sample_cap=40" in keys["train_auroc_epoch"].reason
    assert keys["train_f1_epoch"].verdict == "mismatch"  # a counter-state shadow has no samples to cap


def test_functional_values_without_a_verified_logger_are_untouched(user_module):
    """Outside a session the functional metrics are torchmetrics' own objects."""
    assert user_module.binary_auroc is sys.modules["torchmetrics.functional.classification.auroc"].binary_auroc
    assert isinstance(BinaryF1Score(), torchmetrics.Metric)
    assert float(user_module.binary_accuracy(torch.tensor([0.9, 0.1]), torch.tensor([1, 0]))) == 1.0


def test_lint_reports_the_functional_and_sklearn_lines_with_the_runtime_fix(run, user_module):
    """`lmlogger lint` on the same module finds each functional value that is not a mean of batch values and the
    sklearn line (which the runtime cannot see), with the very fix the runtime printed; the mean-type ones, the
    loss and the metric object are left alone."""
    from lmlogger.lint import lint

    _, _, _, report = run
    path = user_module.__file__
    lines = pathlib.Path(path).read_text().splitlines()
    found = {lines[f.line - 1].strip().split('"')[1]: f for f in lint([path]).findings}
    expected = {"train_f1", "train_auroc", "train_f1_task", "train_macc", "train_f1_attr"}
    expected |= {"val_f1", "val_auroc", "val_f1_task", "val_macc", "val_f1_attr", "val_sk_f1"}
    assert set(found) == expected
    assert all(f.code == "batch-values-averaged" for f in found.values())
    keys = report.by_key()
    for name, finding in found.items():
        if name == "val_sk_f1":
            assert finding.fix.startswith("self.val_sk_f1 = BinaryF1Score() in __init__; in validation_step: ")
            continue
        key = keys[f"{name}_epoch"] if name.startswith("train") else keys[name]
        assert key.verdict == "mismatch", name
        assert finding.fix == key.fix, name


def test_a_sidecar_without_the_field_still_audits_with_it_derived(run, tmp_path):
    """Sidecars written before `vouches_for` existed: the audit derives it from each key's provenance kind."""
    import shutil

    _, _, logger, report = run
    old = tmp_path / "old"
    shutil.copytree(logger.log_dir, old)
    sidecar = old / "lmlogger" / "provenance.jsonl"
    records = [json.loads(line) for line in sidecar.read_text().splitlines() if line.strip()]
    for record in records:
        record.pop("vouches_for", None)
    sidecar.write_text("".join(json.dumps(r) + "\n" for r in records))
    again = lmlogger.audit(str(old))
    assert {k: v.vouches_for for k, v in again.by_key().items()} == {
        k: v.vouches_for for k, v in report.by_key().items()
    }
    assert again.summary == report.summary
    assert again.matched_reduction_only == report.matched_reduction_only == 3


def test_shadows_add_no_host_device_sync_per_step(user_module, tmp_path, monkeypatch):
    """Functional keys' shadows read no value on the step's path: the reads torchmetrics' own binary `update`
    makes (are `preds` probabilities?) happen once per group of 32 steps, not once per step."""
    from lightning.pytorch.loggers import CSVLogger
    from test_performance import CountSyncsInSteps

    def count(wrap):
        seeded(0)
        logger = CSVLogger(str(tmp_path / str(wrap)))
        if wrap:
            logger = VerifiedLogger(logger, on_mismatch="ignore")
        counter = CountSyncsInSteps(monkeypatch)
        t = trainer(logger, tmp_path, max_epochs=1, callbacks=[counter], num_sanity_val_steps=0, limit_val_batches=0)
        t.fit(user_module.Functional(Recorder()), loader(64 * 4, 4))  # 64 steps
        monkeypatch.undo()
        return sum(counter.counts.values())

    plain, wrapped = count(False), count(True)
    assert plain > 64  # the functional calls' own reads are seen: several per step
    # 7 functional keys, 64 steps: at most one group flushed inside a step per 32 steps, a few reads each
    assert wrapped - plain <= 7 * 2 * 4, (plain, wrapped)


def test_a_functional_called_with_changing_arguments_is_unverified(tmp_path):
    """A threshold that changes between steps has no one Metric of the same semantics: `unverified`, with why."""

    class Changing(LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(8, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            probs = torch.sigmoid(self.layer(x).squeeze(-1))
            self.log("f1", binary_f1_score(probs, y, threshold=0.3 if batch_idx % 2 else 0.6), on_epoch=True)
            return torch.nn.functional.binary_cross_entropy(probs, y.float())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    seeded(0)
    logger = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="changing"), on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=1).fit(Changing(), loader(92, 16))
    key = lmlogger.audit(logger.log_dir).by_key()["f1_epoch"]
    assert key.provenance == "metric_functional"
    assert key.verdict == "unverified"
    assert key.reason == "`binary_f1_score` was called with different arguments within the epoch"
