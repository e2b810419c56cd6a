"""The Usage view of the web page, in a real headless Chromium against the real chat service.

A few turns through the scripted LLM (one priced model, one without pricing whose name is markup, a tool
call on the fixture MCP server), then the Usage view: the SVG chart has one bar and one cost point per day
of the range, today's bar carries the day's tokens, the tables have a row per model, caller and tool with
the counted numbers, the hostile name is text, not markup; and a screenshot of the chart shows the bars
and the cost points in their colours (decoded here: the page's CSP and no image library in the test deps).
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import expect

from ai_ops_api.agent_config import AgentConfig, MCPServerEntry, PricingEntry
from tests.chat.test_web_page import WAIT_MS, browser, fake_model, page, serve_chat
from tests.harness.fake_llm import Reply

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.harness.fake_llm import FakeLLM
    from tests.harness.mcp_servers import McpFixtureServers

__all__ = ["browser", "page"]  # fixtures, used by name

HOSTILE = '<img src=x id="injected">careful'
PRICING = PricingEntry(input_per_million_tokens=Decimal("2.5"), output_per_million_tokens=Decimal("10"))
# The page's light-mode colours (app.css --accent and --warn-border): bars and cost points.
BAR_RGB = (0x1F, 0x6F, 0xEB)
POINT_RGB = (0xF5, 0xA5, 0x24)


def png_pixels(data: bytes) -> list[tuple[int, int, int]]:
    """The RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium's screenshots are)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, width, height, channels = 8, b"", 0, 0, 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    pixels: list[tuple[int, int, int]] = []
    previous = bytearray(stride)
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, up_left = previous[i], previous[i - channels] if i >= channels else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        pixels.extend(tuple(line[x : x + 3]) for x in range(0, stride, channels))  # type: ignore[misc]
        previous = line
    return pixels


def near(pixel: tuple[int, int, int], rgb: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(pixel, rgb, strict=True))


def table_rows(page: Page, group: str) -> list[list[str]]:
    rows = page.locator(f'.usage-table[data-group-by="{group}"] tbody tr')
    return [[cell.inner_text() for cell in rows.nth(i).locator("th, td").all()] for i in range(rows.count())]


@pytest.mark.browser
def test_usage_view_charts_the_days_and_tables_the_models_callers_and_tools(
    page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM, mcp_fixture_servers: McpFixtureServers
) -> None:
    priced = fake_model("fast", "fake-fast", fresh_fake_llm.base_url, default=True).model_copy(
        update={"pricing": PRICING}
    )
    config = AgentConfig(
        namespace="web-usage",
        models=(priced, fake_model(HOSTILE, "fake-careful", fresh_fake_llm.base_url)),
        mcp_servers=(
            MCPServerEntry(
                name="fixture",
                transport="streamable_http",
                url=mcp_fixture_servers.healthy.url,
                health="Healthy",
            ),
        ),
    ).finalize()
    with serve_chat(config, tmp_path) as url:
        # Two turns on the priced model (a tool call, then the answer), one on the other.
        for _ in range(2):
            fresh_fake_llm.enqueue(
                Reply.tool_call("add", {"a": 2, "b": 40}, usage=(100, 10)),
                Reply.text("42.", usage=(200, 20)),
            )
            response = httpx.post(url + "api/chat", json={"message": "2 + 40?"}, timeout=30)
            assert response.status_code == 200, response.text
        fresh_fake_llm.enqueue(Reply.text("hello", usage=(50, 5)))
        response = httpx.post(url + "api/chat", json={"message": "hi", "model": HOSTILE}, timeout=30)
        assert response.status_code == 200, response.text

        page.goto(url)
        expect(page.locator("#model-select")).to_be_enabled(timeout=WAIT_MS)
        assert page.locator("#usage-view").is_hidden()
        page.get_by_role("button", name="Usage").click()
        expect(page.locator("#usage-view")).to_be_visible()
        assert page.locator("#conversation").is_hidden() and page.locator("#composer").is_hidden()
        expect(page.locator('.usage-table[data-group-by="tool"] tbody tr')).to_have_count(1, timeout=WAIT_MS)

        # The default range is the last seven UTC days: one bar and one cost point each.
        today = dt.datetime.now(dt.UTC).date()
        days = [(today - dt.timedelta(days=6 - i)).isoformat() for i in range(7)]
        bars = page.locator("#usage-chart rect.usage-bar")
        expect(bars).to_have_count(7)
        assert [bars.nth(i).get_attribute("data-day") for i in range(7)] == days
        total_tokens = 2 * (110 + 220) + 55
        assert [int(bars.nth(i).get_attribute("data-tokens") or -1) for i in range(7)] == [0] * 6 + [
            total_tokens
        ]
        assert float(bars.nth(6).get_attribute("height") or 0) > 100
        points = page.locator("#usage-chart circle.usage-point")
        expect(points).to_have_count(7)
        # Only the priced model costs: 2 x (300 input at 2.5 + 30 output at 10) per million.
        cost = 2 * (Decimal(300) * Decimal("2.5") + Decimal(30) * 10) / 10**6
        assert Decimal(points.nth(6).get_attribute("data-cost") or "") == cost
        expect(page.locator("#usage-legend")).to_contain_text("Line: cost per day (USD)")

        assert table_rows(page, "model") == [
            [HOSTILE, "50", "5", "0", "1", "—"],
            ["fast", "600", "60", "0", "4", f"{cost} USD"],
        ]
        assert table_rows(page, "caller") == [["anonymous", "650", "65", "0", "5", f"{cost} USD", "2"]]
        [tool_row] = table_rows(page, "tool")
        assert tool_row[:3] == ["fixture/add", "2", "0"]
        # The model's name is shown as text: no element came out of it.
        assert page.locator("#injected").count() == 0

        shot = page.locator("#usage-chart").screenshot(path=str(tmp_path / "usage-chart.png"))
        pixels = png_pixels(shot)
        bar_pixels = sum(near(p, BAR_RGB) for p in pixels)
        point_pixels = sum(near(p, POINT_RGB) for p in pixels)
        assert bar_pixels > 0.01 * len(pixels), (bar_pixels, len(pixels))
        assert point_pixels > 20, point_pixels

        page.get_by_role("button", name="Back to chat").click()
        expect(page.locator("#conversation")).to_be_visible()
        assert page.locator("#usage-view").is_hidden()

        # The Usage and Incidents views both take the chat's place: opening one closes the other.
        page.get_by_role("button", name="Usage").click()
        expect(page.locator("#usage-view")).to_be_visible()
        page.get_by_role("button", name="Incidents").click()
        expect(page.locator("#incidents")).to_be_visible()
        expect(page.locator("#usage-view")).to_be_hidden()
        page.get_by_role("button", name="Usage").click()
        expect(page.locator("#usage-view")).to_be_visible()
        expect(page.locator("#incidents")).to_be_hidden()
        expect(page.locator("#conversation")).to_be_hidden()
