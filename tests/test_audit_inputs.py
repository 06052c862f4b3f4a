"""Untrusted input: every crafted run dir, sidecar, store file and option through the real CLI, in a subprocess
with a timeout. Each is exit 2 with one stderr line, or exit 0/1 with escaped output; never a traceback, a hang,
or a write outside the requested output."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import unicodedata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 60


def header(**changes):
    data = {
        "type": "header",
        "schema": 1,
        "stage": "fit",
        "logger": "CSVLogger",
        "run": {"name": "lightning_logs", "version": 0},
        "versions": {"lmlogger": "0.1.0"},
        "created": "2026-01-01T00:00:00+00:00",
        "options": {"rtol": 1e-4, "atol": 1e-6},
    }
    data.update(changes)
    return data


def prov(key, **changes):
    data = {
        "type": "provenance",
        "key": key,
        "name": key,
        "kind": "metric_compute",
        "hook": "training_step",
        "phase": "train",
        "on_step": False,
        "on_epoch": True,
        "reduce_fx": "mean",
        "sync_dist": False,
        "batch_size": 16,
        "batch_size_source": "inferred",
        "dataloader_idx": None,
        "logged_keys": [key],
        "metric_attribute": "f1",
    }
    data.update(changes)
    return data


def ver(key, epoch=0, logged=0.5, reference=0.6, verdict="mismatch", **changes):
    data = {
        "type": "verification",
        "key": key,
        "phase": "train",
        "epoch": epoch,
        "step": 5,
        "logged": logged,
        "reference": reference,
        "verdict": verdict,
        "findings": ["running-value-averaged"] if verdict == "mismatch" else [],
        "reason": None,
        "fix": f'self.log("{key}", self.f1, on_epoch=True, on_step=False)' if verdict == "mismatch" else None,
        "rtol_floor": 0.0,
    }
    data.update(changes)
    return data


CLOSE = {"type": "close", "stage": "fit", "status": "success", "closed": "2026-01-01T00:01:00+00:00"}


def lines(*records):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def run_dir(tmp, text=None, raw=None, name="run"):
    """A run dir holding a sidecar with ``text`` (or bytes ``raw``); returns the run dir."""
    path = tmp / name / "lmlogger" / "provenance.jsonl"
    path.parent.mkdir(parents=True)
    if raw is not None:
        path.write_bytes(raw)
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    return tmp / name


def good(*keys):
    return lines(header(), *(prov(k) for k in keys), *(ver(k) for k in keys), CLOSE)


# -- each case: (name, make(tmp) -> argv after "audit", expected exit code(s), text the output must hold) ----------
def fifo_source(tmp):
    os.mkfifo(tmp / "fifo")
    return [tmp / "fifo"]


def fifo_sidecar(tmp):
    path = tmp / "run" / "lmlogger" / "provenance.jsonl"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    return [tmp / "run"]


def dev_zero_sidecar(tmp):
    path = tmp / "run" / "lmlogger" / "provenance.jsonl"
    path.parent.mkdir(parents=True)
    os.symlink("/dev/zero", path)
    return [tmp / "run"]


def symlink_loop(tmp):
    path = tmp / "run" / "lmlogger" / "provenance.jsonl"
    path.parent.mkdir(parents=True)
    os.symlink(path, path)
    return [tmp / "run"]


def folder_symlink_loop(tmp):
    run_dir(tmp, good("f1"))
    os.symlink(tmp, tmp / "run" / "loop")  # os.walk must not follow it
    return [tmp]


def huge_line(tmp):
    d = run_dir(tmp, lines(header()))
    with open(d / "lmlogger" / "provenance.jsonl", "ab") as fh:
        fh.write(b'{"type": "provenance", "key": "' + b"x" * (3 << 20) + b'"}\n')
        fh.write(lines(prov("f1"), ver("f1"), CLOSE).encode())
    return [d]


def sparse_gigabyte(tmp):
    d = run_dir(tmp, lines(header()))
    with open(d / "lmlogger" / "provenance.jsonl", "ab") as fh:
        fh.truncate(fh.tell() + (1 << 30))  # a 1 GB line of NUL bytes, never ended
    return [d]


def mathtext_plot(tmp):
    return [run_dir(tmp, good("$\\foo{$")), "--plot", tmp / "out.png"]


def events_as_directory(tmp):
    d = run_dir(tmp, lines(header(logger="TensorBoardLogger"), prov("f1"), ver("f1"), CLOSE))
    (d / "events.out.tfevents.1.host.1.0").mkdir()
    return [d]


def corrupt_event_frame(tmp):
    d = run_dir(tmp, lines(header(logger="TensorBoardLogger"), prov("f1"), ver("f1"), CLOSE))
    frame = b"\x10\x05\x22\x7f"  # an Event at step 5 whose summary claims 127 bytes and has none
    (d / "events.out.tfevents.1.host.1.0").write_bytes(len(frame).to_bytes(8, "little") + b"\0" * 4 + frame + b"\0" * 4)
    return [d]


def metrics_csv(content):
    def make(tmp):
        d = run_dir(tmp, good("f1"))
        (d / "metrics.csv").write_bytes(content)
        return [d]

    return make


def folder_with_a_bad_run(tmp):
    run_dir(tmp, good("f1"), name="good")
    path = tmp / "bad" / "lmlogger" / "provenance.jsonl"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    return [tmp]


def escapes_in_strings(tmp):
    evil = "f1\x1b[2J\x1b]0;pwned\x07\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\\u202e\u200b"
    text = lines(
        header(),
        prov(evil),
        ver(evil, fix="\x1b[31mred fix\x1b[0m", reason="\x9b2J"),
        prov("recall[cat]"),
        ver("recall[cat]", verdict="match", logged=0.5, reference=0.5),
        prov("[/]"),
        ver("[/]", verdict="match", logged=0.5, reference=0.5),
        CLOSE,
    )
    return [run_dir(tmp, text)]


def markdown_injection(tmp):
    evil = "a`|<img src=x onerror=alert(1)>\n# title [link](http://evil) @someone"
    return [run_dir(tmp, good(evil)), "--format", "markdown"]


def odd_unicode(tmp):
    keys = ["f1_\u00e9", "\u65e5\u672c", "\U0001f600", "e\u0301", "\ufeffbom", "\u2028sep", "\ud7ff"]
    return [run_dir(tmp, good(*keys))]


def sqlite_typo(tmp):
    return ["runs:/abc", "--tracking-uri", "sqlite:///typo.db"]


CASES = [
    # (id, make, exit codes, text in stderr (exit 2) or stdout (exit 0/1))
    ("missing", lambda t: [t / "missing"], {2}, "no such file or directory"),
    ("fifo-source", fifo_source, {2}, "FIFO"),
    ("fifo-sidecar", fifo_sidecar, {2}, "not a regular file (a FIFO)"),
    ("dev-zero-sidecar", dev_zero_sidecar, {2}, "a character device"),
    ("symlink-loop", symlink_loop, {2}, "symbolic links"),
    ("folder-symlink-loop", folder_symlink_loop, {1}, "1 mismatch"),
    ("zero-byte", lambda t: [run_dir(t, "")], {2}, "empty sidecar"),
    ("only-newlines", lambda t: [run_dir(t, "\n\n")], {2}, "empty sidecar"),
    ("bom", lambda t: [run_dir(t, raw=b"\xef\xbb\xbf" + good("f1").encode())], {1}, "1 mismatch"),
    ("nul-line", lambda t: [run_dir(t, raw=good("f1").encode().replace(b"\n", b"\n\x00\x00\n", 1))], {1}, "skipped"),
    ("binary", lambda t: [run_dir(t, raw=b"\x00\xff\xfe garbage\n")], {2}, "corrupt sidecar"),
    ("no-header", lambda t: [run_dir(t, lines(prov("f1")))], {2}, "does not start with a header"),
    ("newer-schema", lambda t: [run_dir(t, lines(header(schema=99)))], {2}, "schema version 99 is newer"),
    (
        "nan-constant",
        lambda t: [run_dir(t, lines(header()) + '{"type": "verification", "logged": NaN}\n')],
        {2},
        "line 2",
    ),
    (
        "epoch-1e999",
        lambda t: [run_dir(t, lines(header(), prov("f1"), ver("f1", epoch=1e999)).replace("Infinity", "1e999"))],
        {2},
        "'epoch' must be int",
    ),
    (
        "logged-1e999",
        lambda t: [
            run_dir(t, lines(header(), prov("f1"), ver("f1", logged=1e999), CLOSE).replace("Infinity", "1e999"))
        ],
        {1},
        "inf",
    ),
    (
        "huge-int",
        lambda t: [run_dir(t, lines(header(), prov("f1")) + '{"type": "verification", "epoch": ' + "9" * 5000 + "}\n")],
        {2},
        "line 3",
    ),
    (
        "deep-nesting",
        lambda t: [run_dir(t, lines(header()) + "[" * 100000 + "]" * 100000 + "\n")],
        {2},
        "nested deeper",
    ),
    ("key-not-string", lambda t: [run_dir(t, lines(header(), prov(5)))], {2}, "'key' must be str"),
    ("header-run-not-object", lambda t: [run_dir(t, lines(header(run="x")))], {2}, "'run' must be dict"),
    ("header-rtol-text", lambda t: [run_dir(t, lines(header(options={"rtol": "a"})))], {2}, "options.rtol"),
    ("header-versions-nested", lambda t: [run_dir(t, lines(header(versions={"torch": {"a": 1}})))], {2}, "versions"),
    ("verdict-unknown", lambda t: [run_dir(t, lines(header(), ver("f1", verdict="great")))], {2}, "verdict"),
    ("unknown-record-type", lambda t: [run_dir(t, good("f1") + lines({"type": "from-the-future"}))], {1}, "1 mismatch"),
    ("truncated-last-line", lambda t: [run_dir(t, good("f1")[:-20])], {1}, "INCOMPLETE"),
    ("huge-line", huge_line, {1}, "longer than the 1048576-byte limit"),
    ("sparse-gigabyte-line", sparse_gigabyte, {0}, "INCOMPLETE"),
    ("events-directory", events_as_directory, {2}, "not a regular file (a directory)"),
    ("events-corrupt-frame", corrupt_event_frame, {2}, "corrupt TensorBoard event file"),
    ("csv-not-a-number", metrics_csv(b"step,f1\n5,abc\n"), {2}, "'abc' is not a number"),
    ("csv-bad-utf8", metrics_csv(b"step,f1\n5,\xff\xfe\n"), {2}, "not UTF-8"),
    ("csv-oversized-field", metrics_csv(b"step,f1\n5," + b"1" * 300000 + b"\n"), {2}, "metrics.csv"),
    ("csv-nul", metrics_csv(b"step,f1\n5,0.5\x00\n"), {2}, "metrics.csv"),
    ("folder-with-a-bad-run", folder_with_a_bad_run, {2}, "not a regular file (a FIFO)"),
    ("escapes", escapes_in_strings, {1}, "\\x1b[2J"),
    ("markdown-injection", markdown_injection, {1}, "``a`\\|<img src=x"),
    ("odd-unicode", odd_unicode, {1}, "\\u2028sep"),
    ("plot-mathtext-key", mathtext_plot, {1}, "1 mismatch"),
    ("plot-to-directory", lambda t: [run_dir(t, good("f1")), "--plot", t], {2}, "--plot"),
    ("plot-unwritable", lambda t: [run_dir(t, good("f1")), "--plot", "/proc/lmlogger-test.png"], {2}, "cannot write"),
    ("rtol-nan", lambda t: [run_dir(t, good("f1")), "--rtol", "nan"], {2}, "finite number"),
    ("rtol-negative", lambda t: [run_dir(t, good("f1")), "--rtol", "-1"], {2}, "finite number"),
    ("sqlite-typo", sqlite_typo, {2}, "no MLflow database"),
    ("file-store-typo", lambda t: ["runs:/abc", "--tracking-uri", f"file://{t}/nowhere"], {2}, "no MLflow file store"),
]


def snapshot(root):
    """Every path below ``root`` with its type, size and mtime (symlinks and FIFOs are not followed or opened)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            seen[path] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns)
    return seen


def hidden_characters(text):
    return [ch for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co")]


@pytest.mark.parametrize("name, make, codes, expected", CASES, ids=[c[0] for c in CASES])
def test_crafted_input(tmp_path, name, make, codes, expected):
    source = tmp_path / "source"
    source.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = [str(a) for a in make(source)]
    before = snapshot(source)
    proc = subprocess.run(
        [sys.executable, "-m", "lmlogger", "audit", *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TIMEOUT,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": ROOT, "MLFLOW_TRACKING_URI": ""},
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in codes, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    written = {p for p in snapshot(source)} - set(before)
    if "--plot" in args and proc.returncode != 2:
        assert written == {str(source / "out.png")}
    else:
        assert snapshot(source) == before  # nothing written, nothing touched
    assert os.listdir(cwd) == []  # no typo.db, no mlruns/
    err_lines = proc.stderr.splitlines()
    if proc.returncode == 2:
        assert err_lines and all(line.startswith("lmlogger") and ": error: " in line for line in err_lines)
        if name != "folder-with-a-bad-run":
            assert len(err_lines) == 1 and proc.stdout == "", proc.stderr
        else:
            assert "1 mismatch" in proc.stdout and "could not be read" in proc.stdout
        assert expected in proc.stderr
    else:
        assert proc.stderr == ""
        assert expected in proc.stdout
        assert hidden_characters(proc.stdout) == []  # no escape sequence, no bidi override reaches the terminal
    assert hidden_characters(proc.stderr.replace("\n", "")) == []


def test_markdown_cells_stay_cells(tmp_path):
    """A key with a backtick, pipes, HTML and a newline stays inside its cell, as text."""
    evil = "a`|<img src=x onerror=alert(1)>\n# title [link](http://evil) @someone|"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmlogger",
            "audit",
            str(run_dir(tmp_path, good(evil, "ok|key"))),
            "--format",
            "markdown",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 1, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 3  # header + two keys: the newline did not start a new line
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 12  # 11 cells: no unescaped pipe inside a cell
    (evil_row,) = [row for row in rows if "img" in row]
    for cell in (evil_row.split(" | ")[0][2:], evil_row.split(" | ")[-1][:-2]):  # the key and the fix
        fence = re.match(r"`+", cell).group(0)  # a code span, literal: no HTML, links or mentions render
        assert cell.endswith(fence) and fence not in cell[len(fence) : -len(fence)], cell
        assert "\\x0a" in cell and "\n" not in cell
    assert "`ok\\|key`" in proc.stdout  # a plain key stays a code span


def test_rich_table_renders_markup_like_keys_verbatim(tmp_path):
    """On a terminal (rich), `recall[cat]` shows as itself and `[/]` does not crash."""
    pytest.importorskip("rich")
    import io

    from rich.console import Console

    import lmlogger
    from lmlogger.audit._render import rich_renderable

    report = lmlogger.audit(run_dir(tmp_path, good("recall[cat]", "[/]", "[bold]x[/bold]", ":smile:")))
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=True, color_system=None).print(rich_renderable(report))
    text = out.getvalue()
    for key in ("recall[cat]", "[/]", "[bold]x[/bold]", ":smile:"):
        assert key in text


def test_unreadable_folder_inside_a_folder_audit_is_named(tmp_path):
    """An unreadable run dir below the audited folder is named and the exit code is 2 (skipped as root, where
    permissions do not apply)."""
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    run_dir(tmp_path, good("f1"), name="good")
    bad = run_dir(tmp_path, good("f1"), name="bad")
    os.chmod(bad, 0)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lmlogger", "audit", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
    finally:
        os.chmod(bad, 0o755)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}: cannot read the folder" in proc.stderr


def test_copy_of_source_is_left_alone(tmp_path):
    """Auditing never writes beside the run (no cache, no lock, no report)."""
    d = run_dir(tmp_path, good("f1"))
    before = snapshot(tmp_path)
    for fmt in ("table", "json", "markdown"):
        subprocess.run(
            [sys.executable, "-m", "lmlogger", "audit", str(d), "--format", fmt],
            capture_output=True,
            timeout=TIMEOUT,
            env={**os.environ, "PYTHONPATH": ROOT},
            check=False,
        )
    assert snapshot(tmp_path) == before
    shutil.rmtree(d)
