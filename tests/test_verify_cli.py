"""``kaudit verify`` on the command line: listing, bad names, and faults before any live work.

None of these touch the kernel's audit state: they end before the live lock is taken.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from simulator import workloads
from simulator.verify import COLLECTOR_FLAGS, VerifyOptions, default_collector, run_verify


def kaudit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_list_names_every_workload_and_marks_network_ones():
    proc = kaudit("--list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == workloads.names()
    net = {w.name for w in workloads.ALL if w.needs_network}
    assert {line.split()[0] for line in lines if line.split()[1] == "net"} == net


def test_list_some():
    proc = kaudit("--list", "--workload", "bind", "curl-loopback")
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["curl-loopback", "bind"]


def test_unknown_workload_is_status_2_with_the_known_names():
    proc = kaudit("--workload", "no-such-workload")
    assert proc.returncode == 2
    assert "unknown workload(s): no-such-workload" in proc.stderr and "curl-loopback" in proc.stderr
    err = io.StringIO()
    assert run_verify(VerifyOptions(workloads=["nope"], take_lock=False), io.StringIO(), err) == 2


def test_container_mode_without_docker_is_status_2_and_says_how(tmp_path):
    proc = kaudit(
        "--container", "--workload", "bind", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    )
    assert proc.returncode == 2
    assert "no Docker engine answers" in proc.stderr and "docker-up" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_collector_flags_turn_on_every_row_kind(tmp_path):
    assert set(COLLECTOR_FLAGS) >= {
        "--audit_allow_sockets",
        "--audit_allow_unix",
        "--audit_allow_fork_process_events",
        "--audit_allow_failed_socket_events",
        "--audit_allow_accept_socket_events",
    }
    argv = default_collector(tmp_path / "rows.jsonl")
    assert argv[argv.index("--output") + 1] == str(tmp_path / "rows.jsonl")
    assert "--no-lock" in argv  # verify holds the lock for its collector


def test_unreachable_kernel_audit_is_status_2_before_anything_changes(monkeypatch):
    import collector.transport

    if os.geteuid() != 0:
        import pytest

        pytest.skip("the root check comes first; this exercises the next one")

    def refuse(*a, **kw):
        raise OSError(93, "Protocol not supported")

    monkeypatch.setattr(collector.transport, "open_transport", refuse)
    err = io.StringIO()
    opts = VerifyOptions(workloads=["bind"], take_lock=False, collector=["false"])
    assert run_verify(opts, io.StringIO(), err) == 2
    assert "the kernel's audit is unreachable over NETLINK_AUDIT" in err.getvalue()
