"""``kaudit collect``: configure the kernel, read audit records live, write rows as they complete.

``kaudit collect [--endpoint kernel|unix:PATH] [--duration S] [--output FILE] [--stats] [flags]``

The run, in order (docs/collector.md has the whole story):

1. take the live lock (``/tmp/kaudit-live.lock``) when it will change the real kernel, so that
   two runs, or a run and a test suite, never configure the same kernel at once;
2. configure (``collector.config``): status, stale-rule cleanup, daemon pid, backlog,
   failure mode, enable, the tables' rules. Immutable or refused: read the multicast copy;
3. read and push every record through ``collector.pipeline``; the rows of the events a batch
   of records completed are written, and flushed, together once the batch is done. The socket
   is drained by ``collector.receiver`` (``--receiver process``, the default: a forked process
   that does nothing else, so a storm waits in our memory instead of overflowing the kernel's
   backlog; ``thread``; or ``off``: this loop reads the socket itself, ``collector.reader``);
4. on the end of ``--duration``, SIGINT, SIGTERM or SIGHUP (or, with ``--exit-with-parent``,
   the death of the process that started us): delete our rules, read what the kernel had
   already queued, restore everything else, process what the receiver had taken from the
   kernel but we had not yet (at most ``BACKLOG_MAX`` s; a second signal cuts it short),
   complete the events still open, print ``--stats``.

Signals only set a flag; the loop looks at it at least every ``POLL_SECONDS``. So a signal never
lands in the middle of a kernel request, and the restore runs to its end once started.

Exit codes: 0 after ``--duration`` (or the endpoint closing, or the parent's end), 128+N after
signal N (130 for SIGINT, 143 for SIGTERM), 1 if restoring the kernel's state failed, 2 for a
usage or environment problem (unknown flag, kernel audit unreachable, configuration refused).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from collector.config import ConfigError, KernelConfig, UnsafeSetting, default_state_path
from collector.flags import AuditFlags, add_flag_arguments
from collector.pipeline import DEFAULT_TIMEOUT_MS, Pipeline, PipelineStats, report_stats
from collector.reader import Reader
from collector.rows import RowWriter
from collector.tables import uptime_seconds

__all__ = ["COLLECT_DEFAULTS", "RECEIVER_CHOICES", "Collector", "register", "run"]

EXIT_OK, EXIT_RESTORE_FAILED, EXIT_USAGE = 0, 1, 2
# collect configures the kernel and shows both tables unless a flag says otherwise
COLLECT_DEFAULTS = AuditFlags(allow_config=True, allow_sockets=True, allow_process_events=True)
POLL_SECONDS = 0.2  # longest wait inside the loop: bounds how late a signal is noticed
WIND_DOWN_QUIET = 0.2  # after our rules are gone: stop once the socket was quiet this long
WIND_DOWN_MAX = 1.0  # ... or after this long at most
BACKLOG_MAX = 60.0  # after the restore: longest time spent on records the receiver still holds
RECEIVER_CHOICES = ("process", "thread", "off")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _warn(msg: str) -> None:
    print(f"kaudit collect: warning: {msg}", file=sys.stderr)


def _info(msg: str) -> None:
    print(f"kaudit collect: {msg}", file=sys.stderr)


class _StopFlag:
    """Set by the signal handlers (or the duration); read by the loop.

    ``parent``: the pid that started us, when we must not outlive it (``--exit-with-parent``):
    reading the flag then also looks at ``getppid()``. A parent that is SIGKILLed cannot stop
    us, and a collector left running keeps the kernel configured, so we stop (and restore)
    as soon as we are re-parented.
    """

    __slots__ = ("signum", "reason", "parent", "signals")

    def __init__(self, parent: int | None = None) -> None:
        self.signum: int | None = None
        self.reason = ""
        self.parent = parent
        self.signals = 0  # how many stop signals came (a second one cuts the backlog short)

    def __bool__(self) -> bool:
        if not self.reason and self.parent is not None and os.getppid() != self.parent:
            self.reason = f"parent process {self.parent} exited"
            _info(f"{self.reason}: stopping")
        return bool(self.reason)

    def handler(self, signum: int, _frame: object) -> None:
        self.signals += 1
        if self.signum is None:
            self.signum = signum
            self.reason = signal.Signals(signum).name
        else:
            # a second signal while winding down: say why we are not gone yet
            os.write(2, b"kaudit collect: restoring the kernel's audit state, one moment\n")


@contextlib.contextmanager
def _signals(stop: _StopFlag) -> Iterator[None]:
    old = {}
    for s in _STOP_SIGNALS:
        try:
            old[s] = signal.signal(s, stop.handler)
        except ValueError:  # not the main thread (tests calling run() from a thread)
            pass
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _live_lock(path: str, timeout: float, stop: _StopFlag | None = None) -> Iterator[None]:
    """The exclusive flock every change of the real kernel's audit state holds.

    Taken through ``collector.transport.live_lock`` (re-entrant within the process: a test
    fixture holding it already is not waited for), in short tries so that a signal while
    waiting ends the wait: the caller then sees ``stop`` and changes nothing, without the lock.
    """
    from collector.transport import live_lock, live_lock_held

    with contextlib.ExitStack() as held:
        if live_lock_held():
            held.enter_context(live_lock(path))
        else:
            deadline = time.monotonic() + timeout
            said = False
            while True:
                step = min(POLL_SECONDS, max(0.0, deadline - time.monotonic()))
                try:
                    held.enter_context(live_lock(path, timeout=step))
                    break
                except TimeoutError:
                    if stop:
                        break  # a signal while waiting: nothing will be changed, no lock needed
                    if time.monotonic() >= deadline:
                        raise TimeoutError(
                            f"another process holds the live lock {path} (waited {timeout:g} s); "
                            "it is configuring this kernel's audit"
                        ) from None
                    if not said:
                        _info(f"waiting for the live lock {path} (another process is changing audit state)")
                        said = True
        yield


class _RowBatch:
    """The stream RowWriter writes into: rows wait here and go out in one write and one flush
    per batch of records.

    Why: a flush is a write(2) per event; in a connect storm (one event per 4 records) that
    was 16% of the consumer's CPU. A batch is what one receive returned (at most a few
    thousand records, tens of milliseconds of work), so rows still appear promptly, and a
    batch's rows are written in one piece: ``tail -f`` never sees half a row.
    """

    __slots__ = ("_fp", "_parts")

    def __init__(self, fp: IO[str]) -> None:
        self._fp = fp
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        """RowWriter flushes after every event: nothing to do until the batch ends."""

    def commit(self) -> None:
        """Write and flush the rows of the batch."""
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            self._fp.write(text)
            self._fp.flush()


class Collector:
    """One ``collect`` run, kept as an object so tests can drive it against the simulator."""

    def __init__(
        self,
        endpoint: str,
        flags: AuditFlags,
        out: IO[str],
        *,
        duration: float | None = None,
        status_interval: float = 5.0,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        state_path: str | None = None,
        transport_factory=None,
        exclude_pids: Iterable[int] | None = None,
        on_ready: Callable[[Collector], None] | None = None,
        parent_pid: int | None = None,
        receiver: str = "off",
    ) -> None:
        """``exclude_pids``: events of these pids (SYSCALL pid or ppid) give no rows. Default:
        our own pid on the real kernel (osquery leaves out its own syscalls) and none on an
        endpoint, whose records come from elsewhere (a replayed pid that happens to equal ours
        must keep its rows). ``on_ready`` is called, and ``ready`` set, once the kernel is
        configured and the first status reply has been read (or status polling was refused):
        from then on every record the kernel makes reaches the pipeline. ``parent_pid``: stop
        when that process is no longer our parent (see _StopFlag). ``receiver``: ``process`` or
        ``thread`` drains every transport ``transport_factory`` opens through
        ``collector.receiver`` (``kaudit collect``'s default is ``process``); ``off`` (the
        default here, for in-process users that wrap the transport's own receive path) reads
        the transports directly."""
        self.endpoint = endpoint
        self.flags = flags
        self._rows = _RowBatch(out)
        self.writer = RowWriter(self._rows)
        self.duration = duration
        self.status_interval = status_interval
        self.timeout_ms = timeout_ms
        self.state_path = state_path
        if transport_factory is None:
            from collector.transport import open_transport

            transport_factory = open_transport
        if receiver not in RECEIVER_CHOICES:
            raise ValueError(f"receiver {receiver!r}: expected one of {', '.join(RECEIVER_CHOICES)}")
        self.receiver = receiver
        if receiver != "off":
            from collector.receiver import receiver_transport_factory

            transport_factory = receiver_transport_factory(transport_factory, mode=receiver, warn=_warn)
        self._open = transport_factory
        if exclude_pids is None:
            exclude_pids = (os.getpid(),) if endpoint == "kernel" else ()
        self.exclude_pids = frozenset(exclude_pids)
        self.ready = threading.Event()
        self._on_ready = on_ready
        self.stop = _StopFlag(parent_pid)
        self.config: KernelConfig | None = None
        self.pipeline: Pipeline | None = None
        self.reader: Reader | None = None
        self.restore_errors: list[str] = []

    def run(self) -> PipelineStats:
        """Configure, read until stopped, restore. Raises ConfigError/TransportError on setup."""
        control = self._open(self.endpoint)
        data = control
        wound_down = False
        try:
            cfg = self.config = KernelConfig(control, self.flags, warn=_warn, state_path=self.state_path)
            outcome = cfg.configure()
            self._report_config(outcome)
            try:
                if outcome.mode == "multicast":
                    data = self._open(self.endpoint, multicast=True)
                # read-only never registers, not even to take back a pid it never held
                registered = None if outcome.read_only else outcome.registered_pid
                ours = self.flags.allow_config and not outcome.read_only
                self.reader = Reader(
                    data,
                    pid=registered,
                    persist=self.flags.persist,
                    retake=cfg.retake_pid if registered is not None else None,
                    reenable=(lambda: cfg.set_status("enabled", 1)) if ours else None,
                    status_interval=self.status_interval,
                    warn=_warn,
                )
                self.pipeline = Pipeline(
                    self.flags.table_options(),
                    self.writer.write,
                    timeout_ms=self.timeout_ms,
                    uptime=uptime_seconds,
                    exclude_pids=self.exclude_pids,
                )
                self._loop()
                # no new events from here on; what the kernel queued is still read
                report = cfg.remove_added_rules()
                self.restore_errors.extend(report.errors)
                self._wind_down()
                wound_down = True
            finally:
                if self.reader is not None:
                    self.reader.stop_polling()  # nothing may register us again from here on
                report = cfg.restore()
                self.restore_errors.extend(report.errors)
                self._report_restore(report)
            if wound_down:
                self._take_backlog()
        finally:
            self._rows.commit()
            if data is not control:
                data.close()
            control.close()
        return self.stats()

    def stats(self) -> PipelineStats:
        if self.pipeline is None:
            return PipelineStats()
        st = self.pipeline.finish()
        self._rows.commit()
        if self.reader is not None:
            kernel = self.reader.counters.as_dict()
            kernel["enobufs"] = max(kernel["enobufs"], self.reader.transport.counters.get("enobufs", 0))
            st.kernel = kernel
            st.transport = self.reader.transport.counters.copy()
        return st

    # ---- the loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        reader, pipeline, stop = self.reader, self.pipeline, self.stop
        assert reader is not None and pipeline is not None
        deadline = None if self.duration is None else time.monotonic() + self.duration
        last_mono = time.monotonic()
        last_audit = pipeline.publisher.clock_ms
        feed = pipeline.feed_messages
        commit = self._rows.commit
        while not stop:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                stop.reason = "duration"
                break
            wait = POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - now))
            try:
                batch = reader.drain(wait)
            except ConnectionError as exc:
                _warn(str(exc))
                stop.reason = "endpoint closed"
                break
            if batch:
                feed(batch)
                commit()
                last_mono = time.monotonic()
                last_audit = pipeline.publisher.clock_ms
            elif last_audit >= 0:
                # quiet: audit time moved on at least as far as wall time did
                pipeline.tick(last_audit + int((time.monotonic() - last_mono) * 1000))
                commit()
            if not self.ready.is_set() and (reader.counters.status_polls or not reader.polling):
                self._set_ready()

    def _set_ready(self) -> None:
        self.ready.set()
        if self._on_ready is not None:
            try:
                self._on_ready(self)
            except Exception as exc:  # noqa: BLE001 - a hook's bug must not stop the collector
                _warn(f"on_ready hook failed: {exc}")

    def _wind_down(self) -> None:
        end = time.monotonic() + WIND_DOWN_MAX
        while time.monotonic() < end and self._feed_one_batch(WIND_DOWN_QUIET):
            pass

    def _feed_one_batch(self, timeout: float) -> bool:
        """Read one batch (waiting up to ``timeout``) and make its rows; False when the socket
        was quiet or closed."""
        assert self.reader is not None and self.pipeline is not None
        try:
            batch = self.reader.drain(timeout)
        except ConnectionError:
            return False
        if not batch:
            return False
        self.pipeline.feed_messages(batch)
        self._rows.commit()
        return True

    def _take_backlog(self) -> None:
        """After the restore: the records the receiver took from the kernel that we have not
        processed yet (a storm's worth can wait in the drainer's memory).

        The kernel is already put back, so this may take a while without harm; it is bounded
        by BACKLOG_MAX and cut short by a second signal. What is left is counted
        (``receiver_discarded``) when the transport closes.
        """
        assert self.reader is not None
        stop_receiver = getattr(self.reader.transport, "stop_receiver", None)
        if stop_receiver is None:
            return
        stop_receiver()  # the drainer hands over everything, then the socket is read directly
        end = time.monotonic() + BACKLOG_MAX
        while True:
            if self.stop.signals >= 2 or time.monotonic() >= end:
                _warn("stopped before processing every record the receiver had taken from the kernel "
                      "(receiver_discarded in --stats-json counts them)")
                return
            if not self._feed_one_batch(0):
                return

    # ---- reporting ---------------------------------------------------------------------

    def _report_config(self, outcome) -> None:
        if outcome.read_only:
            return  # the warning said it all
        parts = [f"{k} {a}->{b}" for k, (a, b) in outcome.status_changed.items()]
        if outcome.registered_pid is not None:
            parts.append(f"daemon pid {outcome.registered_pid}")
        if outcome.reconfigure_deleted:
            parts.append(f"{len(outcome.reconfigure_deleted)} rule(s) deleted (force reconfigure)")
        for text in outcome.added:
            parts.append(f"rule {text}")
        _info("configured: " + ("; ".join(parts) if parts else "nothing to change"))

    def _report_restore(self, report) -> None:
        for note in report.notes:
            _info(f"restore: {note}")
        for err in report.errors:
            _warn(f"restore failed: {err}")
        if report.done and report.ok:
            _info(f"restored the audit state found at start ({len(report.done)} change(s) undone)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="configure kernel audit, read it live, write socket_events/process_events rows",
        description=(
            "Configure the kernel's audit for osquery's socket_events and process_events tables, "
            "read records live and write rows as JSON lines as events complete. The state found at "
            "start is restored on exit (duration end, SIGINT, SIGTERM, SIGHUP, an error)."
        ),
        allow_abbrev=False,
    )
    p.add_argument(
        "--endpoint",
        default="kernel",
        metavar="ENDPOINT",
        help="'kernel' (the real NETLINK_AUDIT socket, the default) or unix:PATH (a kaudit simulate endpoint)",
    )
    p.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: run until a signal)"
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write rows here (default: standard output)")
    p.add_argument(
        "--receiver",
        choices=RECEIVER_CHOICES,
        default="process",
        help="who drains the audit socket: 'process' (default), a forked process that does nothing "
        "else, so that a syscall storm waits in our memory instead of overflowing the kernel's backlog; "
        "'thread'; 'off': the collecting loop reads the socket itself (docs/performance.md)",
    )
    p.add_argument(
        "--stats", action="store_true", help="print the counters and the record ledger on stderr at exit"
    )
    p.add_argument("--stats-json", metavar="FILE", help="write the counters as JSON to FILE at exit")
    p.add_argument(
        "--status-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="poll the kernel's lost/backlog counters and daemon pid every S seconds (default 5)",
    )
    p.add_argument(
        "--timeout-ms",
        type=int,
        default=DEFAULT_TIMEOUT_MS,
        metavar="MS",
        help=f"complete an event without EOE after this much audit time (default {DEFAULT_TIMEOUT_MS})",
    )
    p.add_argument(
        "--state-file",
        metavar="PATH",
        help="where to keep the state to restore if this run is killed "
        "(default for the kernel: /run/kaudit/collect-kernel.json; 'none' keeps none)",
    )
    p.add_argument(
        "--lock",
        default="/tmp/kaudit-live.lock",
        metavar="PATH",
        help="exclusive lock held while the real kernel's audit state is changed (default %(default)s)",
    )
    p.add_argument(
        "--no-lock",
        action="store_true",
        help="do not take the lock (the caller holds it, e.g. a test fixture running this command)",
    )
    p.add_argument(
        "--exit-with-parent",
        nargs="?",
        type=int,
        const=0,
        default=None,
        metavar="PID",
        help="stop (restoring the kernel's audit state) as soon as our parent process has exited, even "
        "by SIGKILL; with PID: as soon as PID is no longer our parent (kaudit verify passes its own pid, "
        "so a verify killed while this command starts is noticed too)",
    )
    p.add_argument("--lock-timeout", type=float, default=120.0, metavar="S", help=argparse.SUPPRESS)
    add_flag_arguments(p, COLLECT_DEFAULTS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collector.transport import TransportError

    parent_pid: int | None = getattr(args, "exit_with_parent", None)
    if parent_pid == 0:
        parent_pid = os.getppid()
    elif parent_pid is not None and parent_pid < 0:
        print(f"kaudit collect: --exit-with-parent {parent_pid}: expected a process id", file=sys.stderr)
        return EXIT_USAGE

    flags: AuditFlags = args.audit_flags
    if args.endpoint != "kernel" and not (args.endpoint.startswith("unix:") and len(args.endpoint) > 5):
        print(
            f"kaudit collect: --endpoint {args.endpoint!r}: expected 'kernel' or 'unix:PATH'", file=sys.stderr
        )
        return EXIT_USAGE
    if args.duration is not None and args.duration < 0:
        print("kaudit collect: --duration must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    if args.state_file == "none":
        state_path = None
    elif args.state_file:
        state_path = args.state_file
    else:
        state_path = default_state_path(args.endpoint) if flags.allow_config else None
    out: IO[str]
    if args.output and args.output != "-":
        try:
            out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            print(f"kaudit collect: --output {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        out = sys.stdout
    collector = Collector(
        args.endpoint,
        flags,
        out,
        duration=args.duration,
        status_interval=args.status_interval,
        timeout_ms=args.timeout_ms,
        state_path=state_path,
        parent_pid=parent_pid,
        receiver=getattr(args, "receiver", "process"),
    )
    locking = args.endpoint == "kernel" and flags.allow_config and not args.no_lock
    try:
        with (
            _signals(collector.stop),
            _live_lock(args.lock, args.lock_timeout, collector.stop) if locking else contextlib.nullcontext(),
        ):
            if collector.stop:  # a signal (or our parent's end) before we began: nothing was changed
                return EXIT_OK if collector.stop.signum is None else 128 + collector.stop.signum
            stats = collector.run()
    except TimeoutError as exc:
        print(f"kaudit collect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, UnsafeSetting, TransportError) as exc:
        print(f"kaudit collect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if out is not sys.stdout:
            out.close()
    report_stats(stats, text=args.stats, json_path=args.stats_json)
    if collector.restore_errors:
        return EXIT_RESTORE_FAILED
    if collector.stop.signum is not None:
        return 128 + collector.stop.signum
    return EXIT_OK
