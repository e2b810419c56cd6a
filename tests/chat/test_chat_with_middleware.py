"""Middleware seen through the API: a critical broken one makes its model unavailable (503, reason in /readyz
and /api/status), a non-critical one is skipped with a warning; an answer rewritten by a middleware is the
reply and is counted once."""

from __future__ import annotations

from pathlib import Path

from ai_ops_api.agent_config import MiddlewareEntry
from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config


async def test_critical_versus_non_critical_broken_middleware(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    broken = {"entryPoint": "no-such-package-middleware"}
    path = tmp_path / "agent-config.json"
    write_config(
        path,
        agent_config(
            [
                model_entry(
                    "strict",
                    fresh_fake_llm.base_url,
                    default=True,
                    middleware=[
                        MiddlewareEntry(
                            name="must-have", type="custom", priority=5, critical=True, config=broken
                        )
                    ],
                ),
                model_entry(
                    "lenient",
                    fresh_fake_llm.base_url,
                    middleware=[
                        MiddlewareEntry(
                            name="nice-to-have", type="custom", priority=5, critical=False, config=broken
                        ),
                        MiddlewareEntry(
                            name="limits", type="model_call_limit", priority=10, config={"runLimit": 5}
                        ),
                    ],
                ),
            ]
        ),
    )
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        refused = await client.post("/api/chat", json={"message": "hi"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_unavailable"
        assert "must-have" in refused.json()["error"]["message"]
        assert fresh_fake_llm.chat_requests == [], "the model was not called"

        served = await client.post("/api/chat", json={"message": "hi", "model": "lenient"})
        assert served.status_code == 200 and served.json()["reply"] == "echo: hi"

        ready = await client.get("/readyz")
        status = (await client.get("/api/status")).json()
    assert ready.status_code == 200
    warnings = ready.json()["warnings"]
    assert any("'nice-to-have'" in w and "skipped" in w for w in warnings)
    assert any("'strict' is unavailable" in w and "must-have" in w for w in warnings)
    models = {m["name"]: m for m in status["models"]}
    assert models["strict"]["available"] is False and "must-have" in models["strict"]["unavailable_reason"]
    assert models["lenient"]["available"] is True
    assert [m["name"] for m in status["middleware"]["lenient"]] == ["nice-to-have", "limits"]


async def test_a_rewritten_answer_counts_once_and_the_reply_is_the_final_text(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    """A PII middleware redacting the model's output rewrites the AI message under the same id."""
    from tests.harness.fake_llm import Reply
    from tests.support.chat_support import read_sse

    pii = MiddlewareEntry(
        name="redact-out",
        type="pii",
        priority=5,
        config={"piiTypes": ["email"], "applyToInput": False, "applyToOutput": True},
    )
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fresh_fake_llm.base_url, middleware=[pii])]))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        fresh_fake_llm.enqueue(Reply.text("Write to bob@example.com today.", usage=(10, 5)))
        body = (await client.post("/api/chat", json={"message": "who?", "thread_id": "pii"})).json()
        assert "bob@example.com" not in body["reply"] and body["reply"].startswith("Write to ")
        assert body["usage"] == {"input_tokens": 10, "output_tokens": 5}
        thread = (await client.get("/api/threads/pii")).json()["messages"]
        assert "bob@example.com" not in thread[-1]["content"]

        fresh_fake_llm.enqueue(Reply.text("Mail alice@example.com.", usage=(7, 3)))
        async with client.stream("POST", "/api/chat/stream", json={"message": "and?"}) as response:
            events = await read_sse(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "token" in kinds
    streamed = "".join(data["text"] for kind, data in events if kind == "token")
    assert "alice@example.com" not in streamed, "the raw answer never reaches the client"
    done = events[-1][1]
    assert streamed == done["reply"]
    assert "alice@example.com" not in done["reply"] and done["reply"].startswith("Mail ")
    assert done["usage"] == {"input_tokens": 7, "output_tokens": 3}
