"""Decisions never in the way: callback subclasses with their own signatures, other libraries' wrappers, callbacks
added while training runs, and checkpoints whose `lmlogger` entry is odd.

Every fit runs the `Decided` module of test_decisions (the logged `val_f1` and the true F1 rank epochs differently)
with a plain logger and with VerifiedLogger; what the callbacks did must be the same in both, and the decisions must
be recorded wherever the calls can be read.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from helpers import seeded, trainer
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from test_decisions import Decided, epoch_of, loaders

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.cli import main as cli_main

EPOCHS = 5


# -- subclasses whose own code calls the wrapped method with an extra argument ---------------------------------
class TaggedCheckpoint(ModelCheckpoint):
    """`_save_topk_checkpoint(self, trainer, monitor_candidates, tag=None)`, called with its tag by its own code
    (positionally, or every argument by keyword), returning a value its caller uses."""

    def __init__(self, *args, by_keyword: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.by_keyword = by_keyword
        self.tags: list[tuple[int, str | None]] = []
        self.returned: list[str] = []

    def _save_topk_checkpoint(self, trainer, monitor_candidates, tag=None):
        self.tags.append((trainer.current_epoch, tag))
        super()._save_topk_checkpoint(trainer, monitor_candidates)
        return f"saved-{tag}"

    def on_validation_end(self, trainer, pl_module):
        if self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if self.by_keyword:
            result = self._save_topk_checkpoint(trainer=trainer, monitor_candidates=candidates, tag="kw")
        else:
            result = self._save_topk_checkpoint(trainer, candidates, "val")
        self.returned.append(result)
        self._save_last_checkpoint(trainer, candidates)


class TrainerStopping(EarlyStopping):
    """`_evaluate_stopping_criteria(self, current, trainer=None)`, called with the trainer by its own code."""

    def __init__(self, *args, by_keyword: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.by_keyword = by_keyword
        self.seen: list[tuple[int, bool]] = []

    def _evaluate_stopping_criteria(self, current, trainer=None):
        self.seen.append((trainer.current_epoch if trainer is not None else -1, bool(torch.isfinite(current))))
        return super()._evaluate_stopping_criteria(current)

    def _run_early_stopping_check(self, trainer):
        logs = trainer.callback_metrics
        if not self._validate_condition_metric(logs):
            return
        current = logs[self.monitor].squeeze()
        if self.by_keyword:
            should_stop, _ = self._evaluate_stopping_criteria(current=current, trainer=trainer)
        else:
            should_stop, _ = self._evaluate_stopping_criteria(current, trainer)
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch


def _counting(fn, counter: list):
    def wrapper(*args, **kwargs):
        counter.append(1)
        return fn(*args, **kwargs)

    wrapper.other_library = True
    return wrapper


class WrappedBefore(ModelCheckpoint):
    """Another library wrapped the method on the instance before the run (at construction)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list = []
        self._save_topk_checkpoint = _counting(self._save_topk_checkpoint, self.calls)


class WrapsAfter(Callback):
    """Another library wraps EarlyStopping's method on the instance once training started (on top of lmlogger)."""

    def __init__(self, target: EarlyStopping) -> None:
        self.target = target
        self.calls: list = []

    def on_train_start(self, trainer, pl_module):
        self.target._evaluate_stopping_criteria = _counting(self.target._evaluate_stopping_criteria, self.calls)


def callbacks_for(root, form: str) -> list:
    if form == "positional":
        return [
            TaggedCheckpoint(dirpath=root / "ckpt", monitor="val_f1", mode="max", filename="{epoch}", save_last=True),
            TrainerStopping(monitor="val_f1", mode="max", patience=1),
        ]
    if form == "keyword":
        return [
            TaggedCheckpoint(dirpath=root / "ckpt", monitor="val_f1", mode="max", filename="{epoch}", by_keyword=True),
            TrainerStopping(monitor="val_f1", mode="max", patience=1, by_keyword=True),
        ]
    stopping = EarlyStopping(monitor="val_f1", mode="max", patience=1)
    return [
        WrappedBefore(dirpath=root / "ckpt", monitor="val_f1", mode="max", filename="{epoch}"),
        stopping,
        WrapsAfter(stopping),
    ]


def fit(root, form: str, verified: bool):
    seeded(0)
    logger = CSVLogger(str(root), name="run")
    if verified:
        logger = VerifiedLogger(logger, on_mismatch="ignore")
    callbacks = callbacks_for(root, form)
    tr = trainer(logger, root, max_epochs=EPOCHS, callbacks=callbacks)
    module = Decided(scheduler=False)
    train, val = loaders()
    tr.fit(module, train, val)
    checkpoint, stopping = callbacks[0], callbacks[1]
    return {
        "logger": logger,
        "callbacks": callbacks,
        "epochs": tr.current_epoch,
        "stopped": stopping.stopped_epoch,
        "best": epoch_of(checkpoint.best_model_path),
        "kept": sorted(os.path.basename(p) for p in checkpoint.best_k_models),
        "weights": module.layer.weight.detach().clone(),
        "tags": getattr(checkpoint, "tags", None),
        "returned": getattr(checkpoint, "returned", None),
        "seen": getattr(stopping, "seen", None),
        "calls": (len(getattr(checkpoint, "calls", [])), len(getattr(callbacks[-1], "calls", []))),
    }


FORMS = ["positional", "keyword", "other-library"]


@pytest.fixture(scope="module", params=FORMS)
def pair(request, tmp_path_factory):
    plain = fit(tmp_path_factory.mktemp("plain"), request.param, verified=False)
    verified = fit(tmp_path_factory.mktemp("verified"), request.param, verified=True)
    return request.param, plain, verified


def test_subclass_trains_as_without_lmlogger(pair):
    """The same epochs, early stop, kept checkpoints, weights, the subclass's own arguments and return values."""
    form, plain, verified = pair
    assert plain["stopped"] == verified["stopped"] > 0 and plain["epochs"] == verified["epochs"] < EPOCHS
    assert plain["best"] == verified["best"] == 1  # the logged best
    assert plain["kept"] == verified["kept"]
    assert torch.equal(plain["weights"], verified["weights"])
    assert plain["tags"] == verified["tags"]
    assert plain["returned"] == verified["returned"]
    assert plain["seen"] == verified["seen"]
    assert plain["calls"] == verified["calls"]
    if form != "other-library":
        tag = "kw" if form == "keyword" else "val"
        assert [e for e, t in verified["tags"] if t == tag] == list(range(verified["stopped"] + 1))
        assert verified["returned"] == [f"saved-{tag}"] * (verified["stopped"] + 1)
        assert [s[0] for s in verified["seen"]] == list(range(verified["stopped"] + 1))  # the trainer was passed
    else:
        assert verified["calls"][0] == verified["calls"][1] == verified["stopped"] + 1


def test_decisions_still_recorded(pair):
    """Both callbacks' reads reach the audit, with the logged and the reference decision."""
    _, _, verified = pair
    decisions = lmlogger.audit(verified["logger"].log_dir).runs[0].to_dict()["decisions"]
    by_kind = {d["kind"]: d for d in decisions}
    calls = len(verified["tags"]) if verified["tags"] is not None else verified["calls"][0]
    assert by_kind["checkpoint"]["reads"] == calls >= verified["stopped"] + 1  # one per call of the method
    assert by_kind["early_stopping"]["reads"] == verified["stopped"] + 1
    assert by_kind["checkpoint"]["by_logged"]["epoch"] == verified["best"] == 1
    assert by_kind["checkpoint"]["by_reference"]["epoch"] == 2 and by_kind["checkpoint"]["agree"] is False


def test_other_libraries_wrappers_stay_installed(pair):
    """After the run the other library's instance wrappers are still there (lmlogger put back only its own), and
    calling them works without recording anything."""
    form, _, verified = pair
    if form != "other-library":
        pytest.skip("only the other-library form installs foreign wrappers")
    checkpoint, stopping = verified["callbacks"][0], verified["callbacks"][1]
    assert getattr(checkpoint.__dict__["_save_topk_checkpoint"], "other_library", False)
    assert getattr(stopping.__dict__["_evaluate_stopping_criteria"], "other_library", False)
    assert stopping._evaluate_stopping_criteria(torch.tensor(0.1))[0] in (True, False)
    assert len(verified["callbacks"][2].calls) == verified["stopped"] + 2


def test_signature_the_wrapper_cannot_read_records_nothing_and_trains(tmp_path):
    """A subclass that renamed the candidates parameter and passes it by keyword: training as plain, no warning
    from lmlogger, and only the calls lmlogger can read (Lightning's own, positional) are recorded."""

    class Renamed(ModelCheckpoint):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls: list[bool] = []  # True: Lightning's own call (positional), False: the subclass's

        def _save_topk_checkpoint(self, trainer, candidates=None, *, extra=None):
            self.calls.append(extra is None)
            return super()._save_topk_checkpoint(trainer, candidates)

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self._save_topk_checkpoint(trainer, candidates=self._monitor_candidates(trainer), extra=object())

    def one(verified):
        seeded(0)
        root = tmp_path / str(verified)
        logger = CSVLogger(str(root))
        if verified:
            logger = VerifiedLogger(logger, on_mismatch="ignore")
        ckpt = Renamed(dirpath=root / "ckpt", monitor="val_f1", mode="max", filename="{epoch}")
        train, val = loaders()
        trainer(logger, root, max_epochs=3, callbacks=[ckpt]).fit(Decided(scheduler=False), train, val)
        return logger, epoch_of(ckpt.best_model_path), ckpt.calls

    _, plain_best, plain_calls = one(False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger, best, calls = one(True)
    assert best == plain_best and calls == plain_calls and calls.count(False) == 3
    assert not [w for w in caught if "internal error" in str(w.message)]
    decisions = lmlogger.audit(logger.log_dir).runs[0].to_dict()["decisions"]
    lightning_calls = calls.count(True)
    expected = [lightning_calls] if lightning_calls else []
    assert [d["reads"] for d in decisions if d["kind"] == "checkpoint"] == expected


# -- callbacks added once training runs ---------------------------------------------------------------------------
class Adds(Callback):
    """Appends `callback` to trainer.callbacks at the end of training epoch `epoch`."""

    def __init__(self, callback, epoch: int) -> None:
        self.callback, self.epoch = callback, epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.callbacks.append(self.callback)


def test_callback_added_after_training_started_is_tracked(tmp_path):
    """A ModelCheckpoint appended after epoch 0 is tracked from the next epoch on: its reads (epochs 1-4) and the
    checkpoint it kept are in the audit."""
    seeded(0)
    late = ModelCheckpoint(dirpath=tmp_path / "late", monitor="val_f1", mode="max", filename="{epoch}")
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    train, val = loaders()
    tr = trainer(logger, tmp_path, max_epochs=EPOCHS, callbacks=[Adds(late, 0)], enable_checkpointing=False)
    tr.fit(Decided(scheduler=False), train, val)
    assert late in tr.callbacks and epoch_of(late.best_model_path) == 1
    decision = next(
        d for d in lmlogger.audit(logger.log_dir).runs[0].to_dict()["decisions"] if d["kind"] == "checkpoint"
    )
    assert decision["reads"] == EPOCHS - 1
    assert decision["by_logged"]["epoch"] == 1 and decision["by_reference"]["epoch"] == 2


def test_callback_added_in_the_last_epoch_is_named_once(tmp_path):
    """Appended at the end of the last epoch: lmlogger never saw a read of it and says so in one warning."""
    seeded(0)
    late = EarlyStopping(monitor="val_f1", mode="max", patience=1)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    train, val = loaders()
    tr = trainer(logger, tmp_path, max_epochs=2, callbacks=[Adds(late, 1)], enable_checkpointing=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr.fit(Decided(scheduler=False), train, val)
    named = [str(w.message) for w in caught if "joined trainer.callbacks" in str(w.message)]
    assert named == [
        "lmlogger: EarlyStopping(monitor='val_f1') joined trainer.callbacks after the last epoch began; lmlogger did "
        "not track its decisions (callbacks present when an epoch begins are tracked)."
    ]


# -- resuming from checkpoints whose `lmlogger` entry is odd -------------------------------------------------------
@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A verified run of 2 epochs whose last.ckpt carries the `lmlogger` entry."""
    root = tmp_path_factory.mktemp("first")
    seeded(0)
    ckpt = ModelCheckpoint(dirpath=root / "ckpt", monitor="val_f1", mode="max", save_last=True, filename="{epoch}")
    train, val = loaders()
    logger = VerifiedLogger(CSVLogger(str(root), name="first"), on_mismatch="ignore")
    trainer(logger, root, max_epochs=2, callbacks=[ckpt]).fit(Decided(scheduler=False), train, val)
    checkpoint = torch.load(root / "ckpt" / "last.ckpt", weights_only=False)
    assert checkpoint["lmlogger"]["global_step"] == 4 and checkpoint["lmlogger"]["replays"]
    return checkpoint


def _set(path: str, value):
    def change(entry):
        target = entry
        *parents, last = path.split(".")
        for name in parents:
            target = target[int(name)] if isinstance(target, list) else target[name]
        target[int(last) if isinstance(target, list) else last] = value
        return entry

    return change


STAMPS = {
    "step-float": (_set("global_step", 4.0), "global_step"),
    "step-str": (_set("global_step", "4"), "global_step"),
    "step-huge": (_set("global_step", 2**70), "global_step"),
    "step-none": (_set("global_step", None), "global_step"),
    "step-list": (_set("global_step", [4]), "global_step"),
    "epoch-negative": (_set("epoch", -3), "epoch"),
    "replay-state": (_set("replays.0.logged", "garbage"), "replays[0]"),
    "replay-kth": (_set("replays.0.logged.kth", "x"), "replays[0]"),
    "replay-verdict": (_set("replays.0.verdict", ["match"]), "replays[0]"),
    "replays-dict": (_set("replays", {"a": 1}), "replays"),
    "not-a-dict": (lambda entry: "lmlogger 0.1", "not a dict"),
}
SEEDED = {"step-float", "step-str", "step-huge", "step-none", "step-list", "epoch-negative"}  # valid replays


@pytest.mark.parametrize("case", sorted(STAMPS))
def test_resumed_run_with_an_odd_stamp_stays_auditable(first_run, tmp_path, case):
    """The resumed run trains as usual, one warning names the invalid field, every record of the new run is
    readable (`lmlogger audit` exits 0 or 1, report.html is written) and its decisions are still tracked: with the
    first run's decisions where the replays' state is valid, afresh where it is not."""
    import copy

    change, field_name = STAMPS[case]
    checkpoint = copy.deepcopy(first_run)
    checkpoint["lmlogger"] = change(checkpoint["lmlogger"])
    path = tmp_path / "odd.ckpt"
    torch.save(checkpoint, path)
    seeded(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_f1", mode="max", filename="{epoch}")
    logger = VerifiedLogger(CSVLogger(str(tmp_path), name="second"), on_mismatch="ignore")
    train, val = loaders()
    tr = trainer(logger, tmp_path, max_epochs=4, callbacks=[ckpt])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr.fit(Decided(scheduler=False), train, val, ckpt_path=str(path))
    assert tr.current_epoch == 4
    named = [str(w.message) for w in caught if "entry has invalid fields" in str(w.message)]
    assert len(named) == 1 and field_name in named[0], [str(w.message) for w in caught]
    assert not [w for w in caught if "internal error" in str(w.message)]
    assert cli_main(["audit", logger.log_dir]) in (0, 1)
    assert os.path.isfile(os.path.join(logger.log_dir, "lmlogger", "report.html"))
    decision = next(
        d for d in lmlogger.audit(logger.log_dir).runs[0].to_dict()["decisions"] if d["kind"] == "checkpoint"
    )
    seeded_reads = 2 if case in SEEDED else 0
    assert decision["reads"] == seeded_reads + 2  # the resumed run's own two reads always
