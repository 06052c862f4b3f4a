"""Hostile strings in a run reach every audit format visibly escaped: controls and bidirectional overrides
in key names, fixes, reasons, run names and stage labels, and a key holding a lone surrogate."""

import html
import json
import os
import subprocess
import sys
import unicodedata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 120
#: Every bidirectional control (embeddings, overrides, isolates, marks) and two terminal sequences.
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
KEY = "acc\u202etxt.exe" + "\x1b]0;owned\x07" + BIDI
SURROGATE = "f1\ud800x"
FIX = 'self.log("acc", self.acc)\x1b[2J\u202e'


def _records():
    header = {
        "type": "header",
        "schema": 1,
        "stage": "fit",
        "logger": "CSVLogger",
        "run": {"name": "run\u202eeman\x1b[31m", "version": 0},
        "versions": {"lmlogger": "0.1.0\u2067"},
        "created": "2026-01-01T00:00:00+00:00",
        "options": {"rtol": 1e-4, "atol": 1e-6},
    }
    out = [header]
    for key in (KEY, SURROGATE):
        out.append(
            {
                "type": "provenance",
                "key": key,
                "name": key,
                "kind": "metric_compute",
                "hook": "training_step\u202e",
                "phase": "train",
                "on_step": False,
                "on_epoch": True,
                "reduce_fx": "mean",
                "sync_dist": False,
                "batch_size": 16,
                "batch_size_source": "inferred",
                "dataloader_idx": None,
                "logged_keys": [key],
                "metric_attribute": "acc\u202e",
            }
        )
    for key in (KEY, SURROGATE):
        out.append(
            {
                "type": "verification",
                "key": key,
                "phase": "train",
                "epoch": 0,
                "step": 5,
                "logged": 0.5,
                "reference": 0.6,
                "verdict": "mismatch",
                "findings": ["running-value-averaged"],
                "reason": "because\u2066 \x1b[1m",
                "fix": FIX,
                "rtol_floor": 0.0,
            }
        )
    out.append({"type": "close", "stage": "fit", "status": "success", "closed": "2026-01-01T00:01:00+00:00"})
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run dir (folder name with a bidi override too) whose sidecar holds the strings above; json.dumps
    writes the lone surrogate as the escape ``"\\ud800"``, as a hostile file would."""
    root = tmp_path_factory.mktemp("hostile") / "run\u202e1"
    path = root / "lmlogger" / "provenance.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="ascii")
    return root


def audit(run_dir, fmt):
    proc = subprocess.run(
        [sys.executable, "-m", "lmlogger", "audit", str(run_dir), "--format", fmt, "--no-color"],
        capture_output=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")  # strict: valid UTF-8


def hidden(text):
    return [hex(ord(ch)) for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")]


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "html", "prov"])
def test_every_format_shows_hostile_strings_escaped(run_dir, fmt):
    """Exit 1 (two mismatched keys), valid UTF-8, and not one control, bidi or surrogate character printed."""
    if fmt == "prov":
        pytest.importorskip("prov")
    code, out, err = audit(run_dir, fmt)
    assert (code, err) == (1, ""), err
    assert hidden(out) == []
    if fmt == "json":  # JSON keeps the strings as they were, written as escapes
        keys = {k["key"] for k in json.loads(out)["runs"][0]["keys"]}
        assert keys == {KEY, SURROGATE}
    else:
        assert "\\u202e" in out and "\\ud800" in out and "\\x1b" in out


def test_the_page_shows_bidi_overrides_as_escapes(run_dir):
    """In the HTML page a key, its fix, its reason and the run's path show each bidi control as `\\u....`:
    nothing after them is mirrored or reordered."""
    code, page, _ = audit(run_dir, "html")
    assert code == 1
    text = html.unescape(page)
    shown_key = "acc\\u202etxt.exe\\x1b]0;owned\\x07" + "".join(f"\\u{ord(c):04x}" for c in BIDI)
    assert shown_key in text
    assert 'self.log("acc", self.acc)\\x1b[2J\\u202e' in text  # the fix
    assert "because\\u2066 \\x1b[1m" in text  # the reason
    assert "run\\u202e1" in text  # the run's path
    assert "f1\\ud800x" in text


def test_prov_identifiers_of_a_lone_surrogate_key_are_percent_encoded(run_dir):
    """The surrogate key gets its own identifier (its UTF-8 bytes percent-encoded), distinct from a key that
    spells the escape out."""
    pytest.importorskip("prov")
    code, out, _ = audit(run_dir, "prov")
    assert code == 1
    entities = json.loads(out)["entity"]
    assert any("key.f1%ED%A0%80x" in name for name in entities)
