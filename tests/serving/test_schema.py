"""The OpenAPI schema under property-based fuzzing (schemathesis, in process over ASGI,
bounded): no route answers 5xx, and every answer conforms to the schema (status code,
content type, body). The token is sent, so the protected routes are fuzzed too."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from test_app_support import TOKEN, make_app

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def app(monkeypatch_module: pytest.MonkeyPatch) -> object:
    monkeypatch_module.setenv("RECFORGE_API_TOKEN", TOKEN)
    return make_app(Path(tempfile.mkdtemp(prefix="recforge-schema-")) / "state",
                    rerank={"method": "mmr"})


@pytest.fixture(scope="module")
def monkeypatch_module() -> pytest.MonkeyPatch:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_schema_documents_every_field(app: object) -> None:
    spec = app.openapi()  # type: ignore[attr-defined]
    schemas = spec["components"]["schemas"]
    for name in ("RecommendRequest", "EventIn", "Filters", "RecommendResponse", "ItemOut"):
        assert schemas[name]["properties"], name
    described = schemas["RecommendRequest"]["properties"]
    assert all("description" in described[f] for f in ("user_id", "history", "k", "filters"))
    paths = set(spec["paths"])
    assert {"/recommend", "/similar/{item}", "/events", "/health", "/ready", "/metrics",
            "/models", "/models/{name}/activate", "/models/rollback"} <= paths


def test_fuzzing_finds_no_server_error_and_no_schema_violation(app: object) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        _fuzz(operation, f"{operation.method.upper()} {operation.path}", calls, failures)
    assert len(calls) >= 9 and min(calls.values()) >= 1, calls
    assert not failures, "\n".join(failures[:6])


def _fuzz(operation: object, label: str, calls: dict[str, int], failures: list[str]) -> None:
    """Run up to 25 generated cases of one operation, recording calls and check failures."""
    from hypothesis import given

    @given(operation.as_strategy())  # type: ignore[attr-defined]
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: object) -> None:
        response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})  # type: ignore[attr-defined]
        calls[label] = calls.get(label, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)  # type: ignore[attr-defined]
        except (Failure, FailureGroup) as exc:  # schemathesis' failures: collected, reported
            failures.append(f"{label}: {str(exc)[:1500]}")

    run()


def test_the_checks_catch_a_server_error(app: object) -> None:
    """The fuzzing above can fail: a 500 answer is reported by the same checks."""
    import datetime

    import httpx

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema["/health"]["GET"]
    case = operation.Case()
    fake = httpx.Response(500, json={"status": "boom"},
                          request=httpx.Request("GET", "http://testserver/health"))
    fake.elapsed = datetime.timedelta(0)
    with pytest.raises(FailureGroup) as caught:
        case.validate_response(fake, checks=CHECKS)
    assert any("Server error" in str(e) for e in caught.value.exceptions)
