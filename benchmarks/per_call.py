"""Per-call cost of self.log: lmlogger's added cost as a fraction of Lightning's own.

    python benchmarks/per_call.py [--steps 2000] [--repeats 5]

Each repetition runs a plain and a wrapped fit in separate processes (alternating order) and times
only the self.log calls inside training_step (25 calls per step, of every provenance kind). In the
wrapped runs, lmlogger's own work per call (everything the wrapper does after Lightning's log) is
timed too, so its share of the cost is measured within one process, immune to machine load drift.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LoggingHeavy, data, fresh_logger, machine, make_trainer, median, plain_vs_wrapped


def child(wrapped: bool, steps: int) -> None:
    logger, root = fresh_logger("tensorboard", wrapped)
    if wrapped:
        # direct measurement of lmlogger's own work per call (the session's observe)
        import time

        from lmlogger.runtime import _session

        spent = [0.0]
        original = _session.Session.observe

        def timed(self, *a, **k):
            t0 = time.perf_counter()
            original(self, *a, **k)
            spent[0] += time.perf_counter() - t0

        _session.Session.observe = timed
    model = LoggingHeavy(extra_calls=20, time_calls=True)
    make_trainer(logger, root, max_epochs=1, limit_train_batches=steps).fit(model, data(steps * 8))
    print(
        json.dumps(
            {
                "us_per_call": 1e6 * model.log_seconds / model.log_calls,
                "observe_us_per_call": 1e6 * spent[0] / model.log_calls if wrapped else 0.0,
                "calls": model.log_calls,
            }
        )
    )


def main() -> None:
    parsed = plain_vs_wrapped(__doc__, __file__, child, steps=2000, repeats=5)
    if parsed is None:
        return
    args, pairs = parsed
    plain = [p["plain"]["us_per_call"] for p in pairs]
    wrapped = [p["wrapped"]["us_per_call"] for p in pairs]
    observe = [p["wrapped"]["observe_us_per_call"] for p in pairs]
    p, w = median(plain), median(wrapped)
    print(f"machine: {machine()}")
    print(f"self.log, Lightning alone:   {p:8.2f} us/call (median of {args.repeats})")
    print(f"self.log, with lmlogger:     {w:8.2f} us/call")
    o = median(observe)
    own = w - o  # Lightning's part of the wrapped calls, measured in the same process as lmlogger's part
    print(f"difference of the medians:   {w - p:8.2f} us/call = {100 * (w - p) / p:.1f}% (two processes: noisy)")
    print(f"lmlogger's own work, timed:  {o:8.2f} us/call")
    print(f"  = {100 * o / own:.1f}% of Lightning's own cost in the same runs ({own:.2f} us/call)")


if __name__ == "__main__":
    main()
