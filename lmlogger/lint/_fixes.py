"""The concrete change each finding asks for, worded as the runtime words it (``lmlogger._verify.fix_for``).

The runtime module imports torch, so the static check cannot call it; ``tests/test_lint_fixes.py`` pins
that both produce the same text for the same facts.
"""

from __future__ import annotations

from lmlogger.lint._hooks import epoch_end_hook


def _short(attr: str) -> str:
    return attr.rsplit(".", 1)[-1].removeprefix("train_").removeprefix("val_").removeprefix("test_")


def log_object(name: str, attr: str, on_step: bool = False, *, as_dict: bool = False, remove: str | None = None) -> str:
    """``running-value-averaged`` / ``batch-values-averaged``: log the metric object itself.

    ``on_step``: the key was logged per step too (a forward() value), so the metric is still called for the
    step value. ``remove``: the hook in which the module resets this training metric, which must go.
    """
    text = (
        f"self.log_dict({attr}, on_epoch=True, on_step={on_step})"
        if as_dict
        else (f"self.log({name}, {attr}, on_epoch=True, on_step={on_step})")
    )
    if on_step:
        text = f"{attr}(preds, target) (forward, for the step value), then {text}"
    if remove:
        text += f"; and remove the `{attr}.reset()` in `{remove}`: Lightning resets logged metric objects itself"
    return text


def element_at_epoch_end(name: str, attr: str, index: str, phase: str) -> str:
    """An element of a result (``compute()[0]``): logged once per epoch from the epoch-end hook."""
    return (
        f"self.log({name}, {attr}.compute(){index}) in {epoch_end_hook(phase)}, once per epoch, before {attr}.reset()"
    )


def derived(name: str, expression: str, phase: str) -> str:
    """``derived-value``: the same expression, from ``compute()``, once per epoch."""
    return f"self.log({name}, {expression}) in {epoch_end_hook(phase)}, once per epoch, before the metric's reset()"


def one_instance_per_dataloader(name: str, attr: str) -> str:
    """``shared-metric`` between the dataloaders of one phase."""
    return (
        f"use one metric instance per dataloader (e.g. an nn.ModuleList: "
        f'{attr}[dataloader_idx].update(...) and self.log("{name}", {attr}[dataloader_idx]))'
    )


def reset_after_logging(name: str, attr: str, phase: str) -> str:
    """``state-carried-over`` of a ``compute()`` result logged at epoch end."""
    return f"{attr}.reset() in {epoch_end_hook(phase)}, right after logging {name}"


def one_instance_per_phase(attr: str) -> str:
    """``shared-metric``."""
    short = _short(attr)
    return f"use one metric instance per phase (e.g. self.train_{short} and self.val_{short})"


def call_forward(name: str, attr: str) -> str:
    """``stale-step-value``."""
    return f"call {attr}(preds, target) (forward) before self.log({name}, {attr}, on_step=True)"
