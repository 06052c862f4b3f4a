"""The runtime: everything that touches torch, Lightning (either namespace) or torchmetrics.

The :class:`~lmlogger.runtime._logger.VerifiedLogger`, the seam on ``LightningModule.log``, the session,
epoch windows, the ledger, samples, the decisions tracker, provenance classification, the distributed
exchange, and the writers (:mod:`lmlogger.runtime.sinks`). It may import :mod:`lmlogger.records` and
the readers (to write the report page); nothing outside it imports it, except the face
(``lmlogger.VerifiedLogger``, ``lmlogger.testing``), lazily.
"""
