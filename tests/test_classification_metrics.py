"""Classification metrics: hand-computed cases and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from recforge.errors import InputError
from recforge.evaluation.classification import calibration_error, gauc, log_loss, roc_auc


def _random_case(seed: int, n: int = 400, n_users: int = 30) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(size=n) + labels, 1)  # rounding makes many ties
    users = rng.integers(0, n_users, n) * 7 - 50  # arbitrary (negative, sparse) ids
    return labels, scores, users


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn_with_ties(seed: int) -> None:
    labels, scores, _ = _random_case(seed)
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_by_hand_ties_get_half_credit() -> None:
    # pairs (pos, neg): (0.5 vs 0.5) tie = 1/2, (0.5 vs 0.1) = 1, (0.9 vs both) = 2 -> 3.5 / 4
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1]) == 3.5 / 4
    assert roc_auc([True, False], [3.0, 3.0]) == 0.5
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gauc_is_the_impression_weighted_mean_of_sklearn_per_user_auc(seed: int) -> None:
    labels, scores, users = _random_case(seed)
    aucs, weights = [], []
    for u in np.unique(users):
        mine = users == u
        if 0 < labels[mine].sum() < mine.sum():
            aucs.append(roc_auc_score(labels[mine], scores[mine]))
            weights.append(mine.sum())
    assert gauc(labels, scores, users) == pytest.approx(np.average(aucs, weights=weights))


def test_gauc_skips_one_class_users_by_hand() -> None:
    labels = np.array([1, 0, 0, 1, 0, 0, 1, 1])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.4, 0.0, 1.0])
    users = np.array([5, 5, 5, 9, 9, 9, 2, 2])  # user 2 has positives only: skipped
    # user 5: AUC 1 over 3 rows; user 9: the positive is below both negatives, AUC 0, 3 rows
    assert gauc(labels, scores, users) == 0.5
    assert np.isnan(gauc([1, 0], [0.3, 0.2], [1, 2]))


@pytest.mark.parametrize("seed", [0, 1])
def test_log_loss_matches_sklearn_including_clipped_zeros_and_ones(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    probs = rng.uniform(size=300)
    probs[:10] = [0.0, 1.0] * 5  # clipped at the float64 epsilon, as scikit-learn does
    assert log_loss(labels, probs) == pytest.approx(sk_log_loss(labels, probs), rel=1e-12)


def test_log_loss_by_hand_and_custom_eps() -> None:
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert log_loss([1], [0.0], eps=1e-3) == pytest.approx(-np.log(1e-3))


def test_calibration_error_by_hand() -> None:
    # B = 2: bin 0 holds p = 0.2, 0.4 (mean 0.3, labels mean 0.5); bin 1 holds p = 0.6, 1.0
    # (mean 0.8, labels mean 1.0). ECE = 2/4 * 0.2 + 2/4 * 0.2 = 0.2.
    ece = calibration_error([0, 1, 1, 1], [0.2, 0.4, 0.6, 1.0], n_bins=2)
    assert ece == pytest.approx(0.2)
    assert calibration_error([0, 1], [0.0, 1.0]) == 0.0  # p = 1 falls in the last bin


def test_calibration_error_weights_bins_by_count_against_a_loop() -> None:
    rng = np.random.default_rng(3)
    probs = rng.uniform(size=500)
    labels = (rng.uniform(size=500) < probs**2).astype(int)
    expected = 0.0
    for b in range(15):
        mine = (probs >= b / 15) & ((probs < (b + 1) / 15) | (b == 14))
        if mine.any():
            expected += mine.mean() * abs(labels[mine].mean() - probs[mine].mean())
    assert calibration_error(labels, probs, n_bins=15) == pytest.approx(expected)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: roc_auc([0, 2], [0.1, 0.2]), "0 or 1"),
    (lambda: roc_auc([], []), "non-empty"),
    (lambda: roc_auc([0, 1], [0.1]), "shape"),
    (lambda: roc_auc([0, 1], [0.1, np.nan]), "finite"),
    (lambda: gauc([0, 1], [0.1, 0.2], [1]), "users"),
    (lambda: log_loss([0, 1], [0.1, 1.5]), r"\[0, 1\]"),
    (lambda: log_loss([0, 1], [0.1, 0.5], eps=0.0), "eps"),
    (lambda: calibration_error([0, 1], [0.1, 0.5], n_bins=0), "n_bins"),
])
def test_bad_inputs_are_input_errors(call, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()
