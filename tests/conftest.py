import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import quiet


@pytest.fixture(autouse=True)
def _quiet_lightning():
    quiet()
    yield


@pytest.fixture(autouse=True)
def _no_patch_left_behind():
    """Every test must leave LightningModule.log as Lightning made it."""
    yield
    import gc

    from lmlogger.runtime import _intercept

    gc.collect()
    assert not _intercept.is_installed(), "a test left LightningModule.log patched"
