"""The config file watcher reacts to the config file only: a log file written beside it triggers nothing,
while an edit of the file and a ConfigMap volume's ``..data`` symlink swap reload it."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from chat_service.config.store import ConfigStore
from tests.support.chat_support import agent_config, model_entry, write_config

STORE_LOGGER = "chat_service.config.store"


def watcher_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the watcher logs when it wakes up: watchfiles' "N changes detected" (INFO, the service's
    default level) and our reload note."""
    return [
        r.getMessage()
        for r in caplog.records
        if (r.name.startswith("watchfiles") and r.levelno >= logging.INFO)
        or (r.name == STORE_LOGGER and "changed on disk" in r.getMessage())
    ]


async def wait_for(predicate: object, what: str, seconds: float = 10.0) -> None:
    assert callable(predicate)
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds:g} s")


async def test_a_file_beside_the_config_does_not_wake_the_watcher(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="watchfiles")
    caplog.set_level(logging.DEBUG, logger=STORE_LOGGER)
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("alpha", "http://127.0.0.1:9/v1")]))
    store = ConfigStore(path)
    store.load_initial()
    applied: list[str] = []
    store.on_reload.append(applied.append)
    store.start_watching()
    try:
        await asyncio.sleep(0.3)  # the watcher is set up
        log_file = tmp_path / "chat.log"
        with log_file.open("a") as handle:
            for i in range(40):
                handle.write(f"line {i}\n")
                handle.flush()
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert watcher_lines(caplog) == [], "writes to a sibling file reach no reload"

        new = agent_config([model_entry("beta", "http://127.0.0.1:9/v1")])
        write_config(path, new)
        await wait_for(lambda: store.current.checksum == new.checksum, "the reload")
        assert applied == ["applied"]
        assert any("changed on disk" in line for line in watcher_lines(caplog))
    finally:
        await store.stop_watching()


async def test_a_configmap_volume_symlink_swap_reloads(tmp_path: Path) -> None:
    """kubelet's atomic writer: the file is a symlink into ``..data``, itself a symlink to a timestamped
    folder; an update writes a new folder and renames a new ``..data`` over the old one."""
    first = agent_config([model_entry("alpha", "http://127.0.0.1:9/v1")])
    second = agent_config([model_entry("beta", "http://127.0.0.1:9/v1")])
    (tmp_path / "..2026_01_01_00_00_00.1").mkdir()
    write_config(tmp_path / "..2026_01_01_00_00_00.1" / "agent-config.json", first)
    os.symlink("..2026_01_01_00_00_00.1", tmp_path / "..data")
    os.symlink("..data/agent-config.json", tmp_path / "agent-config.json")
    store = ConfigStore(tmp_path / "agent-config.json")
    assert store.load_initial().checksum == first.checksum
    store.start_watching()
    try:
        await asyncio.sleep(0.3)
        (tmp_path / "..2026_01_01_00_01_00.2").mkdir()
        write_config(tmp_path / "..2026_01_01_00_01_00.2" / "agent-config.json", second)
        os.symlink("..2026_01_01_00_01_00.2", tmp_path / "..data_tmp")
        os.rename(tmp_path / "..data_tmp", tmp_path / "..data")
        await wait_for(lambda: store.current.checksum == second.checksum, "the reload after the swap")
    finally:
        await store.stop_watching()
