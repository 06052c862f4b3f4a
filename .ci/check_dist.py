"""Check the built wheel and sdist in DIR: names, version, the core install's dependencies (no torch,
Lightning or torchmetrics outside the `lightning` extra), the console script, py.typed and the README.

Usage: python .ci/check_dist.py dist
"""

from __future__ import annotations

import email.parser
import glob
import os
import re
import sys
import tarfile
import zipfile

HEAVY = re.compile(r"^(torch|lightning|pytorch-lightning|torchmetrics)\b", re.I)


def fail(message: str) -> None:
    sys.exit(f"check_dist: {message}")


def check_metadata(where: str, text: str, version: str) -> None:
    meta = email.parser.Parser().parsestr(text)
    if meta["Name"] != "lmlogger" or meta["Version"] != version:
        fail(f"{where}: Name/Version {meta['Name']} {meta['Version']}, expected lmlogger {version}")
    core = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    heavy = [r for r in core if HEAVY.match(r)]
    if heavy:
        fail(f"{where}: the core install requires {heavy}; the training stack belongs in the `lightning` extra")
    extras = meta.get_all("Provides-Extra") or []
    for extra in ("lightning", "test", "tensorboard", "mlflow"):
        if extra not in extras:
            fail(f"{where}: no `{extra}` extra (has {extras})")
    lightning = [r for r in meta.get_all("Requires-Dist") or [] if re.search(r"extra == .lightning.", r)]
    if not any(r.startswith("lightning") for r in lightning) or not any(
        r.startswith("torchmetrics") for r in lightning
    ):
        fail(f"{where}: the `lightning` extra must bring lightning and torchmetrics (has {lightning})")
    if meta["Description-Content-Type"] != "text/markdown" or "lmlogger lint" not in (meta.get_payload() or ""):
        fail(f"{where}: the long description is not the README")
    if not meta["Requires-Python"]:
        fail(f"{where}: no Requires-Python")


def main(folder: str) -> None:
    with open(os.path.join(os.path.dirname(__file__), "..", "lmlogger", "__init__.py"), encoding="utf-8") as fh:
        init = fh.read()
    version = re.search(r'__version__ = "([^"]+)"', init).group(1)
    wheels = glob.glob(os.path.join(folder, f"lmlogger-{version}-*.whl"))
    sdists = glob.glob(os.path.join(folder, f"lmlogger-{version}.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        fail(f"expected one wheel and one sdist of {version} in {folder}, found {wheels + sdists}")
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        info = f"lmlogger-{version}.dist-info"
        check_metadata(wheels[0], whl.read(f"{info}/METADATA").decode(), version)
        entry = whl.read(f"{info}/entry_points.txt").decode()
        if "lmlogger = lmlogger.cli:_entry" not in entry:
            fail(f"{wheels[0]}: no `lmlogger` console script")
        for needed in (
            "lmlogger/py.typed",
            "lmlogger/__init__.py",
            "lmlogger/audit/__init__.py",
            "lmlogger/lint/__init__.py",
        ):
            if needed not in names:
                fail(f"{wheels[0]}: {needed} is missing")
        if any(n.startswith("tests/") for n in names):
            fail(f"{wheels[0]}: ships the tests")
    with tarfile.open(sdists[0]) as sdist:
        root = f"lmlogger-{version}"
        members = set(sdist.getnames())
        for needed in ("PKG-INFO", "pyproject.toml", "README.md", "lmlogger/__init__.py", ".pre-commit-hooks.yaml"):
            if f"{root}/{needed}" not in members:
                fail(f"{sdists[0]}: {needed} is missing")
        check_metadata(sdists[0], sdist.extractfile(f"{root}/PKG-INFO").read().decode(), version)
    print(f"check_dist: {os.path.basename(wheels[0])} and {os.path.basename(sdists[0])} are complete")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dist")
