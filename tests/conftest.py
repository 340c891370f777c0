"""Shared fixtures: the in-process simulator and the guarded real kernel.

``live_audit`` is the only way a test touches the real kernel's audit state: it skips with the
kernel's own reason where audit is unreachable, holds the exclusive live lock for the test,
snapshots status, features, rules and our tty auditing, and restores them afterwards whatever
the test did. Tests marked ``live`` (or using ``live_audit``) are put in the pytest-xdist group
"live", so ``pytest -n auto --dist loadgroup`` runs them one after another on one worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.transport import kernel_unreachable_reason, live_lock, open_transport
from simulator.conformance import KernelSnapshot
from simulator.fixtures import kernel_harness, sim_endpoint, sim_kernel, sim_server, sim_transport  # noqa: F401

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_xdist = config.pluginmanager.hasplugin("xdist")
    for item in items:
        if "live_audit" in getattr(item, "fixturenames", ()) and item.get_closest_marker("live") is None:
            item.add_marker(pytest.mark.live)
        if has_xdist and item.get_closest_marker("live") is not None:
            item.add_marker(pytest.mark.xdist_group("live"))


@pytest.fixture
def live_audit() -> Iterator[KernelSnapshot]:
    """The real kernel, locked and snapshotted; restored after the test (see module docstring)."""
    reason = kernel_unreachable_reason()
    if reason:
        pytest.skip(reason)
    with live_lock():
        with open_transport("kernel", rcvbuf=0) as t:
            snapshot = KernelSnapshot.take(t)
        try:
            yield snapshot
        finally:
            with open_transport("kernel", rcvbuf=0) as t:
                snapshot.restore(t)


@pytest.fixture
def corpus() -> Path:
    """../shared/corpus from the repository root; the test is skipped when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not at {CORPUS}")
    return CORPUS
