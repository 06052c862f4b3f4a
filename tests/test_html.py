"""The HTML report: one self-contained page written beside the sidecar when a run ends, the same page from
`lmlogger audit --format html`, every string escaped, rendered by a real headless Chromium with JavaScript off."""

import html
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from helpers import KitchenSink, loader, seeded, trainer
from lightning.pytorch.loggers import TensorBoardLogger

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.audit import AuditReport, EpochReport, KeyReport, RunReport
from lmlogger.audit._html import to_html
from lmlogger.records._gap import format_gap


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-epoch fit with every provenance pattern, then a test stage, on a TensorBoardLogger."""
    tmp = tmp_path_factory.mktemp("html")
    seeded(0)
    logger = VerifiedLogger(TensorBoardLogger(str(tmp), name="html"), on_mismatch="ignore")
    t = trainer(logger, tmp, max_epochs=2)
    model = KitchenSink()
    t.fit(model, loader(), [loader(60, seed=1), loader(44, seed=2)])
    t.test(model, loader(50, seed=3))
    run_dir = logger.log_dir
    del logger
    return run_dir, tmp


def page_of(run_dir):
    with open(os.path.join(run_dir, "lmlogger", "report.html"), encoding="utf-8") as fh:
        return fh.read()


def test_the_run_writes_the_page_beside_the_sidecar_and_the_cli_prints_the_same(run):
    """`lmlogger/report.html` is there when the run ends; `lmlogger audit --format html` prints that page."""
    run_dir, _ = run
    page = page_of(run_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "lmlogger", "audit", run_dir, "--format", "html"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1  # the run has mismatches
    assert proc.stdout == page
    report = lmlogger.audit(run_dir)
    s = report.summary
    assert f"<title>lmlogger audit: {s['match']} match, {s['mismatch']} mismatch, {s['unverified']} unverified" in page
    for key in report.runs[0].keys:
        assert f'data-key="{html.escape(key.key)}"' in page, key.key
    assert report.runs[0].stages == ["fit", "test"]


def test_each_key_shows_its_worst_epoch_gap_chart_findings_and_fix(run):
    """The mismatched key's section names its worst epoch with both values and the gap, draws one chart with a
    legend, explains its finding and shows the fix;"""
    run_dir, _ = run
    page = page_of(run_dir)
    key = lmlogger.audit(run_dir).by_key()["f1_compute"]
    gaps = [abs(e.logged - e.reference) / abs(e.reference) for e in key.epochs]
    worst = key.epochs[gaps.index(max(gaps))]
    pattern = r'<section class="key-section is-mismatch"[^>]*data-key="f1_compute">(.*?)</section>'
    section = re.search(pattern, page, re.S)
    body = section.group(1)
    assert (
        f"Worst at train epoch {worst.epoch}: logged <strong>{worst.logged:.6g}</strong>, "
        f"reference <strong>{worst.reference:.6g}</strong>"
    ) in body
    assert body.count("<svg") == 1 and "logged (what the tracker shows)" in body and "reference (lmlogger)" in body
    assert body.count("<title>epoch ") == len([e for e in key.epochs if e.verdict == "mismatch"])  # ringed epochs
    assert "<code>running-value-averaged</code>: compute() logged from a step hook" in body
    assert html.escape(key.fix) in body


def test_mismatches_come_first_with_their_fix_in_the_top_table(run):
    """The page opens on what is wrong: the top table and the key sections list mismatches first, the top table
    carries each key's fix, and `AuditReport.to_html()` is the page the run saved."""
    run_dir, _ = run
    report = lmlogger.audit(run_dir)
    page = page_of(run_dir)
    assert report.to_html() == page
    order = {"mismatch": 0, "unverified": 1, "match": 2}
    sections = re.findall(r'<section class="key-section[^"]*" id="[^"]+" data-key="([^"]+)"', page)
    verdicts = [order.get(report.by_key()[html.unescape(k)].verdict or "", 3) for k in sections]
    assert verdicts == sorted(verdicts) and verdicts[0] == 0
    table = page[page.index("<tbody>") : page.index("</tbody>")]
    rows = table.split("<tr>")[1:]
    first = next(k for k in report.runs[0].keys if k.verdict == "mismatch" and k.fix)
    mismatched = [r for r in rows if "badge mismatch" in r]
    assert rows[: len(mismatched)] == mismatched  # every mismatch row before the others
    assert any(f"<code>{html.escape(first.fix)}</code>" in r for r in mismatched)


def test_chart_ticks_are_round_numbers_and_keys_break_only_between_parts():
    """The y axis is labelled with round values (0.4, 0.5, ...), not the data's extremes; a long key may break
    after `/`, `.`, `_` or `-`, never inside a word."""
    from lmlogger.audit._html import _key_name, nice_ticks

    ticks, low, high = nice_ticks(0.4513, 0.7431)
    assert [label for _, label in ticks] == ["0.4", "0.5", "0.6", "0.7", "0.8"]
    assert (low, high) == pytest.approx((0.4, 0.8))
    assert [label for _, label in nice_ticks(0.5700, 0.5776)[0]] == ["0.570", "0.572", "0.574", "0.576", "0.578"]
    assert [label for _, label in nice_ticks(-3.2, 41.0)[0]] == ["-10", "0", "10", "20", "30", "40", "50"]
    assert _key_name("val/f1_macro") == "val/<wbr>f1_<wbr>macro"
    assert _key_name("<b>") == "&lt;b&gt;"


def test_the_page_loads_nothing_and_runs_nothing(run):
    """No script, no stylesheet or image link, no remote URL: a CSP forbids every fetch anyway."""
    page = page_of(run[0])
    assert "default-src 'none'" in page
    lowered = page.lower()
    for bad in ("<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "onload", "javascript:"):
        assert bad not in lowered, bad
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}


def hostile_report():
    evil = '<script>alert("key")</script>&<b>'
    epoch = EpochReport(epoch=0, step=3, logged=0.5, reference=0.25, verdict="mismatch", reason="</td><img src=x>")
    key = KeyReport(
        key=evil,
        provenance="tensor<i>",
        hook="training_step",
        phase="train",
        reduce_fx="mean",
        on_step=False,
        on_epoch=True,
        sync_dist=False,
        batch_size=4,
        dataloader_idx=None,
        logged_keys=[evil],
        metric_attribute='x"><svg onload=alert(1)>',
        verdict="mismatch",
        findings=["batch-values-averaged"],
        fix='self.log("</pre><script>1</script>")',
        reason="<iframe>",
        epochs=[epoch],
    )
    run = RunReport(source="/tmp/<run>&", backend="csv", complete=False, status=None, stages=["fit"], keys=[key],
                    problems=["<marquee>store</marquee>"], versions={"<v>": "1"})  # fmt: skip
    return AuditReport(runs=[run]), evil


def test_every_string_from_the_run_is_escaped():
    """Keys, fixes, reasons, paths and problems from a (possibly hostile) sidecar never become markup."""
    report, evil = hostile_report()
    page = to_html(report)
    for raw in ("<script", "<img", "<iframe", "<marquee", "<svg onload", "<i>", "<b>", "<run>"):
        assert raw not in page, raw
    assert html.escape(evil) in page and "&lt;marquee&gt;store&lt;/marquee&gt;" in page
    assert "INCOMPLETE" in page


def dump_dom(path, tmp_path):
    """The DOM Chromium built. (`--dump-dom` reads it through a script of its own, so scripts stay on in the
    browser here; the page's own CSP, `default-src 'none'`, is what keeps any script in the page from running.)"""
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path}",
         "--disable-background-networking", "--dump-dom", f"file://{path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_chromium_renders_every_key_and_chart_with_scripts_blocked(run, tmp_path):
    """Headless Chromium: the page's CSP really blocks scripts (one slipped into a copy of the page does not run),
    and with no script the DOM holds every key and one chart per key with epochs; the page draws (a screenshot
    of a real, non-blank page)."""
    run_dir, _ = run
    path = os.path.join(run_dir, "lmlogger", "report.html")
    planted = tmp_path / "planted.html"
    planted.write_text(page_of(run_dir).replace("<body>", "<body><script>document.title = 'script ran'</script>"))
    assert "<title>lmlogger audit: " in dump_dom(planted, tmp_path / "profile-planted")
    dom = dump_dom(path, tmp_path / "profile")
    keys = lmlogger.audit(run_dir).runs[0].keys
    for key in keys:
        assert f'data-key="{html.escape(key.key)}"' in dom, key.key
    assert dom.count('<svg class="chart"') == len([k for k in keys if k.epochs])
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile-shot'}", "--window-size=1200,1500",
         f"--screenshot={shot}", f"file://{path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    for _ in range(100):  # the file can land a moment after the command returns
        if shot.exists() and shot.stat().st_size > 0:
            break
        time.sleep(0.1)
    assert proc.returncode == 0 and shot.stat().st_size > 50_000, proc.stderr[-2000:]


def test_chromium_keeps_hostile_keys_as_text(tmp_path):
    """A key made of markup stays text in the browser's DOM: no element is created from it."""
    report, evil = hostile_report()
    path = tmp_path / "hostile.html"
    path.write_text(to_html(report), encoding="utf-8")
    dom = dump_dom(path, tmp_path / "profile")
    assert "<script" not in dom.lower() and "<iframe" not in dom.lower() and "<marquee" not in dom.lower()
    assert html.escape(evil, quote=False) in dom


# -- the same run's TensorBoard views (read back with tensorboard's own reader) ---------------------------------
def tensorboard_views(run_dir):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.util import tensor_util

    texts, layouts = [], []
    for name in sorted(os.listdir(run_dir)):
        if not name.startswith("events.out.tfevents"):
            continue
        for event in EventFileLoader(os.path.join(run_dir, name)).Load():
            for v in event.summary.value:
                plugin = v.metadata.plugin_data.plugin_name
                if plugin == "text":
                    texts.append((event.step, v.tag, tensor_util.make_ndarray(v.tensor).item().decode()))
                elif plugin == "custom_scalars":
                    layout = layout_pb2.Layout()
                    layout.ParseFromString(tensor_util.make_ndarray(v.tensor).item())
                    layouts.append(layout)
    return texts, layouts


def test_tensorboard_text_shows_each_keys_worst_epoch_and_gap_with_fixes_below(run):
    """The TEXT tab's last table has six narrow columns, one row per key (mismatches first) with its verdict, the
    gap at its worst epoch, which epoch and both values (as the audit says); how each key was logged, its findings
    and its fix follow the table, one key per line, so no cell is wide enough for a word to break."""
    run_dir, _ = run
    texts, _ = tensorboard_views(run_dir)
    _, tag, table = texts[-1]
    assert tag == "lmlogger/verification/text_summary"  # what TensorBoard shows as the tag name
    head, _, details = table.partition(
        "\n\n**Per key**: provenance in hook; what the verdict vouches for; findings; fix\n\n"
    )
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ") for line in head.splitlines()[2:]}
    assert head.splitlines()[0] == "| key | verdict | gap | epoch | logged | reference |"
    report = lmlogger.audit(run_dir)
    key = report.by_key()["f1_compute"]
    gaps = [abs(e.logged - e.reference) / abs(e.reference) for e in key.epochs]
    worst = key.epochs[gaps.index(max(gaps))]
    _, verdict, gap, epoch, logged, reference = rows["f1_compute"]
    assert verdict == "**mismatch**"
    assert epoch == f"train {worst.epoch}"
    assert (float(logged), float(reference)) == pytest.approx((worst.logged, worst.reference), rel=1e-5)
    assert gap == format_gap(max(gaps))
    assert rows["f1_object"][1] == "match"
    verdicts = [cells[1].strip("*") for cells in rows.values()]
    assert verdicts == sorted(verdicts, key=lambda v: {"mismatch": 0, "unverified": 1, "match": 2}.get(v, 3))
    assert (
        f"* f1_compute: metric_compute in training_step; vouches for samples; running-value-averaged; "
        f"fix: `` {key.fix} ``" in details.splitlines()
    )
    assert "* f1_object: metric_object in training_step; vouches for samples" in details.splitlines()
    assert all(len(cell) <= 16 for row in rows.values() for cell in row[1:])  # narrow: no word breaks


def test_tensorboard_charts_name_both_lines_and_draw_the_gap_apart(run):
    """Custom scalars: each key's multi-line chart is titled with both tags it draws; a margin chart per key has
    the reference as its line and the logged value as the band's other edge."""
    run_dir, _ = run
    _, layouts = tensorboard_views(run_dir)
    categories = {c.title: c for c in layouts[-1].category}
    lines = {chart.title: list(chart.multiline.tag) for chart in categories["lmlogger: logged vs reference"].chart}
    assert lines["f1_compute (logged) vs lmlogger/reference/f1_compute (reference)"] == [
        "^f1_compute$",
        "^lmlogger/reference/f1_compute$",
    ]
    margins = {chart.title: chart.margin.series[0] for chart in categories["lmlogger: gap to the reference"].chart}
    series = margins["f1_compute: reference (line), gap to the logged value (band)"]
    assert (series.value, series.lower, series.upper) == (
        "lmlogger/reference/f1_compute",
        "f1_compute",
        "lmlogger/reference/f1_compute",
    )
    assert len(lines) == len(margins) == len([k for k in lmlogger.audit(run_dir).runs[0].keys if k.epochs])
