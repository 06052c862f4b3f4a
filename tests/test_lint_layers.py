"""The static check is a reader: it never imports torch, Lightning or torchmetrics, and words its fixes as the
runtime does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lmlogger.lint import _fixes
from lmlogger.records import _verify

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_patch_left_behind():
    """The static check patches nothing: the suite's gc-heavy check is moot here."""
    yield


def test_lint_imports_no_torch_lightning_or_torchmetrics(tmp_path):
    """With torch, lightning, pytorch_lightning, torchmetrics and numpy unimportable, `lmlogger lint` runs and finds."""
    (tmp_path / "m.py").write_text(
        textwrap.dedent(
            """
            import lightning.pytorch as pl
            from torchmetrics.classification import BinaryF1Score

            class M(pl.LightningModule):
                def __init__(self):
                    super().__init__()
                    self.f1 = BinaryF1Score()

                def training_step(self, batch, batch_idx):
                    self.log("f1", self.f1.compute(), on_epoch=True)
            """
        )
    )
    script = textwrap.dedent(
        f"""
        import sys, importlib.abc

        BLOCKED = ("torch", "lightning", "pytorch_lightning", "torchmetrics", "numpy")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"lint imported {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(ROOT)!r})
        from lmlogger.cli import main  # the command line, as `lmlogger lint` runs it
        code = main(["lint", {str(tmp_path)!r}, "--format", "json"])
        print(code)
        print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2:] == ["1", "[]"], proc.stdout
    assert '"code": "running-value-averaged"' in proc.stdout


def _facts(**kw):
    base = dict(
        name="val_f1",
        kind="metric_compute",
        hook="validation_step",
        step_hook=True,
        on_step=False,
        on_epoch=True,
        attribute="val_f1",
        phase="val",
    )
    base.update(kw)
    return _verify.Facts(**base)


@pytest.mark.parametrize(
    ("facts", "code", "lint_fix"),
    [
        (_facts(), "running-value-averaged", _fixes.log_object('"val_f1"', "self.val_f1", False)),
        (
            _facts(kind="metric_forward", on_step=True),
            "batch-values-averaged",
            _fixes.log_object('"val_f1"', "self.val_f1", True),
        ),
        (
            _facts(name="f1", attribute="f1", phase="train", hook="training_step", reset_hooks=("on_train_epoch_end",)),
            "running-value-averaged",
            _fixes.log_object('"f1"', "self.f1", False, remove="on_train_epoch_end"),
        ),
        (
            _facts(index=(0,)),
            "running-value-averaged",
            _fixes.element_at_epoch_end('"val_f1"', "self.val_f1", "[0]", "val"),
        ),
        (
            _facts(
                kind="tensor",
                derived_source="self.val_f1.compute()",
                derived_epoch_expression="self.val_f1.compute() * 100",
            ),
            "derived-value",
            _fixes.derived('"val_f1"', "self.val_f1.compute() * 100", "val"),
        ),
        (
            _facts(hook="on_validation_epoch_end", step_hook=False, carried=1),
            "state-carried-over",
            _fixes.reset_after_logging("'val_f1'", "self.val_f1", "val"),
        ),
        (_facts(attribute="train_acc", shared=True), "shared-metric", _fixes.one_instance_per_phase("self.train_acc")),
        (
            _facts(shared=True, shared_dataloaders=True),
            "shared-metric",
            _fixes.one_instance_per_dataloader("val_f1", "self.val_f1"),
        ),
        (
            _facts(kind="metric_object", on_step=True, stale=True),
            "stale-step-value",
            _fixes.call_forward('"val_f1"', "self.val_f1"),
        ),
    ],
)
def test_lint_fixes_are_worded_as_the_runtime_words_them(facts, code, lint_fix):
    """For the same facts, lmlogger.records._verify.fix_for (runtime) and lmlogger.lint (static) write the same fix."""
    assert _verify.fix_for(facts, [code]) == lint_fix.text
