"""The audit CLI as a subprocess: every format, folders of runs, re-judging, plots and every bad input."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import KitchenSink, loader, seeded, trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

import lmlogger
from lmlogger import VerifiedLogger


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "lmlogger", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def strict_json(text):
    def reject(name):
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=reject)


class NaNs(KitchenSink):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("always_nan", torch.tensor(float("nan")), on_step=False, on_epoch=True)
        self.log("max_inf", torch.tensor(float("inf")), on_step=False, on_epoch=True, reduce_fx="max")
        self.log("lr", 0.1, on_step=True, on_epoch=False)  # step-only
        return loss


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, cls in (("tb", TensorBoardLogger), ("csv", CSVLogger)):
        seeded(0)
        logger = VerifiedLogger(cls(str(root), name=name), on_mismatch="ignore")
        trainer(logger, root, max_epochs=2, limit_val_batches=0).fit(NaNs(val_loaders=1), loader())
        del logger
    return root


def test_json_is_strict_and_is_the_library_report(runs):
    """--format json parses with a parser that rejects NaN, equals audit().to_dict(), and exits 1."""
    run = runs / "tb" / "version_0"
    proc = cli("audit", run, "--format", "json")
    assert proc.returncode == 1, proc.stderr
    data = strict_json(proc.stdout)
    assert data == json.loads(json.dumps(lmlogger.audit(run).to_dict()))
    keys = {k["key"]: k for k in data["runs"][0]["keys"]}
    assert keys["always_nan"]["epochs"][0]["logged"] == "nan"
    assert keys["always_nan"]["verdict"] == "match"  # NaN logged, NaN expected
    assert keys["max_inf"]["epochs"][0]["reference"] == "inf"
    lr = keys["lr"]  # step-only: provenance, no epochs, counted nowhere
    assert (lr["provenance"], lr["on_step"], lr["on_epoch"], lr["epochs"], lr["verdict"]) == (
        "tensor",
        True,
        False,
        [],
        None,
    )
    assert data["summary"] == {"match": 5, "mismatch": 4, "unverified": 0}
    assert keys["f1_compute"]["fix"].startswith('self.log("f1_compute", self.f1_c, on_epoch=True, on_step=False)')


def test_table_and_markdown(runs):
    run = runs / "csv" / "version_0"
    table = cli("audit", run)
    assert table.returncode == 1
    lines = table.stdout.splitlines()
    assert lines[0] == "lmlogger audit: 5 match (3 of them only the reduction), 4 mismatch, 0 unverified"
    row = next(line for line in lines if line.startswith("f1_compute "))
    cells = row.split()
    assert cells[:2] == ["f1_compute", "mismatch"] and cells[3] == "0"  # verdict, gap, its worst epoch
    assert cells[-1] == "metric_compute"
    assert "  f1_compute (training_step): running-value-averaged" in lines
    assert any(
        line.startswith('    fix: self.log("f1_compute", self.f1_c, on_epoch=True, on_step=False)') for line in lines
    )
    assert "\x1b[" not in table.stdout  # no colour codes when not a terminal
    md = cli("audit", run, "--format", "markdown")
    assert md.returncode == 1
    assert "**5 match (3 of them only the reduction), 4 mismatch, 0 unverified**" in md.stdout
    assert "| `f1_compute` | `metric_compute` | `training_step` | 0 |" in md.stdout
    assert '`self.log("f1_compute", self.f1_c, on_epoch=True, on_step=False)' in md.stdout


def test_folder_of_runs_is_one_summary(runs):
    proc = cli("audit", runs, "--format", "json")
    data = strict_json(proc.stdout)
    assert sorted(os.path.basename(os.path.dirname(r["source"])) for r in data["runs"]) == ["csv", "tb"]
    assert data["summary"] == {"match": 10, "mismatch": 8, "unverified": 0}
    assert proc.returncode == 1


def test_rtol_rejudges_recorded_values(runs):
    """A loose --rtol turns the small running-value mismatches into matches (exit code follows)."""
    run = runs / "tb" / "version_0"
    data = strict_json(cli("audit", run, "--format", "json", "--rtol", "0.5").stdout)
    keys = {k["key"]: k for k in data["runs"][0]["keys"]}
    assert keys["f1_compute"]["verdict"] == "match" and keys["f1_compute"]["findings"] == []
    strict = strict_json(cli("audit", run, "--format", "json", "--rtol", "0").stdout)
    assert strict["summary"]["mismatch"] >= 4


def test_plot_has_one_panel_per_verified_key(runs, tmp_path):
    from PIL import Image

    png = tmp_path / "audit.png"
    proc = cli("audit", runs / "tb" / "version_0", "--plot", png)
    assert proc.returncode == 1, proc.stderr
    report = lmlogger.audit(runs / "tb" / "version_0")
    verified = [k.key for k in report.runs[0].keys if k.verdict in ("match", "mismatch")]
    with Image.open(png) as img:
        cols, rows = min(3, len(verified)), math.ceil(len(verified) / 3)
        assert img.size == (520 * cols, 360 * rows)
        assert img.info["Description"] == f"panels: {len(verified)}; keys: {', '.join(verified)}"
        assert len(set(img.convert("L").getdata())) > 10  # something was drawn


def test_store_tampering_is_reported(runs, tmp_path):
    """The audit checks metrics.csv against the sidecar and names a disagreement."""
    copy = tmp_path / "run"
    shutil.copytree(runs / "csv" / "version_0", copy)
    path = copy / "metrics.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("f1_object")
    for i, line in enumerate(lines[1:], start=1):
        cells = line.split(",")
        if cells[col]:
            cells[col] = "0.123"
            lines[i] = ",".join(cells)
            break
    path.write_text("\n".join(lines) + "\n")
    problems = lmlogger.audit(copy).runs[0].problems
    assert len(problems) == 1
    assert problems[0].startswith("f1_object: epoch 0") and "0.123 in metrics.csv" in problems[0]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing", "no such file or directory"),
        (lambda d: d, "the folder is empty"),
        (lambda d: (d / "x.txt").write_text("hi") and d, "no lmlogger run found"),
        (lambda d: sidecar(d, '{"type": "header", "schema": 1\n'), "corrupt sidecar (line 1 is not complete JSON"),
        (lambda d: sidecar(d, "\x00\xff\xfe garbage\n"), "corrupt sidecar"),
        (lambda d: sidecar(d, '{"type": "provenance"}\n'), "corrupt sidecar"),
        (lambda d: sidecar(d, json.dumps(header(schema=99)) + "\n"), "schema version 99 is newer"),
        (lambda d: sidecar(d, json.dumps(header()) + "\n" + '{"type": "verification", "logged": NaN}\n'), "line 2"),
    ],
    ids=["missing", "empty", "no-run", "bad-json", "binary", "no-header", "newer-schema", "nan-constant"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, make, message):
    source = make(tmp_path)
    proc = cli("audit", source)
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("lmlogger: error:") and message in err


def test_usage_errors_exit_2():
    assert cli().returncode == 2
    proc = cli("audit", ".", "--format", "yaml")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_truncated_last_line_is_a_killed_run_not_an_error(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs / "tb" / "version_0", copy)
    path = copy / "lmlogger" / "provenance.jsonl"
    text = path.read_text()
    cut = text.rstrip("\n").rfind("\n")
    path.write_text(text[: cut + 1] + text[cut + 1 : cut + 20])  # the close record, half written
    data = strict_json(cli("audit", copy, "--format", "json").stdout)
    assert data["runs"][0]["complete"] is False
    assert data["summary"]["mismatch"] == 4


def header(schema=1):
    return {
        "type": "header",
        "schema": schema,
        "stage": "fit",
        "logger": "CSVLogger",
        "run": {},
        "versions": {},
        "created": "now",
    }


def sidecar(folder, text):
    path = folder / "run" / "lmlogger" / "provenance.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode("latin-1") if "\x00" in text else text.encode())
    return folder / "run"
