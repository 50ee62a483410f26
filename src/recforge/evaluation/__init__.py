"""Evaluation: metrics, ranking protocols, the `Evaluator` and its statistics.

Pointwise classification metrics (ROC-AUC, GAUC, log loss, calibration error) are in
`recforge.evaluation.classification`.

Sampled protocols (``sampled-N``) can reorder models relative to full ranking (Krichene &
Rendle, KDD 2020); see `recforge.evaluation.protocols`.
"""

from recforge.evaluation.classification import calibration_error, gauc, log_loss, roc_auc
from recforge.evaluation.evaluator import EvaluationResult, Evaluator, early_stopping
from recforge.evaluation.metrics import MetricSpec, parse_metric, valid_metric_names
from recforge.evaluation.protocols import FullRanking, Protocol, RankedCases, SampledRanking
from recforge.evaluation.stats import bootstrap_ci, paired_tests

__all__ = [
    "EvaluationResult", "Evaluator", "FullRanking", "MetricSpec", "Protocol", "RankedCases",
    "SampledRanking", "bootstrap_ci", "calibration_error", "early_stopping", "gauc", "log_loss",
    "paired_tests", "parse_metric", "roc_auc", "valid_metric_names",
]
