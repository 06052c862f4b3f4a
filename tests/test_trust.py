"""Real-world logging patterns, each checked against ground truth recomputed from every prediction.

Each class of code here produced a wrong verdict once (a false alarm, a miss, or an `unverified` whose
reason was false). Every test names the class and asserts both directions where the class has them:
the wrong pattern is caught, the right one is `match`; references equal the truth (rel 1e-5), and
logged values are the ones the store holds.
"""

import csv
import glob
import os

import pytest
import torch
import torchmetrics.functional.classification as FC
from helpers import N_FEATURES, Recorder, accuracy, f1, loader, seeded, trainer
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torchmetrics.aggregation import MaxMetric
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score, MulticlassF1Score, MulticlassRecall
from torchmetrics.wrappers import BootStrapper, ClasswiseWrapper, MinMaxMetric, MultitaskWrapper, Running

import lmlogger
from lmlogger import VerifiedLogger

# 81 = 5 * 16 + 1: the last training batch holds one sample (an accuracy of exactly 0 or 1)
N_TRAIN = 81
EPOCHS = 2


def csv_epoch_values(log_dir, key):
    """``{step: value}`` of ``key`` as CSVLogger stored it."""
    out = {}
    with open(os.path.join(log_dir, "metrics.csv"), newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get(key):
                out[int(row["step"])] = float(row[key])
    return out


class Wild(LightningModule):
    """Patterns from real modules, each with its own metric instance (see each test)."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.rec = Recorder()
        # class 2: numbers and a forward() value that is 1.0 on the one-sample batch
        self.acc_fwd = BinaryAccuracy()
        # class 3: metric arithmetic
        self.err = 1 - BinaryAccuracy()
        self.err_c = 1 - BinaryAccuracy()
        # class 5: wrappers
        self.run_acc = Running(BinaryAccuracy(), window=3)
        self.cw_fwd = ClasswiseWrapper(MulticlassRecall(num_classes=2, average=None), labels=["neg", "pos"])
        self.cw_end = ClasswiseWrapper(
            MulticlassRecall(num_classes=2, average=None), labels=["neg", "pos"], prefix="end_"
        )
        self.mm = MinMaxMetric(BinaryF1Score())
        self.boot = BootStrapper(BinaryAccuracy(), num_bootstraps=4)
        self.mt = MultitaskWrapper({"a": BinaryAccuracy(), "b": BinaryF1Score()})
        # class 7: kept where Lightning does not look
        self.plain = {"f1": BinaryF1Score()}
        # class 8: an element of a per-class result, and a loss next to a compute() for the progress bar
        self.mc_f1 = MulticlassF1Score(num_classes=2, average=None)
        self.f1_bar = BinaryF1Score()
        # class 1: one validation metric for two dataloaders, and the right pattern
        self.val_shared = BinaryF1Score()
        self.val_own = torch.nn.ModuleList([BinaryF1Score(), BinaryF1Score()])

    def forward(self, x):
        return self.layer(x).squeeze(-1)

    def _key(self, phase, dl=0):
        return ("sanity" if self.trainer.sanity_checking else phase, self.current_epoch, dl)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        p = logits.sigmoid().detach()
        self.rec.add(self._key("train"), p, y)
        two = torch.stack([1 - p, p], -1)
        self.log("acc_fwd", self.acc_fwd(p, y), on_step=False, on_epoch=True)
        self.log("n_samples", float(len(y)), reduce_fx="sum", on_step=False, on_epoch=True)
        self.log("n_int", len(y), reduce_fx="sum", on_step=False, on_epoch=True)
        self.err.update(p, y)
        self.log("err", self.err, on_step=False, on_epoch=True)
        self.err_c.update(p, y)
        self.log("err_compute", self.err_c.compute(), on_step=False, on_epoch=True)
        self.run_acc.update(p, y)
        self.log("run_acc", self.run_acc, on_step=False, on_epoch=True)
        self.log_dict(self.cw_fwd(two, y), on_step=False, on_epoch=True)
        self.cw_end.update(two, y)
        self.mm.update(p, y)
        self.boot.update(p, y)
        self.log_dict(self.mt({"a": p, "b": p}, {"a": y, "b": y}), on_step=False, on_epoch=True)
        self.plain["f1"].update(p, y)
        self.log("plain_f1", self.plain["f1"], metric_attribute="plain_f1", on_step=False, on_epoch=True)
        if not hasattr(self, "lazy_f1"):
            self.lazy_f1 = BinaryF1Score()  # made in the first step
        self.lazy_f1.update(p, y)
        self.log("lazy_f1", self.lazy_f1, metric_attribute="lazy_f1", on_step=False, on_epoch=True)
        self.mc_f1.update(two, y)
        self.log("f1_class1", self.mc_f1.compute()[1], on_step=False, on_epoch=True)
        self.f1_bar.update(p, y)
        self.log("bar_f1", self.f1_bar.compute(), prog_bar=True, logger=False)
        self.log("loss", loss, on_step=False, on_epoch=True)
        acc = loss.detach().clone()
        self.log("inplace", acc, on_step=False, on_epoch=True)
        acc.mul_(10)  # an accumulator changed after self.log
        return loss

    def on_train_epoch_end(self):
        self.log_dict(self.cw_end.compute())
        self.cw_end.reset()
        out = self.mm.compute()
        self.log("mm_raw", out["raw"])
        self.log("mm_max", out["max"])
        self.mm._base_metric.reset()
        self.log("boot_mean", self.boot.compute()["mean"])
        self.boot.reset()
        for m in (self.acc_fwd, self.err_c, self.mc_f1, self.f1_bar):
            m.reset()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        logits = self(x)
        p = logits.sigmoid()
        self.rec.add(self._key("val", dataloader_idx), p, y)
        self.val_shared.update(p, y)
        self.log("val_shared", self.val_shared)
        self.val_own[dataloader_idx].update(p, y)
        self.log("val_own", self.val_own[dataloader_idx])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        v = loss.clone()
        self.log("val_inplace", v)
        v.add_(5.0)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


@pytest.fixture(scope="module")
def wild(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wild")
    seeded(0)
    model = Wild()
    logger = VerifiedLogger(CSVLogger(str(tmp), name="wild"), on_mismatch="ignore")
    t = trainer(logger, tmp, max_epochs=EPOCHS, num_sanity_val_steps=0)
    t.fit(model, loader(N_TRAIN), [loader(60, seed=1), loader(44, seed=2)])
    report = lmlogger.audit(logger.log_dir)
    return model, logger.log_dir, report.by_key(), report


def _train(model, epoch):
    return ("train", epoch, 0)


def test_shared_metric_across_dataloaders_follows_dataloader_boundaries(wild):
    """Class 1: dataloader 0's key holds dataloader 0 alone (match); dataloader 1's holds 0 + 1 (mismatch,
    reference = dataloader 1 alone); both flagged `shared-metric` with a per-dataloader fix."""
    model, _log_dir, keys, _ = wild
    dl0, dl1 = keys["val_shared/dataloader_idx_0"], keys["val_shared/dataloader_idx_1"]
    assert dl0.verdict == "match" and "shared-metric" in dl0.findings
    assert dl1.verdict == "mismatch" and "shared-metric" in dl1.findings
    assert "one metric instance per dataloader" in dl1.fix
    for e0, e1 in zip(dl0.epochs, dl1.epochs, strict=True):
        assert e0.reference == pytest.approx(model.rec.true(f1, ("val", e0.epoch, 0)), rel=1e-5)
        assert e1.reference == pytest.approx(model.rec.true(f1, ("val", e1.epoch, 1)), rel=1e-5)
        both = model.rec.true(f1, ("val", e1.epoch, 0), ("val", e1.epoch, 1))
        assert e1.logged == pytest.approx(both, rel=1e-5)
    for dl in (0, 1):
        own = keys[f"val_own/dataloader_idx_{dl}"]
        assert own.verdict == "match" and own.findings == []
        for e in own.epochs:
            assert e.reference == pytest.approx(model.rec.true(f1, ("val", e.epoch, dl)), rel=1e-5)


def test_numbers_are_not_taken_for_a_metric_by_coincidence(wild):
    """Class 2: a count logged as a float next to a forward() accuracy that is 1.0 (or 0.0) on the
    one-sample last batch stays a plain tensor (match, the true count); an int is a count."""
    model, _log_dir, keys, _ = wild
    for name in ("n_samples", "n_int"):
        k = keys[name]
        assert k.provenance == "tensor", name
        assert k.verdict == "match" and k.findings == []
        assert [e.logged for e in k.epochs] == [N_TRAIN] * EPOCHS
        assert [e.reference for e in k.epochs] == [N_TRAIN] * EPOCHS
    acc = keys["acc_fwd"]
    assert acc.provenance == "metric_forward" and acc.verdict == "match"
    for e in acc.epochs:
        assert e.reference == pytest.approx(model.rec.true(accuracy, _train(model, e.epoch)), rel=1e-5)


def test_metric_arithmetic_is_computed_from_its_childrens_epoch_state(wild):
    """Class 3: `1 - BinaryAccuracy()` logged as an object is right (match, 1 - epoch accuracy, no
    `state-carried-over`); its compute() logged per step is caught."""
    model, _, keys, _ = wild
    err = keys["err"]
    assert err.provenance == "metric_object" and err.verdict == "match" and err.findings == []
    for e in err.epochs:
        assert e.reference == pytest.approx(1 - model.rec.true(accuracy, _train(model, e.epoch)), rel=1e-5)
    wrong = keys["err_compute"]
    assert wrong.provenance == "metric_compute" and wrong.verdict == "mismatch"
    assert wrong.findings == ["running-value-averaged"]
    for e in wrong.epochs:
        assert e.reference == pytest.approx(1 - model.rec.true(accuracy, _train(model, e.epoch)), rel=1e-5)


def test_tensor_changed_in_place_after_logging_is_verified_as_logged(wild):
    """Class 4: a tensor modified after self.log (fit, and validation's inference tensors) is verified
    with the value it had when logged: match, the store's value."""
    _model, log_dir, keys, _ = wild
    for name in ("inplace", "val_inplace/dataloader_idx_0", "val_inplace/dataloader_idx_1"):
        k = keys[name]
        assert k.verdict == "match", (name, k.reason)
        stored = csv_epoch_values(log_dir, name)
        for e in k.epochs:
            assert e.logged == pytest.approx(stored[e.step], rel=1e-6)
    # the epoch mean of the loss as logged, not of the values multiplied afterwards
    for e in keys["inplace"].epochs:
        assert e.reference == pytest.approx(keys["loss"].epochs[e.epoch].reference, rel=1e-6)


def test_wrapper_metrics(wild):
    """Class 5: Running is a window over the last N updates; ClasswiseWrapper values traced per class;
    MinMaxMetric's raw value verified, its max against the max of the epoch values so far; BootStrapper computed from
    its copies; MultitaskWrapper's forward dict per task."""
    model, _, keys, _ = wild
    run = keys["run_acc"]
    assert run.verdict == "match" and run.findings == []
    for e in run.epochs:
        batches = model.rec.preds[_train(model, e.epoch)][-3:], model.rec.target[_train(model, e.epoch)][-3:]
        truth = float(accuracy(torch.cat(batches[0]), torch.cat(batches[1])))
        assert e.reference == pytest.approx(truth, rel=1e-5)
    for cls, label in ((0, "neg"), (1, "pos")):

        def recall(p, t, cls=cls):
            return FC.multiclass_recall(torch.stack([1 - p, p], -1), t, num_classes=2, average=None)[cls]

        fwd = keys[f"multiclassrecall_{label}"]
        assert fwd.provenance == "metric_forward" and fwd.verdict == "mismatch"
        assert fwd.findings == ["batch-values-averaged"]
        end = keys[f"end_{label}"]
        assert end.verdict == "match" and end.findings == []
        for e in fwd.epochs + end.epochs:
            assert e.reference == pytest.approx(model.rec.true(recall, _train(model, e.epoch)), rel=1e-5)
    raw = keys["mm_raw"]
    assert raw.verdict == "match"
    for e in raw.epochs:
        assert e.reference == pytest.approx(model.rec.true(f1, _train(model, e.epoch)), rel=1e-5)
    truths = [model.rec.true(f1, _train(model, e.epoch)) for e in raw.epochs]
    assert keys["mm_max"].verdict == "match"
    for e in keys["mm_max"].epochs:
        # the max of the epoch values so far: one compute() per epoch, the base metric reset after it
        assert e.reference == pytest.approx(max(truths[: e.epoch + 1]), rel=1e-5)
    boot = keys["boot_mean"]
    assert boot.provenance == "metric_compute" and boot.verdict == "match"
    assert all(e.reference == pytest.approx(e.logged, rel=1e-6) for e in boot.epochs)
    a, b = keys["a"], keys["b"]
    assert a.provenance == b.provenance == "metric_forward"
    assert a.verdict == "match" and b.verdict == "mismatch"
    for e in b.epochs:
        assert e.reference == pytest.approx(model.rec.true(f1, _train(model, e.epoch)), rel=1e-5)


def test_metrics_met_after_the_run_started(wild):
    """Class 7: a metric in a plain dict (logged with metric_attribute=) and one created in the first step
    are verified from the first epoch on: match, true references."""
    model, _, keys, _ = wild
    for name in ("plain_f1", "lazy_f1"):
        k = keys[name]
        assert k.verdict == "match", (name, k.reason)
        assert len(k.epochs) == EPOCHS
        for e in k.epochs:
            assert e.reference == pytest.approx(model.rec.true(f1, _train(model, e.epoch)), rel=1e-5)


def test_element_of_a_result_is_traced_and_a_progress_bar_compute_does_not_taint_the_loss(wild):
    """Class 8: `compute()[1]` at each step is the running value of class 1 (mismatch, true reference,
    a per-epoch fix); the loss logged beside a compute() for the progress bar keeps its match."""
    model, _, keys, _ = wild
    k = keys["f1_class1"]
    assert k.provenance == "metric_compute" and k.verdict == "mismatch"
    assert k.findings == ["running-value-averaged"]
    assert k.fix.startswith('self.log("f1_class1", self.mc_f1.compute()[1]) in on_train_epoch_end')
    for e in k.epochs:
        assert e.reference == pytest.approx(model.rec.true(f1, _train(model, e.epoch)), rel=1e-5)
    loss = keys["loss"]
    assert loss.provenance == "tensor" and loss.verdict == "match" and loss.findings == []


class Interrupted(LightningModule):
    """Class 6: validation in the middle of a training epoch, training metrics with max/cat states."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.rec = Recorder()
        self.loss_max = MaxMetric()
        self.f1 = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        self.rec.add(("train", self.current_epoch, 0), logits.sigmoid().detach(), y)
        self.rec.add(("loss", self.current_epoch, 0), loss.detach().reshape(1), y[:1])
        self.loss_max.update(loss.detach())
        self.log("loss_max", self.loss_max, on_step=False, on_epoch=True)
        self.f1.update(logits.sigmoid().detach(), y)
        self.log("f1", self.f1, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.binary_cross_entropy_with_logits(self.layer(x).squeeze(-1), y.float()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


def test_validation_inside_a_training_epoch_keeps_the_windows_apart(tmp_path):
    """Class 6: with val_check_interval=0.5 a max-state metric of training is verified (match, the true
    max), not `unverified` "not reset before the epoch"."""
    seeded(0)
    model = Interrupted()
    logger = VerifiedLogger(TensorBoardLogger(str(tmp_path), name="vci"), on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=2, val_check_interval=0.5, num_sanity_val_steps=0).fit(
        model, loader(N_TRAIN), loader(40, seed=1)
    )
    keys = lmlogger.audit(logger.log_dir).by_key()
    for e in keys["loss_max"].epochs:
        truth = float(torch.cat(model.rec.preds[("loss", e.epoch, 0)]).max())
        assert e.verdict == "match", e.reason
        assert e.reference == pytest.approx(truth, rel=1e-6)
    for e in keys["f1"].epochs:
        assert e.verdict == "match"
        assert e.reference == pytest.approx(model.rec.true(f1, ("train", e.epoch, 0)), rel=1e-5)
    assert len(keys["val_loss"].epochs) == 4  # two validation runs per epoch
    assert {e.verdict for e in keys["val_loss"].epochs} == {"match"}


class ResetTooEarly(LightningModule):
    """Class 9: the quickstart's reset in on_train_epoch_end, with the metric object logged."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.rec = Recorder()
        self.f1 = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        self.rec.add(("train", self.current_epoch, 0), logits.sigmoid().detach(), y)
        self.f1.update(logits.sigmoid().detach(), y)
        self.log("f1", self.f1, on_step=False, on_epoch=True)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())

    def on_train_epoch_end(self):
        self.f1.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


def test_reset_before_lightning_logs_the_object(tmp_path):
    """Class 9: Lightning logs compute() of an empty state (0): mismatch with `reset-before-log`, the true
    reference, and a fix that says to remove the reset."""
    seeded(0)
    model = ResetTooEarly()
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=2, limit_val_batches=0).fit(model, loader())
    k = lmlogger.audit(logger.log_dir).by_key()["f1"]
    assert k.verdict == "mismatch"
    assert k.findings == ["reset-before-log"]
    assert "remove the `self.f1.reset()` in `on_train_epoch_end`" in k.fix
    for e in k.epochs:
        assert e.logged == 0.0
        assert e.reference == pytest.approx(model.rec.true(f1, ("train", e.epoch, 0)), rel=1e-5)


@pytest.mark.parametrize("backend", ["csv", "tensorboard"])
def test_wrapped_loggers_prefix_is_honoured(tmp_path, backend):
    """Class 10: `prefix=` on the wrapped logger renames every key (`exp-f1`): the store check finds every
    epoch value under its stored name, and references sit beside them."""
    from helpers import KitchenSink

    seeded(0)
    inner = (
        CSVLogger(str(tmp_path), prefix="exp") if backend == "csv" else TensorBoardLogger(str(tmp_path), prefix="exp")
    )
    logger = VerifiedLogger(inner, on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=1, limit_val_batches=0).fit(KitchenSink(val_loaders=1), loader())
    report = lmlogger.audit(logger.log_dir)
    run = report.runs[0]
    assert run.problems == []
    assert report.by_key()["f1_object"].verdict == "match"
    if backend == "csv":
        stored = csv_epoch_values(logger.log_dir, "exp-f1_object")
        assert list(stored.values()) == [report.by_key()["f1_object"].epochs[0].logged]
        assert csv_epoch_values(logger.log_dir, "exp-lmlogger/reference/f1_object")
    else:  # every chart of the custom-scalars layout draws tags that exist
        import re

        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.plugins.custom_scalar import layout_pb2
        from tensorboard.util import tensor_util

        tags, layouts = set(), []
        for path in glob.glob(os.path.join(logger.log_dir, "events.out.tfevents.*")):
            for event in EventFileLoader(path).Load():
                for v in event.summary.value:
                    if v.metadata.plugin_data.plugin_name == "custom_scalars":
                        layout = layout_pb2.Layout()
                        layout.ParseFromString(tensor_util.make_ndarray(v.tensor).item())
                        layouts.append(layout)
                    else:
                        tags.add(v.tag)
        charts = [chart for category in layouts[-1].category for chart in category.chart]
        assert charts
        for chart in charts:
            for pattern in chart.multiline.tag:
                assert any(re.match(pattern, tag) for tag in tags), (pattern, sorted(tags))


FIXABLE = """
import torch
from lightning.pytorch import LightningModule
from torchmetrics.classification import BinaryF1Score, MulticlassF1Score


class Model(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.f1_run = BinaryF1Score()
        self.f1_fwd = BinaryF1Score()
        self.f1_obj = BinaryF1Score()
        self.f1_pct = BinaryF1Score()
        self.mc = MulticlassF1Score(num_classes=2, average=None)
        self.val_f1 = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        p = logits.sigmoid().detach()
        self.f1_run.update(p, y)
        self.log("f1_run", self.f1_run.compute(), on_step=False, on_epoch=True)
        self.log("f1_fwd", self.f1_fwd(p, y), on_step=True, on_epoch=True)
        self.f1_obj.update(p, y)
        self.log("f1_obj", self.f1_obj, on_step=False, on_epoch=True)
        self.f1_pct.update(p, y)
        self.log("f1_pct", self.f1_pct.compute() * 100, on_step=False, on_epoch=True)
        self.mc.update(torch.stack([1 - p, p], -1), y)
        self.log("f1_class1", self.mc.compute()[1], on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self):
        self.f1_run.reset()
        self.f1_fwd.reset()
        self.f1_obj.reset()
        self.f1_pct.reset()
        self.mc.reset()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_f1.update(self.layer(x).squeeze(-1).sigmoid(), y)

    def on_validation_epoch_end(self):
        self.log("val_f1", self.val_f1.compute())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)
"""


def _method_span(lines, name):
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"def {name}("))
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" " * 8)):
        end += 1
    return start, end


def apply_fix(source, key, fix):
    """Apply a printed fix to the module's source the way a user would, reading it literally."""
    import re

    lines = source.split("\n")
    log_line = next(i for i, line in enumerate(lines) if f'self.log("{key}",' in line)
    indent = re.match(r"\s*", lines[log_line]).group(0)
    removed = re.search(r"remove the `(self\.\w+)\.reset\(\)` in `(\w+)`", fix)
    if removed:
        start, end = _method_span(lines, removed.group(2))
        for i in range(start, end):
            if lines[i].strip() == f"{removed.group(1)}.reset()":
                lines[i] = lines[i].replace(f"{removed.group(1)}.reset()", "pass")
    once = re.match(r"(self\.log\(.*\)) in (on_\w+_epoch_end), once per epoch", fix)
    after = re.match(r"(self\.\w+)\.reset\(\) in (on_\w+_epoch_end), right after logging '(\w+)'", fix)
    if once:
        lines[log_line] = indent + "pass"
        start, _ = _method_span(lines, once.group(2))
        lines.insert(start + 1, " " * 8 + once.group(1))
    elif after:
        lines.insert(log_line + 1, indent + f"{after.group(1)}.reset()")
    elif not fix.startswith("remove the"):
        statement = fix.split("; and remove")[0]
        forward = re.match(r"(self\.\w+)\(preds, target\) \(forward, for the step value\), then (.*)", statement)
        if forward:
            lines[log_line] = indent + f"{forward.group(1)}(p, y)\n" + indent + forward.group(2)
        else:
            lines[log_line] = indent + statement
    return "\n".join(lines)


def _run_source(source, tmp_path, name):
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path), name=name), on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=2, num_sanity_val_steps=2).fit(module.Model(), loader(), loader(40, seed=1))
    return lmlogger.audit(logger.log_dir).by_key()


def test_every_printed_fix_works_when_applied(tmp_path):
    """Apply each fix lmlogger prints to the module's source, literally, re-run: every key is `match`."""
    keys = _run_source(FIXABLE, tmp_path, "before")
    wrong = {name: k for name, k in keys.items() if k.verdict != "match"}
    assert set(wrong) == {"f1_run", "f1_fwd_epoch", "f1_obj", "f1_pct", "f1_class1", "val_f1"}
    assert wrong["f1_obj"].findings == ["reset-before-log"]
    assert wrong["f1_pct"].findings == ["derived-value"] and wrong["f1_pct"].verdict == "unverified"
    assert "state-carried-over" in wrong["val_f1"].findings
    source = FIXABLE
    for name, k in wrong.items():
        assert k.fix, name
        source = apply_fix(source, name.removesuffix("_epoch"), k.fix)
    after = _run_source(source, tmp_path, "after")
    assert {name: k.verdict for name, k in after.items() if k.epochs} == {
        name: "match" for name, k in after.items() if k.epochs
    }, source
    assert not any(k.findings for k in after.values()), {n: k.findings for n, k in after.items()}


class Holder(torch.nn.Module):
    """A model that keeps a metric inside it: calling it is not a metric's forward()."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.seen = BinaryAccuracy()

    def forward(self, x):
        return self.layer(x).squeeze(-1)


class EvalPatterns(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = Holder()
        self.rec = Recorder()
        self.val_f1 = BinaryF1Score()
        self.val_end = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        self.log("loss", loss * 1.0, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        p = self.net(x).sigmoid()
        self.rec.add(("sanity" if self.trainer.sanity_checking else "val", self.current_epoch, 0), p, y)
        self.val_f1.update(p, y)
        self.log("val_f1", self.val_f1)  # computed when the dataloader ends: a reset later is harmless
        self.val_end.update(p, y)
        total = torch.zeros(())
        self.log("val_total", total)
        total += 1.0

    def on_validation_epoch_end(self):
        self.val_f1.reset()
        self.log("val_end", self.val_end)
        self.val_end.reset()  # before Lightning computes the object logged in this hook

    def test_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.net(x), y.float())
        ema = loss.clone()
        self.log("test_ema", ema)
        ema.mul_(0.5).add_(1.0)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


def test_evaluation_hooks_resets_and_inference_tensors(tmp_path):
    """A reset in on_validation_epoch_end is harmless for an object logged in validation_step (match), and
    `reset-before-log` for one logged in that hook; a loss through a model holding a metric is not derived;
    in-place changes after self.log in validate()/test() do not move the reference."""
    seeded(0)
    model = EvalPatterns()
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    t = trainer(logger, tmp_path, max_epochs=1, num_sanity_val_steps=0)
    t.fit(model, loader(), loader(40, seed=1))
    t.validate(model, loader(40, seed=1))
    t.test(model, loader(30, seed=2))
    keys = lmlogger.audit(logger.log_dir).by_key()
    assert keys["loss"].verdict == "match" and keys["loss"].findings == []
    assert keys["val_f1"].verdict == "match" and keys["val_f1"].findings == []
    for e in keys["val_f1"].epochs:
        assert e.reference == pytest.approx(model.rec.true(f1, ("val", 0, 0)), rel=1e-5)
    end = keys["val_end"]
    assert end.verdict == "mismatch" and end.findings == ["reset-before-log"]
    assert "remove the `self.val_end.reset()` in `on_validation_epoch_end`" in end.fix
    assert all(e.logged == 0.0 for e in end.epochs)
    assert keys["val_total"].verdict == "match"
    assert {e.logged for e in keys["val_total"].epochs} == {0.0}
    assert keys["test_ema"].verdict == "match"
