"""``lmlogger lint --fix``: the record layer's fixes (:class:`~lmlogger.records._verify.FixPlan`) as edits of
the source, applied only where they are sure.

Each finding's plan becomes text edits (a range and its new text) of the file as it is: the logging statement
replaced by the plan's statements at its indentation, statements inserted after it, a statement moved to
the start of the class's epoch-end hook (the hook made when the class has none), a ``reset()`` statement
deleted. A finding's edits are applied together or not at all. Nothing outside the edited statements
changes: comments and formatting around them stay as they were. A finding is left alone (not
auto-fixable) when its call is not a statement of its own lines, when moved code would need a local name
of the step, when the hook it needs is inherited, or when its edits overlap another's (applied in a later
pass, after the file is checked again). A second run changes nothing.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from pathlib import Path

from lmlogger.lint._check import check
from lmlogger.lint._config import Settings
from lmlogger.lint._model import Finding, LintResult

_INDENT = "    "


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` by ``new`` (an insertion when ``start == end``)."""

    start: int
    end: int
    new: str


class Unsure(Exception):
    """The fix of a finding cannot be applied here for sure."""


class SourceEdits:
    """The edits of one file's findings, from its current text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tree = ast.parse(text)
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.module_names = _module_names(self.tree)

    # -- positions -----------------------------------------------------------------------------------
    def offset(self, line: int, col: int) -> int:
        """Character offset of a 1-based line and a UTF-8 byte column."""
        text = self.lines[line - 1] if line <= len(self.lines) else ""
        return self.starts[line - 1] + len(text.encode("utf-8")[:col].decode("utf-8", "replace"))

    def line_end(self, line: int) -> int:
        """Offset of the end of ``line``'s text (before its newline)."""
        return self.starts[line - 1] + len(self.lines[line - 1].rstrip("\r\n"))

    def indent_of(self, node: ast.stmt) -> str:
        return self.lines[node.lineno - 1][: self.offset(node.lineno, node.col_offset) - self.starts[node.lineno - 1]]

    # -- one finding ---------------------------------------------------------------------------------
    def edits(self, finding: Finding) -> list[Edit]:
        """The edits of ``finding``'s plan; raises :class:`Unsure` where it cannot be sure."""
        plan = finding.plan
        if plan is None or finding.anchor is None:
            raise Unsure("no mechanical fix")
        statement = self._statement(*finding.anchor)
        cls = self._enclosing(statement, ast.ClassDef)
        method = self._enclosing(statement, (ast.FunctionDef, ast.AsyncFunctionDef))
        if cls is None or method is None:
            raise Unsure("not in a method of a class")
        indent = self.indent_of(statement)
        out: list[Edit] = []
        if plan.replace is not None:
            if not plan.replace:
                out.append(self._delete(statement))
            else:
                start = self.offset(statement.lineno, statement.col_offset)
                end = self.offset(statement.end_lineno or statement.lineno, statement.end_col_offset or 0)
                out.append(Edit(start, end, ("\n" + indent).join(plan.replace)))
        if plan.after:
            at = self.line_end(statement.end_lineno or statement.lineno)
            out.append(Edit(at, at, "".join("\n" + indent + s for s in plan.after)))
        if plan.epoch_statements:
            out.append(self._into_hook(cls, method, plan.epoch_hook or "", plan.epoch_statements))
        if plan.remove_reset is not None:
            out.extend(self._remove_reset(cls, *plan.remove_reset))
        return out

    def _statement(self, line: int, col: int) -> ast.stmt:
        call = next(
            (n for n in ast.walk(self.tree) if isinstance(n, ast.Call) and n.lineno == line and n.col_offset == col),
            None,
        )
        parent = self.parents.get(call) if call is not None else None
        if not isinstance(parent, ast.Expr) or parent.value is not call:
            raise Unsure("the call is not a statement of its own")
        end_line = parent.end_lineno or parent.lineno
        before = self.lines[parent.lineno - 1][: self.offset(parent.lineno, parent.col_offset) - self.starts[line - 1]]
        after = self.text[self.offset(end_line, parent.end_col_offset or 0) : self.line_end(end_line)]
        if before.strip() or (after.strip() and not after.strip().startswith("#")):
            raise Unsure("the statement shares its line with other code")
        return parent

    def _enclosing(self, node: ast.AST, kind: type | tuple[type, ...]) -> ast.AST | None:
        """The nearest enclosing ``kind`` (for a function: the method, a direct member of a class)."""
        current = self.parents.get(node)
        while current is not None:
            if isinstance(current, kind):
                if not isinstance(current, ast.ClassDef) and not isinstance(self.parents.get(current), ast.ClassDef):
                    current = self.parents.get(current)
                    continue
                return current
            current = self.parents.get(current)
        return None

    def _delete(self, statement: ast.stmt) -> Edit:
        """Delete a statement's lines (``pass`` where it is the only statement of its block)."""
        parent = self.parents[statement]
        for name in ("body", "orelse", "finalbody"):
            block = getattr(parent, name, None)
            if isinstance(block, list) and statement in block and len(block) == 1:
                start = self.offset(statement.lineno, statement.col_offset)
                end = self.offset(statement.end_lineno or statement.lineno, statement.end_col_offset or 0)
                return Edit(start, end, "pass")
        last = statement.end_lineno or statement.lineno
        return Edit(self.starts[statement.lineno - 1], self.starts[last], "")

    def _into_hook(self, cls: ast.ClassDef, method: ast.AST, hook: str, statements: tuple[str, ...]) -> Edit:
        for statement in statements:
            names = {n.id for n in ast.walk(ast.parse(statement)) if isinstance(n, ast.Name)}
            unknown = names - {"self"} - self.module_names - set(dir(builtins))
            if unknown:
                raise Unsure(f"the moved statement needs local names of the step: {', '.join(sorted(unknown))}")
        found = [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == hook]
        if found:
            body = found[-1].body
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(body) > 1:
                first = body[1]  # after the docstring
            if first.lineno == found[-1].lineno:
                raise Unsure(f"{hook} is written on one line")
            indent = self.indent_of(first)
            at = self.starts[first.lineno - 1]
            return Edit(at, at, "".join(indent + s + "\n" for s in statements))
        indent = self.indent_of(method)  # type: ignore[arg-type]
        first = method.body[0]  # type: ignore[attr-defined]
        inner = self.indent_of(first) if first.lineno != method.lineno else indent + _INDENT  # type: ignore[attr-defined]
        at = self.line_end(method.end_lineno or method.lineno)  # type: ignore[attr-defined]
        body = "".join("\n" + inner + s for s in statements)
        return Edit(at, at, f"\n\n{indent}def {hook}(self):{body}")

    def _remove_reset(self, cls: ast.ClassDef, metric: str, hook: str) -> list[Edit]:
        wanted = ast.dump(ast.parse(metric, mode="eval").body)
        out = []
        for function in cls.body:
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or function.name != hook:
                continue
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Expr)
                    and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Attribute)
                    and node.value.func.attr == "reset"
                    and not node.value.args
                    and ast.dump(node.value.func.value) == wanted
                ):
                    self._statement(node.value.lineno, node.value.col_offset)  # alone on its lines
                    out.append(self._delete(node))
        if not out:
            raise Unsure(f"no `{metric}.reset()` statement found in {hook}")
        return out


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound at module level: imports, classes, functions, assignments."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def fix_text(text: str, findings: list[Finding]) -> tuple[str, list[Finding], list[tuple[Finding, str]]]:
    """``text`` with the fixes of ``findings`` (of this file) applied, the findings fixed, and those left
    with the reason. Edits of one finding go together; a finding whose edits overlap an earlier one's waits
    for the next pass."""
    try:
        source = SourceEdits(text)
    except (SyntaxError, ValueError):
        return text, [], [(f, "the file does not parse") for f in findings]
    taken: list[Edit] = []
    fixed: list[Finding] = []
    left: list[tuple[Finding, str]] = []
    for finding in findings:
        try:
            edits = source.edits(finding)
        except Unsure as why:
            left.append((finding, str(why)))
            continue
        new = [e for e in edits if e not in taken]  # the same edit from two findings (one reset) is one
        if any(_overlap(e, t) for e in new for t in taken):
            left.append((finding, "overlaps another fix (next pass)"))
            continue
        taken.extend(new)
        fixed.append(finding)
    # insertions at one place keep the order the findings came in
    order = {id(e): i for i, e in enumerate(taken)}
    newline = "\r\n" if "\r\n" in text else "\n"
    for edit in sorted(taken, key=lambda e: (e.start, e.end, order[id(e)]), reverse=True):
        text = text[: edit.start] + edit.new.replace("\n", newline) + text[edit.end :]
    return text, fixed, left


def _overlap(a: Edit, b: Edit) -> bool:
    if a.start == a.end or b.start == b.end:  # an insertion conflicts only with a change across it
        point, other = (a, b) if a.start == a.end else (b, a)
        return other.start < point.start < other.end
    return a.start < b.end and b.start < a.end


#: Why a code's fix is not an edit lint can make alone.
_NOT_MECHANICAL = {
    "shared-metric": "needs a new metric instance in __init__",
    "stale-step-value": "needs the step's update() turned into a forward() call",
    "never-updated": "needs the step's predictions and targets for the update",
    "state-carried-over": "a logged object's reset at the start of each epoch is yours to place",
}


@dataclass
class FixResult:
    """What ``lmlogger lint --fix`` did: each changed file's text before and after, the findings fixed,
    the findings left (with why a fix was not applied) and the check of the fixed files."""

    changed: dict[str, tuple[str, str]]
    fixed: list[Finding]
    left: list[tuple[Finding, str]]
    result: LintResult


def fix_paths(paths: list[str], settings: Settings, passes: int = 8) -> FixResult:
    """Check ``paths``, apply the sure fixes in memory, check again, until nothing more applies."""
    originals: dict[str, str] = {}
    current: dict[str, str] = {}
    fixed: list[Finding] = []
    result = check(paths, settings)
    for _ in range(passes):
        applied = False
        by_path: dict[str, list[Finding]] = {}
        for finding in result.findings:
            by_path.setdefault(finding.path, []).append(finding)
        for path, findings in by_path.items():
            if not any(f.plan is not None for f in findings):
                continue
            if path not in current:
                try:
                    current[path] = originals[path] = Path(path).read_bytes().decode("utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
            text, done, _ = fix_text(current[path], findings)
            if done and text != current[path]:
                current[path] = text
                fixed.extend(done)
                applied = True
        if not applied:
            break
        result = check(paths, settings, {p: t.encode("utf-8") for p, t in current.items()})
    left = []
    for finding in result.findings:
        reason = finding.why_not or _NOT_MECHANICAL.get(finding.code, "no mechanical fix")
        if finding.plan is not None and finding.path in current:
            try:
                SourceEdits(current[finding.path]).edits(finding)
                reason = "its fix did not clear the finding"
            except Unsure as why:
                reason = str(why)
        elif finding.plan is not None:
            reason = "the file could not be read as UTF-8"
        left.append((finding, reason))
    changed = {p: (originals[p], t) for p, t in current.items() if t != originals[p]}
    return FixResult(changed, fixed, left, result)
