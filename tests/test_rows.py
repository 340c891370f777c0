"""Row dataclasses (osquery's columns and types), the JSON-lines writer, the options and eids."""

from __future__ import annotations

import io
import json
from dataclasses import fields

import pytest

from collector.parser import parse_log_line
from collector.publisher import Event, Publisher
from collector.rows import ProcessEventsRow, RowWriter, SocketEventsRow, format_eid, row_class
from collector.tables import TableOptions, Tables, TableStats, uptime_seconds

# osquery specs/linux/socket_events.table, in spec order (status sits after family there)
SOCKET_SPEC = {
    "action": "TEXT",
    "pid": "BIGINT",
    "path": "TEXT",
    "fd": "TEXT",
    "auid": "BIGINT",
    "success": "INTEGER",
    "family": "INTEGER",
    "status": "TEXT",
    "protocol": "INTEGER",
    "local_address": "TEXT",
    "remote_address": "TEXT",
    "local_port": "INTEGER",
    "remote_port": "INTEGER",
    "socket": "TEXT",
    "time": "BIGINT",
    "uptime": "BIGINT",
    "eid": "TEXT",
}

# osquery specs/posix/process_events.table, then its extended_schema(LINUX, ...)
PROCESS_SPEC = {
    "pid": "BIGINT",
    "path": "TEXT",
    "mode": "TEXT",
    "cmdline": "TEXT",
    "cmdline_size": "BIGINT",
    "env": "TEXT",
    "env_count": "BIGINT",
    "env_size": "BIGINT",
    "cwd": "TEXT",
    "auid": "BIGINT",
    "uid": "BIGINT",
    "euid": "BIGINT",
    "gid": "BIGINT",
    "egid": "BIGINT",
    "owner_uid": "BIGINT",
    "owner_gid": "BIGINT",
    "atime": "BIGINT",
    "mtime": "BIGINT",
    "ctime": "BIGINT",
    "btime": "BIGINT",
    "overflows": "TEXT",
    "parent": "BIGINT",
    "time": "BIGINT",
    "uptime": "BIGINT",
    "eid": "TEXT",
    "fsuid": "BIGINT",
    "suid": "BIGINT",
    "fsgid": "BIGINT",
    "sgid": "BIGINT",
    "syscall": "TEXT",
}

# DESIGN.md's example row, verbatim
DESIGN_ROW = (
    '{"table": "socket_events", "action": "connect", "pid": 14967, "path": "/usr/bin/curl", "fd": "5", '
    '"auid": 4294967295, "success": 1, "family": 2, "protocol": 0, "local_address": "", '
    '"remote_address": "127.0.0.1", "local_port": 0, "remote_port": 46051, "socket": "", '
    '"time": 1795601611, "uptime": 5321, "eid": "0000000001", "status": "in_progress"}'
)


@pytest.mark.parametrize(("cls", "spec"), [(SocketEventsRow, SOCKET_SPEC), (ProcessEventsRow, PROCESS_SPEC)])
def test_columns_and_types_are_osquerys(cls: type, spec: dict[str, str]) -> None:
    assert cls.COLUMN_TYPES == spec  # same names, same types (order checked below)
    pytype = {"TEXT": str, "INTEGER": int, "BIGINT": int}
    for f in fields(cls):
        assert f.type in ("str", "int", str, int)
        assert (f.type if isinstance(f.type, str) else f.type.__name__) == pytype[spec[f.name]].__name__, (
            f.name
        )


def test_process_columns_in_spec_order() -> None:
    assert [f.name for f in fields(ProcessEventsRow)] == list(PROCESS_SPEC)


def test_socket_columns_in_design_row_order() -> None:
    """Column order of DESIGN.md's example row (the spec's, with ``status`` last)."""
    assert ["table", *(f.name for f in fields(SocketEventsRow))] == list(json.loads(DESIGN_ROW))


def test_design_example_row_round_trips() -> None:
    d = json.loads(DESIGN_ROW)
    row = SocketEventsRow(**{k: v for k, v in d.items() if k != "table"})
    assert json.dumps(row.to_dict()) == DESIGN_ROW


def test_to_dict_table_first_and_ints() -> None:
    d = ProcessEventsRow(pid=7, cmdline="a b", parent=1, time=5).to_dict()
    assert list(d)[0] == "table" and d["table"] == "process_events"
    assert d["pid"] == 7 and isinstance(d["pid"], int) and d["cmdline"] == "a b"


def test_rows_have_slots() -> None:
    with pytest.raises(AttributeError):
        SocketEventsRow().not_a_column = 1  # type: ignore[attr-defined]


def test_parent_defaults_to_minus_one() -> None:
    """The spec: "Process parent's PID, or -1 if cannot be determined"."""
    assert ProcessEventsRow().parent == -1


def test_row_class() -> None:
    assert row_class("socket_events") is SocketEventsRow
    assert row_class("process_events") is ProcessEventsRow
    with pytest.raises(KeyError, match="nope"):
        row_class("nope")


def test_format_eid() -> None:
    assert format_eid(1) == "0000000001"
    assert format_eid(1234567890) == "1234567890"


# --- RowWriter --------------------------------------------------------------------------------


class CountingIO(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_writer_writes_json_lines_and_flushes_per_call() -> None:
    fp = CountingIO()
    w = RowWriter(fp)
    assert w.write(SocketEventsRow(action="connect", pid=1)) == 1
    assert fp.flushes == 1
    assert w.write([ProcessEventsRow(pid=2), ProcessEventsRow(pid=3)]) == 2  # one event's rows
    assert fp.flushes == 2
    assert w.write([]) == 0 and fp.flushes == 2
    lines = fp.getvalue().splitlines()
    assert [json.loads(x)["pid"] for x in lines] == [1, 2, 3]
    assert json.loads(lines[0])["table"] == "socket_events" and w.rows_written == 3


def test_writer_keeps_utf8_readable() -> None:
    fp = io.StringIO()
    RowWriter(fp).write(ProcessEventsRow(cmdline="échø ☃"))
    assert "échø ☃" in fp.getvalue()


def test_writer_escapes_undecodable_bytes_as_valid_json() -> None:
    """A lone surrogate (a non-UTF-8 byte kept by surrogateescape) cannot be UTF-8 encoded."""
    path = b"/tmp/\xff".decode("utf-8", "surrogateescape")
    buf = io.BytesIO()
    fp = io.TextIOWrapper(buf, encoding="utf-8")
    RowWriter(fp).write(ProcessEventsRow(path=path))
    line = buf.getvalue().decode("utf-8")
    assert "\\udcff" in line
    assert json.loads(line)["path"] == path


# --- options ----------------------------------------------------------------------------------


def test_options_defaults_are_osquerys() -> None:
    o = TableOptions()
    assert (o.allow_sockets, o.allow_process_events, o.allow_accept_socket_events) == (False, True, True)
    assert not any(
        (
            o.allow_failed_socket_events,
            o.allow_null_accept_socket_events,
            o.allow_unix,
            o.allow_fork_process_events,
            o.allow_kill_process_events,
        )
    )
    assert TableOptions.flag_names()["audit_allow_unix"] == "allow_unix"
    assert len(TableOptions.flag_names()) == 8


def test_wanted_syscalls_follow_the_flags() -> None:
    assert Tables(TableOptions()).wanted == {"execve", "execveat"}
    assert Tables(TableOptions(allow_process_events=False)).wanted == frozenset()
    assert Tables(TableOptions(allow_sockets=True, allow_process_events=False)).wanted == {
        "bind",
        "connect",
        "accept",
        "accept4",
    }
    assert Tables(TableOptions(allow_sockets=True, allow_accept_socket_events=False)).wanted == {
        "bind",
        "connect",
        "execve",
        "execveat",
    }
    assert Tables(TableOptions(allow_fork_process_events=True, allow_kill_process_events=True)).wanted == {
        "execve",
        "execveat",
        "fork",
        "vfork",
        "clone",
        "clone3",
        "kill",
        "tkill",
        "tgkill",
    }
    # fork/kill rows belong to process_events: nothing without it, as in osquery
    assert (
        Tables(TableOptions(allow_process_events=False, allow_fork_process_events=True)).wanted == frozenset()
    )


# --- Tables: eid and uptime -------------------------------------------------------------------


def connect_event(serial: int) -> Event:
    lines = [
        f"type=SYSCALL msg=audit(1700000000.000:{serial}): arch=c000003e syscall=42 success=yes exit=0 a0=3 "
        "a1=0 a2=10 a3=0 items=0 ppid=1 pid=2 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 "
        'tty=(none) ses=1 comm="c" exe="/c" key=(null)',
        f"type=SOCKADDR msg=audit(1700000000.000:{serial}): saddr=020000167F0000010000000000000000",
        f"type=EOE msg=audit(1700000000.000:{serial}): ",
    ]
    out: list[Event] = []
    pub = Publisher(timeout_ms=2000, on_event=out.append)
    for line in lines:
        pub.feed(parse_log_line(line))  # type: ignore[arg-type]
    pub.flush()
    return out[0]


def test_eid_counts_per_run_and_uptime_is_the_clock() -> None:
    ticks = iter([100, 101, 102])
    stats = TableStats()
    t = Tables(TableOptions(allow_sockets=True), uptime=lambda: next(ticks), first_eid=41, stats=stats)
    rows = [r for s in (1, 2, 3) for r in t.rows_for(connect_event(s))]
    assert [(r.eid, r.uptime) for r in rows] == [
        ("0000000041", 100),
        ("0000000042", 101),
        ("0000000043", 102),
    ]
    assert t.stats is stats and stats.rows == {"socket_events": 3}


def test_difference_replay_uptime_is_zero() -> None:
    t = Tables(TableOptions(allow_sockets=True), uptime=None)
    (row,) = t.rows_for(connect_event(1))
    assert (row.uptime, row.eid) == (0, "0000000001")


def test_uptime_seconds_reads_proc() -> None:
    with open("/proc/uptime") as f:
        expected = int(float(f.read().split()[0]))
    assert expected <= uptime_seconds() <= expected + 2


def test_stats_as_dict_and_merge() -> None:
    a, b = TableStats(), TableStats()
    a.drop("x")
    b.drop("x")
    b.skip("y")
    b.rows["socket_events"] += 2
    a.merge(b)
    assert a.as_dict() == {"rows": {"socket_events": 2}, "drops": {"x": 2}, "skipped": {"y": 1}}


def test_row_line_is_the_json_dumps_line_for_any_text() -> None:
    """RowWriter's fast line (one zip and a prebuilt C encoder) equals json.dumps of to_dict:
    quotes, backslashes, control characters, non-ASCII, and lone surrogates (escaped)."""
    import random

    from collector.rows import _dumps, row_line

    rng = random.Random(5)
    alphabet = ['"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "€", "𝄞", "\udcff", "a", " ", "/"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        for row in (
            SocketEventsRow(action="connect", pid=rng.randrange(1 << 40), path=text, fd=text[:3], remote_address=text),
            ProcessEventsRow(pid=1, path="/bin/x", cmdline=text, cwd=text[::-1], parent=-1, syscall="execve"),
        ):
            assert row_line(row) == _dumps(row.to_dict())
            assert json.loads(row_line(row)) == json.loads(_dumps(row.to_dict()))
