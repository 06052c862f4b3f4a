"""The pure replays (lmlogger.records._replay) against the real thing: Lightning's EarlyStopping and torch's
ReduceLROnPlateau fed the same sequences (NaN, infinities, ties, thresholds, min_delta, cooldown)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping

from lmlogger.records._replay import CheckpointReplay, DecisionReplay, EarlyStoppingReplay, PlateauReplay, Point, f32


def sequences(seed: int, n: int = 40) -> list[list[float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(1, 12)
        pool = [rng.random() for _ in range(4)]  # few distinct values: ties are common
        seq = [rng.choice(pool) if rng.random() < 0.5 else rng.random() for _ in range(length)]
        if rng.random() < 0.2:
            seq[rng.randrange(length)] = rng.choice([math.nan, math.inf, -math.inf])
        out.append(seq)
    return out


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize(
    "options",
    [
        {"patience": 1},
        {"patience": 3, "min_delta": 0.05},
        {"patience": 2, "stopping_threshold": 0.5},
        {"patience": 2, "divergence_threshold": 0.7, "check_finite": False},
        {"patience": 0},
    ],
)
def test_early_stopping_replay_is_lightnings_own_rule(mode, options):
    for seq in sequences(hash((mode, tuple(options.items()))) % 1000):
        real = EarlyStopping(monitor="m", mode=mode, **options)
        replay = EarlyStoppingReplay(
            mode,
            options.get("patience", 3),
            options.get("min_delta", 0.0),
            options.get("check_finite", True),
            options.get("stopping_threshold"),
            options.get("divergence_threshold"),
        )
        for i, value in enumerate(seq):
            should_stop, _ = real._evaluate_stopping_criteria(torch.tensor(value))
            assert replay.feed(Point(i, i, value)) == bool(should_stop), (seq, i)
            if should_stop:
                break


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize(
    "options",
    [
        {"patience": 0, "factor": 0.5},
        {"patience": 1, "factor": 0.1, "cooldown": 1},
        {"patience": 2, "threshold": 0.1, "threshold_mode": "abs", "min_lr": 0.01},
        {"patience": 0, "factor": 0.5, "min_lr": 0.02, "eps": 0.01},
    ],
)
def test_plateau_replay_is_torchs_own_rule(mode, options):
    for seq in sequences(hash((mode, tuple(options.items()))) % 1000):
        params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
        optimizer = torch.optim.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.03}])
        real = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, **options)
        replay = PlateauReplay(
            mode,
            options.get("factor", 0.1),
            options.get("patience", 10),
            options.get("threshold", 1e-4),
            options.get("threshold_mode", "rel"),
            options.get("cooldown", 0),
            list(real.min_lrs),
            options.get("eps", 1e-8),
            [0.1, 0.03],
        )
        for i, value in enumerate(seq):
            before = [g["lr"] for g in optimizer.param_groups]
            real.step(value)
            after = [g["lr"] for g in optimizer.param_groups]
            assert replay.feed(Point(i, i, value)) == (after != before), (seq, i)
            assert replay.lrs == pytest.approx(after)


def test_checkpoint_replay_ties_go_to_the_earliest_and_nan_is_the_worst():
    """ModelCheckpoint's rules: strict comparison with the k-th best (a tie does not replace it), among equals the
    earliest is both the best and the k-th (evicted first), NaN is kept as -inf (mode max) while fewer than k are
    kept; values are compared as the float32 tensors Lightning holds."""
    replay = CheckpointReplay("max", 2)
    kept = [replay.feed(Point(e, e, v)) for e, v in enumerate([0.5, math.nan, 0.5, 0.7, 0.5])]
    assert kept == [True, True, True, True, False]
    assert [(p.epoch, p.value) for p in replay.kept()] == [(3, f32(0.7)), (2, 0.5)]
    assert replay.outcome().epoch == 3
    every = CheckpointReplay("min", -1)
    for e, v in enumerate([0.3, 0.1, 0.1]):
        assert every.feed(Point(e, e, v))
    assert every.outcome().epoch == 1 and len(every.kept()) == 3
    none = CheckpointReplay("min", 0)
    assert not none.feed(Point(0, 0, 0.1)) and none.outcome() is None


def test_a_read_without_reference_makes_the_decision_unverified():
    replay = DecisionReplay("ModelCheckpoint", "checkpoint", "val_f1", "val_f1", {"mode": "max", "save_top_k": 1})
    replay.feed(0, 10, 0.5, 0.5, "match")
    replay.feed(1, 20, 0.6, None, "unverified")
    d = replay.decision()
    assert d.agree is None and d.monitor_verdict == "unverified" and d.unverified_reads == 1
    assert "1 of 2 reads had no reference" in d.message
