"""Pipeline: records -> publisher -> tables -> rows, its counters, and the record ledger."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collector.parser import parse_log_line
from collector.pipeline import Ledger, Pipeline, PipelineStats
from collector.protocol.netlink import NetlinkMessage
from collector.rows import ProcessEventsRow, SocketEventsRow
from collector.tables.options import TableOptions

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
BOTH = TableOptions(allow_sockets=True, allow_process_events=True)

EXECVE_EVENT = [
    'type=SYSCALL msg=audit(1700000000.100:501): arch=c000003e syscall=59 success=yes exit=0 a0=55d0 a1=55d1 a2=55d2 a3=0 items=2 ppid=10 pid=11 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm="echo" exe="/usr/bin/echo" key="kaudit"',
    'type=EXECVE msg=audit(1700000000.100:501): argc=3 a0="/bin/echo" a1="hello" a2="world"',
    'type=CWD msg=audit(1700000000.100:501): cwd="/tmp"',
    'type=PATH msg=audit(1700000000.100:501): item=0 name="/bin/echo" inode=1 dev=08:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0',
    "type=PROCTITLE msg=audit(1700000000.100:501): proctitle=2F62696E2F6563686F0068656C6C6F00776F726C64",
    "type=EOE msg=audit(1700000000.100:501): ",
]
CONNECT_EVENT = [
    'type=SYSCALL msg=audit(1700000001.200:502): arch=c000003e syscall=42 success=yes exit=0 a0=3 a1=7ffd a2=10 a3=0 items=0 ppid=10 pid=12 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm="curl" exe="/usr/bin/curl" key="kaudit"',
    "type=SOCKADDR msg=audit(1700000001.200:502): saddr=02001F907F0000010000000000000000",
    "type=EOE msg=audit(1700000001.200:502): ",
]


def _netlink_form(line: str) -> tuple[int, bytes]:
    """An audit.log line as the kernel sent it: type from the header, text from ``audit(``."""
    rec = parse_log_line(line)
    assert rec is not None
    return rec.type, line[line.index("audit(") :].encode()


def test_rows_come_out_per_event():
    batches: list[list] = []
    p = Pipeline(BOTH, batches.append, uptime=None)
    p.feed_lines(EXECVE_EVENT + CONNECT_EVENT)
    st = p.finish()
    assert [len(b) for b in batches] == [1, 1]
    proc, sock = batches[0][0], batches[1][0]
    assert isinstance(proc, ProcessEventsRow) and isinstance(sock, SocketEventsRow)
    assert (proc.pid, proc.cmdline, proc.cwd, proc.eid) == (11, "/bin/echo hello world", "/tmp", "0000000001")
    assert (sock.pid, sock.remote_address, sock.remote_port, sock.eid) == (
        12,
        "127.0.0.1",
        8080,
        "0000000002",
    )
    assert proc.uptime == 0  # replays have no host clock
    assert (st.records, st.events, st.rows) == (9, 2, 2)
    assert st.events_by_reason == {"eoe": 2}
    assert st.ledger.as_dict()["dispatched"] == 9 and st.ledger.balanced


def test_netlink_and_log_forms_give_the_same_rows():
    lines = EXECVE_EVENT + CONNECT_EVENT
    a: list = []
    b: list = []
    p1 = Pipeline(BOTH, a.extend, uptime=None)
    p1.feed_lines(lines)
    p1.finish()
    p2 = Pipeline(BOTH, b.extend, uptime=None)
    for line in lines:
        p2.feed_netlink(*_netlink_form(line))
    p2.finish()
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b] and a
    # the batch form the live reader uses (drain() results), with a bad message in it
    c: list = []
    p3 = Pipeline(BOTH, c.extend, uptime=None)
    msgs = [NetlinkMessage(*_netlink_form(line)[:1], payload=_netlink_form(line)[1]) for line in lines]
    msgs.insert(2, NetlinkMessage(1300, payload=b"not a record"))
    p3.feed_messages(msgs)
    st = p3.finish()
    assert [r.to_dict() for r in c] == [r.to_dict() for r in a]
    assert st.ledger.dropped == {"no_header": 1} and st.ledger.balanced
    assert st.records_by_type["SYSCALL"] == 2 and st.records == len(lines) + 1


def test_tables_follow_the_options():
    rows: list = []
    p = Pipeline(TableOptions(allow_sockets=False, allow_process_events=True), rows.extend, uptime=None)
    p.feed_lines(EXECVE_EVENT + CONNECT_EVENT)
    p.finish()
    assert [r.table for r in rows] == ["process_events"]


def test_bad_records_are_dropped_by_reason_and_balance():
    bad = [
        "type=SYSCALL msg=audit(1700000000.100:501 syscall=59",  # no "): "
        "garbage without a header",
        b"type=CWD msg=audit(1700000002.000:600): cwd=\xff\xfe",  # invalid UTF-8
        "type=NOSUCHTYPE msg=audit(1700000002.000:601): x=1",
        "type=CWD msg=audit(1700000002.000:602): cwd=" + "a" * 9000,
        "",
        "# a comment",
    ]
    rows: list = []
    p = Pipeline(BOTH, rows.extend, uptime=None)
    p.feed_lines(bad + EXECVE_EVENT)
    st = p.finish()
    assert len(rows) == 1
    assert st.lines_skipped == 2
    assert st.ledger.received == 5 + len(EXECVE_EVENT)
    assert sum(st.ledger.dropped.values()) == 5
    assert set(st.ledger.dropped) == {"bad_header", "no_header", "bad_utf8", "unknown_type", "too_long"}
    assert st.ledger.balanced


def test_duplicate_syscall_is_a_ledger_drop():
    dup = EXECVE_EVENT[:1] + EXECVE_EVENT
    p = Pipeline(BOTH, None, uptime=None)
    p.feed_lines(dup)
    st = p.finish()
    assert st.duplicates == 1
    assert st.ledger.dropped == {"duplicate_syscall": 1}
    assert st.ledger.balanced


def test_open_events_are_in_flight_at_exit():
    p = Pipeline(BOTH, None, uptime=None)
    p.feed_lines(EXECVE_EVENT[:-1])  # no EOE
    snap = p.snapshot()
    assert snap.ledger.received == 5 and snap.ledger.unaccounted == 5  # still open
    st = p.finish()
    assert st.ledger.in_flight == 5 and st.ledger.dispatched == 0 and st.ledger.balanced
    assert st.events_by_reason == {"flush": 1}
    assert st.rows == 1  # a flushed event still makes its row
    assert p.finish() is st  # idempotent


def test_own_process_is_left_out():
    rows: list = []
    p = Pipeline(BOTH, rows.extend, uptime=None, exclude_pids=(12,))
    p.feed_lines(EXECVE_EVENT + CONNECT_EVENT)
    st = p.finish()
    assert [r.pid for r in rows] == [11]
    assert st.self_events == 1 and st.ledger.balanced


def test_live_clock_tick_completes_events_without_eoe():
    rows: list = []
    p = Pipeline(BOTH, rows.extend, uptime=lambda: 77, timeout_ms=1000)
    p.feed_lines(EXECVE_EVENT[:-1])
    assert rows == []
    p.tick(1700000000_100 + 999)
    assert rows == []
    p.tick(1700000000_100 + 1001)
    assert len(rows) == 1 and rows[0].uptime == 77
    assert p.finish().events_by_reason == {"timeout": 1}


def test_first_eid_continues_numbering():
    rows: list = []
    p = Pipeline(BOTH, rows.extend, uptime=None, first_eid=41)
    p.feed_lines(EXECVE_EVENT)
    p.finish()
    assert rows[0].eid == "0000000041"


def test_stats_merge_and_output():
    a, b = Pipeline(BOTH, None, uptime=None), Pipeline(BOTH, None, uptime=None)
    a.feed_lines(EXECVE_EVENT + ["bad line"])
    b.feed_lines(CONNECT_EVENT)
    total = PipelineStats()
    total.merge(a.finish())
    total.merge(b.finish())
    d = total.as_dict()
    assert (d["records"], d["events"], d["rows"]) == (10, 2, 2)
    assert d["rows_by_table"] == {"process_events": 1, "socket_events": 1}
    assert d["drops"] == {"no_header": 1}
    assert d["ledger"] == {
        "received": 10,
        "dispatched": 9,
        "dropped": 1,
        "dropped_by_reason": {"no_header": 1},
        "in_flight": 0,
        "unaccounted": 0,
        "balanced": True,
    }
    text = total.format_text()
    assert re.search(r"^records\s+10$", text, re.M)
    assert "ledger        received 10 = dispatched 9 + dropped 1 + in flight at exit 0" in text
    total.kernel = {"lost": 3, "backlog": 1, "backlog_max": 9, "enobufs": 2, "status_polls": 4}
    text = total.format_text()
    assert "lost 3  backlog 1 (max 9)" in text and re.search(r"^enobufs\s+2$", text, re.M)


def test_unbalanced_ledger_is_visible():
    led = Ledger(received=5, dispatched=3)
    assert not led.balanced and led.unaccounted == 2
    assert led.as_dict()["balanced"] is False


def _corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.suffix in (".log", ".txt") and p.is_file())


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"public corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_ledger_balances(path: Path):
    p = Pipeline(BOTH, None, uptime=None)
    with path.open("rb") as f:
        p.feed_lines(f)
    st = p.finish()
    led = st.ledger
    assert led.received == st.records > 0
    assert led.balanced, led.as_dict()
    # every record the parser accepted reached the publisher
    assert st.publisher["records"] == led.received - sum(
        v
        for k, v in led.dropped.items()
        if k not in ("duplicate_syscall", "late", "single_tail", "orphan_eoe")
    )
