"""Run a kopf operator inside the test's event loop, against the k8s_emulator fixture."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
from collections.abc import AsyncIterator, Collection
from types import ModuleType

import kopf

# kopf.operator(vault=...) is public, its Vault class is not exported: a pre-filled vault points kopf
# at the emulator without adding a login handler to the caller's registry (which tests may reuse).
from kopf._cogs.structs.credentials import Vault

from tests.harness.emulator import EmulatorHandle

# The emulator of the running test, set by the k8s_emulator fixture: the default for kopf_operator().
current_emulator: EmulatorHandle | None = None


def fresh_registry(module: ModuleType | str) -> kopf.OperatorRegistry:
    """A new registry holding the handlers of `module`, which is (re-)imported to register them.

    Handlers decorated without `registry=` go to kopf's default registry; re-running the module with a
    fresh default registry isolates each test from the handlers of previous tests.
    """
    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        if isinstance(module, str):
            if module in sys.modules:
                importlib.reload(sys.modules[module])
            else:
                importlib.import_module(module)
        else:
            importlib.reload(module)
    finally:
        kopf.set_default_registry(previous)
    return registry


def quick_settings() -> kopf.OperatorSettings:
    """Settings that keep tests quick and quiet: short backoffs, no peering, no posting of debug events."""
    settings = kopf.OperatorSettings()
    settings.posting.level = logging.WARNING
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.watching.reconnect_backoff = 0.1
    settings.batching.idle_timeout = 0.5
    settings.batching.batch_window = 0.05
    settings.batching.exit_timeout = 0.5
    return settings


@contextlib.asynccontextmanager
async def kopf_operator(
    registry_or_module: kopf.OperatorRegistry | ModuleType | str,
    namespaces: Collection[str] = (),
    *,
    emulator: EmulatorHandle | None = None,
    clusterwide: bool = False,
    settings: kopf.OperatorSettings | None = None,
    ready_timeout: float = 10.0,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run `kopf.operator(...)` against the emulator until the block exits; yields the operator task.

    A registry is used as given; a module (or module name) is re-imported into a fresh registry. The
    credentials point at the emulator (a pre-filled kopf vault: the same as a login handler, without
    adding one to the caller's registry). Without `namespaces`, the operator runs cluster-wide. The
    task is cancelled at exit (kopf's stop_flag would wait 5 s for the emulator's own open streams).
    """
    emulator = emulator or current_emulator
    if emulator is None:
        raise RuntimeError("kopf_operator() needs the k8s_emulator fixture (or emulator=...)")
    registry = (
        registry_or_module
        if isinstance(registry_or_module, kopf.OperatorRegistry)
        else fresh_registry(registry_or_module)
    )
    for namespace in namespaces:
        emulator.seed_namespace(namespace)
    vault = Vault({"emulator": kopf.ConnectionInfo(server=emulator.url, insecure=True)})
    ready = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings or quick_settings(),
            standalone=True,
            clusterwide=clusterwide or not namespaces,
            namespaces=list(namespaces),
            ready_flag=ready,
            vault=vault,
        ),
        name="kopf-operator",
    )
    try:
        waiter = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait(
            [task, waiter], timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if task in done:
            task.result()  # re-raises why the operator stopped
            raise RuntimeError("the kopf operator exited before it was ready")
        if not done:
            raise TimeoutError(f"the kopf operator was not ready after {ready_timeout}s")
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
