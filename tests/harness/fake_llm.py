"""A scripted OpenAI-compatible chat-completions server for tests, which also embeds texts as OpenAI, Azure
OpenAI and Ollama servers do.

Tests queue replies (text, tool calls, errors, raw or malformed bodies, slow answers, hangs); each request to
`POST /v1/chat/completions` takes the next one (a model-specific queue wins over the general one).
With nothing queued the server answers ``echo: <last user message>`` so unscripted tests stay
deterministic. Every request is recorded for assertions. The server runs uvicorn in a background
thread with its own event loop, so it serves sync and async clients alike.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.harness.ports import bound_socket, wait_until

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_call_ids = itertools.count(1)


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict[str, Any]
    call_id: str
    raw_arguments: str | None = None  # sent as the arguments text instead of json.dumps(args)

    @property
    def arguments(self) -> str:
        """The `function.arguments` text the server sends."""
        return json.dumps(self.args) if self.raw_arguments is None else self.raw_arguments


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Build it with the class methods, not the constructor."""

    kind: str  # "text" | "tool_calls" | "error" | "raw" | "delay" | "hang" | "held"
    content: str = ""
    usage: tuple[int, int] | None = None
    calls: tuple[ToolCall, ...] = ()  # the tool calls of a "tool_calls" reply
    status: int = 200
    message: str = ""
    seconds: float = 0.0
    then: Reply | None = None
    body: bytes = b""  # the body of a "raw" reply
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers of an "error" or "raw" reply
    gate: threading.Event | None = None  # what a "held" reply waits for
    cached_tokens: int = 0  # of the prompt tokens, reported as read from a prompt cache
    omit_usage: bool = False  # a provider that reports no usage at all (not even in a stream)

    @classmethod
    def text(
        cls,
        content: str,
        usage: tuple[int, int] | None = None,
        *,
        cached_tokens: int = 0,
        omit_usage: bool = False,
    ) -> Reply:
        """An assistant text answer; `usage` = (prompt_tokens, completion_tokens), else a word count;
        `cached_tokens` go into `prompt_tokens_details`; `omit_usage`: no usage in the answer."""
        return cls(
            kind="text", content=content, usage=usage, cached_tokens=cached_tokens, omit_usage=omit_usage
        )

    @classmethod
    def tool_call(
        cls, name: str, args: dict[str, Any], call_id: str | None = None, usage: tuple[int, int] | None = None
    ) -> Reply:
        return cls.tool_calls([(name, args)], call_ids=[call_id], usage=usage)

    @classmethod
    def tool_calls(
        cls,
        calls: Iterable[tuple[str, dict[str, Any]]],
        call_ids: Sequence[str | None] | None = None,
        usage: tuple[int, int] | None = None,
    ) -> Reply:
        """Several tool calls in one assistant message (parallel tool calling)."""
        calls = list(calls)
        ids = list(call_ids or [None] * len(calls))
        built = tuple(
            ToolCall(name=name, args=args, call_id=call_id or f"call_{next(_call_ids)}")
            for (name, args), call_id in zip(calls, ids, strict=True)
        )
        return cls(kind="tool_calls", calls=built, usage=usage)

    @classmethod
    def raw_tool_call(cls, name: str, arguments: str, call_id: str | None = None) -> Reply:
        """A tool call whose `function.arguments` text is exactly `arguments` (truncated or not JSON at
        all, as models sometimes send); streamed, it arrives in several pieces like any other."""
        call = ToolCall(
            name=name, args={}, call_id=call_id or f"call_{next(_call_ids)}", raw_arguments=arguments
        )
        return cls(kind="tool_calls", calls=(call,))

    @classmethod
    def error(
        cls, status: int, message: str = "scripted error", headers: dict[str, str] | None = None
    ) -> Reply:
        """An HTTP error with an OpenAI-style JSON body (429 and 5xx make clients retry); `headers` are
        added to the response (e.g. ``Retry-After``)."""
        return cls(kind="error", status=status, message=message, headers=tuple((headers or {}).items()))

    @classmethod
    def raw(
        cls,
        body: bytes | str,
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Exactly these bytes as the answer, streamed request or not: malformed and empty answers."""
        data = body.encode() if isinstance(body, str) else body
        return cls(
            kind="raw",
            body=data,
            status=status,
            content_type=content_type,
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def delay(cls, seconds: float, then: Reply | None = None) -> Reply:
        """Wait `seconds`, then answer `then` (default: the echo answer)."""
        return cls(kind="delay", seconds=seconds, then=then)

    @classmethod
    def held(cls, gate: threading.Event, then: Reply | None = None) -> Reply:
        """Answer `then` (default: the echo answer) once the test sets `gate`: a model call in flight
        for exactly as long as the test needs (reset() or stop() release it with a 503, like a hang)."""
        return cls(kind="held", gate=gate, then=then)

    @classmethod
    def hang(cls) -> Reply:
        """Never answer, until reset() or the server stops (then the connection gets a 503)."""
        return cls(kind="hang")


@dataclass
class _Script:
    """Queued replies and recorded requests, shared between the test thread and the server thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    general: deque[Reply] = field(default_factory=deque)
    per_model: dict[str, deque[Reply]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Bumped by reset(): a hang ends when the epoch it started in is over.
    epoch: int = 0
    # While set, /v1/embeddings answers this HTTP status (an embedding server that is down).
    embedding_failure: int | None = None

    def next_reply(self, model: str | None) -> Reply | None:
        with self.lock:
            if model is not None and self.per_model.get(model):
                return self.per_model[model].popleft()
            if self.general:
                return self.general.popleft()
            return None


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "".join(parts)
    return ""


def _echo_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return f"echo: {_text_of(message.get('content'))}"
    return "echo: "


def _default_usage(body: dict[str, Any], reply: Reply) -> tuple[int, int]:
    prompt = sum(len(_text_of(m.get("content")).split()) for m in body.get("messages") or [])
    completion = len(reply.content.split()) + sum(len(c.arguments.split()) for c in reply.calls)
    return max(prompt, 1), max(completion, 1)


def _usage_json(body: dict[str, Any], reply: Reply) -> dict[str, Any] | None:
    if reply.omit_usage:
        return None
    prompt, completion = reply.usage or _default_usage(body, reply)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reply.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    return usage


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": error_type, "param": None, "code": error_type}}
    return JSONResponse(body, status_code=status, headers=headers)


def _tool_calls_json(reply: Reply) -> list[dict[str, Any]]:
    return [
        {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in reply.calls
    ]


def _completion(body: dict[str, Any], reply: Reply, completion_id: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    if reply.calls:
        message["tool_calls"] = _tool_calls_json(reply)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": body.get("model", "fake-model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage_json(body, reply),
    }


def _split(text: str, pieces: int) -> list[str]:
    """Split text into up to `pieces` non-empty fragments (streams must arrive in several chunks)."""
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _chunks(body: dict[str, Any], reply: Reply, completion_id: str, created: int) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of one streamed answer, in OpenAI's order."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": body.get("model", "fake-model"),
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        data = {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if include_usage:
            data["usage"] = None
        return data

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in _split(reply.content, 4)]
    for index, call in enumerate(reply.calls):
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in _split(call.arguments, 3)
        ]
    chunks.append(chunk({}, finish_reason="tool_calls" if reply.calls else "stop"))
    if include_usage and not reply.omit_usage:
        chunks.append({**base, "choices": [], "usage": _usage_json(body, reply)})
    return chunks


EMBEDDING_DIMENSIONS = 64


def fake_embedding(text: str) -> list[float]:
    """A deterministic bag-of-words vector (each word hashed into one of 64 dimensions), so texts that share
    words are similar: enough for a search to rank by, with no model."""
    import hashlib
    import re

    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % EMBEDDING_DIMENSIONS] += 1.0
    return vector


class FakeLLM:
    """The scripted server. `base_url` is what an OpenAI client takes (ends with /v1)."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._script = _Script()
        self._completion_ids = itertools.count(1)
        self._stopping = False
        self._socket = bound_socket(self.host)
        self.port: int = self._socket.getsockname()[1]
        self.app = self._build_app()
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="fake-llm", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: what an Azure endpoint or an Ollama base URL is."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests, oldest first: {"path", "query" (the raw query string), "headers" (lower-case
        keys), "json"}."""
        with self._script.lock:
            return list(self._script.requests)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Only the chat-completion requests (the usual subject of assertions)."""
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        """Only the embedding requests, of every dialect (OpenAI, Azure OpenAI, Ollama)."""
        return [r for r in self.requests if r["path"].endswith("/embeddings") or r["path"] == "/api/embed"]

    def enqueue(self, *replies: Reply, model: str | None = None) -> None:
        """Queue replies; with `model`, only requests for that model take them."""
        with self._script.lock:
            queue = (
                self._script.general if model is None else self._script.per_model.setdefault(model, deque())
            )
            queue.extend(replies)

    def pending(self, model: str | None = None) -> int:
        """How many queued replies are not consumed yet (general queue, or one model's)."""
        with self._script.lock:
            queue = self._script.general if model is None else self._script.per_model.get(model, deque())
            return len(queue)

    def reset(self) -> None:
        """Clear queues and recorded requests, and release every hanging request."""
        with self._script.lock:
            self._script.general.clear()
            self._script.per_model.clear()
            self._script.requests.clear()
            self._script.embedding_failure = None
            self._script.epoch += 1

    def fail_embeddings(self, status: int | None) -> None:
        """Make every embedding route answer ``status`` (None: answer again)."""
        with self._script.lock:
            self._script.embedding_failure = status

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        wait_until(lambda: self._server.started or not self._thread.is_alive(), timeout, "fake LLM server")
        if not self._server.started:
            raise RuntimeError("fake LLM server failed to start")

    def stop(self) -> None:
        self._stopping = True  # ends hangs, so graceful shutdown does not wait for them
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    # -- HTTP ------------------------------------------------------------------------------------

    def _record(self, request: Request, body: Any) -> None:
        entry = {
            "path": request.url.path,
            "query": request.url.query,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "json": body,
        }
        with self._script.lock:
            self._script.requests.append(entry)

    async def _hang(self, gate: threading.Event | None = None) -> bool:
        """Wait until reset(), stop() or `gate`; True when `gate` released it."""
        with self._script.lock:
            epoch = self._script.epoch
        # Polling keeps the release thread-safe without touching this loop from the test thread.
        while not self._stopping and self._script.epoch == epoch:
            if gate is not None and gate.is_set():
                return True
            await asyncio.sleep(0.05)
        return False

    async def _answer(self, body: dict[str, Any]) -> Response:
        reply = self._script.next_reply(body.get("model"))
        while reply is not None and reply.kind in ("delay", "hang", "held"):
            if reply.kind == "hang":
                await self._hang()
                return _error_response(503, "fake LLM: hanging request released")
            if reply.kind == "held":
                if not await self._hang(reply.gate):
                    return _error_response(503, "fake LLM: held request released by a reset")
                reply = reply.then
                continue
            await asyncio.sleep(reply.seconds)
            reply = reply.then
        if reply is None:
            reply = Reply.text(_echo_text(body))
        if reply.kind == "error":
            return _error_response(reply.status, reply.message, dict(reply.headers))
        if reply.kind == "raw":
            return Response(
                reply.body,
                status_code=reply.status,
                media_type=reply.content_type,
                headers=dict(reply.headers),
            )

        completion_id = f"chatcmpl-fake-{next(self._completion_ids)}"
        created = int(time.time())
        if not body.get("stream"):
            return JSONResponse(_completion(body, reply, completion_id, created))

        chunks = _chunks(body, reply, completion_id, created)

        async def sse() -> AsyncIterator[bytes]:
            for data in chunks:
                yield f"data: {json.dumps(data)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fake OpenAI-compatible LLM")

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            try:
                body = await request.json()
            except ValueError:
                self._record(request, None)
                return _error_response(400, "request body is not JSON")
            self._record(request, body)
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return _error_response(400, "'messages' is required")
            return await self._answer(body)

        async def embedding_texts(request: Request) -> tuple[dict[str, Any], list[str]] | Response:
            """The request's model and texts, recorded; or the answer when it is malformed or failing."""
            try:
                body = await request.json()
            except ValueError:
                body = None
            self._record(request, body)
            texts = body.get("input") if isinstance(body, dict) else None
            if isinstance(texts, str):
                texts = [texts]
            # Token ids (what langchain-openai sends after tokenizing with tiktoken) are refused as
            # OpenAI-compatible servers refuse them: the tests see it if a client ever tokenizes.
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                return _error_response(400, "'input' must be a string or a list of strings")
            assert isinstance(body, dict)
            with self._script.lock:
                failure = self._script.embedding_failure
            if failure is not None:
                return _error_response(failure, "fake LLM: embeddings are down")
            return body, texts

        def openai_embeddings(body: dict[str, Any], texts: list[str]) -> JSONResponse:
            return JSONResponse(
                {
                    "object": "list",
                    "model": body.get("model", "fake-embedding"),
                    "data": [
                        {"object": "embedding", "index": i, "embedding": fake_embedding(t)}
                        for i, t in enumerate(texts)
                    ],
                    "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
                }
            )

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            # Not scripted: every text gets its fake_embedding (the OpenAI wire format, float encoding).
            found = await embedding_texts(request)
            return found if isinstance(found, Response) else openai_embeddings(*found)

        @app.post("/openai/deployments/{deployment}/embeddings")
        async def azure_embeddings(deployment: str, request: Request) -> Response:
            # Azure OpenAI: the deployment is in the path, the API version in the query.
            if not request.query_params.get("api-version"):
                self._record(request, None)
                return _error_response(404, "Azure OpenAI needs the api-version query parameter")
            found = await embedding_texts(request)
            return found if isinstance(found, Response) else openai_embeddings(*found)

        @app.post("/api/embed")
        async def ollama_embed(request: Request) -> Response:
            # Ollama's own API: {"model", "input"} in, {"model", "embeddings"} out, errors as {"error"}.
            found = await embedding_texts(request)
            if isinstance(found, Response):
                if found.status_code == 400:
                    return found
                return JSONResponse({"error": "fake LLM: embeddings are down"}, status_code=found.status_code)
            body, texts = found
            return JSONResponse(
                {
                    "model": body.get("model", "fake-embedding"),
                    "embeddings": [fake_embedding(t) for t in texts],
                    "prompt_eval_count": len(texts),
                }
            )

        @app.get("/v1/models")
        async def models(request: Request) -> dict[str, Any]:
            self._record(request, None)
            with self._script.lock:
                names = sorted({"fake-model", *self._script.per_model})
            return {
                "object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "fake"} for n in names],
            }

        return app
