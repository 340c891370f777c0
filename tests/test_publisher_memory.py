"""The publisher's memory of completed ids is bounded by audit time, not only by count."""

from __future__ import annotations

from collector.parser import parse_record
from collector.publisher import Publisher


def _feed(pub: Publisher, serial: int, ms: int) -> None:
    sec, msec = divmod(1795601611000 + ms, 1000)
    pub.feed(parse_record(1300, f"audit({sec}.{msec:03d}:{serial}): arch=c000003e syscall=59 pid=1".encode()))
    pub.feed(parse_record(1320, f"audit({sec}.{msec:03d}:{serial}): ".encode()))


def test_recent_ids_are_forgotten_after_the_window():
    pub = Publisher(timeout_ms=1000, recent_limit=1_000_000)
    assert pub.recent_window_ms == 10_000
    for i in range(1, 30_001):  # 30,000 events, one per audit millisecond: 30 s of audit time
        _feed(pub, i, i)
    assert pub.counters["events"] == 30_000
    # only the last 10 s of audit time (10,000 ids, +1 at the edge) are remembered
    assert 9_990 <= len(pub._recent) <= 10_001


def test_a_straggler_inside_the_window_is_late_not_a_new_event():
    pub = Publisher(timeout_ms=1000)
    _feed(pub, 1, 0)
    _feed(pub, 2, 5_000)
    pub.feed(parse_record(1302, b"audit(1795601611.000:1): item=0 name=\"/bin/x\""))
    assert pub.counters["events"] == 2 and pub.counters["late"] == 1


def test_the_count_bound_still_holds():
    pub = Publisher(timeout_ms=1000, recent_limit=100)
    for i in range(1, 1001):
        _feed(pub, i, 0)
    assert len(pub._recent) == 100
