"""Where DistributedSampler's repeats are, and how each kind of state is corrected, in one process.

A ``DistributedSampler(ds, num_replicas=W, rank=r)`` built by hand behaves in one process exactly as
on rank ``r`` of ``W`` (Lightning keeps a sampler that is already distributed), so the single-process
run below sees the repeat rank 1 of 2 gets, without a process group. Ground truth: every sample
index, prediction and per-sample loss the model saw, recorded outside lmlogger.
"""

import pytest
import torch
import torchmetrics.functional.classification as F
from helpers import N_FEATURES, quiet, seeded, trainer
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler, TensorDataset
from torchmetrics import MaxMetric, MeanMetric, Metric
from torchmetrics.classification import BinaryAUROC, BinaryF1Score

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.runtime._samples import plan_of


# ---------------------------------------------------------------------------------------------
# the plan: which rows of which batches are repeats, checked against the sampler's own output
# ---------------------------------------------------------------------------------------------
class EveryThird(Sampler):
    """A custom sampler (Lightning wraps such a one in DistributedSamplerWrapper)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(list(range(0, self.n, 3)) + list(range(1, self.n, 3)))

    def __len__(self):
        return len(range(0, self.n, 3)) + len(range(1, self.n, 3))


def observed_repeats(make_sampler, world, batch_size, drop_last):
    """``{(rank, batch, row)}`` holding a second occurrence, from the indices the samplers yield.

    The padded global list interleaves the ranks (global position = local * world + rank); of two
    equal indices the later position is the repeat.
    """
    per_rank = [list(make_sampler(rank)) for rank in range(world)]
    seen, repeats = set(), set()
    for j in range(max(len(r) for r in per_rank)):
        for rank in range(world):
            if j < len(per_rank[rank]):
                index = per_rank[rank][j]
                if index in seen:
                    batch, row = divmod(j, batch_size)
                    if not drop_last or (batch + 1) * batch_size <= len(per_rank[rank]):
                        repeats.add((rank, batch, row))
                seen.add(index)
    return repeats


def planned_repeats(make_sampler, world, batch_size, drop_last):
    found = set()
    for rank in range(world):
        plan = plan_of(DataLoader(range(100), batch_size=batch_size, sampler=make_sampler(rank), drop_last=drop_last))
        for batch in range(20):
            _, rows = plan.batch(batch)
            found |= {(rank, batch, row) for row in rows}
    return found


@pytest.mark.parametrize("n, world, batch_size", [(33, 2, 8), (33, 4, 5), (10, 3, 2), (2, 4, 1), (7, 8, 3)])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_planned_repeats_are_the_sampler_repeats(n, world, batch_size, shuffle, drop_last):
    data = list(range(n))

    def make(rank):
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=shuffle, seed=7)
        sampler.set_epoch(3)
        return sampler

    expected = observed_repeats(make, world, batch_size, drop_last)
    assert planned_repeats(make, world, batch_size, drop_last) == expected
    assert len(expected) == (world - n % world) % world or drop_last or n < world


def test_planned_repeats_of_lightnings_wrapper_around_a_custom_sampler():
    def make(rank):
        return DistributedSamplerWrapper(EveryThird(22), num_replicas=4, rank=rank, shuffle=False)

    expected = observed_repeats(make, 4, 3, False)
    assert expected and planned_repeats(make, 4, 3, False) == expected


def test_sampler_drop_last_drops_instead_of_padding():
    plan = plan_of(DataLoader(range(33), batch_size=8, sampler=DistributedSampler(range(33), 2, 1, drop_last=True)))
    assert not plan.padded and plan.dataset_size == 33


def test_custom_batch_sampler_gives_a_reason_not_a_guess():
    class Pairs(BatchSampler):
        pass

    sampler = DistributedSampler(range(33), 2, 1, shuffle=False)
    loader = DataLoader(range(33), batch_sampler=[[0, 1]] * 3)
    loader.__dict__["batch_sampler"] = type("Custom", (), {"sampler": sampler})()
    plan = plan_of(loader)
    assert plan.padded and "does not say which batches" in plan.reason and plan.batch(0) == (0, [])


# ---------------------------------------------------------------------------------------------
# correcting each kind of state: a run that is "rank 1 of 2"
# ---------------------------------------------------------------------------------------------
class CatMean(Metric):
    """A cat state updated with full_state_update=True (forward rewrites the whole state each step)."""

    full_state_update = True

    def __init__(self):
        super().__init__()
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def update(self, x):
        self.values.append(x)

    def compute(self):
        return torch.cat(self.values).mean()


def indexed(n):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, N_FEATURES, generator=g)
    y = ((x[:, 0] + 0.8 * torch.randn(n, generator=g)) > 0.2).long()
    x[0, 0], y[0] = 2.0, 1  # the sample the sampler repeats is a positive
    return TensorDataset(x, y, torch.arange(n))


class RankOne(LightningModule):
    def __init__(self, n, batch_size, shuffle=False):
        super().__init__()
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.f1 = BinaryF1Score()
        self.f1_forward = BinaryF1Score()
        self.auroc = BinaryAUROC()
        self.loss_mean = MeanMetric()
        self.cat_mean = CatMean()
        self.max_prob = MaxMetric()
        self.seen = {}

    def validation_step(self, batch, batch_idx):
        x, y, idx = batch
        logits = self.layer(x).squeeze(-1)
        p = logits.sigmoid()
        losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float(), reduction="none")
        rows = self.seen.setdefault(self.current_epoch, {"idx": [], "p": [], "y": [], "loss": []})
        for name, value in (("idx", idx), ("p", p), ("y", y), ("loss", losses)):
            rows[name].append(value.clone())
        self.f1.update(p, y)
        self.log("f1", self.f1)
        self.log("f1_forward", self.f1_forward(p, y))
        self.auroc.update(p, y)
        self.log("auroc", self.auroc)
        self.loss_mean.update(losses)
        self.log("loss_mean", self.loss_mean)
        self.log("cat_mean", self.cat_mean(p))
        self.log("cat_mean_object", self.cat_mean)
        self.max_prob.update(p)
        self.log("max_prob", self.max_prob)
        self.log("loss", losses.mean())

    def test_step(self, batch, batch_idx):
        self.validation_step(batch, batch_idx)

    def test_dataloader(self):
        return self.val_dataloader()

    def val_dataloader(self):
        ds = indexed(self.n)
        sampler = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=self.shuffle, seed=5)
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler)

    def truth(self, epoch, unique=True):
        """What this rank saw; with ``unique``, without the samples rank 0 already counts (the repeats)."""
        rows = {k: torch.cat(v) for k, v in self.seen[epoch].items()}
        if unique:
            rank0 = DistributedSampler(range(self.n), num_replicas=2, rank=0, shuffle=self.shuffle, seed=5)
            rank0.set_epoch(epoch)
            counted = set(rank0)
            keep = torch.tensor([i for i, idx in enumerate(rows["idx"].tolist()) if idx not in counted])
            rows = {k: v[keep] for k, v in rows.items()}
        return rows


def validate(tmp_path, model, stage="validate"):
    quiet()
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp_path), name="r1"), on_mismatch="ignore")
    getattr(trainer(logger, tmp_path), stage)(model)
    return lmlogger.audit(str(tmp_path)).by_key()


@pytest.fixture(scope="module", params=[False, True], ids=["sequential", "shuffled"])
def alone(request, tmp_path_factory):
    """33 samples, batch 8: rank 1's 17th sample is a repeat, alone in its batch."""
    model = RankOne(33, 8, shuffle=request.param)
    return model, validate(tmp_path_factory.mktemp("alone"), model)


def test_sum_and_cat_states_are_corrected_exactly(alone):
    model, keys = alone
    unique, everything = model.truth(0), model.truth(0, unique=False)
    assert len(everything["idx"]) == 17 and len(unique["idx"]) == 16
    expected = {
        "f1": lambda r: F.binary_f1_score(r["p"], r["y"]),
        "auroc": lambda r: F.binary_auroc(r["p"], r["y"]),
        "loss_mean": lambda r: r["loss"].double().mean(),
        "cat_mean_object": lambda r: r["p"].mean(),
        "loss": lambda r: r["loss"].double().mean(),
    }
    for name, fn in expected.items():
        e = keys[name].epochs[0]
        assert e.reference == pytest.approx(float(fn(unique)), rel=1e-5), name
        assert e.logged == pytest.approx(float(fn(everything)), rel=1e-5), name
        assert "padded-duplicates" in keys[name].findings, name
        assert (e.samples, e.dataset_size, e.duplicates) == (17, 33, 1), name


def test_forward_values_keep_their_own_finding_and_get_the_padding_one(alone):
    _, keys = alone
    assert keys["f1_forward"].findings == ["batch-values-averaged", "padded-duplicates"]
    assert keys["f1_forward"].fix.startswith('self.f1_forward.update(p, y); self.log("f1_forward", self.f1_forward')


def test_max_state_cannot_be_corrected_and_says_why(alone):
    _, keys = alone
    k = keys["max_prob"]
    assert k.verdict == "unverified"
    assert "reduced with `max`" in k.reason and "cannot be removed exactly" in k.reason


def test_repeat_sharing_a_batch_with_unique_samples(tmp_path):
    """Batch 5: rank 1's last batch holds one unique sample and the repeat."""
    model = RankOne(33, 5)
    keys = validate(tmp_path, model)
    unique = model.truth(0)
    assert keys["f1"].epochs[0].reference == pytest.approx(float(F.binary_f1_score(unique["p"], unique["y"])))
    assert keys["loss_mean"].epochs[0].reference == pytest.approx(float(unique["loss"].double().mean()), rel=1e-6)
    # a batch mean mixing a repeat with a unique sample cannot be split: say so, claim nothing
    loss = keys["loss"]
    assert loss.verdict == "unverified" and loss.epochs[0].reference is None
    assert "mixed 1 repeated with 1 unique samples" in loss.reason
    assert loss.findings == ["padded-duplicates"] and loss.epochs[0].duplicates == 1


def test_divisible_set_in_one_process_changes_nothing(tmp_path):
    model = RankOne(34, 8)
    keys = validate(tmp_path, model)
    for name in ("f1", "auroc", "loss_mean", "cat_mean_object", "loss", "max_prob"):
        k = keys[name]
        assert k.verdict == "match" and k.findings == [], name
        assert (k.epochs[0].samples, k.epochs[0].dataset_size, k.epochs[0].duplicates) == (17, 34, 0), name


def test_test_loop_is_accounted_too(tmp_path):
    model = RankOne(33, 8)
    keys = validate(tmp_path, model, stage="test")
    unique = model.truth(0)
    e = keys["f1"].epochs[0]
    assert e.phase == "test" and (e.samples, e.dataset_size, e.duplicates) == (17, 33, 1)
    assert e.reference == pytest.approx(float(F.binary_f1_score(unique["p"], unique["y"])), rel=1e-6)


def test_padded_batch_adds_no_sync(tmp_path, monkeypatch):
    """Snapshot, recorded update calls and the end of the padded step read no tensor value."""
    from test_performance import SYNCING, CountSyncsInSteps

    class WholeEpoch(CountSyncsInSteps):
        """Counts from the first batch to the module's epoch end, the padded batch's bookkeeping included."""

        def on_validation_batch_end(self, *args):
            pass

        def on_validation_epoch_end(self, *args):
            self.active = False

    counts = []
    for wrap in (False, True):
        quiet()
        seeded(0)
        counter = WholeEpoch(monkeypatch)
        logger = CSVLogger(str(tmp_path / str(wrap)))
        if wrap:
            logger = VerifiedLogger(logger, on_mismatch="ignore")
        trainer(logger, tmp_path / str(wrap), callbacks=[counter]).validate(RankOne(33, 8))
        monkeypatch.undo()
        counts.append(counter.counts)
    assert set(counts[0]) == set(SYNCING) and sum(counts[0].values()) > 0  # the counter sees torchmetrics' checks
    assert counts[1] == counts[0]
