"""LightningCLI: `trainer.logger` as `class_path: lmlogger.VerifiedLogger`, the wrapped logger nested in init_args."""

import gc
import importlib
import os
import re

import pytest
import yaml
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

import lmlogger
from lmlogger import MismatchError, VerifiedLogger
from lmlogger.runtime._logger import Options

pytest.importorskip("jsonargparse", reason="LightningCLI needs jsonargparse: pip install 'jsonargparse[signatures]'")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
CONFIG = os.path.join(EXAMPLES, "cli_config.yaml")


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)
    monkeypatch.setattr("sys.argv", ["lightning_cli.py"])  # the CLI reads args=..., not pytest's argv
    return importlib.import_module("lightning_cli")


def verdicts(run_dir):
    return {k.key: k.verdict for k in lmlogger.audit(run_dir).runs[0].keys}


def test_yaml_config_wraps_the_nested_logger_and_the_fit_is_verified(example, tmp_path, capsys):
    """The example YAML gives a VerifiedLogger around a TensorBoardLogger; fit is verified and the config saved."""
    args = ["fit", "--config", CONFIG, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"]
    args.append(f"--trainer.logger.init_args.logger.init_args.save_dir={tmp_path}")
    with pytest.warns(UserWarning, match=r"lmlogger: `f1_wrong` logged .*\(running-value-averaged\)"):
        cli = example.main(args)
    logger = cli.trainer.logger
    assert isinstance(logger, VerifiedLogger) and isinstance(logger, TensorBoardLogger)
    assert logger.options == Options(rtol=1e-4, atol=1e-6, on_mismatch="warn", reference_prefix="lmlogger/reference/")
    assert logger.log_dir == os.path.join(str(tmp_path), "cli", "version_0") == cli.trainer.log_dir
    assert verdicts(logger.log_dir) == {"f1_right": "match", "f1_wrong": "mismatch", "loss_epoch": "match"}
    assert re.search(
        r"^f1_wrong +mismatch .* metric_compute$", capsys.readouterr().out, re.M
    )  # the example prints the audit
    with open(os.path.join(logger.log_dir, "config.yaml")) as fh:
        saved = yaml.safe_load(fh)["trainer"]["logger"]
    assert saved["class_path"] == "lmlogger.VerifiedLogger"
    assert saved["init_args"]["logger"]["class_path"] == "lightning.pytorch.loggers.TensorBoardLogger"
    assert saved["init_args"]["on_mismatch"] == "warn"
    # one `prefix` in the saved config, the wrapped logger's own; lmlogger's is `reference_prefix`
    assert saved["init_args"]["reference_prefix"] == "lmlogger/reference/"
    assert "prefix" not in saved["init_args"] and "prefix" in saved["init_args"]["logger"]["init_args"]
    del cli, logger
    gc.collect()


def test_command_line_overrides_the_yaml(example, tmp_path):
    """`--trainer.logger.init_args.on_mismatch=raise` on the command line: fit stops with MismatchError."""
    args = [
        "fit",
        "--config",
        CONFIG,
        "--trainer.max_epochs=1",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.logger.init_args.save_dir={tmp_path}",
        "--trainer.logger.init_args.on_mismatch=raise",
        "--trainer.logger.init_args.rtol=0.001",
    ]
    with pytest.raises(MismatchError) as failure:
        example.main(args)
    assert "`f1_wrong` logged" in str(failure.value)
    assert 'Fix: self.log("f1_wrong", self.f1_running, on_epoch=True, on_step=False)' in str(failure.value)
    run_dir = os.path.join(str(tmp_path), "cli", "version_0")
    assert verdicts(run_dir)["f1_wrong"] == "mismatch"  # the records were written before the raise
    with open(os.path.join(run_dir, "lmlogger", "provenance.jsonl")) as fh:
        header = yaml.safe_load(fh.readline())
    assert header["options"]["rtol"] == 0.001 and header["options"]["on_mismatch"] == "raise"
    del failure
    gc.collect()


def test_logger_given_on_the_command_line_alone(example, tmp_path):
    """No config file: class_path and nested logger come from flags."""
    args = [
        "fit",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=lmlogger.VerifiedLogger",
        "--trainer.logger.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.logger.save_dir={tmp_path}",
        "--trainer.logger.on_mismatch=ignore",
        "--trainer.logger.reference_prefix=ref/",
    ]
    cli = example.main(args)
    logger = cli.trainer.logger
    assert isinstance(logger, CSVLogger) and logger.options.on_mismatch == "ignore"
    assert verdicts(logger.log_dir)["f1_wrong"] == "mismatch"
    with open(os.path.join(logger.log_dir, "metrics.csv")) as fh:
        assert "ref/f1_wrong" in fh.readline().split(",")
    del cli, logger
    gc.collect()


def test_saved_config_reproduces_the_run(example, tmp_path):
    """The config.yaml LightningCLI saves beside the run rebuilds the same verified logger and the same values."""
    base = ["--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"]
    base.append(f"--trainer.logger.init_args.logger.init_args.save_dir={tmp_path}")
    base.append("--trainer.logger.init_args.on_mismatch=ignore")
    cli = example.main(["fit", "--config", CONFIG, *base])
    first = cli.trainer.logger.log_dir
    del cli
    cli = example.main(["fit", "--config", os.path.join(first, "config.yaml")])
    second = cli.trainer.logger.log_dir
    assert isinstance(cli.trainer.logger, VerifiedLogger) and second != first
    a, b = lmlogger.audit(first).by_key(), lmlogger.audit(second).by_key()
    assert {k: v.verdict for k, v in a.items()} == {k: v.verdict for k, v in b.items()}
    for key in a:
        assert [e.logged for e in a[key].epochs] == pytest.approx([e.logged for e in b[key].epochs], rel=1e-6)
    del cli
    gc.collect()


def test_switches_of_lmloggers_additions_from_the_command_line(example, tmp_path):
    """`--trainer.logger.init_args.reference_metrics=false` (and `tracker_extras`, `html_report`): the options of the
    logger LightningCLI builds, beside the YAML's own (no run needed)."""
    from lightning.pytorch.cli import LightningCLI

    args = [
        "--config",
        CONFIG,
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.logger.init_args.save_dir={tmp_path}",
        "--trainer.logger.init_args.reference_metrics=false",
        "--trainer.logger.init_args.tracker_extras=false",
        "--trainer.logger.init_args.html_report=false",
    ]
    cli = LightningCLI(example.Classifier, example.QuickstartData, args=args, run=False)
    logger = cli.trainer.logger
    assert logger.options == Options(
        rtol=1e-4,
        atol=1e-6,
        on_mismatch="warn",
        reference_prefix="lmlogger/reference/",
        reference_metrics=False,
        tracker_extras=False,
        html_report=False,
    )
    del cli, logger
    gc.collect()
