"""Versions of lmlogger and the libraries whose behaviour it models (one place)."""

from __future__ import annotations

from importlib import metadata


def _version(dist: str) -> str:
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
