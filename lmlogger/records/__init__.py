"""The record layer: what lmlogger writes and how it judges, in pure Python.

Record types and their field checks, finding codes, verdict rules and fixes, the gap rule, the
decision replay rules, the derivation rewrite, MLflow names, errors and versions. Every module here
imports the standard library only: never torch, Lightning, torchmetrics or another lmlogger layer, so
that the runtime and the readers (:mod:`lmlogger.audit`, :mod:`lmlogger.lint`) share one wording.
"""
