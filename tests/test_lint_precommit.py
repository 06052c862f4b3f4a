"""The pre-commit hook `lmlogger-lint` works in a fresh git repository (`pre-commit try-repo`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRE_COMMIT = shutil.which("pre-commit")

WRONG = textwrap.dedent(
    """
    import lightning.pytorch as pl
    from torchmetrics.classification import BinaryF1Score


    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.val_f1 = BinaryF1Score()

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_f1", self.val_f1(self(x), y))
    """
)


@pytest.fixture(autouse=True)
def _no_patch_left_behind():
    """The static check patches nothing: the suite's gc-heavy check is moot here."""
    yield


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.mark.slow
@pytest.mark.skipif(PRE_COMMIT is None, reason="pre-commit is not installed (pip install pre-commit)")
def test_pre_commit_try_repo_runs_the_hook_in_a_fresh_repository(tmp_path):
    """A wrong module fails the hook with the finding printed; after the fix the hook passes."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "model.py").write_text(WRONG)
    git(repo, "add", "model.py")
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        # the hook's virtualenv sees the installed lightning/torchmetrics instead of downloading them
        "VIRTUALENV_SYSTEM_SITE_PACKAGES": "true",
    }
    env.pop("PYTHONPATH", None)
    command = [PRE_COMMIT, "try-repo", str(ROOT), "lmlogger-lint", "--all-files"]
    failed = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=540)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "lmlogger lint" in failed.stdout and "Failed" in failed.stdout
    assert "model.py:13:9: batch-values-averaged `val_f1`" in failed.stdout
    assert (  # the update the old call made stays
        'fix: self.val_f1.update(self(x), y); self.log("val_f1", self.val_f1, on_epoch=True, on_step=False)'
        in failed.stdout
    )

    fixed = WRONG.replace(
        'self.log("val_f1", self.val_f1(self(x), y))',
        'self.val_f1(self(x), y)\n        self.log("val_f1", self.val_f1)',
    )
    (repo / "model.py").write_text(fixed)
    git(repo, "add", "model.py")
    passed = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=540)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout
