"""Each rule of `lmlogger lint` in both directions: the wrong pattern is caught at its line, the right one is not."""

from __future__ import annotations

import pytest
from lint_helpers import codes, findings, line_of

from lmlogger.lint import lint


@pytest.fixture(autouse=True)
def _no_patch_left_behind():
    """The static check patches nothing (it never imports Lightning): the suite's gc-heavy check is moot here."""
    yield


# --- running-value-averaged ---------------------------------------------------------------------------

RUNNING = """
class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.f1 = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.f1.update(self(x), y)
        self.log("f1", self.f1.compute(), on_epoch=True, on_step=False)
"""


def test_compute_logged_on_epoch_from_training_step_is_running_value_averaged(tmp_path):
    """The classic: compute() in training_step with on_epoch=True is caught at the self.log line, with the fix."""
    result = lint([str(_write(tmp_path, RUNNING))])
    [finding] = result.findings
    assert (finding.line, finding.col, finding.code) == (line_of(RUNNING, 'self.log("f1"'), 9, "running-value-averaged")
    assert finding.message.startswith("`f1`: compute() logged from a step hook with on_epoch=True")
    assert finding.fix == 'self.log("f1", self.f1, on_epoch=True, on_step=False)'


def test_compute_in_training_step_without_on_epoch_is_clean(tmp_path):
    """training_step's default is on_epoch=False: the running value is logged per step, which is what it is."""
    assert codes(tmp_path, RUNNING.replace(", on_epoch=True, on_step=False", "")) == []
    assert codes(tmp_path, RUNNING.replace("on_epoch=True", "on_epoch=False")) == []


def test_compute_in_validation_step_uses_its_default_on_epoch_true(tmp_path):
    """validation_step's default is on_epoch=True, so a bare self.log of compute() there is caught."""
    src = RUNNING.replace("training_step", "validation_step").replace(", on_epoch=True, on_step=False", "")
    assert codes(tmp_path, src) == ["running-value-averaged"]


@pytest.mark.parametrize(
    "expr",
    [
        "self.f1.compute().item()",
        "float(self.f1.compute())",
        "self.f1.compute().detach().cpu()",
        "self.f1.compute()[0]",
    ],
)
def test_copies_and_element_views_of_compute_keep_the_finding(tmp_path, expr):
    """.item(), float(), .detach(), an element [i]: the value is still the running value."""
    src = RUNNING.replace("self.f1.compute()", expr)
    assert codes(tmp_path, src) == ["running-value-averaged"]


def test_positional_and_keyword_arguments_are_read_like_lightning(tmp_path):
    """self.log(name, value, prog_bar, logger, on_step, on_epoch) positionally, or name=/value= keywords."""
    positional = RUNNING.replace(
        'self.log("f1", self.f1.compute(), on_epoch=True, on_step=False)',
        'self.log("f1", self.f1.compute(), False, True, False, True)',
    )
    keywords = RUNNING.replace(
        'self.log("f1", self.f1.compute(), on_epoch=True, on_step=False)',
        'self.log(value=self.f1.compute(), name="f1", on_epoch=True, sync_dist=True, batch_size=len(x))',
    )
    off = positional.replace("False, True, False, True)", "False, True, True, False)")
    assert codes(tmp_path / "a", positional) == ["running-value-averaged"]
    assert codes(tmp_path / "b", keywords) == ["running-value-averaged"]
    assert codes(tmp_path / "c", off) == []


def test_on_epoch_not_known_statically_is_not_guessed(tmp_path):
    """on_epoch=<an expression> may be False: no finding rather than a false alarm."""
    assert codes(tmp_path, RUNNING.replace("on_epoch=True", "on_epoch=self.hparams.per_epoch")) == []


def test_log_conf_dict_spread_into_self_log_is_read(tmp_path):
    """**self.log_conf with a dict literal made in __init__ counts as if written at the call."""
    src = RUNNING.replace(
        "self.f1 = BinaryF1Score()",
        'self.f1 = BinaryF1Score()\n        self.log_conf = {"on_step": False, "on_epoch": True}',
    ).replace(
        'self.log("f1", self.f1.compute(), on_epoch=True, on_step=False)',
        'self.log("f1", self.f1.compute(), **self.log_conf)',
    )
    assert codes(tmp_path, src) == ["running-value-averaged"]


# --- batch-values-averaged ----------------------------------------------------------------------------

FORWARD = """
class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.metric = METRIC

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_metric", self.metric(self(x), y))
"""


@pytest.mark.parametrize(
    ("metric", "caught"),
    [
        ("BinaryF1Score()", True),
        ("BinaryPrecision()", True),
        ("torchmetrics.AUROC(task='binary')", True),
        ("torchmetrics.JaccardIndex(task='multiclass', num_classes=3)", True),
        ("MulticlassAccuracy(num_classes=3)", True),  # average="macro" by default
        ("BinaryAccuracy()", False),  # micro: a mean of samples
        ("torchmetrics.Accuracy(task='multiclass', num_classes=3)", False),  # the wrapper's default is micro
        ("torchmetrics.Accuracy(task='multiclass', num_classes=3, ignore_index=0)", True),
        ("MulticlassAccuracy(num_classes=3, average='micro')", False),
        ("torchmetrics.F1Score(task='multiclass', num_classes=3)", False),  # micro F1 == accuracy
        ("torchmetrics.F1Score(task='multiclass', num_classes=3, average='macro')", True),
        ("torchmetrics.MeanSquaredError()", False),
        ("torchmetrics.MeanSquaredError(squared=False)", True),  # RMSE
        ("torchmetrics.MeanAbsoluteError()", False),
    ],
)
def test_forward_values_averaged_only_for_metrics_that_are_not_means(tmp_path, metric, caught):
    """F1, precision, AUROC, IoU, macro accuracy, RMSE are caught; micro accuracy and mean errors are exact."""
    src = FORWARD.replace("METRIC", metric)
    assert codes(tmp_path, src) == (["batch-values-averaged"] if caught else [])


def test_forward_of_a_mean_metric_with_another_reduce_fx_is_caught(tmp_path):
    """reduce_fx="max" over batch accuracies is not the epoch accuracy."""
    src = FORWARD.replace("METRIC", "BinaryAccuracy()").replace("y))", 'y), reduce_fx="max")')
    assert codes(tmp_path, src) == ["batch-values-averaged"]


def test_forward_in_training_step_by_default_is_clean_and_with_on_epoch_is_caught(tmp_path):
    """training_step logs per step by default; on_epoch=True makes Lightning average the batch values."""
    src = FORWARD.replace("METRIC", "BinaryF1Score()").replace("validation_step", "training_step")
    assert codes(tmp_path / "a", src) == []
    both = src.replace("y))", "y), on_step=True, on_epoch=True)")
    result = lint([str(_write(tmp_path / "b", both))])
    assert [f.code for f in result.findings] == ["batch-values-averaged"]
    assert result.findings[0].fix == (  # the forward() the call made stays, in its own statement
        'self.metric(self(x), y); self.log("val_metric", self.metric, on_epoch=True, on_step=True)'
    )


def test_forward_through_a_local_alias_and_forward_method(tmp_path):
    """m = self.val_f1; self.log(..., m(x, y)) and m.forward(x, y) are the metric's forward()."""
    src = FORWARD.replace("METRIC", "BinaryF1Score()").replace(
        'self.log("val_metric", self.metric(self(x), y))',
        'm = self.metric\n        out = m.forward(self(x), y)\n        self.log("val_metric", out)',
    )
    assert codes(tmp_path, src) == ["batch-values-averaged"]


def test_metric_object_logged_is_clean(tmp_path):
    """The documented right pattern: call forward, log the metric object."""
    src = FORWARD.replace("METRIC", "BinaryF1Score()").replace(
        'self.log("val_metric", self.metric(self(x), y))',
        'self.metric(self(x), y)\n        self.log("val_metric", self.metric)',
    )
    assert codes(tmp_path, src) == []


# --- derived-value ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    ["self.f1.compute() * 100", "1 - self.f1(p, y)", "self.f1.compute() / self.prec.compute()", "-self.f1.compute()"],
)
def test_arithmetic_on_a_result_logged_on_epoch_from_a_step_hook_is_derived_value(tmp_path, expr):
    """compute()*100, 1 - forward(), a ratio of two results: derived-value, with a fix naming the metric."""
    src = f"""
    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.f1 = BinaryF1Score()
            self.prec = BinaryPrecision()

        def training_step(self, batch, batch_idx):
            p, y = batch
            self.log("x", {expr}, on_epoch=True)
    """
    result = lint([str(_write(tmp_path, src))])
    assert [f.code for f in result.findings] == ["derived-value"]
    fix = result.findings[0].fix
    kept = "self.f1.update(p, y) in place of the call; "  # the update a forward() in the call made stays
    assert fix.startswith(kept) == ("self.f1(p, y)" in expr)
    fix = fix.removeprefix(kept)
    assert fix.startswith('self.log("x", ') and fix.endswith(
        ") in on_train_epoch_end, once per epoch, before the metric's reset()"
    )
    assert "self.f1.compute()" in fix and "(p, y)" not in fix  # forward() calls become compute(), as at runtime


def test_derived_value_at_epoch_end_is_clean(tmp_path):
    """compute()*100 logged once in on_validation_epoch_end (and reset) is the epoch value, scaled."""
    src = """
    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.f1 = BinaryF1Score()

        def validation_step(self, batch, batch_idx):
            self.f1.update(*batch)

        def on_validation_epoch_end(self):
            self.log("f1_pct", self.f1.compute() * 100)
            self.f1.reset()
    """
    assert codes(tmp_path, src) == []


# --- state-carried-over -------------------------------------------------------------------------------

CARRIED = """
class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.val_f1 = BinaryF1Score()

    def validation_step(self, batch, batch_idx):
        self.val_f1.update(*batch)

    def HOOK(self, *args):
        self.log("val_f1", self.val_f1.compute())
        RESET
"""


@pytest.mark.parametrize("hook", ["on_validation_epoch_end", "validation_epoch_end"])
def test_compute_at_epoch_end_never_reset_is_state_carried_over(tmp_path, hook):
    """compute() logged at epoch end of a metric nothing resets (Lightning 2 and 1.x hooks)."""
    result = lint([str(_write(tmp_path, CARRIED.replace("HOOK", hook).replace("RESET", "pass")))])
    [finding] = result.findings
    assert finding.code == "state-carried-over"
    assert finding.fix == "self.val_f1.reset() in on_validation_epoch_end, right after logging 'val_f1'"


@pytest.mark.parametrize(
    "reset",
    [
        "self.val_f1.reset()",
        "for m in [self.val_f1]: m.reset()",  # an unresolved reset: may reset anything, so no finding
    ],
)
def test_compute_at_epoch_end_with_a_reset_is_clean(tmp_path, reset):
    """A reset anywhere in the module (here right after logging) clears the finding."""
    assert codes(tmp_path, CARRIED.replace("HOOK", "on_validation_epoch_end").replace("RESET", reset)) == []


def test_reset_through_a_loop_over_a_module_dict_counts(tmp_path):
    """for m in self.metrics.values(): m.reset() resets every member."""
    src = """
    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.metrics = torch.nn.ModuleDict({"f1": BinaryF1Score(), "p": BinaryPrecision()})

        def validation_step(self, batch, batch_idx):
            self.metrics["f1"].update(*batch)

        def on_validation_epoch_end(self):
            self.log("f1", self.metrics["f1"].compute())
            for m in self.metrics.values():
                m.reset()
    """
    assert codes(tmp_path, src) == []
    assert codes(tmp_path / "b", src.replace("m.reset()", "pass")) == ["state-carried-over"]


def test_metric_object_logged_elsewhere_is_reset_by_lightning(tmp_path):
    """Lightning resets a metric object logged with self.log after its epoch value: no carry-over."""
    src = CARRIED.replace("HOOK", "on_validation_epoch_end").replace("RESET", 'self.log("f1_obj", self.val_f1)')
    assert codes(tmp_path, src) == []


# --- shared-metric ------------------------------------------------------------------------------------

SHARED = """
class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.acc = BinaryF1Score()
        self.other = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        return self.shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self.shared_step(batch, "val")

    def shared_step(self, batch, stage):
        x, y = batch
        self.acc(self(x), y)
        self.log(f"{stage}_acc", self.acc)
"""


def test_one_metric_updated_in_train_and_validation_through_a_helper_is_shared(tmp_path):
    """The helper both hooks call updates self.acc: one instance, two phases."""
    result = lint([str(_write(tmp_path, SHARED))])
    [finding] = result.findings
    assert (finding.code, finding.line) == ("shared-metric", line_of(SHARED, "self.acc(self(x), y)"))
    assert finding.fix == "use one metric instance per phase (e.g. self.train_acc and self.val_acc)"


def test_one_metric_per_phase_selected_by_stage_is_clean(tmp_path):
    """getattr(self, f"{stage}_acc") picks one instance per phase: not shared."""
    src = SHARED.replace(
        "self.acc = BinaryF1Score()", "self.train_acc = BinaryF1Score()\n        self.val_acc = BinaryF1Score()"
    )
    src = src.replace("self.acc(self(x), y)", 'metric = getattr(self, f"{stage}_acc")\n        metric(self(x), y)')
    src = src.replace('self.log(f"{stage}_acc", self.acc)', 'self.log(f"{stage}_acc", metric)')
    assert codes(tmp_path, src) == []


STAGED = """
class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.train_acc = BinaryF1Score()
        self.val_acc = BinaryF1Score()
        self.test_acc = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._step(batch, "test")

    def _step(self, batch, stage):
        x, y = batch
        if stage == "train":
            self.train_acc(self(x), y)
            self.log("train_acc", self.train_acc)
        elif stage == "val":
            self.val_acc(self(x), y)
            self.log("val_acc", self.val_acc)
        else:
            self.test_acc(self(x), y)
            self.log("test_acc", self.test_acc)
"""


def test_a_stage_helper_that_branches_on_the_stage_shares_nothing(tmp_path):
    """`if stage == "train": self.train_acc(...)` / `elif stage == "val": self.val_acc(...)` / `else:`: each
    metric is updated in its own phase only."""
    assert codes(tmp_path, STAGED) == []


@pytest.mark.parametrize("test", ['stage in ("val", "valid")', 'stage != "train"', "not self.training"])
def test_stage_tests_written_other_ways_are_followed(tmp_path, test):
    """`in`, `!=`, `not self.training`: the branch holds in the phases it names, the else in the others."""
    helper = f"""
    def _step(self, batch, stage):
        x, y = batch
        if stage == "test":
            self.test_acc(self(x), y)
        elif {test}:
            self.val_acc(self(x), y)
            self.log("val_acc", self.val_acc)
        else:
            self.train_acc(self(x), y)
            self.log("train_acc", self.train_acc)
"""
    src = STAGED[: STAGED.index("    def _step")] + helper.lstrip("\n")
    assert codes(tmp_path, src) == [], src


def test_one_metric_updated_in_two_branches_of_a_stage_helper_is_shared(tmp_path):
    """The same instance under `if stage == "train":` and under `else:` is still one metric in two phases."""
    src = STAGED.replace("self.val_acc(self(x), y)", "self.train_acc(self(x), y)").replace(
        'self.log("val_acc", self.val_acc)', 'self.log("val_acc", self.train_acc)'
    )
    assert findings(tmp_path, src) == [(line_of(src, "elif stage") + 1, "shared-metric")]


def test_one_metric_updated_for_several_dataloaders_is_shared(tmp_path):
    """validation_step(self, batch, batch_idx, dataloader_idx) updating one metric for every dataloader."""
    src = """
    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.f1 = BinaryF1Score()
            self.f1s = torch.nn.ModuleList([BinaryF1Score(), BinaryF1Score()])

        def validation_step(self, batch, batch_idx, dataloader_idx):
            x, y = batch
            self.f1.update(self(x), y)
            self.f1s[dataloader_idx].update(self(x), y)
            self.log("f1", self.f1)
    """
    assert findings(tmp_path, src) == [(line_of(src, "self.f1.update"), "shared-metric")]
    assert codes(tmp_path / "b", src.replace("dataloader_idx)", "dataloader_idx=0)")) == []


# --- stale-step-value ---------------------------------------------------------------------------------

STALE = """
class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.train_f1 = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.train_f1.update(self(x), y)
        self.log("train_f1", self.train_f1)
"""


def test_metric_object_updated_not_called_and_logged_on_step_is_stale(tmp_path):
    """training_step logs on_step by default; update() does not refresh the step value forward() would."""
    result = lint([str(_write(tmp_path, STALE))])
    [finding] = result.findings
    assert finding.code == "stale-step-value"
    assert (
        finding.fix
        == 'call self.train_f1(preds, target) (forward) before self.log("train_f1", self.train_f1, on_step=True)'
    )


def test_metric_object_after_forward_or_logged_on_epoch_only_is_clean(tmp_path):
    """forward() (calling the metric) refreshes the step value; on_step=False logs no step value."""
    assert codes(tmp_path / "a", STALE.replace("self.train_f1.update(", "self.train_f1(")) == []
    assert codes(tmp_path / "b", STALE.replace("self.train_f1)", "self.train_f1, on_step=False, on_epoch=True)")) == []


# --- helpers ------------------------------------------------------------------------------------------


def _write(root, source):
    import textwrap

    from lint_helpers import HEADER, write

    write(root, {"m.py": HEADER + textwrap.dedent(source)})
    return root


# --- patterns met in real code ------------------------------------------------------------------------


def test_values_returned_by_a_helper_method_are_followed(tmp_path):
    """metric_dict = self.compute_metrics(...) returning {k: metric(p, y) for k, metric in self.metrics.items()}."""
    src = """
    class M(pl.LightningModule):
        def configure_metrics(self):
            self.prec = torchmetrics.Precision(task="multiclass", num_classes=3, average="macro")
            self.acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
            self.metrics = {"precision": self.prec, "accuracy": self.acc}

        def compute_metrics(self, preds, labels, mode):
            return {f"{mode}_{k}": metric(preds, labels) for k, metric in self.metrics.items()}

        def validation_step(self, batch, batch_idx):
            x, y = batch
            metric_dict = self.compute_metrics(self(x), y, mode="val")
            self.log_dict(metric_dict, on_step=False, on_epoch=True)
    """
    assert findings(tmp_path, src) == [(line_of(src, "self.log_dict(metric_dict"), "batch-values-averaged")]
    only_accuracy = src.replace('"precision": self.prec, ', "")
    assert codes(tmp_path / "b", only_accuracy) == []


def test_best_so_far_metrics_carry_over_on_purpose(tmp_path):
    """MaxMetric tracking the best validation accuracy is never reset by design: no state-carried-over."""
    src = """
    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.val_acc = BinaryAccuracy()
            self.val_acc_best = torchmetrics.MaxMetric()

        def validation_step(self, batch, batch_idx):
            self.val_acc(*batch)
            self.log("val/acc", self.val_acc, on_step=False, on_epoch=True)

        def on_validation_epoch_end(self):
            self.val_acc_best(self.val_acc.compute())
            self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)
    """
    assert codes(tmp_path, src) == []


def test_a_metric_used_only_as_a_loss_in_both_phases_is_not_shared(tmp_path):
    """Its state is never read (no compute(), never logged as an object): sharing it changes no value."""
    src = """
    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.loss = torchmetrics.MeanSquaredError()

        def training_step(self, batch, batch_idx):
            return self.loss(*batch)

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.loss(*batch))
    """
    assert codes(tmp_path, src) == []
    read = src.replace(
        'self.log("val_loss", self.loss(*batch))', 'self.loss(*batch)\n            self.log("val_loss", self.loss)'
    )
    assert codes(tmp_path / "b", read) == ["shared-metric"]


@pytest.mark.parametrize(
    ("metric", "caught"),
    [
        ("torchmetrics.Precision(num_classes=5)", False),  # torchmetrics < 0.11: micro, multiclass
        ("torchmetrics.Precision(num_classes=5, average='macro')", True),
        ("torchmetrics.F1()", True),  # binary
        ("torchmetrics.text.BLEUScore()", True),
        ("torchmetrics.text.rouge.ROUGEScore()", False),  # a mean over sentences
        ("torchmetrics.detection.MeanAveragePrecision()", True),
    ],
)
def test_catalog_of_metrics_met_in_real_code(tmp_path, metric, caught):
    """Old-API micro precision is accuracy; BLEU and mAP are corpus-level; ROUGE is a mean of sentences."""
    src = FORWARD.replace("METRIC", metric)
    assert codes(tmp_path, src) == (["batch-values-averaged"] if caught else [])


@pytest.mark.parametrize(
    ("hook", "caught"),
    [
        ("test_step", True),  # on_epoch=True by default
        ("on_validation_batch_end", True),
        ("on_test_batch_end", True),
        ("on_train_batch_end", False),  # on_epoch=False by default
        ("on_after_backward", False),
        ("training_step_end", False),  # Lightning 1.x
        ("validation_step_end", True),  # Lightning 1.x
    ],
)
def test_each_hooks_default_on_epoch(tmp_path, hook, caught):
    """Lightning's per-hook defaults decide whether a bare self.log of compute() is averaged over the epoch."""
    src = f"""
    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.f1 = BinaryF1Score()

        def {hook}(self, *args):
            self.log("f1", self.f1.compute())
    """
    assert codes(tmp_path, src) == (["running-value-averaged"] if caught else [])


def test_a_class_the_check_cannot_model_is_one_error_and_the_rest_is_checked(tmp_path, monkeypatch):
    """A failure inside the analysis of one class (injected here) is one error naming it; others still checked."""
    from lmlogger.lint import _check

    class Failing(_check.ModuleCheck):
        def run(self):
            if self.table.info.name == "Deep":
                raise RecursionError("maximum recursion depth exceeded")
            return super().run()

    monkeypatch.setattr(_check, "ModuleCheck", Failing)
    src = RUNNING.replace("class M(", "class Deep(pl.LightningModule):\n    pass\n\n\nclass M(")
    result = lint([str(_write(tmp_path, src))])
    assert [f.code for f in result.findings] == ["running-value-averaged"]
    [error] = result.errors
    assert error.line == line_of(src, "class Deep(")
    assert "could not check class Deep: RecursionError(" in error.message
    assert result.exit_code == 2


def test_fix_of_an_element_view_logs_the_element_at_epoch_end(tmp_path):
    """compute()[0] in a step hook: the fix logs compute()[0] once per epoch, as the runtime advises."""
    src = RUNNING.replace("self.f1.compute()", "self.f1.compute()[0]")
    [finding] = lint([str(_write(tmp_path, src))]).findings
    assert (
        finding.fix
        == 'self.log("f1", self.f1.compute()[0]) in on_train_epoch_end, once per epoch, before self.f1.reset()'
    )


def test_fix_of_a_derived_value_follows_a_local_name(tmp_path):
    """pct = self.f1(p, y) * 100; self.log("pct", pct, on_epoch=True): the fix computes it from compute()."""
    src = RUNNING.replace(
        'self.log("f1", self.f1.compute(), on_epoch=True, on_step=False)',
        'pct = self.f1(self(x), y) * 100\n        self.log("pct", pct, on_epoch=True)',
    )
    [finding] = lint([str(_write(tmp_path, src))]).findings
    assert finding.code == "derived-value"
    assert finding.fix == (
        'self.log("pct", self.f1.compute() * 100) in on_train_epoch_end, once per epoch, before the metric\'s reset()'
    )


def test_fix_says_to_remove_a_reset_in_on_train_epoch_end(tmp_path):
    """Logging the object from training_step is only right without the module's own reset in on_train_epoch_end."""
    src = (
        RUNNING
        + """
    def on_train_epoch_end(self):
        self.f1.reset()
"""
    )
    [finding] = lint([str(_write(tmp_path, src))]).findings
    assert finding.fix == (
        'self.log("f1", self.f1, on_epoch=True, on_step=False); and remove the `self.f1.reset()` in '
        "`on_train_epoch_end`: Lightning resets logged metric objects itself"
    )
