"""lmlogger with an MLflow tracking server: train, then audit the run through the server.

Run:  python examples/mlflow_server.py [--tracking-uri URI] [--workdir DIR] [--epochs N]

Without ``--tracking-uri`` the script starts a real ``mlflow server`` on 127.0.0.1 (a free port,
a SQLite store and an artifact folder in ``--workdir``), trains the quickstart model with
``VerifiedLogger(MLFlowLogger(...))``, audits ``runs:/<run_id>`` through the server, stops the
server, and prints how to audit the run again (from lmlogger's local copy, or through the same store
served again). In the MLflow UI the run carries the ``lmlogger.verdict`` tag, one tag per key, the
``lmlogger/reference/...`` metrics and the ``lmlogger/provenance.jsonl`` and ``lmlogger/report.html``
artifacts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator

from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import MLFlowLogger
from mlflow import MlflowClient
from quickstart import Classifier, data

import lmlogger
from lmlogger import VerifiedLogger


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(workdir: str, port: int | None = None, timeout: float = 120.0) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 for the duration of the block; yields its tracking URI."""
    port = port or free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{os.path.join(os.path.abspath(workdir), 'mlflow.db')}",
        "--artifacts-destination", os.path.join(os.path.abspath(workdir), "artifacts"),
    ]  # fmt: skip
    log = open(os.path.join(workdir, "mlflow-server.log"), "wb")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow server exited with code {server.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer on {uri} within {timeout:.0f} s; see {log.name}")
            time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def train(tracking_uri: str, epochs: int, workdir: str) -> str:
    """Train the quickstart model with a verified MLFlowLogger; return the MLflow run id.

    lmlogger keeps a local copy of the run's records under
    ``<default_root_dir>/lmlogger_mlflow/<experiment id>/<run id>``; here ``default_root_dir`` is ``workdir``.
    """
    seed_everything(0, verbose=False)
    logger = VerifiedLogger(
        MLFlowLogger(experiment_name="lmlogger-quickstart", tracking_uri=tracking_uri), on_mismatch="ignore"
    )
    trainer = Trainer(
        max_epochs=epochs,
        logger=logger,
        default_root_dir=workdir,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    trainer.fit(Classifier(), data())
    return logger.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=None, help="an MLflow server to use (default: start one)")
    parser.add_argument("--workdir", default=None, help="server store, artifacts and local run files (default: temp)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")

    workdir = args.workdir or tempfile.mkdtemp(prefix="lmlogger-mlflow-")
    os.makedirs(workdir, exist_ok=True)
    with contextlib.ExitStack() as stack:
        uri = args.tracking_uri
        if uri is None:
            uri = stack.enter_context(mlflow_server(workdir))
            print(f"mlflow server running at {uri} (store in {workdir})")
        run_id = train(uri, args.epochs, workdir)
        experiment_id = MlflowClient(uri).get_run(run_id).info.experiment_id
        print(f"\nMLflow run {run_id} at {uri}: the audit of runs:/{run_id} through the server")
        report = lmlogger.audit(f"runs:/{run_id}", tracking_uri=uri)
        print(report)
    local = os.path.join(workdir, "lmlogger_mlflow", experiment_id, run_id)
    print("\naudit again with:")
    print(f"  lmlogger audit {local}    # lmlogger's local copy of the run's records, no server needed")
    if args.tracking_uri is not None:
        print(f"  lmlogger audit runs:/{run_id} --tracking-uri {uri}")
    else:  # the server this script started is stopped now: say how to serve the same store again
        store = os.path.abspath(workdir)
        print(
            f"  mlflow server --port 5000 --backend-store-uri sqlite:///{os.path.join(store, 'mlflow.db')} "
            f"--artifacts-destination {os.path.join(store, 'artifacts')}    # then, while it runs:"
        )
        print(f"  lmlogger audit runs:/{run_id} --tracking-uri http://127.0.0.1:5000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
