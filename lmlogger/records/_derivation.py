"""Where a logged plain tensor came from: read once per call site from the module's own source.

A value computed *from* a ``compute()`` / ``forward()`` result (``self.acc.compute() * 100``, a ratio of
two results, ``torch.stack(...).mean()``) is a new tensor: identity cannot trace it, and its epoch value
reduces running or per-batch values. The call site of ``self.log`` is read once per key (never per
step), its value expression followed through local assignments in the same function, and the key is
flagged ``derived-value`` when a metric result flows into it through arithmetic. No source, no claim.
"""

from __future__ import annotations

import ast
import copy
import linecache
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Any

_MAX_DEPTH = 6


@dataclass(frozen=True)
class Derivation:
    """A logged expression computed from metric results."""

    source: str  # the metric result it came from, e.g. ``self.acc.compute()``
    forward: bool  # from a forward() (per-batch) value rather than compute()
    epoch_expression: str  # the same expression computed once per epoch, from compute()


@dataclass(frozen=True)
class CallSite:
    """The ``self.log``/``self.log_dict`` call as written, as far as a fix must keep it working.

    ``updates``: every metric call inside the logged value (``self.f1(probs, y)``), as ``(receiver, args)``
    source text, so that a fix which logs the object keeps the update the call made. ``collection``: the
    collection whose call result was given whole to ``log_dict`` (``self.log_dict(self.metrics(p, y))``).
    """

    updates: tuple[tuple[str, str], ...] = ()
    collection: str | None = None
    entry: bool = False  # the value is one entry of a dict given to ``log_dict`` (other keys share the call)


_trees: dict[str, ast.Module | None] = {}
_texts: dict[str, str] = {}


def _tree(filename: str) -> ast.Module | None:
    if filename not in _trees:
        _texts[filename] = "".join(linecache.getlines(filename))
        try:
            _trees[filename] = ast.parse(_texts[filename] or "\n")
        except (SyntaxError, ValueError):
            _trees[filename] = None
    return _trees[filename]


def call_site(frame: FrameType, key: str, metric_attributes: set[str]) -> CallSite | None:
    """The call site of the value logged under ``key`` at ``frame``'s ``self.log``/``self.log_dict`` (``None``:
    no source to read)."""
    tree = _tree(frame.f_code.co_filename)
    if tree is None:
        return None
    function = _function_at(tree, frame.f_code.co_name, frame.f_lineno)
    call = _log_call_at(function, frame.f_lineno) if function is not None else None
    if call is None:
        return None
    return site_of(call, key, _texts[frame.f_code.co_filename], metric_attributes)


def site_of(call: ast.Call, key: str | None, text: str, metric_attributes: set[str]) -> CallSite | None:
    """:class:`CallSite` of one parsed ``self.log``/``self.log_dict`` call of the source ``text``.

    ``key``: the key whose value is meant (a ``log_dict`` literal's entry). Shared by the runtime (which
    reads the source of the call it saw) and lint, so both word one fix. ``None`` where the value logged
    under ``key`` cannot be told from the call (a ``log_dict`` of a dict made elsewhere).
    """
    assert isinstance(call.func, ast.Attribute)
    if call.func.attr == "log_dict":
        mapping = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "dictionary"), None)
        if isinstance(mapping, ast.Call) and _is_metric_call(mapping, metric_attributes):
            receiver, args = _call_parts(mapping, text)
            return CallSite(((receiver, args),), receiver)
    expression = _value_expression(call, key or "")
    if expression is None:
        return None
    updates = [
        _call_parts(node, text)
        for node in ast.walk(expression)
        if isinstance(node, ast.Call)
        and _is_metric_call(node, metric_attributes)
        and not (isinstance(node.func, ast.Attribute) and node.func.attr == "compute")
    ]
    return CallSite(tuple(sorted(set(updates), key=updates.index)), entry=call.func.attr == "log_dict")


def _call_parts(call: ast.Call, text: str) -> tuple[str, str]:
    """``("self.f1", "probs, y")`` for ``self.f1(probs, y)`` or ``self.f1.forward(probs, y)``: the source as written."""
    func = call.func
    receiver = func.value if isinstance(func, ast.Attribute) and func.attr == "forward" else func
    pieces = [_segment(text, node) for node in (*call.args, *call.keywords)]
    return _segment(text, receiver), ", ".join(pieces)


def _segment(text: str, node: ast.AST) -> str:
    segment = ast.get_source_segment(text, node) if text else None
    if segment is None or "\n" in segment:
        return ast.unparse(node)
    return segment


def user_frame(skip_files: tuple[str, ...]) -> FrameType | None:
    """The innermost frame outside lmlogger and Lightning's ``log``/``log_dict`` (the user's call site)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not any(part in name for part in skip_files):
            return frame
        frame = frame.f_back
    return None


def derivation(frame: FrameType, key: str, metric_attributes: set[str]) -> Derivation | None:
    """How the value logged under ``key`` at ``frame``'s ``self.log`` / ``self.log_dict`` call was made."""
    tree = _tree(frame.f_code.co_filename)
    if tree is None:
        return None
    function = _function_at(tree, frame.f_code.co_name, frame.f_lineno)
    if function is None:
        return None
    call = _log_call_at(function, frame.f_lineno)
    if call is None:
        return None
    expression = _value_expression(call, key)
    if expression is None:
        return None
    resolved = _Resolver(function, frame.f_lineno, metric_attributes).resolve(expression, 0)
    if resolved is None:
        return None
    sources = _metric_results(resolved, metric_attributes)
    if not sources:
        return None
    if _is_metric_result(resolved, metric_attributes):
        return None  # the result itself: identity tells it (or it is a result lmlogger cannot see)
    source = sources[0]
    forward = not (isinstance(source.func, ast.Attribute) and source.func.attr == "compute")
    epoch = _EpochRewriter(metric_attributes).visit(copy.deepcopy(resolved))
    return Derivation(ast.unparse(source), forward, ast.unparse(epoch))


def _function_at(tree: ast.Module, name: str, line: int) -> ast.AST | None:
    """The innermost function called ``name`` whose body spans ``line``."""
    best = None
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name == name
            and node.lineno <= line <= (node.end_lineno or node.lineno)
            and (best is None or node.lineno >= best.lineno)
        ):
            best = node
    return best


def _log_call_at(function: ast.AST, line: int) -> ast.Call | None:
    found = None
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("log", "log_dict")
            and node.lineno <= line <= (node.end_lineno or node.lineno)
        ) and (found is None or node.lineno >= found.lineno):
            found = node
    return found


def _value_expression(call: ast.Call, key: str) -> ast.expr | None:
    assert isinstance(call.func, ast.Attribute)
    if call.func.attr == "log":
        if len(call.args) >= 2:
            return call.args[1]
        return next((k.value for k in call.keywords if k.arg == "value"), None)
    mapping = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "dictionary"), None)
    if isinstance(mapping, ast.Dict):
        for k, v in zip(mapping.keys, mapping.values, strict=True):
            if isinstance(k, ast.Constant) and k.value == key:
                return v
    return None


def _attribute_root(node: ast.expr) -> str | None:
    """``val_acc`` for ``self.val_acc``, ``self.val_acc[i]``, ``self.metrics["f1"]``."""
    while isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _is_metric_call(node: ast.AST, metric_attributes: set[str]) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "compute" and not node.args:
        return True
    if isinstance(func, ast.Attribute) and func.attr == "forward":
        return _attribute_root(func.value) in metric_attributes
    return _attribute_root(func) in metric_attributes


def _is_metric_result(node: ast.AST, metric_attributes: set[str]) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "item":
        node = node.func.value  # .item() of a result: compared by value instead
    return _is_metric_call(node, metric_attributes)


def _metric_results(node: ast.AST, metric_attributes: set[str]) -> list[ast.Call]:
    return [n for n in ast.walk(node) if _is_metric_call(n, metric_attributes)]  # type: ignore[misc]


class _Resolver:
    """Substitutes local names by the expression last assigned to them before the call (same function)."""

    def __init__(self, function: ast.AST, line: int, metric_attributes: set[str]) -> None:
        self.assignments: dict[str, list[tuple[int, ast.expr]]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and node.lineno < line:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.assignments.setdefault(target.id, []).append((node.lineno, node.value))
            elif (
                isinstance(node, (ast.AnnAssign, ast.AugAssign))
                and node.lineno < line
                and node.value is not None
                and isinstance(node.target, ast.Name)
            ):
                value = node.value
                if isinstance(node, ast.AugAssign):
                    value = ast.BinOp(left=ast.Name(id=node.target.id, ctx=ast.Load()), op=node.op, right=value)
                self.assignments.setdefault(node.target.id, []).append((node.lineno, value))

    def resolve(self, node: ast.expr, depth: int) -> ast.expr | None:
        if depth > _MAX_DEPTH:
            return None
        if isinstance(node, ast.Name):
            options = self.assignments.get(node.id)
            if not options:
                return node
            line, value = max(options, key=lambda item: item[0])
            # an augmented assignment refers to the previous binding of the same name
            self.assignments[node.id] = [o for o in options if o[0] < line]
            try:
                return self.resolve(value, depth + 1)
            finally:
                self.assignments[node.id] = options
        resolver = self

        class _Sub(ast.NodeTransformer):
            def visit_Name(self, name: ast.Name) -> Any:
                if isinstance(name.ctx, ast.Load) and name.id in resolver.assignments:
                    return resolver.resolve(name, depth + 1) or name
                return name

            def visit_Lambda(self, lam: ast.Lambda) -> Any:
                return lam

        return _Sub().visit(copy.deepcopy(node))


class _EpochRewriter(ast.NodeTransformer):
    """``self.f1(preds, y)`` becomes ``self.f1.compute()``: the expression computed once per epoch."""

    def __init__(self, metric_attributes: set[str]) -> None:
        self.metric_attributes = metric_attributes

    def visit_Call(self, node: ast.Call) -> Any:
        if _is_metric_call(node, self.metric_attributes) and not (
            isinstance(node.func, ast.Attribute) and node.func.attr == "compute"
        ):
            target = (
                node.func.value if isinstance(node.func, ast.Attribute) and node.func.attr == "forward" else node.func
            )
            return ast.Call(func=ast.Attribute(value=target, attr="compute", ctx=ast.Load()), args=[], keywords=[])
        self.generic_visit(node)
        return node
