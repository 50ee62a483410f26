"""The synthetic Criteo-like generator: the true probabilities are the documented logistic
model (recomputed by brute force), a logistic regression on the codec's design matrix gets
close to the ground-truth AUC when the truth is linear and falls well short of it with the
pairwise interactions, categories follow their Zipf laws, and a seed fixes the rows whatever
their number or chunking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from recforge.data.codec import FeatureCodec
from recforge.data.ctr_formats import CTRData
from recforge.data.synthetic_ctr import (
    BLOCK_ROWS,
    CriteoLikeWorld,
    criteo_like_chunks,
    make_criteo_like,
)
from recforge.errors import ParameterError
from recforge.evaluation.classification import roc_auc

#: small enough for a logistic regression on 150k rows in seconds
MEDIUM = {"n_categorical": 10, "n_numeric": 5, "vocab_max": 2000, "n_pairs": 8, "seed": 5}
TRAIN, ROWS = 150_000, 200_000


def _lr_and_truth_auc(interaction_strength: float) -> tuple[float, float, CTRData]:
    data, probability = make_criteo_like(ROWS, numeric="log1p", min_count=1,
                                         interaction_strength=interaction_strength, **MEDIUM)
    train, test = (data.events.subset(np.arange(TRAIN)),
                   data.events.subset(np.arange(TRAIN, ROWS)))
    codec = FeatureCodec(data.fields).fit(train.columns())
    model = LogisticRegression(C=0.1, max_iter=300).fit(codec.design_matrix(train.columns()),
                                                        train.label("label"))
    scores = model.decision_function(codec.design_matrix(test.columns()))
    return (roc_auc(test.label("label"), scores),
            roc_auc(test.label("label"), probability[TRAIN:]), data)


def test_logistic_regression_nears_a_linear_ground_truth() -> None:
    lr, truth, data = _lr_and_truth_auc(0.0)
    assert truth > 0.7
    assert truth - 0.01 < lr <= truth + 0.005
    assert abs(data.events.label("label").mean() - 0.25) < 0.01


def test_pairwise_interactions_are_beyond_a_linear_model() -> None:
    lr, truth, _ = _lr_and_truth_auc(1.5)
    assert truth > 0.8
    assert truth - lr > 0.05


def test_probabilities_are_the_documented_logistic_model() -> None:
    world = CriteoLikeWorld(**MEDIUM)
    frame, probability = world.rows(BLOCK_ROWS - 20, BLOCK_ROWS + 20)
    for row in range(len(frame)):
        logit = world.bias
        codes = [int(frame[f"C{j + 1}"].cat.codes.iloc[row]) for j in range(world.n_categorical)]
        for j, code in enumerate(codes):
            logit += world.weights[j][code] if code >= 0 else 0.0
        for i in range(world.n_numeric):
            x = frame[f"I{i + 1}"].iloc[row]
            if not np.isnan(x):
                logit += world.numeric_weights[i] * (np.log1p(x) - world.mu[i]) / world.spread[i]
        for a, b in world.pairs.tolist():
            if codes[a] >= 0 and codes[b] >= 0:
                logit += float(world.embeddings[a][codes[a]] @ world.embeddings[b][codes[b]])
        assert probability[row] == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-5)


def test_categories_follow_their_zipf_laws() -> None:
    world = CriteoLikeWorld(**MEDIUM)
    frame, _ = world.rows(0, 100_000)
    assert ((world.sizes >= 10) & (world.sizes <= 2000)).all()
    for j in range(world.n_categorical):
        column = frame[f"C{j + 1}"]
        vocabulary = column.cat.categories
        assert vocabulary.is_unique and (vocabulary.str.fullmatch("[0-9a-f]{8}")).all()
        codes = column.cat.codes.to_numpy()
        missing = world.missing[j]
        assert abs((codes < 0).mean() - missing) < 5 * np.sqrt(missing / len(codes)) + 1e-3
        top = world.cdfs[j][0] * (1 - missing)  # the rank-1 value's probability
        share = (codes == world.orders[j][0]).mean()
        assert abs(share - top) < 5 * np.sqrt(top * (1 - top) / len(codes))
        counts = np.bincount(codes[codes >= 0], minlength=world.sizes[j])[world.orders[j]]
        assert counts[:5].sum() > counts[-5:].sum()


def test_a_seed_fixes_the_rows_whatever_their_number_or_chunking() -> None:
    small = {"n_categorical": 6, "n_numeric": 3, "vocab_max": 500, "n_pairs": 4, "seed": 9}
    n = BLOCK_ROWS + 5000
    whole, probability = make_criteo_like(n, **small)
    prefix, head = make_criteo_like(1000, **small)
    pd.testing.assert_frame_equal(prefix.events.context,
                                  whole.events.context.iloc[:1000].reset_index(drop=True))
    assert np.array_equal(head, probability[:1000])
    chunks = list(criteo_like_chunks(n, 7777, **small))
    assert [len(f) for f, _ in chunks] == [7777] * (n // 7777) + [n % 7777]
    assert np.array_equal(np.concatenate([p for _, p in chunks]), probability)
    labels = np.concatenate([f["label"].to_numpy() for f, _ in chunks])
    assert np.array_equal(labels, whole.events.label("label"))
    raw = pd.concat([f for f, _ in chunks], ignore_index=True)
    pd.testing.assert_series_equal(raw["C1"], whole.events.context["C1"])
    _, other_probability = make_criteo_like(1000, **{**small, "seed": 10})
    assert not np.allclose(other_probability, head)


def test_parameters_are_checked() -> None:
    with pytest.raises(ParameterError, match="vocab_min"):
        make_criteo_like(10, vocab_min=1)
    with pytest.raises(ParameterError, match="unknown parameter"):
        make_criteo_like(10, vocab=5)
    with pytest.raises(ParameterError, match="n_rows"):
        make_criteo_like(0)
    with pytest.raises(ValueError, match="n_pairs"):
        make_criteo_like(10, n_categorical=3, n_pairs=4)
    with pytest.raises(ValueError, match="vocab_max"):
        make_criteo_like(10, vocab_min=100, vocab_max=50)
