"""What people read: the worst epoch as the headline, a public way to print a report, a terminal table that
reads at 80 columns, and a CLI that starts without torch."""

import io
import json
import os
import re
import subprocess
import sys

import pytest
from helpers import KitchenSink, loader, seeded, trainer
from lightning.pytorch.loggers import CSVLogger

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.records._gap import format_gap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("torch", "lightning", "torchmetrics", "pytorch_lightning")


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "lmlogger", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT},
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("output")
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(root)), on_mismatch="ignore")
    trainer(logger, root, max_epochs=3).fit(KitchenSink(val_loaders=1), loader(), loader(seed=1))
    return logger.log_dir


def table_rows(text):
    """``{key: {column: cell}}`` of the plain table's rows (columns are where the dashes under the header are)."""
    rows, spans, header = {}, None, None
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.startswith("---") and n:
            spans = [m.span() for m in re.finditer(r"-+", line)]
            header = [lines[n - 1][a:b].strip() for a, b in spans]
            continue
        if spans is None or not line.strip() or line.startswith(("findings / fix / reason:", "problem:")):
            spans = None
            continue
        cells = [line[a : (b if i < len(spans) - 1 else None)].strip() for i, (a, b) in enumerate(spans)]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_headline_is_the_worst_epoch_with_its_gap(run):
    """Each row shows the epoch behind the verdict (largest relative gap), not the last epoch."""
    report = lmlogger.audit(run)
    rows = table_rows(cli("audit", run).stdout)
    moved = 0
    for key in report.runs[0].keys:
        if key.verdict != "mismatch":
            continue
        gaps = {e.epoch: abs(e.logged - e.reference) / abs(e.reference) for e in key.epochs if e.verdict == "mismatch"}
        worst = max(gaps, key=gaps.get)
        epoch, gap = key.worst_epoch()
        assert (epoch.epoch, gap) == (worst, gaps[worst])
        cells = rows[key.key]
        shown = [cells[c] for c in ("epoch", "logged", "reference", "gap")]
        assert shown == [str(worst), f"{epoch.logged:.6g}", f"{epoch.reference:.6g}", format_gap(gap)]
        moved += worst != key.epochs[-1].epoch
    assert moved  # at least one key's worst epoch is not its last (f1_compute: epoch 0)
    data = json.loads(cli("audit", run, "--format", "json").stdout)
    f1 = next(k for k in data["runs"][0]["keys"] if k["key"] == "f1_compute")
    assert f1["worst_epoch"]["epoch"] == report.by_key()["f1_compute"].worst_epoch()[0].epoch


def test_a_rejudged_mismatch_shows_a_gap_beyond_the_tolerance(run):
    """With --rtol 1e-2 every row still called a mismatch shows a gap above 1% (the old table printed the last
    epoch, whose numbers could agree to 0.2%)."""
    rows = table_rows(cli("audit", run, "--rtol", "1e-2").stdout)
    mismatched = [cells for cells in rows.values() if cells["verdict"] == "mismatch"]
    assert mismatched
    for cells in mismatched:
        assert float(cells["gap"].rstrip("%")) > 1.0, cells


def test_markdown_shows_the_worst_epoch(run):
    md = cli("audit", run, "--format", "markdown").stdout
    worst, gap = lmlogger.audit(run).by_key()["f1_compute"].worst_epoch()
    row = next(line for line in md.splitlines() if line.startswith("| `f1_compute` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:7] == [str(worst.epoch), f"{worst.logged:.6g}", f"{worst.reference:.6g}", format_gap(gap)]


def test_print_report_and_public_renderers(run, capsys):
    """`print(report)`, `report.to_table()`, `report.to_markdown()` and `report.to_json()` need nothing private."""
    report = lmlogger.audit(run)
    print(report)
    printed = capsys.readouterr().out
    assert printed == report.to_table() + "\n"
    assert printed.splitlines()[0] == "lmlogger audit: 6 match (2 of them only the reduction), 5 mismatch, 0 unverified"
    assert cli("audit", run, "--no-color").stdout == printed  # the CLI prints the same table when piped
    assert report.to_markdown() == cli("audit", run, "--format", "markdown").stdout
    assert json.loads(report.to_json()) == json.loads(json.dumps(report.to_dict()))


def test_terminal_table_reads_at_80_columns(run):
    """At 80 columns rich never splits a provenance kind, a finding code or a verdict, and no line is wider."""
    pytest.importorskip("rich")
    from rich.console import Console

    from lmlogger.audit._render import rich_renderable

    report = lmlogger.audit(run)
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=True, color_system=None).print(rich_renderable(report))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    words = set(re.findall(r"[\w-]+", text))
    for key in report.runs[0].keys:
        assert key.provenance in words
        for code in key.findings:
            assert code in words, code
        if key.verdict:
            assert key.verdict in words


def test_plain_table_rows_fit_80_columns_and_never_cut_a_verdict(run):
    """With a 16-character key (`f1_forward_epoch`) every row of the plain table fits 80 columns, with the verdict
    whole right after the key and the gap printed as everywhere else."""
    report = lmlogger.audit(run)
    text = report.to_table()
    rows = table_rows(text)
    assert "f1_forward_epoch" in rows
    by_key = report.by_key()
    for name, cells in rows.items():
        line = next(line for line in text.splitlines() if line.startswith(name + " "))
        assert len(line) <= 80, line
        key = by_key[name]
        marker = "*" if key.verdict == "match" and key.vouches_for == "reduction" else ""  # match*: only the reduction
        assert cells["verdict"] == (key.verdict or "step only") + marker
        worst = key.worst_epoch()
        if key.verdict in ("match", "mismatch"):
            assert cells["gap"] == format_gap(worst[1])


def test_import_and_audit_never_load_torch(run):
    """`import lmlogger` and an audit (library and CLI) import no torch, Lightning or torchmetrics."""
    code = f"""
import sys, lmlogger
after_import = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
report = lmlogger.audit({run!r})
report.to_table(); report.to_markdown(); report.to_json()
import lmlogger.cli, lmlogger.records._mlflow_names  # every reader module, the MLflow one included
import lmlogger.audit._mlflow, lmlogger.audit._plot, lmlogger.audit._prov, lmlogger.audit._tfrecord
after_audit = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(after_import, after_audit)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] []"
    imported = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lmlogger", "audit", run, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert imported.returncode == 1  # KitchenSink mismatches
    modules = {
        line.rsplit("|", 1)[-1].strip() for line in imported.stderr.splitlines() if line.startswith("import time")
    }
    assert "lmlogger.audit._sidecar" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_verified_logger_is_still_importable_lazily():
    """`from lmlogger import VerifiedLogger` and `lmlogger.VerifiedLogger` are the class; unknown names fail."""
    assert lmlogger.VerifiedLogger is VerifiedLogger
    assert "VerifiedLogger" in dir(lmlogger)
    with pytest.raises(AttributeError, match="no attribute 'Verifiedlogger'"):
        lmlogger.Verifiedlogger  # noqa: B018


def test_version_and_help_are_one_command_each():
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"lmlogger {lmlogger.__version__}"
    helped = cli("audit", "--help")
    assert helped.returncode == 0 and "--format {table,json,markdown,prov,html}" in helped.stdout
    usage = cli("audit")
    assert usage.returncode == 2 and usage.stdout == ""
    assert usage.stderr.splitlines() == [
        "lmlogger audit: error: the following arguments are required: source (see `lmlogger audit --help`)"
    ]
    assert cli().stderr.splitlines() == [
        "lmlogger: error: a command is required: audit or lint (see `lmlogger --help`)"
    ]
