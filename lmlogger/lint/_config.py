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
        try:
            relative = path.resolve().relative_to(self.root.resolve()).as_posix()
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
        raise ConfigError(f"{where}: expected a list of finding codes, got {value!r}")
    if "ALL" in items:
        return CODES
    unknown = [item for item in items if item not in CODES]
    if unknown:
        raise ConfigError(f"{where}: unknown finding code {unknown[0]!r} (known: {', '.join(CODES)})")
    return tuple(items)


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start``."""
    current = start.resolve()
    if current.is_file():
        current = current.parent
    for folder in (current, *current.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load(start: Path) -> Settings:
    """Settings from the ``[tool.lmlogger.lint]`` table of the nearest ``pyproject.toml`` (defaults if none)."""
    pyproject = find_pyproject(start)
    if pyproject is None:
        return Settings()
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
            return Settings(root=pyproject.parent)
    try:
        with open(pyproject, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{pyproject}: cannot read it: {err}") from err
    table = data.get("tool", {}).get("lmlogger", {}).get("lint", {})
    where = f"{pyproject} [tool.lmlogger.lint]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = sorted(set(table) - {"select", "ignore", "exclude"})
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} (known: select, ignore, exclude)")
    settings = Settings(root=pyproject.parent)
    if "select" in table:
        settings.select = codes(table["select"], f"{where} select")
    if "ignore" in table:
        settings.ignore = codes(table["ignore"], f"{where} ignore")
    if "exclude" in table:
        exclude = table["exclude"]
        if not isinstance(exclude, list) or not all(isinstance(item, str) for item in exclude):
            raise ConfigError(f"{where} exclude: expected a list of glob patterns, got {exclude!r}")
        settings.exclude = tuple(exclude)
    return settings


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
