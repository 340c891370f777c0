"""The publisher on go-libaudit's reassembler test logs, with go-libaudit's settings.

go-libaudit's ``reassembler_test.go`` feeds each log to ``NewReassembler(5, 2*time.Second, ...)``
and expects 0, 9, 0, 0 lost events, and these events (serial, record count) in order:
58:2 59:5 60:5 61:4 62:1 (49 instead of 58 in lost_messages; 4294967294, 4294967295, 0, 1,
2 with one record each in rollover). The logs have no EOE records.

One legitimate difference is pinned: go-libaudit's timeout is wall-clock time, so in its test
nothing times out; kaudit's is audit time. In out_of_order.log the last PATH of event 60
(stamped ...291.038) arrives after event 61 moved the audit clock to ...298.883, 7.8 s later,
so with a 2 s timeout event 60 has already completed and that PATH is counted ``late``. With a
timeout longer than the log's span, kaudit produces go-libaudit's events exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.parser import Record, iter_log_records
from collector.publisher import Event, Publisher

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
LOGS = CORPUS / "go-libaudit" / "reassembler"

pytestmark = pytest.mark.skipif(not LOGS.is_dir(), reason=f"public corpus not found at {LOGS}")

GO_LIBAUDIT_EVENTS = [(58, 2), (59, 5), (60, 5), (61, 4), (62, 1)]
EXPECTED = {
    "normal": (0, GO_LIBAUDIT_EVENTS),
    "lost_messages": (9, [(49, 2), *GO_LIBAUDIT_EVENTS[1:]]),
    "out_of_order": (0, GO_LIBAUDIT_EVENTS),
    "rollover": (0, [(4294967294, 1), (4294967295, 1), (0, 1), (1, 1), (2, 1)]),
}


def records(name: str) -> list[Record]:
    out = []
    with open(LOGS / f"{name}.log", encoding="utf-8") as fh:
        for lineno, rec in iter_log_records(fh):
            assert isinstance(rec, Record), f"{name}.log:{lineno}: {rec}"
            out.append(rec)
    return out


def replay(name: str, timeout_ms: int) -> tuple[list[Event], Publisher]:
    events: list[Event] = []
    pub = Publisher(timeout_ms=timeout_ms, on_event=events.append, max_in_flight=5)
    for rec in records(name):
        pub.feed(rec)
    pub.flush()
    return events, pub


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lost_sequences_match_go_libaudit(name):
    lost, _ = EXPECTED[name]
    _, pub = replay(name, timeout_ms=2000)
    assert pub.counters["lost"] == lost


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_events_match_go_libaudit_when_nothing_times_out(name):
    _, expected = EXPECTED[name]
    events, pub = replay(name, timeout_ms=60_000)
    assert [(e.serial, len(e.records)) for e in events] == expected
    assert all(len({r.serial for r in e.records}) == 1 for e in events)
    assert pub.counters["late"] == 0
    assert pub.counters["duplicates"] == 0


@pytest.mark.parametrize("name", ["normal", "lost_messages", "rollover"])
def test_two_second_audit_time_timeout_gives_the_same_events(name):
    _, expected = EXPECTED[name]
    events, _ = replay(name, timeout_ms=2000)
    assert [(e.serial, len(e.records)) for e in events] == expected


def test_out_of_order_late_path_with_two_second_audit_time_timeout():
    events, pub = replay("out_of_order", timeout_ms=2000)
    assert [(e.serial, len(e.records)) for e in events] == [(58, 2), (59, 5), (60, 4), (61, 4), (62, 1)]
    assert [e.reason for e in events] == ["timeout", "timeout", "timeout", "flush", "flush"]
    assert pub.counters["late"] == 1
    assert pub.counters["lost"] == 0
