"""torchmetrics' functional metrics, as the runtime, the audit and the static check know them.

Standard library only: a static table, generated from torchmetrics 1.9 and checked against the installed
torchmetrics by ``tests/test_functional_metrics.py``. For each public functional metric
(``torchmetrics.functional...``): the ``Metric`` class that computes the same value over many batches (the
*shadow* the runtime feeds with the same inputs, and the class a fix names), or ``None`` where no class
computes it exactly; the function's parameters in order; and how many of them are data (``preds, target``:
what ``Metric.update`` takes; the rest are the class's constructor arguments).

``sklearn.metrics`` functions that are not a mean of per-sample values are listed too, with the torchmetrics
class to use instead: the static check reports them (the runtime cannot see values computed outside
torchmetrics, see ``docs/verdicts.md``).
"""

from __future__ import annotations

import re
from typing import Any

#: functional name -> (Metric class or None, parameters in order, number of data parameters).
FUNCTIONAL: dict[str, tuple[str | None, tuple[str, ...], int]] = {
    "accuracy": (
        "Accuracy",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "multidim_average",
            "top_k",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "auroc": (
        "AUROC",
        (
            "preds",
            "target",
            "task",
            "thresholds",
            "num_classes",
            "num_labels",
            "average",
            "max_fpr",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "average_precision": (
        "AveragePrecision",
        (
            "preds",
            "target",
            "task",
            "thresholds",
            "num_classes",
            "num_labels",
            "average",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "binary_accuracy": (
        "BinaryAccuracy",
        ("preds", "target", "threshold", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "binary_auroc": ("BinaryAUROC", ("preds", "target", "max_fpr", "thresholds", "ignore_index", "validate_args"), 2),
    "binary_average_precision": (
        "BinaryAveragePrecision",
        ("preds", "target", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "binary_calibration_error": (
        "BinaryCalibrationError",
        ("preds", "target", "n_bins", "norm", "ignore_index", "validate_args"),
        2,
    ),
    "binary_cohen_kappa": (
        "BinaryCohenKappa",
        ("preds", "target", "threshold", "weights", "ignore_index", "validate_args"),
        2,
    ),
    "binary_confusion_matrix": (
        "BinaryConfusionMatrix",
        ("preds", "target", "threshold", "normalize", "ignore_index", "validate_args"),
        2,
    ),
    "binary_eer": ("BinaryEER", ("preds", "target", "thresholds", "ignore_index", "validate_args"), 2),
    "binary_f1_score": (
        "BinaryF1Score",
        ("preds", "target", "threshold", "multidim_average", "ignore_index", "validate_args", "zero_division"),
        2,
    ),
    "binary_fairness": (
        "BinaryFairness",
        ("preds", "target", "groups", "task", "threshold", "ignore_index", "validate_args"),
        3,
    ),
    "binary_fbeta_score": (
        "BinaryFBetaScore",
        ("preds", "target", "beta", "threshold", "multidim_average", "ignore_index", "validate_args", "zero_division"),
        2,
    ),
    "binary_groups_stat_rates": (
        None,
        ("preds", "target", "groups", "num_groups", "threshold", "ignore_index", "validate_args"),
        0,
    ),
    "binary_hamming_distance": (
        "BinaryHammingDistance",
        ("preds", "target", "threshold", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "binary_hinge_loss": ("BinaryHingeLoss", ("preds", "target", "squared", "ignore_index", "validate_args"), 2),
    "binary_jaccard_index": (
        "BinaryJaccardIndex",
        ("preds", "target", "threshold", "ignore_index", "validate_args", "zero_division"),
        2,
    ),
    "binary_logauc": (
        "BinaryLogAUC",
        ("preds", "target", "fpr_range", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "binary_matthews_corrcoef": (
        "BinaryMatthewsCorrCoef",
        ("preds", "target", "threshold", "ignore_index", "validate_args"),
        2,
    ),
    "binary_negative_predictive_value": (
        "BinaryNegativePredictiveValue",
        ("preds", "target", "threshold", "multidim_average", "ignore_index", "validate_args", "zero_division"),
        2,
    ),
    "binary_precision": (
        "BinaryPrecision",
        ("preds", "target", "threshold", "multidim_average", "ignore_index", "validate_args", "zero_division"),
        2,
    ),
    "binary_precision_at_fixed_recall": (
        "BinaryPrecisionAtFixedRecall",
        ("preds", "target", "min_recall", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "binary_precision_recall_curve": (
        "BinaryPrecisionRecallCurve",
        ("preds", "target", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "binary_recall": (
        "BinaryRecall",
        ("preds", "target", "threshold", "multidim_average", "ignore_index", "validate_args", "zero_division"),
        2,
    ),
    "binary_recall_at_fixed_precision": (
        "BinaryRecallAtFixedPrecision",
        ("preds", "target", "min_precision", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "binary_roc": ("BinaryROC", ("preds", "target", "thresholds", "ignore_index", "validate_args"), 2),
    "binary_sensitivity_at_specificity": (
        "BinarySensitivityAtSpecificity",
        ("preds", "target", "min_specificity", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "binary_specificity": (
        "BinarySpecificity",
        ("preds", "target", "threshold", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "binary_specificity_at_sensitivity": (
        "BinarySpecificityAtSensitivity",
        ("preds", "target", "min_sensitivity", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "binary_stat_scores": (
        "BinaryStatScores",
        ("preds", "target", "threshold", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "bleu_score": ("BLEUScore", ("preds", "target", "n_gram", "smooth", "weights"), 2),
    "calibration_error": (
        "CalibrationError",
        ("preds", "target", "task", "n_bins", "norm", "num_classes", "ignore_index", "validate_args"),
        2,
    ),
    "char_error_rate": ("CharErrorRate", ("preds", "target"), 2),
    "chrf_score": (
        "CHRFScore",
        (
            "preds",
            "target",
            "n_char_order",
            "n_word_order",
            "beta",
            "lowercase",
            "whitespace",
            "return_sentence_level_score",
        ),
        2,
    ),
    "cohen_kappa": (
        "CohenKappa",
        ("preds", "target", "task", "threshold", "num_classes", "weights", "ignore_index", "validate_args"),
        2,
    ),
    "concordance_corrcoef": ("ConcordanceCorrCoef", ("preds", "target"), 2),
    "confusion_matrix": (
        "ConfusionMatrix",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "normalize",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "continuous_ranked_probability_score": ("ContinuousRankedProbabilityScore", ("preds", "target"), 2),
    "cosine_similarity": ("CosineSimilarity", ("preds", "target", "reduction"), 2),
    "cramers_v": ("CramersV", ("preds", "target", "bias_correction", "nan_strategy", "nan_replace_value"), 2),
    "cramers_v_matrix": (None, ("matrix", "bias_correction", "nan_strategy", "nan_replace_value"), 0),
    "critical_success_index": ("CriticalSuccessIndex", ("preds", "target", "threshold", "keep_sequence_dim"), 2),
    "demographic_parity": (None, ("preds", "groups", "threshold", "ignore_index", "validate_args"), 0),
    "eer": (
        "EER",
        (
            "preds",
            "target",
            "task",
            "thresholds",
            "num_classes",
            "num_labels",
            "average",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "equal_opportunity": (None, ("preds", "target", "groups", "threshold", "ignore_index", "validate_args"), 0),
    "error_relative_global_dimensionless_synthesis": (
        "ErrorRelativeGlobalDimensionlessSynthesis",
        ("preds", "target", "ratio", "reduction"),
        2,
    ),
    "exact_match": (
        "ExactMatch",
        (
            "preds",
            "target",
            "task",
            "num_classes",
            "num_labels",
            "threshold",
            "multidim_average",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "explained_variance": ("ExplainedVariance", ("preds", "target", "multioutput"), 2),
    "extended_edit_distance": (
        "ExtendedEditDistance",
        ("preds", "target", "language", "return_sentence_level_score", "alpha", "rho", "deletion", "insertion"),
        2,
    ),
    "f1_score": (
        "F1Score",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "multidim_average",
            "top_k",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "fbeta_score": (
        "FBetaScore",
        (
            "preds",
            "target",
            "task",
            "beta",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "multidim_average",
            "top_k",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "fleiss_kappa": ("FleissKappa", ("ratings", "mode"), 1),
    "hamming_distance": (
        "HammingDistance",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "multidim_average",
            "top_k",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "hinge_loss": (
        "HingeLoss",
        ("preds", "target", "task", "num_classes", "squared", "multiclass_mode", "ignore_index", "validate_args"),
        2,
    ),
    "image_gradients": (None, ("img",), 0),
    "jaccard_index": (
        "JaccardIndex",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "jensen_shannon_divergence": ("JensenShannonDivergence", ("p", "q", "log_prob", "reduction"), 2),
    "kendall_rank_corrcoef": ("KendallRankCorrCoef", ("preds", "target", "variant", "t_test", "alternative"), 2),
    "kl_divergence": ("KLDivergence", ("p", "q", "log_prob", "reduction"), 2),
    "lip_vertex_error": (None, ("vertices_pred", "vertices_gt", "mouth_map", "validate_args"), 0),
    "log_cosh_error": ("LogCoshError", ("preds", "target"), 2),
    "logauc": (
        None,
        (
            "preds",
            "target",
            "task",
            "thresholds",
            "num_classes",
            "num_labels",
            "fpr_range",
            "average",
            "ignore_index",
            "validate_args",
        ),
        0,
    ),
    "match_error_rate": ("MatchErrorRate", ("preds", "target"), 2),
    "matthews_corrcoef": (
        "MatthewsCorrCoef",
        ("preds", "target", "task", "threshold", "num_classes", "num_labels", "ignore_index", "validate_args"),
        2,
    ),
    "mean_absolute_error": ("MeanAbsoluteError", ("preds", "target", "num_outputs"), 2),
    "mean_absolute_percentage_error": ("MeanAbsolutePercentageError", ("preds", "target"), 2),
    "mean_squared_error": ("MeanSquaredError", ("preds", "target", "squared", "num_outputs"), 2),
    "mean_squared_log_error": ("MeanSquaredLogError", ("preds", "target"), 2),
    "minkowski_distance": ("MinkowskiDistance", ("preds", "targets", "p"), 2),
    "multiclass_accuracy": (
        "MulticlassAccuracy",
        ("preds", "target", "num_classes", "average", "top_k", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_auroc": (
        "MulticlassAUROC",
        ("preds", "target", "num_classes", "average", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_average_precision": (
        "MulticlassAveragePrecision",
        ("preds", "target", "num_classes", "average", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_calibration_error": (
        "MulticlassCalibrationError",
        ("preds", "target", "num_classes", "n_bins", "norm", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_cohen_kappa": (
        "MulticlassCohenKappa",
        ("preds", "target", "num_classes", "weights", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_confusion_matrix": (
        "MulticlassConfusionMatrix",
        ("preds", "target", "num_classes", "normalize", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_eer": (
        "MulticlassEER",
        ("preds", "target", "num_classes", "thresholds", "average", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_exact_match": (
        "MulticlassExactMatch",
        ("preds", "target", "num_classes", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_f1_score": (
        "MulticlassF1Score",
        (
            "preds",
            "target",
            "num_classes",
            "average",
            "top_k",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multiclass_fbeta_score": (
        "MulticlassFBetaScore",
        (
            "preds",
            "target",
            "beta",
            "num_classes",
            "average",
            "top_k",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multiclass_hamming_distance": (
        "MulticlassHammingDistance",
        ("preds", "target", "num_classes", "average", "top_k", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_hinge_loss": (
        "MulticlassHingeLoss",
        ("preds", "target", "num_classes", "squared", "multiclass_mode", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_jaccard_index": (
        "MulticlassJaccardIndex",
        ("preds", "target", "num_classes", "average", "ignore_index", "validate_args", "zero_division"),
        2,
    ),
    "multiclass_logauc": (
        "MulticlassLogAUC",
        ("preds", "target", "num_classes", "fpr_range", "average", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_matthews_corrcoef": (
        "MulticlassMatthewsCorrCoef",
        ("preds", "target", "num_classes", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_negative_predictive_value": (
        "MulticlassNegativePredictiveValue",
        (
            "preds",
            "target",
            "num_classes",
            "average",
            "top_k",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multiclass_precision": (
        "MulticlassPrecision",
        (
            "preds",
            "target",
            "num_classes",
            "average",
            "top_k",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multiclass_precision_at_fixed_recall": (
        "MulticlassPrecisionAtFixedRecall",
        ("preds", "target", "num_classes", "min_recall", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_precision_recall_curve": (
        "MulticlassPrecisionRecallCurve",
        ("preds", "target", "num_classes", "thresholds", "average", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_recall": (
        "MulticlassRecall",
        (
            "preds",
            "target",
            "num_classes",
            "average",
            "top_k",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multiclass_recall_at_fixed_precision": (
        "MulticlassRecallAtFixedPrecision",
        ("preds", "target", "num_classes", "min_precision", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_roc": (
        "MulticlassROC",
        ("preds", "target", "num_classes", "thresholds", "average", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_sensitivity_at_specificity": (
        "MulticlassSensitivityAtSpecificity",
        ("preds", "target", "num_classes", "min_specificity", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_specificity": (
        "MulticlassSpecificity",
        ("preds", "target", "num_classes", "average", "top_k", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_specificity_at_sensitivity": (
        "MulticlassSpecificityAtSensitivity",
        ("preds", "target", "num_classes", "min_sensitivity", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multiclass_stat_scores": (
        "MulticlassStatScores",
        ("preds", "target", "num_classes", "average", "top_k", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_accuracy": (
        "MultilabelAccuracy",
        ("preds", "target", "num_labels", "threshold", "average", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_auroc": (
        "MultilabelAUROC",
        ("preds", "target", "num_labels", "average", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_average_precision": (
        "MultilabelAveragePrecision",
        ("preds", "target", "num_labels", "average", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_confusion_matrix": (
        "MultilabelConfusionMatrix",
        ("preds", "target", "num_labels", "threshold", "normalize", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_coverage_error": (
        "MultilabelCoverageError",
        ("preds", "target", "num_labels", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_eer": (
        "MultilabelEER",
        ("preds", "target", "num_labels", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_exact_match": (
        "MultilabelExactMatch",
        ("preds", "target", "num_labels", "threshold", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_f1_score": (
        "MultilabelF1Score",
        (
            "preds",
            "target",
            "num_labels",
            "threshold",
            "average",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multilabel_fbeta_score": (
        "MultilabelFBetaScore",
        (
            "preds",
            "target",
            "beta",
            "num_labels",
            "threshold",
            "average",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multilabel_hamming_distance": (
        "MultilabelHammingDistance",
        ("preds", "target", "num_labels", "threshold", "average", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_jaccard_index": (
        "MultilabelJaccardIndex",
        ("preds", "target", "num_labels", "threshold", "average", "ignore_index", "validate_args", "zero_division"),
        2,
    ),
    "multilabel_logauc": (
        "MultilabelLogAUC",
        ("preds", "target", "num_labels", "fpr_range", "average", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_matthews_corrcoef": (
        "MultilabelMatthewsCorrCoef",
        ("preds", "target", "num_labels", "threshold", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_negative_predictive_value": (
        "MultilabelNegativePredictiveValue",
        (
            "preds",
            "target",
            "num_labels",
            "threshold",
            "average",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multilabel_precision": (
        "MultilabelPrecision",
        (
            "preds",
            "target",
            "num_labels",
            "threshold",
            "average",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multilabel_precision_at_fixed_recall": (
        "MultilabelPrecisionAtFixedRecall",
        ("preds", "target", "num_labels", "min_recall", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_precision_recall_curve": (
        "MultilabelPrecisionRecallCurve",
        ("preds", "target", "num_labels", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_ranking_average_precision": (
        "MultilabelRankingAveragePrecision",
        ("preds", "target", "num_labels", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_ranking_loss": (
        "MultilabelRankingLoss",
        ("preds", "target", "num_labels", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_recall": (
        "MultilabelRecall",
        (
            "preds",
            "target",
            "num_labels",
            "threshold",
            "average",
            "multidim_average",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "multilabel_recall_at_fixed_precision": (
        "MultilabelRecallAtFixedPrecision",
        ("preds", "target", "num_labels", "min_precision", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_roc": (
        "MultilabelROC",
        ("preds", "target", "num_labels", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_sensitivity_at_specificity": (
        "MultilabelSensitivityAtSpecificity",
        ("preds", "target", "num_labels", "min_specificity", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_specificity": (
        "MultilabelSpecificity",
        ("preds", "target", "num_labels", "threshold", "average", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_specificity_at_sensitivity": (
        "MultilabelSpecificityAtSensitivity",
        ("preds", "target", "num_labels", "min_sensitivity", "thresholds", "ignore_index", "validate_args"),
        2,
    ),
    "multilabel_stat_scores": (
        "MultilabelStatScores",
        ("preds", "target", "num_labels", "threshold", "average", "multidim_average", "ignore_index", "validate_args"),
        2,
    ),
    "multiscale_structural_similarity_index_measure": (
        "MultiScaleStructuralSimilarityIndexMeasure",
        (
            "preds",
            "target",
            "gaussian_kernel",
            "sigma",
            "kernel_size",
            "reduction",
            "data_range",
            "k1",
            "k2",
            "betas",
            "normalize",
        ),
        2,
    ),
    "negative_predictive_value": (
        "NegativePredictiveValue",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "multidim_average",
            "top_k",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "normalized_root_mean_squared_error": (
        "NormalizedRootMeanSquaredError",
        ("preds", "target", "normalization", "num_outputs"),
        2,
    ),
    "pairwise_cosine_similarity": (None, ("x", "y", "reduction", "zero_diagonal"), 0),
    "pairwise_euclidean_distance": (None, ("x", "y", "reduction", "zero_diagonal"), 0),
    "pairwise_linear_similarity": (None, ("x", "y", "reduction", "zero_diagonal"), 0),
    "pairwise_manhattan_distance": (None, ("x", "y", "reduction", "zero_diagonal"), 0),
    "pairwise_minkowski_distance": (None, ("x", "y", "exponent", "reduction", "zero_diagonal"), 0),
    "panoptic_quality": ("PanopticQuality", ("preds", "target", "things", "stuffs", "allow_unknown_preds_category"), 2),
    "peak_signal_noise_ratio": (
        "PeakSignalNoiseRatio",
        ("preds", "target", "data_range", "base", "reduction", "dim"),
        2,
    ),
    "pearson_corrcoef": ("PearsonCorrCoef", ("preds", "target"), 2),
    "pearsons_contingency_coefficient": (
        "PearsonsContingencyCoefficient",
        ("preds", "target", "nan_strategy", "nan_replace_value"),
        2,
    ),
    "pearsons_contingency_coefficient_matrix": (None, ("matrix", "nan_strategy", "nan_replace_value"), 0),
    "permutation_invariant_training": (
        "PermutationInvariantTraining",
        ("preds", "target", "metric_func", "mode", "eval_func"),
        2,
    ),
    "perplexity": ("Perplexity", ("preds", "target", "ignore_index"), 2),
    "pit_permutate": (None, ("preds", "perm"), 0),
    "precision": (
        "Precision",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "multidim_average",
            "top_k",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "precision_at_fixed_recall": (
        "PrecisionAtFixedRecall",
        (
            "preds",
            "target",
            "task",
            "min_recall",
            "thresholds",
            "num_classes",
            "num_labels",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "precision_recall_curve": (
        None,
        (
            "preds",
            "target",
            "task",
            "thresholds",
            "num_classes",
            "num_labels",
            "average",
            "ignore_index",
            "validate_args",
        ),
        0,
    ),
    "r2_score": ("R2Score", ("preds", "target", "adjusted", "multioutput"), 2),
    "recall": (
        "Recall",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "multidim_average",
            "top_k",
            "ignore_index",
            "validate_args",
            "zero_division",
        ),
        2,
    ),
    "recall_at_fixed_precision": (
        "RecallAtFixedPrecision",
        (
            "preds",
            "target",
            "task",
            "min_precision",
            "thresholds",
            "num_classes",
            "num_labels",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "relative_average_spectral_error": ("RelativeAverageSpectralError", ("preds", "target", "window_size"), 2),
    "relative_squared_error": ("RelativeSquaredError", ("preds", "target", "squared"), 2),
    "retrieval_average_precision": (None, ("preds", "target", "top_k"), 0),
    "retrieval_fall_out": (None, ("preds", "target", "top_k"), 0),
    "retrieval_hit_rate": (None, ("preds", "target", "top_k"), 0),
    "retrieval_normalized_dcg": (None, ("preds", "target", "top_k"), 0),
    "retrieval_precision": (None, ("preds", "target", "top_k", "adaptive_k"), 0),
    "retrieval_precision_recall_curve": (None, ("preds", "target", "max_k", "adaptive_k"), 0),
    "retrieval_r_precision": (None, ("preds", "target"), 0),
    "retrieval_recall": (None, ("preds", "target", "top_k"), 0),
    "retrieval_reciprocal_rank": (None, ("preds", "target"), 0),
    "roc": (
        None,
        (
            "preds",
            "target",
            "task",
            "thresholds",
            "num_classes",
            "num_labels",
            "average",
            "ignore_index",
            "validate_args",
        ),
        0,
    ),
    "root_mean_squared_error_using_sliding_window": (None, ("preds", "target", "window_size", "return_rmse_map"), 0),
    "rouge_score": (None, ("preds", "target", "accumulate", "use_stemmer", "normalizer", "tokenizer", "rouge_keys"), 0),
    "sacre_bleu_score": (
        "SacreBLEUScore",
        ("preds", "target", "n_gram", "smooth", "tokenize", "lowercase", "weights"),
        2,
    ),
    "scale_invariant_signal_distortion_ratio": (
        "ScaleInvariantSignalDistortionRatio",
        ("preds", "target", "zero_mean"),
        2,
    ),
    "scale_invariant_signal_noise_ratio": ("ScaleInvariantSignalNoiseRatio", ("preds", "target"), 2),
    "sensitivity_at_specificity": (
        "SensitivityAtSpecificity",
        (
            "preds",
            "target",
            "task",
            "min_specificity",
            "thresholds",
            "num_classes",
            "num_labels",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "signal_distortion_ratio": (
        "SignalDistortionRatio",
        ("preds", "target", "use_cg_iter", "filter_length", "zero_mean", "load_diag"),
        2,
    ),
    "signal_noise_ratio": ("SignalNoiseRatio", ("preds", "target", "zero_mean"), 2),
    "spearman_corrcoef": ("SpearmanCorrCoef", ("preds", "target"), 2),
    "specificity": (
        "Specificity",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "multidim_average",
            "top_k",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "specificity_at_sensitivity": (
        "SpecificityAtSensitivity",
        (
            "preds",
            "target",
            "task",
            "min_sensitivity",
            "thresholds",
            "num_classes",
            "num_labels",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "spectral_angle_mapper": ("SpectralAngleMapper", ("preds", "target", "reduction"), 2),
    "spectral_distortion_index": ("SpectralDistortionIndex", ("preds", "target", "p", "reduction"), 2),
    "squad": ("SQuAD", ("preds", "target"), 2),
    "stat_scores": (
        "StatScores",
        (
            "preds",
            "target",
            "task",
            "threshold",
            "num_classes",
            "num_labels",
            "average",
            "multidim_average",
            "top_k",
            "ignore_index",
            "validate_args",
        ),
        2,
    ),
    "structural_similarity_index_measure": (
        "StructuralSimilarityIndexMeasure",
        (
            "preds",
            "target",
            "gaussian_kernel",
            "sigma",
            "kernel_size",
            "reduction",
            "data_range",
            "k1",
            "k2",
            "return_full_image",
            "return_contrast_sensitivity",
        ),
        2,
    ),
    "symmetric_mean_absolute_percentage_error": ("SymmetricMeanAbsolutePercentageError", ("preds", "target"), 2),
    "theils_u": ("TheilsU", ("preds", "target", "nan_strategy", "nan_replace_value"), 2),
    "theils_u_matrix": (None, ("matrix", "nan_strategy", "nan_replace_value"), 0),
    "total_variation": ("TotalVariation", ("img", "reduction"), 1),
    "translation_edit_rate": (
        "TranslationEditRate",
        ("preds", "target", "normalize", "no_punctuation", "lowercase", "asian_support", "return_sentence_level_score"),
        2,
    ),
    "tschuprows_t": ("TschuprowsT", ("preds", "target", "bias_correction", "nan_strategy", "nan_replace_value"), 2),
    "tschuprows_t_matrix": (None, ("matrix", "bias_correction", "nan_strategy", "nan_replace_value"), 0),
    "tweedie_deviance_score": ("TweedieDevianceScore", ("preds", "targets", "power"), 2),
    "universal_image_quality_index": (
        "UniversalImageQualityIndex",
        ("preds", "target", "kernel_size", "sigma", "reduction"),
        2,
    ),
    "weighted_mean_absolute_percentage_error": ("WeightedMeanAbsolutePercentageError", ("preds", "target"), 2),
    "word_error_rate": ("WordErrorRate", ("preds", "target"), 2),
    "word_information_lost": (None, ("preds", "target"), 0),
    "word_information_preserved": (None, ("preds", "target"), 0),
}

#: sklearn.metrics functions whose value is not a mean of per-sample values -> the torchmetrics class for
#: binary inputs (sklearn's default ``average="binary"``) and its multiclass form (``average=`` given).
SKLEARN: dict[str, tuple[str, str | None]] = {
    "f1_score": ("BinaryF1Score", "MulticlassF1Score"),
    "fbeta_score": ("BinaryFBetaScore", "MulticlassFBetaScore"),
    "precision_score": ("BinaryPrecision", "MulticlassPrecision"),
    "recall_score": ("BinaryRecall", "MulticlassRecall"),
    "jaccard_score": ("BinaryJaccardIndex", "MulticlassJaccardIndex"),
    "roc_auc_score": ("BinaryAUROC", "MulticlassAUROC"),
    "average_precision_score": ("BinaryAveragePrecision", "MulticlassAveragePrecision"),
    "matthews_corrcoef": ("BinaryMatthewsCorrCoef", "MulticlassMatthewsCorrCoef"),
    "cohen_kappa_score": ("BinaryCohenKappa", "MulticlassCohenKappa"),
    "balanced_accuracy_score": ("MulticlassAccuracy", "MulticlassAccuracy"),
    "r2_score": ("R2Score", None),
    "explained_variance_score": ("ExplainedVariance", None),
    "root_mean_squared_error": ("MeanSquaredError", None),
}
#: Arguments of an sklearn function that the torchmetrics class takes under the same name.
_SKLEARN_KEPT = ("average", "beta", "max_fpr")


def functional_class(name: str) -> str | None:
    """The ``Metric`` class computing functional ``name`` over many batches (``None``: no exact one)."""
    entry = FUNCTIONAL.get(name)
    return entry[0] if entry is not None else None


def data_parameters(name: str) -> tuple[str, ...]:
    """The data parameters of functional ``name`` (``("preds", "target")``)."""
    entry = FUNCTIONAL.get(name)
    if entry is None or not entry[2]:
        return ("preds", "target")
    return entry[1][: entry[2]]


def class_expression(cls: str, arguments: list[tuple[str, str]]) -> str:
    """``BinaryF1Score(threshold=0.3)``: the class and the constructor arguments, as source text."""
    return f"{cls}(" + ", ".join(f"{name}={text}" for name, text in arguments) + ")"


def sklearn_class(name: str, arguments: dict[str, str]) -> str | None:
    """The torchmetrics class expression to use instead of ``sklearn.metrics.<name>``, with the arguments of
    the call (source text by name) that carry over (``average``, ``beta``); ``None`` for a mean-type function."""
    entry = SKLEARN.get(name)
    if entry is None:
        return None
    binary, multi = entry
    average = arguments.get("average")
    kept = [(k, arguments[k]) for k in _SKLEARN_KEPT if k in arguments and k != "average"]
    if name == "root_mean_squared_error":
        kept = [("squared", "False")]
    if name == "balanced_accuracy_score":
        return class_expression(multi or binary, [("num_classes", "<n>"), ("average", '"macro"')])
    if average is not None and average.strip("'\"") != "binary" and multi is not None:
        return class_expression(multi, [("num_classes", "<n>"), ("average", average), *kept])
    return class_expression(binary, kept)


def functional_attribute(name: str, phase: str) -> str:
    """The attribute a fix keeps the metric under: the key made an identifier, with the phase in front
    (``f1`` in training -> ``train_f1``; ``val/f1`` -> ``val_f1``)."""
    ident = re.sub(r"\W+", "_", name).strip("_") or "metric"
    prefix = {"train": "train", "val": "val", "test": "test"}.get(phase, phase)
    if not ident.startswith(("train_", "val_", "valid_", "validation_", "test_")):
        ident = f"{prefix}_{ident}"
    return ident


def render_value(value: Any) -> str:
    """An argument's value as source text, for a fix (``0.3``, ``"macro"``; ``...`` for anything else)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value) if not isinstance(value, str) else '"' + value.replace('"', '\\"') + '"'
    return "..."
