"""Versions of lmlogger and the libraries whose behaviour it models (one place)."""

from __future__ import annotations

import sys
from functools import cache
from importlib import metadata


@cache
def _version(dist: str) -> str:
    # A module already imported says its version for free; reading the installed metadata costs ~10 ms
    # at the start of every run otherwise.
    version = getattr(sys.modules.get(dist), "__version__", None)
    if isinstance(version, str) and version:
        return str(version)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    out = {name: _version(name) for name in ("lmlogger", "lightning", "torchmetrics", "torch")}
    standalone = _version("pytorch-lightning")  # the standalone `pytorch_lightning` namespace, when installed
    if standalone != "unknown":
        out["pytorch_lightning"] = standalone
    return out
