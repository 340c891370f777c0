"""Serve a scenario through the simulator endpoint into the full collector, with its faults.

One run = a fresh kernel model (simulator/kernel.py) in the scenario's initial state, served
by an :class:`~simulator.endpoint.EndpointServer` on a private unix socket, and the collector
(configuration, reader, pipeline: the same code ``kaudit collect`` runs against the real
kernel) connected to it over ``unix:PATH``, in a thread of this process. The scenario's
messages go through the kernel model, so the model decides who receives a record (the
registered daemon in the unicast short form, multicast readers with the true length) just
as the kernel would; faults are injected on top of the model's and the endpoint's public
API (docs/internals.md, "Faults").

Determinism: records keep their recorded ``audit(...)`` stamps (rows carry the audit time),
but their *serials* are shifted onto the model's own serial line, so that the records the
model writes itself (CONFIG_CHANGE while the collector configures it, or a fault) and the
replayed ones form one gap-free sequence, as on a live kernel. Gaps the scenario has (or a
``drop`` fault makes) are kept, so ``lost_serials`` means what it means live.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import fcntl
import io
import json
import os
import re
import struct
import tempfile
import termios
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

__all__ = ["CollectorRun", "build_kernel", "flatten_counters", "run_scenario", "scenario_flags"]

_PREFIX = struct.Struct("<I")
_STAMP_RE = re.compile(rb"^audit\((\d+)\.(\d+):(\d+)\)")
_STATUS_MASK_PID = 0x4
_STATUS_MASK_ENABLED = 0x1


# --------------------------------------------------------------------------- kernel


def build_kernel(state: KernelState, *, path: str = "<scenario>") -> Any:
    """An AuditKernel in the scenario's initial state (status, rules, immutable, refusals).

    ``refuse`` is installed by wrapping the model's request handler for this instance: the
    kernel answers the listed request types with the errno before looking at them (the model
    has no public hook for a policy refusal; see the report in docs/internals.md "Faults").
    """
    from collector.protocol.auditctl import parse_rule
    from simulator.kernel import AuditKernel

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
    if state.refuse:
        refuse = {record_type_number(name): err for name, err in state.refuse.items()}
        original = kernel._receive_msg  # noqa: SLF001 - no public hook for a refused request

        def receive_msg(req: Any) -> int:
            err = refuse.get(req.msg.type)
            if err:
                return -err
            return original(req)

        kernel._receive_msg = receive_msg  # noqa: SLF001
    return kernel


def _kernel_snapshot(kernel: Any) -> dict[str, Any]:
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
    status (its baseline for the kernel's lost counter). Rows come back as dicts, counters
    flattened (:func:`flatten_counters`).
    """

    endpoint: str
    flags: Any  # list of flag strings (a scenario's) or AuditFlags
    status_interval: float = 0.2
    tap: Callable[[Any], None] | None = None
    state_path: Any = None
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

        self.collector = Collector(
            self.endpoint, flags, self._out, status_interval=self.status_interval,
            transport_factory=factory, state_path=self.state_path,
        )
        self.thread = threading.Thread(target=self._main, name="kaudit-collector", daemon=True)
        self.thread.start()
        threading.Thread(target=self._watch_ready, name="kaudit-ready", daemon=True).start()
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
            self.ready.set()

    def _watch_ready(self) -> None:
        """Ready = configured and the first status reply read (or the run already over)."""
        col = self.collector
        while self.thread is not None and self.thread.is_alive():
            reader = col.reader
            if reader is not None and reader.counters.status_polls >= 1:
                break
            time.sleep(0.005)
        self.ready.set()

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


class _Feeder:
    """Sends the scenario's steps through the endpoint, applying faults."""

    def __init__(self, sc: Scenario, server: Any, collector: CollectorRun) -> None:
        self.sc = sc
        self.server = server
        self.kernel = server.kernel
        self.collector = collector
        self.t0 = time.monotonic()
        self.offset: int | None = None  # recorded serial -> model serial
        self.last_old_serial: int | None = None
        self.model_mark = 0  # model serial after our last emission
        self.our_pid = os.getpid()
        self.thief: Any = None
        self.admin: Any = None

    # ---- helpers ------------------------------------------------------------------------

    def _reader_clients(self) -> list[Any]:
        """The collector's receiving sockets: the registered daemon, else multicast members."""
        k = self.kernel
        out = []
        with self.server._lock:  # noqa: SLF001 - consistent view of the model's clients
            if k.auditd_pid == self.our_pid and k.auditd_port in k.clients:
                out.append(k.clients[k.auditd_port])
            out.extend(m for m in k.members if m.alive and m.pid == self.our_pid and m not in out)
        return out

    def _wait(self, cond: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            if self.collector.error:
                return False
            time.sleep(step)
        return cond()

    def wait_drained(self, timeout: float = 10.0) -> bool:
        """Until the model's queue is empty and the collector has read every packet sent."""

        def drained() -> bool:
            with self.server._lock:  # noqa: SLF001
                if self.kernel.backlog:
                    return False
                for c in self.server.clients():
                    conn = c.handle
                    if getattr(conn, "out", None):
                        return False
                    sock = getattr(conn, "sock", None)
                    if sock is None or getattr(conn, "closed", True):
                        continue
                    try:
                        pending = struct.unpack(
                            "i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                        )[0]
                    except OSError:
                        pending = 0
                    if pending:
                        return False
            return True

        return self._wait(drained, timeout)

    def _pace(self) -> None:
        """Keep the model's queue short so that asap replay never overflows the backlog."""
        limit = max(1, min(256, (self.kernel.backlog_limit or 256) // 2))
        if self.kernel.backlog >= limit:
            self._wait(lambda: self.kernel.backlog < limit // 2 + 1, 10.0, 0.002)

    def _send_packet(self, data: bytes, sender: int = 0) -> None:
        """One packet straight to the collector's reading socket(s), bypassing the model."""
        self.wait_drained(5.0)  # keep the order: everything the model queued goes first
        packet = _PREFIX.pack(sender & 0xFFFFFFFF) + data
        clients = self._reader_clients()

        def push(_k: Any) -> None:
            for c in clients:
                conn = c.handle
                if conn is None or getattr(conn, "closed", True):
                    continue
                conn.out.append(packet)
                conn.out_bytes += len(packet)

        self.server.call(push)

    def _map_serial(self, payload: bytes) -> bytes:
        """Move a recorded record onto the model's serial line (see module doc)."""
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

    # ---- steps --------------------------------------------------------------------------

    def run(self) -> None:
        steps = list(self.sc.steps)
        i = 0
        dup = 0
        sender = 0
        truncate: int | None = None
        while i < len(steps):
            if self.collector.error:
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
                    time.sleep(s.seconds)
                elif s.kind == "steal_pid":
                    self._steal_pid(s)
                elif s.kind == "disable":
                    self._disable(s)
                continue
            self._timing(s)
            for _ in range(1 + dup):
                self._send(s, sender=sender, truncate=truncate)
            dup, sender, truncate = 0, 0, None

    def _timing(self, m: Message) -> None:
        t = self.sc.timing
        if t.mode == "recorded" and m.at is not None:
            due = self.t0 + m.at / max(t.speed, 1e-6)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _send(self, m: Message, *, sender: int, truncate: int | None) -> None:
        if self.kernel.enabled == 0 and m.is_record and m.kind == "record":
            return  # audit is off: the kernel would not have generated this record
        if m.kind == "record" and not sender and truncate is None:
            payload = self._map_serial(m.payload)
            self._pace()
            self.server.emit_record(m.type, payload)
            return
        payload = self._map_serial(m.payload) if m.kind == "record" else m.payload
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
        if m.kind == "record":
            self._map_serial(m.payload)
        self.server.call(lambda k: setattr(k, "lost", (k.lost + 1) & 0xFFFFFFFF))

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

    def _other_process(self, pid: int, comm: bytes) -> Any:
        """A netlink socket of another process in the model (it has no connection to serve)."""
        k = self.kernel
        client = k.connect(pid, comm=comm, exe=b"/usr/sbin/" + comm)
        k.bind(client)
        return client

    def _status_request(self, client: Any, **fields: int) -> None:
        mask = 0
        st = AuditStatus()
        for name, value in fields.items():
            setattr(st, name, value)
            mask |= {"pid": _STATUS_MASK_PID, "enabled": _STATUS_MASK_ENABLED}[name]
        st.mask = mask
        req = nl.encode(nl.NetlinkMessage(AUDIT_SET, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 1, 0, st.encode()))
        self.kernel.receive(client, req)

    def _steal_pid(self, f: Fault) -> None:
        """Another process registers as the daemon.

        The kernel lets a new daemon in only when the registered one looks dead
        (audit_replace() fails), so the collector's socket is marked unreachable for that
        one request; the thief then exits without unregistering, as a crashed auditd
        does. The collector sees a foreign pid in its next status and takes it back.
        """
        self.wait_drained(5.0)
        ours = self._reader_clients()

        def steal(k: Any) -> None:
            thief = self._other_process(f.pid, b"auditd")
            saved = [(c, c.alive) for c in ours]
            for c, _ in saved:
                c.alive = False
            try:
                self._status_request(thief, pid=f.pid)
            finally:
                for c, alive in saved:
                    c.alive = alive
            k.disconnect(thief)
            self.thief = thief

        self.server.call(steal)
        self._wait(lambda: self.kernel.auditd_pid == self.our_pid, self.sc.timing.fault_wait)

    def _disable(self, f: Fault) -> None:
        """``auditctl -e 0`` from another process; wait for the collector to enable it again."""
        self.wait_drained(5.0)

        def disable(k: Any) -> None:
            admin = self._other_process(1, b"auditctl")
            self._status_request(admin, enabled=0)
            k.disconnect(admin)

        self.server.call(disable)
        self._wait(lambda: self.kernel.enabled != 0, self.sc.timing.fault_wait)


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
                feeder = _Feeder(sc, server, collector)
                deadline = t0 + sc.timing.timeout
                runner = threading.Thread(target=feeder.run, name="kaudit-feeder", daemon=True)
                runner.start()
                runner.join(max(0.1, deadline - time.monotonic()))
                if runner.is_alive():
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
            snapshot = server.call(_kernel_snapshot)
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
