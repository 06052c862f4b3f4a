"""End-to-end cost: a logging-heavy tiny model, plain TensorBoardLogger vs VerifiedLogger(TensorBoardLogger).

    python benchmarks/end_to_end.py [--steps 1500] [--repeats 5]

Each repetition trains once plain and once wrapped, each in a fresh process, alternating which goes
first; the figure is the median of the per-repetition ratios wrapped / plain of fit wall time.
"""

from __future__ import annotations

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
    t0 = time.perf_counter()
    trainer.fit(model, loader)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def main() -> None:
    parsed = plain_vs_wrapped(__doc__, __file__, child, steps=1500, repeats=5)
    if parsed is None:
        return
    args, pairs = parsed
    plain_s = [p["plain"]["seconds"] for p in pairs]
    wrapped_s = [p["wrapped"]["seconds"] for p in pairs]
    ratios = [w / p for w, p in zip(wrapped_s, plain_s, strict=True)]
    print(f"machine: {machine()}")
    print(f"{args.steps} steps, 5 self.log calls per step, log_every_n_steps=1, {args.repeats} repetitions")
    print(f"plain TensorBoardLogger:    median {median(plain_s):.3f} s")
    print(f"VerifiedLogger(...):        median {median(wrapped_s):.3f} s")
    print(
        f"end-to-end ratio (median):  {median(ratios):.4f}  (per repetition: {', '.join(f'{r:.3f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
