"""Click models (recforge.models.ranking): the common contract on implicit interactions, and
events with features, labels and context: save/load, scoring, early stopping, errors."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from recforge.data.codec import Field
from recforge.data.events import Events
from recforge.errors import InputError, ParameterError
from recforge.models.base import Recommender
from recforge.models.registry import create_model
from recforge.testing import ModelContract

FAST = {"epochs": 2, "threads": 1, "embedding_dim": 4, "train_batch_size": 256}
CLICK_MODELS = ["logistic-regression", "fm", "deepfm", "wide-deep", "xdeepfm", "dcn", "dcn-v2",
                "shared-bottom", "mmoe", "ple"]
MULTI_TASK = ["shared-bottom", "mmoe", "ple"]


def _params(name: str, **extra: object) -> dict:
    params = dict(FAST, **extra)
    if name == "logistic-regression":
        params.pop("embedding_dim")
    if name == "xdeepfm":
        params.setdefault("cin_layers", (16, 16))
    return params


class TestDeepFMContract(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("deepfm", seed=seed, layers=(16,), **FAST)


class TestFMContract(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("fm", seed=seed, **FAST)


class _Contract(ModelContract):
    """The contract of ``model`` with small ``params``."""

    model = ""
    params: ClassVar[dict] = {}

    def make_model(self, seed: int = 0) -> Recommender:
        return create_model(self.model, seed=seed, **FAST, **self.params)


class TestWideDeepContract(_Contract):
    # user x hour has 61 x 25 combinations: hashed into 64 buckets; item x weekday exact
    model, params = "wide-deep", {"layers": (16,), "cross_buckets": 64,
                                  "crosses": [["user", "hour"], ["item", "weekday"]]}


class TestXDeepFMContract(_Contract):
    model, params = "xdeepfm", {"layers": (16,), "cin_layers": (6, 5)}


class TestDCNContract(_Contract):
    model, params = "dcn", {"layers": (16,), "cross_layers": 2}


class TestDCNV2Contract(_Contract):
    model, params = "dcn-v2", {"layers": (16,), "rank": 3, "experts": 2,
                               "structure": "stacked"}


class TestSharedBottomContract(_Contract):
    model, params = "shared-bottom", {"layers": (16,), "tower_layers": (8,)}


class TestMMoEContract(_Contract):
    model, params = "mmoe", {"layers": (16,), "experts": 2, "tower_layers": (8,)}


class TestPLEContract(_Contract):
    model, params = "ple", {"layers": (16,), "shared_experts": 1, "task_experts": 2,
                            "tower_layers": ()}


def synthetic_events(n: int = 3000, seed: int = 0) -> Events:
    """Events whose label depends on a context column and an item feature."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 50, n)
    items = rng.integers(0, 40, n)
    device = rng.choice(["phone", "tv"], n)
    item_kind = (np.arange(40) % 2)[items]
    logit = 2.0 * (device == "tv") * item_kind - 1.0 * (device == "phone") * item_kind
    click = rng.random(n) < 1 / (1 + np.exp(-logit))
    import pandas as pd

    frame = pd.DataFrame({"user": users, "item": items, "device": device,
                          "kind": item_kind.astype(str), "click": click.astype(float),
                          "timestamp": np.arange(n)})
    return Events.from_pandas(frame, labels=["click"])


@pytest.mark.parametrize("name", CLICK_MODELS)
def test_learns_context_interaction_and_round_trips(name, tmp_path):
    events = synthetic_events()
    train, valid, test = events.split_by_time((0.6, 0.2, 0.2))
    model = create_model(name, **_params(name, epochs=8, learning_rate=0.02))
    model.fit(train, valid)
    p = model.predict_proba(test)
    assert p.shape == (len(test),) and ((p > 0) & (p < 1)).all()
    from recforge.evaluation.classification import roc_auc

    auc = roc_auc(test.label("click"), p)
    # kind x device decides the label: LR has no cross term but sees both main effects
    assert auc > (0.6 if name == "logistic-regression" else 0.68), auc
    loaded = Recommender.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(test), p, rtol=1e-5, atol=1e-6)


def test_scores_candidates_with_query_context():
    from recforge.data.query import QueryBatch

    events = synthetic_events()
    model = create_model("deepfm", **_params("deepfm", epochs=8, learning_rate=0.02,
                                             layers=(16,)))
    model.fit(events)
    odd_items = np.array([[1, 3, 5, 0, 2, 4]])
    tv = QueryBatch(np.array([0]), np.array([0, 0]), np.empty(0, np.int64),
                    context={"device": np.array(["tv"])})
    phone = QueryBatch(np.array([0]), np.array([0, 0]), np.empty(0, np.int64),
                       context={"device": np.array(["phone"])})
    s_tv, s_phone = model.score(tv, odd_items)[0], model.score(phone, odd_items)[0]
    kind_one = [0, 1, 2]  # item 1, 3, 5 are of kind 1
    assert s_tv[kind_one].mean() > s_tv[3:].mean()
    assert s_phone[kind_one].mean() < s_phone[3:].mean()
    padded = model.score(tv, np.array([[1, -1]]))
    assert padded[0, 1] == -np.inf


def test_multi_task_labels_and_regression():
    events = synthetic_events()
    events.labels["dwell"] = (events.labels["click"] * 30 + 5).astype(np.float32)
    model = create_model("deepfm", **_params("deepfm", tasks=("click", "dwell"),
                                             task_weights=(1.0, 0.5), layers=(8,)))
    model.fit(events)
    out = model.predict_proba(events)
    assert out.shape == (len(events), 2)
    assert ((out[:, 0] > 0) & (out[:, 0] < 1)).all()
    assert 5 <= np.median(out[:, 1]) <= 35


def test_errors():
    events = synthetic_events(300)
    with pytest.raises(ParameterError, match="task_weights"):
        create_model("fm", **FAST, tasks=("click",), task_weights=(1.0, 2.0)).fit(events)
    with pytest.raises(KeyError, match="no label 'nope'"):
        create_model("fm", **FAST, tasks=("nope",)).fit(events)
    with pytest.raises(InputError, match="no column 'missing'"):
        create_model("fm", **FAST, fields=[Field("missing", "categorical")]).fit(events)
    with pytest.raises(ParameterError, match="fields"):
        create_model("fm", fields=[{"name": "x", "kind": "bogus"}])
    with pytest.raises(ParameterError, match="loss"):
        create_model("deepfm", loss="bpr")
    with pytest.raises(ParameterError, match="layers"):
        create_model("logistic-regression", layers=(4,))


def _group_means(model: Recommender, events: Events) -> dict[tuple[str, str], float]:
    """Mean predicted probability per (device, kind) of ``events``."""
    p = model.predict_proba(events)
    device, kind = events.context["device"].to_numpy(), events.context["kind"].to_numpy()
    return {(d, k): float(p[(device == d) & (kind == k)].mean())
            for d in ("tv", "phone") for k in ("0", "1")}


def test_wide_crosses_learn_what_an_additive_model_cannot():
    """Without a deep part (``layers=()``: a linear map of the field vectors) Wide & Deep is
    additive in the logit: kind 1 moves both devices the same way. The device x kind cross
    lets it learn that kind 1 helps on a tv and hurts on a phone."""
    events = synthetic_events()
    params = _params("wide-deep", epochs=8, learning_rate=0.02, layers=())
    crossed = create_model("wide-deep", crosses=[["device", "kind"]], **params).fit(events)
    means = _group_means(crossed, events)
    assert means["tv", "1"] > means["tv", "0"] + 0.1
    assert means["phone", "1"] < means["phone", "0"] - 0.05
    additive = _group_means(create_model("wide-deep", **params).fit(events), events)
    assert (additive["tv", "1"] > additive["tv", "0"]) == \
        (additive["phone", "1"] > additive["phone", "0"])


def test_wide_crosses_refuse_unknown_fields():
    events = synthetic_events(300)
    with pytest.raises(InputError, match="crosses: 'colour' in \\['device', 'colour'\\] is "
                                         "not a field"):
        create_model("wide-deep", **FAST, crosses=[["device", "colour"]]).fit(events)
    with pytest.raises(ParameterError, match="crosses\\[0\\]"):
        create_model("wide-deep", crosses=[["device"]])
    with pytest.raises(ParameterError, match="cross_buckets"):
        create_model("wide-deep", cross_buckets=0)


@pytest.mark.parametrize("name", MULTI_TASK)
def test_multi_task_models_give_each_task_its_output(name):
    import torch

    from recforge.evaluation.classification import roc_auc

    events = synthetic_events()
    events.labels["dwell"] = (events.labels["click"] * 30 + 5).astype(np.float32)
    train, _, test = events.split_by_time((0.6, 0.2, 0.2))
    model = create_model(name, **_params(name, tasks=("click", "dwell"), epochs=8,
                                         learning_rate=0.02, layers=(16,)))
    model.fit(train)
    out = model.predict_proba(test)
    assert out.shape == (len(test), 2)
    assert ((out[:, 0] > 0) & (out[:, 0] < 1)).all() and 5 <= np.median(out[:, 1]) <= 35
    clicks = test.label("click")
    assert roc_auc(clicks, out[:, 0]) > 0.65 and roc_auc(clicks, out[:, 1]) > 0.65
    rows = model.inputs_.events(test, None)
    with torch.no_grad():
        _, gates = model.module_.extract({k: torch.from_numpy(v) for k, v in rows.items()})
    for weights in gates:  # every gate's weights over its experts sum to one
        np.testing.assert_allclose(weights.sum(-1).numpy(), 1.0, rtol=1e-5)


def test_new_model_parameters_are_checked():
    for name, params, match in [
        ("xdeepfm", {"cin_layers": (1,)}, "cin_layers"),
        ("dcn", {"cross_layers": 0}, "cross_layers"),
        ("dcn-v2", {"rank": 0}, "rank"),
        ("dcn-v2", {"structure": "tower"}, "structure"),
        ("dcn-v2", {"experts": 0}, "experts"),
        ("mmoe", {"layers": ()}, "layers"),
        ("mmoe", {"tower_layers": (0,)}, "tower_layers"),
        ("ple", {"levels": 0}, "levels"),
        ("ple", {"task_experts": 0}, "task_experts"),
        ("ple", {"shared_experts": -1}, "shared_experts"),
        ("shared-bottom", {"experts": 2}, "experts"),
    ]:
        with pytest.raises(ParameterError, match=match):
            create_model(name, **params)


def test_streams_an_epoch_from_parquet(tmp_path):
    from recforge.data.ctr_formats import ParquetEvents
    from recforge.data.synthetic_ctr import write_criteo_like_parquet
    from recforge.evaluation.classification import roc_auc

    path = write_criteo_like_parquet(tmp_path / "clicks.parquet", 24_000, chunk_rows=4_000,
                                     seed=3, n_numeric=3, n_categorical=6, n_pairs=5)
    stream = ParquetEvents(path, ["label"], chunk_rows=4_000)
    model = create_model("fm", epochs=3, threads=1, embedding_dim=4, learning_rate=0.01,
                         codec_rows=8_000)
    model.fit(stream)
    assert [h["samples"] for h in model.history_] == [24_000] * 3
    chunks = list(stream.chunks())
    held_out = chunks[-1]
    auc = roc_auc(held_out.label("label"), model.predict_proba(held_out))
    assert auc > 0.65, auc
    again = create_model("fm", epochs=3, threads=1, embedding_dim=4, learning_rate=0.01,
                         codec_rows=8_000).fit(stream)
    np.testing.assert_array_equal(again.predict_proba(held_out), model.predict_proba(held_out))
