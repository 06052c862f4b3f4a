"""The pitfall as a chart, from a real run: what Lightning logs for F1 versus the epoch's true F1.

Run:  python docs/scripts/make_chart.py [--out docs/img/pitfall.png] [--epochs N]

Trains ``examples/quickstart.py``'s model (``f1_wrong``: ``self.f1_running.compute()`` logged every
step with ``on_epoch=True``; ``f1_right``: the metric object) with ``VerifiedLogger(CSVLogger(...))``
and draws, from the run's own records:

* left: inside the first epoch, the running F1 that ``training_step`` passes to ``self.log`` at each
  step, the batch-size-weighted mean of those values that Lightning stores as the epoch value, and
  lmlogger's reference (``compute()`` over the whole epoch);
* right: for every epoch, the logged and reference values of ``f1_wrong`` and ``f1_right``, read
  back with ``lmlogger.audit``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))

import quickstart  # noqa: E402  (examples/quickstart.py)


class RecordingClassifier(quickstart.Classifier):
    """The quickstart model, also keeping each running F1 value it logs (and the batch size)."""

    def __init__(self) -> None:
        super().__init__()
        self.running: list[tuple[int, int, float, int]] = []  # (epoch, step, value, batch size)

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        value = float(self.f1_running.compute())  # what f1_wrong logged at this step
        self.running.append((self.current_epoch, self.global_step, value, len(batch[1])))
        return loss


def run(logdir: str, epochs: int):
    import warnings

    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.loggers import CSVLogger

    import lmlogger
    from lmlogger import VerifiedLogger

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    seed_everything(0, verbose=False)
    model = RecordingClassifier()
    logger = VerifiedLogger(CSVLogger(logdir, name="chart"), on_mismatch="ignore")
    trainer = Trainer(
        max_epochs=epochs,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, quickstart.data())
    return model.running, lmlogger.audit(logger.log_dir)


def draw(running, report, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = report.by_key()
    wrong, right = keys["f1_wrong"], keys["f1_right"]
    first = [(step, value, n) for epoch, step, value, n in running if epoch == 0]
    logged0, reference0 = wrong.epochs[0].logged, wrong.epochs[0].reference

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    steps = [i + 1 for i in range(len(first))]
    ax1.plot(steps, [v for _, v, _ in first], "o-", color="#888888", label="running F1 passed to self.log each step")
    ax1.axhline(logged0, color="#d62728", lw=2, label=f"logged epoch value (mean of those): {logged0:.4f}")
    ax1.axhline(reference0, color="#2ca02c", lw=2, ls="--", label=f"epoch F1 (lmlogger reference): {reference0:.4f}")
    ax1.set_title('epoch 0: self.log("f1_wrong", self.f1_running.compute(), on_epoch=True)', fontsize=9)
    ax1.set_xlabel("batch in epoch 0")
    ax1.set_ylabel("F1")
    ax1.legend(fontsize=8, loc="lower right")

    epochs = [e.epoch for e in wrong.epochs]
    ax2.plot(epochs, [e.logged for e in wrong.epochs], "o-", color="#d62728", label="f1_wrong: logged")
    ax2.plot(epochs, [e.reference for e in wrong.epochs], "s--", color="#2ca02c", label="f1_wrong: reference")
    ax2.plot(epochs, [e.logged for e in right.epochs], "^:", color="#1f77b4", label="f1_right: logged (= reference)")
    for e in wrong.epochs:
        ax2.annotate(e.verdict, (e.epoch, e.logged), textcoords="offset points", xytext=(0, -14), ha="center",
                     fontsize=7, color="#d62728" if e.verdict == "mismatch" else "#2ca02c")  # fmt: skip
    ax2.margins(x=0.08, y=0.15)
    ax2.set_title("per epoch, as lmlogger audit reads them back", fontsize=9)
    ax2.set_xlabel("epoch")
    ax2.set_xticks(epochs)
    ax2.legend(fontsize=8, loc="lower right")
    fig.suptitle("The tracker shows the mean of running values, not the epoch F1", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, metadata={"Software": None})  # no version stamp: the file changes only with the numbers
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "img", "pitfall.png"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--logdir", default=None, help="where the run goes (default: a temporary dir)")
    args = parser.parse_args(argv)
    running, report = run(args.logdir or tempfile.mkdtemp(prefix="lmlogger-chart-"), args.epochs)
    draw(running, report, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
