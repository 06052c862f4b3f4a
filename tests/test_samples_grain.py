"""Only batch-granular evidence weighs a step: tokens and pixels are not samples, the batch itself is evidence.

Each module below is a real pattern: a token classifier whose metric counts tokens, a segmenter whose metric
counts pixels, a time-major dict or tuple batch where Lightning takes the sequence length for the batch size,
a dict batch that starts with a per-sample list of strings, and a batch that disagrees with itself with no
way to tell which size counts samples. Ground truth is every per-sample loss, prediction and Lightning weight,
recorded outside lmlogger, and recomputed here.
"""

import pytest
import torch
import torchmetrics.functional.classification as FC
from helpers import N_FEATURES, quiet, seeded, trainer
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torchmetrics.classification import BinaryAccuracy, MulticlassJaccardIndex

import lmlogger
from lmlogger import VerifiedLogger

N = 44  # batches of 16, 16 and 12
T = 10  # the sequence length Lightning takes for the batch size in a time-major batch
EPOCHS = 2


class Items(Dataset):
    """``(x, y, text)`` items: ``x`` of ``length`` steps (a length per item when ``length`` is None)."""

    def __init__(self, seed: int, length: int | None = T) -> None:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(2, 14, (N,), generator=g) if length is None else torch.full((N,), length)
        self.x = [torch.randn(int(n), N_FEATURES, generator=g) for n in lengths]
        self.y = [((x[:, 0] + 0.5 * torch.randn(len(x), generator=g)) > 0).long() for x in self.x]

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], f"sample {i}"


class Base(LightningModule):
    """Records every step's per-sample losses, the weight Lightning used, and every sample prediction."""

    collate = None

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(N_FEATURES, 1)
        self.steps: dict[tuple, list[tuple[float, int, torch.Tensor]]] = {}
        self.preds: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def record(self, phase: str, loss: torch.Tensor, per_sample: torch.Tensor, weight: int) -> None:
        self.steps.setdefault((phase, self.current_epoch), []).append(
            (float(loss.detach()), weight, per_sample.detach())
        )

    def lightning_mean(self, phase: str, epoch: int) -> float:
        steps = self.steps[(phase, epoch)]
        return sum(v * w for v, w, _ in steps) / sum(w for _, w, _ in steps)

    def sample_mean(self, phase: str, epoch: int) -> float:
        return float(torch.cat([s for _, _, s in self.steps[(phase, epoch)]]).double().mean())

    def batch_weighted_mean(self, phase: str, epoch: int) -> float:
        """Each step's (per-batch) loss weighted by its number of samples."""
        steps = self.steps[(phase, epoch)]
        return sum(v * len(s) for v, _, s in steps) / sum(len(s) for _, _, s in steps)

    def train_dataloader(self):
        return DataLoader(self.dataset(0), batch_size=16, collate_fn=type(self).collate)

    def val_dataloader(self):
        return DataLoader(self.dataset(1), batch_size=16, collate_fn=type(self).collate)

    def dataset(self, seed: int) -> Dataset:
        return Items(seed)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def fit(model: LightningModule, tmp) -> dict:
    quiet()
    seeded(0)
    logger = VerifiedLogger(CSVLogger(str(tmp), name="grain"), on_mismatch="ignore")
    trainer(logger, tmp, max_epochs=EPOCHS, num_sanity_val_steps=0, enable_checkpointing=False).fit(model)
    return lmlogger.audit(str(tmp)).by_key()


# ---------------------------------------------------------------------------------------------
# tokens: a metric that counts tokens says nothing about the batch's weight
# ---------------------------------------------------------------------------------------------
def padded(items):
    """``{"x": (B, L, F), "y": (B, L)}`` padded to the longest item of the batch (targets -1 where padded)."""
    longest = max(len(x) for x, _, _ in items)
    x = torch.zeros(len(items), longest, N_FEATURES)
    y = torch.full((len(items), longest), -1)
    for i, (a, b, _) in enumerate(items):
        x[i, : len(a)], y[i, : len(b)] = a, b
    return {"x": x, "y": y}


class Tokens(Base):
    collate = padded

    def __init__(self) -> None:
        super().__init__()
        self.train_tok_acc = BinaryAccuracy()
        self.val_tok_acc = BinaryAccuracy()

    def dataset(self, seed):
        return Items(seed, length=None)  # a different number of tokens in every batch

    def step(self, batch, phase):
        logits = self.layer(batch["x"]).squeeze(-1)
        mask = batch["y"] >= 0
        per_token = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, batch["y"].clamp(min=0).float(), reduction="none"
        )
        per_sample = (per_token * mask).sum(1) / mask.sum(1)
        loss = per_sample.mean()  # a plain per-batch loss
        self.record(phase, loss, per_sample, len(batch["x"]))
        self.log(f"{phase}_loss", loss, on_step=False, on_epoch=True)
        metric = self.train_tok_acc if phase == "train" else self.val_tok_acc
        p, t = logits[mask].sigmoid().detach(), batch["y"][mask]  # one row per token: (tokens,)
        self.preds.setdefault((phase, self.current_epoch), []).append((p, t))
        metric.update(p, t)
        self.log(f"{phase}_tok_acc", metric, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self.step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self.step(batch, "val")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    model = Tokens()
    return model, fit(model, tmp_path_factory.mktemp("tokens"))


@pytest.mark.parametrize("phase", ["train", "val"])
def test_a_per_batch_loss_beside_a_per_token_metric_is_a_match(tokens, phase):
    """Lightning weights each step by its sequences, as the loss is a per-batch mean: no weight-mismatch."""
    model, keys = tokens
    key = keys[f"{phase}_loss"]
    assert key.verdict == "match" and key.findings == [] and key.fix is None
    for epoch in key.epochs:
        assert epoch.logged == pytest.approx(model.lightning_mean(phase, epoch.epoch), rel=1e-5)
        assert epoch.reference == pytest.approx(model.batch_weighted_mean(phase, epoch.epoch), rel=1e-6)
        assert epoch.samples == N  # sequences, not tokens


@pytest.mark.parametrize("phase", ["train", "val"])
def test_the_per_token_metric_itself_is_verified_over_its_tokens(tokens, phase):
    model, keys = tokens
    key = keys[f"{phase}_tok_acc"]
    assert key.verdict == "match" and key.findings == []
    for epoch in key.epochs:
        p, t = (torch.cat(v) for v in zip(*model.preds[(phase, epoch.epoch)], strict=True))
        assert epoch.reference == pytest.approx(float(FC.binary_accuracy(p, t)), rel=1e-6)
        assert epoch.samples == len(t)  # the metric counts what it is updated with: tokens


# ---------------------------------------------------------------------------------------------
# pixels: a segmentation metric updated with the valid pixels of a (B, H, W) mask
# ---------------------------------------------------------------------------------------------
class Images(Dataset):
    def __init__(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(N, 3, 6, 6, generator=g)
        self.y = (self.x[:, 0] > 0).long()
        self.y[torch.rand(N, 6, 6, generator=g) < 0.3] = 255  # ignored pixels: a different count per batch

    def __len__(self):
        return N

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Segmenter(Base):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Conv2d(3, 2, 1)
        self.train_iou = MulticlassJaccardIndex(num_classes=2)

    def dataset(self, seed):
        return Images(seed)

    def training_step(self, batch, batch_idx):
        x, y = batch  # (B, 3, H, W), (B, H, W)
        logits = self.layer(x)
        per_pixel = torch.nn.functional.cross_entropy(logits, y, ignore_index=255, reduction="none")
        valid = y != 255
        per_sample = (per_pixel * valid).flatten(1).sum(1) / valid.flatten(1).sum(1)
        loss = per_sample.mean()
        self.record("train", loss, per_sample, len(x))
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        self.train_iou.update(logits.argmax(1)[valid], y[valid])  # one row per valid pixel
        self.log("train_iou", self.train_iou, on_step=False, on_epoch=True)
        return loss

    def val_dataloader(self):
        return None


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    model = Segmenter()
    return model, fit(model, tmp_path_factory.mktemp("pixels"))


def test_a_per_batch_loss_beside_a_per_pixel_metric_is_a_match(segmenter):
    model, keys = segmenter
    key = keys["train_loss"]
    assert key.verdict == "match" and key.findings == [] and key.fix is None
    for epoch in key.epochs:
        assert epoch.reference == pytest.approx(model.batch_weighted_mean("train", epoch.epoch), rel=1e-6)
        assert epoch.samples == N
    assert keys["train_iou"].verdict == "match"


# ---------------------------------------------------------------------------------------------
# time-major dict batch: Lightning takes T; a forward() value and a validation loss without a metric
# ---------------------------------------------------------------------------------------------
def time_major(items):
    """``{"x": (T, B, F), "y": (B,)}``: Lightning's first tensor is time-major."""
    return {"x": torch.stack([x for x, _, _ in items], 1), "y": torch.stack([y[0] for _, y, _ in items])}


class TimeMajor(Base):
    collate = time_major

    def __init__(self) -> None:
        super().__init__()
        self.acc = BinaryAccuracy()
        self.acc_bs = BinaryAccuracy()

    def logits(self, batch):
        return self.layer(batch["x"]).squeeze(-1).mean(0)  # (B,)

    def training_step(self, batch, batch_idx):
        logits, y = self.logits(batch), batch["y"]
        per_sample = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float(), reduction="none")
        p = logits.sigmoid().detach()
        self.preds.setdefault(("train", self.current_epoch), []).append((p, y))
        self.log("acc", self.acc(p, y), on_step=False, on_epoch=True)  # weighted by T = 10
        self.log("acc_bs", self.acc_bs(p, y), on_step=False, on_epoch=True, batch_size=len(y))
        return per_sample.mean()

    def validation_step(self, batch, batch_idx):
        logits, y = self.logits(batch), batch["y"]
        per_sample = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float(), reduction="none")
        loss = per_sample.mean()
        self.record("val", loss, per_sample, T)
        self.log("val_loss", loss)  # no metric in this step: the batch is the only evidence
        self.log("val_loss_bs", loss, batch_size=len(y))


@pytest.fixture(scope="module")
def timemajor(tmp_path_factory):
    model = TimeMajor()
    return model, fit(model, tmp_path_factory.mktemp("timemajor"))


def test_forward_value_weighted_by_the_wrong_tensor_has_both_findings_and_a_batch_size_fix(timemajor):
    model, keys = timemajor
    key = keys["acc"]
    assert key.provenance == "metric_forward" and key.verdict == "mismatch"
    assert set(key.findings) == {"batch-values-averaged", "weight-mismatch"}
    assert "batch_size=" in key.fix and "16 where Lightning weighted it 10" in key.fix
    assert key.fix.startswith(
        'self.acc.update(p, y); self.log("acc", self.acc, on_epoch=True'
    )  # the object still fixes it
    for epoch in key.epochs:
        p, t = (torch.cat(v) for v in zip(*model.preds[("train", epoch.epoch)], strict=True))
        assert epoch.reference == pytest.approx(float(FC.binary_accuracy(p, t)), rel=1e-6)


def test_forward_value_with_the_right_batch_size_given_is_a_match(timemajor):
    """The batch-size-weighted mean of per-batch accuracies is the epoch accuracy: nothing to report."""
    _, keys = timemajor
    key = keys["acc_bs"]
    assert key.verdict == "match" and key.findings == [] and key.fix is None


def test_validation_loss_without_a_metric_is_weighed_by_the_batch_targets(timemajor):
    """The batch disagrees with itself (x: 10, y: 16); its targets count the samples."""
    model, keys = timemajor
    key = keys["val_loss"]
    assert key.verdict == "mismatch" and key.findings == ["weight-mismatch"]
    assert "batch_size=n" in key.fix
    for epoch in key.epochs:
        assert epoch.logged == pytest.approx(model.lightning_mean("val", epoch.epoch), rel=1e-5)
        assert epoch.reference == pytest.approx(model.sample_mean("val", epoch.epoch), rel=1e-6)
        assert epoch.samples == N
    right = keys["val_loss_bs"]
    assert right.verdict == "match" and right.findings == [] and right.fix is None
    for epoch in right.epochs:
        assert epoch.reference == pytest.approx(model.sample_mean("val", epoch.epoch), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# a tuple batch (x, y), a dict batch that starts with strings, and a batch nobody can read
# ---------------------------------------------------------------------------------------------
def time_major_pair(items):
    return tuple(time_major(items).values())


def texts_first(items):
    """``{"text": [B strings], "x": (B, F), "y": (B,)}``: Lightning skips the strings and takes x."""
    return {
        "text": [s for _, _, s in items],
        "x": torch.stack([x[0] for x, _, _ in items]),
        "y": torch.stack([y[0] for _, y, _ in items]),
    }


def unnamed(items):
    """``{"a": (T, B, F), "b": (B,)}``: two sizes, no target by name, no majority."""
    return {"a": torch.stack([x for x, _, _ in items], 1), "b": torch.stack([y[0] for _, y, _ in items])}


class Batches(Base):
    """A loss logged with default reduction from a batch of any of the shapes above."""

    def training_step(self, batch, batch_idx):
        if isinstance(batch, tuple):
            x, y = batch
        else:
            x, y = batch.get("x", batch.get("a")), batch.get("y", batch.get("b"))
        logits = self.layer(x).squeeze(-1)
        logits = logits.mean(0) if logits.dim() == 2 else logits
        per_sample = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float(), reduction="none")
        loss = per_sample.mean()
        self.record("train", loss, per_sample, len(x))
        self.log("loss", loss, on_step=False, on_epoch=True)
        return loss

    def val_dataloader(self):
        return None


class Stream(IterableDataset):
    """The items of :class:`Items`, streamed: the loader cannot say how many items a batch holds."""

    def __iter__(self):
        items = Items(0)
        return iter([items[i] for i in range(N)])


class StreamBatches(Batches):
    def train_dataloader(self):
        return DataLoader(Stream(), batch_size=16, collate_fn=unnamed)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    out = {}
    for name, collate in (("pair", time_major_pair), ("texts", texts_first), ("unnamed", unnamed)):
        cls = type(f"Batches_{name}", (Batches,), {"collate": staticmethod(collate)})
        model = cls()
        out[name] = model, fit(model, tmp_path_factory.mktemp(name))
    model = StreamBatches()
    out["stream"] = model, fit(model, tmp_path_factory.mktemp("stream"))
    return out


def test_time_major_pair_is_weighed_by_its_second_element(batches):
    model, keys = batches["pair"]
    key = keys["loss"]
    assert key.verdict == "mismatch" and key.findings == ["weight-mismatch"]
    assert "batch_size=n" in key.fix
    for epoch in key.epochs:
        assert epoch.reference == pytest.approx(model.sample_mean("train", epoch.epoch), rel=1e-6)


def test_a_dict_batch_that_starts_with_a_list_of_strings_is_a_match(batches):
    model, keys = batches["texts"]
    key = keys["loss"]
    assert key.verdict == "match" and key.findings == [] and key.fix is None
    for epoch in key.epochs:
        assert epoch.logged == pytest.approx(model.sample_mean("train", epoch.epoch), rel=1e-5)
        assert epoch.samples == N


def test_a_batch_without_names_is_weighed_by_the_items_its_loader_put_in_it(batches):
    """No target by name, no majority (a: 10, b: 16): the loader's batch sampler says 16, 16 and 12 items."""
    model, keys = batches["unnamed"]
    key = keys["loss"]
    assert key.verdict == "mismatch" and key.findings == ["weight-mismatch"]
    for epoch in key.epochs:
        assert epoch.reference == pytest.approx(model.sample_mean("train", epoch.epoch), rel=1e-6)
        assert epoch.samples == N


def test_a_streamed_batch_that_disagrees_with_itself_and_says_nothing_more_is_unverified(batches):
    """Nothing tells whether a's 10 or b's 16 counts samples: no claim, a reason that names the fix."""
    _, keys = batches["stream"]
    key = keys["loss"]
    assert key.verdict == "unverified" and key.findings == []
    for epoch in key.epochs:
        assert epoch.reference is None
        assert "disagree on their first dimension" in epoch.reason and "a: 10, b: 16" in epoch.reason
        assert "batch_size=n" in epoch.reason
