"""Precision and recall of the prompt_injection middleware's default patterns on a labelled set.

The set (tests/support/data/prompt_injection_cases.yaml) holds benign operations questions that mention
system prompts, instructions, roles, tokens and keys in good faith, and injection attempts. A false positive
blocks an ordinary user; a false negative lets an attempt reach the model (which has other defences), so
precision matters at least as much as recall here.

    .venv/bin/python benchmarks/prompt_injection.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from tests.support.injection_cases import load_cases  # noqa: E402


def main() -> int:
    from ai_ops_api.middleware import PromptInjectionConfig
    from chat_service.middleware.injection import compile_patterns

    patterns = compile_patterns(PromptInjectionConfig())

    def flagged(text: str) -> bool:
        return any(p.search(text) for p in patterns)

    for label, held_out in (("tuning set", False), ("held-out set", True)):
        benign, injection = load_cases(held_out)
        false_positives = [t for t in benign if flagged(t)]
        true_positives = [t for t in injection if flagged(t)]
        missed = [t for t in injection if not flagged(t)]
        precision = len(true_positives) / max(1, len(true_positives) + len(false_positives))
        recall = len(true_positives) / max(1, len(injection))
        print(f"{label}: {len(benign)} benign, {len(injection)} injection")
        print(f"  precision {precision:.3f}  recall {recall:.3f}")
        for text in false_positives:
            print(f"  false positive: {text}")
        for text in missed:
            print(f"  missed: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
