"""The service's routes end to end (in process, FastAPI's TestClient): the request path,
validation errors naming the field, filters, re-ranking, freshness through the feature store
in both backends, A/B routing with exposure logging, and the metrics."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_app_support import TOKEN, VERSIONS, auth, make_app, synthetic_data

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("RECFORGE_API_TOKEN", TOKEN)
    with TestClient(make_app(tmp_path / "state")) as test_client:
        yield test_client


def _training_items(user: str) -> set[str]:
    data = synthetic_data()
    frame = data.to_pandas()
    return {str(i) for i in frame.loc[frame["user"].astype(str) == user, "item"]}


def _ids(answer: dict) -> list[str]:
    return [item["id"] for item in answer["items"]]


def test_recommend_known_user_leaves_out_training_items(client: TestClient) -> None:
    response = client.post("/recommend", json={"user_id": "1", "k": 10})
    assert response.status_code == 200
    answer = response.json()
    ids = _ids(answer)
    assert len(ids) == 10 and len(set(ids)) == 10
    assert not set(ids) & _training_items("1")
    assert answer["model_version"] == VERSIONS[-1]  # no pointer: the last version by name
    assert answer["arm"] == "default" and answer["source"] == "index"
    scores = [item["score"] for item in answer["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(item["title"] for item in answer["items"])
    assert any(item["genres"] for item in answer["items"])


def test_anonymous_history_is_encoded_and_excluded(client: TestClient) -> None:
    history = ["1", "2", "3"]
    answer = client.post("/recommend", json={"history": history, "k": 5}).json()
    assert answer["source"] == "encoder"
    assert len(answer["items"]) == 5 and not set(_ids(answer)) & set(history)
    # an unknown user with no history gets the popular items, not an error
    cold = client.post("/recommend", json={"user_id": "no-such-user", "k": 5}).json()
    assert cold["source"] == "popularity" and len(cold["items"]) == 5


def test_similar_items(client: TestClient) -> None:
    answer = client.get("/similar/5", params={"k": 4}).json()
    assert len(answer["items"]) == 4 and "5" not in _ids(answer)
    assert client.get("/similar/no-such-item").status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"user_id": "1", "k": 0}, "k"),
    ({"user_id": "1", "k": "ten"}, "k"),
    ({"user_id": "1", "colour": "red"}, "colour"),
    ({"user_id": ["1"]}, "user_id"),
    ({"history": "1"}, "history"),
    ({"user_id": "1", "filters": {"exclude": [""]}}, "filters.exclude.0"),
])
def test_validation_errors_name_the_field(client: TestClient, body: dict, field: str) -> None:
    response = client.post("/recommend", json=body)
    assert response.status_code == 422
    fields = [error["field"] for error in response.json()["detail"]["errors"]]
    assert field in fields, fields


def test_event_validation_names_the_field(client: TestClient) -> None:
    response = client.post("/events", headers=auth(),
                           json={"event_id": "e", "user_id": "1", "item_id": "2"})
    assert response.status_code == 422
    assert response.json()["detail"]["errors"][0]["field"] == "event"


def test_values_the_service_refuses_are_400(client: TestClient) -> None:
    response = client.post("/recommend", json={"user_id": "1", "k": 101})  # max_k 100
    assert response.status_code == 400 and "max_k" in response.json()["detail"]["message"]
    response = client.post("/recommend", json={"user_id": "1",
                                               "filters": {"genres": ["Cooking"]}})
    assert response.status_code == 400 and "Cooking" in response.json()["detail"]["message"]


def test_filters(client: TestClient) -> None:
    base = client.post("/recommend", json={"user_id": "2", "k": 10}).json()
    banned = _ids(base)[:3]
    answer = client.post("/recommend", json={"user_id": "2", "k": 10,
                                             "filters": {"exclude": banned}}).json()
    assert len(answer["items"]) == 10 and not set(_ids(answer)) & set(banned)
    genre = next(g for item in base["items"] for g in item["genres"])
    dropped = client.post("/recommend", json={"user_id": "2", "k": 10,
                                              "filters": {"exclude_genres": [genre]}}).json()
    assert dropped["items"] and all(genre not in item["genres"] for item in dropped["items"])
    kept = client.post("/recommend", json={"user_id": "2", "k": 5,
                                           "filters": {"genres": [genre]}}).json()
    assert kept["items"] and all(genre in item["genres"] for item in kept["items"])


def _diversity(answers: list[dict]) -> float:
    values = []
    for answer in answers:
        genres = [set(item["genres"]) for item in answer["items"]]
        pairs = [(a, b) for i, a in enumerate(genres) for b in genres[i + 1:]]
        cos = [len(a & b) / np.sqrt(len(a) * len(b)) if a and b else 0.0 for a, b in pairs]
        values.append(1 - np.mean(cos))
    return float(np.mean(values))


def test_mmr_reranking_raises_list_diversity(tmp_path: Path) -> None:
    users = [str(u) for u in range(1, 21)]
    plain = TestClient(make_app(tmp_path / "a"))
    mmr = TestClient(make_app(tmp_path / "b", rerank={"method": "mmr", "lambda_": 0.3}))
    dpp = TestClient(make_app(tmp_path / "c", rerank={"method": "dpp", "theta": 0.3}))
    lists = {name: [c.post("/recommend", json={"user_id": u, "k": 10}).json() for u in users]
             for name, c in (("plain", plain), ("mmr", mmr), ("dpp", dpp))}
    assert _diversity(lists["mmr"]) > _diversity(lists["plain"]) + 0.02
    assert _diversity(lists["dpp"]) > _diversity(lists["plain"]) + 0.02
    for user, answer in zip(users, lists["mmr"]):  # re-ranking keeps the seen items out
        assert len(answer["items"]) == 10 and not set(_ids(answer)) & _training_items(user)


def _freshness(client: TestClient) -> None:
    before = client.post("/recommend", json={"user_id": "7", "k": 10}).json()
    clicked = _ids(before)[0]
    event = {"event_id": "fresh-1", "user_id": "7", "item_id": clicked, "event": "click"}
    response = client.post("/events", json=event, headers=auth())
    assert response.status_code == 200 and response.json() == {"accepted": 1, "duplicates": 0}
    after = client.post("/recommend", json={"user_id": "7", "k": 10}).json()
    assert clicked not in _ids(after)
    assert after["source"] == "index+fresh"  # the click is pooled into the user tower
    old = {item["id"]: item["score"] for item in before["items"]}
    moved = [abs(item["score"] - old[item["id"]]) for item in after["items"]
             if item["id"] in old]
    assert moved and max(moved) > 1e-4  # the same items score differently: a new query
    again = client.post("/events", json=[event], headers=auth()).json()
    assert again == {"accepted": 0, "duplicates": 1}
    # another user is unaffected by user 7's click
    other = client.post("/recommend", json={"user_id": "8", "k": 10}).json()
    assert other["source"] == "index"


def test_freshness_sqlite(client: TestClient) -> None:
    _freshness(client)


def test_freshness_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str,
                         redis_prefix: str) -> None:
    monkeypatch.setenv("RECFORGE_API_TOKEN", TOKEN)
    separator = "&" if "?" in redis_url else "?"
    store = f"{redis_url}{separator}prefix={redis_prefix}"
    with TestClient(make_app(tmp_path / "state", serve={"store": store})) as redis_client:
        assert redis_client.get("/ready").json()["status"] == "ready"
        _freshness(redis_client)


def test_events_survive_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFORGE_API_TOKEN", TOKEN)
    first = TestClient(make_app(tmp_path / "state"))
    item = _ids(first.post("/recommend", json={"user_id": "9", "k": 3}).json())[0]
    first.post("/events", headers=auth(),
               json={"event_id": "r1", "user_id": "9", "item_id": item, "event": "click"})
    first.app.state.service.close()
    second = TestClient(make_app(tmp_path / "state"))
    answer = second.post("/recommend", json={"user_id": "9", "k": 10}).json()
    assert item not in _ids(answer) and answer["source"] == "index+fresh"


def test_ab_routing_and_exposures(tmp_path: Path) -> None:
    from recforge.abtest.exposure import ExposureLog

    ab = {"experiments": [{"name": "model-ab", "arms": {"control": 0.5, "treatment": 0.5},
                           "versions": {"control": VERSIONS[0], "treatment": VERSIONS[1]}}]}
    client = TestClient(make_app(tmp_path / "state", ab=ab))
    assigner = client.app.state.service.assigner
    seen = {}
    for user in map(str, range(1, 41)):
        answer = client.post("/recommend", json={"user_id": user, "k": 3}).json()
        arm = assigner.assign(user)["model-ab"]
        assert answer["arm"] == arm
        assert answer["model_version"] == {"control": VERSIONS[0], "treatment": VERSIONS[1]}[arm]
        seen[arm] = seen.get(arm, 0) + 1
    assert set(seen) == {"control", "treatment"}
    client.app.state.service.close()
    rows = ExposureLog(tmp_path / "state" / "exposures.db").rows("model-ab")
    assert len(rows) == 40 and all(len(row.items) == 3 for row in rows)
    assert {row.arm for row in rows} == {"control", "treatment"}
    metrics = client.get("/metrics").text
    assert f'recforge_model_info{{arm="model-ab:treatment",version="{VERSIONS[1]}"}} 1.0' \
        in metrics


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_metrics_after_traffic(client: TestClient) -> None:
    for user in map(str, range(1, 31)):
        assert client.post("/recommend", json={"user_id": user, "k": 10}).status_code == 200
    client.post("/events", headers=auth(), json={"event_id": "m1", "user_id": "1",
                                                  "item_id": "3", "event": "click",
                                                  "timestamp": 1.0})
    client.post("/recommend", json={"user_id": "1", "k": 0})
    text = client.get("/metrics").text
    assert _value(text, 'recforge_requests_total{route="/recommend",status="200"}') == 30
    assert _value(text, 'recforge_requests_total{route="/recommend",status="422"}') == 1
    assert _value(text, 'recforge_request_latency_seconds_count{route="/recommend"}') == 31
    for stage in ("features", "retrieve", "rank", "rerank", "filter"):
        assert _value(text, f'recforge_stage_latency_seconds_count{{stage="{stage}"}}') == 30
    assert _value(text, 'recforge_feature_store_latency_seconds_count{op="user"}') == 30
    assert _value(text, 'recforge_feature_store_latency_seconds_count{op="apply"}') == 1
    assert _value(text, "recforge_event_lag_seconds") > 1e9  # an event stamped at t=1
    assert _value(text, f'recforge_model_info{{arm="default",version="{VERSIONS[-1]}"}}') == 1
    assert 0.0 < _value(text, "recforge_list_diversity") <= 1.0
    coverage = _value(text, "recforge_catalogue_coverage")
    assert 10 / 200 <= coverage <= 1.0
    assert _value(text, "recforge_item_age_days") > 365
    assert _value(text, "recforge_popularity_bias") > 0


def test_health_ready_models(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["detail"]["model_version"] == VERSIONS[-1]
    models = client.get("/models").json()
    assert models["active"] == VERSIONS[-1]
    assert [v["name"] for v in models["versions"]] == list(VERSIONS)


def test_a_ranker_reorders_the_candidates(tmp_path: Path) -> None:
    from recforge.models.registry import create_model

    data = synthetic_data()
    ranker = create_model("most-popular").fit(data)
    ranker.save(tmp_path / "ranker")
    client = TestClient(make_app(tmp_path / "state", serve={"ranker": str(tmp_path / "ranker")}))
    answer = client.post("/recommend", json={"user_id": "3", "k": 10,
                                             "context": {"device": "web"}}).json()
    counts = dict(zip(map(str, data.item_map.ids), data.item_counts))
    popularity = [counts[i] for i in _ids(answer)]
    assert popularity == sorted(popularity, reverse=True)  # the ranker's order
    assert not set(_ids(answer)) & _training_items("3")
    plain = TestClient(make_app(tmp_path / "plain")).post(
        "/recommend", json={"user_id": "3", "k": 10}).json()
    assert _ids(plain) != _ids(answer)
