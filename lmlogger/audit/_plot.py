"""``lmlogger audit --plot FILE.png``: logged vs reference by epoch, one panel per verified key."""

from __future__ import annotations

import math
import os

from lmlogger.audit._escape import terminal
from lmlogger.audit._model import AuditReport
from lmlogger.audit._sidecar import AuditInputError


def plot(report: AuditReport, path: str) -> int:
    """Draw every key that has a reference; mismatched epochs are marked. Returns the number of panels."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AuditInputError("--plot needs matplotlib: pip install 'lmlogger[plot]'") from None
    if not path.lower().endswith(".png"):
        raise AuditInputError(f"--plot {path}: the file name must end in .png")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise AuditInputError(f"--plot {path}: the folder {folder} does not exist")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise AuditInputError(f"--plot {path}: exists and is not a regular file")
    panels = []
    several = len(report.runs) > 1
    for run in report.runs:
        for key in run.keys:
            epochs = [e for e in key.epochs if e.reference is not None or e.logged is not None]
            if key.verdict in ("match", "mismatch") and epochs:
                title = f"{terminal(key.key)}  [{terminal(key.provenance)}]" + (
                    f"\n{terminal(run.source)}" if several else ""
                )
                panels.append((title, key, epochs))
    if not panels:
        raise AuditInputError("--plot: no verified key to draw (every key is step-only or unverified)")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.remove()
    for ax, (title, key, epochs) in zip(axes.flat, panels, strict=False):
        xs = list(range(len(epochs)))
        labels = [str(e.epoch) for e in epochs]
        ax.plot(xs, [_y(e.logged) for e in epochs], "o-", color="#d62728", label="logged (tracker)")
        ax.plot(xs, [_y(e.reference) for e in epochs], "s--", color="#1f77b4", label="reference (lmlogger)")
        bad = [i for i, e in enumerate(epochs) if e.verdict == "mismatch"]
        if bad:
            ax.scatter(
                [xs[i] for i in bad],
                [_y(epochs[i].logged) for i in bad],
                s=160,
                facecolors="none",
                edgecolors="black",
                linewidths=1.5,
                label="mismatch",
                zorder=3,
            )
        # parse_math=False: a key holding `$...$` is text, not mathtext (which may not even parse)
        ax.set_title(title + ("  MISMATCH" if key.verdict == "mismatch" else ""), fontsize=9, parse_math=False)
        ax.set_xticks(xs, labels)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("lmlogger audit: logged epoch value vs reference", fontsize=11)
    fig.tight_layout()
    keys = ", ".join(terminal(key.key) for _, key, _ in panels)
    try:
        fig.savefig(
            path, dpi=100, metadata={"Title": "lmlogger audit", "Description": f"panels: {len(panels)}; keys: {keys}"}
        )
    except OSError as err:
        raise AuditInputError(f"--plot {path}: cannot write the file ({err.strerror or err})") from None
    except ValueError as err:  # e.g. a figure too large to render
        raise AuditInputError(f"--plot {path}: cannot draw the figure ({str(err).splitlines()[0][:200]})") from None
    finally:
        plt.close(fig)
    return len(panels)


def _y(value: float | None) -> float:
    return float("nan") if value is None or math.isinf(value) else value
