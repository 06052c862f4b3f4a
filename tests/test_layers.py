"""The folders are the layers (DESIGN.md): each module imports only what its layer may, read from its source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lmlogger"
HEAVY = {"torch", "lightning", "pytorch_lightning", "torchmetrics", "numpy", "lightning_fabric", "lightning_utilities"}
FACE = {"__init__.py", "__main__.py", "cli.py", "testing.py"}


def _imports(path: Path) -> list[tuple[str, bool, bool]]:
    """(module, lazy, type_checking) for every import in the file: lazy = inside a function body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, bool, bool]] = []

    def visit(node: ast.AST, lazy: bool, checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.body:
                    visit_one(sub, lazy, True)
                for sub in child.orelse:
                    visit_one(sub, lazy, checking)
                continue
            visit_one(child, lazy, checking)

    def visit_one(child: ast.AST, lazy: bool, checking: bool) -> None:
        if isinstance(child, ast.Import):
            found.extend((alias.name, lazy, checking) for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                raise AssertionError(f"{path}: relative import (use absolute lmlogger.* imports)")
            base = child.module or ""
            found.append((base, lazy, checking))
            if base == "lmlogger":  # from lmlogger import runtime / records / _x
                found.extend((f"lmlogger.{alias.name}", lazy, checking) for alias in child.names)
        inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        visit(child, inner, checking)

    visit(tree, False, False)
    return found


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else "face"


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_top_level_holds_only_the_face():
    """At lmlogger/ top level sit only the public face; every other module lives in the folder of its layer."""
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert top == FACE
    assert folders == {"runtime", "records", "audit", "lint"}
    assert (PACKAGE / "runtime" / "sinks" / "__init__.py").is_file()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_what_its_layer_may(path):
    """records/: stdlib only; audit/, lint/: records/ and stdlib (optional backends lazily), never the runtime or
    torch/Lightning/torchmetrics; the face: torch & co. only lazily; runtime/: anything."""
    layer = _layer(path)
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for module, lazy, checking in _imports(path):
        top = module.split(".")[0]
        parts = module.split(".")
        sub = parts[1] if top == "lmlogger" and len(parts) > 1 else None
        if layer == "records":
            assert top in stdlib or (top == "lmlogger" and sub == "records"), f"{path}: imports {module}"
        elif layer in {"audit", "lint"}:
            if checking:
                continue
            assert top not in HEAVY, f"{path}: imports {module}"
            assert not (top == "lmlogger" and sub == "runtime"), f"{path}: imports the runtime ({module})"
        elif layer == "face" and (top in HEAVY or (top == "lmlogger" and sub == "runtime")):
            assert lazy or checking, f"{path}: imports {module} at import time"
        # runtime/: may use everything


def test_nothing_outside_runtime_imports_torch_lightning_or_torchmetrics_at_import():
    """Importing the face, the record layer and both readers loads no torch, Lightning or torchmetrics."""
    import subprocess

    names = [
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        for p in MODULES
        if _layer(p) != "runtime" and p.name != "__main__.py"
    ]
    names = [n.removesuffix(".__init__") for n in names]
    code = (
        "import sys\n"
        + "".join(f"import {n}\n" for n in names)
        + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PACKAGE.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
