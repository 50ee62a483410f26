"""Bearer-token authentication: 401 without or with a wrong token on /events and the admin
routes, read routes open unless configured closed, constant-time check, token never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_app_support import TOKEN, VERSIONS, auth, make_app

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from recforge.errors import InputError
from recforge.serving.auth import TokenAuth

EVENT = {"event_id": "a1", "user_id": "1", "item_id": "2", "event": "click"}
PROTECTED = [("post", "/events", EVENT), ("post", f"/models/{VERSIONS[0]}/activate", None),
             ("post", "/models/rollback", None)]
BAD_HEADERS = [{}, auth("wrong-token-0123456789abc"), {"Authorization": TOKEN},
               {"Authorization": f"Basic {TOKEN}"}, auth(TOKEN + "x"), auth(TOKEN[:-1])]


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("RECFORGE_API_TOKEN", TOKEN)
    return TestClient(make_app(tmp_path / "state"))


@pytest.mark.parametrize("headers", BAD_HEADERS)
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_protected_routes_refuse_missing_or_wrong_tokens(client: TestClient, method: str,
                                                         path: str, body: dict | None,
                                                         headers: dict) -> None:
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in response.text


def test_nothing_changes_without_the_token(client: TestClient) -> None:
    client.post("/events", json=EVENT)
    client.post(f"/models/{VERSIONS[0]}/activate")
    assert client.get("/models").json()["active"] == VERSIONS[-1]
    assert len(client.app.state.service.events) == 0


def test_the_token_opens_them(client: TestClient) -> None:
    assert client.post("/events", json=EVENT, headers=auth()).status_code == 200
    response = client.post(f"/models/{VERSIONS[0]}/activate", headers=auth())
    assert response.status_code == 200 and response.json()["active"] == VERSIONS[0]
    assert client.post("/models/rollback", headers=auth()).json()["active"] == VERSIONS[-1]


def test_read_routes_open_by_default(client: TestClient) -> None:
    assert client.post("/recommend", json={"user_id": "1"}).status_code == 200
    assert client.get("/similar/3").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/models").status_code == 200


def test_read_routes_closed_by_configuration(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFORGE_API_TOKEN", TOKEN)
    client = TestClient(make_app(tmp_path / "state", auth={"protect_reads": True}))
    for method, path, body in [("post", "/recommend", {"user_id": "1"}),
                               ("get", "/similar/3", None), ("get", "/metrics", None),
                               ("get", "/models", None), ("get", "/users", None)]:
        assert client.request(method, path, json=body).status_code == 401
        assert client.request(method, path, json=body, headers=auth()).status_code == 200
    assert client.get("/health").status_code == 200  # probes stay open
    assert client.get("/ready").status_code == 200


def test_token_from_file_and_no_token_refuses_all(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECFORGE_API_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    client = TestClient(make_app(tmp_path / "a", auth={"token_file": str(token_file)}))
    assert client.post("/events", json=EVENT, headers=auth()).status_code == 200
    closed = TestClient(make_app(tmp_path / "b"))  # no token anywhere: writes refused
    assert closed.post("/events", json=EVENT, headers=auth()).status_code == 401
    assert closed.post("/events", json=EVENT, headers=auth("")).status_code == 401


def test_token_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFORGE_API_TOKEN", "short")
    with pytest.raises(InputError, match="at least 16") as caught:
        TokenAuth.from_settings(None)
    assert "short" not in str(caught.value).replace("shorter", "")
    monkeypatch.delenv("RECFORGE_API_TOKEN")
    with pytest.raises(InputError, match="no such file"):
        TokenAuth.from_settings(tmp_path / "missing")
    checker = TokenAuth(TOKEN)
    assert checker.check(f"Bearer {TOKEN}") and checker.check(f"bearer {TOKEN}")
    assert not checker.check(None) and not checker.check(f"Bearer {TOKEN} x")
    assert TOKEN not in repr(checker)
