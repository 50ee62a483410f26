"""Hot swap under load: activating another version while a thread pool fires requests fails
none of them; requests started before the swap finish on the old version."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_app_support import TOKEN, VERSIONS, auth, make_app

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

REQUESTS = 400


def test_activation_under_load_fails_no_request(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFORGE_API_TOKEN", TOKEN)
    with TestClient(make_app(tmp_path / "state")) as client:
        started = threading.Event()

        def one(i: int) -> tuple[int, str | None]:
            started.set()
            body = {"user_id": str(1 + i % 300), "k": 10} if i % 3 else {"history": ["1"]}
            response = client.post("/recommend", json=body)
            version = response.json().get("model_version") if response.status_code == 200 \
                else None
            return response.status_code, version

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(one, i) for i in range(REQUESTS)]
            started.wait(10)
            swaps = [client.post(f"/models/{VERSIONS[0]}/activate", headers=auth()),
                     client.post("/models/rollback", headers=auth()),
                     client.post(f"/models/{VERSIONS[0]}/activate", headers=auth())]
            results = [future.result(timeout=120) for future in futures]
        assert [s.status_code for s in swaps] == [200, 200, 200]
        statuses = [status for status, _ in results]
        assert statuses.count(200) == REQUESTS, {s for s in statuses if s != 200}
        versions = {version for _, version in results}
        assert versions <= set(VERSIONS) and VERSIONS[0] in versions
        after = client.post("/recommend", json={"user_id": "5"}).json()
        assert after["model_version"] == VERSIONS[0]
        text = client.get("/metrics").text
        assert f'recforge_model_info{{arm="default",version="{VERSIONS[0]}"}} 1.0' in text
        assert f'recforge_model_info{{arm="default",version="{VERSIONS[1]}"}} 0.0' in text


def test_a_request_in_flight_finishes_on_its_version(tmp_path: Path) -> None:
    service = make_app(tmp_path / "state").state.service
    served, _, _ = service.route("5")  # a request takes the version once, at its start
    service.registry.activate(VERSIONS[0])
    assert service.registry.active.name == VERSIONS[0]
    items, _, _ = served.retrieve(served.user_index("5"), served.item_indices([]), 10,
                                  served.training_items(served.user_index("5")))
    assert served.name == VERSIONS[1] and len(items) == 10
