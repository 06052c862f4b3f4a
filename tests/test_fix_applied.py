"""A printed fix is a promise: applied, the program still trains and every key verifies `match`.

One module holds the common wrong forms at once (a forward() inside the call with on_step False, True and
the hook's default, compute() in a step hook with and without a reset, compute() at epoch end without a
reset, log_dict of a MetricCollection call, an element view, a derived value, a forward() value kept in a
local). It is trained once as written: the runtime and lint print the same fix for each line. Then
`lmlogger lint --fix` rewrites it, and it is trained once more: every key `match`, and every stored value
equal to the truth recomputed from all predictions. Two Trainer runs in all.
"""

from __future__ import annotations

import importlib.util
import shutil
import textwrap

import pytest
import torch
import torchmetrics.functional.classification as F
from helpers import loader, seeded, trainer
from lightning.pytorch.loggers import CSVLogger

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.cli import main as cli
from lmlogger.lint import lint

WRONG = """\
import torch
from lightning.pytorch import LightningModule
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    MulticlassF1Score,
)

SEEN = []  # (phase, epoch, probs, target) of every batch: the truth, kept outside lmlogger


class Model(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.train_auroc = BinaryAUROC()
        self.train_f1 = BinaryF1Score()
        self.run_f1 = BinaryF1Score()
        self.noreset = BinaryPrecision()
        self.kept = BinaryRecall()
        self.train_metrics = MetricCollection({"prec": BinaryPrecision(), "rec": BinaryRecall()}, prefix="train_")
        self.mc = MulticlassF1Score(num_classes=2, average=None)
        self.pct = BinaryF1Score()
        self.val_f1 = BinaryF1Score()
        self.val_auroc = BinaryAUROC()
        self.bacc = BinaryAccuracy()  # forward() values in both phases: its state is never read

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        probs = logits.sigmoid().detach()
        SEEN.append(("train", self.current_epoch, probs, y))
        self.log("train_auroc", self.train_auroc(probs, y), on_step=False, on_epoch=True)
        self.log("train_f1", self.train_f1(probs, y), on_step=True, on_epoch=True)  # the step curve too
        self.run_f1.update(probs, y)
        self.log("run_f1", self.run_f1.compute(), on_epoch=True, on_step=False)
        self.noreset.update(probs, y)
        self.log("noreset", self.noreset.compute(), on_epoch=True, on_step=False)
        recall = self.kept(probs, y)
        self.log("kept", recall, on_epoch=True, on_step=False)
        self.log_dict(
            self.train_metrics(probs, y),
            on_step=False,
            on_epoch=True,
        )
        self.log("f1_class1", self.mc(torch.stack([1 - probs, probs], -1), y)[1], on_step=False, on_epoch=True)
        self.log("pct", self.pct(probs, y) * 100, on_step=False, on_epoch=True)
        self.log("train_bacc", self.bacc(probs, y))
        return loss

    def on_train_epoch_end(self):
        self.run_f1.reset()
        self.mc.reset()
        self.pct.reset()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        probs = self.layer(x).squeeze(-1).sigmoid()
        SEEN.append(("sanity" if self.trainer.sanity_checking else "val", self.current_epoch, probs, y))
        self.val_f1.update(probs, y)
        self.log("val_auroc", self.val_auroc(probs, y))
        self.log("val_bacc", self.bacc(probs, y))  # a mean of samples: the epoch mean is exact

    def on_validation_epoch_end(self):
        self.log("val_f1", self.val_f1.compute())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)
"""

#: The line of each key's logging call, by a piece of its text.
LINE_OF = {
    "train_auroc": 'self.log("train_auroc"',
    "train_f1_epoch": 'self.log("train_f1"',
    "run_f1": 'self.log("run_f1"',
    "noreset": 'self.log("noreset"',
    "kept": 'self.log("kept"',
    "train_prec": "self.log_dict(",
    "train_rec": "self.log_dict(",
    "f1_class1": 'self.log("f1_class1"',
    "pct": 'self.log("pct"',
    "val_auroc": 'self.log("val_auroc"',
    "val_f1": 'self.log("val_f1"',
}


def _stack(p: torch.Tensor) -> torch.Tensor:
    return torch.stack([1 - p, p], -1)


#: The true epoch value of each key, from the epoch's predictions and targets.
TRUTH = {
    "train_auroc": F.binary_auroc,
    "train_f1_epoch": F.binary_f1_score,
    "run_f1": F.binary_f1_score,
    "noreset": F.binary_precision,
    "kept": F.binary_recall,
    "train_prec": F.binary_precision,
    "train_rec": F.binary_recall,
    "f1_class1": lambda p, y: F.multiclass_f1_score(_stack(p), y, num_classes=2, average=None)[1],
    "pct": lambda p, y: F.binary_f1_score(p, y) * 100,
    "val_auroc": F.binary_auroc,
    "val_f1": F.binary_f1_score,
    "val_bacc": F.binary_accuracy,
}


def _train(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(path.parent), name=name), on_mismatch="ignore")
    trainer(logger, path.parent, max_epochs=2, num_sanity_val_steps=2).fit(module.Model(), loader(), loader(40, seed=1))
    return lmlogger.audit(logger.log_dir).by_key(), module.SEEN


def _line(source: str, piece: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if piece in line)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The module trained as written, then fixed by `lmlogger lint --fix` (twice: the second changes nothing)
    and trained again."""
    tmp = tmp_path_factory.mktemp("fixes")
    wrong = tmp / "wrong" / "model.py"
    wrong.parent.mkdir()
    wrong.write_text(WRONG)
    before, _ = _train(wrong, "wrong")
    lint_before = lint([str(wrong)])
    fixed = tmp / "fixed" / "model.py"
    fixed.parent.mkdir()
    shutil.copy(wrong, fixed)
    codes = [cli(["lint", "--fix", str(fixed)])]
    once = fixed.read_text()
    codes.append(cli(["lint", "--fix", str(fixed)]))
    lint_after = lint([str(fixed)])
    after, seen = _train(fixed, "fixed")
    return {
        "before": before,
        "lint_before": lint_before,
        "codes": codes,
        "once": once,
        "twice": fixed.read_text(),
        "lint_after": lint_after,
        "after": after,
        "seen": seen,
    }


def test_runtime_and_lint_print_the_same_fix_for_each_line(runs):
    """Every key the runtime finds wrong has lint's finding on its line, with the same fix text."""
    by_line = {}
    for finding in runs["lint_before"].findings:
        by_line.setdefault(finding.line, set()).add(finding.fix)
    wrong = {key: k for key, k in runs["before"].items() if k.fix}
    assert set(wrong) == set(LINE_OF)
    for key, k in wrong.items():
        assert by_line.get(_line(WRONG, LINE_OF[key])) == {k.fix}, key


def test_the_fix_of_a_forward_inside_the_call_keeps_the_update(runs):
    """`self.log("k", self.m(p, y), on_step=False, on_epoch=True)`: update() stays; with on_step=True, forward."""
    before = runs["before"]
    assert before["train_auroc"].fix == (
        'self.train_auroc.update(probs, y); self.log("train_auroc", self.train_auroc, on_epoch=True, on_step=False)'
    )
    assert before["train_f1_epoch"].fix == (
        'self.train_f1(probs, y); self.log("train_f1", self.train_f1, on_epoch=True, on_step=True)'
    )
    assert before["val_auroc"].fix.startswith("self.val_auroc.update(probs, y); ")  # validation_step's default
    assert before["kept"].fix == 'self.log("kept", self.kept, on_epoch=True, on_step=False)'  # updated above it
    assert (
        before["train_prec"].fix
        == before["train_rec"].fix
        == ("self.train_metrics.update(probs, y); self.log_dict(self.train_metrics, on_epoch=True, on_step=False)")
    )
    assert before["f1_class1"].fix.startswith(
        "self.mc.update(torch.stack([1 - probs, probs], -1), y) in place of the call; "
    )


def test_lint_fix_gives_a_module_that_trains_with_every_key_match_and_true_values(runs):
    """After `lmlogger lint --fix`: lint is clean, a second --fix changes nothing, every key is `match`, and
    every stored epoch value equals the truth recomputed from all predictions of that epoch."""
    assert runs["codes"] == [0, 0]
    assert runs["once"] == runs["twice"]
    assert runs["lint_after"].findings == [] and runs["lint_after"].errors == []
    after = runs["after"]
    assert {k for k, v in after.items() if v.epochs} >= set(LINE_OF)
    for key, report in after.items():
        if not report.epochs:
            continue
        assert report.verdict == "match" and report.findings == [], (key, report.findings, runs["once"])
    seen = runs["seen"]
    for key, truth in TRUTH.items():
        phase = "val" if key.startswith("val") else "train"
        assert [e.epoch for e in after[key].epochs] == [0, 1], key
        for e in after[key].epochs:
            batches = [(p, y) for ph, ep, p, y in seen if (ph, ep) == (phase, e.epoch)]
            value = float(truth(torch.cat([p for p, _ in batches]), torch.cat([y for _, y in batches])))
            assert e.logged == pytest.approx(value, rel=1e-5, abs=1e-6), (key, e.epoch)


def test_a_metric_used_only_for_forward_values_in_two_phases_is_not_shared(runs):
    """`self.bacc(probs, y)` logged in training and validation: each value is its batch's alone, so neither
    the runtime nor lint says `shared-metric` (the state nobody reads mixes phases, harmlessly)."""
    before = runs["before"]
    assert before["val_bacc"].verdict == "match" and before["val_bacc"].findings == []
    assert not [f for f in runs["lint_before"].findings if f.code == "shared-metric"]


def test_lint_fix_keeps_formatting_and_comments_around_the_edit(runs):
    """Lines outside the edits are unchanged; a comment at the end of an edited line stays."""
    once = runs["once"]
    assert "self.train_f1(probs, y)\n" in once
    assert 'self.log("train_f1", self.train_f1, on_epoch=True, on_step=True)  # the step curve too' in once
    assert "    def configure_optimizers(self):\n        return torch.optim.SGD(self.parameters(), lr=0.3)\n" in once
    assert "SEEN = []  # (phase, epoch, probs, target) of every batch: the truth, kept outside lmlogger" in once
    assert "        self.train_metrics.update(probs, y)\n        self.log_dict(self.train_metrics" in once
    hook = once.split("def on_train_epoch_end(self):\n", 1)[1].split("\n\n", 1)[0]
    assert hook.splitlines() == [
        '        self.log("f1_class1", self.mc.compute()[1])',
        '        self.log("pct", self.pct.compute() * 100)',
        "        self.mc.reset()",
        "        self.pct.reset()",
    ]  # moved before the resets; the run_f1 reset is gone (Lightning resets a logged object itself)
    assert "self.val_f1.compute())\n        self.val_f1.reset()\n" in once


def test_lint_diff_prints_the_change_and_writes_nothing(tmp_path, capsys):
    """--diff shows the unified diff of what --fix would write, exits 1, and leaves the file as it was."""
    path = tmp_path / "model.py"
    path.write_text(WRONG)
    assert cli(["lint", "--diff", str(path)]) == 1
    out = capsys.readouterr().out
    assert path.read_text() == WRONG
    assert f"--- {path}" in out or "--- " in out
    assert '-        self.log("train_auroc", self.train_auroc(probs, y), on_step=False, on_epoch=True)\n' in out
    assert "+        self.train_auroc.update(probs, y)\n" in out


UNSURE = """
import torch
from lightning.pytorch import LightningModule
from torchmetrics.classification import BinaryF1Score, MulticlassF1Score


class M(LightningModule):
    def __init__(self):
        super().__init__()
        self.f1 = BinaryF1Score()
        self.train_mc = MulticlassF1Score(num_classes=3, average=None)
        self.val_mc = MulticlassF1Score(num_classes=3, average=None)

    def training_step(self, batch, batch_idx):
        p, y = batch
        n = 1; self.log("f1", self.f1(p, y), on_epoch=True, on_step=False)
        return self._shared(p, y, "train")

    def _shared(self, p, y, stage):
        metric = getattr(self, f"{stage}_mc")
        metric.update(p, y)
        self.log(f"{stage}_c1", metric.compute()[1], on_epoch=True, on_step=False)
"""


def test_lint_fix_leaves_what_it_is_unsure_of_and_says_so(tmp_path, capsys):
    """A call sharing its line with other code, or an epoch-end move needing the step's local names, is
    reported as not auto-fixable and left as written."""
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent(UNSURE))
    assert cli(["lint", "--fix", str(path)]) == 1
    out = capsys.readouterr().out
    assert path.read_text() == textwrap.dedent(UNSURE)
    assert "not auto-fixable: the statement shares its line with other code" in out
    assert "not auto-fixable: the moved statement needs local names of the step: stage" in out
    assert "Fixed 0 findings in 0 file(s); 2 left." in out


def test_a_half_applied_fix_is_caught_before_a_run(tmp_path):
    """The object logged with its update dropped (the fix of a forward inside the call, half applied):
    never-updated, with the update to add."""
    src = WRONG.replace(
        'self.log("train_auroc", self.train_auroc(probs, y), on_step=False, on_epoch=True)',
        'self.log("train_auroc", self.train_auroc, on_step=False, on_epoch=True)',
    )
    (tmp_path / "m.py").write_text(src)
    found = [f for f in lint([str(tmp_path)]).findings if f.code == "never-updated"]
    assert [(f.line, f.message.split(":")[0]) for f in found] == [
        (_line(src, 'self.log("train_auroc"'), "`self.train_auroc`")
    ]
    assert found[0].fix == (
        'self.train_auroc.update(preds, target) in the step, before self.log("train_auroc", self.train_auroc)'
    )


SERVES_TWO = """
from lightning.pytorch import LightningModule
from torchmetrics.classification import BinaryF1Score


class M(LightningModule):
    def __init__(self):
        super().__init__()
        self.f1 = BinaryF1Score()

    def training_step(self, batch, batch_idx):
        return self._shared(batch)

    def validation_step(self, batch, batch_idx):
        return self._shared(batch)

    def _shared(self, batch):
        p, y = batch
        self.log("f1", self.f1(p, y), on_epoch=True, on_step=False)
"""


def test_lint_fix_leaves_a_call_that_serves_two_phases_with_one_metric(tmp_path, capsys):
    """Logging the object from a helper both phases call would make one state serve both: not fixed."""
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent(SERVES_TWO))
    assert cli(["lint", "--fix", str(path)]) == 1
    assert path.read_text() == textwrap.dedent(SERVES_TWO)
    assert "not auto-fixable: one call serves several phases with one metric instance" in capsys.readouterr().out


NO_HOOK = """
from lightning.pytorch import LightningModule
from torchmetrics.classification import MulticlassF1Score


class M(LightningModule):
\tdef __init__(self):
\t\tsuper().__init__()
\t\tself.mc = MulticlassF1Score(num_classes=3, average=None)

\tdef training_step(self, batch, batch_idx):
\t\tp, y = batch
\t\tself.log("c1", self.mc(p, y)[1], on_epoch=True, on_step=False)
"""


def test_lint_fix_makes_the_epoch_hook_and_checks_again_until_clean(tmp_path):
    """An element view with no epoch-end hook: the update stays, the hook is made (with the file's own tab
    indentation) and, in the next pass, the reset the moved compute() needs is added after it."""
    path = tmp_path / "m.py"
    path.write_text(NO_HOOK)
    assert cli(["lint", "--fix", str(path)]) == 0
    assert path.read_text().endswith(
        "\t\tself.mc.update(p, y)\n\n"
        "\tdef on_train_epoch_end(self):\n"
        '\t\tself.log("c1", self.mc.compute()[1])\n'
        "\t\tself.mc.reset()\n"
    )
    assert lint([str(path)]).findings == []
