"""Where lmlogger's time goes in a wrapped fit, from cProfile: a share of one process's own time, robust to load.

    python benchmarks/profile_overhead.py [--steps 900] [--top 15] [--json] [--plain]

Trains the end-to-end benchmark's logging-heavy model (five ``self.log`` per step, ``log_every_n_steps=1``,
three epochs) wrapped in ``VerifiedLogger(TensorBoardLogger)`` once, under cProfile, and prints:

* lmlogger's own work: the time in lmlogger's frames plus the time of everything they call that is not a
  forwarded call (Lightning's ``log``, the wrapped logger's methods, the metric's own ``update``/``reset``
  run inside lmlogger's per-instance taps), as a share of the fit's profiled time (time blocked waiting for
  another thread, e.g. TensorBoard's writer, left out). Both are measured in the same process, so load on
  the machine scales them alike; cProfile's per-call cost inflates pure-Python code such as lmlogger's
  relative to torch's C++, so the share is an upper bound of the unprofiled one;
* lmlogger's function calls per ``self.log`` call (deterministic: the same on any machine), with the
  steps' callbacks and taps included;
* every function call of the fit (Python and C, deterministic), to compare with ``--plain`` (the same fit
  with the bare ``TensorBoardLogger``): the difference is all the work lmlogger causes, Lightning's calls
  of its callback and taps included;
* the lmlogger functions with the largest own time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LoggingHeavy, data, fresh_logger, machine, make_trainer

#: Callees of lmlogger's frames that are the call lmlogger wraps, made as without lmlogger: not its work.
FORWARDED = (
    "lightning/pytorch/core/module.py",  # LightningModule.log, under the seam
    "lightning/pytorch/loggers/",  # the wrapped logger's own methods
    "lightning/fabric/loggers/",
    "lightning_utilities/core/rank_zero.py",  # rank_zero_only around the wrapped logger's methods
    "torchmetrics/metric.py",  # the metric's own update / reset / compute, under the per-instance taps
)
#: Time spent blocked on another thread (TensorBoard's writer queue): not this process's own work.
WAITS = ("<method 'acquire' of '_thread.lock' objects>", "<method 'acquire' of '_thread.RLock' objects>")


def ours(entry: tuple[str, int, str]) -> bool:
    return f"{os.sep}lmlogger{os.sep}" in entry[0]


def own_work(stats: pstats.Stats, log_calls: int) -> dict[str, object]:
    """lmlogger's share of a profiled fit (see the module docstring)."""
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for k, v in table.items() if k[2] not in WAITS)
    frames = sum(v[2] for k, v in table.items() if ours(k))
    callees = 0.0
    calls = sum(v[1] for k, v in table.items() if ours(k))
    for entry, (_, _, _, _, callers) in table.items():
        if ours(entry) or entry[2] in WAITS or any(part in entry[0] for part in FORWARDED):
            continue
        callees += sum(timing[3] for caller, timing in callers.items() if ours(caller))
    top = sorted(((v[2], v[1], k) for k, v in table.items() if ours(k)), reverse=True)
    return {
        "profiled_s": total,
        "own_s": frames + callees,
        "own_share": (frames + callees) / total,
        "lmlogger_calls": calls,
        "log_calls": log_calls,
        "calls_per_log": calls / log_calls,
        "fit_calls": sum(v[1] for v in table.values()),
        "top": [
            {"function": f"{k[0].split(os.sep + 'lmlogger' + os.sep)[-1]}:{k[1]} {k[2]}", "calls": n, "own_s": t}
            for t, n, k in top
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--plain", action="store_true", help="the bare TensorBoardLogger (for the call count)")
    args = parser.parse_args()
    logger, root = fresh_logger("tensorboard", wrapped=not args.plain)
    trainer = make_trainer(logger, root, max_epochs=3, log_every_n_steps=1)
    model = LoggingHeavy(time_calls=True)
    loader = data(args.steps // 3 * 8)
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    trainer.fit(model, loader)
    profile.disable()
    wall = time.perf_counter() - t0
    result = own_work(pstats.Stats(profile), model.log_calls)
    result["steps"] = trainer.global_step
    if args.json:
        result["top"] = result["top"][: args.top]  # type: ignore[index]
        print(json.dumps(result))
        return
    print(f"machine: {machine()}")
    print(f"{trainer.global_step} steps, {model.log_calls} self.log calls, profiled fit {wall:.2f} s wall")
    print(
        f"lmlogger's own work: {result['own_s']:.3f} s of {result['profiled_s']:.3f} s profiled "
        f"= {100 * result['own_share']:.2f}%"  # type: ignore[operator]
    )
    print(f"lmlogger function calls: {result['lmlogger_calls']} = {result['calls_per_log']:.2f} per self.log")
    print(f"function calls of the whole fit: {result['fit_calls']}")
    print("largest own time (calls, seconds):")
    for row in result["top"][: args.top]:  # type: ignore[index]
        print(f"  {row['calls']:8d}  {row['own_s']:.4f}  {row['function']}")


if __name__ == "__main__":
    main()
