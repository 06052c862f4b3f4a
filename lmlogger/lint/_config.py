"""Settings of the static check: ``[tool.lmlogger.lint]`` in ``pyproject.toml``, the command line, and
``# lmlogger: ignore[code]`` comments in the source."""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lmlogger.lint._model import CODES

#: Folders never worth reading: caches, virtual environments, build output.
DEFAULT_EXCLUDE = (
    ".git",
    ".hg",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    "__pycache__",
    "build",
    "dist",
    "node_modules",
    "site-packages",
    ".mypy_cache",
    ".ruff_cache",
)

_IGNORE = re.compile(r"#\s*lmlogger:\s*ignore(?:\[([^\]]*)\])?", re.IGNORECASE)


class ConfigError(ValueError):
    """A setting that names no finding code, or a ``pyproject.toml`` that cannot be read."""


@dataclass
class Settings:
    """Which codes are reported and which paths are skipped."""

    select: tuple[str, ...] = CODES
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    root: Path = field(default_factory=Path.cwd)  # the folder exclude patterns are relative to

    def enabled(self, code: str) -> bool:
        return code in self.select and code not in self.ignore

    def excluded(self, path: Path, base: Path | None = None) -> bool:
        """Whether ``path`` matches a default folder (below ``base``, the folder given on the command line)
        or an ``exclude`` pattern (globs, relative to ``root``)."""
        below = path.relative_to(base).parts if base is not None else path.parts[-1:]
        if any(part in DEFAULT_EXCLUDE for part in below):
            return True
        try:  # realpath, not resolve(): a symlink loop is a path like any other here (read_source names it)
            relative = Path(os.path.realpath(path)).relative_to(os.path.realpath(self.root)).as_posix()
        except ValueError:
            relative = path.as_posix()
        for pattern in self.exclude:
            pattern = pattern.rstrip("/")
            if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, f"{pattern}/*"):
                return True
            if fnmatch.fnmatch(path.name, pattern):
                return True
        return False


def codes(value: object, where: str) -> tuple[str, ...]:
    """Finding codes from a list or a comma-separated string, each checked against the known ones."""
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise ConfigError(f"{where}: expected a list of finding codes, got {_shown(value)}")
    if "ALL" in items:
        return CODES
    unknown = [item for item in items if item not in CODES]
    if unknown:
        raise ConfigError(f"{where}: unknown finding code {unknown[0]!r} (known: {', '.join(CODES)})")
    return tuple(items)


def _shown(value: object) -> str:
    """A setting's value in a message: its type and the start of its repr (a setting can be huge or deep)."""
    try:
        text = repr(value)
    except RecursionError:
        text = "..."
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start``."""
    current = Path(os.path.realpath(start))
    if current.is_file():
        current = current.parent
    for folder in (current, *current.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load(start: Path, problems: list[str] | None = None) -> Settings:
    """Settings from the ``[tool.lmlogger.lint]`` table of the nearest ``pyproject.toml`` (defaults if none).

    Args:
        start: the first path checked; the nearest ``pyproject.toml`` at or above it is read.
        problems: where given, a file that cannot be read or a bad setting is appended here (one line naming
            it) and left out, and the other settings apply; else it raises.

    Raises:
        ConfigError: a file that cannot be read or a bad setting, when ``problems`` is None.
    """
    pyproject = find_pyproject(start)
    if pyproject is None:
        return Settings()
    settings = Settings(root=pyproject.parent)
    try:
        table = _table(pyproject)
    except ConfigError as err:
        if problems is None:
            raise
        problems.append(str(err))
        return settings
    where = f"{pyproject} [tool.lmlogger.lint]"

    def exclude(value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where} exclude: expected a list of glob patterns, got {_shown(value)}")
        return tuple(value)

    parsers = {
        "select": lambda value: codes(value, f"{where} select"),
        "ignore": lambda value: codes(value, f"{where} ignore"),
        "exclude": exclude,
    }
    for name in sorted(table, key=str):
        try:
            if name not in parsers:
                raise ConfigError(f"{where}: unknown setting {name!r} (known: select, ignore, exclude)")
            setattr(settings, name, parsers[name](table[name]))
        except ConfigError as err:
            if problems is None:
                raise
            problems.append(str(err))
    return settings


def _table(pyproject: Path) -> dict[str, object]:
    """The ``[tool.lmlogger.lint]`` table of ``pyproject`` (empty if it has none)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:  # lmlogger depends on tomli there; a stripped environment may lack it
            try:
                mentioned = b"lmlogger" in pyproject.read_bytes()
            except OSError:
                mentioned = False
            if mentioned:  # never ignore the user's settings silently
                raise ConfigError(
                    f"{pyproject}: reading [tool.lmlogger.lint] on Python "
                    f"{sys.version_info[0]}.{sys.version_info[1]} needs tomli: pip install tomli"
                ) from None
            return {}
    from lmlogger.lint._check import read_source

    try:
        data = tomllib.loads(read_source(pyproject).decode("utf-8"))
    except OSError as err:
        raise ConfigError(f"{pyproject}: cannot read it: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{pyproject}: cannot read it: not UTF-8 ({err.reason} at byte {err.start})") from None
    except RecursionError:
        raise ConfigError(f"{pyproject}: cannot read it: values nested too deeply") from None
    except ValueError as err:  # TOMLDecodeError is a ValueError; so are read_source's refusals
        text = str(err).strip().splitlines()
        raise ConfigError(f"{pyproject}: cannot read it: {text[0] if text else type(err).__name__}") from None
    table: object = data
    for level, name in enumerate(("tool", "lmlogger", "lint")):
        table = table.get(name, {}) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            where = f"{pyproject} [{'.'.join(('tool', 'lmlogger', 'lint')[: level + 1])}]"
            raise ConfigError(f"{where}: expected a table, got {type(table).__name__}")
    return table


def suppressed(lines: list[str], first: int, last: int, code: str) -> bool:
    """Whether ``# lmlogger: ignore`` or ``# lmlogger: ignore[code, ...]`` sits on a line of ``first..last``
    (1-based, inclusive: a call written over several lines may carry it on any of them)."""
    for number in range(first, min(last, len(lines)) + 1):
        line = lines[number - 1]
        if "lmlogger" not in line:
            continue
        for match in _IGNORE.finditer(line):
            listed = match.group(1)
            if listed is None or code in {item.strip() for item in listed.split(",")}:
                return True
    return False


def relative(path: str) -> str:
    """``path`` as printed: relative to the working folder when under it, with forward slashes."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return Path(path).as_posix()
    return Path(path if rel.startswith("..") else rel).as_posix()
