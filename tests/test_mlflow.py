"""MLflow: tags a person reads and searches, reference metric history, the sidecar artifact, audits of
``runs:/`` IDs, odd keys, and a tracking server that dies mid-run surfacing exactly as without lmlogger.

Everything is read back through ``MlflowClient`` from a real ``mlflow server`` (sqlite backend, artifacts in a
temp dir), a ``sqlite:`` store and a ``file:`` store. Ground truth comes from ``model.rec`` (every prediction).
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from helpers import KitchenSink, accuracy, f1, loader, precision, seeded, trainer
from lightning.pytorch import Callback
from lightning.pytorch.loggers import MLFlowLogger

import lmlogger
from lmlogger import VerifiedLogger
from lmlogger.audit._escape import markdown_code
from lmlogger.cli import main as cli_main
from lmlogger.records._gap import format_gap

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import Metric  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.validation import validate_param_and_metric_name  # noqa: E402

EPOCHS = 2
ARTIFACT = "lmlogger/provenance.jsonl"


# -- a real tracking server --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` on 127.0.0.1 and a free port: sqlite backend, artifacts in ``root``."""

    def __init__(self, root: Any) -> None:
        os.makedirs(root, exist_ok=True)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = os.path.join(root, "server.log")
        command = [
            os.path.join(os.path.dirname(sys.executable), "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{os.path.join(root, 'mlflow.db')}",
            "--artifacts-destination",
            os.path.join(root, "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log, "w") as log:
            # its own process group: the server's workers go down with it
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
            )
        deadline = time.monotonic() + 180  # CPU-starved machines take 20+ s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self._tail()}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not answer /health within 180 s:\n{self._tail()}")
            time.sleep(0.5)

    def _tail(self) -> str:
        with open(self.log) as fh:
            return fh.read()[-3000:]

    def kill(self) -> None:
        """Down at once, as in a crash; returns once the port refuses connections (the workers are gone too)."""
        self.stop(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # let pooled client connections see the close, so every run meets the same refusal

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    yield server.uri
    server.stop()


# -- models ----------------------------------------------------------------------------------------------
class RightPatterns(KitchenSink):
    """Only right patterns: metric objects, a loss, compute() at epoch end followed by reset()."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        p = logits.sigmoid().detach()
        self.rec.add(self._phase_key("train"), p, y)
        self.f1_o.update(p, y)
        self.log("f1_object", self.f1_o, on_step=False, on_epoch=True)
        self.log("loss", loss, on_step=True, on_epoch=True)
        return loss

    def on_validation_epoch_end(self):
        self.log("val_f1_end", self.val_f1_end.compute())
        self.val_f1_end.reset()


class OddKeys(KitchenSink):
    """Keys MLflow does not take as they are: `@` and `:`, and a 240-character key (its reference has 259)."""

    LONG = "k" * 240

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("val/f1@dl:0", self.f1_o, on_step=False, on_epoch=True)
        self.log(self.LONG, loss, on_step=False, on_epoch=True)
        return loss


class TooLong(KitchenSink):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("k" * 300, loss, on_step=False, on_epoch=True)
        return loss


@dataclass
class Trained:
    model: Any
    run_id: str
    experiment_id: str
    run_dir: str
    sidecar: str
    warnings: list[str]


def lml_warnings(record: list) -> list[str]:
    return [str(w.message) for w in record if str(w.message).startswith("lmlogger:")]


def train(
    module_cls, uri, tmp, experiment, artifact_location=None, epochs=EPOCHS, test=False, **logger_kwargs
) -> Trained:
    seeded(0)
    model = module_cls()
    mlf = MLFlowLogger(
        tracking_uri=uri, experiment_name=experiment, artifact_location=artifact_location, **logger_kwargs
    )
    logger = VerifiedLogger(mlf, on_mismatch="ignore")
    t = trainer(logger, tmp, max_epochs=epochs)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        t.fit(model, loader(), [loader(60, seed=1), loader(44, seed=2)])
        if test:  # a second stage on the same MLflow run
            t.test(model, loader(50, seed=3))
    trained = Trained(
        model,
        mlf.run_id,
        mlf.experiment_id,
        os.path.dirname(os.path.dirname(logger.sidecar_path)),
        logger.sidecar_path,
        lml_warnings(record),
    )
    del logger
    return trained


@dataclass
class Scenario:
    backend: str
    uri: str
    client: Any
    experiment_id: str
    artifact_location: str | None
    wrong: Trained
    right: Trained
    tmp: Any


@pytest.fixture(scope="module", params=["server", "sqlite", "file"])
def scenario(request, tmp_path_factory):
    """One run with wrong (and right) patterns, fit then test, and one with right patterns only, in a fresh
    experiment."""
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"mlflow-{backend}")
    patch = pytest.MonkeyPatch()
    artifact_location = None
    if backend == "server":
        uri = request.getfixturevalue("mlflow_server")
    elif backend == "sqlite":
        uri, artifact_location = f"sqlite:///{tmp}/mlflow.db", str(tmp / "artifacts")
    else:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 keeps the file store behind this switch
        uri = f"file:{tmp}/mlruns"
    experiment = f"lmlogger-{backend}-{uuid.uuid4().hex[:8]}"
    wrong = train(KitchenSink, uri, tmp / "wrong", experiment, artifact_location, test=True)
    right = train(RightPatterns, uri, tmp / "right", experiment, artifact_location)
    yield Scenario(backend, uri, MlflowClient(uri), wrong.experiment_id, artifact_location, wrong, right, tmp)
    patch.undo()


def history(client, run_id, key):
    return sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)


# -- 1. what a person sees in the MLflow UI ---------------------------------------------------------------------
def key_fields(tags, metric):
    """The fields of ``lmlogger.key.<metric>``: verdict, provenance, findings, then the worst epoch, fix, ..."""
    return tags[f"lmlogger.key.{metric}"].split("|")


def test_run_tag_and_one_tag_per_key_carry_verdict_provenance_and_the_worst_gap(scenario):
    """`lmlogger.verdict` is the run's worst verdict; each key has one tag, `verdict|provenance|findings|worst
    epoch and its gap|samples|fix`, and nothing else per key crowds the run page."""
    client, wrong = scenario.client, scenario.wrong
    tags = client.get_run(wrong.run_id).data.tags
    assert tags["lmlogger.verdict"] == "mismatch"
    assert client.get_run(scenario.right.run_id).data.tags["lmlogger.verdict"] == "match"
    verdict, provenance, findings, vouches, worst, samples, fix = key_fields(tags, "f1_compute")
    assert (verdict, provenance, findings) == ("mismatch", "metric_compute", "running-value-averaged")
    assert vouches == "vouches for samples"  # the reference is the metric over the epoch's samples
    # the fix is the audit's; the worst epoch is named with its values and gap, and they are the audit's
    local = lmlogger.audit(wrong.run_dir)
    assert fix == f"fix: {local.by_key()['f1_compute'].fix}"
    assert samples == "samples: 92 (0 repeated) of a dataset of 92"  # every training sample, counted once
    assert fix.startswith('fix: self.log("f1_compute", self.f1_c, on_epoch=True, on_step=False)')
    epochs = local.by_key()["f1_compute"].epochs
    gaps = [abs(e.logged - e.reference) / abs(e.reference) for e in epochs]
    worst_epoch = epochs[gaps.index(max(gaps))]
    assert worst.startswith(f"worst train epoch {worst_epoch.epoch} (step {worst_epoch.step}): ")
    assert f"logged {worst_epoch.logged:.6g}, reference {worst_epoch.reference:.6g}" in worst
    assert worst.endswith(f"({format_gap(max(gaps))} apart)")
    assert key_fields(tags, "f1_object")[:3] == ["match", "metric_object", "-"]
    assert key_fields(tags, "val_acc/dataloader_idx_1")[0] == "match"
    assert key_fields(tags, "test_f1_compute")[0] == "mismatch"  # from trainer.test on the same run
    assert key_fields(tags, "test_f1")[0] == "match"
    assert tags["lmlogger.sidecar"] == ARTIFACT
    # the tags say what the audit says, key by key: one tag per key, three for the run
    for key in local.runs[0].keys:
        assert key_fields(tags, key.key)[0] == (key.verdict or "step-only"), key.key
        assert key_fields(tags, key.key)[2] == (",".join(sorted(key.findings)) or "-"), key.key
    ours = [k for k in tags if k.startswith("lmlogger.")]
    assert len(ours) == 3 + len(local.runs[0].keys)
    s = local.summary
    plain = local.matched_reduction_only  # e.g. "5 match (3 of them only the reduction), ..." as the audit says it
    assert plain > 0 and f"{plain} of them only the reduction" in tags["lmlogger.summary"]
    assert tags["lmlogger.summary"].startswith(f"{s['match']} match (")
    assert f"), {s['mismatch']} mismatch, 0 unverified" in tags["lmlogger.summary"]
    assert tags["lmlogger.summary"].endswith(f"(lmlogger {lmlogger.__version__})")


def test_run_description_holds_every_keys_verdict_mismatches_first(scenario):
    """The run page's description (`mlflow.note.content`, markdown) is the audit table: one row per key with the
    verdict the audit gives, mismatches first, the gap as everywhere else, and each mismatch's fix."""
    client, wrong = scenario.client, scenario.wrong
    note = client.get_run(wrong.run_id).data.tags["mlflow.note.content"]
    local = lmlogger.audit(wrong.run_dir)
    s = local.summary
    assert note.startswith(f"## lmlogger: {s['match']} match, {s['mismatch']} mismatch, {s['unverified']} unverified")
    rows = {}
    for line in note.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `"):
            rows[cells[0].strip("`")] = cells
    assert set(rows) == {k.key for k in local.runs[0].keys}
    verdicts = [cells[1].strip("*") for cells in rows.values()]
    assert verdicts == sorted(verdicts, key=lambda v: {"mismatch": 0, "unverified": 1, "match": 2}.get(v, 3))
    for key in local.runs[0].keys:
        cells = rows[key.key]
        assert cells[1].strip("*") == (key.verdict or "step only"), key.key
        if key.verdict in ("match", "mismatch"):
            assert cells[2] == format_gap(key.worst_epoch()[1]), key.key
        if key.fix:
            assert f"- {markdown_code(key.key, in_table=False)}: fix {markdown_code(key.fix, in_table=False)}" in note
    assert f"`lmlogger audit runs:/{wrong.run_id}`" in note


def test_no_tag_or_param_holds_a_path_of_the_training_machine(scenario):
    """A shared server learns nothing of the training machine's file system from lmlogger: no tag lmlogger writes
    and no param holds a local path (the local copy is named in the log line only)."""
    client, wrong = scenario.client, scenario.wrong
    data = client.get_run(wrong.run_id).data
    ours = {k: v for k, v in data.tags.items() if k.startswith("lmlogger.") or k == "mlflow.note.content"}
    assert "lmlogger.sidecar.local" not in ours
    local = str(scenario.tmp)
    for name, value in [*ours.items(), *data.params.items()]:
        assert local not in value and os.path.abspath(wrong.run_dir) not in value, name


def test_reference_metric_history_is_the_true_epoch_value_at_its_step(scenario):
    """`lmlogger/reference/<key>` keeps one value per epoch, at the epoch value's step, equal to the truth."""
    client, wrong = scenario.client, scenario.wrong
    rec = wrong.model.rec
    cases = [("f1_compute", f1, 0), ("f1_object", f1, 0), ("prec_forward", precision, 0), ("acc_forward", accuracy, 0)]
    for key, fn, dl in cases:
        logged = history(client, wrong.run_id, key)
        reference = history(client, wrong.run_id, f"lmlogger/reference/{key}")
        assert [m.step for m in reference] == [m.step for m in logged], key
        assert len(reference) == EPOCHS
        for epoch, metric in enumerate(reference):
            assert metric.value == pytest.approx(rec.true(fn, ("train", epoch, dl)), rel=1e-5), key
    for dl in (0, 1):
        reference = history(client, wrong.run_id, f"lmlogger/reference/val_acc/dataloader_idx_{dl}")
        assert [m.value for m in reference] == pytest.approx(
            [rec.true(accuracy, ("val", e, dl)) for e in range(EPOCHS)], rel=1e-5
        )


def test_sidecar_is_an_artifact_and_a_local_file(scenario):
    """The artifact `lmlogger/provenance.jsonl` is the local sidecar, byte for byte; both stay."""
    client, wrong = scenario.client, scenario.wrong
    assert [a.path for a in client.list_artifacts(wrong.run_id, "lmlogger")] == [ARTIFACT, "lmlogger/report.html"]
    downloaded = client.download_artifacts(wrong.run_id, ARTIFACT, str(scenario.tmp / f"dl-{uuid.uuid4().hex}"))
    with open(downloaded, "rb") as a, open(wrong.sidecar, "rb") as b:
        assert a.read() == b.read()
    # <default_root_dir>/lmlogger_mlflow/<experiment id>/<run id>: a folder named for what it holds
    home = os.path.join(str(scenario.tmp / "wrong"), "lmlogger_mlflow")
    assert wrong.run_dir == os.path.join(home, wrong.experiment_id, wrong.run_id)
    assert os.listdir(home) == [wrong.experiment_id]
    assert len(lmlogger.audit(wrong.run_dir).runs) == 1
    with open(wrong.sidecar) as fh:
        header = json.loads(fh.readline())
    assert header["run"]["run_id"] == wrong.run_id and header["run"]["experiment_id"] == wrong.experiment_id
    assert lmlogger.audit(wrong.run_dir).runs[0].stages == ["fit", "test"]


def test_search_runs_finds_runs_by_verdict(scenario):
    """`tags.`lmlogger.verdict` = 'mismatch'` finds the run with wrong patterns, not the right one."""
    client, exp = scenario.client, [scenario.experiment_id]

    def found(query):
        return {r.info.run_id for r in client.search_runs(exp, query)}

    assert found("tags.`lmlogger.verdict` = 'mismatch'") == {scenario.wrong.run_id}
    assert found("tags.`lmlogger.verdict` = 'match'") == {scenario.right.run_id}
    assert found("tags.`lmlogger.key.f1_compute` LIKE 'mismatch|%'") == {scenario.wrong.run_id}
    assert found("tags.`lmlogger.key.f1_object` LIKE '%|metric_object|%'") == {
        scenario.wrong.run_id,
        scenario.right.run_id,
    }
    assert found("tags.`lmlogger.key.f1_compute` LIKE '%|running-value-averaged|%'") == {scenario.wrong.run_id}


# -- 2. audits of runs:/ IDs -----------------------------------------------------------------------------------
def test_audit_of_runs_id_equals_audit_of_local_sidecar(scenario):
    """`audit("runs:/<id>")` gives the local sidecar's verdicts, key by key, and no store disagreement."""
    for trained in (scenario.wrong, scenario.right):
        remote = lmlogger.audit(f"runs:/{trained.run_id}", tracking_uri=scenario.uri)
        local = lmlogger.audit(trained.run_dir)
        assert remote.runs[0].source == f"runs:/{trained.run_id}"
        assert remote.runs[0].backend == "mlflow" and remote.runs[0].complete
        assert remote.runs[0].problems == []
        assert remote.runs[0].stages == local.runs[0].stages
        assert [k.to_dict() for k in remote.runs[0].keys] == [k.to_dict() for k in local.runs[0].keys]
        assert remote.summary == local.summary


def test_cli_audits_runs_id_with_flag_or_environment(scenario, monkeypatch):
    """`lmlogger audit runs:/<id>` exits 1 for the wrong run, 0 for the right one; the URI may come from the env."""
    wrong_id = scenario.wrong.run_id
    cli = [sys.executable, "-m", "lmlogger", "audit", f"runs:/{wrong_id}", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([*cli, "--tracking-uri", scenario.uri], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["summary"] == lmlogger.audit(scenario.wrong.run_dir).summary
    assert data["runs"][0]["problems"] == []
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scenario.uri)
    assert cli_main(["audit", f"runs:/{wrong_id}", "--format", "json"]) == 1
    assert cli_main(["audit", f"runs:/{scenario.right.run_id}"]) == 0


def test_audit_reports_metric_history_that_disagrees_with_the_sidecar(scenario):
    """A run whose MLflow history lost one epoch value and changed another: both named, verdicts unchanged."""
    client, wrong = scenario.client, scenario.wrong
    exp = client.create_experiment(f"tampered-{uuid.uuid4().hex[:8]}", artifact_location=scenario.artifact_location)
    run_id = client.create_run(exp).info.run_id
    steps = {}
    for key in ("f1_compute", "f1_object", "loss_epoch"):
        metrics = history(client, wrong.run_id, key) + history(client, wrong.run_id, f"lmlogger/reference/{key}")
        for m in metrics:
            if key == "loss_epoch" and m.key == key and m.step == metrics[0].step:
                steps["lost"] = m.step
                continue  # lost in the store
            value = m.value + 0.125 if (key == "f1_object" and m.key == key and m.step == metrics[-1].step) else m.value
            if value != m.value:
                steps["changed"] = (m.step, m.value)
            client.log_batch(run_id, metrics=[Metric(m.key, value, m.timestamp, m.step)])
    client.log_artifact(run_id, wrong.sidecar, "lmlogger")
    run = lmlogger.audit(f"runs:/{run_id}", tracking_uri=scenario.uri).runs[0]
    step, true_value = steps["changed"]
    by_key = {}
    for problem in run.problems:
        by_key.setdefault(problem.split(": ", 1)[0], []).append(problem)
    assert by_key["loss_epoch"] == [
        f"loss_epoch: logged value of train epoch 0 (step {steps['lost']}) is in the sidecar but not in the MLflow "
        "metric `loss_epoch`"
    ]
    assert by_key["f1_object"] == [
        f"f1_object: logged value of train epoch 1 (step {step}) is {true_value + 0.125:.6g} in the MLflow metric "
        f"`f1_object` but {true_value:.6g} in the sidecar"
    ]
    assert "f1_compute" not in by_key  # its whole history was copied
    assert "f1_item" in by_key  # keys whose history is missing are reported as well
    assert run.counts() == lmlogger.audit(wrong.run_dir).runs[0].counts()


def test_bad_runs_input_is_one_line_and_exit_2(scenario, monkeypatch, capsys):
    """Unknown run id, a run without the artifact, or no tracking URI: one line naming the problem, exit 2."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cli_main(["audit", "runs:/0123456789abcdef0123456789abcdef", "--tracking-uri", scenario.uri]) == 2
    err = capsys.readouterr().err.strip()
    assert "no run with id '0123456789abcdef0123456789abcdef'" in err and len(err.splitlines()) == 1
    bare = scenario.client.create_run(scenario.experiment_id).info.run_id
    assert cli_main(["audit", f"runs:/{bare}", "--tracking-uri", scenario.uri]) == 2
    err = capsys.readouterr().err.strip()
    assert f"has no {ARTIFACT} artifact" in err and len(err.splitlines()) == 1
    scenario.client.delete_run(bare)
    assert cli_main(["audit", f"runs:/{scenario.wrong.run_id}"]) == 2
    assert "MLFLOW_TRACKING_URI" in capsys.readouterr().err


def test_unreachable_server_fails_fast_naming_the_uri(capsys):
    """Nothing listens on the port: exit 2 within seconds, one line naming the URI."""
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    assert cli_main(["audit", "runs:/0123456789abcdef0123456789abcdef", "--tracking-uri", uri]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.strip()
    assert f"cannot reach the MLflow tracking server at {uri}" in err and len(err.splitlines()) == 1


# -- names MLflow rejects, and tags that are not lmlogger's ---------------------------------------------------------
def test_odd_keys_are_sanitised_with_one_warning_naming_both_forms(tmp_path):
    """`val/f1@dl:0` and a 240-character key: valid MLflow names, one warning each, full keys in the sidecar."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    trained = train(OddKeys, uri, tmp_path, "odd", str(tmp_path / "artifacts"))
    client, long_key = MlflowClient(uri), OddKeys.LONG
    about_at = [w for w in trained.warnings if "`val/f1@dl:0`" in w]
    assert len(about_at) == 1
    assert "`lmlogger/reference/val/f1dl0`" in about_at[0] and "`lmlogger.key.val/f1dl0`" in about_at[0]
    about_long = [w for w in trained.warnings if f"`{long_key}`" in w]
    assert len(about_long) == 1
    reference_name = re.search(r"reference metric is `([^`]+)`", about_long[0]).group(1)
    assert len(reference_name) == 250 and reference_name.startswith("lmlogger/reference/kkk")
    # reference values are there, under the sanitised names, equal to the truth
    rec = trained.model.rec
    odd = history(client, trained.run_id, "lmlogger/reference/val/f1dl0")
    assert [m.value for m in odd] == pytest.approx([rec.true(f1, ("train", e, 0)) for e in range(EPOCHS)], rel=1e-5)
    assert len(history(client, trained.run_id, reference_name)) == EPOCHS
    tags = client.get_run(trained.run_id).data.tags
    for key, value in tags.items():
        assert len(key) <= 250 and validate_param_and_metric_name(key), key
        assert len(value) <= 5000, key
    assert key_fields(tags, "val/f1dl0")[0] == "match"
    assert key_fields(tags, "val/f1dl0")[-1] == "key: val/f1@dl:0"  # the full key, in the tag's last field
    long_tags = [k for k in tags if k.startswith("lmlogger.key.kkk")]
    assert len(long_tags) == 1 and tags[long_tags[0]].startswith("match|tensor|-|")
    # the audit of the run finds every value under MLflow's names and reports the full keys
    run = lmlogger.audit(f"runs:/{trained.run_id}", tracking_uri=uri).runs[0]
    assert run.problems == []
    keys = {k.key: k for k in run.keys}
    assert keys["val/f1@dl:0"].verdict == "match" and keys[long_key].verdict == "match"


def test_mlflowlogger_prefix_is_kept_in_reference_and_tag_names(tmp_path):
    """`MLFlowLogger(prefix="exp")`: references and tags follow the names MLflow shows; the audit finds them."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    trained = train(KitchenSink, uri, tmp_path, "prefixed", str(tmp_path / "artifacts"), epochs=1, prefix="exp")
    assert trained.warnings == []
    client = MlflowClient(uri)
    assert len(history(client, trained.run_id, "exp-f1_object")) == 1
    reference = history(client, trained.run_id, "exp-lmlogger/reference/f1_object")
    assert [m.value for m in reference] == pytest.approx([trained.model.rec.true(f1, ("train", 0, 0))], rel=1e-5)
    tags = client.get_run(trained.run_id).data.tags
    assert key_fields(tags, "exp-f1_compute")[0] == "mismatch"
    assert key_fields(tags, "exp-f1_compute")[-1] == "key: f1_compute"
    run = lmlogger.audit(f"runs:/{trained.run_id}", tracking_uri=uri).runs[0]
    assert run.problems == [] and {k.key for k in run.keys} >= {"f1_compute", "f1_object"}


def surface(exc: BaseException) -> list[tuple[str, str]]:
    """Type and message of an exception and its chain, without run ids, ports and addresses."""
    out = []
    while exc is not None and len(out) < 12:
        text = re.sub(r"[0-9a-f]{32}", "<run>", str(exc))
        text = re.sub(r"0x[0-9a-f]+", "<addr>", text)
        text = re.sub(r"(127\.0\.0\.1:|port=)\d+", r"\1<port>", text)
        out.append((type(exc).__qualname__, text))
        exc = exc.__cause__ or exc.__context__
    return out


def fit_expecting_failure(module, logger, tmp, callbacks=(), epochs=EPOCHS):
    seeded(0)
    t = trainer(logger, tmp, max_epochs=epochs, callbacks=list(callbacks))
    with warnings.catch_warnings(record=True) as record, pytest.raises(BaseException) as info:
        warnings.simplefilter("always")
        t.fit(module, loader(), [loader(60, seed=1), loader(44, seed=2)])
    return info.value, lml_warnings(record)


def test_key_longer_than_mlflow_allows_fails_as_with_plain_logger(tmp_path):
    """A 300-character key: the user's own metric is refused; the same exception, lmlogger adds nothing."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    seen = []
    for wrap in (False, True):
        logger = MLFlowLogger(tracking_uri=uri, experiment_name=f"long-{wrap}", artifact_location=str(tmp_path))
        if wrap:
            logger = VerifiedLogger(logger, on_mismatch="ignore")
        error, ours = fit_expecting_failure(TooLong(), logger, tmp_path / str(wrap), epochs=1)
        seen.append(surface(error))
        assert ours == []
        del logger
    assert seen[0] == seen[1]
    assert seen[0][0] == ("MlflowException", "'Metric name' exceeds the maximum length of 250 characters")


def test_user_tags_and_description_are_never_overwritten(tmp_path):
    """Tags the user set (at creation or mid-run), `lmlogger.*` ones included, and the description stay."""

    class UserTagsMidRun(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                mlf = trainer.logger
                mlf.experiment.set_tag(mlf.run_id, "lmlogger.summary", "my own summary")

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    user = {"lmlogger.verdict": "reviewed by hand", "team": "vision", "mlflow.note.content": "my description"}
    mlf = MLFlowLogger(tracking_uri=uri, experiment_name="user-tags", artifact_location=str(tmp_path), tags=user)
    logger = VerifiedLogger(mlf, on_mismatch="ignore")
    seeded(0)
    t = trainer(logger, tmp_path, max_epochs=1, callbacks=[UserTagsMidRun()])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        t.fit(KitchenSink(), loader(), [loader(60, seed=1), loader(44, seed=2)])
    tags = MlflowClient(uri).get_run(mlf.run_id).data.tags
    assert {k: tags[k] for k in user} == user
    assert tags["lmlogger.summary"] == "my own summary"
    assert key_fields(tags, "f1_compute")[0] == "mismatch"  # lmlogger's other tags are written
    left = [w for w in lml_warnings(record) if "not set by lmlogger" in w]
    assert len(left) == 2
    assert any("`lmlogger.verdict`" in w for w in left) and any("`lmlogger.summary`" in w for w in left)
    del logger


def test_resumed_run_continues_its_sidecar_and_keeps_its_tags_current(tmp_path):
    """`MLFlowLogger(run_id=...)` elsewhere: the earlier sidecar is fetched and continued, lmlogger's own tags are
    updated (they are not mistaken for the user's)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = train(RightPatterns, uri, tmp_path / "first", "resumed", str(tmp_path / "artifacts"), epochs=1)
    client = MlflowClient(uri)
    assert client.get_run(first.run_id).data.tags["lmlogger.verdict"] == "match"
    second = train(KitchenSink, uri, tmp_path / "second", "resumed", epochs=1, run_id=first.run_id)
    assert second.run_id == first.run_id and second.sidecar != first.sidecar
    assert not [w for w in second.warnings if "not set by lmlogger" in w]
    assert client.get_run(first.run_id).data.tags["lmlogger.verdict"] == "mismatch"
    local = lmlogger.audit(second.run_dir).runs[0]
    assert local.stages == ["fit", "fit"] and local.complete
    assert len({k.key: k for k in local.keys}["f1_object"].epochs) == 2  # one from each session
    remote = lmlogger.audit(f"runs:/{first.run_id}", tracking_uri=uri).runs[0]
    assert remote.problems == [] and [k.to_dict() for k in remote.keys] == [k.to_dict() for k in local.keys]


# -- 3. faults -----------------------------------------------------------------------------------------------
class KillServerAt(Callback):
    def __init__(self, server: Server, epoch: int) -> None:
        self.server, self.epoch = server, epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            self.server.kill()


@pytest.mark.slow
def test_server_killed_mid_run_surfaces_as_with_plain_logger_and_sidecar_audits(tmp_path, monkeypatch):
    """The server dies at epoch 1: the same exception as a plain MLFlowLogger; one lmlogger warning; the local
    sidecar audits epoch 0."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the same (short) retries for both runs
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    seen, sidecar = [], None
    for wrap in (False, True):
        server = Server(tmp_path / f"server-{wrap}")
        try:
            mlf = MLFlowLogger(tracking_uri=server.uri, experiment_name="killed")
            logger = VerifiedLogger(mlf, on_mismatch="ignore") if wrap else mlf
            error, ours = fit_expecting_failure(
                KitchenSink(), logger, tmp_path / f"run-{wrap}", callbacks=[KillServerAt(server, 1)], epochs=3
            )
        finally:
            server.stop()
        seen.append(surface(error))
        if wrap:
            assert len(ours) == 1, ours
            assert "could not reach the tracking server" in ours[0] and "lmlogger audit" in ours[0]
            sidecar = logger.sidecar_path
        else:
            assert ours == []
        del logger
    assert seen[0] == seen[1]
    assert seen[0][0][0] == "MlflowException"
    report = lmlogger.audit(os.path.dirname(os.path.dirname(sidecar)))
    run = report.runs[0]
    assert run.backend == "mlflow" and run.status == "failed"
    keys = report.by_key()
    assert [e.epoch for e in keys["f1_object"].epochs] == [0]
    assert [e.epoch for e in keys["val_acc/dataloader_idx_0"].epochs] == [0]
    assert keys["f1_compute"].verdict == "mismatch" and keys["f1_object"].verdict == "match"


def test_server_down_from_the_start_surfaces_as_with_plain_logger(tmp_path, monkeypatch):
    """Nothing listens at the tracking URI: the same exception as a plain MLFlowLogger, and no lmlogger retries."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    seen = []
    for wrap in (False, True):
        mlf = MLFlowLogger(tracking_uri=uri, experiment_name="never")
        logger = VerifiedLogger(mlf, on_mismatch="ignore") if wrap else mlf
        error, ours = fit_expecting_failure(KitchenSink(), logger, tmp_path / str(wrap), epochs=1)
        seen.append(surface(error))
        assert len(ours) <= 1, ours
        del logger
    assert seen[0] == seen[1]
    assert seen[0][0][0] == "MlflowException"


def test_failing_extra_calls_are_one_warning_and_the_sidecar_keeps_everything(tmp_path, monkeypatch):
    """Tags refused and an artifact store that cannot be written: one warning, training and metrics unchanged."""
    original = MlflowClient.log_batch

    def refuse_tags(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if tags:
            raise MlflowException("injected: tags refused")
        return original(self, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    monkeypatch.setattr(MlflowClient, "log_batch", refuse_tags)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the artifact store wants a folder")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    trained = train(KitchenSink, uri, tmp_path, "faults", str(blocker / "artifacts"))
    assert len(trained.warnings) == 1, trained.warnings
    assert "could not set tags" in trained.warnings[0] and "injected: tags refused" in trained.warnings[0]
    client = MlflowClient(uri)
    assert not any(k.startswith("lmlogger.") for k in client.get_run(trained.run_id).data.tags)
    assert len(history(client, trained.run_id, "f1_compute")) == EPOCHS
    assert len(history(client, trained.run_id, "lmlogger/reference/f1_compute")) == EPOCHS
    report = lmlogger.audit(trained.run_dir)
    assert report.runs[0].complete and report.runs[0].status == "success"
    assert report.by_key()["f1_compute"].verdict == "mismatch" and len(report.by_key()["f1_compute"].epochs) == EPOCHS


def test_synchronous_false_works(mlflow_server, tmp_path):
    """`MLFlowLogger(synchronous=False)`: tags, reference history, the artifact and the audit are all there."""
    trained = train(KitchenSink, mlflow_server, tmp_path, f"async-{uuid.uuid4().hex[:8]}", synchronous=False)
    mlflow.flush_async_logging()
    client = MlflowClient(mlflow_server)
    assert trained.warnings == []
    assert client.get_run(trained.run_id).data.tags["lmlogger.verdict"] == "mismatch"
    reference = history(client, trained.run_id, "lmlogger/reference/f1_compute")
    assert [m.value for m in reference] == pytest.approx(
        [trained.model.rec.true(f1, ("train", e, 0)) for e in range(EPOCHS)], rel=1e-5
    )
    run = lmlogger.audit(f"runs:/{trained.run_id}", tracking_uri=mlflow_server).runs[0]
    assert run.problems == [] and run.complete


def test_local_copy_has_a_named_home_announced_in_one_info_line(tmp_path):
    """The local sidecar lives in `<default_root_dir>/lmlogger_mlflow/<experiment id>/<run id>/`, beside the HTML
    report; the run's first lmlogger line says where, as information (Lightning's INFO stream), not a warning."""
    import logging

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    # where Lightning prints "GPU available: ..." too: Lightning's shared rank-zero log is the `pytorch_lightning`
    # one once that namespace is imported in the process (as the suite's tests under both namespaces do)
    lightning_logs = [logging.getLogger(name) for name in ("lightning.pytorch", "pytorch_lightning")]
    for lightning_log in lightning_logs:
        lightning_log.addHandler(handler)
    try:
        trained = train(RightPatterns, uri, tmp_path / "root", "home", str(tmp_path / "artifacts"), epochs=1)
    finally:
        for lightning_log in lightning_logs:
            lightning_log.removeHandler(handler)
    home = tmp_path / "root" / "lmlogger_mlflow" / trained.experiment_id / trained.run_id
    assert trained.run_dir == str(home)
    assert (home / "lmlogger" / "provenance.jsonl").is_file() and (home / "lmlogger" / "report.html").is_file()
    assert trained.warnings == []
    ours = [r for r in records if r.getMessage().startswith("lmlogger:")]
    assert len(ours) == 1 and ours[0].levelno == logging.INFO
    lines = [ours[0].getMessage()]
    assert lines[0].startswith(f"lmlogger: MLflow run {trained.run_id}: ")
    assert f"local copy of the records in {home} (`lmlogger audit {home}` works without the server)" in lines[0]
    assert lmlogger.audit(str(home)).by_key()["f1_object"].verdict == "match"
