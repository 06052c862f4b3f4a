"""Where lmlogger writes: one sink per wrapped logger, chosen by the logger's class.

Every sink writes the sidecar and the reference metrics (:class:`~lmlogger.runtime.sinks.generic.GenericSink`);
backend sinks add what their UI can show.
"""

from __future__ import annotations

from typing import Any

from lmlogger.runtime.sinks.generic import GenericSink, Sink


def make_sink(vlogger: Any, trainer: Any) -> Sink:
    """The sink for a VerifiedLogger's wrapped logger."""
    inner = vlogger.wrapped
    cls_names = {klass.__name__ for klass in type(inner).__mro__}
    if "TensorBoardLogger" in cls_names:
        from lmlogger.runtime.sinks.tensorboard import TensorBoardSink

        return TensorBoardSink(vlogger, trainer)
    if "MLFlowLogger" in cls_names:
        from lmlogger.runtime.sinks.mlflow import MLflowSink

        return MLflowSink(vlogger, trainer)
    if "WandbLogger" in cls_names:
        from lmlogger.runtime.sinks.wandb import WandbSink

        return WandbSink(vlogger, trainer)
    return GenericSink(vlogger, trainer)


__all__ = ["GenericSink", "Sink", "make_sink"]
