"""`lmlogger lint` as users run it: formats, exit codes, suppressions, pyproject settings and bad input."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import jsonschema
import pytest
from lint_helpers import HEADER, cli

from lmlogger.cli import main

WRONG = HEADER + textwrap.dedent(
    """
    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.f1 = BinaryF1Score()

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.f1.update(self(x), y)
            self.log("f1", self.f1.compute(), on_epoch=True)  # the one finding
    """
)
RIGHT = WRONG.replace(
    'self.f1.update(self(x), y)\n        self.log("f1", self.f1.compute(), on_epoch=True)',
    'self.f1(self(x), y)\n        self.log("f1", self.f1, on_epoch=True)',
)
LINE = next(n for n, line in enumerate(WRONG.splitlines(), 1) if "the one finding" in line)


@pytest.fixture(autouse=True)
def _no_patch_left_behind():
    """The static check patches nothing: the suite's gc-heavy check is moot here."""
    yield


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A project: a wrong module, a right one, in a folder with its own (empty) pyproject.toml."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "wrong.py").write_text(WRONG)
    (tmp_path / "src" / "right.py").write_text(RIGHT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, *args):
    code = main(["lint", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_format_is_path_line_col_code_message_and_the_fix(tree, capsys):
    """One finding: `src/wrong.py:LINE:9: running-value-averaged ...`, the fix below it, exit 1."""
    code, out, err = run(capsys, "src")
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0] == (
        f"src/wrong.py:{LINE}:9: running-value-averaged `f1`: compute() logged from a step hook with on_epoch=True: "
        "the epoch value reduces running values, not the epoch metric"
    )
    assert lines[1] == '    fix: self.log("f1", self.f1, on_epoch=True, on_step=False)'
    assert lines[-1] == "Found 1 finding in 2 files checked."


def test_clean_tree_exits_0(tree, capsys):
    """Only right patterns: exit 0 and a one-line summary."""
    code, out, _ = run(capsys, "src/right.py")
    assert (code, out.strip()) == (0, "All clear: 1 file checked.")


def test_json_format_has_the_documented_fields(tree, capsys):
    """{"findings": [{path, line, col, code, message, fix}], "summary": {files, findings}}."""
    code, out, _ = run(capsys, "src", "--format", "json")
    data = json.loads(out)
    assert code == 1
    assert data["summary"] == {"files": 2, "findings": 1, "errors": 0}
    [finding] = data["findings"]
    assert set(finding) == {"path", "line", "col", "code", "message", "fix"}
    assert (finding["path"], finding["line"], finding["col"], finding["code"]) == (
        "src/wrong.py",
        LINE,
        9,
        "running-value-averaged",
    )


def _sarif_schema() -> dict | None:
    """The OASIS SARIF 2.1.0 schema, where a copy is at hand (it is not shipped with the repository)."""
    for candidate in (
        os.environ.get("LMLOGGER_SARIF_SCHEMA", ""),
        str(Path(__file__).parent / "lint_data" / "sarif-schema-2.1.0.json"),
        "/work/shared/sarif-schema-2.1.0.json",
    ):
        if candidate and Path(candidate).is_file():
            return json.loads(Path(candidate).read_text())
    return None


#: The parts of SARIF 2.1.0 that GitHub code scanning reads, as a schema written from the spec (sections
#: 3.13 sarifLog, 3.14 run, 3.19 toolComponent, 3.27 result, 3.28 location, 3.30 region): always checked.
_SARIF_CORE = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "runs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "rules"],
                                "properties": {
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "shortDescription", "helpUri"],
                                        },
                                    }
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "message", "locations", "level"],
                            "properties": {
                                "level": {"enum": ["none", "note", "warning", "error"]},
                                "message": {"type": "object", "required": ["text"]},
                                "locations": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["physicalLocation"],
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "required": ["artifactLocation", "region"],
                                                "properties": {
                                                    "region": {
                                                        "type": "object",
                                                        "required": ["startLine", "startColumn"],
                                                        "properties": {
                                                            "startLine": {"type": "integer", "minimum": 1},
                                                            "startColumn": {"type": "integer", "minimum": 1},
                                                        },
                                                    }
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_sarif_is_valid_sarif_2_1_0(tree, capsys):
    """--format sarif validates against the SARIF 2.1.0 schema and carries the finding's rule and place."""
    (tree / "src" / "broken.py").write_text("def f(:\n")
    code, out, _ = run(capsys, "src", "--format", "sarif")
    log = json.loads(out)
    assert code == 2
    jsonschema.validate(log, _SARIF_CORE)
    official = _sarif_schema()
    if official is not None:
        jsonschema.Draft7Validator(official).validate(log)
    run_ = log["runs"][0]
    [result] = run_["results"]
    rule = run_["tool"]["driver"]["rules"][result["ruleIndex"]]
    assert rule["id"] == result["ruleId"] == "running-value-averaged"
    region = result["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (LINE, 9)
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "src/wrong.py"
    assert "Fix: self.log(" in result["message"]["text"]
    assert run_["invocations"][0]["executionSuccessful"] is False
    assert "src/broken.py" in json.dumps(run_["invocations"][0]["toolExecutionNotifications"])


def test_sarif_validates_against_the_official_schema_when_at_hand(tree, capsys):
    """The OASIS schema file itself (skipped only where no copy of it is at hand)."""
    official = _sarif_schema()
    if official is None:
        pytest.skip("no copy of sarif-schema-2.1.0.json (set LMLOGGER_SARIF_SCHEMA)")
    for args in (("src",), ("src/right.py",)):
        _, out, _ = run(capsys, *args, "--format", "sarif")
        jsonschema.Draft7Validator(official).validate(json.loads(out))


def test_github_format_is_workflow_annotations(tree, capsys):
    """`::error file=...,line=...,col=...,title=...::message`, newlines and % escaped as GitHub requires."""
    code, out, _ = run(capsys, "src", "--format", "github")
    [line] = out.splitlines()
    match = re.fullmatch(r"::error file=([^,]+),line=(\d+),col=(\d+),title=([^:]+)::(.*)", line)
    assert match, line
    assert match.groups()[:4] == ("src/wrong.py", str(LINE), "9", "lmlogger running-value-averaged")
    assert "%0Afix: self.log(" in match.group(5)
    assert code == 1


def test_github_escapes_commas_and_colons_in_paths(tmp_path, monkeypatch, capsys):
    """A path with ',' or ':' cannot break the annotation's properties."""
    folder = tmp_path / "a,b:c"
    folder.mkdir()
    (folder / "m.py").write_text(WRONG)
    monkeypatch.chdir(tmp_path)
    _, out, _ = run(capsys, "a,b:c", "--format", "github")
    assert out.startswith("::error file=a%2Cb%3Ac/m.py,line=")


def test_select_and_ignore_on_the_command_line(tree, capsys):
    """--ignore a code silences it (exit 0); --select another code reports nothing; a bad code is exit 2."""
    assert run(capsys, "src", "--ignore", "running-value-averaged")[0] == 0
    assert run(capsys, "src", "--select", "shared-metric,stale-step-value")[0] == 0
    assert run(capsys, "src", "--select", "running-value-averaged")[0] == 1
    code, out, err = run(capsys, "src", "--select", "no-such-code")
    assert code == 2 and out == ""
    assert err.strip().startswith("lmlogger: error: --select: unknown finding code 'no-such-code'")


def test_pyproject_settings(tree, capsys):
    """[tool.lmlogger.lint] ignore and exclude apply; an unknown setting or code is exit 2 naming it."""
    pyproject = tree / "pyproject.toml"
    pyproject.write_text('[tool.lmlogger.lint]\nignore = ["running-value-averaged"]\n')
    assert run(capsys, "src")[0] == 0
    pyproject.write_text('[tool.lmlogger.lint]\nexclude = ["src/wrong.py"]\n')
    code, out, _ = run(capsys, "src")
    assert (code, out.strip()) == (0, "All clear: 1 file checked.")
    pyproject.write_text('[tool.lmlogger.lint]\nselect = ["stale-step-value"]\n')
    assert run(capsys, "src")[0] == 0
    pyproject.write_text('[tool.lmlogger.lint]\nselect = ["stale-step-valu"]\n')
    code, _, err = run(capsys, "src")
    assert code == 2 and "unknown finding code 'stale-step-valu'" in err and len(err.strip().splitlines()) == 1
    pyproject.write_text("[tool.lmlogger.lint]\nselects = []\n")
    code, _, err = run(capsys, "src")
    assert code == 2 and "unknown setting 'selects'" in err
    pyproject.write_text("[tool.lmlogger.lint\n")
    code, _, err = run(capsys, "src")
    assert code == 2 and "pyproject.toml: cannot read it" in err


@pytest.mark.parametrize(
    ("comment", "silenced"),
    [
        ("# lmlogger: ignore[running-value-averaged]", True),
        ("# lmlogger: ignore[shared-metric, running-value-averaged]", True),
        ("# lmlogger: ignore", True),
        ("# lmlogger: ignore[batch-values-averaged]", False),
        ("# noqa", False),
    ],
)
def test_suppression_comments(tree, capsys, comment, silenced):
    """`# lmlogger: ignore[code]` on the line silences that code only; a bare ignore silences all."""
    (tree / "src" / "wrong.py").write_text(WRONG.replace("# the one finding", comment))
    assert run(capsys, "src")[0] == (0 if silenced else 1)


def test_suppression_on_any_line_of_a_call_written_over_several(tree, capsys):
    """A self.log call spread over lines may carry the comment on its last line."""
    spread = (
        'self.log(\n            "f1",\n            self.f1.compute(),\n            on_epoch=True,\n'
        "        )  # lmlogger: ignore[running-value-averaged]"
    )
    source = WRONG.replace('self.log("f1", self.f1.compute(), on_epoch=True)  # the one finding', spread)
    (tree / "src" / "wrong.py").write_text(source)
    assert run(capsys, "src")[0] == 0


def test_a_file_that_does_not_parse_is_one_line_the_rest_is_still_checked(tree, capsys):
    """Bad input: one line naming the file and line; the other files' findings still print; exit 2."""
    (tree / "src" / "broken.py").write_text("class M(:\n    pass\n")
    (tree / "src" / "binary.py").write_bytes(b"\x00\x01\x02")
    code, out, err = run(capsys, "src")
    assert code == 2
    assert err.splitlines() == [
        "lmlogger: error: src/binary.py: cannot parse: source code string cannot contain null bytes",
        "lmlogger: error: src/broken.py:1: cannot parse: invalid syntax",
    ]
    assert out.splitlines()[-1] == "Found 1 finding in 4 files checked; 2 paths could not be checked."
    assert f"src/wrong.py:{LINE}:9: running-value-averaged" in out


def test_missing_path_is_exit_2_and_the_others_are_checked(tree, capsys):
    """A path that does not exist: one line naming it, exit 2, the other path still reported."""
    code, out, err = run(capsys, "src", "nope.py")
    assert code == 2
    assert err.strip() == "lmlogger: error: nope.py: no such file or directory"
    assert "running-value-averaged" in out


def test_usage_errors_are_exit_2(capsys):
    """No path, or an unknown format: argparse's one-line error, exit 2."""
    for args in (["lint"], ["lint", ".", "--format", "xml"]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2


def test_the_linted_code_is_never_run(tree, capsys):
    """A module that would write a file when imported or executed is only parsed."""
    marker = tree / "ran.txt"
    (tree / "src" / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nimport lmlogger_no_such_module\n")
    run(capsys, "src")
    assert not marker.exists()


def test_lmlogger_lint_subprocess_end_to_end(tree):
    """`python -m lmlogger lint` in a subprocess: same output and exit code."""
    proc = cli("src", "--format", "json", cwd=tree)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["summary"]["findings"] == 1


def test_control_characters_in_paths_are_escaped_on_the_terminal(tmp_path, monkeypatch, capsys):
    """A file name carrying an escape sequence cannot drive the terminal: it is shown escaped."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil\x1b[2J.py").write_text("def f(:\n")
    code, out, err = run(capsys, ".")
    assert code == 2
    assert "\x1b" not in err + out and "evil\\x1b[2J.py" in err


STALE = WRONG.replace(
    'self.log("f1", self.f1.compute(), on_epoch=True)  # the one finding',
    'self.log("f1", self.f1, on_step=True, on_epoch=True)  # advice: the step value repeats',
)


def test_statistics_counts_findings_per_code(tree, capsys):
    """`--statistics` prints one line per code with its count and level (as ruff's), then the summary; exit as usual."""
    (tree / "src" / "wrong2.py").write_text(WRONG)
    (tree / "src" / "stale.py").write_text(STALE)
    code, out, _ = run(capsys, "src", "--statistics")
    assert code == 1
    assert out.splitlines() == [
        "2  running-value-averaged    error",
        "1  stale-step-value          warning",
        "Found 3 findings in 4 files checked.",
    ]


def test_github_gives_advice_the_warning_level(tree, capsys):
    """A finding whose epoch number is right (a stale step value) is a `::warning`, a wrong number an `::error`;
    SARIF says the same levels."""
    (tree / "src" / "stale.py").write_text(STALE)
    _, out, _ = run(capsys, "src", "--format", "github")
    levels = {re.search(r"title=lmlogger ([\w-]+)", line).group(1): line.split(" ")[0] for line in out.splitlines()}
    assert levels == {"running-value-averaged": "::error", "stale-step-value": "::warning"}
    _, out, _ = run(capsys, "src", "--format", "sarif")
    results = json.loads(out)["runs"][0]["results"]
    assert {r["ruleId"]: r["level"] for r in results} == {
        "running-value-averaged": "error",
        "stale-step-value": "warning",
    }
