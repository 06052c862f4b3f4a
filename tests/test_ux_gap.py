"""The headline number: each key's worst epoch and how far its logged value is from the reference there."""

import math

import pytest

from lmlogger.audit import EpochReport
from lmlogger.records._gap import format_gap, relative_gap, worst_epoch


def epoch(n, logged, reference, verdict):
    return EpochReport(epoch=n, step=n, logged=logged, reference=reference, verdict=verdict)


def test_worst_epoch_is_the_worst_verdict_then_the_largest_gap():
    """The demo's case: epoch 0 is 18% off, the last epoch 0.2%; both mismatch, so epoch 0 is the headline."""
    epochs = [epoch(0, 0.4713, 0.5738, "mismatch"), epoch(1, 0.714, 0.7156, "mismatch"),
              epoch(2, 0.73746, 0.735849, "mismatch")]  # fmt: skip
    assert worst_epoch(epochs).epoch == 0
    assert format_gap(relative_gap(0.4713, 0.5738)) == "18%"
    assert format_gap(relative_gap(0.73746, 0.735849)) == "0.22%"
    # a mismatch outranks a larger gap in an epoch that matched or could not be verified
    mixed = [epoch(0, 1.0, 2.0, "unverified"), epoch(1, 1.0, 1.01, "mismatch"), epoch(2, 5.0, 5.0, "match")]
    assert worst_epoch(mixed).epoch == 1
    assert worst_epoch([epoch(0, 1.0, 1.0, "match"), epoch(1, 1.0, 1.0, "match")]).epoch == 1  # latest on ties
    assert worst_epoch([]) is None


@pytest.mark.parametrize(
    ("logged", "reference", "text"),
    [
        (1.0, 1.0, "0%"),
        (1.0 + 1e-9, 1.0, "<0.01%"),
        (1.05, 1.0, "5%"),
        (2.0, 1.0, "100%"),
        (1.0, 0.0, "inf"),
        (None, 1.0, "-"),
        (math.nan, 1.0, "inf"),
        (math.nan, math.nan, "0%"),
        (math.inf, 1.0, "inf"),
        (math.inf, math.inf, "0%"),
        (2.19, 1.0, "119%"),  # never 1.2e+02%
        (1.996, 1.0, "100%"),  # never 1e+02%
        (1.0996, 1.0, "10%"),
        (1.0949, 1.0, "9.5%"),
        (1.0021, 1.0, "0.21%"),
    ],
)
def test_gap_text(logged, reference, text):
    """Gaps read as percentages with two significant digits; NaN and infinities follow the audit's rule."""
    assert format_gap(relative_gap(logged, reference)) == text
