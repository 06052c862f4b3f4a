"""Start-up time and memory of the ``lmlogger`` command line and of ``import lmlogger``.

    python benchmarks/cli_startup.py [--repeats 7] [--keys 12] [--epochs 10]

Writes a small CSV run (a sidecar of ``--keys`` keys x ``--epochs`` epochs and its ``metrics.csv``) into a
temporary folder (removed at the end), then runs each command ``--repeats`` times in a fresh interpreter and
prints the median CPU time (user + system) and wall time, the peak resident memory (``VmHWM``) of that child,
and whether torch was imported. ``from lmlogger import VerifiedLogger`` (which needs torch and Lightning) is
timed for contrast.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from statistics import median

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(run_dir: str, keys: int, epochs: int) -> None:
    """A CSV run as VerifiedLogger writes it: sidecar records and the metrics.csv they are checked against."""
    os.makedirs(os.path.join(run_dir, "lmlogger"))
    names = [f"metric_{i}" for i in range(keys)]
    header = {
        "type": "header", "schema": 1, "stage": "fit", "logger": "CSVLogger", "run": {"version": 0},
        "versions": {"lmlogger": "0.1.0"}, "created": "2026-01-01T00:00:00+00:00",
        "options": {"rtol": 1e-4, "atol": 1e-6},
    }  # fmt: skip
    records = [header]
    rows = ["step," + ",".join(names)]
    for epoch in range(epochs):
        step = 10 * epoch + 9
        values = [0.5 + 0.01 * epoch + 0.001 * i for i in range(keys)]
        rows.append(f"{step}," + ",".join(repr(v) for v in values))
        for name, value in zip(names, values, strict=True):
            if epoch == 0:
                records.append(
                    {
                        "type": "provenance", "key": name, "name": name, "kind": "metric_object",
                        "hook": "training_step", "phase": "train", "on_step": False, "on_epoch": True,
                        "reduce_fx": "mean", "sync_dist": False, "batch_size": 16, "batch_size_source": "inferred",
                        "dataloader_idx": None, "logged_keys": [name], "metric_attribute": name,
                    }
                )  # fmt: skip
            records.append(
                {
                    "type": "verification", "key": name, "phase": "train", "epoch": epoch, "step": step,
                    "logged": value, "reference": value, "verdict": "match", "findings": [], "rtol_floor": 0.0,
                }
            )  # fmt: skip
    records.append({"type": "close", "stage": "fit", "status": "success", "closed": "2026-01-01T00:01:00+00:00"})
    with open(os.path.join(run_dir, "lmlogger", "provenance.jsonl"), "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    with open(os.path.join(run_dir, "metrics.csv"), "w") as fh:
        fh.write("\n".join(rows) + "\n")


# Runs ``-c CODE`` or ``-m MODULE ARGS`` and, at exit, writes its peak resident memory (VmHWM: the high-water
# mark of this process's own memory, reset by exec; ru_maxrss would include the parent's at fork time).
_RUNNER = """
import atexit, runpy, sys
out, mode, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
def peak():
    with open("/proc/self/status") as fh:
        kib = next(line.split()[1] for line in fh if line.startswith("VmHWM:"))
    with open(out, "w") as fh:
        fh.write(kib)
atexit.register(peak)
if mode == "-c":
    sys.argv = ["-c"]
    exec(compile(rest[0], "<string>", "exec"), {"__name__": "__main__"})
else:
    sys.argv = [rest[0], *rest[1:]]
    runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
"""


def measure(args: list[str], repeats: int, tmp: str) -> tuple[float, float, float]:
    """``(median wall seconds, median CPU seconds, median peak RSS in MiB)`` of ``python ARGS``, ``repeats`` runs.

    CPU time (user + system, of that child alone) is the figure to compare on a shared machine: wall time
    there also counts the time other processes had the CPUs.
    """
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = os.path.join(tmp, "peak")
    walls, cpus, rss = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, out, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        walls.append(time.perf_counter() - start)
        cpus.append(usage.ru_utime + usage.ru_stime)
        with open(out) as fh:
            rss.append(int(fh.read()) / 1024)
    return median(walls), median(cpus), median(rss)


def loads_torch(code: str) -> bool:
    probe = code + "\nimport sys\nprint('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}
    )
    return out.stdout.strip().endswith("True")


def machine() -> str:
    """The machine line, without importing torch here: a child's peak RSS starts from its parent's at fork."""
    import platform

    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--keys", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="lmlogger-cli-") as tmp:
        run = os.path.join(tmp, "version_0")
        write_run(run, args.keys, args.epochs)
        cases = [
            ("python -c pass (the interpreter alone)", ["-c", "pass"], None),
            ("import lmlogger", ["-c", "import lmlogger"], "import lmlogger"),
            ("lmlogger --version", ["-m", "lmlogger", "--version"], None),
            ("lmlogger --help", ["-m", "lmlogger", "--help"], None),
            (
                f"lmlogger audit RUN ({args.keys} keys x {args.epochs} ep., CSV)",
                ["-m", "lmlogger", "audit", run],
                f"import lmlogger; lmlogger.audit({run!r})",
            ),
            ("lmlogger audit RUN --format json", ["-m", "lmlogger", "audit", run, "--format", "json"], None),
            (
                "from lmlogger import VerifiedLogger (contrast)",
                ["-c", "from lmlogger import VerifiedLogger"],
                "from lmlogger import VerifiedLogger",
            ),
        ]
        print(f"{'command (median of ' + str(args.repeats) + ')':<52} {'CPU':>9} {'wall':>9} {'peak RSS':>9}  torch")
        for label, argv, probe in cases:
            wall, cpu, rss = measure(argv, args.repeats, tmp)
            torch = "-" if probe is None else ("yes" if loads_torch(probe) else "no")
            print(f"{label:<52} {cpu * 1000:>6.0f} ms {wall * 1000:>6.0f} ms {rss:>5.0f} MiB  {torch}")


if __name__ == "__main__":
    main()
