"""Every example in examples/ runs (shortened by its own arguments) and prints what its docstring promises."""

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

import lmlogger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def example(name):
    return os.path.join(EXAMPLES, name)


def run_example(cwd, *args, timeout=300):
    """Run ``python ARGS`` from ``cwd`` (a temporary dir, so nothing an example writes lands in the checkout)."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def table_rows(out):
    """``{key: (provenance, verdict)}`` from the plain audit table an example prints (the header row names the
    columns; the rows end at a blank line or the ``findings / fix / reason:`` list)."""
    rows = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        header = line.split()
        if header[:2] == ["key", "verdict"] and header[-1] == "provenance":
            for row in lines[i + 2 :]:
                if not row.strip() or row.startswith(("findings / fix / reason:", "problem:")):
                    break
                cells = row.split()
                rows[cells[0]] = (cells[-1], cells[1])
    return rows


def test_quickstart(tmp_path):
    """The quickstart prints the audit: f1_wrong mismatches with its fix, f1_right and the loss match."""
    out = run_example(tmp_path, example("quickstart.py"), "--logdir", str(tmp_path), "--epochs", "1")
    assert "lmlogger audit: 2 match (1 of them only the reduction), 1 mismatch, 0 unverified" in out
    assert table_rows(out) == {
        "f1_right": ("metric_object", "match"),
        "f1_wrong": ("metric_compute", "mismatch"),
        "loss_epoch": ("tensor", "match*"),  # match*: only the reduction (a plain tensor)
    }
    assert any(
        line.startswith('    fix: self.log("f1_wrong", self.f1_running, on_epoch=True, on_step=False)')
        for line in out.splitlines()
    )
    run_dir = os.path.join(str(tmp_path), "quickstart", "version_0")
    assert f"lmlogger audit {run_dir}" in out
    assert lmlogger.audit(run_dir).summary == {"match": 2, "mismatch": 1, "unverified": 0}


def readme_block(after, page="README.md"):
    """The lines of a page's code block that follow the line ``after``, up to the closing fence."""
    with open(os.path.join(ROOT, page), encoding="utf-8") as fh:
        text = fh.read()
    start = text.index(after + "\n") + len(after) + 1
    return text[start : text.index("\n```", start)]


def test_readme_shows_the_programs_real_output(tmp_path):
    """The README's (and the docs' home page's) warning and audit table are what
    `python examples/quickstart.py --logdir logs` and `lmlogger audit logs/quickstart/version_0` print,
    character for character."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    shutil.copytree(EXAMPLES, tmp_path / "examples")  # the README's relative path: examples/quickstart.py
    proc = subprocess.run(
        [sys.executable, "examples/quickstart.py", "--logdir", "logs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    warning = readme_block("```text")
    assert warning.startswith("/path/to/lmlogger/examples/quickstart.py:")
    assert warning.replace("/path/to/lmlogger/", f"{tmp_path}/") in proc.stderr
    assert readme_block("```text", "docs/index.md") == warning
    audit = subprocess.run(
        [sys.executable, "-m", "lmlogger", "audit", "logs/quickstart/version_0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert audit.returncode == 1
    assert readme_block("$ lmlogger audit logs/quickstart/version_0") == audit.stdout.rstrip("\n")
    assert readme_block("$ lmlogger audit logs/quickstart/version_0", "docs/index.md") == audit.stdout.rstrip("\n")


def test_lightning_cli_example(tmp_path):
    """The LightningCLI example trains from examples/cli_config.yaml and prints the audit of the run."""
    pytest.importorskip("jsonargparse")
    out = run_example(
        tmp_path,
        example("lightning_cli.py"),
        "fit",
        "--config",
        example("cli_config.yaml"),
        "--trainer.max_epochs=1",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.logger.init_args.save_dir={tmp_path}",
    )
    run_dir = os.path.join(str(tmp_path), "cli", "version_0")
    assert f"Run written to {run_dir}" in out
    assert table_rows(out)["f1_wrong"] == ("metric_compute", "mismatch")
    assert table_rows(out)["f1_right"] == ("metric_object", "match")
    assert os.path.isfile(os.path.join(run_dir, "config.yaml"))


def test_pytest_example(tmp_path):
    """The pytest example's two tests pass: a clean model, and the classic mistake caught with its fix."""
    out = run_example(tmp_path, "-m", "pytest", example("pytest_example"), "-q", "-p", "no:cacheprovider")
    assert "2 passed" in out


@pytest.mark.slow
def test_ddp_example(tmp_path):
    """Two CPU processes: the metric object and the synced loss match, the unsynced loss is rank-local."""
    out = run_example(tmp_path, example("ddp.py"), "--logdir", str(tmp_path), "--epochs", "1")
    assert table_rows(out) == {
        "f1": ("metric_object", "match"),
        "loss": ("tensor", "mismatch"),
        "loss_synced": ("tensor", "match*"),  # only the reduction
    }
    assert out.count("Run written to") == 1  # rank 0 alone prints the audit
    key = lmlogger.audit(str(tmp_path)).by_key()["loss"]
    assert key.findings == ["rank-local"] and key.fix == 'self.log("loss", ..., sync_dist=True)'


@pytest.mark.slow
def test_mlflow_server_example(tmp_path):
    """The MLflow example starts a real server, trains, and audits runs:/<id> through it."""
    pytest.importorskip("mlflow")
    if importlib.util.find_spec("lmlogger.runtime.sinks.mlflow") is None:
        pytest.skip("the MLflow sink (lmlogger/runtime/sinks/mlflow.py) is not in this checkout")
    workdir = tmp_path / "work"
    out = run_example(tmp_path, example("mlflow_server.py"), "--workdir", str(workdir), "--epochs", "1", timeout=400)
    assert "mlflow server running at http://127.0.0.1:" in out
    assert table_rows(out)["f1_wrong"] == ("metric_compute", "mismatch")
    assert table_rows(out)["f1_right"] == ("metric_object", "match")
    run_id = re.search(r"lmlogger audit runs:/(\w+) --tracking-uri http://127.0.0.1:5000", out).group(1)
    sidecars = glob.glob(os.path.join(str(workdir), "lmlogger_mlflow", "*", run_id, "lmlogger", "provenance.jsonl"))
    assert len(sidecars) == 1  # the local copy of the run's sidecar is under --workdir
    local = os.path.dirname(os.path.dirname(sidecars[0]))
    assert f"  lmlogger audit {local}    # lmlogger's local copy" in out  # printed, and it works: no server needed
    assert lmlogger.audit(local).by_key()["f1_wrong"].verdict == "mismatch"
    # the printed command serves the same store again, and the printed audit works through it
    command = re.search(r"  (mlflow server --port 5000 [^#]+?)    # then", out).group(1).split()
    assert command[-4:] == ["--backend-store-uri", f"sqlite:///{workdir}/mlflow.db", "--artifacts-destination",
                            f"{workdir}/artifacts"]  # fmt: skip
    assert os.listdir(tmp_path) == ["work"]  # the example wrote nowhere else
