"""The benchmarks a user can run: `--help` works and a run leaves no temporary folder behind."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")


def bench(tmp_path, name, *args, timeout=300):
    """Run benchmarks/NAME with TMPDIR pointing into ``tmp_path``, so every temporary folder it makes is seen."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(tmp_path),
    )
    return proc, scratch


def test_gpu_sync_check_answers_help(tmp_path):
    """`gpu_sync_check.py --help` prints its usage and options instead of starting a run."""
    proc, _ = bench(tmp_path, "gpu_sync_check.py", "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: gpu_sync_check.py") and "--epochs" in proc.stdout
    assert "nothing to check" not in proc.stdout and "plain TensorBoardLogger:" not in proc.stdout  # nothing ran


def test_per_call_leaves_no_temporary_folder(tmp_path):
    """Two child fits (plain and wrapped) in fresh processes: every log dir they made is gone afterwards."""
    proc, scratch = bench(tmp_path, "per_call.py", "--steps", "20", "--repeats", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lmlogger's own work, timed:" in proc.stdout
    assert [p for p in scratch.iterdir() if "lmlogger" in p.name] == []
    assert sorted(os.listdir(tmp_path)) == ["tmp"]  # and nothing in the working directory


def test_audit_scale_removes_its_generated_run_unless_kept(tmp_path):
    """The generated event file and sidecar live in a temporary folder that is removed; `--keep DIR` keeps it."""
    proc, scratch = bench(tmp_path, "audit_scale.py", "--epochs", "5", "--steps-per-epoch", "10", "--repeats", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "audit is" in proc.stdout
    assert [p for p in scratch.iterdir() if "lmlogger" in p.name] == []
    kept = tmp_path / "kept"
    proc, _ = bench(tmp_path, "audit_scale.py", "--epochs", "5", "--steps-per-epoch", "10", "--repeats", "1",
                    "--keep", str(kept))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (kept / "lmlogger-bench-5x10" / "lmlogger" / "provenance.jsonl").is_file()
