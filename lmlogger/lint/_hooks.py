"""Lightning hooks as the static check sees them: which run per batch, their logging defaults, their phase.

The defaults are Lightning's own (``_FxValidator.functions`` in ``lightning.pytorch``), plus the hooks of
Lightning 1.x (``training_epoch_end``, ``validation_step_end``, ...) that much published code still uses.
Pure Python: the static check never imports Lightning.
"""

from __future__ import annotations

# (default on_step, default on_epoch) of self.log in each hook that may log.
_PER_BATCH_TRAIN = (True, False)
_PER_BATCH_EVAL = (False, True)
_PER_EPOCH = (False, True)

DEFAULTS: dict[str, tuple[bool, bool]] = {
    "training_step": _PER_BATCH_TRAIN,
    "training_step_end": _PER_BATCH_TRAIN,
    "on_train_batch_start": _PER_BATCH_TRAIN,
    "on_train_batch_end": _PER_BATCH_TRAIN,
    "on_before_backward": _PER_BATCH_TRAIN,
    "backward": _PER_BATCH_TRAIN,
    "on_after_backward": _PER_BATCH_TRAIN,
    "on_before_optimizer_step": _PER_BATCH_TRAIN,
    "optimizer_step": _PER_BATCH_TRAIN,
    "configure_gradient_clipping": _PER_BATCH_TRAIN,
    "clip_gradients": _PER_BATCH_TRAIN,
    "on_before_zero_grad": _PER_BATCH_TRAIN,
    "optimizer_zero_grad": _PER_BATCH_TRAIN,
    "validation_step": _PER_BATCH_EVAL,
    "validation_step_end": _PER_BATCH_EVAL,
    "on_validation_batch_start": _PER_BATCH_EVAL,
    "on_validation_batch_end": _PER_BATCH_EVAL,
    "test_step": _PER_BATCH_EVAL,
    "test_step_end": _PER_BATCH_EVAL,
    "on_test_batch_start": _PER_BATCH_EVAL,
    "on_test_batch_end": _PER_BATCH_EVAL,
    "on_train_start": _PER_EPOCH,
    "on_validation_start": _PER_EPOCH,
    "on_test_start": _PER_EPOCH,
    "on_train_epoch_start": _PER_EPOCH,
    "on_train_epoch_end": _PER_EPOCH,
    "on_validation_epoch_start": _PER_EPOCH,
    "on_validation_epoch_end": _PER_EPOCH,
    "on_test_epoch_start": _PER_EPOCH,
    "on_test_epoch_end": _PER_EPOCH,
    "training_epoch_end": _PER_EPOCH,  # Lightning 1.x
    "validation_epoch_end": _PER_EPOCH,  # Lightning 1.x
    "test_epoch_end": _PER_EPOCH,  # Lightning 1.x
}

#: Hooks that run once per batch although their names do not say so.
_STEP_HOOKS = frozenset(
    {
        "on_before_backward",
        "backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "on_before_zero_grad",
        "optimizer_step",
        "optimizer_zero_grad",
        "configure_gradient_clipping",
        "clip_gradients",
        "lr_scheduler_step",
    }
)


def is_step_hook(hook: str) -> bool:
    """Whether ``hook`` runs once per batch (``training_step``, ``on_train_batch_end``, ...)."""
    base = hook.split(".", 1)[0]
    return base.endswith("_step") or base.endswith("_step_end") or "_batch_" in base or base in _STEP_HOOKS


def phase_of(hook: str) -> str:
    """``train``, ``val`` or ``test`` for a Lightning hook name."""
    if "validation" in hook:
        return "val"
    if "test" in hook:
        return "test"
    return "train"


def epoch_end_hook(phase: str) -> str:
    """The Lightning 2 epoch-end hook of ``phase`` (``on_validation_epoch_end`` for ``val``)."""
    name = {"val": "validation"}.get(phase, phase)
    return f"on_{name}_epoch_end"
