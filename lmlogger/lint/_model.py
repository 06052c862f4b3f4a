"""What the static check reports: findings and unreadable inputs, as small frozen records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lmlogger.records._records import FINDINGS
from lmlogger.records._verify import FixPlan

#: The finding codes the static check can see in source code, in the order the docs present them.
CODES: tuple[str, ...] = (
    "running-value-averaged",
    "batch-values-averaged",
    "derived-value",
    "state-carried-over",
    "shared-metric",
    "stale-step-value",
    "never-updated",
)


#: Findings that are advice rather than a wrong epoch number: ``stale-step-value`` (the epoch value is right, the
#: step value repeats), ``shared-metric`` (a hazard the runtime checks: the number is wrong only when the phases'
#: updates actually mix). ``--format github`` and ``sarif`` give them the level ``warning``; the others ``error``.
ADVICE: frozenset[str] = frozenset({"stale-step-value", "shared-metric"})


def level(code: str) -> str:
    """``"warning"`` for advice (`ADVICE`), ``"error"`` for a finding whose epoch value is wrong."""
    return "warning" if code in ADVICE else "error"


def message(code: str, subject: str) -> str:
    """The one-line message of a finding: the key or metric it is about, then the code's meaning."""
    return f"`{subject}`: {FINDINGS[code]}"


@dataclass(frozen=True, order=True)
class Finding:
    """One wrong logging pattern at one place in the source.

    ``line`` and ``col`` are 1-based; ``col`` counts characters, as editors do.
    """

    path: str
    line: int
    col: int
    code: str
    message: str
    fix: str | None = None
    #: the fix as edits, where ``lmlogger lint --fix`` can apply it (``None``: not auto-fixable)
    plan: FixPlan | None = field(default=None, compare=False, repr=False)
    #: where the call of the finding starts: 1-based line and UTF-8 byte column, as ``ast`` has it
    anchor: tuple[int, int] | None = field(default=None, compare=False, repr=False)
    #: why ``plan`` is ``None`` where the finding's code has mechanical fixes elsewhere
    why_not: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``lmlogger lint --format json``."""
        out = asdict(self)
        del out["plan"], out["anchor"], out["why_not"]
        return out


@dataclass(frozen=True, order=True)
class InputError:
    """A path that could not be checked (missing, unreadable, not Python that parses)."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass
class LintResult:
    """Everything one ``lmlogger lint`` run found."""

    findings: list[Finding] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    files: int = 0

    @property
    def exit_code(self) -> int:
        """2 when an input could not be checked, else 1 when something was found, else 0."""
        if self.errors:
            return 2
        return 1 if self.findings else 0

    def to_dict(self) -> dict[str, Any]:
        """``{"findings": [...], "summary": {"files": N, "findings": N}, "errors": [...]}``."""
        return {
            "findings": [f.to_dict() for f in self.findings],
            "summary": {"files": self.files, "findings": len(self.findings), "errors": len(self.errors)},
            "errors": [{"path": e.path, "line": e.line, "message": e.message} for e in self.errors],
        }
