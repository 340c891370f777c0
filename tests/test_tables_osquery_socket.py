"""osquery's own socket_events test cases, reproduced.

Source: osquery ``osquery/events/tests/linux/socket_events.cpp``. osquery builds its three
events (kSucceededConnectEvent, kSucceededBindEvent, kSucceededAccept4Event) as field maps
and edits ``success``/``exit``/``syscall`` per case; here each event is written as the
audit.log text the kernel would have produced for those fields (``comm``/``exe`` quoted,
``key=""`` as ``key=(null)``) and goes through ``parse_log_line`` -> ``Publisher`` ->
``rows_for``. Every assertion osquery makes is repeated; the row values osquery does not
assert (addresses, ports, fd ...) are pinned too, from the records.
"""

from __future__ import annotations

import errno

import pytest

from collector.parser import parse_log_line
from collector.protocol._tables import SYSCALLS
from collector.publisher import Event, Publisher
from collector.rows import SocketEventsRow
from collector.tables import TableOptions, TableStats, rows_for

X86 = SYSCALLS["x86_64"]

SYSCALL = (
    "type=SYSCALL msg=audit({id}): arch={arch} syscall={nr} success={success} exit={exit} "
    "a0={a0} a1={a1} a2={a2} a3={a3} items=0 ppid={ppid} pid={pid} auid=1000 uid=1000 gid=1000 "
    "euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts1 ses=2 "
    'comm="{comm}" exe="{exe}" subj=unconfined key=(null)'
)

CONNECT = dict(
    arch="c000003e",
    id="1629377973.356:1276",
    nr=X86["connect"],
    success="yes",
    exit="0",
    a0="7",
    a1="7fb5de285d0c",
    a2="10",
    a3="7fb5df747291",
    ppid=39590,
    pid=39598,
    comm="curl",
    exe="/usr/bin/curl",
    saddr="020000357F000035900600D8B57F0000",
    proctitle="6375726C0068747470733A2F2F6769746875622E636F6D",
)
BIND = dict(
    arch="c000003e",
    id="1629382051.394:1296",
    nr=X86["bind"],
    success="yes",
    exit="0",
    a0="3",
    a1="55ea21a222d0",
    a2="10",
    a3="7fff5c13e390",
    ppid=39590,
    pid=48359,
    comm="nc",
    exe="/usr/bin/nc.openbsd",
    saddr="02001F907F0000010000000000000000",
    proctitle="6E63002D6C003132372E302E302E310038303830",
)
ACCEPT4 = dict(
    arch="c000003e",
    id="1629395472.368:1348",
    nr=X86["accept4"],
    success="yes",
    exit="4",
    a0="3",
    a1="7fff4b475ec0",
    a2="7fff4b475e54",
    a3="800",
    ppid=93329,
    pid=93383,
    comm="nc",
    exe="/usr/bin/nc.openbsd",
    saddr="0200E8007F0000010000000000000000",
    proctitle="6E63002D6C003132372E302E302E310038303830",
)


def event(base: dict, **changes: object) -> Event:
    """One event from a field set (osquery's AuditEvent) with ``changes`` applied."""
    f = {**base, **changes}
    lines = [
        SYSCALL.format(**f),
        f"type=SOCKADDR msg=audit({f['id']}): saddr={f['saddr']}",
        f"type=PROCTITLE msg=audit({f['id']}): proctitle={f['proctitle']}",
        f"type=EOE msg=audit({f['id']}): ",
    ]
    out: list[Event] = []
    pub = Publisher(timeout_ms=2000, on_event=out.append)
    for line in lines:
        rec = parse_log_line(line)
        assert rec is not None
        pub.feed(rec)
    pub.flush()
    assert len(out) == 1
    return out[0]


def opts(*, failed: bool = False, unix: bool = False, accept: bool = False, null_accept: bool = False):
    return TableOptions(
        allow_sockets=True,
        allow_process_events=False,
        allow_failed_socket_events=failed,
        allow_unix=unix,
        allow_accept_socket_events=accept,
        allow_null_accept_socket_events=null_accept,
    )


def socket_rows(ev: Event, o: TableOptions, stats: TableStats | None = None) -> list[SocketEventsRow]:
    rows = rows_for(ev, o, stats)
    assert all(isinstance(r, SocketEventsRow) for r in rows)
    return rows  # type: ignore[return-value]


# --- test_parse_sock_addr ----------------------------------------------------------------------


def test_parse_sock_addr_ipv4() -> None:
    (row,) = socket_rows(event(CONNECT, saddr="02001F907F0000010000000000000000"), opts())
    assert (row.remote_address, row.family, row.remote_port) == ("127.0.0.1", 2, 8080)


def test_parse_sock_addr_ipv6() -> None:
    """osquery's IPv6 spelling: eight four-digit lower-case groups, not compressed.

    The test's saddr is 27 bytes (the scope id is cut short); the address fits in 24.
    """
    (row,) = socket_rows(
        event(CONNECT, saddr="0A001F9100000000FE80000000000000022522FFFEB03684000000"), opts()
    )
    assert row.remote_address == "fe80:0000:0000:0000:0225:22ff:feb0:3684"
    assert (row.remote_port, row.family) == (8081, 10)


def test_parse_sock_addr_unix_path() -> None:
    (row,) = socket_rows(event(CONNECT, saddr="01002F746D702F6F7371756572792E656D0000"), opts(unix=True))
    assert (row.socket, row.family) == ("/tmp/osquery.em", 1)
    assert (row.remote_address, row.remote_port, row.local_address, row.local_port) == ("", 0, "0", 0)


def test_parse_sock_addr_unix_abstract() -> None:
    """An abstract name (sun_path[0] == NUL): osquery's socket column is the name without it."""
    (row,) = socket_rows(event(CONNECT, saddr="0100002F746D702F6F7371756572792E656D"), opts(unix=True))
    assert row.socket == "/tmp/osquery.em"


def test_unix_sockets_need_allow_unix() -> None:
    stats = TableStats()
    assert socket_rows(event(CONNECT, saddr="01002F746D702F6F7371756572792E656D0000"), opts(), stats) == []
    assert stats.skipped == {"unix_disabled": 1}


# --- succeeded_blocking_connect_syscall --------------------------------------------------------


@pytest.mark.parametrize("allow_failed", [True, False])
def test_succeeded_blocking_connect_syscall(allow_failed: bool) -> None:
    rows = socket_rows(event(CONNECT), opts(failed=allow_failed))
    assert len(rows) == 1
    assert (rows[0].success, rows[0].status) == (1, "succeeded")


def test_succeeded_connect_row_values() -> None:
    """Every column of the connect row, read off the records by hand."""
    (row,) = socket_rows(event(CONNECT), opts())
    d = row.to_dict()
    d.pop("uptime")
    assert d == {
        "table": "socket_events",
        "action": "connect",
        "pid": 39598,
        "path": "/usr/bin/curl",
        "fd": "7",
        "auid": 1000,
        "success": 1,
        "family": 2,
        "protocol": 0,
        "local_address": "0",
        "remote_address": "127.0.0.53",  # 7F000035
        "local_port": 0,
        "remote_port": 53,  # 0035
        "socket": "",
        "time": 1629377973,
        "eid": "",
        "status": "succeeded",
    }


# --- failed_blocking_connect_syscall -----------------------------------------------------------


@pytest.mark.parametrize("allow_failed", [True, False])
def test_failed_blocking_connect_syscall(allow_failed: bool) -> None:
    ev = event(CONNECT, success="no", exit=str(-errno.EBADF))
    stats = TableStats()
    rows = socket_rows(ev, opts(failed=allow_failed), stats)
    if allow_failed:
        assert len(rows) == 1
        assert (rows[0].success, rows[0].status) == (0, "failed")
    else:
        assert rows == []
        assert stats.skipped == {"socket_failed_syscall": 1}


# --- succeeded_non_blocking_connect_syscall ----------------------------------------------------


@pytest.mark.parametrize("allow_failed", [True, False])
def test_succeeded_non_blocking_connect_syscall(allow_failed: bool) -> None:
    ev = event(CONNECT, success="no", exit=str(-errno.EINPROGRESS))
    rows = socket_rows(ev, opts(failed=allow_failed))
    assert len(rows) == 1
    assert (rows[0].success, rows[0].status) == (1, "in_progress")


# --- succeeded_bind_syscall / failed_bind_syscall ----------------------------------------------


@pytest.mark.parametrize("allow_failed", [True, False])
def test_succeeded_bind_syscall(allow_failed: bool) -> None:
    rows = socket_rows(event(BIND), opts(failed=allow_failed))
    assert len(rows) == 1
    assert (rows[0].success, rows[0].status) == (1, "succeeded")
    # bind fills the local pair and writes "0" into the remote one (osquery's parseSockAddr)
    r = rows[0]
    assert (r.action, r.local_address, r.local_port, r.remote_address, r.remote_port) == (
        "bind",
        "127.0.0.1",
        8080,
        "0",
        0,
    )
    assert (r.pid, r.path, r.fd) == (48359, "/usr/bin/nc.openbsd", "3")


@pytest.mark.parametrize("errno_value", [-errno.EINPROGRESS, -errno.EBADF])
@pytest.mark.parametrize("allow_failed", [True, False])
def test_failed_bind_syscall(errno_value: int, allow_failed: bool) -> None:
    """A bind failing with -EINPROGRESS is a failure: only connect is 'in_progress'."""
    rows = socket_rows(event(BIND, success="no", exit=str(errno_value)), opts(failed=allow_failed))
    if allow_failed:
        assert len(rows) == 1
        assert (rows[0].success, rows[0].status) == (0, "failed")
    else:
        assert rows == []


# --- succeeded_accept_syscall / failed_accept_syscall ------------------------------------------


@pytest.mark.parametrize("name", ["accept", "accept4"])
@pytest.mark.parametrize("allow_accept", [False, True])
def test_succeeded_accept_syscall(name: str, allow_accept: bool) -> None:
    rows = socket_rows(event(ACCEPT4, nr=X86[name]), opts(accept=allow_accept))
    if allow_accept:
        assert len(rows) == 1
        assert (rows[0].success, rows[0].status) == (1, "succeeded")
        r = rows[0]
        # accept4's action is "accept"; the peer is remote: 127.0.0.1:59392 (E800)
        assert (r.action, r.remote_address, r.remote_port, r.local_address) == (
            "accept",
            "127.0.0.1",
            59392,
            "0",
        )
        assert (r.pid, r.fd) == (93383, "3")
    else:
        assert rows == []


@pytest.mark.parametrize("name", ["accept", "accept4"])
@pytest.mark.parametrize("allow_failed", [False, True])
def test_failed_accept_syscall(name: str, allow_failed: bool) -> None:
    ev = event(ACCEPT4, nr=X86[name], success="no", exit=str(-errno.EBADF))
    rows = socket_rows(ev, opts(failed=allow_failed, accept=True))
    if allow_failed:
        assert len(rows) == 1
        assert (rows[0].success, rows[0].status) == (0, "failed")
    else:
        assert rows == []


# --- succeeded_non_blocking_accept_syscall -----------------------------------------------------


@pytest.mark.parametrize("name", ["accept", "accept4"])
@pytest.mark.parametrize("no_incoming_connection", [True, False])
@pytest.mark.parametrize("allow_null_accept", [True, False])
def test_succeeded_non_blocking_accept_syscall(
    name: str, no_incoming_connection: bool, allow_null_accept: bool
) -> None:
    """osquery reuses the connect event with the syscall number changed to accept/accept4."""
    if no_incoming_connection:
        ev = event(CONNECT, nr=X86[name], success="no", exit=str(-errno.EAGAIN))
    else:
        ev = event(CONNECT, nr=X86[name], success="yes", exit="10")
    rows = socket_rows(ev, opts(accept=True, null_accept=allow_null_accept))
    if no_incoming_connection:
        if allow_null_accept:
            assert len(rows) == 1
            assert (rows[0].success, rows[0].status) == (1, "no_client")
        else:
            assert rows == []
    else:
        assert len(rows) == 1
        assert (rows[0].success, rows[0].status) == (1, "succeeded")


def test_null_accept_without_its_flag_is_a_failure() -> None:
    """Without allow_null_accept an -EAGAIN accept is an ordinary failure (osquery)."""
    ev = event(CONNECT, nr=X86["accept"], success="no", exit=str(-errno.EAGAIN))
    (row,) = socket_rows(ev, opts(accept=True, failed=True))
    assert (row.success, row.status) == (0, "failed")


# --- kaudit's deliberate differences -----------------------------------------------------------


def test_difference_fd_is_decimal() -> None:
    """osquery copies the a0 token (hex) into fd, so descriptor 10 reads 'a'; kaudit: '10'."""
    (row,) = socket_rows(event(CONNECT, a0="a"), opts())
    assert row.fd == "10"


def test_difference_time_is_audit_timestamp() -> None:
    (row,) = socket_rows(event(BIND), opts())
    assert row.time == 1629382051


def test_difference_syscall_numbers_follow_the_records_arch() -> None:
    """osquery compares with its host's __NR_connect (42 on x86_64); kaudit reads ``arch``.

    The same connect from an aarch64 task (arch=c00000b7) has number 203; there 42 is
    another syscall and makes no row.
    """
    arm = SYSCALLS["aarch64"]
    assert arm["connect"] == 203
    (row,) = socket_rows(event(CONNECT, arch="c00000b7", nr=arm["connect"]), opts())
    assert (row.action, row.remote_address, row.remote_port) == ("connect", "127.0.0.53", 53)
    stats = TableStats()
    assert socket_rows(event(CONNECT, arch="c00000b7", nr=42), opts(), stats) == []
    assert not stats.drops and not stats.skipped


def test_netlink_is_skipped() -> None:
    """osquery skips NETLINK sockets (saddr starting 10...)."""
    stats = TableStats()
    ev = event(BIND, saddr="100000000000000000000000")
    assert socket_rows(ev, opts(), stats) == []
    assert stats.skipped == {"netlink": 1}
