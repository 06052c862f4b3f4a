"""Which torchmetrics classes have an epoch value that equals the batch-size-weighted mean of batch values.

Lightning reduces a value logged with ``on_epoch=True`` by a mean weighted by batch size. For a metric
whose value is itself a mean over samples (micro accuracy, mean absolute error, ...) that mean of batch
values *is* the epoch value; for every other metric (F1, precision, recall, AUROC, ...) it is not.
Known by class name, so the static check needs no torchmetrics import.
"""

from __future__ import annotations

import ast

#: Metrics whose per-batch value is a mean over the batch's samples (or elements, a fixed number per
#: sample), so Lightning's batch-size-weighted mean of batch values equals the epoch value.
_MEAN_OF_SAMPLES = frozenset(
    {
        "MeanMetric",
        "MeanAbsoluteError",
        "MeanSquaredError",  # unless squared=False (RMSE: a root of a mean)
        "MeanSquaredLogError",
        "MeanAbsolutePercentageError",
        "SymmetricMeanAbsolutePercentageError",
        "WeightedMeanAbsolutePercentageError",
        "LogCoshError",
        "KLDivergence",
        "BinaryAccuracy",
        "BinaryHammingDistance",
        "BinaryExactMatch",
        "MulticlassExactMatch",
        "MultilabelExactMatch",
        "ExactMatch",
        "StructuralSimilarityIndexMeasure",
        "MultiScaleStructuralSimilarityIndexMeasure",
        "LearnedPerceptualImagePatchSimilarity",
        "SignalNoiseRatio",
        "ScaleInvariantSignalNoiseRatio",
        "ScaleInvariantSignalDistortionRatio",
        "SignalDistortionRatio",
        "PermutationInvariantTraining",
        "PerceptualEvaluationSpeechQuality",
        "ShortTimeObjectiveIntelligibility",
        "ROUGEScore",  # the mean over sentences of each sentence's score
    }
)

#: Metrics that keep a running extreme or window on purpose ("best so far"): their state is meant to
#: carry over from epoch to epoch.
CARRY_BY_DESIGN = frozenset({"MaxMetric", "MinMetric", "RunningMean", "RunningSum"})

#: Metrics that are a mean of samples only with ``average="micro"`` (and no ``ignore_index``, which
#: changes the per-batch denominator). The value is each class's default for ``average``.
_MICRO_BY_DEFAULT = {
    "Accuracy": "micro",
    "HammingDistance": "micro",
    "MulticlassAccuracy": "macro",
    "MultilabelAccuracy": "macro",
    "MulticlassHammingDistance": "macro",
    "MultilabelHammingDistance": "macro",
}

#: Precision, recall and F-scores equal micro accuracy for single-label multiclass with average="micro".
_MICRO_MULTICLASS_IS_ACCURACY = frozenset({"F1Score", "FBetaScore", "Precision", "Recall", "F1", "FBeta"})
_MULTICLASS_ONLY = frozenset({"MulticlassF1Score", "MulticlassFBetaScore", "MulticlassPrecision", "MulticlassRecall"})

#: Containers of metrics, not metrics.
COLLECTIONS = frozenset({"MetricCollection"})
WRAPPERS = frozenset({"ClasswiseWrapper", "MinMaxMetric", "MultioutputWrapper", "MultitaskWrapper"})


def _keyword(call: ast.Call | None, name: str) -> ast.expr | None:
    if call is None:
        return None
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _literal(node: ast.expr | None) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    return ...  # unknown


def exact_mean(cls: str, call: ast.Call | None) -> bool:
    """Whether ``cls(...)``'s epoch value is the batch-size-weighted mean of its batch values.

    ``call`` is the constructor call, read for ``task``, ``average``, ``ignore_index``, ``squared``.
    Unknown arguments count against: a metric is called a mean only when the code shows it is one.
    """
    ignore_index = _keyword(call, "ignore_index")
    if ignore_index is not None and _literal(ignore_index) is not None:
        return False
    if cls == "MeanSquaredError":
        squared = _keyword(call, "squared")
        return squared is None or _literal(squared) is True
    if cls == "CosineSimilarity":
        return _literal(_keyword(call, "reduction")) == "mean"
    if cls in _MEAN_OF_SAMPLES:
        return True
    average = _keyword(call, "average")
    average_value = _literal(average) if average is not None else None
    if cls in _MICRO_BY_DEFAULT:
        if cls == "Accuracy" and _literal(_keyword(call, "task")) in ("multiclass", "multilabel"):
            return (average_value or "micro") == "micro"
        return (average_value or _MICRO_BY_DEFAULT[cls]) == "micro"
    if cls in _MICRO_MULTICLASS_IS_ACCURACY:
        task = _keyword(call, "task")
        if task is None:  # torchmetrics < 0.11: multiclass when num_classes is given, micro by default
            return _keyword(call, "num_classes") is not None and (average_value or "micro") == "micro"
        return _literal(task) == "multiclass" and (average_value or "micro") == "micro"
    if cls in _MULTICLASS_ONLY:
        return average_value == "micro"
    return False
