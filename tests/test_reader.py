"""Reader: batches of records, status polling in the stream, ENOBUFS, pid lost and re-taken."""

from __future__ import annotations

import errno
import os
import time

import pytest

from collector.config import KernelConfig
from collector.flags import AuditFlags
from collector.protocol import netlink as nl
from collector.protocol.records import AUDIT_GET, AUDIT_SET, record_type_number
from collector.protocol.status import AuditStatus, status_set
from collector.reader import AUDIT_REPLACE, Reader
from collector.transport import Transport, TransportEvent
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel

SYSCALL = record_type_number("SYSCALL")
EOE = record_type_number("EOE")


@pytest.fixture
def sim():
    srv = EndpointServer(AuditKernel(enabled=1)).start()
    transports: list[Transport] = []

    def connect() -> Transport:
        t = Transport.over_socket(srv.connect_pair())
        transports.append(t)
        return t

    srv.connect = connect  # type: ignore[attr-defined]
    yield srv
    for t in transports:
        t.close()
    srv.stop()


def _register(t: Transport) -> None:
    t.request(AUDIT_SET, status_set(pid=os.getpid()).encode())


def _drain_until(reader: Reader, n: int, timeout: float = 5.0) -> list[nl.NetlinkMessage]:
    """Drain until ``n`` records came (or, for n=0, for the whole ``timeout``)."""
    out: list[nl.NetlinkMessage] = []
    end = time.monotonic() + timeout
    while (n == 0 or len(out) < n) and time.monotonic() < end:
        out.extend(reader.drain(0.05))
    return out


def _drain_while(reader: Reader, cond, timeout: float = 5.0) -> None:
    """Drain until ``cond()`` holds (replies arrive whenever the simulator thread sends them)."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached while draining"
        reader.drain(0.05)


def test_drain_returns_records_in_batches(sim):
    t = sim.connect()
    _register(t)
    _drain_until(Reader(t, status_interval=3600), 0, 0.2)  # the registration's CONFIG_CHANGE
    reader = Reader(t, pid=os.getpid(), status_interval=3600, batch_max=4)
    for i in range(10):
        sim.emit_record(SYSCALL, f"arch=c000003e syscall=59 success=yes exit=0 pid={100 + i}")
    got = _drain_until(reader, 10)
    assert [m.type for m in got] == [SYSCALL] * 10
    assert [m.payload.split(b"pid=")[1] for m in got] == [str(100 + i).encode() for i in range(10)]
    # the first drain also asked for the status; its reply never came out as a record
    assert _drain_until(reader, 0, 0.2) == []
    assert reader.counters.status_polls == 1
    assert reader.last_status is not None and reader.last_status.pid == os.getpid()


def test_batch_max_bounds_one_drain(sim):
    t = sim.connect()
    _register(t)
    _drain_until(Reader(t, status_interval=3600), 0, 0.2)  # the registration's CONFIG_CHANGE
    reader = Reader(t, pid=os.getpid(), status_interval=3600, batch_max=3)
    for i in range(7):
        sim.emit_record(SYSCALL, f"syscall=59 pid={i}")
    time.sleep(0.2)
    first = reader.drain(1.0)
    assert 1 <= len(first) <= 3
    rest = _drain_until(reader, 7 - len(first))
    assert len(first) + len(rest) == 7


def test_status_poll_reports_lost_delta_and_backlog(sim):
    sim.call(lambda k: setattr(k, "lost", 40))
    t = sim.connect()
    clock = [0.0]
    reader = Reader(t, pid=None, status_interval=10, clock=lambda: clock[0])
    _drain_while(reader, lambda: reader.counters.status_polls == 1)  # first poll: baseline
    assert reader.counters.lost == 0
    assert reader.counters.lost_at_start == 40
    sim.call(lambda k: setattr(k, "lost", 47))
    reader.drain(0.2)  # not due yet
    assert reader.counters.status_polls == 1
    clock[0] = 11
    _drain_while(reader, lambda: reader.counters.status_polls == 2)
    assert reader.counters.lost == 7


def test_lost_counter_wraps(sim):
    sim.call(lambda k: setattr(k, "lost", 0xFFFFFFFE))
    t = sim.connect()
    clock = [0.0]
    reader = Reader(t, status_interval=1, clock=lambda: clock[0])
    _drain_while(reader, lambda: reader.counters.status_polls == 1)
    sim.call(lambda k: setattr(k, "lost", 1))
    clock[0] = 2
    _drain_while(reader, lambda: reader.counters.status_polls == 2)
    assert reader.counters.lost == 3


def test_enobufs_is_counted_and_reading_goes_on(sim):
    t = sim.connect()
    _register(t)
    warnings: list[str] = []
    reader = Reader(t, pid=os.getpid(), status_interval=3600, warn=warnings.append)
    end = time.monotonic() + 5
    while reader.counters.status_polls == 0 and time.monotonic() < end:
        reader.drain(0.05)  # the first poll's reply: the baseline
    polls = reader.counters.status_polls
    assert polls == 1
    sim.emit_record(SYSCALL, "syscall=59 pid=1")
    assert sim.inject_error(t.port_id, errno.ENOBUFS)
    sim.emit_record(SYSCALL, "syscall=59 pid=2")
    got = _drain_until(reader, 2)
    assert len(got) == 2
    assert reader.counters.enobufs == 1 and t.counters["enobufs"] == 1
    assert any("ENOBUFS" in w for w in warnings)
    _drain_until(reader, 0, 0.3)
    assert reader.counters.status_polls == polls + 1  # the re-sync asked for the status at once


def test_pid_dropped_is_reported_and_retaken_with_persist(sim):
    t = sim.connect()
    cfg = KernelConfig(t, AuditFlags(allow_config=True))
    cfg.configure()
    warnings: list[str] = []
    clock = [0.0]
    reader = Reader(
        t,
        pid=os.getpid(),
        persist=True,
        retake=cfg.retake_pid,
        status_interval=5,
        warn=warnings.append,
        clock=lambda: clock[0],
    )
    _drain_while(reader, lambda: reader.counters.status_polls == 1)
    assert reader.counters.pid_lost == 0
    sim.connect().request(AUDIT_SET, status_set(pid=0).encode())  # our registration is gone
    clock[0] = 6
    _drain_while(reader, lambda: reader.counters.pid_retaken == 1)
    assert reader.counters.pid_lost == 1
    assert sim.call(lambda k: (k.auditd_pid, k.auditd_port)) == (os.getpid(), t.port_id)
    assert any("held by nobody" in w for w in warnings)
    # and records flow to us again
    sim.emit_record(SYSCALL, "syscall=59 pid=9")
    got: list[nl.NetlinkMessage] = []
    _drain_while(reader, lambda: got.extend(reader.drain(0.05)) or any(m.type == SYSCALL for m in got))
    assert [m.payload.split(b"): ")[1] for m in got if m.type == SYSCALL] == [b"syscall=59 pid=9"]
    assert cfg.restore().ok


def test_pid_dropped_without_persist_is_only_reported(sim):
    t = sim.connect()
    _register(t)
    warnings: list[str] = []
    calls: list[int] = []
    reader = Reader(t, pid=os.getpid(), persist=False, retake=lambda: calls.append(1), warn=warnings.append)
    sim.connect().request(AUDIT_SET, status_set(pid=0).encode())
    _drain_while(reader, lambda: reader.counters.status_polls == 1)
    assert reader.counters.pid_lost == 1 and calls == []
    assert any("not re-taking" in w for w in warnings)


class Scripted:
    """A transport double that returns scripted datagrams and records what was sent."""

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.sent: list[nl.NetlinkMessage] = []
        self.counters: dict[str, int] = {"enobufs": 0}

    def send(self, msg: nl.NetlinkMessage) -> int:
        self.sent.append(msg)
        return len(self.sent)

    def recv(self, timeout):
        return self.script.pop(0) if self.script else []


def _status_msg(pid: int, seq: int = 1) -> nl.NetlinkMessage:
    return nl.NetlinkMessage(AUDIT_GET, 0, seq, 0, AuditStatus(enabled=1, pid=pid, backlog=5).encode())


def test_foreign_pid_retake_failure_is_reported_once_per_holder():
    script = [[_status_msg(4242)], [], [_status_msg(4242)], []]
    t = Scripted(script)
    warnings: list[str] = []

    def refuse():
        raise OSError(errno.EEXIST, "kernel answered EEXIST")

    clock = [0.0]
    reader = Reader(
        t,
        pid=777,
        persist=True,
        retake=refuse,
        status_interval=1,
        warn=warnings.append,
        clock=lambda: clock[0],
    )
    reader.drain(0)
    clock[0] = 2
    reader.drain(0)
    c = reader.counters
    assert (c.pid_lost, c.pid_retaken, c.pid_retake_failed) == (1, 0, 2)
    assert sum("held by pid 4242" in w for w in warnings) == 1
    assert sum("re-taking the audit daemon pid failed" in w for w in warnings) == 1
    assert c.backlog == 5 and c.backlog_max == 5
    assert [m.type for m in t.sent] == [AUDIT_GET, AUDIT_GET]
    assert not t.sent[0].flags & nl.NLM_F_ACK  # the reply is picked out of the stream, no ACK


def test_control_messages_never_reach_the_caller():
    rec = nl.NetlinkMessage(SYSCALL, 0, 0, 0, b"audit(1.000:1): syscall=59")
    replace = nl.NetlinkMessage(AUDIT_REPLACE, 0, 0, 0, (4242).to_bytes(4, "little"))
    noop = nl.NetlinkMessage(nl.NLMSG_NOOP)
    t = Scripted([[rec, replace, noop], TransportEvent("eintr", errno.EINTR), [rec]])
    reader = Reader(t, pid=1, status_interval=3600)
    got = reader.drain(0)
    assert got == [rec, rec]
    assert reader.counters.replace_probes == 1 and reader.counters.stray == 1


def test_status_refused_stops_polling():
    err = nl.NetlinkMessage(
        nl.NLMSG_ERROR, 0, 1, 0, nl.error_payload(errno.EPERM, nl.NetlinkMessage(AUDIT_GET, seq=1))
    )
    t = Scripted([[err]])
    warnings: list[str] = []
    clock = [0.0]
    reader = Reader(t, status_interval=1, warn=warnings.append, clock=lambda: clock[0])
    reader.drain(0)
    clock[0] = 5
    reader.drain(0)
    assert reader.counters.status_errors == 1 and len(t.sent) == 1
    assert any("EPERM" in w for w in warnings)


def test_closed_endpoint_raises():
    t = Scripted([TransportEvent("closed", 0, "bye")])
    with pytest.raises(ConnectionError, match="closed"):
        Reader(t, status_interval=3600).drain(0)


def _disabled_msg(enabled: int, pid: int = 777) -> nl.NetlinkMessage:
    return nl.NetlinkMessage(AUDIT_GET, 0, 1, 0, AuditStatus(enabled=enabled, pid=pid).encode())


def _run_statuses(reader: Reader, clock: list[float], n: int) -> None:
    for i in range(n):
        clock[0] = i * 2
        reader.drain(0)


def test_a_disabled_kernel_is_counted_once_per_switch_off_and_left_off_without_persist():
    t = Scripted([[_disabled_msg(0)], [_disabled_msg(0)], [_disabled_msg(1)], [_disabled_msg(0)]])
    calls: list[int] = []
    warnings: list[str] = []
    clock = [0.0]
    reader = Reader(t, pid=777, persist=False, reenable=lambda: calls.append(1), status_interval=1,
                    warn=warnings.append, clock=lambda: clock[0])
    _run_statuses(reader, clock, 4)
    c = reader.counters
    assert (c.kernel_disabled, c.kernel_reenabled, c.kernel_reenable_failed) == (2, 0, 0)
    assert calls == []
    assert sum("kernel audit is disabled" in w and "--audit_persist is off" in w for w in warnings) == 2
    assert reader.counters.as_dict()["kernel_disabled"] == 2


def test_persist_reenables_a_disabled_kernel_and_reports_failures_once():
    t = Scripted([[_disabled_msg(0)], [_disabled_msg(0)], [_disabled_msg(0)], [_disabled_msg(1)]])
    outcomes = [OSError(errno.EPERM, "kernel answered EPERM"), OSError(errno.EPERM, "kernel answered EPERM"), None]
    warnings: list[str] = []

    def reenable():
        exc = outcomes.pop(0)
        if exc is not None:
            raise exc

    clock = [0.0]
    reader = Reader(t, pid=777, persist=True, reenable=reenable, status_interval=1,
                    warn=warnings.append, clock=lambda: clock[0])
    _run_statuses(reader, clock, 4)
    c = reader.counters
    assert (c.kernel_disabled, c.kernel_reenable_failed, c.kernel_reenabled) == (1, 2, 1)
    assert outcomes == []
    assert sum("re-enabling kernel audit failed" in w for w in warnings) == 1
    assert any("re-enabled kernel audit" in w for w in warnings)


def test_without_a_reenable_callable_a_disabled_kernel_is_only_counted():
    t = Scripted([[_disabled_msg(0, pid=0)]])
    warnings: list[str] = []
    reader = Reader(t, pid=None, persist=True, status_interval=1, warn=warnings.append)
    reader.drain(0)
    assert reader.counters.kernel_disabled == 1 and reader.counters.kernel_reenabled == 0
    assert any("configuration is not ours" in w for w in warnings)


def test_collector_reenables_the_simulated_kernel_after_auditctl_e_0(sim):
    """End to end in the model: a config-owning collector with persist switches audit back on."""
    import io
    import threading

    from collector.commands.collect import COLLECT_DEFAULTS, Collector

    col = Collector("unused", COLLECT_DEFAULTS, io.StringIO(), status_interval=0.1,
                    transport_factory=lambda *_a, **_k: sim.connect())
    th = threading.Thread(target=col.run, daemon=True)
    th.start()
    try:
        assert col.ready.wait(10)
        admin = sim.connect()
        admin.request(AUDIT_SET, status_set(enabled=0).encode())
        end = time.monotonic() + 10
        while sim.call(lambda k: k.enabled) != 1:
            assert time.monotonic() < end, "the collector did not switch audit back on"
            time.sleep(0.02)
        assert col.reader is not None and col.reader.counters.kernel_disabled == 1
        assert col.reader.counters.kernel_reenabled == 1
    finally:
        col.stop.reason = "test done"
        th.join(10)
    assert sim.call(lambda k: k.enabled) == 1  # the state found at start (the fixture's kernel)
