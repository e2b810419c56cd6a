"""A rule-based OpenAI-compatible LLM server for the kind suite, run in the cluster from the ai-ops image.

It needs no scripting at run time, so the suite drives it through the chat alone:
- a last user message `call <tool> <json args>` naming one of the request's tools (or a tool whose name
  ends with `_<tool>`, for prefixed names): a tool call;
- after a tool result: `tool <name> said: <result>`;
- anything else: `echo: <last user message>`.
With `E2E_LLM_API_KEY` set, requests without `Authorization: Bearer <that key>` get a 401, which proves the
operator's Secret wiring into the chat pod. Single file on purpose (mounted from a ConfigMap).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

app = FastAPI()
REQUIRED_KEY = os.environ.get("E2E_LLM_API_KEY", "")


def _text(content: Any) -> str:
    if isinstance(content, list):  # content blocks
        return "".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return str(content or "")


def decide(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message for a request: {"content": str} or {"tool_call": {"name", "arguments"}}."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        name = next(
            (
                call["function"]["name"]
                for message in reversed(messages)
                for call in message.get("tool_calls") or []
                if call.get("id") == last.get("tool_call_id")
            ),
            "?",
        )
        return {"content": f"tool {name} said: {_text(last.get('content'))}"}
    user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    tools = [t["function"]["name"] for t in body.get("tools") or [] if t.get("type") == "function"]
    words = user.split(" ", 2)
    if len(words) >= 2 and words[0] == "call":
        # The chat may prefix tool names with their server's name: `call echo` also picks `e2e-echo_echo`.
        wanted = words[1]
        matching = [t for t in tools if t == wanted or t.endswith((f"_{wanted}", f".{wanted}", f"-{wanted}"))]
        if matching:
            return {"tool_call": {"name": matching[0], "arguments": words[2] if len(words) == 3 else "{}"}}
    return {"content": f"echo: {user}"}


def _usage(body: dict[str, Any], reply: dict[str, Any]) -> dict[str, int]:
    prompt = sum(len(_text(m.get("content")).split()) for m in body.get("messages") or [])
    completion = len(str(reply.get("content", "x")).split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _message(reply: dict[str, Any], call_id: str) -> dict[str, Any]:
    if "tool_call" in reply:
        call = {"id": call_id, "type": "function", "function": reply["tool_call"]}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": reply["content"]}


def _stream(body: dict[str, Any], reply: dict[str, Any], base: dict[str, Any], call_id: str) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return (
            "data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [choice]}) + "\n\n"
        )

    yield chunk({"role": "assistant", "content": ""})
    if "tool_call" in reply:
        call = reply["tool_call"]
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call["arguments"]},
                    }
                ]
            }
        )
        yield chunk({}, "tool_calls")
    else:
        for piece in reply["content"].split(" "):
            yield chunk({"content": piece + " " if piece else piece})
        yield chunk({}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield (
            "data: "
            + json.dumps(
                {**base, "object": "chat.completion.chunk", "choices": [], "usage": _usage(body, reply)}
            )
            + "\n\n"
        )
    yield "data: [DONE]\n\n"


@app.post("/v1/chat/completions")
async def completions(request: Request) -> Response:
    if REQUIRED_KEY and request.headers.get("authorization") != f"Bearer {REQUIRED_KEY}":
        error = {"message": "invalid API key", "type": "authentication_error"}
        return JSONResponse({"error": error}, status_code=401)
    body = await request.json()
    reply = decide(body)
    call_id = f"call_{uuid.uuid4().hex[:12]}"
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "created": int(time.time()),
        "model": body.get("model", "e2e"),
    }
    if body.get("stream"):
        return StreamingResponse(_stream(body, reply, base, call_id), media_type="text/event-stream")
    finish = "tool_calls" if "tool_call" in reply else "stop"
    choice = {"index": 0, "message": _message(reply, call_id), "finish_reason": finish}
    return JSONResponse(
        {**base, "object": "chat.completion", "choices": [choice], "usage": _usage(body, reply)}
    )


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": "e2e", "object": "model", "owned_by": "e2e"}]}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(
        app, host=os.environ.get("HOST", "0.0.0.0"), port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    )
