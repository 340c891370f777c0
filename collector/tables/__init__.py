"""The table subscribers: audit events in, osquery ``socket_events``/``process_events`` rows out.

``rows_for(event, opts)`` is the pure function (no clock, no counter): it reads the event's
SYSCALL record once, routes it to the table that watches that syscall, and returns that
table's rows with ``eid`` and ``uptime`` unset. ``Tables`` is what a pipeline holds: it
adds the per-run event id (``eid``, a counter zero-padded to 10 digits, shared by both
tables, in emit order) and ``uptime`` (seconds since boot when the row is emitted; volatile,
so ``Tables(opts, uptime=None)`` writes 0 for replays that must be byte-for-byte
reproducible), and keeps the ``TableStats`` counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from collector.parser import RecordError
from collector.rows import Row, format_eid
from collector.tables import process_events, socket_events
from collector.tables.options import TableOptions
from collector.tables.stats import TableStats
from collector.tables.syscall import read_syscall

if TYPE_CHECKING:
    from collector.publisher import Event

__all__ = ["TableOptions", "TableStats", "Tables", "rows_for", "uptime_seconds", "wanted_syscalls"]


def wanted_syscalls(opts: TableOptions) -> frozenset[str]:
    """Every syscall name some enabled table makes rows for (what the audit rules must cover)."""
    return socket_events.wanted_syscalls(opts) | process_events.wanted_syscalls(opts)


def rows_for(event: Event, opts: TableOptions, stats: TableStats | None = None) -> list[Row]:
    """All rows one event yields under ``opts``, ``eid``/``uptime`` unset; counts into ``stats``."""
    st = stats if stats is not None else TableStats()
    sock = socket_events.wanted_syscalls(opts)
    proc = process_events.wanted_syscalls(opts)
    row = _row(event, opts, sock, sock | proc, st)
    if row is None:
        return []
    st.rows[row.table] += 1
    return [row]


def _row(
    event: Event, opts: TableOptions, sock: frozenset[str], wanted: frozenset[str], st: TableStats
) -> Row | None:
    """Route the event by its syscall to the table that watches it; never raises on bad input.

    Fields are split lazily, so a corrupt record body surfaces here as RecordError: counted
    as ``record_<reason>`` and the event yields no row.
    """
    try:
        info = read_syscall(event, wanted, st)
        if info is None:
            return None
        if info.name in sock:
            return socket_events.row_from_syscall(event, info, opts, st)
        return process_events.row_from_syscall(event, info, st)
    except RecordError as exc:
        st.drop(f"record_{exc.reason}")
        return None


def uptime_seconds() -> int:
    """Whole seconds since boot, as osquery's ``getUptime``; 0 if unknown.

    ``CLOCK_BOOTTIME`` is the clock ``/proc/uptime`` prints (and ``sysinfo()``, which osquery
    calls, reads): a vDSO call instead of an open/read/close of /proc for every row, which
    cost 6 us a row in a syscall storm. /proc/uptime where the clock is missing.
    """
    if _BOOTTIME is not None:
        return int(time.clock_gettime(_BOOTTIME))
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return int(float(f.read().split()[0]))
    except (OSError, ValueError, IndexError):
        return 0


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


class Tables:
    """Both subscribers for one run: options, the eid counter, the uptime clock and the stats."""

    __slots__ = ("_clock", "_next_eid", "_sock", "_wanted", "opts", "stats")

    def __init__(
        self,
        opts: TableOptions,
        *,
        uptime: Callable[[], int] | None = uptime_seconds,
        first_eid: int = 1,
        stats: TableStats | None = None,
    ) -> None:
        self.opts = opts
        self.stats = stats if stats is not None else TableStats()
        self._clock = uptime
        self._next_eid = first_eid
        # the wanted sets depend only on opts: compute them once, not per event
        self._sock = socket_events.wanted_syscalls(opts)
        self._wanted = self._sock | process_events.wanted_syscalls(opts)

    @property
    def wanted(self) -> frozenset[str]:
        """Syscall names the enabled tables need audit rules for."""
        return self._wanted

    def rows_for(self, event: Event) -> list[Row]:
        """The event's rows with ``eid`` and ``uptime`` set, counted in ``stats``."""
        st = self.stats
        row = _row(event, self.opts, self._sock, self._wanted, st)
        if row is None:
            return []
        row.eid = format_eid(self._next_eid)
        self._next_eid += 1
        row.uptime = self._clock() if self._clock is not None else 0
        st.rows[row.table] += 1
        return [row]
