"""End-to-end cost: a logging-heavy tiny model, plain TensorBoardLogger vs VerifiedLogger(TensorBoardLogger).

    python benchmarks/end_to_end.py [--steps 900] [--repeats 8]

Each repetition trains once plain and once wrapped, each in a fresh process, alternating which goes
first. Two figures of fit wall time, wrapped / plain: the ratio of the minima (each variant's least
disturbed run; the acceptance figure) and the median of the per-repetition ratios.

Both children run a full garbage collection just before the timed fit, so that neither starts the
fit with the other's import-time collector debt: otherwise one full collection (~0.1-0.2 s with torch
loaded) lands inside one variant's timed window and not the other's by chance of where the counters
stood. Collections during the fit, lmlogger's included, are timed; each child reports how many full
(generation 2) collections ran inside its fit.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LoggingHeavy, data, fresh_logger, machine, make_trainer, median, plain_vs_wrapped


def child(wrapped: bool, steps: int) -> None:
    logger, root = fresh_logger("tensorboard", wrapped)
    epochs = 3
    trainer = make_trainer(logger, root, max_epochs=epochs, log_every_n_steps=1)
    model = LoggingHeavy()
    loader = data(steps // epochs * 8)
    full = [0]
    gc.callbacks.append(
        lambda phase, info: full.__setitem__(0, full[0] + (phase == "stop" and info["generation"] == 2))
    )
    gc.collect()
    full[0] = 0
    t0 = time.perf_counter()
    trainer.fit(model, loader)
    print(json.dumps({"seconds": time.perf_counter() - t0, "full_collections": full[0]}))


def main() -> None:
    parsed = plain_vs_wrapped(__doc__, __file__, child, steps=900, repeats=8)
    if parsed is None:
        return
    args, pairs = parsed
    plain_s = [p["plain"]["seconds"] for p in pairs]
    wrapped_s = [p["wrapped"]["seconds"] for p in pairs]
    ratios = [w / p for w, p in zip(wrapped_s, plain_s, strict=True)]
    print(f"machine: {machine()}")
    print(f"{args.steps} steps, 5 self.log calls per step, log_every_n_steps=1, {args.repeats} repetitions")
    full = [sum(p[k].get("full_collections", 0) for p in pairs) for k in ("plain", "wrapped")]
    print(f"plain TensorBoardLogger:    min {min(plain_s):.3f} s   median {median(plain_s):.3f} s")
    print(f"VerifiedLogger(...):        min {min(wrapped_s):.3f} s   median {median(wrapped_s):.3f} s")
    print(f"end-to-end ratio of minima: {min(wrapped_s) / min(plain_s):.4f}")
    print(f"median of pair ratios:      {median(ratios):.4f}  (per pair: {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"full GC collections inside the fits: plain {full[0]}, wrapped {full[1]}")


if __name__ == "__main__":
    main()
