"""The docs' images come from scripts in the repo, the scripts run, and the site builds strictly."""

import glob
import os
import re
import shutil
import struct
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
SCRIPTS = os.path.join(DOCS, "scripts")


def png_size(path):
    """(width, height) of a PNG file; fails on anything that is not one."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def run_script(cwd, *args, timeout=600):
    proc = subprocess.run([sys.executable, *args], cwd=str(cwd), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_every_image_in_the_docs_is_made_by_a_script():
    """Each PNG the pages show exists in docs/img and is written by make_chart.py or screenshots.py."""
    scripts = ""
    for path in glob.glob(os.path.join(SCRIPTS, "*.py")):
        with open(path) as fh:
            scripts += fh.read()
    shown = set()
    for page in glob.glob(os.path.join(DOCS, "*.md")):
        with open(page) as fh:
            shown |= set(re.findall(r"\(img/([\w.-]+\.png)\)", fh.read()))
    assert {"pitfall.png", "tensorboard-custom-scalars.png", "mlflow-run.png"} <= shown
    for name in shown:
        assert os.path.isfile(os.path.join(DOCS, "img", name)), name
        assert f'"{name}"' in scripts, f"{name} is not written by a script in docs/scripts"
        width, height = png_size(os.path.join(DOCS, "img", name))
        assert width >= 800 and height >= 400, name


def test_make_chart_draws_a_real_run(tmp_path):
    """make_chart.py trains the quickstart model and writes the chart where it is told."""
    out = tmp_path / "pitfall.png"
    text = run_script(tmp_path, os.path.join(SCRIPTS, "make_chart.py"), "--out", str(out), "--epochs", "2")
    assert f"wrote {out}" in text
    width, height = png_size(out)
    assert (width, height) == png_size(os.path.join(DOCS, "img", "pitfall.png"))  # same figure as committed
    assert out.stat().st_size > 20_000  # a drawn chart, not an empty canvas


@pytest.mark.slow
def test_screenshots_from_real_tensorboard_and_mlflow(tmp_path):
    """screenshots.py starts TensorBoard and an MLflow server and shoots every view with headless Chromium."""
    if not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    out = tmp_path / "img"
    text = run_script(tmp_path, os.path.join(SCRIPTS, "screenshots.py"), "--out", str(out), "--workdir",
                      str(tmp_path / "work"), "--epochs", "1")  # fmt: skip
    expected = {
        "tensorboard-custom-scalars.png",
        "tensorboard-text.png",
        "mlflow-run.png",
        "mlflow-metrics.png",
        "mlflow-artifact.png",
        "mlflow-search.png",
        "html-report.png",
    }
    assert {p.name for p in out.iterdir()} == expected
    for name in expected:
        assert name in text
        width, _ = png_size(out / name)
        # a rendered page, not a blank one (the HTML report is shot at a 1200-pixel reading width)
        assert width >= (1200 if name == "html-report.png" else 1400) and (out / name).stat().st_size > 30_000, name


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The site as `mkdocs build --strict` makes it (built once for this module)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site = tmp_path_factory.mktemp("docs") / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return site


def test_docs_build_strictly(built_site):
    """`mkdocs build --strict` passes: no broken link, no missing page, the API page made from docstrings."""
    api = (built_site / "api" / "index.html").read_text()
    for name in ("VerifiedLogger", "assert_verified", "AuditReport", "to_prov_json"):
        assert name in api, name
    assert "Wrap a Lightning logger so that every epoch value it receives is verified." in api


def test_api_page_shows_no_raw_sphinx_markup(built_site):
    """The API page is made from Google-style docstrings: no raw roles, no literal `Example::`, no constant names
    where a default value belongs, and the examples render as code."""
    api = (built_site / "api" / "index.html").read_text()
    for raw in (":class:", ":func:", ":meth:", ":mod:", ":attr:", "Example::", "DEFAULT_RTOL", "DEFAULT_ATOL"):
        assert raw not in api, raw
    assert "<code>0.0001</code>" in api and "<code>1e-06</code>" in api  # rtol and atol defaults, as numbers
    assert "reference_prefix" in api
    assert api.count('<details class="example" open>') >= 4  # each Example section, its code highlighted
