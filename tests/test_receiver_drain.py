"""collector.receiver: the drainer hands over every datagram, in order, in both modes.

Most tests run against the in-process simulator (nothing here touches the machine's audit
state); one drives the process drainer over a real NETLINK_ROUTE socket to exercise the
kernel's own sender addresses without audit. No test measures time.
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import struct
import threading
import time

import pytest

from collector.commands.collect import COLLECT_DEFAULTS, Collector
from collector.protocol import netlink as nl
from collector.protocol.auditctl import parse_rule
from collector.protocol.records import AUDIT_GET, record_type_number
from collector.protocol.status import AuditStatus, status_set
from collector.receiver import (
    BATCH_BYTES,
    Receiver,
    ReceiverTransport,
    _Drainer,
    receiver_transport_factory,
)
from collector.transport import CONTROL_PORT, OP_SOCKERR, Control, Transport, TransportEvent
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel

MODES = ["process", "thread"]
SYSCALL, EOE, SOCKADDR = (record_type_number(n) for n in ("SYSCALL", "EOE", "SOCKADDR"))


@pytest.fixture
def server():
    with EndpointServer(queue_limit=1_000_000) as srv:
        srv.start()
        yield srv


def _daemon(server: EndpointServer) -> Transport:
    """A transport registered as the simulated kernel's audit daemon, audit enabled."""
    t = Transport.over_socket(server.connect_pair())
    t.request(1001, status_set(pid=os.getpid(), enabled=1).encode())
    return t


def _records(batches) -> list[nl.NetlinkMessage]:
    return [m for b in batches if not isinstance(b, TransportEvent) for m in b if m.type == SYSCALL]


def _take(get, n: int, timeout: float = 20.0) -> list[nl.NetlinkMessage]:
    """Call ``get`` until ``n`` SYSCALL messages came (or the generous timeout: a hang, not a speed test)."""
    out: list[nl.NetlinkMessage] = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        got = get(0.5)
        if got and not isinstance(got, TransportEvent):
            out.extend(m for m in got if m.type == SYSCALL)
    return out


@pytest.mark.parametrize("mode", MODES)
def test_every_record_arrives_once_in_order(server: EndpointServer, mode: str) -> None:
    t = _daemon(server)
    r = Receiver(t, mode=mode).start()
    try:
        for i in range(3000):
            server.emit_record(SYSCALL, f"n={i} arch=c000003e syscall=42")
        got = _take(r.get, 3000)
    finally:
        r.close()
        t.close()
    assert [m.payload.split(b"n=")[1].split()[0] for m in got] == [str(i).encode() for i in range(3000)]
    assert all(m.short_len for m in got)  # the unicast form, as the kernel sends it to the daemon
    assert r.counters.datagrams >= 3000 and r.counters.bad_datagram == 0
    assert r.counters.recv_calls >= 3000  # the drainer's own count came back at stop
    assert not r.running


@pytest.mark.parametrize("mode", MODES)
def test_request_while_draining_keeps_the_records_around_it(server: EndpointServer, mode: str) -> None:
    rt = ReceiverTransport(_daemon(server), mode=mode)
    try:
        rt.recv(0.2)  # starts the drainer
        assert rt.receiver.running
        for i in range(200):
            server.emit_record(SYSCALL, f"n={i}")
        replies = rt.request(AUDIT_GET)  # the ACK and the reply come through the drainer
        status = AuditStatus.decode(replies[0].payload)
        assert status.pid == os.getpid() and status.enabled == 1
        for i in range(200, 400):
            server.emit_record(SYSCALL, f"n={i}")
        got = _take(rt.recv, 400)
    finally:
        rt.close()
    assert [m.payload.split(b"n=")[1] for m in got] == [str(i).encode() for i in range(400)]
    assert rt.wrapped.counters["receiver_datagrams"] >= 400  # counters land in the transport's


@pytest.mark.parametrize("mode", MODES)
def test_an_overflow_is_an_event_and_a_counter(server: EndpointServer, mode: str) -> None:
    rt = ReceiverTransport(_daemon(server), mode=mode)
    try:
        rt.recv(0.2)
        server.emit_record(SYSCALL, "n=1")
        assert server.inject_error(rt.port_id, errno.ENOBUFS)
        server.emit_record(SYSCALL, "n=2")
        seen: list = []
        end = time.monotonic() + 20
        while time.monotonic() < end and not (
            any(isinstance(x, TransportEvent) for x in seen) and len(_records(seen)) == 2
        ):
            got = rt.recv(0.5)
            if got:
                seen.append(got)
    finally:
        rt.close()
    events = [x for x in seen if isinstance(x, TransportEvent)]
    assert [e.kind for e in events] == ["enobufs"]
    assert [m.payload.split(b"n=")[1] for m in _records(seen)] == [b"1", b"2"]
    assert rt.wrapped.counters["enobufs"] == 1 and rt.wrapped.counters["receiver_enobufs"] == 1


def test_stop_hands_over_what_the_socket_held_and_reaps_the_drainer(server: EndpointServer) -> None:
    t = _daemon(server)
    r = Receiver(t, mode="process").start()
    pid = r.drainer_pid
    for i in range(500):
        server.emit_record(SYSCALL, f"n={i}")
    # the endpoint writes asynchronously: stop() promises what the *socket* held, so wait until
    # every record has left the endpoint's queue before asking the drainer to stop
    assert server.wait_drained(t.port_id, timeout=10)
    r.stop()
    got = _take(r.get, 500, timeout=5)
    r.close()
    t.close()
    assert len(got) == 500
    assert pid is not None and not os.path.exists(f"/proc/{pid}")  # reaped, not a zombie
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_slow_consumer_stalls_the_drainer_and_a_loss_is_reported(server: EndpointServer) -> None:
    """Past ``max_pending`` the drainer stops reading: the socket fills and the kernel's backlog
    policy applies (the simulated kernel, like the real one with backlog_wait_time 0, drops and
    counts in ``lost``). Nothing vanishes silently: received + lost = emitted."""
    lost_before = server.call(lambda k: k.lost)
    t = _daemon(server)
    r = Receiver(t, mode="process", max_pending=BATCH_BYTES).start()
    seen: list = []
    try:
        body = "x" * 400
        for i in range(12000):  # ~5 MB: more than the pipe and max_pending hold
            server.emit_record(SYSCALL, f"n={i} {body}")
        time.sleep(1.0)  # nothing consumed meanwhile: the drainer must stop reading
        end = time.monotonic() + 20
        while time.monotonic() < end and len(_records(seen)) < 12000:
            got = r.get(1.0)
            if got is None:
                break
            seen.append(got)
    finally:
        r.close()
        t.close()
    got = _records(seen)
    numbers = [int(m.payload.split(b"n=")[1].split()[0]) for m in got]
    assert numbers == sorted(set(numbers))  # in order, no duplicate
    assert r.counters.stalls >= 1
    assert r.counters.max_pending_bytes >= BATCH_BYTES
    lost = server.call(lambda k: k.lost) - lost_before
    assert len(got) + lost == 12000


def test_the_drainer_frames_kernel_datagrams_and_drops_the_rest() -> None:
    """Endpoint packets: kernel datagrams kept, another sender dropped, a socket error marked."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        rec = nl.encode(nl.NetlinkMessage(SYSCALL, payload=b"audit(1.000:1): x=1"), short_len=True)
        a.send(struct.pack("<I", 0) + rec)
        a.send(struct.pack("<I", 4242) + rec)  # not the kernel
        err = Control(OP_SOCKERR, error=-errno.ENOBUFS).encode()
        a.send(err)
        a.send(b"\x00\x00")  # too short to carry a sender
        assert err[:4] == struct.pack("<I", CONTROL_PORT)
        b.setblocking(False)
        d = _Drainer(b, endpoint_prefix=True)
        empty, closed = d.drain()
        assert empty and not closed
        chunk = d.take()
    finally:
        a.close()
        b.close()
    frames = []
    off = 0
    while off < len(chunk):
        n, kind = struct.unpack_from("<II", chunk, off)
        frames.append((kind, chunk[off + 8 : off + 8 + n]))
        off += 8 + n
    assert frames == [(0, rec), (0xFFFFFFFE, b"")]
    assert d.c["dropped_sender"] == 1 and d.c["truncated"] == 1 and d.c["enobufs"] == 1


class _FakeTransport:
    """Just enough of a Transport for Receiver: a descriptor and counters."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


def test_process_drainer_reads_a_real_netlink_socket() -> None:
    """NETLINK_ROUTE link dump: the kernel's replies (port 0) come out decoded, DONE last."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError as exc:  # pragma: no cover - no netlink here
        pytest.skip(f"no NETLINK_ROUTE socket: {exc}")
    with s:
        s.bind((0, 0))
        r = Receiver(_FakeTransport(s), mode="process", priority_boost=0).start()
        try:
            rtgenmsg = struct.pack("=Bxxx", socket.AF_UNSPEC)
            req = nl.NetlinkMessage(18, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, 77, 0, rtgenmsg)  # RTM_GETLINK
            s.sendto(nl.encode(req), (0, 0))
            msgs: list[nl.NetlinkMessage] = []
            end = time.monotonic() + 20
            while time.monotonic() < end and not any(m.type == nl.NLMSG_DONE for m in msgs):
                got = r.get(0.5)
                if got and not isinstance(got, TransportEvent):
                    msgs.extend(got)
        finally:
            r.close()
    assert any(m.type == 16 for m in msgs)  # RTM_NEWLINK: at least the loopback interface
    assert msgs[-1].type == nl.NLMSG_DONE and all(m.seq == 77 for m in msgs)
    assert r.counters.dropped_sender == 0 and r.counters.bad_datagram == 0


def connect_event(pid: int, serial: int, sec: str = "1700000000.100") -> list[tuple[int, str]]:
    """The records of one connect event (SYSCALL, SOCKADDR, EOE) as (type, payload); also used by
    tests/test_collect_receiver_cli.py."""
    head = f"audit({sec}:{serial}): "
    return [
        (
            SYSCALL,
            head + f"arch=c000003e syscall=42 success=yes exit=0 a0=3 a1=7ffd a2=10 a3=0 items=0 ppid=1 pid={pid} "
            'auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="curl" '
            'exe="/usr/bin/curl" key="kaudit"',
        ),
        (SOCKADDR, head + "saddr=02001F907F0000010000000000000000"),
        (EOE, head),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_collect_with_a_receiver_writes_every_row_and_restores(tmp_path, mode: str) -> None:
    kernel = AuditKernel()
    kernel.load(rules=[parse_rule("-a always,exit -F arch=b64 -S openat -k files", "x86_64").encode()])
    server = EndpointServer(kernel)
    path = tmp_path / "sim.sock"
    server.listen(str(path))
    server.start()
    try:
        def state():
            return server.call(
                lambda k: (k.enabled, k.failure, k.auditd_pid, k.backlog_limit, k.backlog_wait_time, k.rule_payloads())
            )

        before = state()
        out = io.StringIO()
        c = Collector(
            f"unix:{path}", COLLECT_DEFAULTS, out, duration=2.0, status_interval=0.3,
            transport_factory=receiver_transport_factory(mode=mode, priority_boost=0),
        )

        def workload() -> None:
            end = time.monotonic() + 10
            while time.monotonic() < end and not server.call(
                lambda k: k.auditd_pid == os.getpid() and any(b"kaudit" in p for p in k.rule_payloads())
            ):
                time.sleep(0.02)
            for i in range(300):
                for rtype, text in connect_event(5000 + i, 90000 + i):
                    server.emit_record(rtype, text)

        th = threading.Thread(target=workload, daemon=True)
        th.start()
        stats = c.run()
        th.join(10)
        after = state()
    finally:
        server.stop()
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["pid"] for r in rows] == [5000 + i for i in range(300)]
    assert after == before and not c.restore_errors
    assert stats.ledger.balanced and stats.kernel["status_polls"] >= 1
    assert stats.transport["receiver_datagrams"] >= 900
