"""collector/fastlane/_drain.c: the native drain loop does exactly what the Python loop does.

The claim (receiver._Drainer.drain for the kernel socket): for the same datagrams, the C loop
leaves the same frames in the buffer, the same control frames in ``ctl`` (in arrival order),
the same counters (keys included: they are sent as a dict) and the same return value, and
stops at the same budget. Differential tests: the same traffic goes into two socketpairs,
one drained by a ``_Drainer`` with the native loop, one by a ``_Drainer`` forced onto the
Python loop. No kernel audit state is touched (AF_UNIX datagram sockets stand in for the
netlink socket: an unnamed sender reads as sender 0, as the kernel's port id does).
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

import collector.receiver as receiver
from collector.fastlane.build import FastLaneBuildError, load
from collector.protocol import netlink as nl
from collector.protocol.records import (
    AUDIT_GET,
    AUDIT_LIST_RULES,
    AUDIT_LOGIN,
    AUDIT_USER,
    record_type_number,
)
from collector.receiver import _FRAME, _KIND_ENOBUFS, _Drainer

SYSCALL, EOE, SOCKADDR = (record_type_number(n) for n in ("SYSCALL", "EOE", "SOCKADDR"))


@pytest.fixture(scope="module")
def module():
    """The extension, built here whatever KAUDIT_FASTLANE says (skip without a compiler)."""
    try:
        return load("_drain")
    except FastLaneBuildError as exc:
        if os.environ.get("KAUDIT_FASTLANE") == "1":
            raise
        pytest.skip(f"no native drain here: {exc}")


@pytest.fixture
def native(module):
    """A factory of native drain functions, each with its own receive state, for the room
    (receiver.MAX_DATAGRAM) in force when called, as ``_Drainer`` makes them."""
    return lambda: module.Drain(receiver.MAX_DATAGRAM).drain


def _record(kind: int, text: str, seq: int = 0) -> bytes:
    """A record as the kernel unicasts it to the daemon (short length form)."""
    return nl.encode(nl.NetlinkMessage(kind, seq=seq, payload=text.encode()), short_len=True)


def _reply(kind: int, payload: bytes, seq: int = 7) -> bytes:
    return nl.encode(nl.NetlinkMessage(kind, seq=seq, payload=payload))


def _ack(seq: int) -> bytes:
    return nl.ack_datagram(0, nl.NetlinkMessage(AUDIT_GET, seq=seq), port_id=1234)


def _mixed(n: int) -> list[bytes]:
    """Records of several sizes, USER/LOGIN records (type < 1024, still records), control
    replies (ACKs, a status reply, a rule list), and short datagrams (< a netlink header)."""
    out: list[bytes] = []
    for i in range(n):
        out.append(
            _record(SYSCALL, f"audit(1.{i}:{i}): arch=c000003e syscall=42 " + "x" * (i * 37 % 3000), i)
        )
        out.append(_record(SOCKADDR, f"audit(1.{i}:{i}): saddr=0200", i))
        out.append(_record(EOE, f"audit(1.{i}:{i}):", i))
        if i % 7 == 0:
            out.append(_record(AUDIT_USER, f"audit(1.{i}:{i}): pid=1 msg='user'", i))
            out.append(_record(AUDIT_LOGIN, f"audit(1.{i}:{i}): pid=1 old-auid=1", i))
        if i % 11 == 3:
            out.append(_ack(i))
        if i % 13 == 5:
            out.append(_reply(AUDIT_GET, b"\1" * 40, i))
            out.append(_reply(AUDIT_LIST_RULES, b"\2" * 1060, i))
        if i % 17 == 9:
            out.append(b"\3" * (i % 16))  # shorter than a netlink header: framed as a record
    return out


_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def _pairs(k: int = 2) -> list[tuple[socket.socket, socket.socket]]:
    """(sender, receiver) AF_UNIX datagram pairs; the sender's buffer holds what a test queues
    (a connected pair has no queue-length limit, only the sender's buffer: forced as root,
    and a timeout so that a too-small buffer fails the test rather than hanging it)."""
    out = []
    for _ in range(k):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for opt in (_SO_SNDBUFFORCE, socket.SO_SNDBUF):
            try:
                a.setsockopt(socket.SOL_SOCKET, opt, 32 << 20)
                break
            except OSError:
                continue
        a.settimeout(10)
        b.setblocking(False)
        out.append((a, b))
    return out


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    [(a, b)] = _pairs(1)
    yield a, b
    a.close()
    b.close()


def _drainers(native, socks: list[socket.socket]) -> tuple[_Drainer, _Drainer]:
    c_side = _Drainer(socks[0], endpoint_prefix=False)
    c_side.native = native()
    py_side = _Drainer(socks[1], endpoint_prefix=False)
    py_side.native = None
    return c_side, py_side


def _state(d: _Drainer) -> tuple:
    return bytes(d.view[: d.off]), list(d.ctl), dict(d.c)


def _run(native, datagrams: list[bytes], budgets: list[int]) -> dict[str, int]:
    """Send ``datagrams`` to both sides, drain with each budget in turn on both, compare after
    each; the native side's counters at the end."""
    pairs = _pairs()
    try:
        c_side, py_side = _drainers(native, [b for _, b in pairs])
        for a, _ in pairs:
            for dg in datagrams:
                a.send(dg)
        for budget in budgets:
            got_c = c_side.drain(budget)
            got_py = py_side.drain(budget)
            assert got_c == got_py
            assert _state(c_side) == _state(py_side)
            assert c_side.take() == py_side.take()
            assert c_side.take_control() == py_side.take_control()
        return dict(c_side.c)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_mixed_traffic_same_frames_control_and_counters(native) -> None:
    dgs = _mixed(300)
    c = _run(native, dgs, [receiver.BATCH_BYTES, receiver.BATCH_BYTES])
    n_ctl = sum(1 for i in range(300) if i % 11 == 3) + 2 * sum(1 for i in range(300) if i % 13 == 5)
    assert c["recv_calls"] == len(dgs) and c["control"] == n_ctl and c["datagrams"] == len(dgs) - n_ctl


def test_frames_are_the_expected_bytes(native, pair) -> None:
    """Not only equal to the Python loop: the documented frame layout, control replies apart."""
    a, b = pair
    rec, user, ack, rules = (
        _record(SYSCALL, "r"),
        _record(AUDIT_USER, "u"),
        _ack(5),
        _reply(AUDIT_LIST_RULES, b"z" * 8),
    )
    for dg in (rec, ack, user, rules):
        a.send(dg)
    d = _Drainer(b, endpoint_prefix=False)
    d.native = native()
    assert d.drain() == (True, False)
    assert bytes(d.view[: d.off]) == _FRAME.pack(len(rec), 0) + rec + _FRAME.pack(len(user), 0) + user
    assert d.ctl == [_FRAME.pack(len(ack), 0) + ack, _FRAME.pack(len(rules), 0) + rules]
    assert dict(d.c) == {"control": 2, "recv_calls": 4, "datagrams": 2, "bytes": len(rec) + len(user)}


def test_budget_stops_and_resumes(native) -> None:
    """A small budget stops both loops at the same frame; the next calls go on from there."""
    dgs = _mixed(200)
    total = sum(len(d) for d in dgs)
    budgets = [1, 100, 5000, 20_000, 1, 64 << 10, total, total]
    assert _run(native, dgs, budgets)["recv_calls"] == len(dgs)


def test_limit_keeps_frames_across_calls_without_take(native) -> None:
    """Without take() between calls the frames accumulate at ``off`` in both loops alike."""
    pairs = _pairs()
    try:
        c_side, py_side = _drainers(native, [b for _, b in pairs])
        dgs = _mixed(400)
        for a, _ in pairs:
            for dg in dgs:
                a.send(dg)
        for budget in (3000, 3000, 50_000, receiver.BATCH_BYTES):
            assert c_side.drain(budget) == py_side.drain(budget)
            assert _state(c_side) == _state(py_side)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_full_buffer_stops_before_the_room_is_gone(native, monkeypatch) -> None:
    """More than a buffer's worth queued: both stop at len(buf) - room - 8 and report not empty."""
    monkeypatch.setattr(receiver, "BATCH_BYTES", 1 << 16)
    monkeypatch.setattr(receiver, "MAX_DATAGRAM", 1 << 14)
    dg = _record(SYSCALL, "y" * 3000)
    pairs = _pairs()
    try:
        c_side, py_side = _drainers(native, [b for _, b in pairs])
        for a, _ in pairs:
            for _ in range(60):
                a.send(dg)
        results = []
        for _ in range(4):
            results.append(c_side.drain(1 << 30))
            assert results[-1] == py_side.drain(1 << 30)
            assert _state(c_side) == _state(py_side)
            assert c_side.take() == py_side.take()
        assert results[0] == (False, False) and results[-1] == (True, False)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_truncated_datagram_is_counted_and_dropped(native, monkeypatch) -> None:
    """A datagram that fills the whole room is dropped and counted (room made small here)."""
    monkeypatch.setattr(receiver, "MAX_DATAGRAM", 4096)
    dgs = [_record(SYSCALL, "a"), b"\0" * 4096, _record(SYSCALL, "b" * 4000), b"\1" * 5000, _record(EOE, "")]
    dgs.append(_record(SYSCALL, "c" * (4096 - 16 - 1)))  # one byte short of the room: kept
    c = _run(native, dgs, [receiver.BATCH_BYTES])
    assert c["truncated"] == 2 and c["datagrams"] == 4


def test_named_unix_sender_dropped_like_python(native, tmp_path) -> None:
    """A sender with an address the Python loop reads as non-zero is dropped by both; an
    abstract (NUL-first) address reads as 0 in Python and is kept by both."""
    pairs = _pairs()
    named = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    named.bind(str(tmp_path / "s"))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(b"\0kaudit-drain-test-%d" % os.getpid())
    receivers = []
    try:
        for i, (a, b) in enumerate(pairs):
            path = str(tmp_path / f"r{i}")
            b.close()
            b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            b.bind(path)
            b.setblocking(False)
            receivers.append(b)
            a.sendto(_record(SYSCALL, "from an unnamed socket"), path)
            named.sendto(_record(SYSCALL, "from a named socket"), path)
            abstract.sendto(_record(SYSCALL, "from an abstract socket"), path)
        c_side, py_side = _drainers(native, receivers)
        assert c_side.drain() == py_side.drain()
        assert _state(c_side) == _state(py_side)
        assert c_side.c["dropped_sender"] == 1 and c_side.c["datagrams"] == 2
    finally:
        for s in (named, abstract, *receivers, *(a for a, _ in pairs)):
            s.close()


def test_empty_socket_and_blocking_socket(native, pair) -> None:
    """Nothing queued: (empty, not closed), no frame; a blocking socket does not block."""
    _, b = pair
    b.setblocking(True)
    d = _Drainer(b, endpoint_prefix=False)
    d.native = native()
    assert d.drain() == (True, False)
    assert d.off == 0 and d.ctl == [] and dict(d.c) == {"recv_calls": 0, "datagrams": 0, "bytes": 0}


def test_error_raised_after_keeping_state(native) -> None:
    """An error other than EAGAIN/EINTR/ENOBUFS is raised as OSError with its errno, by both."""
    for impl in (native(), None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # not connected: ENOTCONN
        try:
            d = _Drainer(s, endpoint_prefix=False)
            d.native = impl
            with pytest.raises(OSError) as info:
                d.drain()
            assert info.value.errno == errno.ENOTCONN
            assert d.off == 0
        finally:
            s.close()


def test_native_arguments_checked(module) -> None:
    drain = module.Drain(500).drain
    buf = bytearray(1000)
    with pytest.raises(ValueError):
        drain(0, buf, 0, 900, (), [])  # limit + room past the buffer
    with pytest.raises(TypeError):
        drain(0, b"read-only", 0, 0, (), [])
    with pytest.raises(ValueError):
        module.Drain(0)


def test_carried_datagrams_are_framed_first(module, pair) -> None:
    """A batch the limit cuts stays in the scratch; the next call frames it before reading
    the socket again, so the stream is the Python loop's (which left them in the socket)."""
    a, b = pair
    dgs = [_record(SYSCALL, f"n={i}", i) for i in range(100)]
    for dg in dgs:
        a.send(dg)
    obj = module.Drain(receiver.MAX_DATAGRAM)
    d = _Drainer(b, endpoint_prefix=False)
    d.native = obj.drain
    assert d.drain(3 * (8 + len(dgs[0])) + 1) == (False, False)  # the 4th frame passes the limit
    assert d.c["datagrams"] == 4 and obj.carried == module.BATCH - 4
    a.send(_record(EOE, "late"))  # behind the batch in the socket
    assert d.drain() == (True, False)
    assert obj.carried == 0
    want = b"".join(_FRAME.pack(len(dg), 0) + dg for dg in [*dgs, _record(EOE, "late")])
    assert d.take() == want


def test_gil_released_while_draining(native, pair) -> None:
    """The thread mode drains beside the parser: another thread runs during a long drain."""
    a, b = pair
    d = _Drainer(b, endpoint_prefix=False)
    d.native = native()
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        for _ in range(20):
            for i in range(500):
                a.send(_record(SYSCALL, f"n={i}"))
            d.drain()
            d.take()
    finally:
        stop.set()
        t.join()
    assert ticks > 0
    assert d.c["datagrams"] == 10_000


def test_enobufs_marker_layout() -> None:
    """The marker the C loop writes is the one the consumer decodes (receiver constants)."""
    assert _FRAME.pack(0, _KIND_ENOBUFS) == b"\0\0\0\0\xfe\xff\xff\xff"


def test_drainer_uses_native_by_default_only_for_the_kernel_socket(monkeypatch) -> None:
    monkeypatch.setattr(
        receiver, "_native_drain", lambda: lambda room: SimpleNamespace(drain=("native", room))
    )
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        assert _Drainer(b, endpoint_prefix=False).native == ("native", receiver.MAX_DATAGRAM)
        assert _Drainer(b, endpoint_prefix=True).native is None
    finally:
        a.close()
        b.close()
