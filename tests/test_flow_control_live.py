"""What ``--audit_backlog_wait_time`` means, shown on the real kernel (issue 6, flow control).

The kernel queues the registered daemon's records in a backlog of ``backlog_limit`` records.
When the daemon does not empty its socket, kauditd cannot move records out and the backlog
fills; what happens to the next record is what ``backlog_wait_time`` decides:

* **0**: the record is dropped at once and counted in ``lost``; the audited process never
  waits (``backlog_wait_time_actual`` does not move);
* **> 0** (jiffies): the process that makes the record sleeps for room, up to that long per
  record, and the kernel adds the sleep to ``backlog_wait_time_actual``; only then is the record
  dropped. A slow collector slows every audited process instead of losing silently.

A daemon that keeps up loses nothing with either setting (the third case). docs/performance.md
("Flow control") has the storm-scale measurements; this file pins the semantics with a daemon
socket we control: one that never reads, and one drained by a thread. The workload is a child
calling ``getppid`` in a loop under a rule for its own pid only, so nothing else on the machine
is audited. ``live_audit`` restores the kernel afterwards (status, daemon pid, rules).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from collector.parser import parse_record
from collector.protocol.auditctl import parse_rule
from collector.protocol.records import AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_GET, AUDIT_SET, AUDIT_SYSCALL
from collector.protocol.status import AuditStatus, status_set
from collector.transport import Transport, TransportEvent, open_transport

pytestmark = [pytest.mark.live]

KEY = "kaudit-flow"
BACKLOG_LIMIT = 64


def _status(t: Transport) -> AuditStatus:
    return AuditStatus.decode(t.request(AUDIT_GET)[0].payload)


def _child(calls: int) -> subprocess.Popen:
    """A process that waits for a line on stdin, then calls getppid() ``calls`` times."""
    code = f"import os, sys\nsys.stdin.readline()\nfor _ in range({calls}):\n    os.getppid()\n"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)


@contextmanager
def _daemon(
    *, wait_time: int, rcvbuf: int, backlog_limit: int = BACKLOG_LIMIT
) -> Iterator[tuple[Transport, Transport]]:
    """A registered daemon socket (ours) and a control socket; the rule is added by the caller."""
    daemon = open_transport("kernel", rcvbuf=rcvbuf)
    control = open_transport("kernel", rcvbuf=0)
    try:
        daemon.request(
            AUDIT_SET,
            status_set(enabled=1, pid=os.getpid(), backlog_limit=backlog_limit, backlog_wait_time=wait_time).encode(),
        )
        yield daemon, control
    finally:
        control.request(AUDIT_SET, status_set(pid=0).encode())
        daemon.close()
        control.close()


def _run(control: Transport, calls: int, *, drain: Transport | None = None) -> tuple[AuditStatus, AuditStatus, int]:
    """Run the child under a rule for its pid; (status before, status after, records received)."""
    child = _child(calls)
    rule = parse_rule(f"-a always,exit -F arch=b64 -S getppid -F pid={child.pid} -F key={KEY}", "x86_64").encode()
    received = 0
    stop = threading.Event()

    def drainer() -> None:
        nonlocal received
        assert drain is not None
        while True:
            got = drain.recv(0.5)
            if isinstance(got, TransportEvent):
                continue
            if not got:
                if stop.is_set():
                    return
                continue
            for m in got:
                if m.type == AUDIT_SYSCALL and f'key="{KEY}"' in parse_record(m.type, m.payload).text:
                    received += 1

    control.request(AUDIT_ADD_RULE, rule)
    try:
        thread = threading.Thread(target=drainer, daemon=True) if drain is not None else None
        if thread is not None:
            thread.start()
        before = _status(control)
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.wait(timeout=300) == 0
        after = _status(control)
        if thread is not None:
            stop.set()
            thread.join(timeout=30)
            assert not thread.is_alive(), "the drainer did not finish"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        control.request(AUDIT_DEL_RULE, rule)
    return before, after, received


def test_wait_time_zero_drops_and_counts_lost_without_slowing_anyone(live_audit) -> None:
    calls = 2000
    with _daemon(wait_time=0, rcvbuf=4096) as (_daemon_sock, control):  # never read
        before, after, _ = _run(control, calls)
    lost = after.lost - before.lost
    # the socket holds a few records and the backlog BACKLOG_LIMIT (+1): every other one is lost
    assert lost >= calls - 4 * BACKLOG_LIMIT, (lost, after)
    assert after.backlog_wait_time_actual == before.backlog_wait_time_actual  # nobody was made to wait


def test_wait_time_positive_makes_the_audited_process_wait(live_audit) -> None:
    calls = 200
    with _daemon(wait_time=1, rcvbuf=4096) as (_daemon_sock, control):  # 1 jiffy per record at most
        before, after, _ = _run(control, calls)
    waited = after.backlog_wait_time_actual - before.backlog_wait_time_actual
    assert waited > 0, after  # the getppid() calls slept for room in the backlog
    # it still drops once the wait is over (nobody reads), but fewer than without waiting
    assert after.lost - before.lost <= calls


@pytest.mark.parametrize("wait_time", [0, 1])
def test_a_daemon_that_keeps_up_loses_nothing_either_way(live_audit, wait_time: int) -> None:
    # The child's burst (hundreds of thousands of calls a second) outruns any reader for a few
    # milliseconds: what absorbs it is room, a backlog and a socket buffer that hold the burst
    # while the reader catches up (what kaudit's receiver sets up). With a backlog of 64 this
    # burst of 2,000 calls lost 387 records to a reading daemon here.
    calls = 5000
    with _daemon(wait_time=wait_time, rcvbuf=8 << 20, backlog_limit=8192) as (daemon_sock, control):
        before, after, received = _run(control, calls, drain=daemon_sock)
    assert after.lost == before.lost, after
    assert received == calls  # one SYSCALL record per call, every one delivered
