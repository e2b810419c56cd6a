"""Run the test harness' scripted OpenAI-compatible server in its own process: ``_fake_llm_server.py PORT``.

Every request gets the immediate ``echo: <last user message>`` answer, except requests for the model
``summarizer``, which get a short fixed summary (for the summarization middleware in history_growth.py), and
those for ``investigator``, which call the investigator's ``diagnosis`` tool (alert_burst.py), after
``AI_OPS_BENCH_INVESTIGATOR_DELAY`` seconds (default none).
"""

from __future__ import annotations

import os
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
    delay = float(os.environ.get("AI_OPS_BENCH_INVESTIGATOR_DELAY") or 0)
    diagnoses = (Reply.tool_call("diagnosis", DIAGNOSIS) for _ in range(50_000))
    if delay:
        diagnoses = (Reply.delay(delay, then) for then in diagnoses)
    server.enqueue(*diagnoses, model="investigator")
    # Serve its app on the requested port in this process' main thread (no background thread needed).
    uvicorn.run(server.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
