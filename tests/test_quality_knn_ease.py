"""ML-100K quality bands of the kNN models and EASE with their default hyperparameters.

Figures and how they were measured: benchmarks/bench_knn_ease.py (``quality``). Top-N:
leave-last-out, 99 sampled negatives (seed 0, pessimistic ties), HR@10. Ratings: the
canonical u1 fold, RMSE (Surprise's KNNBaseline item/pearson_baseline: 0.9359 there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recforge.data.movielens import load_ml100k_fold, read_ml100k
from recforge.evaluation import Evaluator
from recforge.models import create_model

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

#: model -> (low, high) band of sampled-99 HR@10 on leave-last-out (measured 2026-11-23 with
#: the defaults chosen on validation data: EASE (weight_exponent 0.3, reg 30) 0.6076,
#: item-kNN (asymmetric cosine alpha 0.2, k 200, candidate neighbourhood) 0.5440, user-kNN
#: 0.5302; the previous defaults, EASE reg 500 0.596 and item-kNN BM25/dot/k 20 0.502, fall
#: outside. The issue's EASE bar 0.61 is still not met, see ease.py)
TOP_N_BANDS = {
    "ease": (0.600, 0.618),
    "item-knn-implicit": (0.530, 0.556),
    "user-knn-implicit": (0.51, 0.55),
}
#: (model, prediction) -> (low, high) band of u1 RMSE
RMSE_BANDS = {
    ("item-knn", "baseline-centred"): (0.928, 0.940),
    ("user-knn", "baseline-centred"): (0.927, 0.939),
    ("item-knn", "mean-centred"): (0.928, 0.940),
    ("user-knn", "mean-centred"): (0.943, 0.955),
}


@pytest.fixture(scope="module")
def leave_last_out_split(ml100k_dir: Path) -> Any:
    from recforge.data.splits import leave_last_out

    # the issues' bars were set with timestamp ties going to the larger item id: pinned
    return leave_last_out(read_ml100k(ml100k_dir), ties="item-id")


@pytest.mark.parametrize("name", sorted(TOP_N_BANDS))
def test_top_n_sampled_hr_band(leave_last_out_split: Any, name: str) -> None:
    train, test = leave_last_out_split.train, leave_last_out_split.test
    model = create_model(name).fit(train)
    hr = Evaluator(train, test, ["hr@10"], "sampled-99", seed=0).evaluate(model).metrics["HR@10"]
    low, high = TOP_N_BANDS[name]
    assert low <= hr <= high, f"{name}: HR@10 {hr:.4f} outside [{low}, {high}]"


@pytest.mark.parametrize(("name", "prediction"), sorted(RMSE_BANDS))
def test_rating_rmse_band_on_u1(ml100k_dir: Path, name: str, prediction: str) -> None:
    train, test = load_ml100k_fold("u1", data_dir=ml100k_dir.parent, download=False)
    model = create_model(name, prediction=prediction).fit(train)
    error = model.predict(test.users, test.items).astype(np.float64) - test.ratings
    rmse = float(np.sqrt(np.mean(error**2)))
    low, high = RMSE_BANDS[(name, prediction)]
    assert low <= rmse <= high, f"{name} {prediction}: RMSE {rmse:.4f} outside [{low}, {high}]"
