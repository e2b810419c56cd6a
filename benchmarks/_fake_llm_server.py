"""Run the test harness' scripted OpenAI-compatible server in its own process: ``_fake_llm_server.py PORT``.

Every request gets the immediate ``echo: <last user message>`` answer, except requests for the model
``summarizer``, which get a short fixed summary (for the summarization middleware in history_growth.py), and
those for ``investigator``, which call the investigator's ``diagnosis`` tool (alert_burst.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))

import uvicorn

from tests.harness.fake_llm import FakeLLM, Reply

SUMMARY = "Summary: the user sent numbered messages and the assistant echoed each of them."
DIAGNOSIS = {
    "summary": "web is failing: its pods restart after OOMKilled",
    "rootCause": "memory limit too low",
    "confidence": "medium",
    "evidence": [{"tool": "pods_get", "arguments": "{}", "excerpt": "OOMKilled"}],
    "recommendations": ["raise the memory limit"],
    "runbooksUsed": [],
}


def main() -> None:
    port = int(sys.argv[1])
    server = FakeLLM()
    server.enqueue(*[Reply.text(SUMMARY)] * 100_000, model="summarizer")
    server.enqueue(*(Reply.tool_call("diagnosis", DIAGNOSIS) for _ in range(50_000)), model="investigator")
    # Serve its app on the requested port in this process' main thread (no background thread needed).
    uvicorn.run(server.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
