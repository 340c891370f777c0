"""Serve a scenario through the simulator endpoint into the full collector, with its faults.

One run = a fresh kernel model (simulator/kernel.py) in the scenario's initial state, served
by an :class:`~simulator.endpoint.EndpointServer` on a private unix socket, and the collector
(configuration, reader, pipeline: the same code ``kaudit collect`` runs against the real
kernel) connected to it over ``unix:PATH``, in a thread of this process. The scenario's
messages go through the kernel model, so the model decides who receives a record (the
registered daemon in the unicast short form, multicast readers with the true length) just
as the kernel would; faults are injected on top of the model's and the endpoint's public
API (docs/internals.md, "Faults"): ``AuditKernel.refuse``, ``phantom_daemon``,
``lose_records``, ``emit_record`` (which makes nothing while audit is off), and
``EndpointServer.inject_error`` / ``send_datagram`` / ``pending_bytes``.

The same :class:`Feeder` serves a scenario to a collector this module does not run:
:func:`attach_scenario` (``kaudit simulate --listen unix:PATH SCENARIO``) loads the scenario's
kernel state into a served model and replays its messages once some client has registered as
the audit daemon or joined the multicast group, because only then would a kernel deliver them.

Determinism: records keep their recorded ``audit(...)`` stamps (rows carry the audit time),
but their *serials* are shifted onto the model's own serial line, so that the records the
model writes itself (CONFIG_CHANGE while the collector configures it, or a fault) and the
replayed ones form one gap-free sequence, as on a live kernel. Gaps the scenario has (or a
``drop`` fault makes) are kept, so ``lost_serials`` means what it means live.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import io
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.protocol import netlink as nl
from collector.protocol.records import AUDIT_SET, record_type_number
from collector.protocol.status import STATUS_FIELDS, AuditStatus

from .check import RunResult
from .scenario import Fault, KernelState, Message, Scenario, ScenarioError

__all__ = [
    "CollectorRun",
    "Feeder",
    "ScenarioFeed",
    "attach_scenario",
    "build_kernel",
    "flatten_counters",
    "kernel_snapshot",
    "reader_clients",
    "run_scenario",
    "scenario_flags",
]

_STAMP_RE = re.compile(rb"^audit\((\d+)\.(\d+):(\d+)\)")
_STATUS_MASK_ENABLED = 0x1


# --------------------------------------------------------------------------- kernel


def build_kernel(state: KernelState, *, path: str = "<scenario>", kernel: Any = None) -> Any:
    """An AuditKernel in the scenario's initial state (status, rules, immutable, refusals).

    ``kernel``: load the state into this model instead of a new one (one already served by an
    endpoint; its other state, e.g. from ``--from-kernel``, stays). ``refuse`` goes to the
    model's own hook (``AuditKernel.refuse``): the listed request types are answered with the
    errno after the permission checks, as an LSM refuses them.
    """
    from collector.protocol.auditctl import parse_rule
    from simulator.kernel import AuditKernel

    if kernel is None:
        kernel = AuditKernel()
    status = dict(state.status)
    if state.immutable:
        status["enabled"] = 2
    payloads = []
    for i, text in enumerate(state.rules):
        try:
            payloads.append(parse_rule(text).encode())
        except Exception as exc:  # noqa: BLE001
            raise ScenarioError(path, None, f"kernel.rules[{i}] {text!r}: {exc}") from None
    locked = status.get("enabled") == 2
    if locked:
        status["enabled"] = 1  # load the rules first: a locked kernel refuses them
    try:
        kernel.load(status=status or None, rules=payloads)
    except ValueError as exc:
        raise ScenarioError(path, None, f"kernel: {exc}") from None
    if locked:
        kernel.enabled = 2
    for name, err in state.refuse.items():
        if err:  # 0 would answer "done" without doing it
            kernel.refuse[record_type_number(name)] = abs(err)
    return kernel


def kernel_snapshot(kernel: Any) -> dict[str, Any]:
    """The model's status (every AUDIT_GET field by name) and rules (auditctl -l text, or hex
    payloads when a rule does not format), as RunResult.kernel and WrapResult.kernel report
    it. Call inside ``server.call`` while the model is served."""
    st = kernel.status()
    rules: list[str] = []
    try:
        from collector.protocol.auditctl import format_rule

        rules = [format_rule(r) for r in kernel.rule_objects()]
    except Exception:  # noqa: BLE001 - rules are informative; status is what scenarios check
        rules = [p.hex() for p in kernel.rule_payloads()]
    return {"status": {n: getattr(st, n) for n in STATUS_FIELDS if n != "mask"}, "rules": rules}


# --------------------------------------------------------------------------- collector


@dataclass(slots=True)
class CollectorRun:
    """The collector under test: ``kaudit collect``'s own :class:`Collector`, in a thread,
    against ``endpoint`` ("unix:PATH" or "kernel").

    ``tap`` sees every transport the collector opens (the recorder wraps their receive
    path). ``ready`` is set once the collector has configured the kernel and read its first
    status (its baseline for the kernel's lost counter): the Collector's own ready hook.
    ``exclude_pids``: None leaves out our own pid on the real kernel only; a replay's recorded
    pids have nothing to do with this process (one equal to ours must keep its rows). Rows
    come back as dicts, counters flattened (:func:`flatten_counters`).
    """

    endpoint: str
    flags: Any  # list of flag strings (a scenario's) or AuditFlags
    status_interval: float = 0.2
    tap: Callable[[Any], None] | None = None
    state_path: Any = None
    exclude_pids: Any = None  # Iterable[int] | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    warnings: list[str] = field(default_factory=list)
    collector: Any = None  # collector.commands.collect.Collector
    _out: io.StringIO = field(default_factory=io.StringIO)

    def start(self) -> CollectorRun:
        from collector.commands.collect import Collector
        from collector.transport import open_transport

        flags = self.flags if not isinstance(self.flags, list) else scenario_flags(self.flags)
        tap = self.tap

        def factory(endpoint: str, **kw: Any) -> Any:
            t = open_transport(endpoint, **kw)
            if tap is not None:
                tap(t)
            return t

        exclude = self.exclude_pids
        if exclude is None and self.endpoint != "kernel":
            exclude = ()
        self.collector = Collector(
            self.endpoint, flags, self._out, status_interval=self.status_interval,
            transport_factory=factory, state_path=self.state_path, exclude_pids=exclude,
            on_ready=lambda _c: self.ready.set(),
        )
        self.thread = threading.Thread(target=self._main, name="kaudit-collector", daemon=True)
        self.thread.start()
        return self

    def _main(self) -> None:
        col = self.collector
        stats = None
        try:
            stats = col.run()
        except BaseException as exc:  # noqa: BLE001 - reported as the run's error
            import traceback

            self.error = f"collector failed: {type(exc).__name__}: {exc}"
            self.warnings.append(traceback.format_exc(limit=8))
        finally:
            try:
                if stats is None:
                    stats = col.stats()
                self.counters.update(flatten_counters(stats.as_dict()))
            except Exception as exc:  # noqa: BLE001
                self.warnings.append(f"no statistics: {exc}")
            cfg = col.config
            if cfg is not None:
                out = cfg.outcome
                self.counters["config.read_only"] = int(out.read_only)
                self.counters["config.multicast"] = int(out.mode == "multicast")
                self.counters["config.rules_added"] = len(out.added)
            self.counters["config.restore_errors"] = len(col.restore_errors)
            self.warnings.extend(col.restore_errors)
            self.rows = [json.loads(line) for line in self._out.getvalue().splitlines() if line.strip()]
            self.ready.set()  # never leave a waiter hanging: error/counters say how it ended

    @property
    def found(self) -> Any:
        """The kernel state the collector found before changing it (collector.config.Found)."""
        cfg = self.collector.config if self.collector is not None else None
        return cfg.found if cfg is not None else None

    def status_polls(self) -> int:
        reader = self.collector.reader if self.collector is not None else None
        return reader.counters.status_polls if reader is not None else 0

    def request_stop(self) -> None:
        if self.collector is not None:
            self.collector.stop.reason = self.collector.stop.reason or "replay done"

    def join(self, timeout: float) -> bool:
        assert self.thread is not None
        self.thread.join(timeout)
        return not self.thread.is_alive()


def scenario_flags(flags: list[str]) -> Any:
    """A scenario's ``flags:`` over osquery's defaults (collector.flags.parse_flags)."""
    from collector.flags import parse_flags

    return parse_flags(list(flags), warn=lambda _m: None)


def flatten_counters(d: dict[str, Any], prefix: str = "") -> dict[str, int]:
    """``{"kernel": {"enobufs": 1}}`` -> ``{"kernel.enobufs": 1}``; booleans become 0/1."""
    out: dict[str, int] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_counters(v, name + "."))
        elif isinstance(v, bool):
            out[name] = int(v)
        elif isinstance(v, int):
            out[name] = v
    return out


# --------------------------------------------------------------------------- serving


def reader_clients(server: Any) -> list[Any]:
    """The sockets a kernel would deliver records to that someone is reading: the registered
    daemon's, then the multicast members', each with a live endpoint connection (the model's
    stand-ins for other processes, such as a phantom daemon, have none)."""
    served = {id(c) for c in server.clients()}

    def pick(k: Any) -> list[Any]:
        out = []
        daemon = k.clients.get(k.auditd_port) if k.auditd_pid else None
        if daemon is not None and daemon.alive:
            out.append(daemon)
        out.extend(m for m in k.members if m.alive and m.groups & 1 and m is not daemon)
        return out

    return [c for c in server.call(pick) if id(c) in served]


class Feeder:
    """Sends a scenario's steps through the endpoint, applying faults.

    ``collector`` is anything with an ``error`` attribute (None while the reader is fine): the
    feeder gives up when it is set. ``our_pid``: the daemon pid a ``steal_pid`` fault waits to
    see registered again (None: the one registered when the fault comes). ``stop``: an event
    that ends the feed early (the server is going away).
    """

    def __init__(self, sc: Scenario, server: Any, collector: Any = None, *, stop: threading.Event | None = None) -> None:
        self.sc = sc
        self.server = server
        self.kernel = server.kernel
        self.collector = collector
        self.stop = stop if stop is not None else threading.Event()
        self.t0 = time.monotonic()
        self.offset: int | None = None  # recorded serial -> model serial
        self.last_old_serial: int | None = None
        self.model_mark = 0  # model serial after our last emission
        self.our_pid: int | None = None
        self.thief: Any = None
        self.sent = 0  # messages handed to the model or the endpoint

    # ---- helpers ------------------------------------------------------------------------

    def _failed(self) -> bool:
        return self.stop.is_set() or bool(self.collector is not None and self.collector.error)

    def _reader_clients(self) -> list[Any]:
        """The collector's receiving sockets: the registered daemon, else multicast members."""
        return reader_clients(self.server)

    def _wait(self, cond: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            if self._failed():
                return False
            time.sleep(step)
        return cond()

    def wait_drained(self, timeout: float = 10.0) -> bool:
        """Until the model's queue is empty and every client has read every packet sent to it."""

        def drained() -> bool:
            if self.server.call(lambda k: k.backlog):
                return False
            return not any(self.server.pending_bytes(c.port_id) for c in self.server.clients() if c.bound)

        return self._wait(drained, timeout)

    def _pace(self) -> None:
        """Keep the model's queue short so that asap replay never overflows the backlog."""
        limit = max(1, min(256, (self.kernel.backlog_limit or 256) // 2))
        if self.kernel.backlog >= limit:
            self._wait(lambda: self.kernel.backlog < limit // 2 + 1, 10.0, 0.002)

    def _send_packet(self, data: bytes, sender: int = 0) -> None:
        """One datagram straight to the collector's reading socket(s), past the model."""
        self.wait_drained(5.0)  # keep the order: everything the model queued goes first
        for c in self._reader_clients():
            self.server.send_datagram(c.port_id, data, sender=sender)

    def _map_serial(self, payload: bytes) -> bytes:
        """Move a recorded record onto the model's serial line (see module doc).

        Call with the server's lock held (inside ``server.call``): it moves the model's serial.
        """
        m = _STAMP_RE.match(payload)
        if not m:
            return payload
        old = int(m.group(3))
        k = self.kernel
        if self.offset is None:
            self.offset = k.serial + 1 - old
            self.model_mark = k.serial
        elif old != self.last_old_serial:
            generated = (k.serial - self.model_mark) & 0xFFFFFFFF
            if generated and generated < (1 << 31):
                self.offset += generated
        self.last_old_serial = old
        new = (old + self.offset) & 0xFFFFFFFF
        if ((new - k.serial) & 0xFFFFFFFF) < (1 << 31):
            k.serial = new
        self.model_mark = k.serial
        return payload[: m.start(3)] + str(new).encode() + payload[m.end(3) :]

    def _serial_state(self) -> tuple[Any, ...]:
        return (self.offset, self.last_old_serial, self.model_mark, self.kernel.serial)

    def _restore_serial_state(self, state: tuple[Any, ...]) -> None:
        self.offset, self.last_old_serial, self.model_mark, self.kernel.serial = state

    # ---- steps --------------------------------------------------------------------------

    def run(self) -> None:
        steps = list(self.sc.steps)
        i = 0
        dup = 0
        sender = 0
        truncate: int | None = None
        while i < len(steps):
            if self._failed():
                return
            s = steps[i]
            i += 1
            if isinstance(s, Fault):
                if s.kind == "drop":
                    n = 0
                    while n < s.count and i < len(steps):
                        if isinstance(steps[i], Message):
                            self._lose(steps[i])
                            n += 1
                            del steps[i]
                        else:
                            i += 1
                elif s.kind == "enobufs":
                    self.wait_drained(5.0)
                    n = 0
                    while n < s.count and i < len(steps):
                        if isinstance(steps[i], Message):
                            self._lose(steps[i])
                            n += 1
                            del steps[i]
                        else:
                            i += 1
                    for c in self._reader_clients():
                        self.server.inject_error(c.port_id, errno_mod.ENOBUFS)
                elif s.kind == "reorder":
                    idx = [j for j in range(i, len(steps)) if isinstance(steps[j], Message)][: len(s.order)]
                    msgs = [steps[j] for j in idx]
                    for j, o in zip(idx, s.order, strict=True):
                        steps[j] = msgs[o]
                elif s.kind == "interleave":
                    self._interleave(steps, i, s.count)
                elif s.kind == "duplicate":
                    dup = s.count
                elif s.kind == "sender":
                    sender = s.sender
                elif s.kind == "truncate":
                    truncate = s.nbytes
                elif s.kind == "garbage":
                    assert s.message is not None
                    self._send_packet(s.message.datagram())
                elif s.kind == "delay":
                    self.wait_drained(5.0)
                    self.stop.wait(s.seconds)
                elif s.kind == "steal_pid":
                    self._steal_pid(s)
                elif s.kind == "disable":
                    self._disable(s)
                continue
            self._timing(s)
            for _ in range(1 + dup):
                self._send(s, sender=sender, truncate=truncate)
            self.sent += 1
            dup, sender, truncate = 0, 0, None

    def _timing(self, m: Message) -> None:
        t = self.sc.timing
        if t.mode == "recorded" and m.at is not None:
            due = self.t0 + m.at / max(t.speed, 1e-6)
            delay = due - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)

    def _send(self, m: Message, *, sender: int, truncate: int | None) -> None:
        if m.kind == "record" and not sender and truncate is None:
            self._pace()

            def emit(k: Any) -> int | None:
                before = self._serial_state()
                serial = k.emit_record(m.type, self._map_serial(m.payload))
                if serial is None and k.enabled == 0:
                    # audit is off: the kernel made nothing, and so used no serial either
                    self._restore_serial_state(before)
                return serial

            self.server.call(emit)
            return
        if m.kind == "record" and self.kernel.enabled == 0:
            return  # past the model, but a record all the same: audit off, the kernel made none
        if m.kind == "record":
            payload = self.server.call(lambda _k: self._map_serial(m.payload))
        else:
            payload = m.payload
        if m.raw is not None:
            data = m.raw
        else:
            msg = nl.NetlinkMessage(m.type, m.flags, m.seq, m.pid, payload, short_len=m.is_record)
            data = nl.encode(msg)
        if truncate is not None:
            data = data[:truncate]
        self._send_packet(data, sender)

    def _lose(self, m: Message) -> None:
        """A message the kernel generated but lost: its serial is consumed, lost grows."""

        def lose(k: Any) -> None:
            if m.kind == "record":
                self._map_serial(m.payload)
            k.lose_records(1)

        self.server.call(lose)

    @staticmethod
    def _interleave(steps: list, start: int, nevents: int) -> None:
        idx: list[int] = []
        groups: dict[int, list[Message]] = {}
        order: list[int] = []
        for j in range(start, len(steps)):
            m = steps[j]
            if not isinstance(m, Message):
                continue
            ser = m.serial()
            if ser is None:
                continue
            if ser not in groups:
                if len(groups) == nevents:
                    break
                groups[ser] = []
                order.append(ser)
            groups[ser].append(m)
            idx.append(j)
        mixed: list[Message] = []
        while any(groups.values()):
            for ser in order:
                if groups[ser]:
                    mixed.append(groups[ser].pop(0))
        for j, m in zip(idx, mixed, strict=True):
            steps[j] = m

    def _steal_pid(self, f: Fault) -> None:
        """Another process registers as the daemon, then dies without unregistering.

        ``phantom_daemon`` is the registration (our daemon gets the kernel's AUDIT_REPLACE);
        closing its socket at once is a crashed auditd: the kernel forgets it at the next send
        that fails. The collector sees a foreign pid (or none) in its next status and takes it
        back; we wait for that before going on.
        """
        self.wait_drained(5.0)

        def steal(k: Any) -> int:
            owner = k.auditd_pid
            self.thief = k.phantom_daemon(f.pid)
            k.disconnect(self.thief)
            return owner

        owner = self.server.call(steal)
        want = self.our_pid or owner
        if want:
            self._wait(lambda: self.kernel.auditd_pid == want, self.sc.timing.fault_wait)

    def _disable(self, f: Fault) -> None:
        """``auditctl -e 0`` from another process; wait for the collector to enable it again."""
        self.wait_drained(5.0)

        def disable(k: Any) -> None:
            admin = k.connect(1, comm=b"auditctl", exe=b"/usr/sbin/auditctl")
            k.bind(admin)
            st = AuditStatus()
            st.enabled = 0
            st.mask = _STATUS_MASK_ENABLED
            k.receive(admin, nl.encode(nl.NetlinkMessage(AUDIT_SET, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 1, 0, st.encode())))
            k.disconnect(admin)

        self.server.call(disable)
        self._wait(lambda: self.kernel.enabled != 0, self.sc.timing.fault_wait)


# --------------------------------------------------------------------------- attach (kaudit simulate)


class ScenarioFeed:
    """A scenario served by a running endpoint to whichever client reads it (see
    :func:`attach_scenario`). ``done`` is set when every message was sent and read (or the feed
    ended early: ``error`` says why); ``feeder`` is the :class:`Feeder` once replay began."""

    def __init__(
        self,
        server: Any,
        sc: Scenario,
        *,
        log: Callable[[str], None] | None = None,
        quiet: float = 0.3,
        settle_max: float = 5.0,
    ) -> None:
        self.server = server
        self.sc = sc
        self.log = log or (lambda _m: None)
        self.quiet = quiet
        self.settle_max = settle_max
        self.done = threading.Event()
        self.started = threading.Event()
        self.error: str | None = None
        self.reader: Any = None  # the first reading client (kernel.Client)
        self.feeder: Feeder | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="kaudit-scenario-feed", daemon=True)

    def start(self) -> ScenarioFeed:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # noqa: BLE001 - the server goes on; say why the feed stopped
            if not self._stop.is_set():
                self.error = f"replaying {self.sc.path or self.sc.name} failed: {type(exc).__name__}: {exc}"
                self.log(self.error)
        finally:
            self.done.set()

    def _serve(self) -> None:
        # 1. a reader: the kernel delivers records only to a registered daemon or to multicast
        #    members, and makes none while audit is off
        while not self._stop.is_set():
            readers = reader_clients(self.server)
            if readers and self.server.kernel.enabled:
                self.reader = readers[0]
                break
            self._stop.wait(0.02)
        else:
            return
        # 2. let its configuration finish (rules, backlog ...): until its requests stop for a while
        end = time.monotonic() + self.settle_max
        seen, since = self.server.counters["datagrams"], time.monotonic()
        while not self._stop.is_set() and time.monotonic() < end:
            now = self.server.counters["datagrams"]
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= self.quiet:
                break
            self._stop.wait(0.02)
        if self._stop.is_set():
            return
        mode = "the audit daemon" if self.reader.port_id == self.server.kernel.auditd_port else "a multicast reader"
        self.log(f"replaying {len(self.sc.messages())} message(s) to pid {self.reader.pid} ({mode})")
        self.feeder = Feeder(self.sc, self.server, stop=self._stop)
        self.started.set()
        self.feeder.run()
        if self._stop.is_set():
            return
        drained = self.feeder.wait_drained(10.0)
        self.log(
            f"scenario replayed: {self.feeder.sent} message(s) sent"
            + ("" if drained else "; the client has not read all of them")
        )


def attach_scenario(
    server: Any, source: str | Path | Scenario, *, log: Callable[[str], None] | None = None
) -> ScenarioFeed:
    """Serve ``source`` (a scenario file, pcap or audit log, or a loaded Scenario) on ``server``.

    The scenario's initial kernel state is loaded into ``server.kernel`` at once (call this
    before clients connect); its messages are replayed, with their timing and faults, once a
    client has registered as the audit daemon or joined the multicast group and finished
    configuring. Raises ScenarioError (``file:line: problem``) for a source that cannot be used.
    """
    from .scenario import load_any

    sc = source if isinstance(source, Scenario) else load_any(source)
    server.call(lambda k: build_kernel(sc.kernel, path=sc.path or sc.name, kernel=k))
    return ScenarioFeed(server, sc, log=log).start()


# --------------------------------------------------------------------------- entry point


def run_scenario(sc: Scenario, *, ready_timeout: float = 10.0) -> RunResult:
    """Run one scenario: kernel model + endpoint + collector, feed, drain, stop, collect.

    What the collector says on stderr (configured, restored, warnings) is kept out of the
    caller's output and returned in ``RunResult.log``, which the diff shows when the run failed.
    """
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        result = _run_scenario(sc, ready_timeout)
    result.log = log.getvalue()
    return result


def _run_scenario(sc: Scenario, ready_timeout: float) -> RunResult:
    from simulator.endpoint import EndpointServer

    t0 = time.monotonic()
    kernel = build_kernel(sc.kernel, path=sc.path)
    with tempfile.TemporaryDirectory(prefix="kaudit-replay-") as tmp:
        server = EndpointServer(kernel)
        server.listen(str(Path(tmp) / "audit.sock"))
        server.start()
        collector = CollectorRun(server.endpoint, list(sc.flags))
        error: str | None = None
        try:
            collector.start()
            if not collector.ready.wait(ready_timeout):
                error = f"the collector was not ready within {ready_timeout} s"
            elif collector.error is None:
                feeder = Feeder(sc, server, collector)
                deadline = t0 + sc.timing.timeout
                runner = threading.Thread(target=feeder.run, name="kaudit-feeder", daemon=True)
                runner.start()
                runner.join(max(0.1, deadline - time.monotonic()))
                if runner.is_alive():
                    feeder.stop.set()
                    error = f"the scenario did not finish within its timeout of {sc.timing.timeout} s"
                else:
                    feeder.wait_drained(max(0.1, min(10.0, deadline - time.monotonic())))
                    # one more status reply after the last message, so the kernel's counters
                    # (lost, backlog) at the end are in the report
                    polls = collector.status_polls()
                    feeder._wait(lambda: collector.status_polls() > polls, 2.0)
                    time.sleep(sc.timing.settle)
        finally:
            collector.request_stop()
            if collector.thread is not None and not collector.join(15.0):
                error = error or "the collector did not stop within 15 s"
            snapshot = server.call(kernel_snapshot)
            server.stop()
    counters = dict(collector.counters)
    for k, v in server.counters.items():
        counters[f"endpoint.{k}"] = v
    return RunResult(
        rows=list(collector.rows),
        counters=counters,
        kernel=snapshot,
        seconds=time.monotonic() - t0,
        error=error or collector.error,
    )
