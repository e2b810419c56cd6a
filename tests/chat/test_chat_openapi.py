"""The OpenAPI document describes every answer: a response model or media type per route, JSON error bodies,
and the bodies the service really sends match the models it documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chat_service.app import create_app
from chat_service.routers.health import ReadinessOut
from chat_service.routers.info import StatusOut
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config


def _schema(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", "http://127.0.0.1:9/v1")]))
    return create_app(settings_for(path)).openapi()


def test_every_route_documents_its_answer_and_json_errors(tmp_path: Path) -> None:
    schema = _schema(tmp_path)
    api_routes = [
        (path, method, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if path.startswith(("/api/", "/v1/", "/healthz", "/readyz", "/metrics"))
    ]
    assert len(api_routes) >= 17  # every route below is checked; the count only guards that routes were found
    for path, method, operation in api_routes:
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        success = responses.get("200") or responses.get("202") or responses.get("204")
        assert success is not None, where
        if "204" not in responses:
            content = success["content"]
            json_schema = content.get("application/json", {}).get("schema", {})
            assert "$ref" in json_schema or set(content) - {"application/json"}, f"{where}: no response model"
        for status, response in responses.items():
            if status.startswith(("4", "5")) and path != "/readyz":
                assert set(response["content"]) == {"application/json"}, f"{where} {status}"
                assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


def test_streaming_routes_document_their_media_type(tmp_path: Path) -> None:
    paths = _schema(tmp_path)["paths"]
    assert set(paths["/api/chat/stream"]["post"]["responses"]["200"]["content"]) == {"text/event-stream"}
    assert set(paths["/v1/chat/completions"]["post"]["responses"]["200"]["content"]) == {
        "application/json",
        "text/event-stream",
    }
    assert next(iter(paths["/metrics"]["get"]["responses"]["200"]["content"])).startswith("text/plain")


async def test_status_and_readiness_bodies_match_their_models(tmp_path: Path) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", "http://127.0.0.1:9/v1")]))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        status = await client.get("/api/status")
        ready = await client.get("/readyz")
    assert status.status_code == 200 and ready.status_code == 200
    assert StatusOut.model_validate(status.json()).models[0].name == "main"
    assert ReadinessOut.model_validate(ready.json()).config is not None


async def test_not_ready_body_matches_its_model(tmp_path: Path) -> None:
    missing = tmp_path / "agent-config.json"
    async with (
        running(create_app(settings_for(missing, wait_for_config=True))) as app,
        app.client() as client,
    ):
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    body = ReadinessOut.model_validate(ready.json())
    assert body.status == "not ready" and body.config is None


# Routes anyone may call; every other one answers 401 and 413 before it runs (chat_service/asgi.py).
OPEN_ROUTES = {"/healthz", "/readyz", "/metrics"}


def test_every_protected_route_documents_401_and_413(tmp_path: Path) -> None:
    schema = _schema(tmp_path)
    protected = [
        (path, method, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if path not in OPEN_ROUTES
    ]
    assert len(protected) >= 14  # the count only guards that protected routes were found
    for path, method, operation in protected:
        for status in ("401", "413"):
            response = operation["responses"].get(status)
            assert response is not None, f"{method.upper()} {path} does not document {status}"
            assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
        assert "WWW-Authenticate" in operation["responses"]["401"].get("headers", {})


def test_rate_limited_answers_document_retry_after(tmp_path: Path) -> None:
    paths = _schema(tmp_path)["paths"]
    for path in ("/api/chat", "/api/chat/stream", "/v1/chat/completions"):
        limited = paths[path]["post"]["responses"]["429"]
        assert "rate_limited" in limited["description"] and "Retry-After" in limited["headers"], path


def test_the_action_routes_document_their_refusals(tmp_path: Path) -> None:
    paths = _schema(tmp_path)["paths"]
    assert set(paths["/api/actions"]) == {"get"}
    assert set(paths["/api/actions/{name}"]) == {"get"}
    for verb in ("approve", "reject"):
        responses = paths[f"/api/actions/{{name}}/{verb}"]["post"]["responses"]
        assert {"200", "401", "403", "404", "409", "422", "503"} <= set(responses), verb
        assert "AI_OPS_ACTION_APPROVERS" in responses["403"]["description"]
