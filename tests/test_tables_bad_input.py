"""Bad input to the table layer: no crash, no row invented, every drop counted by reason.

Each case starts from a good event (checked to give a row) and breaks one thing, so the test
fails if the breakage were silently tolerated or if the good event stopped giving its row.
"""

from __future__ import annotations

import pytest

from collector.parser import parse_log_line
from collector.publisher import Event, Publisher
from collector.tables import TableOptions, Tables, TableStats, rows_for

OPTS = TableOptions(allow_sockets=True, allow_process_events=True, allow_unix=True)

CONNECT = [
    "type=SYSCALL msg=audit(1700000000.100:10): arch=c000003e syscall=42 success=yes exit=0 a0=5 "
    "a1=7ffd0 a2=10 a3=0 items=0 ppid=100 pid=200 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 "
    'fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm="curl" exe="/usr/bin/curl" key=(null)',
    "type=SOCKADDR msg=audit(1700000000.100:10): saddr=020000507F0000010000000000000000",
    "type=EOE msg=audit(1700000000.100:10): ",
]
EXECVE = [
    "type=SYSCALL msg=audit(1700000000.200:11): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 "
    "a2=3 a3=0 items=2 ppid=100 pid=201 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 "
    'egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm="echo" exe="/usr/bin/echo" key=(null)',
    'type=EXECVE msg=audit(1700000000.200:11): argc=3 a0="echo" a1="hello" a2=776F726C64',
    'type=CWD msg=audit(1700000000.200:11): cwd="/root"',
    'type=PATH msg=audit(1700000000.200:11): item=0 name="/bin/echo" inode=1 dev=08:01 mode=0100755 '
    "ouid=0 ogid=0 rdev=00:00 nametype=NORMAL",
    "type=EOE msg=audit(1700000000.200:11): ",
]


def event(lines: list[str]) -> Event:
    out: list[Event] = []
    pub = Publisher(timeout_ms=2000, on_event=out.append)
    for line in lines:
        rec = parse_log_line(line)
        assert rec is not None
        pub.feed(rec)
    pub.flush()
    assert len(out) == 1
    return out[0]


def edit(lines: list[str], index: int, old: str, new: str) -> list[str]:
    assert old in lines[index], (old, lines[index])
    out = list(lines)
    out[index] = out[index].replace(old, new, 1)
    return out


def drop_line(lines: list[str], index: int) -> list[str]:
    return [line for i, line in enumerate(lines) if i != index]


def check_dropped(lines: list[str], reason: str, opts: TableOptions = OPTS) -> None:
    stats = TableStats()
    assert rows_for(event(lines), opts, stats) == []
    assert stats.drops == {reason: 1}
    assert not stats.rows


def test_good_events_give_rows() -> None:
    stats = TableStats()
    (sock,) = rows_for(event(CONNECT), OPTS, stats)
    (proc,) = rows_for(event(EXECVE), OPTS, stats)
    assert (sock.remote_address, sock.remote_port) == ("127.0.0.1", 80)  # type: ignore[union-attr]
    assert proc.cmdline == "echo hello world"  # type: ignore[union-attr]
    assert not stats.drops and stats.rows == {"socket_events": 1, "process_events": 1}


# --- SYSCALL record -------------------------------------------------------------------------


@pytest.mark.parametrize("lines", [CONNECT, EXECVE], ids=["connect", "execve"])
def test_syscall_without_pid(lines: list[str]) -> None:
    check_dropped(edit(lines, 0, " pid=", " xpid="), "syscall_no_pid")


def test_syscall_with_non_numeric_pid() -> None:
    check_dropped(edit(CONNECT, 0, "pid=200", "pid=two"), "syscall_bad_pid")


@pytest.mark.parametrize(
    "field", ["ppid", "uid", "auid", "euid", "fsuid", "suid", "gid", "egid", "fsgid", "sgid"]
)
def test_syscall_without_an_id_field(field: str) -> None:
    """osquery's publisher requires every one of these; so does kaudit."""
    check_dropped(edit(CONNECT, 0, f" {field}=", f" x{field}="), f"syscall_no_{field}")


def test_syscall_without_exe() -> None:
    check_dropped(edit(CONNECT, 0, ' exe="/usr/bin/curl"', ""), "syscall_no_exe")


def test_syscall_with_odd_hex_exe() -> None:
    check_dropped(edit(CONNECT, 0, 'exe="/usr/bin/curl"', "exe=2F7573722"), "syscall_bad_exe")


def test_syscall_with_bad_syscall_number() -> None:
    check_dropped(edit(CONNECT, 0, "syscall=42", "syscall=4x2"), "syscall_bad_syscall")


def test_syscall_with_unknown_arch_value() -> None:
    check_dropped(edit(CONNECT, 0, "arch=c000003e", "arch=12345678"), "syscall_bad_arch")


def test_syscall_of_an_arch_without_syscall_table_is_skipped() -> None:
    """s390x (80000016) is a real arch kaudit has no table for: skipped, not a bad record."""
    stats = TableStats()
    assert rows_for(event(edit(CONNECT, 0, "arch=c000003e", "arch=80000016")), OPTS, stats) == []
    assert stats.skipped == {"unsupported_arch": 1} and not stats.drops


def test_corrupt_record_body_is_counted() -> None:
    """A word without '=' in a kernel record: the parser raises when fields are split."""
    check_dropped(edit(CONNECT, 0, " items=0 ", " items=0 garbage "), "record_field_without_equals")


def test_failed_connect_without_exit() -> None:
    lines = edit(edit(CONNECT, 0, "success=yes", "success=no"), 0, " exit=0", "")
    check_dropped(lines, "syscall_no_exit")


def test_failed_connect_with_bad_exit() -> None:
    lines = edit(edit(CONNECT, 0, "success=yes", "success=no"), 0, "exit=0", "exit=-EINPROGRESS")
    check_dropped(lines, "syscall_bad_exit")


# --- SOCKADDR record ------------------------------------------------------------------------


def test_connect_without_sockaddr() -> None:
    check_dropped(drop_line(CONNECT, 1), "socket_no_sockaddr")


@pytest.mark.parametrize(
    "saddr",
    ["02", "0200", "020000507F000001"],  # 1 byte; family only; sockaddr_in without its padding
)
def test_sockaddr_too_short(saddr: str) -> None:
    check_dropped(edit(CONNECT, 1, "020000507F0000010000000000000000", saddr), "saddr_too_short")


def test_sockaddr_ipv6_too_short() -> None:
    check_dropped(
        edit(CONNECT, 1, "020000507F0000010000000000000000", "0A000050" + "00" * 12), "saddr_too_short"
    )


def test_sockaddr_odd_length_hex() -> None:
    check_dropped(
        edit(CONNECT, 1, "020000507F0000010000000000000000", "020000507F000001000000000000000"),
        "saddr_odd_hex",
    )


def test_sockaddr_not_hex() -> None:
    check_dropped(
        edit(CONNECT, 1, "020000507F0000010000000000000000", "02000050ZZ0000010000000000000000"),
        "saddr_bad_hex",
    )


def test_short_sockaddr_of_a_failed_connect_is_skipped_first() -> None:
    """osquery filters failures before it looks at the address: skipped, not a drop."""
    lines = edit(
        edit(CONNECT, 0, "success=yes exit=0", "success=no exit=-22"),
        1,
        "020000507F0000010000000000000000",
        "02",
    )
    stats = TableStats()
    assert rows_for(event(lines), OPTS, stats) == []
    assert stats.skipped == {"socket_failed_syscall": 1} and not stats.drops


def test_unknown_family_is_skipped() -> None:
    """AF_PACKET (17): osquery's parseSockAddr does not know it; no row, counted."""
    stats = TableStats()
    lines = edit(CONNECT, 1, "020000507F0000010000000000000000", "1100" + "00" * 18)
    assert rows_for(event(lines), OPTS, stats) == []
    assert stats.skipped == {"unsupported_family": 1}


def test_unnamed_unix_socket_is_skipped() -> None:
    stats = TableStats()
    assert rows_for(event(edit(CONNECT, 1, "020000507F0000010000000000000000", "0100")), OPTS, stats) == []
    assert stats.skipped == {"unix_unnamed": 1}


# --- EXECVE / CWD / PATH records ------------------------------------------------------------


def test_execve_odd_length_hex_argument() -> None:
    check_dropped(edit(EXECVE, 1, "a2=776F726C64", "a2=776F726C6"), "execve_odd_hex")


def test_execve_argument_neither_quoted_nor_hex() -> None:
    check_dropped(edit(EXECVE, 1, "a2=776F726C64", "a2=world"), "execve_bad_hex")


def test_execve_missing_argument() -> None:
    """argc=3 but a2 never arrived: a partial command line is not the command line."""
    check_dropped(edit(EXECVE, 1, " a2=776F726C64", ""), "execve_incomplete")


def test_execve_split_argument_with_a_lost_chunk() -> None:
    lines = edit(EXECVE, 1, "a2=776F726C64", "a2_len=10 a2[0]=776F72 a2[2]=6C64")
    check_dropped(lines, "execve_incomplete")


def test_execve_split_argument_complete() -> None:
    lines = edit(EXECVE, 1, "a2=776F726C64", "a2_len=10 a2[0]=776F72 a2[1]=6C64")
    (row,) = rows_for(event(lines), OPTS)
    assert row.cmdline == "echo hello world"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("index", "reason"), [(1, "execve_no_execve"), (2, "execve_no_cwd"), (3, "execve_no_path")]
)
def test_execve_missing_record(index: int, reason: str) -> None:
    check_dropped(drop_line(EXECVE, index), reason)


def test_execve_cwd_odd_hex() -> None:
    check_dropped(edit(EXECVE, 2, 'cwd="/root"', "cwd=2F726F6F7"), "cwd_odd_hex")


def test_failed_execve_is_skipped() -> None:
    stats = TableStats()
    lines = edit(EXECVE, 0, "success=yes exit=0", "success=no exit=-2")
    assert rows_for(event(lines), OPTS, stats) == []
    assert stats.skipped == {"process_failed_syscall": 1} and not stats.drops


def test_tables_keep_counting_and_numbering_after_bad_input() -> None:
    """A dropped event takes no eid: the next good row still gets the next number."""
    tables = Tables(OPTS, uptime=None)
    assert tables.rows_for(event(CONNECT))[0].eid == "0000000001"
    assert tables.rows_for(event(edit(CONNECT, 0, " pid=", " xpid="))) == []
    assert tables.rows_for(event(EXECVE))[0].eid == "0000000002"
    assert tables.stats.drops == {"syscall_no_pid": 1}
    assert tables.stats.rows == {"socket_events": 1, "process_events": 1}


FORK = [
    "type=SYSCALL msg=audit(1700000000.300:12): arch=c000003e syscall=57 success=yes exit=4242 a0=0 a1=0 "
    "a2=0 a3=0 items=0 ppid=100 pid=202 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 "
    'egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm="sh" exe="/bin/sh" key=(null)',
    "type=EOE msg=audit(1700000000.300:12): ",
]
FORK_OPTS = TableOptions(allow_process_events=True, allow_fork_process_events=True)


def test_fork_gives_its_row() -> None:
    (row,) = rows_for(event(FORK), FORK_OPTS)
    assert (row.syscall, row.pid, row.parent) == ("fork", 4242, 202)  # type: ignore[union-attr]


def test_fork_without_exit() -> None:
    """The child's pid is the exit value: without it there is no pid to report."""
    check_dropped(edit(FORK, 0, " exit=4242", ""), "syscall_no_exit", FORK_OPTS)


def test_clone_without_flags() -> None:
    lines = edit(edit(FORK, 0, "syscall=57", "syscall=56"), 0, " a0=0", "")
    check_dropped(lines, "clone_no_flags", FORK_OPTS)
    lines = edit(edit(FORK, 0, "syscall=57", "syscall=56"), 0, " a0=0", " a0=zz")
    check_dropped(lines, "clone_bad_flags", FORK_OPTS)


def test_path_mode_with_an_unterminated_quote_is_dropped_not_raised() -> None:
    # found by the fast lane's mutation test: decode_str raised out of the table layer
    check_dropped(edit(EXECVE, 3, "mode=0100755", 'mode="0100755'), "mode_bad_quote")
