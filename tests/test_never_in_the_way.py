"""lmlogger never changes how a job runs: no hang, no leak, no stray patch, no lost stage, no copied network.

Each test is one fault-injection run of a real Trainer (two gloo processes for the DDP case).
"""

import csv
import functools
import gc
import glob
import os
import weakref

import ddp_run
import pytest
import torch
from helpers import N_FEATURES, KitchenSink, dataset, loader, seeded, trainer
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.loggers import CSVLogger, Logger
from torch.utils.data import DataLoader
from torchmetrics import MaxMetric, Metric
from torchmetrics.classification import BinaryAUROC, BinaryF1Score

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.runtime import _intercept

LIGHTNING_LOG = LightningModule.__dict__["log"]


# -- 1. no hang ---------------------------------------------------------------------------------------
def _logged(out):
    (path,) = glob.glob(os.path.join(str(out), "ddp", "version_*", "metrics.csv"))
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    # every value the user logged, with its step (lmlogger's own reference metrics left out)
    return sorted(
        (k, row["step"], v)
        for row in rows
        for k, v in row.items()
        if v and k not in ("step", "epoch") and not k.startswith("lmlogger/")
    )


@pytest.mark.slow
def test_ddp_rank0_only_logging_without_autolog_finishes_like_plain_lightning(tmp_path):
    """enable_autolog_hparams=False and self.log on rank 0 only: every rank still enters lmlogger's
    collective, so the job finishes (a hang is killed at the timeout and fails) with plain's values."""
    flags = ("--rank0-logs-only", "--no-autolog-hparams")
    plain = ddp_run.launch(tmp_path / "plain", "ddp", "--plain", *flags, timeout=180)
    assert plain.returncode == 0, plain.stderr[-3000:]
    wrapped = ddp_run.launch(tmp_path / "wrapped", "ddp", *flags, timeout=180)
    assert wrapped.returncode == 0, wrapped.stderr[-3000:]
    assert _logged(tmp_path / "wrapped") == _logged(tmp_path / "plain")
    report = lmlogger.audit(str(tmp_path / "wrapped"))
    assert report.runs[0].complete
    keys = report.by_key()
    assert [e.epoch for e in keys["loss_epoch"].epochs] == [0, 1]
    assert keys["loss_epoch"].verdict == "match"
    assert "val_loss" in keys


# -- 2. memory bounded by keys, not steps --------------------------------------------------------------
def _storages(root, skip_types=()):
    """``{data_ptr: nbytes}`` of every tensor storage reachable from ``root`` through containers and
    object attributes (functions, classes and instances of ``skip_types`` are not entered)."""
    seen, found, stack = set(), {}, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, str, bytes, int, float, bool)) or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            found[storage.data_ptr()] = storage.nbytes()
            continue
        if (callable(obj) and not hasattr(obj, "__dict__")) or isinstance(obj, skip_types):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        else:
            stack.extend(getattr(obj, "__dict__", {}).values())
            for slot in getattr(type(obj), "__slots__", ()):
                stack.append(getattr(obj, slot, None))
    return found


def _user_storages(module):
    """Storages of the user's own tensors: parameters, buffers, metric states and caches."""
    tensors = []
    for m in module.modules():
        tensors += [t for t in (*m._parameters.values(), *m._buffers.values()) if t is not None]
        if isinstance(m, Metric):
            for value in [getattr(m, name) for name in m._defaults] + [m._forward_cache, m._computed]:
                tensors += value if isinstance(value, list) else [value]
    return _storages(tensors)


def held_bytes(trainer, module):
    """Bytes of tensor storage that lmlogger's session holds and the user's module does not."""
    from lightning.pytorch import Trainer

    session = _intercept.session_for(trainer)
    assert session is not None
    ours = _storages(session, skip_types=(Trainer, Logger, LightningModule))
    users = _user_storages(module)
    return sum(n for ptr, n in ours.items() if ptr not in users)


class Windowed(LightningModule):
    """A metric updated and reset every step (a windowed step-level metric), bytes held sampled."""

    def __init__(self, metric, on_epoch, marks=(20, 200)):
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.metric = metric
        self.on_epoch = on_epoch
        self.marks, self.held = set(marks), {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        p = logits.sigmoid().detach()
        self.metric.update(p, y) if not isinstance(self.metric, MaxMetric) else self.metric.update(p)
        self.log("windowed", self.metric.compute(), on_step=True, on_epoch=self.on_epoch)
        self.metric.reset()
        if batch_idx + 1 in self.marks:
            gc.collect()
            self.held[batch_idx + 1] = held_bytes(self.trainer, self)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    "make, on_epoch",
    [
        (lambda: BinaryAUROC(), False),  # cat states, step-only key (the reported case)
        (lambda: BinaryF1Score(), True),  # sum states, epoch value verified
        (lambda: MaxMetric(), True),  # a max state, epoch value verified
    ],
    ids=["cat-step-only", "sum-on-epoch", "max-on-epoch"],
)
def test_metric_reset_every_step_holds_no_more_at_step_200_than_at_step_20(tmp_path, make, on_epoch):
    """Memory lmlogger holds for a metric reset every step does not grow with the steps."""
    seeded(0)
    model = Windowed(make(), on_epoch)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    data = DataLoader(dataset(200 * 64, seed=0), batch_size=64)
    trainer(logger, tmp_path, max_epochs=1, enable_checkpointing=False).fit(model, data)
    assert model.held[200] <= model.held[20], model.held
    assert model.held[200] < 64 * 1024, model.held  # a few small tensors, not 200 steps' worth of samples
    key = lmlogger.audit(logger.log_dir).by_key()["windowed_epoch" if on_epoch else "windowed"]
    assert key.provenance == "metric_compute"
    if on_epoch:  # the epoch reference is still made, from the state merged as it was folded
        assert key.epochs[0].reference is not None
    del logger


# -- 3. every stage recorded ---------------------------------------------------------------------------
def test_fit_test_validate_without_autolog_hparams_are_all_recorded(tmp_path):
    """Trainer(enable_autolog_hparams=False): fit, then test, then validate each get their records."""
    seeded(0)
    model = KitchenSink(val_loaders=1)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    t = trainer(logger, tmp_path, max_epochs=1, enable_autolog_hparams=False, num_sanity_val_steps=0)
    t.fit(model, loader(), loader(60, seed=1))
    t.test(model, loader(44, seed=2))
    t.validate(model, loader(60, seed=1))
    assert LightningModule.__dict__["log"] is LIGHTNING_LOG  # nothing patched between or after the calls
    report = lmlogger.audit(logger.log_dir)
    (run,) = report.runs
    assert run.stages == ["fit", "test", "validate"] and run.complete
    keys = report.by_key()
    assert keys["test_f1"].verdict == "match" and keys["test_f1_compute"].verdict == "mismatch"
    # validation keys: once in fit (epoch 0), once in the validate call
    assert len(keys["val_acc"].epochs) == 2 and keys["val_acc"].verdict == "match"
    del logger


# -- 4. a metric that owns a network -------------------------------------------------------------------
class FeatureMean(Metric):
    """A metric with a feature extractor (like FID, KID, LPIPS): 4 MiB of parameters, tiny sum states."""

    def __init__(self):
        super().__init__()
        self.extractor = torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 1024), torch.nn.Linear(1024, 1024))
        self.extractor.requires_grad_(False)
        self.add_state("total", torch.zeros(1024, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, x):
        self.total += self.extractor(x).double().sum(0)
        self.n += x.shape[0]

    def compute(self):
        return (self.total / self.n).mean()


class WithNetworkMetric(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.fm = FeatureMean()
        self.xs = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.xs.append(x)
        self.fm.update(x)
        self.log("feature_mean", self.fm, on_step=False, on_epoch=True)
        return torch.nn.functional.binary_cross_entropy_with_logits(self.layer(x).squeeze(-1), y.float())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Probe(Callback):
    """Runs after lmlogger's callback (which is first): the training epoch is closed by then."""

    def on_train_end(self, trainer, pl_module):
        gc.collect()
        session = _intercept.session_for(trainer)
        self.shadow = session.taps[id(pl_module.fm)]._shadow
        self.held = held_bytes(trainer, pl_module)


def test_reference_of_a_metric_with_a_network_copies_states_never_parameters(tmp_path):
    """The reference copy of a metric that owns a network shares the network: no second copy of it."""
    seeded(0)
    model, probe = WithNetworkMetric(), Probe()
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
    trainer(logger, tmp_path, max_epochs=1, callbacks=[probe]).fit(model, loader())
    params = sum(p.numel() * p.element_size() for p in model.fm.extractor.parameters())
    assert params > 4 * 1024 * 1024
    assert probe.shadow is not None and probe.shadow is not model.fm
    assert probe.shadow.extractor is model.fm.extractor
    assert probe.held < 64 * 1024, probe.held  # states only (a few KiB), never the 4 MiB of parameters
    key = lmlogger.audit(logger.log_dir).by_key()["feature_mean"]
    x = torch.cat(model.xs)
    with torch.no_grad():
        truth = model.fm.extractor(x).double().mean(0).mean()
    assert key.verdict == "match"
    assert key.epochs[0].reference == pytest.approx(float(truth), rel=1e-9)
    del logger


# -- 5. garbage collected ------------------------------------------------------------------------------
def _refs_after_run(tmp_path, wrap):
    seeded(0)
    inner = CSVLogger(str(tmp_path))
    logger = VerifiedLogger(inner, on_mismatch="ignore") if wrap else inner
    t = trainer(logger, tmp_path, max_epochs=1, limit_val_batches=2)
    model = KitchenSink(val_loaders=1)
    t.fit(model, loader(), loader(60, seed=1))
    t.validate(model, loader(60, seed=1))
    refs = [weakref.ref(logger), weakref.ref(inner), weakref.ref(t)]
    del t, model, logger, inner
    gc.collect()
    return refs


def test_logger_and_wrapped_logger_are_garbage_collected(tmp_path):
    """After a run, `del` and gc.collect() free the VerifiedLogger and the logger it wraps, as for plain."""
    plain = _refs_after_run(tmp_path / "plain", wrap=False)
    assert [r() for r in plain] == [None, None, None]  # the baseline: Lightning frees a plain logger
    wrapped = _refs_after_run(tmp_path / "wrapped", wrap=True)
    assert [r() for r in wrapped] == [None, None, None]


def test_an_unused_logger_is_garbage_collected():
    """A VerifiedLogger that never ran holds nothing and patches nothing."""
    inner = CSVLogger("never-written")
    logger = VerifiedLogger(inner)
    assert LightningModule.__dict__["log"] is LIGHTNING_LOG
    refs = [weakref.ref(logger), weakref.ref(inner)]
    del logger, inner
    gc.collect()
    assert [r() for r in refs] == [None, None]
    assert not os.path.exists("never-written")


# -- 6. the patch never outlives its run ---------------------------------------------------------------
class FailsInConfigureOptimizers(KitchenSink):
    def configure_optimizers(self):
        raise RuntimeError("bad optimizer config")


class ServerDown(CSVLogger):
    """A tracking backend that is unreachable when Lightning first touches it (fault injection)."""

    @property
    def experiment(self):
        raise ConnectionError("tracking server down")

    def finalize(self, status):
        pass


class Seen(Callback):
    """Records whether lmlogger's seam was in place while the run was going on."""

    seen = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        Seen.seen = LightningModule.__dict__["log"] is not LIGHTNING_LOG


@pytest.mark.parametrize("case", ["configure_optimizers", "server_down", "training_step", "fast_dev_run"])
def test_lightning_log_is_lightnings_own_after_a_failing_or_dummy_run(tmp_path, case):
    """However the trainer call ends, LightningModule.log is Lightning's own when it returns."""
    seeded(0)
    inner = ServerDown(str(tmp_path)) if case == "server_down" else CSVLogger(str(tmp_path))
    logger = VerifiedLogger(inner, on_mismatch="ignore")
    model = FailsInConfigureOptimizers() if case == "configure_optimizers" else KitchenSink(val_loaders=1)
    if case == "training_step":
        model.training_step = lambda batch, batch_idx: 1 / 0
    options = {"fast_dev_run": True} if case == "fast_dev_run" else {"max_epochs": 1}
    Seen.seen = None
    t = trainer(logger, tmp_path, callbacks=[Seen()], **options)
    if case == "fast_dev_run":
        t.fit(model, loader())
        assert Seen.seen is False  # Lightning swapped in a dummy logger: lmlogger never patched anything
    else:
        error = {"configure_optimizers": RuntimeError, "server_down": ConnectionError}.get(case, ZeroDivisionError)
        with pytest.raises(error):
            t.fit(model, loader())
    assert LightningModule.__dict__["log"] is LIGHTNING_LOG
    assert _intercept.session_for(t) is None
    if case == "training_step":
        assert Seen.seen is True  # it was in place during the run, and is gone after it
        assert lmlogger.audit(logger.log_dir).runs[0].status == "failed"
    del logger


# -- 7. another library's wrapper of LightningModule.log -----------------------------------------------
def test_third_party_wrapper_installed_on_top_survives_and_is_called_in_the_next_run(tmp_path):
    """A functools.wraps wrapper installed over lmlogger's during a run stays installed and called."""
    calls = []

    class InstallThirdParty(Callback):
        def on_train_start(self, trainer, pl_module):
            below = LightningModule.__dict__["log"]

            @functools.wraps(below)
            def third_party_log(self, name, value, *args, **kwargs):
                calls.append(name)
                return below(self, name, value, *args, **kwargs)

            LightningModule.log = third_party_log

    try:
        seeded(0)
        model = KitchenSink(val_loaders=1)
        logger = VerifiedLogger(CSVLogger(str(tmp_path)), on_mismatch="ignore")
        t = trainer(logger, tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[InstallThirdParty()])
        t.fit(model, loader())
        third_party = LightningModule.__dict__["log"]
        assert third_party.__name__ == "log" and third_party is not LIGHTNING_LOG  # still installed
        fit_calls = len(calls)
        assert fit_calls > 0
        t.test(model, loader(44, seed=2))  # the next run
        assert LightningModule.__dict__["log"] is third_party
        assert calls[fit_calls:] and set(calls[fit_calls:]) == {"test_f1", "test_f1_compute"}
        keys = lmlogger.audit(logger.log_dir).by_key()
        assert keys["test_f1"].verdict == "match" and keys["test_f1_compute"].verdict == "mismatch"
        assert keys["f1_object"].verdict == "match"
        del logger
    finally:
        LightningModule.log = LIGHTNING_LOG


# -- 8. tolerances ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options", [{"rtol": float("inf")}, {"atol": float("inf")}, {"rtol": float("nan")}, {"atol": -1.0}]
)
def test_non_finite_or_negative_tolerances_are_rejected_with_the_option_named(tmp_path, options):
    """VerifiedLogger(rtol=inf) fails at construction, naming the option, instead of recording nothing."""
    (name,) = options
    with pytest.raises(ValueError, match=rf"VerifiedLogger\({name}=.*finite number >= 0"):
        VerifiedLogger(CSVLogger(str(tmp_path)), **options)


def test_a_large_finite_tolerance_still_records_the_run(tmp_path):
    """A valid (if loose) tolerance records the run: the header is written and verdicts made."""
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path)), rtol=1e6, atol=0)
    trainer(logger, tmp_path, max_epochs=1, limit_val_batches=0).fit(KitchenSink(val_loaders=1), loader())
    keys = lmlogger.audit(logger.log_dir).by_key()
    assert keys["f1_compute"].verdict == "match"  # the mismatch is within rtol=1e6
    del logger
