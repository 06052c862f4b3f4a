"""The wrapped logger receives every call exactly as Lightning made it, and what lmlogger adds can be switched off."""

import glob
import os
from typing import Any
from unittest import mock

import pytest
import torch
from helpers import KitchenSink, loader, seeded, trainer
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

import lmlogger
from lmlogger import VerifiedLogger

OFF = {"reference_metrics": False, "tracker_extras": False, "html_report": False}


class CallCounter(Logger):
    """A user's own logger that records every call it receives, with its shape (positional vs keyword)."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root
        self.calls: list[tuple[str, tuple, dict]] = []

    @property
    def name(self) -> str:
        return "counter"

    @property
    def version(self) -> int:
        return 0

    @property
    def save_dir(self) -> str:
        return self.root

    @property
    def log_dir(self) -> str:
        return os.path.join(self.root, "counter")

    @rank_zero_only
    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("log_hyperparams", args, kwargs))

    @rank_zero_only
    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("log_metrics", args, kwargs))

    def log_graph(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("log_graph", args, kwargs))

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("save", args, kwargs))

    def finalize(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("finalize", args, kwargs))

    def after_save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("after_save_checkpoint", args, kwargs))


class SwappedOrder(CallCounter):
    """An override whose parameters are not in Lightning's ``(metrics, step)`` order."""

    def log_metrics(self, step: int | None = None, metrics: dict | None = None) -> None:  # type: ignore[override]
        self.calls.append(("log_metrics", (), {"step": step, "metrics": metrics}))


def shapes(calls: list[tuple[str, tuple, dict]]) -> list[tuple[str, int, tuple[str, ...]]]:
    """Each call's method, number of positional arguments and keyword names: its shape."""
    return [(name, len(args), tuple(sorted(kwargs))) for name, args, kwargs in calls]


def fit(logger: Logger, root: Any, epochs: int = 2) -> Any:
    seeded(0)
    t = trainer(logger, root, max_epochs=epochs, limit_val_batches=2)
    t.fit(KitchenSink(val_loaders=1), loader(64), loader(32, seed=1))
    return t


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """The same fit with the user's counting logger: plain, wrapped with lmlogger's additions off, wrapped."""
    root = tmp_path_factory.mktemp("shape")
    plain = CallCounter(str(root / "plain"))
    fit(plain, root / "plain")
    quiet = VerifiedLogger(CallCounter(str(root / "off")), on_mismatch="ignore", **OFF)
    fit(quiet, root / "off")
    default = VerifiedLogger(CallCounter(str(root / "on")), on_mismatch="ignore")
    fit(default, root / "on")
    return plain, quiet, default


def test_every_call_reaches_the_wrapped_logger_as_lightning_made_it(counted):
    """With lmlogger's additions off, the wrapped logger's calls equal a plain run's: same methods, same
    positional/keyword shape (``log_metrics(metrics=..., step=...)``), same values; the run is still verified."""
    plain, quiet, _ = counted
    inner = quiet.wrapped
    assert shapes(inner.calls) == shapes(plain.calls)
    assert ("log_metrics", 0, ("metrics", "step")) in shapes(plain.calls)  # Lightning's own shape, kept
    for (name, _, got), (_, _, want) in zip(inner.calls, plain.calls, strict=True):
        if name == "log_metrics":
            assert got["step"] == want["step"]
            assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-6, abs=1e-7)
    verdicts = {k.key: k.verdict for k in quiet.report().runs[0].keys}
    assert verdicts["loss_epoch"] == "match" and verdicts["f1_compute"] == "mismatch"


def test_reference_metrics_are_the_only_added_calls_and_keep_lightnings_shape(counted):
    """By default lmlogger adds, per closed epoch, one ``log_metrics(metrics=..., step=...)`` of reference values
    (every key under ``lmlogger/reference/``) and one ``save()``; nothing else."""
    plain, _, default = counted
    inner = default.wrapped.calls
    added = [
        c for c in inner if c[0] == "log_metrics" and all(k.startswith("lmlogger/reference/") for k in c[2]["metrics"])
    ]
    assert added and all(c[1] == () and set(c[2]) == {"metrics", "step"} for c in added)
    assert "lmlogger/reference/loss_epoch" in {k for c in added for k in c[2]["metrics"]}
    rest = [c for c in inner if not any(c is a for a in added)]
    assert len(rest) == len(plain.calls) + len(added)  # the added log_metrics, plus one save() after each
    assert shapes([c for c in rest if c[0] != "save"]) == shapes([c for c in plain.calls if c[0] != "save"])


def test_an_override_with_another_parameter_order_receives_what_lightning_passed(tmp_path):
    """``log_metrics(self, step=None, metrics=None)``: Lightning passes keywords, so does the wrapper."""
    logger = VerifiedLogger(SwappedOrder(str(tmp_path)), on_mismatch="ignore")
    fit(logger, tmp_path, epochs=1)
    metrics_calls = [kw for name, _, kw in logger.wrapped.calls if name == "log_metrics"]
    assert metrics_calls and all(isinstance(kw["metrics"], dict) for kw in metrics_calls)
    assert all(isinstance(kw["step"], int) for kw in metrics_calls)
    assert {k.key: k.verdict for k in logger.report().runs[0].keys}["loss_epoch"] == "match"


def test_a_spy_reads_the_keywords_lightning_passed(tmp_path):
    """``mock.patch.object(logger, "log_metrics", wraps=...)``: ``call.kwargs["metrics"]`` is the user's values."""
    inner = TensorBoardLogger(str(tmp_path))
    logger = VerifiedLogger(inner, on_mismatch="ignore")
    with mock.patch.object(inner, "log_metrics", wraps=inner.log_metrics) as spy:
        fit(logger, tmp_path, epochs=1)
    assert spy.call_count > 0
    keys = set().union(*(call.kwargs["metrics"] for call in spy.call_args_list))
    assert "loss_step" in keys and "loss_epoch" in keys
    assert all(call.args == () for call in spy.call_args_list)


def test_log_graph_is_forwarded_without_an_added_argument(tmp_path):
    """Lightning calls ``log_graph(model)``; the wrapped logger gets exactly that (no ``input_array=None``)."""
    inner = CallCounter(str(tmp_path))
    logger = VerifiedLogger(inner, on_mismatch="ignore")
    model = torch.nn.Linear(2, 1)
    logger.log_graph(model)
    logger.log_graph(model=model)
    logger.finalize(status="success")
    assert inner.calls == [
        ("log_graph", (model,), {}),
        ("log_graph", (), {"model": model}),
        ("finalize", (), {"status": "success"}),
    ]


def tb_tags(run_dir: str) -> dict[str, set[str]]:
    """Tags in a TensorBoard run dir by plugin (scalars, text, custom_scalars)."""
    out: dict[str, set[str]] = {}
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in EventFileLoader(path).Load():
            for v in event.summary.value:
                plugin = v.metadata.plugin_data.plugin_name or "scalars"
                out.setdefault(plugin, set()).add(v.tag)
    return out


def test_tensorboard_with_additions_off_holds_the_plain_runs_tags_and_the_sidecar_only(tmp_path):
    """``reference_metrics=False, tracker_extras=False, html_report=False``: the event files hold the tags a plain
    run holds (no reference scalars, no text summary, no chart layout), no report page is written, and the
    sidecar still gives every verdict."""
    plain = TensorBoardLogger(str(tmp_path / "plain"))
    fit(plain, tmp_path / "plain")
    off = VerifiedLogger(TensorBoardLogger(str(tmp_path / "off")), on_mismatch="ignore", **OFF)
    fit(off, tmp_path / "off")
    assert tb_tags(off.log_dir) == tb_tags(plain.log_dir)
    assert os.listdir(os.path.join(off.log_dir, "lmlogger")) == ["provenance.jsonl"]
    keys = {k.key: k.verdict for k in lmlogger.audit(off.log_dir).runs[0].keys}
    assert keys["loss_epoch"] == "match" and keys["f1_compute"] == "mismatch"
    on = VerifiedLogger(TensorBoardLogger(str(tmp_path / "on")), on_mismatch="ignore")
    fit(on, tmp_path / "on")
    tags = tb_tags(on.log_dir)
    assert "lmlogger/reference/loss_epoch" in tags["scalars"] and "text" in tags and "custom_scalars" in tags
    assert sorted(os.listdir(os.path.join(on.log_dir, "lmlogger"))) == ["provenance.jsonl", "report.html"]


def test_switches_must_be_booleans():
    """A switch given as anything but True/False is named, before any run."""
    with pytest.raises(ValueError, match=r"tracker_extras='no'"):
        VerifiedLogger(TensorBoardLogger("unused"), tracker_extras="no")
