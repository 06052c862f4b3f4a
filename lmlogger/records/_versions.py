"""Versions of lmlogger and the libraries whose behaviour it models (one place)."""

from __future__ import annotations

from importlib import metadata


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    return {name: _version(name) for name in ("lmlogger", "lightning", "torchmetrics", "torch")}
