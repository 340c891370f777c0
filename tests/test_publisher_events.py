"""collector.publisher: when events complete, and what is counted, on hand-made record streams."""

from __future__ import annotations

import pytest

from collector.parser import Record, parse_record
from collector.protocol.records import record_type_number
from collector.publisher import Event, Publisher, is_single_record_type

T0 = 1_700_000_000_000  # ms

SYSCALL = record_type_number("SYSCALL")
SOCKADDR = record_type_number("SOCKADDR")
PROCTITLE = record_type_number("PROCTITLE")


def rec(name: str, serial: int, ms: int = T0, body: str = "", node: str | None = None) -> Record:
    prefix = f"node={node} " if node else ""
    sec, msec = divmod(ms, 1000)
    return parse_record(None, f"{prefix}type={name} msg=audit({sec}.{msec:03d}:{serial}): {body}")


def run(records: list[Record], **kw) -> tuple[list[Event], Publisher]:
    events: list[Event] = []
    pub = Publisher(on_event=events.append, **kw)
    for r in records:
        pub.feed(r)
    return events, pub


def shape(events: list[Event]) -> list[tuple[int, list[str], str]]:
    return [(e.serial, [r.type_name for r in e.records], e.reason) for e in events]


def test_eoe_completes_the_event_and_is_not_one_of_its_records():
    events, pub = run([rec("SYSCALL", 7, body="syscall=42"), rec("SOCKADDR", 7), rec("EOE", 7)])
    assert shape(events) == [(7, ["SYSCALL", "SOCKADDR"], "eoe")]
    assert (events[0].sec, events[0].msec, events[0].audit_id) == (T0 // 1000, 0, f"{T0 // 1000}.000:7")
    assert pub.in_flight == 0
    assert pub.counters["events"] == pub.counters["eoe"] == 1
    assert events[0].first(SOCKADDR) is events[0].records[1]
    assert events[0].first(PROCTITLE) is None
    assert events[0].all(SYSCALL) == [events[0].records[0]]


def test_interleaved_events_are_kept_apart():
    events, _ = run(
        [
            rec("SYSCALL", 1),
            rec("SYSCALL", 2),
            rec("EXECVE", 1),
            rec("SOCKADDR", 2),
            rec("EOE", 2),
            rec("CWD", 1),
            rec("EOE", 1),
        ]
    )
    assert shape(events) == [(2, ["SYSCALL", "SOCKADDR"], "eoe"), (1, ["SYSCALL", "EXECVE", "CWD"], "eoe")]


def test_audit_id_includes_the_timestamp():
    events, _ = run(
        [rec("SYSCALL", 9, T0), rec("SYSCALL", 9, T0 + 1), rec("EOE", 9, T0), rec("EOE", 9, T0 + 1)]
    )
    assert [(e.serial, e.msec, len(e.records)) for e in events] == [(9, 0, 1), (9, 1, 1)]


def test_user_message_is_a_whole_event_and_the_kernels_sendto_tail_is_counted():
    events, pub = run(
        [
            rec("USER_LOGIN", 20, body="pid=1 uid=0 msg='op=login res=success'"),
            rec("SYSCALL", 20, body="syscall=44"),
            rec("PROCTITLE", 20),
            rec("EOE", 20),
        ]
    )
    assert shape(events) == [(20, ["USER_LOGIN"], "single")]
    assert pub.counters["single_tail"] == 3
    assert pub.counters["late"] == 0


def test_kernel_records_emitted_inside_a_syscall_wait_for_its_eoe():
    # an SELinux denial or an IMA measurement during execve belongs to the execve's event
    events, _ = run([rec("AVC", 3), rec("INTEGRITY_DATA", 3), rec("SYSCALL", 3), rec("EOE", 3)])
    assert shape(events) == [(3, ["AVC", "INTEGRITY_DATA", "SYSCALL"], "eoe")]


def test_single_record_type_set():
    names = {
        "USER_LOGIN": True,
        "USER_START": True,
        "DAEMON_START": True,
        "SERVICE_START": True,
        "CRYPTO_KEY_USER": True,
        "KERNEL": True,
        "SYSCALL": False,
        "AVC": False,
        "LOGIN": False,
        "ANOM_PROMISCUOUS": False,
        "INTEGRITY_DATA": False,
        "CONFIG_CHANGE": False,
    }
    assert {n: is_single_record_type(record_type_number(n)) for n in names} == names


def test_duplicate_syscall_is_counted_and_does_not_replace_the_first():
    events, pub = run([rec("SYSCALL", 5, body="pid=1"), rec("SYSCALL", 5, body="pid=2"), rec("EOE", 5)])
    assert pub.counters["duplicates"] == 1
    assert [r.get("pid") for r in events[0].records] == ["1"]


def test_record_after_completion_is_counted_late_not_a_second_event():
    events, pub = run([rec("SYSCALL", 5), rec("EOE", 5), rec("PATH", 5), rec("EOE", 5)])
    assert len(events) == 1
    assert pub.counters["late"] == 2
    assert pub.counters["events"] == 1


def test_timeout_is_measured_in_audit_time_strictly_after_timeout_ms():
    events, pub = run([rec("SOCKADDR", 1, T0), rec("SYSCALL", 2, T0 + 2000)], timeout_ms=2000)
    assert events == []  # exactly 2000 ms is not "after" the timeout
    pub.feed(rec("SYSCALL", 3, T0 + 2001))
    assert shape(events) == [(1, ["SOCKADDR"], "timeout")]
    assert pub.counters["timeouts"] == 1


def test_timeout_counts_from_the_last_arrival_not_the_events_own_stamp():
    # a blocking accept is stamped at syscall entry, minutes before its records arrive
    events, pub = run(
        [
            rec("SYSCALL", 10, T0 + 600_000),
            rec("SYSCALL", 11, T0, body="syscall=43"),  # stamped 10 minutes earlier
            rec("SOCKADDR", 11, T0),
        ],
        timeout_ms=2000,
    )
    assert events == []
    pub.feed(rec("EOE", 11, T0))
    assert shape(events) == [(11, ["SYSCALL", "SOCKADDR"], "eoe")]


def test_an_active_event_does_not_time_out():
    events, pub = run(
        [
            rec("SYSCALL", 1, T0),
            rec("SYSCALL", 2, T0 + 1500),
            rec("PATH", 1, T0),
            rec("SYSCALL", 3, T0 + 3000),
        ],
        timeout_ms=2000,
    )
    assert events == []  # event 1 was touched at clock T0+1500
    pub.feed(rec("SYSCALL", 4, T0 + 3600))
    assert sorted(e.serial for e in events) == [1, 2]


def test_tick_advances_the_audit_clock_without_records():
    events, pub = run([rec("ANOM_ABEND", 1, T0)], timeout_ms=2000)
    pub.tick(T0 + 1000)
    assert events == []
    pub.tick(T0 + 2001)
    assert shape(events) == [(1, ["ANOM_ABEND"], "timeout")]
    pub.tick(T0)  # the clock never goes back
    assert pub.clock_ms == T0 + 2001


def test_max_in_flight_evicts_the_least_recently_active():
    events, pub = run([rec("SYSCALL", 1), rec("SYSCALL", 2), rec("SYSCALL", 3)], max_in_flight=2)
    assert shape(events) == [(1, ["SYSCALL"], "evicted")]
    pub.feed(rec("EOE", 1))
    assert pub.counters["late"] == 1
    assert pub.counters["evicted"] == 1


def test_flush_completes_in_serial_order_and_reports_what_was_open():
    events, pub = run([rec("SYSCALL", 3), rec("SYSCALL", 1), rec("SYSCALL", 2)])
    pub.flush()
    assert shape(events) == [(1, ["SYSCALL"], "flush"), (2, ["SYSCALL"], "flush"), (3, ["SYSCALL"], "flush")]
    assert pub.counters["in_flight"] == 3
    assert pub.counters["flushed"] == 3
    assert pub.counters["lost"] == 0


def test_orphan_eoe_is_counted_and_makes_no_event():
    events, pub = run([rec("EOE", 4)])
    assert events == []
    assert pub.counters["orphan_eoe"] == 1


def test_without_callback_events_wait_in_ready():
    pub = Publisher()
    pub.feed(rec("SYSCALL", 1))
    pub.feed(rec("EOE", 1))
    assert [e.serial for e in pub.drain()] == [1]
    assert pub.drain() == []


def test_constructor_rejects_nonsense():
    with pytest.raises(ValueError, match="timeout_ms"):
        Publisher(timeout_ms=-1)
    with pytest.raises(ValueError, match="max_in_flight"):
        Publisher(max_in_flight=0)


# -- lost serials -----------------------------------------------------------------------------


def complete(serial: int, ms: int = T0, node: str | None = None) -> list[Record]:
    return [rec("SYSCALL", serial, ms, node=node), rec("EOE", serial, ms, node=node)]


def test_gaps_between_completed_serials_are_lost():
    _, pub = run([*complete(1), *complete(2), *complete(5)])
    assert pub.counters["lost"] == 2  # 3 and 4


def test_a_gap_is_not_settled_while_a_lower_event_is_open():
    _, pub = run([rec("SYSCALL", 1), *complete(3)])
    assert pub.counters["lost"] == 0  # 2 may still be on its way next to 1
    pub.feed(rec("EOE", 1))
    assert pub.counters["lost"] == 1


def test_an_event_arriving_after_its_serial_was_counted_lost_corrects_the_count():
    events, pub = run([*complete(1), *complete(3), *complete(2)])
    assert [e.serial for e in events] == [1, 3, 2]
    assert pub.counters["lost"] == 0
    assert pub.counters["late_events"] == 1


def test_out_of_order_at_the_start_is_not_lost():
    _, pub = run([*complete(10), *complete(9), *complete(11)])
    assert pub.counters["lost"] == 0
    assert pub.counters["late_events"] == 0


def test_serial_rollover_is_not_a_gap():
    _, pub = run([*complete(4294967294), *complete(4294967295), *complete(0), *complete(1)])
    assert pub.counters["lost"] == 0
    _, pub = run([*complete(4294967295), *complete(2)])
    assert pub.counters["lost"] == 2  # 0 and 1


def test_serial_counter_restart_is_a_reset_not_a_late_event():
    _, pub = run(
        [*complete(5000, T0), *complete(5001, T0), *complete(1, T0 + 60_000), *complete(2, T0 + 60_000)]
    )
    assert pub.counters["serial_resets"] == 1
    assert pub.counters["lost"] == 0
    assert pub.counters["late_events"] == 0
    assert pub.counters["events"] == 4


def test_serials_are_tracked_per_node():
    events, pub = run(
        [*complete(1, node="a"), *complete(1, node="b"), *complete(2, node="a"), *complete(3, node="b")]
    )
    assert [(e.node, e.serial) for e in events] == [("a", 1), ("b", 1), ("a", 2), ("b", 3)]
    assert pub.counters["lost"] == 1  # b's 2
