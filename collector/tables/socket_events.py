"""``socket_events`` rows from audit events, as osquery's SocketEventSubscriber makes them.

Which syscalls: bind and connect; accept and accept4 (action ``accept``) unless
``allow_accept_socket_events`` is off. Each row takes ``pid``, ``auid``, ``path`` (the
``exe``) and ``fd`` (argument ``a0``) from the SYSCALL record and the address from the
SOCKADDR record: bind fills ``local_address``/``local_port`` and sets the remote pair to
``"0"``/0; connect and accept fill the remote pair and set the local one to ``"0"``/0 (osquery's
values). ``protocol`` is always 0: the record does not say.

Status, exactly as osquery decides it (``socket_events.cpp``):

- success=yes: ``succeeded``, ``success`` = 1;
- a connect that failed with -EINPROGRESS (non-blocking): ``in_progress``, ``success`` = 1;
- an accept/accept4 that failed with -EAGAIN, with ``allow_null_accept_socket_events``:
  ``no_client``, ``success`` = 1;
- any other failure (including bind -EINPROGRESS, and accept -EAGAIN without the flag):
  ``failed``, ``success`` = 0, and only with ``allow_failed_socket_events``.

Addresses: AF_INET as dotted quad; AF_INET6 in osquery's spelling, eight lower-case groups
of four hex digits, never compressed (``fe80:0000:...:3684``); AF_UNIX (only with
``allow_unix``) puts the path, or the abstract name without its leading NUL, in ``socket``
and leaves the address columns empty. AF_NETLINK is skipped, as are families osquery does
not know. ``sa_family`` is read in the task's byte order, so a big-endian bind decodes
(osquery checks the first hex digits of the little-endian spelling and drops it).

Differences from osquery on purpose (docs/tables.md): ``fd`` is the decimal descriptor
(osquery copies the hex ``a0`` token, so fd 10 reads ``a``); ``time`` is the event's audit
timestamp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.decode import AF_INET, AF_INET6, AF_NETLINK, AF_UNIX, DecodeError, arch_byteorder, decode_saddr
from collector.parser import RecordError
from collector.protocol._tables import ERRNO
from collector.protocol.records import record_type_number
from collector.rows import SocketEventsRow
from collector.tables.options import TableOptions
from collector.tables.stats import TableStats
from collector.tables.syscall import SyscallInfo, read_syscall

if TYPE_CHECKING:
    from collector.decode import Sockaddr
    from collector.publisher import Event

__all__ = ["ACCEPT_SYSCALLS", "BASE_SYSCALLS", "rows_for", "wanted_syscalls"]

TABLE = SocketEventsRow.table

BASE_SYSCALLS = frozenset({"bind", "connect"})
ACCEPT_SYSCALLS = frozenset({"accept", "accept4"})

_SOCKADDR = record_type_number("SOCKADDR")
_EINPROGRESS = ERRNO["EINPROGRESS"]
_EAGAIN = ERRNO["EAGAIN"]  # == EWOULDBLOCK on Linux


def wanted_syscalls(opts: TableOptions) -> frozenset[str]:
    """Syscall names this table makes rows for under ``opts`` (empty when the table is off)."""
    if not opts.allow_sockets:
        return frozenset()
    if opts.allow_accept_socket_events:
        return BASE_SYSCALLS | ACCEPT_SYSCALLS
    return BASE_SYSCALLS


def rows_for(event: Event, opts: TableOptions, stats: TableStats | None = None) -> list[SocketEventsRow]:
    """The ``socket_events`` rows of one event (zero or one), ``eid`` and ``uptime`` unset.

    Events that are not ours return [] silently; ours that yield no row are counted in
    ``stats`` (a fresh throw-away TableStats when None).
    """
    st = stats if stats is not None else TableStats()
    try:
        info = read_syscall(event, wanted_syscalls(opts), st)
        row = None if info is None else row_from_syscall(event, info, opts, st)
    except RecordError as exc:  # a corrupt record body, split lazily on first access
        st.drop(f"record_{exc.reason}")
        return []
    if row is None:
        return []
    st.rows[TABLE] += 1
    return [row]


def row_from_syscall(
    event: Event, info: SyscallInfo, opts: TableOptions, stats: TableStats
) -> SocketEventsRow | None:
    """The row for an event whose SYSCALL was already read (the dispatcher's entry point)."""
    name = info.name
    is_accept = name in ACCEPT_SYSCALLS
    if is_accept and not opts.allow_accept_socket_events:
        stats.skip("accept_disabled")
        return None

    if info.success:
        status, success = "succeeded", 1
    else:
        code = info.exit_code()
        if code is None:
            stats.drop("syscall_no_exit" if info.record.get("exit") is None else "syscall_bad_exit")
            return None
        if name == "connect" and code == -_EINPROGRESS:
            status, success = "in_progress", 1
        elif is_accept and code == -_EAGAIN and opts.allow_null_accept_socket_events:
            status, success = "no_client", 1
        else:
            if not opts.allow_failed_socket_events:
                stats.skip("socket_failed_syscall")
                return None
            status, success = "failed", 0

    sock_rec = event.first(_SOCKADDR)
    if sock_rec is None:
        # accept(fd, NULL, NULL) asks for no address and the kernel logs none: not an error
        if is_accept:
            stats.skip("accept_without_address")
        else:
            stats.drop("socket_no_sockaddr")
        return None
    try:
        addr = decode_saddr(sock_rec.get("saddr"), arch_byteorder(info.record.get("arch")))
    except DecodeError as exc:  # saddr_too_short, odd_hex, bad_hex
        stats.drop(exc.reason if exc.reason.startswith("saddr_") else f"saddr_{exc.reason}")
        return None
    if addr is None:
        stats.drop("saddr_missing")
        return None

    fd = info.arg(0)
    row = SocketEventsRow(
        action="accept" if is_accept else name,
        pid=info.pid,
        path=info.exe,
        fd="" if fd is None else str(fd),
        auid=info.auid,
        success=success,
        time=event.sec,
        status=status,
    )
    if not _fill_address(row, addr, opts, stats):
        return None
    return row


def _fill_address(row: SocketEventsRow, addr: Sockaddr, opts: TableOptions, stats: TableStats) -> bool:
    family = addr.family
    if family == AF_NETLINK:
        stats.skip("netlink")
        return False
    if family not in (AF_INET, AF_INET6, AF_UNIX):
        stats.skip("unsupported_family")
        return False
    bind = row.action == "bind"
    # osquery writes "0" into the pair the syscall does not concern
    if bind:
        row.remote_address = "0"
    else:
        row.local_address = "0"
    row.family = family
    if family == AF_UNIX:
        if not opts.allow_unix:
            stats.skip("unix_disabled")
            return False
        if not addr.path:
            # autobind/unnamed socket (addrlen 2): osquery cannot parse it and drops it
            stats.skip("unix_unnamed")
            return False
        row.socket = addr.path
        return True
    if family == AF_INET:
        address = addr.address
    else:
        hexa = addr.raw[8:24].hex()
        address = ":".join(hexa[i : i + 4] for i in range(0, 32, 4))
    if bind:
        row.local_address, row.local_port = address, addr.port
    else:
        row.remote_address, row.remote_port = address, addr.port
    return True
