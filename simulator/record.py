"""``kaudit record``: the real kernel's audit traffic during a command, as a scenario file.

The collector runs live against the real kernel exactly as in a replay (simulator.replay's
CollectorRun: configuration, reader, pipeline), with a tap on its transports that keeps
every datagram the kernel delivered. After COMMAND (and ``duration`` seconds more) the
collector stops and restores the kernel, and the tap's records become the scenario's
``messages:``, the rows the live collector printed its ``expect.rows:``.

Only COMMAND's own events are kept by default. Other processes on the machine are audited
too while we record (cron, other engineers' tests); their events would make the scenario
depend on the moment. COMMAND's process tree is followed through the records themselves:
an event whose SYSCALL ``pid`` or ``ppid`` is in the tree belongs to it, and a successful
fork/vfork/clone/clone3 adds its child (the syscall's exit value).

Volatile columns (``eid``, ``uptime``, and the stat times) are left out of the expected rows:
they differ on every run by design.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.protocol import netlink as nl
from collector.protocol.records import record_type_number

from .scenario import (
    CounterExpect,
    Expect,
    ExpectedRow,
    KernelState,
    Message,
    Scenario,
    dump_scenario,
    parse_record_line,
    parse_scenario_text,
)

__all__ = ["RECORD_DEFAULT_FLAGS", "VOLATILE_COLUMNS", "RecordError", "RecordResult", "record", "select_events"]

VOLATILE_COLUMNS = frozenset({"eid", "uptime", "atime", "mtime", "ctime", "btime"})
# what `kaudit collect` does: configure the kernel and enable both tables
RECORD_DEFAULT_FLAGS = ["--audit_allow_config", "--audit_allow_sockets", "--audit_allow_process_events"]
_FORKS = {"x86_64": (56, 57, 58, 435), "aarch64": (220, 435), "i386": (2, 120, 190, 435)}
_AUDIT_REPLACE = record_type_number("REPLACE")


class RecordError(RuntimeError):
    """Recording could not be done (kernel audit unreachable, collector failed); says why."""


@dataclass(slots=True)
class RecordResult:
    scenario: Scenario
    messages: int
    rows: int
    packets: int = 0
    returncode: int | None = None
    warnings: list[str] = field(default_factory=list)
    live_rows: list[dict[str, Any]] = field(default_factory=list)  # as the live collector produced them


@dataclass(slots=True)
class _Tap:
    """Every datagram the kernel delivered to the collector, with its arrival time."""

    t0: float = field(default_factory=time.time)
    got: list[tuple[float, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, transport: Any) -> None:
        inner = transport.recv_raw

        def recv_raw(timeout: float | None) -> Any:
            got = inner(timeout)
            if isinstance(got, tuple) and got[0] == 0:
                with self.lock:
                    self.got.append((time.time(), bytes(got[1])))
            return got

        transport.recv_raw = recv_raw  # instance attribute: recv() and request() both go through it


def _messages_from_tap(tap: _Tap) -> list[Message]:
    out: list[Message] = []
    seen_short = False
    decoded = []
    for when, data in tap.got:
        try:
            msgs = nl.decode_datagram(data)
        except nl.NetlinkError:
            continue
        for m in msgs:
            if not m.is_record or m.type == _AUDIT_REPLACE:
                continue
            seen_short = seen_short or m.short_len
            decoded.append((when, data, m, len(msgs)))
    for when, data, m, n in decoded:
        if seen_short and not m.short_len:
            continue  # a multicast copy next to the daemon's
        at = max(0.0, when - tap.t0)
        ok = False
        try:
            text = m.payload.decode("utf-8")
            ok = parse_record_line(f"type=UNKNOWN[{m.type}] msg={text}")[1] == m.payload
        except (UnicodeDecodeError, ValueError):
            ok = False
        if ok:
            out.append(Message(m.type, m.payload, at=at))
        else:
            out.append(Message(m.type, m.payload, at=at, raw=data if n == 1 else None,
                               kind="raw" if n == 1 else "message"))
    return out


def _fields(payload: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        body = payload.decode("utf-8", "replace").split("): ", 1)[1]
    except IndexError:
        return out
    for tok in body.split(" "):
        k, sep, v = tok.partition("=")
        if sep and k not in out:
            out[k] = v
    return out


def select_events(msgs: list[Message], root_pid: int, *, machine: str | None = None) -> tuple[list[Message], set[int]]:
    """The messages of events that belong to ``root_pid``'s process tree, and the tree."""
    forks = _FORKS.get(machine or platform.machine(), _FORKS["x86_64"])
    by_serial: dict[int, list[int]] = {}
    order: list[int] = []
    for i, m in enumerate(msgs):
        s = m.serial()
        if s is None:
            continue
        if s not in by_serial:
            by_serial[s] = []
            order.append(s)
        by_serial[s].append(i)
    tree = {root_pid}
    keep: set[int] = set()
    for s in order:
        sys_rec = next((msgs[i] for i in by_serial[s] if msgs[i].type == 1300), None)
        if sys_rec is None:
            continue
        f = _fields(sys_rec.payload)
        try:
            pid, ppid = int(f.get("pid", "-1")), int(f.get("ppid", "-1"))
        except ValueError:
            continue
        if pid not in tree and ppid not in tree:
            continue
        keep.add(s)
        tree.add(pid)
        try:
            nr, ret = int(f.get("syscall", "-1")), int(f.get("exit", "0"))
        except ValueError:
            nr, ret = -1, 0
        if nr in forks and f.get("success") == "yes" and ret > 0:
            tree.add(ret)
    kept = [m for m in msgs if m.serial() in keep]
    return kept, tree


# Runs COMMAND as a grandchild. `kaudit collect` leaves out the events of its own process and of
# its children (osquery skips its own), which would drop COMMAND's execve if we were its parent.
# The launcher is our child (its events are left out, live and in the scenario); COMMAND's
# parent is the launcher, which reports COMMAND's pid on a pipe and passes on its exit status.
_LAUNCHER = """\
import os, sys
w = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(w)
    try:
        os.execv(sys.argv[2], sys.argv[3:])
    except OSError as exc:
        sys.stderr.write(f"kaudit record: cannot run {sys.argv[2]}: {exc.strerror}\\n")
    os._exit(127)
os.write(w, str(pid).encode())
os.close(w)
_, st = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(st)
sys.exit(code if code >= 0 else 128 - code)
"""


def _run_command(command: list[str], stdout: Any) -> tuple[int, int]:
    """(COMMAND's pid, its exit status). The program is resolved first: execvp would try
    every PATH entry, and each failed attempt is an audited event of the recording."""
    import sys

    exe = shutil.which(command[0]) or command[0]
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(w), exe, *command],
                                pass_fds=(w,), stdout=stdout)
    except OSError as exc:
        os.close(r)
        os.close(w)
        raise RecordError(f"cannot start {command[0]}: {exc.strerror}") from None
    os.close(w)
    with os.fdopen(r, "rb") as fp:
        text = fp.read().decode() or "0"
    return int(text), proc.wait()


def _kernel_state(found: Any) -> KernelState:
    if found is None:
        return KernelState()
    st = found.status
    status = {n: int(getattr(st, n)) for n in ("enabled", "failure", "rate_limit", "backlog_limit",
                                               "backlog_wait_time")}
    rules: list[str] = []
    try:
        from collector.protocol.auditctl import format_rule

        rules = [format_rule(r) for r in found.rules]
    except Exception:  # noqa: BLE001 - an unformattable rule: record without it, and say so
        rules = []
    return KernelState(status=status, rules=rules, immutable=st.enabled == 2)


def _flag_list(flags: Any) -> list[str]:
    """Every flag that differs from osquery's defaults, spelled out (a scenario's base)."""
    out = []
    for name, value in flags.changed().items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.append(f"--{name}={text}")
    return out


def record(
    command: list[str],
    *,
    output: Path,
    duration: float | None = None,
    pcap: Path | None = None,
    name: str | None = None,
    description: str = "",
    flags: list[str] | None = None,
    only_command: bool = True,
    settle: float = 0.5,
    stdout: Any = None,
) -> RecordResult:
    """Record COMMAND on the live kernel into ``output`` (and ``pcap``); see the module doc."""
    from collector.flags import parse_flags
    from collector.transport import kernel_unreachable_reason, live_lock

    from .replay import CollectorRun

    why = kernel_unreachable_reason()
    if why:
        raise RecordError(why)
    try:
        parsed = parse_flags(RECORD_DEFAULT_FLAGS + list(flags or []), warn=lambda _m: None)
    except Exception as exc:  # noqa: BLE001
        raise RecordError(f"bad flags: {exc}") from None
    tap = _Tap()
    from collector.config import default_state_path

    run = CollectorRun("kernel", parsed, status_interval=1.0, tap=tap.attach,
                       state_path=default_state_path("kernel"))
    returncode: int | None = None
    root_pid = 0
    with live_lock():
        run.start()
        try:
            if not run.ready.wait(15.0) or run.error:
                raise RecordError(run.error or "the collector did not get ready within 15 s")
            time.sleep(settle)  # records of the configuration itself come first; let them pass
            tap.t0 = time.time()
            with tap.lock:
                tap.got.clear()
            if command:
                root_pid, returncode = _run_command(command, stdout)
            time.sleep(1.0 if duration is None else duration)
        finally:
            run.request_stop()
            run.join(30.0)
    if run.error:
        raise RecordError(run.error)
    msgs = _messages_from_tap(tap)
    rows = list(run.rows)
    if command and only_command:
        msgs, tree = select_events(msgs, root_pid)
        rows = [r for r in rows if r.get("pid") in tree]
    if msgs:
        base = msgs[0].at or 0.0
        for m in msgs:
            m.at = round((m.at or 0.0) - base, 3)
    expected = [ExpectedRow({k: v for k, v in r.items() if k not in VOLATILE_COLUMNS}) for r in rows]
    counters = {}
    if run.counters.get("kernel.enobufs", 0) == 0:
        counters["kernel.enobufs"] = CounterExpect("==", 0)
    warnings = list(run.warnings)
    if run.counters.get("kernel.enobufs") or run.counters.get("kernel.lost"):
        warnings.append("records were lost while recording; the scenario may be incomplete")
    sc = Scenario(
        name=name or output.stem,
        path=str(output),
        description=description or (f"recorded: {' '.join(command)}" if command else "recorded traffic"),
        kernel=_kernel_state(run.found),
        flags=_flag_list(parsed),
        steps=list(msgs),
        expect=Expect(rows=expected, counters=counters),
        origin={
            "command": " ".join(command),
            "kernel": platform.release(),
            "recorded": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tool": "kaudit record",
        },
    )
    text = dump_scenario(sc)
    parse_scenario_text(text, str(output))  # what we write must load
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    packets = 0
    if pcap is not None:
        from .pcap import write_pcap

        packets = write_pcap(pcap, msgs, start=tap.t0)
    return RecordResult(sc, len(msgs), len(expected), packets, returncode, warnings, rows)

