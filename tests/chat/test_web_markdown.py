"""The model's replies as sanitized Markdown, in a real headless Chromium against the real chat service.

A reply with headings, a list, a code block, a table and links renders as those elements, live and after a
reload; raw HTML and script URLs in it (the model's text is untrusted: a prompt injection can put anything
there) never become elements, handlers or links, and nothing runs. The page keeps its strict CSP: the
``page`` fixture fails the test on any CSP violation or JavaScript error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ai_ops_api.agent_config import AgentConfig
from tests.chat.test_web_page import browser, fake_model, page, send, serve_chat, wait_for_reply
from tests.harness.fake_llm import Reply

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.harness.fake_llm import FakeLLM

__all__ = ["browser", "page"]  # fixtures, used by name

HOSTILE_REPLY = """## Pods in default

Two pods need a look:

- `web-1` is **CrashLoopBackOff**
- `web-2` is *Pending*

| Pod | Phase | Restarts |
| --- | :---: | ---: |
| web-1 | Running | 7 |
| web-2 | Pending | 0 |

```bash
kubectl -n default describe pod web-1
```

See [the runbook](https://runbooks.example.internal/crashloop) or [x](javascript:alert(1)) and \
[y](JAVASCRIPT:window.__xss=2).

<img src=x onerror=alert(1)>

Inline <b onmouseover=alert(3)>bold</b> and <script>window.__xss = 4</script> and \
<a href="javascript:alert(5)">a raw link</a> and <iframe src="https://example.internal/"></iframe>.

![chart](javascript:alert(6))
"""


@pytest.fixture(scope="module")
def chat_url(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> Iterator[str]:
    config = AgentConfig(
        namespace="web-markdown",
        models=(fake_model("fast", "fake-fast", fake_llm.base_url, default=True),),
    ).finalize()
    with serve_chat(config, tmp_path_factory.mktemp("web-markdown")) as url:
        yield url


def check_rendered(turn: Locator) -> None:
    text = turn.locator(".text")
    assert text.locator("h2").inner_text() == "Pods in default"
    assert text.locator("ul > li").all_inner_texts() == ["web-1 is CrashLoopBackOff", "web-2 is Pending"]
    assert text.locator("li strong").inner_text() == "CrashLoopBackOff"
    assert text.locator("li em").inner_text() == "Pending"
    assert text.locator("table th").all_inner_texts() == ["Pod", "Phase", "Restarts"]
    assert text.locator("table tbody tr").count() == 2
    assert text.locator("table tbody tr").first.locator("td").all_inner_texts() == ["web-1", "Running", "7"]
    assert text.locator("pre code").inner_text().rstrip("\n") == "kubectl -n default describe pod web-1"

    runbook = text.locator("a", has_text="the runbook")
    assert runbook.get_attribute("href") == "https://runbooks.example.internal/crashloop"
    assert runbook.get_attribute("target") == "_blank"
    assert runbook.get_attribute("rel") == "noopener noreferrer"

    # Nothing hostile became an element, a handler or a script link.
    hrefs = text.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(h is None or h.startswith("https://") for h in hrefs), hrefs
    for selector in ("img", "script", "iframe", "b", "[onerror]", "[onmouseover]", "[style]", "[src]"):
        assert turn.locator(selector).count() == 0, selector
    # The raw HTML shows as the text it is.
    shown = text.inner_text()
    assert "<img src=x onerror=alert(1)>" in shown
    assert "<script>window.__xss = 4</script>" in shown


@pytest.mark.browser
def test_reply_is_rendered_as_sanitized_markdown(page: Page, chat_url: str, fresh_fake_llm: FakeLLM) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    fresh_fake_llm.enqueue(Reply.text(HOSTILE_REPLY))
    page.goto(chat_url)
    send(page, "How are the pods in default?")
    turn = wait_for_reply(page)
    check_rendered(turn)
    # Hovering what would have been the handler's element, and opening the page's links, runs nothing.
    turn.locator(".text").hover()
    assert page.evaluate("window.__xss === undefined")

    page.reload()
    turn = page.locator("article.message.assistant")
    turn.locator(".text h2").wait_for()
    check_rendered(turn)
    assert page.evaluate("window.__xss === undefined")
    assert dialogs == []
    page.screenshot(path=str(Path("/tmp") / "ai-ops-web-markdown.png"), full_page=True)
