"""The concrete change each finding asks for, worded as the runtime words it (``lmlogger._verify.fix_for``).

The runtime module imports torch, so the static check cannot call it; ``tests/test_lint_fixes.py`` pins
that both produce the same text for the same facts.
"""

from __future__ import annotations

from lmlogger.lint._hooks import epoch_end_hook


def _hook_phase(phase: str) -> str:
    return {"train": "train", "val": "validation", "test": "test"}.get(phase, phase)


def _short(attr: str) -> str:
    return attr.rsplit(".", 1)[-1].removeprefix("train_").removeprefix("val_").removeprefix("test_")


def log_object(name: str, attr: str, on_step: bool = False, *, as_dict: bool = False) -> str:
    """``running-value-averaged`` / ``batch-values-averaged``: log the metric object itself."""
    if as_dict:
        return f"self.log_dict({attr}, on_epoch=True, on_step={on_step})"
    return f"self.log({name}, {attr}, on_epoch=True, on_step={on_step})"


def reset_after_logging(name: str, attr: str, phase: str) -> str:
    """``state-carried-over`` of a ``compute()`` result logged at epoch end."""
    return f"{attr}.reset() in on_{_hook_phase(phase)}_epoch_end, right after logging {name}"


def one_instance_per_phase(attr: str) -> str:
    """``shared-metric``."""
    short = _short(attr)
    return f"use one metric instance per phase (e.g. self.train_{short} and self.val_{short})"


def call_forward(name: str, attr: str) -> str:
    """``stale-step-value``."""
    return f"call {attr}(preds, target) (forward) before self.log({name}, {attr}, on_step=True)"


def derive_at_epoch_end(name: str, attr: str, phase: str) -> str:
    """``derived-value``: the runtime has no fix for it; derive from ``compute()`` once, at epoch end."""
    return (
        f"derive it from {attr}.compute() in {epoch_end_hook(phase)} and log it there "
        f"(self.log({name}, ...)), then {attr}.reset()"
    )
