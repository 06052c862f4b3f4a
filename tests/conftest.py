import importlib.util
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import quiet

#: The Lightning namespaces the core verification tests run under (see the `namespace` fixture).
NAMESPACES = [
    "lightning.pytorch",
    pytest.param(
        "pytorch_lightning",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("pytorch_lightning") is None, reason="pip install pytorch-lightning"
        ),
    ),
]


@pytest.fixture(scope="module", params=NAMESPACES)
def namespace(request):
    """The Lightning namespace a core test runs under: ``lightning.pytorch`` and ``pytorch_lightning``."""
    return request.param


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
