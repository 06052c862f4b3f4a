"""The source tree as the static check sees it: parsed files, their imports, and every class by name.

A class is a LightningModule when one of its bases is Lightning's (however imported: ``pl.LightningModule``,
``L.LightningModule``, ``lightning.pytorch.LightningModule``, an alias) or a class of the tree that is one.
The classes of the tree it derives from (a project's base class, mixins) lend it their methods.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from lmlogger.lint._hooks import DEFAULTS

_METRIC_PACKAGES = ("torchmetrics", "pytorch_lightning.metrics", "lightning.pytorch.metrics")


@dataclass
class SourceFile:
    """One parsed file: its tree, lines (for columns and suppressions) and import aliases."""

    path: str
    text: str
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)  # local name -> dotted origin
    classes: list[ast.ClassDef] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.text.splitlines()

    def dotted(self, node: ast.expr) -> str | None:
        """``pl.LightningModule`` -> ``pytorch_lightning.LightningModule`` through this file's imports."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(self.imports.get(node.id, node.id))
        return ".".join(reversed(parts))


@dataclass
class ClassInfo:
    """A class of the tree with the file it lives in."""

    node: ast.ClassDef
    file: SourceFile

    @property
    def name(self) -> str:
        return self.node.name

    def bases(self) -> list[str]:
        return [d for d in (self.file.dotted(b) for b in self.node.bases) if d]


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements at module level, looking into ``if``/``try``/``with`` blocks but not into functions."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.If, ast.Try, ast.With)) or type(stmt).__name__ == "TryStar":
            for name in ("body", "orelse", "finalbody"):
                yield from _top_level(getattr(stmt, name, []))
            for handler in getattr(stmt, "handlers", []):
                yield from _top_level(handler.body)


def index_file(path: str, text: str, tree: ast.Module) -> SourceFile:
    """Collect a file's import aliases and classes (module level, and classes nested in classes)."""
    source = SourceFile(path, text, tree)
    for stmt in _top_level(tree.body):
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    source.imports[alias.asname] = alias.name
                else:
                    top = alias.name.split(".", 1)[0]
                    source.imports[top] = top
        elif isinstance(stmt, ast.ImportFrom):
            module = "." * stmt.level + (stmt.module or "")
            for alias in stmt.names:
                source.imports[alias.asname or alias.name] = f"{module}.{alias.name}" if module else alias.name
        elif isinstance(stmt, ast.ClassDef):
            source.classes.append(stmt)
            source.classes.extend(n for n in stmt.body if isinstance(n, ast.ClassDef))
    return source


def is_metric_origin(dotted: str) -> bool:
    """Whether a dotted name comes from torchmetrics (or Lightning 1.x's ``pl.metrics``)."""
    return dotted.startswith(_METRIC_PACKAGES)


class Project:
    """All classes of the files checked together, by simple name."""

    def __init__(self, files: list[SourceFile]) -> None:
        self.files = files
        self.by_name: dict[str, list[ClassInfo]] = {}
        for source in files:
            for node in source.classes:
                self.by_name.setdefault(node.name, []).append(ClassInfo(node, source))
        self._lightning: dict[int, bool] = {}
        self._metric: dict[int, bool] = {}
        self._assignments: dict[int, list[ast.AST]] = {}

    def assignments(self, func: ast.AST) -> list[ast.AST]:
        """The assignments and ``setattr`` calls in ``func``, found once however many subclasses share it."""
        key = id(func)
        if key not in self._assignments:
            self._assignments[key] = [
                node
                for node in ast.walk(func)
                if isinstance(node, (ast.Assign, ast.AnnAssign))
                or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr")
            ]
        return self._assignments[key]

    def resolve(self, dotted: str) -> list[ClassInfo]:
        """Classes of the tree a base name may refer to (by its last component)."""
        return self.by_name.get(dotted.rsplit(".", 1)[-1], [])

    def _derives(self, info: ClassInfo, test, cache: dict[int, bool]) -> bool:
        """Whether ``info`` or a class of the tree it derives from has a base that passes ``test``.

        Walked with a stack of its own, not by recursion: a chain of a thousand classes is a tree like any
        other. A cycle (``class A(B)``, ``class B(A)``) derives from nothing more than its members do."""
        key = id(info.node)
        if key in cache:
            return cache[key]
        on_path: set[int] = set()
        stack: list[tuple[ClassInfo, list[ClassInfo]]] = []

        def enter(current: ClassInfo) -> bool | None:
            """True/False when known at once, None when its parents must be visited (pushed)."""
            ident = id(current.node)
            if ident in cache:
                return cache[ident]
            if ident in on_path:
                return False
            bases = current.bases()
            if any(test(base) for base in bases):
                cache[ident] = True
                return True
            parents = [parent for base in bases for parent in self.resolve(base) if parent is not current]
            on_path.add(ident)
            stack.append((current, parents[::-1]))
            return None

        found = enter(info)
        while stack:
            current, parents = stack[-1]
            if found:
                # a parent derives: so do the classes on the path to it
                on_path.discard(id(current.node))
                cache[id(current.node)] = True
                stack.pop()
                continue
            if not parents:
                on_path.discard(id(current.node))
                cache[id(current.node)] = False
                stack.pop()
                found = False
                continue
            found = enter(parents.pop())
        return cache.get(key, bool(found))

    def is_lightning(self, info: ClassInfo) -> bool:
        """A LightningModule subclass, directly or through classes of the tree."""
        return self._derives(info, lambda base: base.rsplit(".", 1)[-1] == "LightningModule", self._lightning)

    def is_metric_class(self, info: ClassInfo) -> bool:
        """A class of the tree that subclasses a torchmetrics ``Metric``."""
        return self._derives(info, is_metric_origin, self._metric)

    def lineage(self, info: ClassInfo) -> list[ClassInfo]:
        """``info`` and the classes of the tree it derives from, nearest first (a simple MRO)."""
        order: list[ClassInfo] = []
        seen: set[int] = set()
        stack = [info]  # depth first, without recursion (a chain of a thousand classes)
        while stack:
            current = stack.pop()
            if id(current.node) in seen:
                continue
            seen.add(id(current.node))
            order.append(current)
            stack.extend(reversed([parent for base in current.bases() for parent in self.resolve(base)]))
        return order

    def modules(self) -> Iterator[ClassInfo]:
        """Every class whose hooks Lightning calls: LightningModules, and classes of the tree that define a
        logging hook and call ``self.log`` (mixins whose LightningModule lives elsewhere).

        A base class is checked on its own and again as part of each subclass (with the metrics the subclass
        makes); the caller drops the findings both report.
        """
        used_as_base: set[int] = set()
        lightning = [info for infos in self.by_name.values() for info in infos if self.is_lightning(info)]
        for info in lightning:
            used_as_base.update(id(parent.node) for parent in self.lineage(info)[1:])
        yield from lightning
        for infos in self.by_name.values():
            for info in infos:
                if id(info.node) not in used_as_base and not self.is_lightning(info) and _looks_like_mixin(info):
                    yield info


def _looks_like_mixin(info: ClassInfo) -> bool:
    hooks = [n for n in info.node.body if isinstance(n, ast.FunctionDef) and n.name in DEFAULTS]
    if not hooks:
        return False
    return any(
        isinstance(n, ast.Attribute) and n.attr in ("log", "log_dict") and _is_self(n.value)
        for hook in hooks
        for n in ast.walk(hook)
    )


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"
