"""Workloads run for real (no collector, no audit change) and their expectations are sound.

The live suite checks expectations against the kernel; these tests check the expectations
themselves: every one names a pid the workload started, uses real column names with the
column's type, and carries the ground truth the workload measured (the helper's report).
A typo here would otherwise show up only as a live "missing row".
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.rows import ProcessEventsRow, SocketEventsRow
from simulator import workloads
from simulator.workloads.base import (
    PROG,
    Identity,
    WorkloadContext,
    WorkloadError,
    osq_address,
    spawn_syscall,
)

ROW_TYPES = {"socket_events": SocketEventsRow.COLUMN_TYPES, "process_events": ProcessEventsRow.COLUMN_TYPES}
LOCAL = [w for w in workloads.ALL if not w.needs_network]


@pytest.fixture
def ctx(tmp_path: Path):
    c = WorkloadContext(tmp_path.resolve())
    yield c
    c.reap()


def check_sound(rows, ctx: WorkloadContext) -> None:
    assert rows, "a workload must expect at least one row"
    for row in rows:
        types = ROW_TYPES[row.table]
        for col, value in row.columns.items():
            assert col in types, f"{row.why}: {col} is not a {row.table} column"
            want = int if types[col] in ("INTEGER", "BIGINT") else str
            assert type(value) is want, f"{row.why}: {col}={value!r} should be {want.__name__}"
        assert row.columns["pid"] in ctx.pids, (
            f"{row.why}: pid {row.columns['pid']} is not one the workload started"
        )


@pytest.mark.parametrize("wl", LOCAL, ids=[w.name for w in LOCAL])
def test_local_workload_runs_and_expectations_are_sound(wl, ctx):
    rows = wl.run(ctx)
    check_sound(rows, ctx)
    me = Identity.current()
    # every process the workload started directly has its spawn rows declared
    for child in ctx.children:
        kinds = [(r.kind, r.columns.get("parent")) for r in rows if r.columns["pid"] == child.pid]
        assert (spawn_syscall(), me.pid) in kinds, f"{child.describe()}: no {spawn_syscall()} row"
        assert ("execve", me.pid) in kinds


def test_spawn_rows_carry_argv_cwd_and_executable(ctx):
    rows = workloads.select(["execve-hex-args"])[0].run(ctx)
    child = ctx.children[0]
    execve = next(r for r in rows if r.kind == "execve")
    assert execve.columns["cmdline"] == " ".join(child.argv)
    assert "two words" in child.argv and "" in child.argv
    assert execve.columns["cwd"] == str(ctx.workdir)
    assert execve.columns["path"] == os.path.realpath("/usr/bin/true")
    assert execve.columns["mode"].startswith("0100")
    assert execve.columns["cmdline_size"] == len(execve.columns["cmdline"].encode())


def test_long_arguments_exceed_the_kernels_chunk(ctx):
    rows = workloads.select(["execve-long-args"])[0].run(ctx)
    execve = next(r for r in rows if r.kind == "execve")
    assert max(len(a) for a in ctx.children[0].argv) > 7500 * 2  # split even when not hex-encoded
    assert len(execve.columns["cmdline"]) > 30000


def test_fork_chain_reports_a_real_chain(ctx):
    rows = workloads.select(["fork-chain"])[0].run(ctx)
    clones = [r for r in rows if r.kind == "clone"]
    assert len(clones) == 2
    top = ctx.children[0].pid
    assert clones[0].columns["parent"] == top
    assert clones[1].columns["parent"] == clones[0].columns["pid"]
    last = [r for r in rows if r.kind == "execve"][-1]
    assert (
        last.columns["pid"] == clones[1].columns["pid"] and last.columns["parent"] == clones[0].columns["pid"]
    )


def test_accept_workload_peers_are_the_clients(ctx):
    rows = workloads.select(["accept-accept4"])[0].run(ctx)
    accepts = [r for r in rows if r.kind == "accept"]
    connects = [r for r in rows if r.kind == "connect"]
    assert len(accepts) == 2 and len(connects) == 2
    assert len({r.columns["remote_port"] for r in accepts}) == 2
    assert all(r.columns["remote_port"] > 0 for r in accepts)


def test_osq_address_spelling():
    assert osq_address("::1") == "0000:0000:0000:0000:0000:0000:0000:0001"
    assert osq_address("fd00:6b61::2") == "fd00:6b61:0000:0000:0000:0000:0000:0002"
    assert osq_address("127.0.0.1") == "127.0.0.1"


def test_unknown_workload_name_is_named():
    with pytest.raises(KeyError, match="nope.*known: curl-loopback"):
        workloads.select(["curl-loopback", "nope"])
    assert [w.name for w in workloads.select(["bind", "curl-loopback"])] == ["curl-loopback", "bind"]
    assert len(workloads.ALL) >= 14 and len(set(workloads.names())) == len(workloads.ALL)


def test_helper_errors_become_workload_errors(ctx):
    child = ctx.prog("no-such-command")
    with pytest.raises(WorkloadError, match="usage: prog.py"):
        child.read_json()
    assert child.wait() == 2


def test_silent_helper_times_out_without_hanging(ctx):
    child = ctx.spawn([sys.executable, "-c", "import time; time.sleep(30)"])
    t0 = time.monotonic()
    with pytest.raises(WorkloadError, match="no output within"):
        child.read_json(timeout=0.5)
    assert time.monotonic() - t0 < 5
    ctx.reap()
    assert child.proc.poll() is not None


def test_helper_deadline_ends_a_stuck_server():
    env = dict(os.environ, KAUDIT_PROG_DEADLINE="1")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(PROG), "serve", "-", "tcp", "127.0.0.1", "0", "1"],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode != 0 and time.monotonic() - t0 < 10
    assert b"ready" in proc.stdout


def test_port_in_use_is_a_clear_error(ctx):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        child = ctx.prog("serve", "-", "tcp", "127.0.0.1", port, 1)
        with pytest.raises(WorkloadError, match=f"cannot bind 127.0.0.1 port {port}"):
            child.read_json()


def test_missing_program_is_a_clear_error(ctx):
    with pytest.raises(WorkloadError, match="not found on PATH"):
        ctx.spawn(["kaudit-no-such-program-xyz"])
