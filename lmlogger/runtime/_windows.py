"""Epoch windows: the callback that tells a session where Lightning's epochs begin and end.

Inserted first in ``trainer.callbacks`` so that its epoch-end hooks run before the module's own
(where users call ``reset()``), and called on every rank in the same order, which makes its
hooks the places for lmlogger's one collective per closed epoch.

A Trainer accepts callbacks of its own namespace only (``lightning.pytorch`` or ``pytorch_lightning``), so the
class a session inserts derives from that namespace's ``Callback`` (:func:`window_callback`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmlogger.records._errors import MismatchError
from lmlogger.runtime import _lightning

if TYPE_CHECKING:
    from lmlogger.runtime._session import Session


def window_callback(session: Session) -> WindowCallback:
    """A :class:`WindowCallback` that is a ``Callback`` of the namespace of the session's trainer."""
    ns = _lightning.of(session.trainer) or session.namespace
    cls = _classes.get(ns.name)
    if cls is None:
        cls = _classes[ns.name] = type("WindowCallback", (WindowCallback, ns.Callback), {"__module__": __name__})
    return cls(session)


class WindowCallback:
    """Marks epoch windows for a :class:`~lmlogger.runtime._session.Session` (see module docstring).

    Made a ``Callback`` of the trainer's namespace by :func:`window_callback`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        # on_mismatch="raise": the error of an epoch closed while Lightning hands its values to the loggers,
        # raised once every logger has them (see epoch_values_logged).
        self.pending: MismatchError | None = None

    # A plain class attribute (Lightning reads it for every hook call it makes, to name the profiler section).
    state_key = "lmlogger.WindowCallback"  # type: ignore[assignment]

    def _guard(self, where: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except MismatchError:
            raise
        except Exception as err:
            self.session._internal_error(where, err)

    def raise_pending(self) -> None:
        error, self.pending = self.pending, None
        if error is not None:
            raise error

    # training
    def epoch_values_logged(self, metrics: dict[str, Any]) -> None:
        """The training epoch's values reached the first VerifiedLogger (Lightning logs them after every
        ``on_train_epoch_end``): close the epoch now, so that a mismatch is raised at the end of the epoch
        it belongs to, not when the next one starts."""
        s = self.session
        capture = s.capture
        if s.open_train is None or capture is None or capture.phase != "train" or s.owner is not None:
            return
        if not any(
            t is not None and t.active and t.on_epoch and t.phase == "train" and t.epoch_key in metrics
            for t in s.trackers.values()
        ):
            return  # not Lightning's epoch values (e.g. the user's own logger.log_metrics call)
        owner, s.open_train = s.open_train, None
        try:
            self._guard("closing the training epoch", s.close, owner)
        except MismatchError as err:
            self.pending = err

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.raise_pending()
        s = self.session
        if s.open_train is not None:
            self._guard("closing the training epoch", s.close, s.open_train)
        s.open_train = ("train", trainer.current_epoch)
        self._guard("starting the training epoch", s.begin, s.open_train)
        self._guard("finding the callbacks that act on logged values", s.decisions.scan)  # added in a hook

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        s = self.session
        if s.open_train is not None:
            self._guard("ending the training epoch", s.end, s.open_train)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.session.samples.step_start(batch_idx, 0)  # sample accounting (_samples.py): never raises

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # callbacks set up, optimizers and schedulers made, a resumed checkpoint loaded (not yet released)
        self._guard("finding the callbacks that act on logged values", self.session.decisions.start)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.raise_pending()
        s = self.session
        if s.open_train is not None:
            owner, s.open_train = s.open_train, None
            self._guard("closing the training epoch", s.close, owner)
        self._guard("ending the decisions record", s.decisions.finish)

    # checkpoints saved during the run carry their verification (plain Python types: loads without lmlogger)
    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._guard("adding lmlogger's entry to the checkpoint", self.session.decisions.on_save_checkpoint, checkpoint)

    # validation / test
    def _eval_start(self, trainer: Any, phase: str) -> None:
        self.raise_pending()
        s = self.session
        s.outer = s.owner if s.owner is not None and s.owner[0] == "train" else None
        owner = ("sanity", 0) if trainer.sanity_checking else (phase, trainer.current_epoch)
        self._guard(f"starting the {phase} epoch", s.begin, owner)
        s.eval_owner = owner

    def _eval_epoch_end(self, trainer: Any) -> None:
        s = self.session
        if s.eval_owner is not None:
            self._guard("ending an evaluation epoch", s.end, s.eval_owner)

    def _eval_end(self, trainer: Any) -> None:
        s = self.session
        owner, s.eval_owner = s.eval_owner, None
        if owner is not None:
            self._guard("closing an evaluation epoch", s.close, owner)
        self._guard("resuming the training epoch", s.resume, s.outer)
        s.outer = None

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_start(trainer, "val")
        self._guard("finding the callbacks that act on logged values", self.session.decisions.scan)

    def on_validation_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if dataloader_idx != self.session.dl:
            self._guard("switching dataloaders", self.session.switch_dataloader, dataloader_idx)
        self.session.samples.step_start(batch_idx, dataloader_idx)

    def on_test_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if dataloader_idx != self.session.dl:
            self._guard("switching dataloaders", self.session.switch_dataloader, dataloader_idx)
        self.session.samples.step_start(batch_idx, dataloader_idx)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._eval_epoch_end(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._eval_end(trainer)

    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_start(trainer, "test")

    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._eval_epoch_end(trainer)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._eval_end(trainer)

    # Per-batch hooks this callback does not use. Lightning calls a callback's hook only when it is callable
    # (``_call_callback_hooks``), each call wrapped in a profiler context: ``None`` spares every training
    # step five such calls that would do nothing.
    on_train_batch_end = None  # type: ignore[assignment]
    on_before_backward = None  # type: ignore[assignment]
    on_after_backward = None  # type: ignore[assignment]
    on_before_optimizer_step = None  # type: ignore[assignment]
    on_before_zero_grad = None  # type: ignore[assignment]
    on_validation_batch_end = None  # type: ignore[assignment]
    on_test_batch_end = None  # type: ignore[assignment]
    on_predict_batch_start = None  # type: ignore[assignment]
    on_predict_batch_end = None  # type: ignore[assignment]


_classes: dict[str, type] = {}  # namespace name -> WindowCallback of that namespace
