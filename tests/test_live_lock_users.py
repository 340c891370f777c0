"""Every user of the live lock takes it through ``collector.transport.live_lock``.

A second ``open()`` + ``flock`` of the lock file in a process that already holds it (the
``live_audit`` fixture, ``kaudit verify``) waits for itself; these pin that ``kaudit collect``,
container mode and verify do not, and that each still waits for (and times out on) another
process. The lock file is a temporary one: nothing here touches /tmp/kaudit-live.lock.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time

import pytest

from collector.commands import collect
from collector.transport import live_lock, live_lock_held
from simulator import container, verify


@pytest.fixture
def lock_path(tmp_path, monkeypatch):
    path = tmp_path / "live.lock"
    monkeypatch.setattr(container, "LIVE_LOCK", path)
    monkeypatch.setattr(verify, "LIVE_LOCK", path)
    return path


@pytest.fixture
def other_holder(lock_path):
    """Another process holding the lock until the test ends."""
    code = (
        "import fcntl, sys, time\n"
        f"f = open({str(lock_path)!r}, 'a+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=10)


def _free(path) -> bool:
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def test_collect_inside_a_holder_does_not_wait_for_itself(lock_path):
    with live_lock(str(lock_path)):
        t0 = time.monotonic()
        with collect._live_lock(str(lock_path), timeout=5.0):
            assert live_lock_held()
        assert time.monotonic() - t0 < 1.0
        assert live_lock_held()  # the outer holder still has it
    assert not live_lock_held() and _free(lock_path)


def test_collect_takes_and_releases_the_lock(lock_path):
    with collect._live_lock(str(lock_path), timeout=1.0):
        assert live_lock_held() and not _free(lock_path)
    assert not live_lock_held() and _free(lock_path)


def test_collect_times_out_on_another_process(lock_path, other_holder, capsys):
    with pytest.raises(TimeoutError, match="another process holds the live lock"):
        with collect._live_lock(str(lock_path), timeout=0.5):
            pytest.fail("took a lock another process holds")
    assert "waiting for the live lock" in capsys.readouterr().err
    assert not live_lock_held()


def test_collect_stops_waiting_on_a_signal_and_takes_nothing(lock_path, other_holder):
    stop = collect._StopFlag()
    stop.reason = "SIGTERM"
    t0 = time.monotonic()
    with collect._live_lock(str(lock_path), timeout=30.0, stop=stop):
        assert not live_lock_held()
    assert time.monotonic() - t0 < 2.0


def test_container_mode_inside_a_holder_does_not_wait_for_itself(lock_path):
    with live_lock(str(lock_path)):
        t0 = time.monotonic()
        with container.live_lock(timeout=5.0):
            assert live_lock_held()
        assert time.monotonic() - t0 < 1.0
    assert _free(lock_path)


def test_container_mode_times_out_with_its_error(lock_path, other_holder):
    with pytest.raises(container.ContainerError, match="stayed locked for 0.3s"):
        with container.live_lock(timeout=0.3):
            pytest.fail("took a lock another process holds")


def test_verify_inside_a_holder_does_not_wait_for_itself(lock_path):
    notes: list[str] = []
    with live_lock(str(lock_path)):
        with verify.live_lock(5.0, notes.append):
            assert live_lock_held()
    assert notes == [] and _free(lock_path)


def test_verify_says_it_waits_then_times_out(lock_path, other_holder):
    notes: list[str] = []
    with pytest.raises(verify.VerifyError, match="stayed locked"):
        with verify.live_lock(1.0, notes.append):
            pytest.fail("took a lock another process holds")
    assert len(notes) == 1 and "waiting for" in notes[0]
