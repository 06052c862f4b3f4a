"""From paths to findings: find the Python files, parse them (never import or run them), run the rules."""

from __future__ import annotations

import ast
import gc
import os
from collections.abc import Iterable
from pathlib import Path

from lmlogger.lint._config import Settings, relative, suppressed
from lmlogger.lint._model import Finding, InputError, LintResult
from lmlogger.lint._project import Project, SourceFile, index_file
from lmlogger.lint._rules import ModuleCheck, Raw

#: A file holding none of these cannot define, extend or log from a LightningModule's metrics.
_MARKERS = (b"self.log", b"LightningModule", b"torchmetrics", b"Metric")


def python_files(paths: Iterable[str], settings: Settings, errors: list[InputError]) -> list[Path]:
    """The ``.py`` files under ``paths`` (files given by name are taken whatever their suffix), sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for folder, subdirs, files in os.walk(path):
                subdirs[:] = sorted(d for d in subdirs if not settings.excluded(Path(folder, d), path))
                found.extend(
                    Path(folder, name)
                    for name in sorted(files)
                    if name.endswith((".py", ".pyi")) and not settings.excluded(Path(folder, name), path)
                )
        elif path.is_file():
            if not settings.excluded(path):
                found.append(path)
        else:
            errors.append(InputError(raw, "no such file or directory"))
    return list(dict.fromkeys(found))


def parse(
    path: Path, errors: list[InputError], overrides: dict[str, bytes] | None = None
) -> tuple[bytes, ast.Module] | None:
    """Read and parse one file; an unreadable or unparsable file becomes one error naming it.

    ``overrides``: contents to check instead of what is on disk (``lmlogger lint --diff``'s fixed text)."""
    shown = relative(str(path))
    try:
        data = overrides[shown] if overrides and shown in overrides else path.read_bytes()
    except OSError as err:
        errors.append(InputError(shown, f"cannot read: {err.strerror or err}"))
        return None
    try:
        return data, ast.parse(data, filename=shown)
    except SyntaxError as err:
        errors.append(InputError(shown, f"cannot parse: {err.msg}", err.lineno))
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes, absurd nesting
        errors.append(InputError(shown, f"cannot parse: {err}"))
    return None


def check(
    paths: Iterable[str], settings: Settings | None = None, overrides: dict[str, bytes] | None = None
) -> LintResult:
    """Check every Python file under ``paths`` together (classes of one file may extend another's).

    ``overrides``: file contents to check instead of what is on disk (by path as printed)."""
    settings = settings or Settings()
    # Every parsed tree stays alive until the rules ran: the cyclic garbage collector would walk those
    # millions of nodes again and again for nothing (ASTs hold no cycles). It is paused, then restored.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _check(paths, settings, overrides)
    finally:
        if enabled:
            gc.enable()


def _check(paths: Iterable[str], settings: Settings, overrides: dict[str, bytes] | None) -> LintResult:
    result = LintResult()
    files: list[SourceFile] = []
    for path in python_files(paths, settings, result.errors):
        parsed = parse(path, result.errors, overrides)
        result.files += 1
        if parsed is None:
            continue
        data, tree = parsed
        if any(marker in data for marker in _MARKERS):
            files.append(index_file(relative(str(path)), data.decode("utf-8", "replace"), tree))
    project = Project(files)
    seen: set[tuple] = set()
    lines: dict[str, list[str]] = {}
    for info in project.modules():
        try:
            raws = list(ModuleCheck(info, project).run())
        except (RecursionError, ValueError, TypeError, AttributeError, KeyError) as err:
            # A construct the check does not model must not hide the other modules' findings: say which
            # class could not be checked (exit 2), and go on.
            line = info.node.lineno
            result.errors.append(InputError(info.file.path, f"could not check class {info.name}: {err!r}", line))
            continue
        for raw in raws:
            if not settings.enabled(raw.code):
                continue
            finding = _finding(raw, lines)
            if finding is None:
                continue
            key = (finding.path, finding.line, finding.col, finding.code, finding.message)
            if key not in seen:
                seen.add(key)
                result.findings.append(finding)
    result.findings.sort()
    result.errors.sort()
    return result


def _finding(raw: Raw, lines: dict[str, list[str]]) -> Finding | None:
    source = raw.source
    if source.path not in lines:
        lines[source.path] = source.lines()
    text = lines[source.path]
    line = raw.node.lineno  # type: ignore[attr-defined]
    end = getattr(raw.node, "end_lineno", None) or line
    if suppressed(text, line, end, raw.code):
        return None
    offset = raw.node.col_offset  # type: ignore[attr-defined]  (a UTF-8 byte offset)
    col = len(text[line - 1].encode("utf-8")[:offset].decode("utf-8", "replace")) + 1 if line <= len(text) else 1
    return Finding(source.path, line, col, raw.code, raw.message, raw.fix, raw.plan, (line, offset), raw.why_not)
