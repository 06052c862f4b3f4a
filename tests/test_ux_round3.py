"""What a user sees, round three: a closing line after every fit/validate/test, decision warnings at the user's
own ``trainer.fit`` line, and nothing of the training machine's file system in a shared MLflow server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN = textwrap.dedent(
    """
    import sys, warnings
    import torch
    from lightning.pytorch import LightningModule, Trainer, seed_everything
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset
    from torchmetrics.classification import BinaryF1Score
    from lmlogger import VerifiedLogger

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    class Model(LightningModule):
        def __init__(self, wrong):
            super().__init__()
            self.wrong = wrong
            self.layer = torch.nn.Linear(4, 1)
            self.f1 = BinaryF1Score()
            self.val_f1 = BinaryF1Score()

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.layer(x).squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
            self.f1.update(logits.sigmoid(), y)
            self.log("f1", self.f1.compute() if self.wrong else self.f1, on_step=False, on_epoch=True)
            self.log("loss", loss, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            if not self.wrong:
                self.log("val_loss", self.layer(batch[0]).pow(2).mean())
                return
            # epoch 0: batch F1s 1.0 and 0.18 (logged 0.59, true 0.31); epoch 1: 1.0 and 0.0 (logged 0.5, true 0.86)
            epoch = 0 if self.trainer.sanity_checking else self.current_epoch
            tp, fp, fn, tn = [[(1, 0, 0, 9), (1, 0, 9, 0)], [(3, 0, 0, 7), (0, 0, 1, 9)]][epoch % 2][batch_idx % 2]
            preds = torch.tensor([0.9] * (tp + fp) + [0.1] * (fn + tn))
            target = torch.tensor([1] * tp + [0] * fp + [1] * fn + [0] * tn)
            self.log("val_f1", self.val_f1(preds, target), batch_size=10)  # per-batch values averaged

        def on_train_epoch_end(self):
            if self.wrong:
                self.f1.reset()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=float(sys.argv[2]))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(90, 4, generator=g)
    data = DataLoader(TensorDataset(x, (x[:, 0] + torch.randn(90, generator=g) > 0).long()), batch_size=16)
    val = DataLoader(TensorDataset(x[:20], x[:20, 0] > 0), batch_size=10)
    seed_everything(0, verbose=False)
    wrong = sys.argv[1] == "wrong"
    logger = VerifiedLogger(CSVLogger("logs", name=sys.argv[1]))
    callbacks = [ModelCheckpoint(monitor="val_f1", mode="max")] if wrong else []
    trainer = Trainer(max_epochs=2, num_sanity_val_steps=0, logger=logger, callbacks=callbacks,
                      enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1, accelerator="cpu")
    trainer.fit(Model(wrong), data, val)  # FIT LINE
    trainer.validate(Model(wrong), val, verbose=False)  # VALIDATE LINE
    """
)


def _train(tmp_path, which: str, lr: str = "0.5") -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    return subprocess.run(
        [sys.executable, str(script), which, lr],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT, "PYTHONWARNINGS": "default"},
    )


def _line_of(marker: str) -> int:
    return next(n for n, line in enumerate(TRAIN.splitlines(), 1) if marker in line)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("closing")
    return tmp, _train(tmp, "wrong", "2.0"), _train(tmp, "right")


def test_a_clean_run_ends_with_one_line_saying_what_lmlogger_found_and_where(runs):
    """A clean run prints nothing alarming, but one line per stage: the counts and where the report is."""
    _, _, clean = runs
    assert clean.returncode == 0, clean.stderr[-3000:]
    lines = [line for line in clean.stderr.splitlines() if line.startswith("lmlogger (")]
    run = os.path.join("logs", "right", "version_0")
    page = os.path.join(run, "lmlogger", "report.html")
    assert lines == [
        f"lmlogger (fit): 3 keys: 3 match. Report: {page}; `lmlogger audit {run}`",
        f"lmlogger (validate): 3 keys: 3 match. Report: {page}; `lmlogger audit {run}`",
    ]
    assert "UserWarning: lmlogger" not in clean.stderr


def test_a_mismatch_run_ends_with_the_counts_and_the_page(runs):
    """A mismatch run gets its key warning once, and the closing line counts the mismatch beside the matches."""
    tmp, wrong, _ = runs
    assert wrong.returncode == 0, wrong.stderr[-3000:]
    run = os.path.join("logs", "wrong", "version_0")
    closing = [line for line in wrong.stderr.splitlines() if line.startswith("lmlogger (fit)")]
    assert closing == [
        f"lmlogger (fit): 3 keys: 1 match, 2 mismatch. Report: {os.path.join(run, 'lmlogger', 'report.html')}; "
        f"`lmlogger audit {run}`"
    ]
    assert os.path.isfile(tmp / run / "lmlogger" / "report.html")
    fit = wrong.stderr.split("lmlogger (fit)")[0]  # one warning per key in the fit (the validate has its own)
    assert fit.count("UserWarning: lmlogger: `f1` logged") == 1
    assert fit.count("UserWarning: lmlogger: `val_f1` logged") == 1


def test_decision_warnings_point_at_the_users_fit_line(runs):
    """The checkpoint decision taken on a mismatched key is warned about at the user's ``trainer.fit(...)`` line,
    as the key warnings are, not inside lmlogger."""
    tmp, wrong, _ = runs
    script = str(tmp / "train.py")
    decision = [line for line in wrong.stderr.splitlines() if "UserWarning: lmlogger: ModelCheckpoint" in line]
    assert decision, wrong.stderr[-3000:]
    assert all(line.startswith(f"{script}:{_line_of('# FIT LINE')}: UserWarning") for line in decision), decision
    assert not re.search(r"lmlogger/runtime/\S+\.py:\d+: UserWarning", wrong.stderr)


# -- the install a hook or a CI job does pulls no training stack ------------------------------------------------
def test_core_install_requires_no_torch_lightning_or_torchmetrics():
    """`pip install lmlogger` (no extra) is the readers: none of its requirements is the training stack; the
    `lightning` extra brings Lightning and torchmetrics, and the test extra trains too."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    heavy = re.compile(r"^(torch|lightning|pytorch-lightning|torchmetrics)\b")
    assert not [r for r in project["dependencies"] if heavy.match(r)]
    extras = project["optional-dependencies"]
    assert {r.split(">")[0] for r in extras["lightning"]} == {"lightning", "torchmetrics"}
    assert set(extras["lightning"]) <= set(extras["test"]) and set(extras["lightning"]) <= set(extras["all"])


def test_verified_logger_without_lightning_says_what_to_install():
    """Where Lightning is not installed, `from lmlogger import VerifiedLogger` stops with one line naming the extra;
    `import lmlogger` and the readers still work."""
    code = textwrap.dedent(
        """
        import sys
        class NoLightning:  # the training stack is not installed
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("lightning", "torch", "torchmetrics", "pytorch_lightning"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoLightning())
        import lmlogger, lmlogger.lint, lmlogger.cli
        try:
            from lmlogger import VerifiedLogger
        except ModuleNotFoundError as err:
            print(err)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()  # the first missing module of the stack is named, whichever is met first
    assert re.fullmatch(
        r"lmlogger\.VerifiedLogger needs PyTorch Lightning and torchmetrics \((torch|lightning|torchmetrics) is not "
        r"installed\): pip install 'lmlogger\[lightning\]' \(`lmlogger lint` and `lmlogger audit` need neither\)",
        line,
    ), line


def test_readme_names_lint_wandb_and_every_finding():
    """The README a new user reads first mentions the static check, W&B and every finding code."""
    from lmlogger.records._records import FINDINGS

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    assert "lmlogger lint" in readme and "Weights & Biases" in readme
    missing = [code for code in FINDINGS if f"`{code}`" not in readme]
    assert not missing
    assert "docs/verdicts.md#findings" in readme


def test_readme_test_command_is_what_ci_runs():
    """The README's test command and `.ci/run`'s are one command."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as fh:
        ci = fh.read()
    commands = re.findall(r"^python -c \"import torch\".*$", readme, re.M)
    assert len(commands) == 2
    assert commands[1] in ci.splitlines()
    assert "'.[lightning,tensorboard]'" in commands[0] and commands[0].endswith("python examples/quickstart.py")


# -- folder and checkpoint audits say what they read --------------------------------------------------------------
def test_a_folder_audit_prints_each_runs_decisions_beside_it_and_counts_the_runs(runs):
    """A folder of two runs: the mismatch run's decisions follow its own table (not the last run's), and the
    audit ends with how many runs it read."""
    tmp, _, _ = runs
    import lmlogger

    lines = lmlogger.audit(str(tmp / "logs")).to_table().splitlines()
    headers = [n for n, line in enumerate(lines) if "(csv, complete; stages: fit, validate)" in line]
    assert len(headers) == 2
    decisions = next(n for n, line in enumerate(lines) if line.startswith("decisions ("))
    wrong = next(n for n in headers if "wrong" in lines[n])
    assert "wrong" in lines[decisions]
    assert wrong < decisions and not any(wrong < n < decisions for n in headers if n != wrong)
    assert lines[-1] == "2 runs read"


def test_a_checkpoint_audit_says_what_a_checkpoint_cannot_tell(runs):
    """A checkpoint holds each key's last closed epoch, not how it was logged: the audit says so and shows no
    `unknown` provenance or hook as a fact, and points at the run for the rest."""
    tmp, _, _ = runs
    import glob

    import lmlogger

    [ckpt] = glob.glob(str(tmp / "logs" / "wrong" / "version_0" / "checkpoints" / "*.ckpt"))
    text = lmlogger.audit(ckpt).to_table()
    assert "unknown" not in text
    assert "checkpoint: each key's last closed epoch, the gap that epoch's, not the run's worst" in text
    assert f"`lmlogger audit {os.path.join('logs', 'wrong', 'version_0')}`" in text
    assert "stages: -" not in text
