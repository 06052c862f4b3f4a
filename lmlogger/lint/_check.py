"""From paths to findings: find the Python files, parse them (never import or run them), run the rules."""

from __future__ import annotations

import ast
import errno
import gc
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from lmlogger.lint._config import Settings, relative, suppressed
from lmlogger.lint._model import Finding, InputError, LintResult
from lmlogger.lint._project import Project, SourceFile, index_file
from lmlogger.lint._rules import ModuleCheck, Raw

#: The largest source file read (bytes): larger ones are skipped with one error (exit 2). Generated
#: modules of a few MiB are read; a symlink to a device or a runaway file is not.
MAX_FILE_BYTES = 8 * 1024 * 1024

#: A file holding none of these cannot define, extend or log from a LightningModule's metrics.
_MARKERS = (b"self.log", b"LightningModule", b"torchmetrics", b"Metric")


def python_files(paths: Iterable[str], settings: Settings, errors: list[InputError]) -> list[Path]:
    """The ``.py`` files under ``paths`` (files given by name are taken whatever their suffix), sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if _loops(raw):
            errors.append(InputError(relative(raw), "a symlink loop"))
            continue
        if path.is_dir():
            for folder, subdirs, files in os.walk(path):
                subdirs[:] = sorted(d for d in subdirs if not settings.excluded(Path(folder, d), path))
                found.extend(
                    Path(folder, name)
                    for name in sorted(files)
                    if name.endswith((".py", ".pyi")) and not settings.excluded(Path(folder, name), path)
                )
        elif path.exists():  # a FIFO or a device given by name: read_source names what it is
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
        data = overrides[shown] if overrides and shown in overrides else read_source(path)
    except OSError as err:
        errors.append(InputError(shown, f"cannot read: {err.strerror or err}"))
        return None
    except ValueError as err:
        errors.append(InputError(shown, f"skipped: {err}"))
        return None
    try:
        return data, ast.parse(data, filename=shown)
    except SyntaxError as err:
        errors.append(InputError(shown, f"cannot parse: {err.msg}", err.lineno))
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes, absurd nesting
        errors.append(InputError(shown, f"cannot parse: {err}"))
    return None


def _loops(path: str) -> bool:
    """Whether ``path`` is a symlink that leads back to itself (``os.stat`` says ELOOP)."""
    try:
        os.stat(path)
    except OSError as err:
        return err.errno == errno.ELOOP
    return False


def read_source(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_FILE_BYTES``.

    Opened without blocking (a FIFO named ``x.py`` would wait for a writer forever) and checked on the open
    descriptor, so what is read is what was checked: a FIFO, a device (a symlink to ``/dev/zero``), a socket
    is refused, and nothing past the limit is read.

    Raises:
        OSError: the file cannot be opened or read.
        ValueError: not a regular file, or larger than the limit (the message says which).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"not a regular file (it is {_kind(info.st_mode)})")
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than the limit of {MAX_FILE_BYTES:,} bytes (MAX_FILE_BYTES)")
    return data


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    kinds += ((stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a file")


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
            shown = relative(str(path))
            try:
                files.append(index_file(shown, data.decode("utf-8", "replace"), tree))
            except RecursionError:
                result.errors.append(InputError(shown, "could not check: statements nested too deeply"))
    project = Project(files)
    seen: set[tuple] = set()
    lines: dict[str, list[str]] = {}
    for info in project.modules():
        try:
            raws = list(ModuleCheck(info, project).run())
        except (RecursionError, ValueError, TypeError, AttributeError, KeyError, IndexError) as err:
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
