"""``kaudit collect``: configure the kernel, read audit records live, write rows as they complete.

``kaudit collect [--endpoint kernel|unix:PATH] [--duration S] [--output FILE] [--stats] [flags]``

The run, in order (docs/collector.md has the whole story):

1. take the live lock (``/tmp/kaudit-live.lock``) when it will change the real kernel, so that
   two runs, or a run and a test suite, never configure the same kernel at once;
2. configure (``collector.config``): status, stale-rule cleanup, daemon pid, backlog,
   failure mode, enable, the tables' rules. Immutable or refused: read the multicast copy;
3. read (``collector.reader``) and push every record through ``collector.pipeline``; the rows
   of each event are written (and flushed) as the event completes;
4. on the end of ``--duration``, SIGINT, SIGTERM or SIGHUP: delete our rules, read what the
   kernel had already queued, restore everything else, complete the events still open,
   print ``--stats``.

Signals only set a flag; the loop looks at it at least every ``POLL_SECONDS``. So a signal never
lands in the middle of a kernel request, and the restore runs to its end once started.

Exit codes: 0 after ``--duration`` (or the endpoint closing), 128+N after signal N (130 for
SIGINT, 143 for SIGTERM), 1 if restoring the kernel's state failed, 2 for a usage or
environment problem (unknown flag, kernel audit unreachable, configuration refused).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import IO

from collector.config import ConfigError, KernelConfig, UnsafeSetting, default_state_path
from collector.flags import AuditFlags, add_flag_arguments
from collector.pipeline import DEFAULT_TIMEOUT_MS, Pipeline, PipelineStats
from collector.reader import Reader
from collector.rows import RowWriter
from collector.tables import uptime_seconds

__all__ = ["COLLECT_DEFAULTS", "Collector", "register", "run"]

EXIT_OK, EXIT_RESTORE_FAILED, EXIT_USAGE = 0, 1, 2
# collect configures the kernel and shows both tables unless a flag says otherwise
COLLECT_DEFAULTS = AuditFlags(allow_config=True, allow_sockets=True, allow_process_events=True)
POLL_SECONDS = 0.2  # longest wait inside the loop: bounds how late a signal is noticed
WIND_DOWN_QUIET = 0.2  # after our rules are gone: stop once the socket was quiet this long
WIND_DOWN_MAX = 1.0  # ... or after this long at most
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _warn(msg: str) -> None:
    print(f"kaudit collect: warning: {msg}", file=sys.stderr)


def _info(msg: str) -> None:
    print(f"kaudit collect: {msg}", file=sys.stderr)


class _StopFlag:
    """Set by the signal handlers (or the duration); read by the loop."""

    __slots__ = ("signum", "reason")

    def __init__(self) -> None:
        self.signum: int | None = None
        self.reason = ""

    def __bool__(self) -> bool:
        return bool(self.reason)

    def handler(self, signum: int, _frame: object) -> None:
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
    """The exclusive flock every change of the real kernel's audit state holds (re-entrant
    within the process, through collector.transport.live_lock)."""
    from collector.transport import live_lock

    probe = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout
        said = False
        while True:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(probe, fcntl.LOCK_UN)
                break
            except BlockingIOError:
                from collector import transport

                if transport._lock_state["depth"]:  # noqa: SLF001 - held by this process already
                    break
                if stop:
                    break  # a signal while waiting: the caller sees the flag and changes nothing
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"another process holds the live lock {path} (waited {timeout:g} s); "
                        "it is configuring this kernel's audit"
                    ) from None
                if not said:
                    _info(f"waiting for the live lock {path} (another process is changing audit state)")
                    said = True
                time.sleep(0.2)
    finally:
        os.close(probe)
    with live_lock(path):
        yield


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
    ) -> None:
        self.endpoint = endpoint
        self.flags = flags
        self.writer = RowWriter(out)
        self.duration = duration
        self.status_interval = status_interval
        self.timeout_ms = timeout_ms
        self.state_path = state_path
        if transport_factory is None:
            from collector.transport import open_transport

            transport_factory = open_transport
        self._open = transport_factory
        self.stop = _StopFlag()
        self.config: KernelConfig | None = None
        self.pipeline: Pipeline | None = None
        self.reader: Reader | None = None
        self.restore_errors: list[str] = []

    def run(self) -> PipelineStats:
        """Configure, read until stopped, restore. Raises ConfigError/TransportError on setup."""
        control = self._open(self.endpoint)
        data = control
        try:
            cfg = self.config = KernelConfig(control, self.flags, warn=_warn, state_path=self.state_path)
            outcome = cfg.configure()
            self._report_config(outcome)
            try:
                if outcome.mode == "multicast":
                    data = self._open(self.endpoint, multicast=True)
                registered = outcome.registered_pid
                self.reader = Reader(
                    data,
                    pid=registered,
                    persist=self.flags.persist,
                    retake=cfg.retake_pid if registered is not None else None,
                    status_interval=self.status_interval,
                    warn=_warn,
                )
                self.pipeline = Pipeline(
                    self.flags.table_options(),
                    self.writer.write,
                    timeout_ms=self.timeout_ms,
                    uptime=uptime_seconds,
                    exclude_pids=(os.getpid(),),
                )
                self._loop()
                # no new events from here on; what the kernel queued is still read
                report = cfg.remove_added_rules()
                self.restore_errors.extend(report.errors)
                self._wind_down()
            finally:
                report = cfg.restore()
                self.restore_errors.extend(report.errors)
                self._report_restore(report)
        finally:
            if data is not control:
                data.close()
            control.close()
        return self.stats()

    def stats(self) -> PipelineStats:
        if self.pipeline is None:
            return PipelineStats()
        st = self.pipeline.finish()
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
                last_mono = time.monotonic()
                last_audit = pipeline.publisher.clock_ms
            elif last_audit >= 0:
                # quiet: audit time moved on at least as far as wall time did
                pipeline.tick(last_audit + int((time.monotonic() - last_mono) * 1000))

    def _wind_down(self) -> None:
        reader, pipeline = self.reader, self.pipeline
        assert reader is not None and pipeline is not None
        end = time.monotonic() + WIND_DOWN_MAX
        while time.monotonic() < end:
            try:
                batch = reader.drain(WIND_DOWN_QUIET)
            except ConnectionError:
                return
            if not batch:
                return
            pipeline.feed_messages(batch)

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
    p.add_argument("--lock-timeout", type=float, default=120.0, metavar="S", help=argparse.SUPPRESS)
    add_flag_arguments(p, COLLECT_DEFAULTS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collector.transport import TransportError

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
    )
    locking = args.endpoint == "kernel" and flags.allow_config and not args.no_lock
    try:
        with (
            _signals(collector.stop),
            _live_lock(args.lock, args.lock_timeout, collector.stop) if locking else contextlib.nullcontext(),
        ):
            if collector.stop:  # a signal while waiting for the lock: nothing was changed
                return 128 + (collector.stop.signum or 0)
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
    if args.stats:
        print(stats.format_text(), file=sys.stderr)
    if args.stats_json:
        with open(args.stats_json, "w", encoding="utf-8") as f:
            json.dump(stats.as_dict(), f, indent=1, sort_keys=True)
            f.write("\n")
    if collector.restore_errors:
        return EXIT_RESTORE_FAILED
    if collector.stop.signum is not None:
        return 128 + collector.stop.signum
    return EXIT_OK
