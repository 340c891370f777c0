"""The hot-path changes made for the benchmarks change no result (docs/performance.md lists them).

Each test pins the behaviour of one shortcut against the long way round: the publisher's
recent-id window evicts oldest-first, read_syscall's fast integer path drops exactly what the
per-field path drops, uptime from CLOCK_BOOTTIME is /proc/uptime's, and the receiver's
direct decoding of a unicast record equals decode_datagram's.
"""

from __future__ import annotations

import time

import pytest

from collector.parser import parse_record
from collector.protocol import netlink as nl
from collector.protocol.records import record_type_number
from collector.publisher import Event, Publisher
from collector.tables import uptime_seconds
from collector.tables.stats import TableStats
from collector.tables.syscall import _ID_FIELDS, read_syscall

SYSCALL, EOE = record_type_number("SYSCALL"), record_type_number("EOE")

_SYSCALL_TEXT = (
    "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=10 pid=11 auid=12 "
    'uid=13 gid=14 euid=15 suid=16 fsuid=17 egid=18 sgid=19 fsgid=20 tty=(none) ses=1 comm="x" exe="/bin/x" key=(null)'
)


def _rec(serial: int, rtype: int, text: str = "", ms: int = 0):
    return parse_record(rtype, f"audit(1700000000.{ms:03d}:{serial}): {text}")


def test_recent_window_forgets_the_oldest_completed_id_first() -> None:
    pub = Publisher(recent_limit=3)
    for serial in range(1, 7):  # six events, each closed by its EOE
        pub.feed(_rec(serial, SYSCALL, "a=1"))
        pub.feed(_rec(serial, EOE))
    assert pub.counters["events"] == 6
    # ids 4, 5, 6 are remembered: a late record for them is dropped as late
    for serial in (4, 5, 6):
        pub.feed(_rec(serial, SYSCALL, "a=2"))
    assert pub.counters["late"] == 3 and pub.in_flight == 0
    # ids 1..3 were forgotten, oldest first: a record for 3 opens a new event
    pub.feed(_rec(3, SYSCALL, "a=3"))
    assert pub.in_flight == 1 and pub.counters["late"] == 3
    pub.flush()
    assert len(pub._recent) == len(pub._recent_order) == 3  # noqa: SLF001 - the window itself


def test_recent_window_stays_in_step_over_many_events() -> None:
    pub = Publisher(recent_limit=100)
    for serial in range(1, 5001):
        pub.feed(_rec(serial, SYSCALL, "a=1", ms=serial % 1000))
        pub.feed(_rec(serial, EOE, ms=serial % 1000))
    recent, order = pub._recent, pub._recent_order  # noqa: SLF001
    ids = [entry[0] for entry in order]  # (id, audit time it completed)
    assert list(recent) == ids and len(ids) == 100
    assert [k[1] for k in ids] == list(range(4901, 5001))


def _event(text: str) -> Event:
    return Event(1, 1700000000, 0, [parse_record(SYSCALL, f"audit(1700000000.000:1): {text}")], "eoe")


def test_read_syscall_fast_path_reads_every_id_field() -> None:
    st = TableStats()
    info = read_syscall(_event(_SYSCALL_TEXT), {"execve"}, st)
    assert info is not None and not st.drops
    assert [getattr(info, k) for k in _ID_FIELDS] == [11, 10, 13, 12, 15, 17, 16, 14, 18, 20, 19]
    assert (info.name, info.exe, info.success, info.arch) == ("execve", "/bin/x", True, "x86_64")


@pytest.mark.parametrize("field", _ID_FIELDS)
@pytest.mark.parametrize("how", ["missing", "bad"])
def test_read_syscall_names_the_first_broken_id_field(field: str, how: str) -> None:
    words = _SYSCALL_TEXT.split()
    value = next(w for w in words if w.startswith(f"{field}="))
    words.remove(value) if how == "missing" else words.__setitem__(words.index(value), f"{field}=x1")
    st = TableStats()
    assert read_syscall(_event(" ".join(words)), {"execve"}, st) is None
    assert dict(st.drops) == {f"syscall_{'no' if how == 'missing' else 'bad'}_{field}": 1}


def test_uptime_is_proc_uptime_in_whole_seconds() -> None:
    with open("/proc/uptime", encoding="ascii") as f:
        before = int(float(f.read().split()[0]))
    got = uptime_seconds()
    with open("/proc/uptime", encoding="ascii") as f:
        after = int(float(f.read().split()[0]))
    assert before <= got <= after


def test_uptime_falls_back_to_proc_without_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.tables as tables

    monkeypatch.setattr(tables, "_BOOTTIME", None)
    assert abs(uptime_seconds() - int(time.clock_gettime(time.CLOCK_BOOTTIME))) <= 1


@pytest.mark.parametrize("payload", [b"audit(1.000:1): a=1", b"audit(1.000:2): " + b"x" * 9000, b"a"])
def test_receiver_direct_decoding_equals_decode_datagram(payload: bytes) -> None:
    from collector.receiver import Receiver

    dgram = nl.encode(nl.NetlinkMessage(SYSCALL, 0, 5, 6, payload), short_len=True)
    r = Receiver(_NoSocket(), mode="thread")  # only the frame decoder is exercised: never started
    r._inbuf = bytearray(len(dgram).to_bytes(4, "little") + b"\0\0\0\0" + dgram)  # noqa: SLF001
    got = r._frames()  # noqa: SLF001
    assert got == nl.decode_datagram(dgram)
    assert got[0].short_len and got[0].payload == payload and isinstance(got[0].payload, bytes)


class _NoSocket:
    def fileno(self) -> int:  # pragma: no cover - never started
        raise AssertionError("not used")


@pytest.mark.parametrize(
    ("raw", "expected"), [("yes", True), ("no", False), ('"yes"', True), ("796573", True), ("6E6F", False), (None, True)]
)
def test_read_syscall_success_is_decoded_as_before(raw: str | None, expected: bool) -> None:
    text = _SYSCALL_TEXT.replace("success=yes ", "" if raw is None else f"success={raw} ")
    info = read_syscall(_event(text), {"execve"}, TableStats())
    assert info is not None and info.success is expected
