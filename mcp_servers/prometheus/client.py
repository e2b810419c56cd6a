"""A small async client of the Prometheus HTTP API (``/api/v1``): the only I/O of the prometheus server.

Errors come back as PrometheusError with Prometheus' own ``errorType`` and ``error`` text (a bad PromQL
expression says exactly what is wrong), so the model can correct its query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

JSON = dict[str, Any]


class PrometheusError(Exception):
    """Prometheus refused or could not answer; the message is safe to show to the model."""


@dataclass
class PrometheusClient:
    base_url: str
    timeout_seconds: float = 30.0
    bearer_token: str | None = None
    client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {self.bearer_token}"} if self.bearer_token else {}
        self._client = self.client or httpx.AsyncClient(timeout=self.timeout_seconds + 5, headers=headers)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/api/v1/{path}"
        try:
            response = await self._client.get(url, params=params)
        except httpx.TimeoutException:
            raise PrometheusError(f"Prometheus did not answer within {self.timeout_seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise PrometheusError(
                f"Prometheus at {self.base_url} is unreachable: {type(exc).__name__}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"Prometheus answered HTTP {response.status_code} without JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            kind = body.get("errorType", "error") if isinstance(body, dict) else "error"
            text = body.get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else ""
            raise PrometheusError(f"Prometheus refused the request ({kind}): {text}")
        return body.get("data")

    async def query(self, expr: str, time: str | None = None) -> JSON:
        params: dict[str, Any] = {"query": expr, "timeout": f"{self.timeout_seconds:g}s"}
        if time:
            params["time"] = time
        return await self._get("query", params)

    async def query_range(self, expr: str, start: float, end: float, step: float) -> JSON:
        params = {
            "query": expr,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:g}",
            "timeout": f"{self.timeout_seconds:g}s",
        }
        return await self._get("query_range", params)

    async def alerts(self) -> list[JSON]:
        data = await self._get("alerts")
        return list((data or {}).get("alerts") or [])

    async def rules(self, kind: str | None = None) -> list[JSON]:
        data = await self._get("rules", {"type": kind} if kind else None)
        return list((data or {}).get("groups") or [])

    async def targets(self, state: str = "active") -> JSON:
        return await self._get("targets", {"state": state}) or {}

    async def label_values(self, label: str, match: str | None = None) -> list[str]:
        params = {"match[]": match} if match else None
        data = await self._get(f"label/{label}/values", params)
        return [str(v) for v in data or []]
