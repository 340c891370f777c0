"""Records -> publisher -> tables -> rows: the one path ``collect`` and ``replay`` share.

Both commands feed records here (parsed from netlink payloads or from log lines) and get rows
back through one callback per completed event, so a live run and a replay of its capture
produce the same rows by construction. Every counter of the run lives in one ``PipelineStats``
(the reader adds the kernel's), which ``--stats`` prints.

The ledger is the check that nothing vanishes: every record received ends in exactly one of

- ``dispatched``: inside an event the publisher completed (EOE, single-record type, timeout,
  eviction), the EOE that completed it included;
- ``dropped[reason]``: a record the parser rejected (by its reason), or one the publisher kept
  out of every event and counted (a duplicate SYSCALL, a late record, an orphan EOE, the
  sendto tail of a user message);
- ``in_flight``: inside an event that was still open when the run ended (flushed at exit).

``ledger.balanced`` is ``received == dispatched + in_flight + sum(dropped)``; a difference
is reported as ``unaccounted`` and means a bug in the pipeline, never in the input.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from collector.parser import Record, RecordError, parse_log_line, parse_record
from collector.protocol.records import AUDIT_SYSCALL, record_type_name
from collector.publisher import Event, Publisher
from collector.rows import Row
from collector.tables import Tables, uptime_seconds
from collector.tables.options import TableOptions
from collector.tables.stats import TableStats

if TYPE_CHECKING:
    from collector.fastlane import FastLane

__all__ = ["DEFAULT_TIMEOUT_MS", "Ledger", "Pipeline", "PipelineStats"]

# An event whose EOE never comes (audit.log files carry no EOE; a record lost) completes after
# this much audit time; go-libaudit's reassembler uses 2 s as well.
DEFAULT_TIMEOUT_MS = 2000


@dataclass(slots=True)
class Ledger:
    """Where every received record went (see module doc)."""

    received: int = 0
    dispatched: int = 0
    in_flight: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def unaccounted(self) -> int:
        return self.received - self.dispatched - self.in_flight - sum(self.dropped.values())

    @property
    def balanced(self) -> bool:
        return self.unaccounted == 0

    def merge(self, other: Ledger) -> None:
        self.received += other.received
        self.dispatched += other.dispatched
        self.in_flight += other.in_flight
        self.dropped.update(other.dropped)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "dispatched": self.dispatched,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "in_flight": self.in_flight,
            "unaccounted": self.unaccounted,
            "balanced": self.balanced,
        }


@dataclass(slots=True)
class PipelineStats:
    """Every counter of one run (or of several sources, merged)."""

    records: int = 0
    records_by_type: Counter[str] = field(default_factory=Counter)
    events: int = 0
    events_by_reason: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    lost_serials: int = 0
    duplicates: int = 0
    self_events: int = 0  # events of our own process, left out as osquery leaves out its own
    lines_skipped: int = 0  # non-record lines of a log (blank, comment, ausearch separators)
    publisher: Counter[str] = field(default_factory=Counter)
    table: TableStats = field(default_factory=TableStats)
    ledger: Ledger = field(default_factory=Ledger)
    # filled in by the live reader; None for a replay
    kernel: dict[str, int] | None = None
    transport: Counter[str] = field(default_factory=Counter)

    @property
    def drops(self) -> Counter[str]:
        """Record drops (ledger) and table drops, by reason: the issue's "drops by reason"."""
        out = Counter(self.ledger.dropped)
        out.update({f"table_{k}": v for k, v in self.table.drops.items()})
        return out

    def merge(self, other: PipelineStats) -> None:
        self.records += other.records
        self.records_by_type.update(other.records_by_type)
        self.events += other.events
        self.events_by_reason.update(other.events_by_reason)
        self.rows += other.rows
        self.lost_serials += other.lost_serials
        self.duplicates += other.duplicates
        self.self_events += other.self_events
        self.lines_skipped += other.lines_skipped
        self.publisher.update(other.publisher)
        self.table.merge(other.table)
        self.ledger.merge(other.ledger)
        self.transport.update(other.transport)
        if other.kernel is not None:
            if self.kernel is None:
                self.kernel = {}
            for k, v in other.kernel.items():
                self.kernel[k] = self.kernel.get(k, 0) + v

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "records": self.records,
            "events": self.events,
            "rows": self.rows,
            "rows_by_table": dict(sorted(self.table.rows.items())),
            "drops": dict(sorted(self.drops.items())),
            "lost_serials": self.lost_serials,
            "duplicates": self.duplicates,
            "events_by_reason": dict(sorted(self.events_by_reason.items())),
            "records_by_type": dict(sorted(self.records_by_type.items())),
            "self_events": self.self_events,
            "lines_skipped": self.lines_skipped,
            "publisher": dict(sorted(self.publisher.items())),
            "table": self.table.as_dict(),
            "ledger": self.ledger.as_dict(),
        }
        if self.kernel is not None:
            out["kernel"] = dict(self.kernel)
        if self.transport:
            out["transport"] = dict(sorted(self.transport.items()))
        return out

    def format_text(self) -> str:
        """The ``--stats`` block: one counter per line, zero counters of interest kept."""
        d = self.as_dict()
        lines = [
            f"records       {d['records']}",
            f"events        {d['events']}  {_kv(d['events_by_reason'])}",
            f"rows          {d['rows']}  {_kv(d['rows_by_table'])}",
            f"drops         {sum(d['drops'].values())}  {_kv(d['drops'])}",
            f"skipped       {sum(self.table.skipped.values())}  {_kv(d['table']['skipped'])}",
            f"lost serials  {d['lost_serials']}",
            f"duplicates    {d['duplicates']}",
        ]
        if self.kernel is not None:
            k = self.kernel
            lines.append(
                f"kernel        lost {k.get('lost', 0)}  backlog {k.get('backlog', 0)}"
                f" (max {k.get('backlog_max', 0)})  status polls {k.get('status_polls', 0)}"
            )
            lines.append(f"enobufs       {k.get('enobufs', 0)}")
            if k.get("pid_lost") or k.get("pid_retake_failed"):
                lines.append(
                    f"daemon pid    lost {k.get('pid_lost', 0)}  re-taken {k.get('pid_retaken', 0)}"
                    f"  re-take failed {k.get('pid_retake_failed', 0)}"
                )
            if k.get("kernel_disabled") or k.get("kernel_reenabled") or k.get("kernel_reenable_failed"):
                lines.append(
                    f"audit off     disabled {k.get('kernel_disabled', 0)}  re-enabled {k.get('kernel_reenabled', 0)}"
                    f"  re-enable failed {k.get('kernel_reenable_failed', 0)}"
                )
        led = d["ledger"]
        lines.append(
            f"ledger        received {led['received']} = dispatched {led['dispatched']}"
            f" + dropped {led['dropped']} + in flight at exit {led['in_flight']}"
            + ("" if led["balanced"] else f"  UNACCOUNTED {led['unaccounted']}")
        )
        return "\n".join(lines)


def _kv(d: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items()) if d else ""


# publisher counters that count records it kept out of every event -> ledger drop reason
_PUBLISHER_RECORD_DROPS = {
    "duplicates": "duplicate_syscall",
    "late": "late",
    "single_tail": "single_tail",
    "orphan_eoe": "orphan_eoe",
}


class Pipeline:
    """One stream of records to rows.

    ``emit`` receives the rows of each completed event in one call (empty lists are not
    passed), so a writer can flush once per event. ``uptime`` is the row clock (None for
    replays: rows must not depend on the replaying host). ``exclude_pids``: events whose
    SYSCALL pid or ppid is one of them yield no rows (osquery skips its own process).
    ``stats`` is current after ``snapshot()`` or ``finish()``: the feed path keeps plain counts.
    """

    def __init__(
        self,
        opts: TableOptions,
        emit: Callable[[list[Row]], None] | None = None,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        uptime: Callable[[], int] | None = uptime_seconds,
        exclude_pids: Iterable[int] = (),
        first_eid: int = 1,
        fastlane: bool | None = None,
    ) -> None:
        self.stats = PipelineStats()
        self.tables = Tables(opts, uptime=uptime, first_eid=first_eid, stats=self.stats.table)
        self._emit = emit
        self._exclude = frozenset(str(p) for p in exclude_pids)
        self.publisher = Publisher(timeout_ms=timeout_ms, on_event=self._on_event)
        self._finished = False
        self._parsed = 0
        self._skipped = 0
        self._types: dict[int, int] = {}
        self._parse_drops: Counter[str] = Counter()
        # the native lane (collector.fastlane) for the common event; None: everything in Python.
        # fastlane=None: use it when it can be built (and $KAUDIT_FASTLANE is not 0)
        self._lane: FastLane | None = None
        if fastlane is not False:
            from collector import fastlane as fl

            if fl.module() is not None:
                self._lane = fl.FastLane(self)
            elif fastlane:
                raise RuntimeError(f"the fast lane was asked for but is {fl.status()}")

    # ---- input -------------------------------------------------------------------------

    # The feed methods are the hot path (every record of a replay or a live run passes here):
    # they only bump plain ints and a dict keyed by type number; names, Counters and the ledger
    # are filled in by snapshot()/finish().

    def feed_record(self, record: Record) -> None:
        """A parsed record (counted as received)."""
        self._parsed += 1
        types = self._types
        types[record.type] = types.get(record.type, 0) + 1
        self.publisher.feed(record)

    def feed_netlink(self, msg_type: int, payload: bytes) -> None:
        """A record message from the kernel (type from the netlink header)."""
        try:
            rec = parse_record(msg_type, payload)
        except RecordError as exc:
            self._parse_drops[exc.reason] += 1
            return
        self.feed_record(rec)

    def feed_messages(self, msgs: Iterable) -> None:
        """A batch of netlink record messages (``Reader.drain``'s result).

        Whole events go through the fast lane when there is one; the Python path takes what
        it hands back, message by message, until the lane may go on (``FastLane.may_resume``).
        """
        lane = self._lane
        if lane is None:
            self._feed_messages(msgs)
            return
        batch = msgs if isinstance(msgs, list) else list(msgs)
        i, n = 0, len(batch)
        ready, may_resume, counters = lane.ready, lane.may_resume, self.publisher.counters
        while i < n:
            if ready():
                i, _bailed = lane.scan_messages(batch, i)
            done = counters["events"]
            while i < n:
                self._feed_messages(batch[i : i + 1])
                i += 1
                if may_resume(done):
                    break

    def _feed_messages(self, msgs: Iterable) -> None:
        parse, feed, types = parse_record, self.publisher.feed, self._types
        n = 0
        try:
            for msg in msgs:
                try:
                    rec = parse(msg.type, msg.payload)
                except RecordError as exc:
                    self._parse_drops[exc.reason] += 1
                    continue
                n += 1
                t = rec.type
                types[t] = types.get(t, 0) + 1
                feed(rec)
        finally:
            self._parsed += n

    def feed_stream(self, stream: IO[bytes], chunk: int = 1 << 20) -> None:
        """An audit.log / ``ausearch --format raw`` byte stream, read in ``chunk``-byte pieces.

        The same records and rows as ``feed_lines(stream)``; whole events go through the fast
        lane when there is one.
        """
        if self._lane is None:
            self.feed_lines(stream)
            return
        rest = b""
        while True:
            data = stream.read(chunk)
            if not data:
                break
            buf = rest + data if rest else data
            rest = buf[self._feed_buffer(buf) :]
        if rest:  # whole lines of an event without its end, and perhaps a last partial line
            self.feed_lines(io.BytesIO(rest))

    def _feed_buffer(self, buf: bytes) -> int:
        """Feed the whole lines of ``buf``; return where the unused tail (a partial line, or a
        partial event the lane waits to see whole) starts."""
        lane = self._lane
        assert lane is not None
        ready, may_resume, counters = lane.ready, lane.may_resume, self.publisher.counters
        feed_lines = self.feed_lines
        pos, n = 0, len(buf)
        while pos < n:
            if ready():
                pos, bailed = lane.scan_text(buf, pos)
                if not bailed:
                    return pos  # the rest is not a whole event yet
            # the Python path, line by line, until the lane may go on
            done = counters["events"]
            while True:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    return pos
                feed_lines((buf[pos : nl + 1],))
                pos = nl + 1
                if may_resume(done):
                    break
        return pos

    def feed_line(self, line: bytes | str) -> None:
        """One line of an audit.log / ``ausearch --format raw`` file."""
        self.feed_lines((line,))

    def feed_lines(self, lines: Iterable[bytes | str]) -> None:
        """Lines of an audit.log / ``ausearch --format raw`` file (non-record lines are skipped)."""
        parse, feed, types = parse_log_line, self.publisher.feed, self._types
        n = skipped = 0
        try:
            for line in lines:
                try:
                    rec = parse(line)
                except RecordError as exc:
                    self._parse_drops[exc.reason] += 1
                    continue
                if rec is None:
                    skipped += 1
                    continue
                n += 1
                t = rec.type
                types[t] = types.get(t, 0) + 1
                feed(rec)
        finally:
            self._parsed += n
            self._skipped += skipped

    # ---- clock and end -----------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Advance the publisher's audit clock (live: wall time), completing timed-out events."""
        self.publisher.tick(now_ms)

    def finish(self) -> PipelineStats:
        """Flush open events (their records count as in flight at exit) and close the books."""
        if not self._finished:
            self._finished = True
            self.publisher.flush()
            self._sync_publisher_counters()
        return self.stats

    def snapshot(self) -> PipelineStats:
        """The counters so far (publisher counters copied in), without flushing."""
        self._sync_publisher_counters()
        return self.stats

    def _sync_publisher_counters(self) -> None:
        st = self.stats
        drops = sum(self._parse_drops.values())
        st.records = st.ledger.received = self._parsed + drops
        st.lines_skipped = self._skipped
        st.records_by_type = Counter({record_type_name(t): n for t, n in self._types.items()})
        for k, v in self._parse_drops.items():
            st.ledger.dropped[k] = v
        counters = self.publisher.counters
        st.publisher = Counter(counters)
        st.lost_serials = counters.get("lost", 0)
        st.duplicates = counters.get("duplicates", 0)
        # records the publisher kept out of every event (each counted once, by kind)
        for key, reason in _PUBLISHER_RECORD_DROPS.items():
            value = counters.get(key, 0)
            if value:
                st.ledger.dropped[reason] = value

    # ---- events ------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        st = self.stats
        st.events += 1
        st.events_by_reason[event.reason] += 1
        n = len(event.records) + (event.reason == "eoe")  # the EOE that completed it
        if event.reason == "flush":
            st.ledger.in_flight += n
        else:
            st.ledger.dispatched += n
        if self._exclude and self._is_self(event):
            st.self_events += 1
            return
        rows = self.tables.rows_for(event)
        if rows:
            st.rows += len(rows)
            if self._emit is not None:
                self._emit(rows)

    def _is_self(self, event: Event) -> bool:
        rec = event.first(AUDIT_SYSCALL)
        if rec is None:
            return False
        try:
            return rec.get("pid") in self._exclude or rec.get("ppid") in self._exclude
        except RecordError:
            return False


def report_stats(stats: PipelineStats, *, text: bool, json_path: str | None) -> None:
    """``--stats`` (the ledger as text on stderr) and ``--stats-json FILE``, the same for
    collect and replay."""
    import json
    import sys

    if text:
        print(stats.format_text(), file=sys.stderr)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(stats.as_dict(), f, indent=1, sort_keys=True)
            f.write("\n")
