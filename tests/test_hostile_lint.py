"""`lmlogger lint` on hostile source trees, made by each test: file names and key literals that would inject
GitHub Actions commands, files that never end or never open, a thousand-class chain, bad settings, loops.
Each is named (one line) and skipped or left out while the rest is checked; never a hang, never "internal
error"."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from lint_helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120

WRONG = HEADER + textwrap.dedent(
    """
    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.f1 = BinaryF1Score()

        def training_step(self, batch, batch_idx):
            self.f1.update(batch, batch)
            self.log(KEY, self.f1.compute(), on_epoch=True)
    """
)
INJECTED_KEY = "f1\n::error file=x.py::owned\n::add-mask::x"

# The child writes its own peak RSS (VmHWM, KiB) where PEAK_FILE says, under an address-space cap.
_CHILD = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from lmlogger.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_FILE"], "w") as fh:
        fh.write(peak)
sys.exit(code)
"""


def wrong(key: str = "f1") -> str:
    return WRONG.replace("KEY", repr(key))


def lint_cli(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    peak = cwd.parent / "peak"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, "lint", *args],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=TIMEOUT,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PEAK_FILE": str(peak)},
    )
    return proc, int(peak.read_text()) / 1024


@pytest.fixture
def project(tmp_path):
    cwd = tmp_path / "project"
    (cwd / "src").mkdir(parents=True)
    (cwd / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return cwd


NAMES = ["::error file=a.py::owned.py", "new\n::warning::line.py", "::add-mask::\u202ex.py"]


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github"])
def test_no_output_line_can_start_a_workflow_command(project, fmt):
    """File names holding newlines or a leading `::` and a key literal holding `\\n::error` give exactly one
    line per finding (two with the fix) in text, JSON and SARIF strings, and one `::error` per finding in the
    github format; no path or message adds a line."""
    for name in NAMES:
        (project / "src" / name).write_text(wrong(INJECTED_KEY))
    (project / NAMES[0]).write_text(wrong())  # a relative path that starts with ::
    proc, _ = lint_cli(project, "src", NAMES[0], "--format", fmt)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    if fmt == "github":
        assert len(lines) == 4 and all(line.startswith("::error file=") for line in lines)
    else:
        assert not any(line.startswith("::") for line in lines), proc.stdout
    if fmt == "text":
        assert len(lines) == 4 * 2 + 1  # finding + fix per file, then the summary
        assert "./::error file=a.py::owned.py:" in proc.stdout
        assert "src/new\\x0a::warning::line.py:" in proc.stdout and "f1\\x0a::error" in proc.stdout
    if fmt == "json":
        paths = {f["path"] for f in json.loads(proc.stdout)["findings"]}
        assert paths == {f"src/{name}" for name in NAMES} | {NAMES[0]}
    if fmt == "sarif":
        results = json.loads(proc.stdout)["runs"][0]["results"]
        uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
        assert uris == {quote(f"src/{name}") for name in NAMES} | {"%3A%3Aerror%20file%3Da.py%3A%3Aowned.py"}
        unreserved = set(string.ascii_letters + string.digits + "-._~/%")  # RFC 3986, and the escapes
        assert all(set(uri) <= unreserved for uri in uris)
        assert {unquote(uri) for uri in uris} == {f"src/{name}" for name in NAMES} | {NAMES[0]}


def test_fifo_device_symlink_loop_and_huge_file_are_skipped_and_named(project):
    """A FIFO named x.py (would block), a .py symlink to /dev/zero (endless), a symlink loop, a file over the
    size limit: one stderr line each, skipped; the real file's finding is still reported; exit 2, quickly and
    in bounded memory."""
    from lmlogger.lint._check import MAX_FILE_BYTES

    src = project / "src"
    (src / "model.py").write_text(wrong())
    os.mkfifo(src / "fifo.py")
    os.symlink("/dev/zero", src / "zero.py")
    os.symlink("loop.py", src / "loop.py")
    with open(src / "huge.py", "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    os.symlink("self.py", project / "self.py")
    os.mkfifo(project / "named.py")  # given by name
    proc, peak = lint_cli(project, "src", "self.py", "named.py")
    assert proc.returncode == 2
    errors = sorted(proc.stderr.splitlines())
    assert errors == [
        "lmlogger: error: named.py: skipped: not a regular file (it is a FIFO)",
        "lmlogger: error: self.py: a symlink loop",
        "lmlogger: error: src/fifo.py: skipped: not a regular file (it is a FIFO)",
        "lmlogger: error: src/huge.py: skipped: larger than the limit of 8,388,608 bytes (MAX_FILE_BYTES)",
        "lmlogger: error: src/loop.py: cannot read: Too many levels of symbolic links",
        "lmlogger: error: src/zero.py: skipped: not a regular file (it is a character device)",
    ]
    assert "src/model.py:" in proc.stdout and "running-value-averaged" in proc.stdout
    assert peak < 200, peak


def test_a_thousand_class_chain_is_checked(project):
    """`class C1(C0)`, ..., `class C999(C998)` on a LightningModule with a wrong log: the finding, no internal
    error (the chain is walked without recursion)."""
    chain = "".join(f"class C{i}(C{i - 1}):\n    pass\n\n" for i in range(1, 1000))
    (project / "src" / "chain.py").write_text(wrong().replace("class M(", "class C0(") + "\n" + chain)
    proc, _ = lint_cli(project, "src")
    assert (proc.returncode, proc.stderr) == (1, "")
    assert proc.stdout.count("running-value-averaged") == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[tool]\nlmlogger = 3\n", "pyproject.toml [tool.lmlogger]: expected a table, got int"),
        ("[tool.lmlogger]\nlint = [1]\n", "pyproject.toml [tool.lmlogger.lint]: expected a table, got list"),
        (
            "[tool.lmlogger.lint]\nselect = 5\n",
            "[tool.lmlogger.lint] select: expected a list of finding codes, got int",
        ),
        ('[tool.lmlogger.lint]\nexclude = "src"\n', "exclude: expected a list of glob patterns, got str 'src'"),
        ('[tool.lmlogger.lint]\nignore = ["a\\n::error::x"]\n', "unknown finding code 'a\\n::error::x'"),
        ("x = " + "[" * 5000 + "]" * 5000 + "\n", "pyproject.toml: cannot read it: values nested too deeply"),
        (b"[tool]\n\xff\xfe = 1\n", "pyproject.toml: cannot read it: not UTF-8"),
    ],
)
def test_a_bad_setting_is_named_and_the_check_goes_on(project, text, expected):
    """One stderr line naming the file and setting; the findings are still printed (without that setting);
    exit 2."""
    path = project / "pyproject.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    (project / "src" / "model.py").write_text(wrong())
    proc, _ = lint_cli(project, "src")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmlogger: error: ") and expected in lines[0], proc.stderr
    assert "internal error" not in proc.stderr
    assert "src/model.py:" in proc.stdout and "running-value-averaged" in proc.stdout


def test_a_fifo_named_pyproject_is_never_opened(project):
    """Only a regular file is a settings file: a FIFO named pyproject.toml is passed over, never waited on."""
    (project / "pyproject.toml").unlink()
    os.mkfifo(project / "pyproject.toml")
    (project / "src" / "model.py").write_text(wrong())
    proc, _ = lint_cli(project, "src")
    assert proc.returncode == 1 and "running-value-averaged" in proc.stdout  # a FIFO is not a pyproject.toml
