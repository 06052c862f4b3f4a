"""Audit time on a TensorBoard run with a million scalar points, vs tensorboard's EventAccumulator.

    python benchmarks/audit_scale.py [--epochs 1000] [--steps-per-epoch 1000] [--repeats 3] [--keep DIR]

Generates a run with one step-level scalar per step plus epoch values, references and an lmlogger
sidecar (about 40 MB for the default size, in a temporary folder removed at the end; ``--keep DIR``
writes it to DIR instead, keeps it, and reuses it on the next call), then times
``lmlogger.audit(run)`` (which cross-checks every epoch value against the event file) and
``EventAccumulator(run, size_guidance={"scalars": 0}).Reload()`` loading the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, median, scratch_dir


def generate(run_dir: str, epochs: int, steps: int) -> int:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.record_writer import RecordWriter

    os.makedirs(os.path.join(run_dir, "lmlogger"), exist_ok=True)
    points = 0
    path = os.path.join(run_dir, "events.out.tfevents.0000000000.bench.1.0")
    with open(path, "wb") as fh:
        writer = RecordWriter(fh)
        writer.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        records = []
        for epoch in range(epochs):
            for s in range(steps):
                step = epoch * steps + s
                value = Summary.Value(tag="loss_step", simple_value=1.0 / (1 + step))
                writer.write(Event(wall_time=0.0, step=step, summary=Summary(value=[value])).SerializeToString())
                points += 1
            last = epoch * steps + steps - 1
            logged, reference = 0.5 + epoch * 1e-4, 0.49 + epoch * 1e-4
            values = [
                Summary.Value(tag="f1", simple_value=logged),
                Summary.Value(tag="lmlogger/reference/f1", simple_value=reference),
                Summary.Value(tag="epoch", simple_value=float(epoch)),
            ]
            writer.write(Event(wall_time=0.0, step=last, summary=Summary(value=values)).SerializeToString())
            points += 3
            records.append(
                {
                    "type": "verification",
                    "key": "f1",
                    "phase": "train",
                    "epoch": epoch,
                    "step": last,
                    "logged": float(Summary.Value(simple_value=logged).simple_value),
                    "reference": reference,
                    "verdict": "mismatch",
                    "findings": ["running-value-averaged"],
                    "reason": None,
                    "fix": 'self.log("f1", self.f1, on_epoch=True, on_step=False)',
                    "rtol_floor": 0.0,
                }
            )
        writer.flush()
    header = {
        "type": "header",
        "schema": 1,
        "stage": "fit",
        "logger": "TensorBoardLogger",
        "run": {},
        "versions": {},
        "created": "bench",
        "options": {"rtol": 1e-4, "atol": 1e-6},
    }
    prov = {
        "type": "provenance",
        "key": "f1",
        "name": "f1",
        "kind": "metric_compute",
        "hook": "training_step",
        "phase": "train",
        "on_step": False,
        "on_epoch": True,
        "reduce_fx": "mean",
        "sync_dist": False,
        "batch_size": 32,
        "batch_size_source": "inferred",
        "dataloader_idx": None,
        "logged_keys": ["f1"],
    }
    with open(os.path.join(run_dir, "lmlogger", "provenance.jsonl"), "w") as fh:
        for record in [header, prov, *records, {"type": "close", "stage": "fit", "status": "success", "closed": "x"}]:
            fh.write(json.dumps(record) + "\n")
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", default=None, help="write the generated run here and keep it")
    args = parser.parse_args()
    if args.keep:
        run_dir = os.path.join(args.keep, f"lmlogger-bench-{args.epochs}x{args.steps_per_epoch}")
    else:
        run_dir = os.path.join(scratch_dir(), "run")
    marker = os.path.join(run_dir, "points")
    if not os.path.exists(marker):
        t0 = time.perf_counter()
        points = generate(run_dir, args.epochs, args.steps_per_epoch)
        with open(marker, "w") as fh:
            fh.write(str(points))
        print(f"generated {points} points in {time.perf_counter() - t0:.1f} s: {run_dir}")
    with open(marker) as fh:
        points = int(fh.read())

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import lmlogger

    audit_s, acc_s = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        report = lmlogger.audit(run_dir)
        audit_s.append(time.perf_counter() - t0)
        assert report.runs[0].problems == [], report.runs[0].problems[:3]
        assert len(report.by_key()["f1"].epochs) == args.epochs
        t0 = time.perf_counter()
        acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
        acc.Reload()
        acc_s.append(time.perf_counter() - t0)
        assert len(acc.Scalars("loss_step")) == args.epochs * args.steps_per_epoch
    size = os.path.getsize(next(os.path.join(run_dir, f) for f in os.listdir(run_dir) if f.startswith("events")))
    print(f"machine: {machine()}")
    print(f"run: {points} scalar points, event file {size / 2**20:.1f} MiB, {args.epochs} epoch values checked")
    print(f"lmlogger.audit (sidecar + event-file cross-check): median {median(audit_s):.2f} s")
    print(f"EventAccumulator(size_guidance=all).Reload():      median {median(acc_s):.2f} s")
    print(f"audit is {median(acc_s) / median(audit_s):.1f}x faster")


if __name__ == "__main__":
    main()
