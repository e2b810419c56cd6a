"""A plain-HTTP reverse proxy on loopback that fails chosen requests, for API blips the emulator cannot make.

The emulator stores a write before any kmock reaction sees it (and answers a PUT on a subresource
itself), so a reaction cannot refuse a status replace. This proxy sits in front of it: a request matching
an armed fault gets the fault's answer (the upstream never sees it); everything else is forwarded as is.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import aiohttp.web

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    left: int
    status: int = 503
    served: int = 0


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.url = ""

    def fail(self, method: str, path_regex: str, times: int, status: int = 503) -> Fault:
        """The next ``times`` requests ``method`` on a path matching ``path_regex`` answer ``status``."""
        fault = Fault(method.upper(), re.compile(path_regex), times, status)
        self.faults.append(fault)
        return fault

    def _fault_for(self, request: aiohttp.web.Request) -> Fault | None:
        for fault in self.faults:
            if fault.left > 0 and request.method == fault.method and fault.path.fullmatch(request.path):
                fault.left -= 1
                fault.served += 1
                return fault
        return None

    async def _forward(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        fault = self._fault_for(request)
        if fault is not None:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": fault.status}
            return aiohttp.web.json_response({**status, "message": "injected fault"}, status=fault.status)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.rel_url.path_qs,
            headers=headers,
            data=await request.read(),
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return aiohttp.web.Response(status=answer.status, body=body, headers=kept)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FaultProxy]:
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        try:
            yield self
        finally:
            await self._session.close()
            await runner.cleanup()
