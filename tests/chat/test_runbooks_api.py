"""``GET /api/runbooks`` and ``GET /api/runbooks/search``: what the index holds and the agent's search, for
people and the page; behind the same bearer tokens as the other routes; bad input is a 4xx, never a 500."""

from __future__ import annotations

from pathlib import Path

from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM
from tests.support.chat_support import model_entry, running, settings_for, write_config
from tests.support.runbooks import (
    CRASHLOOP,
    DNS,
    config_with_runbooks,
    hit_names,
    shard,
    wait_for_search,
    write_shard_file,
)

TOKEN = "runbook-api-token-1234"


async def test_list_and_search_with_auth(tmp_path: Path, fresh_fake_llm: FakeLLM) -> None:
    runbooks = shard(CRASHLOOP, DNS)
    write_shard_file(tmp_path, 0, runbooks)
    path = tmp_path / "agent-config.json"
    write_config(path, config_with_runbooks([model_entry("m", fresh_fake_llm.base_url)], [(0, runbooks)]))
    tokens = tmp_path / "tokens"
    tokens.write_text(f"oncall:{TOKEN}\n")
    async with running(create_app(settings_for(path, auth_tokens_file=tokens))) as app:
        async with app.client() as anonymous:
            for url in ("/api/runbooks", "/api/runbooks/search?q=dns"):
                denied = await anonymous.get(url)
                assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        async with app.client(TOKEN) as client:
            found = await wait_for_search(client, "kubectl logs previous", lambda r: bool(r["hits"]))
            assert found["matched"] is True and found["mode"] == "hybrid"
            hit = found["hits"][0]
            assert hit["runbook"] == "pod-crashloop" and hit["section"] == "Diagnosis"
            assert "kubectl logs POD --previous" in hit["text"] and hit["score"] > 0

            listed = (await client.get("/api/runbooks")).json()
            assert listed["mode"] == "hybrid"
            crash = next(r for r in listed["runbooks"] if r["name"] == "pod-crashloop")
            assert crash == {
                "name": "pod-crashloop",
                "title": CRASHLOOP["title"],
                "description": CRASHLOOP["description"],
                "sections": 4,  # overview, symptoms, diagnosis, resolution
                "tags": ["kubernetes", "pods"],
                "match": {"alert_names": ["KubePodCrashLooping"], "labels": {}, "severities": []},
            }

            one = (await client.get("/api/runbooks/search", params={"q": "pods", "limit": 1})).json()
            assert len(one["hits"]) == 1
            nothing = (await client.get("/api/runbooks/search", params={"q": "quarterly budget"})).json()
            assert nothing == {"hits": [], "matched": False, "mode": "hybrid"}

            for params, status in (
                ({"q": ""}, 400),
                ({"q": "   "}, 400),
                ({}, 400),
                ({"q": "dns", "limit": 0}, 422),
                ({"q": "dns", "limit": "many"}, 422),
                ({"q": "x" * 2001}, 422),
            ):
                response = await client.get("/api/runbooks/search", params=params)
                assert response.status_code == status, (params, response.text)
                assert response.json()["error"]["code"] == "invalid_request"
            assert "dns-failures" in hit_names(
                (
                    await client.get(
                        "/api/runbooks/search", params={"q": "lookups answer NXDOMAIN \u0000 <script>"}
                    )
                ).json()
            )
