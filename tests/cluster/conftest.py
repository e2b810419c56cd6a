"""The `control_plane` fixture: one real etcd and kube-apiserver for the session (see controlplane.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.cluster.controlplane import ControlPlane, ControlPlaneUnavailable, find_binaries, timings_line
from tests.cluster.rest import crd_documents, install_crds

# Seconds spent finding (or building) the binaries and starting the servers, for the summary line.
_timings: dict[str, float] = {}


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd and kube-apiserver on 127.0.0.1 for the session; skipped where there is neither Go nor binaries."""
    began = time.monotonic()
    try:
        binaries = find_binaries()
    except ControlPlaneUnavailable as reason:
        pytest.skip(str(reason))
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    _timings["binaries"] = time.monotonic() - began
    plane = ControlPlane(binaries)
    try:
        plane.start()
    except RuntimeError as error:
        plane.stop()
        pytest.fail(str(error), pytrace=False)
    except BaseException:
        plane.stop()
        raise
    _timings["start"] = plane.started_in
    try:
        yield plane
    finally:
        plane.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, a worker hands its timings to the controller (tests/conftest.py prints them)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and "start" in _timings:
        workeroutput["control_plane_timings"] = dict(_timings)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying what the control plane cost this run: the figure to watch as the suite grows."""
    if "start" in _timings:
        terminalreporter.write_line(timings_line(_timings))


@pytest.fixture(scope="session")
def ai_ops_crds(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with `crds/*.yaml` installed, each Established and served."""
    install_crds(control_plane, crd_documents())
    return control_plane
