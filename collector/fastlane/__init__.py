"""The native fast lane: the common audit event, text or netlink, to rows in C.

Why: the pure-Python pipeline costs about 45 us an event, five times auparse's speed on a
replay and three times auditd's CPU in a live storm (docs/performance.md). ``_fastlane.c``
takes the events that make up nearly all real traffic - contiguous, EOE-terminated, plain
kernel records of the types the tables read - and does for them exactly what
parser + publisher + tables do; everything else it hands back, untouched, to the Python
code, which stays the one definition of every rule. See the C file's comment for the bail
rule, and tests/test_fastlane.py for the differential tests (rows and every counter equal
with and without the lane, over the public captures, the scenarios and generated input).

``Pipeline`` uses the lane on its own (``feed_stream``, ``feed_messages``) when it can be
built; ``KAUDIT_FASTLANE=0`` turns it off, ``KAUDIT_FASTLANE=1`` makes a failed build an error
instead of a quiet fallback (CI and the benchmarks use that, so a broken build cannot pass
for a slow machine).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from collector.fastlane.build import ENV, FastLaneBuildError, NativeModule
from collector.protocol._tables import ERRNO, RECORD_TYPES, SYSCALLS
from collector.protocol.records import record_type_number
from collector.protocol.syscalls import _BY_NUMBER, MACHINES
from collector.rows import ProcessEventsRow, SocketEventsRow
from collector.tables import process_events, socket_events

if TYPE_CHECKING:
    from collector.pipeline import Pipeline

__all__ = ["ENV", "FastLane", "FastLaneBuildError", "module", "status"]

_EOE = record_type_number("EOE")
# the lane goes on around at most this many events held open; with more (records were lost,
# and events without their EOE wait for the timeout) the Python path takes everything, and
# ready() stays O(1)
MAX_HELD = 16
TYPE_NAMES = ("SYSCALL", "SOCKADDR", "EXECVE", "CWD", "PATH", "PROCTITLE", "EOE")

# the column order the C code passes rows in (checked against the dataclasses below)
_SOCKET_COLUMNS = (
    "action", "pid", "path", "fd", "auid", "success", "family", "protocol", "local_address",
    "remote_address", "local_port", "remote_port", "socket", "time", "uptime", "eid", "status",
)  # fmt: skip
_PROCESS_COLUMNS = (
    "pid", "path", "mode", "cmdline", "cmdline_size", "env", "env_count", "env_size", "cwd", "auid",
    "uid", "euid", "gid", "egid", "owner_uid", "owner_gid", "atime", "mtime", "ctime", "btime",
    "overflows", "parent", "time", "uptime", "eid", "fsuid", "suid", "fsgid", "sgid", "syscall",
)  # fmt: skip


def _check_columns() -> None:
    if (
        tuple(SocketEventsRow.__slots__) != _SOCKET_COLUMNS
        or tuple(ProcessEventsRow.__slots__) != _PROCESS_COLUMNS
    ):
        raise FastLaneBuildError(
            "the row classes' columns changed: update _fastlane_rows.h and the column lists"
        )


_LANE = NativeModule("_fastlane", _check_columns)


def module() -> ModuleType | None:
    """The loaded extension, or None (``status()`` says why). Built once per process."""
    return _LANE.get()


def status() -> str:
    """``on`` or why the lane is off (for the benchmarks and the tests)."""
    return _LANE.status()


def _kinds(sock: frozenset[str], proc: frozenset[str]) -> dict[str, int]:
    m = _LANE.get()
    assert m is not None
    out: dict[str, int] = {}
    for name in sock:
        out[name] = m.K_CONNECT if name == "connect" else m.K_BIND if name == "bind" else m.K_ACCEPT
    for name in proc - sock:
        if name in process_events.EXEC_SYSCALLS:
            out[name] = m.K_EXEC
        elif name == "clone":
            out[name] = m.K_CLONE
        elif name in process_events.FORK_SYSCALLS:
            out[name] = m.K_FORK
        else:
            out[name] = m.K_KILL
    return out


class FastLane:
    """The lane bound to one pipeline: its options, its publisher's state, its emit.

    The publisher's scalar state (audit clock, next expiry, the local node's serial boundary)
    and the tables' next eid are copied into the lane before each call and back after it,
    and the call's counters are added to the pipeline's, so that the Python path can take
    over at any event boundary and find everything as if it had done the work itself.
    """

    __slots__ = ("_lane", "_pipeline", "bails", "events")

    def __init__(self, pipeline: Pipeline) -> None:
        m = _LANE.get()
        assert m is not None
        self._pipeline = pipeline
        self.events = 0  # events the lane completed
        self.bails = 0  # times it handed an event back to the Python path
        opts = pipeline.tables.opts
        sock = socket_events.wanted_syscalls(opts)
        proc = process_events.wanted_syscalls(opts)
        kinds = _kinds(sock, proc)
        syscalls: dict[tuple[int, int], tuple[str, int]] = {}
        arches = []
        for mach in MACHINES.values():
            if mach.table not in SYSCALLS or mach.table not in _BY_NUMBER:
                continue
            arches.append(mach.elf)
            for nr, name in _BY_NUMBER[mach.table].items():
                if name in kinds:
                    syscalls[(mach.elf, nr)] = (name, kinds[name])
        options = (
            opts.allow_failed_socket_events,
            opts.allow_null_accept_socket_events,
            opts.allow_unix,
            ERRNO["EINPROGRESS"],
            ERRNO["EAGAIN"],
        )
        typenums = {name: record_type_number(name) for name in TYPE_NAMES}
        self._lane = lane = m.Lane(
            typenums, dict(RECORD_TYPES), syscalls, arches, options, SocketEventsRow, ProcessEventsRow
        )
        pub = pipeline.publisher
        lane.bind(
            pub._recent,
            pub._recent_order,
            pub._open,
            pipeline._emit,
            pipeline.tables._clock,
            pipeline.tables.stats.skip,
            pipeline._exclude or None,
            pub.recent_limit,
            pub.recent_window_ms,
            pub.timeout_ms,
        )

    def ready(self) -> bool:
        """True when the lane can take the next event: the local node's serials are tracked,
        and either nothing is open, or what is open is held below a consistent boundary (an
        event waiting for its timeout, e.g. a CONFIG_CHANGE without EOE; see scan_group)."""
        pub = self._pipeline.publisher
        tracker = pub._trackers.get(None)
        if tracker is None:
            return False
        if not tracker.live:
            return tracker.boundary == tracker.max_seen and not tracker.seen
        if len(pub._open) > MAX_HELD:
            return False  # a lossy stretch (events without EOE wait for their timeout): Python's
        # settled up to the oldest open serial at least: a completion inside the lane's group
        # settles nothing new (the open events stay the lowest), as the lane assumes
        return tracker.boundary >= min(tracker.live) - 1

    def may_resume(self, events_before: int) -> bool:
        """After the lane handed input back: may it take over again, now that the Python path
        fed one more record? Only once nothing is open or an event completed since
        ``events_before`` (the publisher's event count at the hand-back), so that the records of
        an event the publisher is still assembling are not offered to the lane one by one."""
        pub = self._pipeline.publisher
        return (not pub._open or pub.counters["events"] != events_before) and self.ready()

    def scan_text(self, buf: bytes, pos: int) -> tuple[int, bool]:
        """Whole events of audit.log text from ``pos``: (where it stopped, whether it bailed)."""
        self._sync_in()
        try:
            end, bailed = self._lane.scan_text(buf, pos)
        finally:
            self._sync_out()
        self.bails += bailed
        return end, bool(bailed)

    def scan_messages(self, msgs: Sequence[Any], i: int) -> tuple[int, bool]:
        """Whole events of netlink record messages from ``msgs[i]``: (where it stopped, bailed)."""
        self._sync_in()
        try:
            end, bailed = self._lane.scan_messages(msgs, i)
        finally:
            self._sync_out()
        self.bails += bailed
        return end, bool(bailed)

    def _sync_in(self) -> None:
        p = self._pipeline
        pub, lane = p.publisher, self._lane
        lane.clock = pub._clock
        lane.next_expiry = pub._next_expiry
        tracker = pub._trackers[None]
        lane.boundary = tracker.boundary
        lane.max_seen = tracker.max_seen
        lane.origin = tracker.origin
        lane.any_open = bool(pub._open)
        held = bool(tracker.live)
        lane.held = held
        if held:
            lane.low = min(tracker.live)
            lane.seen = tracker.seen
        lane.next_eid = p.tables._next_eid

    def _sync_out(self) -> None:
        p = self._pipeline
        pub, lane = p.publisher, self._lane
        types, others, events, lost, late, rows_sock, rows_proc, selfs, _event_bails = lane.take_counters()
        self.events += events
        pub._clock = lane.clock
        pub._next_expiry = lane.next_expiry
        tracker = pub._trackers[None]
        if lane.held:
            tracker.max_seen = lane.max_seen
            lane.seen = None
        else:
            tracker.boundary = tracker.max_seen = lane.boundary
        p.tables._next_eid = lane.next_eid
        if not events:
            return
        records = events  # the EOEs
        ptypes = p._types
        for number, n in (*types, *others.items()):
            if n:
                ptypes[number] = ptypes.get(number, 0) + n
                if number != _EOE:
                    records += n
        c = pub.counters
        c["records"] += records
        c["eoe"] += events
        c["events"] += events
        if lost:
            c["lost"] += lost
        if late:
            c["late_events"] += late
        p._parsed += records
        st = p.stats
        st.events += events
        st.events_by_reason["eoe"] += events
        st.ledger.dispatched += records
        if selfs:
            st.self_events += selfs
        rows = rows_sock + rows_proc
        if rows:
            st.rows += rows
            table_rows = st.table.rows
            if rows_sock:
                table_rows[SocketEventsRow.table] += rows_sock
            if rows_proc:
                table_rows[ProcessEventsRow.table] += rows_proc
