"""Screenshots of lmlogger's views in a real TensorBoard and a real MLflow UI, taken with headless Chromium.

Run:  python docs/scripts/screenshots.py [--out docs/img] [--workdir DIR] [--epochs N]

Needs Debian's chromium (``apt-get install chromium``), tensorboard and mlflow. The script

1. trains ``examples/quickstart.py``'s model with ``VerifiedLogger(TensorBoardLogger(...))``, starts
   ``tensorboard --logdir`` on 127.0.0.1 and shoots the custom-scalars chart and the text table, then
   the HTML report the run wrote (``lmlogger/report.html``, opened from disk);
2. starts ``mlflow server`` on 127.0.0.1 (``examples/mlflow_server.py``), trains the same model with
   ``VerifiedLogger(MLFlowLogger(...))`` and shoots the run's tags, its metrics, a search of runs by
   ``lmlogger.verdict`` and the sidecar artifact (the tree lists ``lmlogger/report.html`` beside it).

Both UIs keep some view settings in the browser's localStorage (TensorBoard's "ignore outliers",
MLflow's workflow type and assistant panel). Before each server starts, a throwaway page served on
the same 127.0.0.1 port writes those settings into the Chromium profile the screenshots use.
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))

import mlflow_server  # noqa: E402  (examples/mlflow_server.py)
import quickstart  # noqa: E402  (examples/quickstart.py)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("screenshots.py needs Chromium: apt-get update && apt-get install -y chromium")


class Browser:
    """Headless Chromium with one profile (its localStorage is shared by every shot)."""

    def __init__(self, profile: str, budget_ms: int = 20000) -> None:
        self.binary = chromium()
        self.profile = profile
        self.budget_ms = budget_ms

    def shoot(
        self,
        url: str,
        path: str,
        size: tuple[int, int] = (1400, 900),
        budget_ms: int | None = None,
        quiet: bool = False,
    ) -> None:
        command = [
            self.binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms or self.budget_ms}",
            f"--screenshot={path}",
            url,
        ]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=420)
        if proc.returncode != 0 or not os.path.isfile(path):
            raise RuntimeError(f"chromium failed on {url}:\n{proc.stderr[-2000:]}")
        if not quiet:
            print(f"  {os.path.relpath(path, ROOT)}  <-  {url}")

    def seed_local_storage(self, port: int, items: dict[str, str]) -> None:
        """Write ``items`` into localStorage of http://127.0.0.1:PORT, before the real server takes the port."""
        page = "<script>{}</script>ok".format(
            "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in items.items())
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                self.shoot(f"http://127.0.0.1:{port}/", os.path.join(tmp, "seed.png"), (200, 100), 1000, quiet=True)
        finally:
            server.shutdown()
            server.server_close()


def wait_for(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:4]} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def tensorboard(logdir: str, port: int, log_path: str) -> Iterator[str]:
    """A real ``tensorboard --logdir`` on 127.0.0.1:PORT for the duration of the block."""
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            uri = f"http://127.0.0.1:{port}"
            wait_for(f"{uri}/data/environment", process)
            yield uri
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def tensorboard_shots(browser: Browser, workdir: str, out: str, epochs: int) -> None:
    logdir = os.path.join(workdir, "tensorboard")
    quickstart.main(["--logdir", logdir, "--epochs", str(epochs)])
    port = mlflow_server.free_port()
    browser.seed_local_storage(port, {"_ignoreYOutliers": "false"})  # show every point: no outlier clipping
    with tensorboard(logdir, port, os.path.join(workdir, "tensorboard.log")) as uri:
        charts = os.path.join(out, "tensorboard-custom-scalars.png")
        browser.shoot(f"{uri}/#custom_scalars&_smoothingWeight=0", charts, (1400, 1300))
        browser.shoot(f"{uri}/#text", os.path.join(out, "tensorboard-text.png"), (1600, 900))
    # the page lmlogger wrote beside the sidecar when the run ended, opened from disk
    report = os.path.join(logdir, "quickstart", "version_0", "lmlogger", "report.html")
    browser.shoot(f"file://{report}", os.path.join(out, "html-report.png"), (1200, 1500))


def mlflow_shots(browser: Browser, workdir: str, out: str, epochs: int) -> None:
    from mlflow import MlflowClient

    store = os.path.join(workdir, "mlflow")
    os.makedirs(store, exist_ok=True)
    port = mlflow_server.free_port()
    browser.seed_local_storage(
        port,
        {
            "mlflow.workflowType_v1": json.dumps("machine_learning"),
            "mlflow.assistant.panelOpen_v1": "false",
            "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
        },
    )
    with mlflow_server.mlflow_server(store, port=port, timeout=300) as uri:  # a loaded machine starts it slowly
        run_id = mlflow_server.train(uri, epochs, store)
        experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
        run = f"{uri}/#/experiments/{experiment}/runs/{run_id}"
        browser.shoot(run, os.path.join(out, "mlflow-run.png"), (1400, 1100))
        # the metric charts load lazily: give them more (virtual) time than the other pages
        browser.shoot(f"{run}/model-metrics", os.path.join(out, "mlflow-metrics.png"), (1400, 1100), budget_ms=45000)
        browser.shoot(f"{run}/artifacts/lmlogger/provenance.jsonl", os.path.join(out, "mlflow-artifact.png"))
        search = urllib.parse.quote("tags.`lmlogger.verdict` = 'mismatch'")
        browser.shoot(
            f"{uri}/#/experiments/{experiment}/runs?searchFilter={search}", os.path.join(out, "mlflow-search.png")
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "img"), help="where the PNGs go")
    parser.add_argument("--workdir", default=None, help="runs, stores and the browser profile (default: temp)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", choices=("tensorboard", "mlflow"), default=None)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix="lmlogger-screenshots-")
    browser = Browser(os.path.join(workdir, "chromium-profile"))
    if args.only in (None, "tensorboard"):
        tensorboard_shots(browser, workdir, args.out, args.epochs)
    if args.only in (None, "mlflow"):
        mlflow_shots(browser, workdir, args.out, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
