"""Records -> Events: assembling the records of one audit event, as the kernel emits them.

An audit event is every record carrying the same id ``audit(SEC.MSEC:SERIAL)`` (plus ``node``
in an aggregated log). At syscall exit the kernel writes SYSCALL, its auxiliary records
(SOCKADDR, EXECVE, CWD, PATH, ...), PROCTITLE and then EOE (``audit_log_exit``); records
emitted *during* the syscall (AVC, LOGIN, CONFIG_CHANGE, a relayed user message) carry the
same id and come first. Records of different events can interleave, and a log file can be
out of order.

An event completes on the first of:

* **EOE** (reason ``eoe``): the kernel's end-of-event marker. It is not kept in ``records``.
* **a single-record type** (reason ``single``, ``is_single_record_type``): messages that user
  space writes, 1100-1199 (USER_*, PAM, SERVICE_*), 1200-1299 (auditd's DAEMON_*) and
  2100-2999 (user-space anomalies, responses, MAC, crypto, virt), and 2000 (KERNEL, logged at
  boot outside any syscall). The kernel never adds records of its own to those and no EOE
  follows them, with one exception kept on purpose: when syscall rules are loaded the kernel
  also audits the ``sendto`` that carried the message and emits SYSCALL, PROCTITLE and EOE
  with the *same* id afterwards; those are counted as ``single_tail`` and dropped (they
  describe the messenger, and no table reads a sendto).
  auparse completes on arrival everything below 1300, 1700 and up, KERNEL and PROCTITLE;
  go-libaudit everything up to 1299, 2100 and up, and PROCTITLE. kaudit does not follow them
  for LOGIN (1006, written by the kernel during the ``write`` to loginuid), 1700-2099 (ANOM_*,
  INTEGRITY_*: an IMA or anomaly record emitted inside an ``execve`` must stay in the
  execve's event, whose SYSCALL and EOE follow it) or PROCTITLE (the kernel's EOE follows it,
  and would otherwise be counted late). Those wait for EOE or the timeout.
* **the timeout** (reason ``timeout``), measured in *audit time*: the publisher's clock is the
  newest record timestamp it has seen (or a later time given to ``tick``, which a live reader
  calls when the kernel is quiet), and an event times out when the clock has moved more than
  ``timeout_ms`` past its *last* record's arrival. Measuring from the last arrival rather
  than from the event's own stamp matters: the kernel stamps an event at syscall *entry*, so
  a ``accept`` that blocked for minutes arrives minutes "old" and must not be expired before
  its SOCKADDR. Replaying a file is therefore deterministic: wall time never enters.
* **the in-flight bound** (reason ``evicted``): at most ``max_in_flight`` events are held;
  a new one evicts the least recently active (which is also the first to time out).
* ``flush()`` (reason ``flush``) completes everything, at the end of input.

Counters (``Publisher.counters``, a ``collections.Counter``):

``records`` fed, ``events`` completed, and per reason ``eoe``, ``single``, ``timeouts``,
``evicted``, ``flushed``; ``duplicates``: a second SYSCALL for an event that already holds one
(kept out of the event; osquery silently replaces the first); ``late``: a record for an event
already completed by EOE/timeout/eviction/flush (dropped, never a second event);
``single_tail``: see above; ``orphan_eoe``: an EOE for an id never seen; ``lost``: serials
that never arrived (see below); ``late_events``: an event that arrived after its serial had
been counted lost (``lost`` is decremented again); ``serial_resets``: the kernel's serial
counter restarted (reboot); ``in_flight``: events still open when ``flush()`` was called.

Lost serials (go-libaudit's ``EventsLost``): the kernel numbers events with a 32-bit counter
(``audit_serial()``), so a serial that never shows up between two that did is an event the
kernel or the socket dropped. A gap is settled - counted - once every event below it has
completed, i.e. when it can no longer be an in-flight event's late neighbour; serials are
compared modulo 2**32 (nearest distance), so the rollover from 4294967295 to 0 is not a gap.
Serials are tracked per ``node``. go-libaudit's reassembler test logs give 0, 9, 0, 0 lost
for normal, lost_messages, out_of_order and rollover (tests/test_publisher_reassembler.py).
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from collector.parser import Record
from collector.protocol.records import record_type_number

__all__ = ["Event", "Publisher", "is_single_record_type"]

_EOE = record_type_number("EOE")
_SYSCALL = record_type_number("SYSCALL")
_KERNEL = record_type_number("KERNEL")

_MASK32 = 0xFFFFFFFF
_HALF32 = 1 << 31

# completion reason -> counter name
_REASON_COUNTER = {
    "eoe": "eoe",
    "single": "single",
    "timeout": "timeouts",
    "evicted": "evicted",
    "flush": "flushed",
}


def is_single_record_type(rtype: int) -> bool:
    """True for record types that are a whole event on their own (see module doc)."""
    return 1100 <= rtype <= 1299 or 2100 <= rtype <= 2999 or rtype == _KERNEL


@dataclass(slots=True)
class Event:
    """The records of one audit id, in arrival order (EOE not included).

    ``reason`` says how it completed: ``eoe``, ``single``, ``timeout``, ``evicted`` or
    ``flush``. ``node`` is the records' ``node=`` (None for a local kernel).
    """

    serial: int
    sec: int
    msec: int
    records: list[Record]
    reason: str = ""
    node: str | None = None

    def first(self, type: int) -> Record | None:  # noqa: A002 - the contract's name
        """The first record of ``type``, or None."""
        for rec in self.records:
            if rec.type == type:
                return rec
        return None

    def all(self, type: int) -> list[Record]:  # noqa: A002 - the contract's name
        """Every record of ``type``, in arrival order."""
        return [rec for rec in self.records if rec.type == type]

    @property
    def audit_id(self) -> str:
        """``SEC.MSEC:SERIAL``."""
        return f"{self.sec}.{self.msec:03d}:{self.serial}"

    @property
    def time_ms(self) -> int:
        """The event's audit timestamp in milliseconds."""
        return self.sec * 1000 + self.msec


class _SerialTracker:
    """Gap accounting for one node's serials, unwrapped to an unbounded integer line."""

    __slots__ = ("boundary", "heap", "live", "max_seen", "origin", "seen")

    def __init__(self, first_serial: int) -> None:
        self.origin = first_serial - 1  # nothing at or below it was ever expected
        self.boundary = first_serial - 1  # every serial <= boundary is settled
        self.max_seen = first_serial - 1
        self.seen: set[int] = set()  # serials seen above the boundary
        self.live: dict[int, int] = {}  # in-flight serial -> number of open events
        self.heap: list[int] = []  # in-flight serials, lazily pruned

    def unwrap(self, serial: int) -> int:
        ref = self.max_seen
        delta = (serial - ref) & _MASK32
        if delta >= _HALF32:
            delta -= 1 << 32
        return ref + delta

    def observe(self, u: int) -> None:
        if u > self.max_seen:
            self.max_seen = u
        if u > self.boundary:
            self.seen.add(u)
        self.live[u] = self.live.get(u, 0) + 1
        heapq.heappush(self.heap, u)

    def done(self, u: int) -> None:
        n = self.live.get(u, 0) - 1
        if n > 0:
            self.live[u] = n
        else:
            self.live.pop(u, None)

    def settle(self) -> int:
        """Advance the boundary as far as no open event holds it back; return new lost count."""
        heap, live = self.heap, self.live
        while heap and heap[0] not in live:
            heapq.heappop(heap)
        new = heap[0] - 1 if heap else self.max_seen
        old = self.boundary
        if new <= old:
            return 0
        seen = self.seen
        span = new - old
        if span <= 2 * len(seen) + 64:
            inside = [s for s in range(old + 1, new + 1) if s in seen]
        else:
            inside = [s for s in seen if s <= new]
        seen.difference_update(inside)
        self.boundary = new
        return span - len(inside)


class _Open:
    """An event being assembled, with the publisher's bookkeeping."""

    __slots__ = ("clock", "event", "has_syscall", "key", "tracker", "u")

    def __init__(self, key: tuple, event: Event, tracker: _SerialTracker, u: int, clock: int) -> None:
        self.key = key
        self.event = event
        self.tracker = tracker
        self.u = u
        self.clock = clock  # audit clock at the last record's arrival
        self.has_syscall = False


class Publisher:
    """Assemble records into events; see the module doc for when an event completes.

    ``on_event`` receives each completed Event; without one, completed events queue in
    ``ready`` (``drain()`` empties it). ``timeout_ms`` is in audit time. The publisher never
    raises on input: odd sequences are counted in ``counters``.
    """

    def __init__(
        self,
        timeout_ms: int = 2000,
        on_event: Callable[[Event], None] | None = None,
        *,
        max_in_flight: int = 4096,
        recent_limit: int = 65536,
        recent_window_ms: int | None = None,
    ) -> None:
        if timeout_ms < 0:
            raise ValueError(f"timeout_ms must be >= 0, got {timeout_ms}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.timeout_ms = timeout_ms
        self.max_in_flight = max_in_flight
        self.recent_limit = recent_limit
        # How long (audit time) a completed id is remembered, so that a straggler is counted as
        # late instead of opening a second event. The kernel sends an event's records within
        # milliseconds, so a window well past the timeout catches every straggler; bounding by
        # time, not only by count, keeps memory flat at any event rate (the 10-minute soak grew
        # 10.9% while a count-only window of 65,536 ids filled up).
        self.recent_window_ms = max(10_000, 5 * timeout_ms) if recent_window_ms is None else recent_window_ms
        self.on_event = on_event
        self.ready: deque[Event] = deque()
        self.counters: Counter[str] = Counter()
        self._open: dict[tuple, _Open] = {}  # ordered by last activity (= by deadline)
        self._recent: dict[tuple, str] = {}  # completed id -> completion reason, oldest first
        # the same ids in completion order: evicting the oldest with next(iter(dict)) costs a
        # scan over every slot deleted since the dict was last compacted (tens of thousands
        # once the window is full: a fifth of the live collector's time); a deque pops in O(1)
        self._recent_order: deque[tuple[tuple, int]] = deque()  # (id, audit time completed)
        self._trackers: dict[str | None, _SerialTracker] = {}
        self._clock = -1  # audit time, ms
        self._next_expiry = 1 << 62

    @property
    def in_flight(self) -> int:
        """Number of events still being assembled."""
        return len(self._open)

    @property
    def clock_ms(self) -> int:
        """The audit clock: newest record time seen or ticked, in ms (-1 before any)."""
        return self._clock

    def feed(self, record: Record) -> None:
        """Add one record; may complete events (this one, or others that timed out)."""
        counters = self.counters
        counters["records"] += 1
        t = record.sec * 1000 + record.msec
        jump = t - self._clock
        if jump > 0:
            self._clock = t
            if t >= self._next_expiry:
                self._expire()
        key = (record.node, record.serial, record.sec, record.msec)
        rtype = record.type
        op = self._open.get(key)
        if op is None:
            reason = self._recent.get(key)
            if reason is not None:
                counters["single_tail" if reason == "single" else "late"] += 1
                return
            if rtype == _EOE:
                # records lost, or still to come out of order; the serial stays unseen, so it
                # is counted lost unless its records do arrive (then late_events corrects it)
                counters["orphan_eoe"] += 1
                return
            op = self._start(record, key, jump)
            if is_single_record_type(rtype):
                op.event.records.append(record)
                self._complete(op, "single")
                return
        elif rtype == _EOE:
            self._complete(op, "eoe")
            return
        elif rtype == _SYSCALL and op.has_syscall:
            counters["duplicates"] += 1
            return
        op.event.records.append(record)
        if rtype == _SYSCALL:
            op.has_syscall = True
        elif 1100 <= rtype <= 1299 or 2100 <= rtype <= 2999 or rtype == _KERNEL:  # is_single_record_type, inline
            self._complete(op, "single")
            return
        if op.clock != self._clock:
            # keep _open ordered by last activity: this event now has the latest deadline
            del self._open[key]
            self._open[key] = op
            op.clock = self._clock
            deadline = op.clock + self.timeout_ms + 1
            if deadline < self._next_expiry:
                self._next_expiry = deadline

    def tick(self, now_audit_ms: int) -> None:
        """Advance the audit clock to ``now_audit_ms`` (if later) and expire what timed out.

        A live reader calls this with the current time when no record arrives, so that an
        event without EOE still completes; replay never needs to.
        """
        if now_audit_ms > self._clock:
            self._clock = now_audit_ms
        if self._clock >= self._next_expiry:
            self._expire()

    def flush(self) -> None:
        """Complete every open event (end of input) and settle the lost count."""
        self.counters["in_flight"] = len(self._open)
        # in serial order, as the kernel numbered them, not in order of last activity
        for op in sorted(self._open.values(), key=lambda op: (op.event.node or "", op.u)):
            self._complete(op, "flush")
        for tracker in self._trackers.values():
            self.counters["lost"] += tracker.settle()

    def drain(self) -> list[Event]:
        """The completed events queued in ``ready`` (when there is no ``on_event``)."""
        out = list(self.ready)
        self.ready.clear()
        return out

    # -- internals ---------------------------------------------------------------------------

    def _start(self, record: Record, key: tuple, jump: int) -> _Open:
        node = record.node
        tracker = self._trackers.get(node)
        if tracker is None:
            tracker = self._trackers[node] = _SerialTracker(record.serial)
        u = tracker.unwrap(record.serial)
        if u <= tracker.boundary:
            if jump > self.timeout_ms:
                # a settled serial again, stamped well after everything seen: the kernel's
                # counter restarted (reboot, or a log spanning one); start a new series
                self.counters["serial_resets"] += 1
                tracker = self._trackers[node] = _SerialTracker(record.serial)
                u = record.serial
            elif u > tracker.origin:
                # it had been counted lost when the boundary passed it
                self.counters["lost"] -= 1
                self.counters["late_events"] += 1
        tracker.observe(u)
        while len(self._open) >= self.max_in_flight:
            self._complete(next(iter(self._open.values())), "evicted")
        op = _Open(
            key,
            Event(record.serial, record.sec, record.msec, [], node=node),
            tracker,
            u,
            self._clock,
        )
        self._open[key] = op
        deadline = self._clock + self.timeout_ms + 1
        if deadline < self._next_expiry:
            self._next_expiry = deadline
        return op

    def _expire(self) -> None:
        limit = self._clock - self.timeout_ms
        opened = self._open
        while opened:
            op = next(iter(opened.values()))
            if op.clock >= limit:
                self._next_expiry = op.clock + self.timeout_ms + 1
                return
            self._complete(op, "timeout")
        self._next_expiry = 1 << 62

    def _complete(self, op: _Open, reason: str) -> None:
        del self._open[op.key]
        event = op.event
        event.reason = reason
        counters = self.counters
        counters[_REASON_COUNTER[reason]] += 1
        counters["events"] += 1
        recent = self._recent
        recent[op.key] = reason  # never present already: feed() starts no event for a recent id
        order = self._recent_order
        order.append((op.key, self._clock))
        if len(recent) > self.recent_limit:
            del recent[order.popleft()[0]]
        horizon = self._clock - self.recent_window_ms
        while order[0][1] < horizon:
            del recent[order.popleft()[0]]
        tracker = op.tracker
        tracker.done(op.u)
        lost = tracker.settle()
        if lost:
            counters["lost"] += lost
        if self.on_event is not None:
            self.on_event(event)
        else:
            self.ready.append(event)
