"""The labelled prompt-injection set (data/prompt_injection_cases.yaml), for its test and its benchmark."""

from __future__ import annotations

from pathlib import Path

import yaml

CASES = Path(__file__).resolve().parent / "data" / "prompt_injection_cases.yaml"


def load_cases(held_out: bool = False) -> tuple[list[str], list[str]]:
    """(benign, injection) texts: the tuning set, or the held-out part that no tuning used."""
    data = yaml.safe_load(CASES.read_text())
    if held_out:
        return list(data["held_out_benign"]), list(data["held_out_injection"])
    return [*data["benign"], *data.get("benign_extra", [])], list(data["injection"])
