"""Publisher invariants under any interleaving, duplication and loss of a set of events.

Whatever order the records of a set of audit events arrive in, whichever are duplicated or
lost, and whatever the timeout and in-flight bound:

- every record fed is accounted exactly once: inside an emitted event, the EOE that completed
  one, or one of the counted drops (duplicate SYSCALL, late, single_tail, orphan EOE);
- no audit id is emitted twice, and every record of an event carries its id;
- ``lost`` counts exactly the serials never seen between the first seen and the last;
- delivered in order without faults, every event completes by EOE with its records in order.
The same holds for the pipeline's ledger on the same stream sent as text.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.parser import Record
from collector.pipeline import Pipeline
from collector.publisher import Publisher
from collector.tables.options import TableOptions

SETTINGS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SYSCALL, CWD, PATH, EXECVE, SOCKADDR, PROCTITLE, EOE, USER_CMD = 1300, 1307, 1302, 1309, 1306, 1327, 1320, 1123
BASE_SEC = 1795601611


@st.composite
def event_sets(draw) -> list[list[Record]]:
    """Events with consecutive serials, each SYSCALL + aux + EOE, or a single user record."""
    first = draw(st.integers(1, 2**32 - 1))
    n = draw(st.integers(1, 12))
    events = []
    for i in range(n):
        serial = (first + i) & 0xFFFFFFFF
        ms = i * draw(st.integers(0, 3))
        sec, msec = BASE_SEC + ms // 1000, ms % 1000
        if draw(st.integers(0, 5)) == 0:
            types = [USER_CMD]
        else:
            aux = draw(st.lists(st.sampled_from([CWD, PATH, EXECVE, SOCKADDR, PROCTITLE]), max_size=4))
            types = [SYSCALL, *aux, EOE]
        events.append([Record(t, sec, msec, serial, None, f"k{j}=v") for j, t in enumerate(types)])
    return events


@st.composite
def deliveries(draw):
    events = draw(event_sets())
    stream = [rec for ev in events for rec in ev]
    # loss: whole events or single records
    gone_events = draw(st.sets(st.integers(0, len(events) - 1), max_size=len(events)))
    stream = [r for r in stream if not any(r is x for i in gone_events for x in events[i])]
    keep = draw(st.lists(st.booleans(), min_size=len(stream), max_size=len(stream)))
    stream = [r for r, k in zip(stream, keep, strict=True) if k or draw(st.integers(0, 9)) > 0]
    # duplication
    dup = []
    for r in stream:
        dup.append(r)
        if draw(st.integers(0, 7)) == 0:
            dup.append(r)
    # any interleaving: a permutation, mostly local (as the kernel's reordering is)
    order = draw(st.permutations(range(len(dup)))) if draw(st.booleans()) else list(range(len(dup)))
    stream = [dup[i] for i in order]
    timeout = draw(st.sampled_from([0, 1, 3, 2000]))
    max_in_flight = draw(st.sampled_from([1, 2, 3, 4096]))
    return events, stream, timeout, max_in_flight


def _ident(rec: Record) -> tuple:
    return (rec.node, rec.serial, rec.sec, rec.msec)


@SETTINGS
@given(deliveries())
def test_every_record_accounted_once_and_no_event_twice(case) -> None:
    events, stream, timeout, max_in_flight = case
    pub = Publisher(timeout_ms=timeout, max_in_flight=max_in_flight)
    for rec in stream:
        pub.feed(rec)
    pub.flush()
    emitted = pub.drain()
    c = pub.counters
    assert pub.in_flight == 0
    assert c["records"] == len(stream)
    in_events = sum(len(e.records) for e in emitted)
    dropped = c["eoe"] + c["duplicates"] + c["late"] + c["single_tail"] + c["orphan_eoe"]
    assert in_events + dropped == len(stream), dict(c)
    ids = [(e.node, e.serial, e.sec, e.msec) for e in emitted]
    assert len(ids) == len(set(ids)), "an audit id was emitted twice"
    assert c["events"] == len(emitted)
    seen_objects: Counter[int] = Counter()
    for e in emitted:
        assert e.records, "an event without records"
        for rec in e.records:
            assert _ident(rec) == (e.node, e.serial, e.sec, e.msec)
            assert rec.type != EOE
            seen_objects[id(rec)] += 1
    # no record is put in events more often than it was fed
    fed = Counter(id(r) for r in stream)
    assert all(n <= fed[rec_id] for rec_id, n in seen_objects.items())
    # a record fed once is in at most one event
    assert all(n == 1 for rec_id, n in seen_objects.items() if fed[rec_id] == 1)
    assert c["lost"] >= 0
    # lost: serials never started between the first started one and the newest
    started: list[int] = []
    for rec in stream:
        if rec.type != EOE and rec.serial not in started:
            started.append(rec.serial)
    if started and timeout == 2000:
        first = started[0]
        base = first - 1
        unwrap = [base + ((s - base) & 0xFFFFFFFF) if ((s - base) & 0xFFFFFFFF) < 2**31 else
                  base - ((base - s) & 0xFFFFFFFF) for s in started]
        top = max(unwrap)
        expect_lost = sum(1 for u in range(base + 1, top + 1) if u not in set(unwrap))
        assert c["lost"] == expect_lost, (dict(c), started)


@SETTINGS
@given(event_sets())
def test_in_order_without_faults_every_event_completes_whole(events) -> None:
    pub = Publisher(timeout_ms=2000)
    for ev in events:
        for rec in ev:
            pub.feed(rec)
    pub.flush()
    emitted = pub.drain()
    assert [e.serial for e in emitted] == [ev[0].serial for ev in events]
    for e, ev in zip(emitted, events, strict=True):
        assert e.records == [r for r in ev if r.type != EOE]
        assert e.reason == ("single" if ev[0].type == USER_CMD else "eoe")
    assert pub.counters["lost"] == 0 and pub.counters["duplicates"] == 0 and pub.counters["late"] == 0


@SETTINGS
@given(deliveries(), st.lists(st.sampled_from([b"garbage", b"type=BOGUS msg=audit(1.2:3): a=b", b""]), max_size=4))
def test_pipeline_ledger_balances_on_the_same_stream(case, junk) -> None:
    _events, stream, timeout, _ = case
    pipe = Pipeline(TableOptions(allow_sockets=True), uptime=None, timeout_ms=timeout)
    lines = [r.log_line().encode() for r in stream] + junk
    pipe.feed_lines(lines)
    st_ = pipe.finish()
    led = st_.ledger
    assert led.balanced, led.as_dict()
    assert led.received == len(stream) + sum(1 for j in junk if j)
    assert led.dropped.get("no_header", 0) + led.dropped.get("unknown_type", 0) == sum(1 for j in junk if j)
