"""``bench storm``: syscall storms against the real kernel, kaudit collect versus auditd.

For a fixed time (10 s by default) worker processes hammer one syscall the audit rules watch,
while one collector is the registered audit daemon:

* ``connect``: 2 processes calling ``connect()`` on loopback to a closed TCP port in a loop
  (a new socket each time; ``ECONNREFUSED``), about 4 records per call;
* ``execve``: 2 processes spawning ``/bin/true`` and reaping it, about 7 records per call;
* ``mixed``: one of each.

Collectors, each run once per storm with the same kernel settings (enabled 1, backlog limit
8192, backlog wait time 0, the rules ``kaudit collect`` installs: connect, bind, accept,
accept4, execve, execveat for b64 and b32):

* ``kaudit``: ``kaudit collect`` as it is, so with its default receiver (``--receiver
  process``: the socket drained by ``collector.receiver`` in a forked process that does nothing
  else), ``--audit_allow_failed_socket_events`` so that a refused connect is a row too,
  ``--audit_allow_accept_socket_events=false``;
* ``kaudit-noreceiver`` (only when asked for: not in the default list): the same command with
  ``--receiver off``, the collecting loop reading the socket itself, to show what the receiver
  buys;
* ``auditd``: Debian's auditd 3.0.9 in the foreground with a temporary config (log into a
  temporary folder, no plugins; bench.peers.AuditdDaemon), stopped by its pid.

Measured per run: calls/s (the workers count), records/s (what the collector received), the
kernel's ``lost`` delta and peak ``backlog`` (AUDIT_GET polled every 50 ms from a separate
socket), the collector's CPU% over the storm and CPU ms per 1,000 records over storm + drain
(all its processes: /proc/PID/stat), and rows emitted for the workers' calls versus calls made
(kaudit's rows whose pid, or parent for the exec storm, is a worker; auditd's SYSCALL records
likewise). After the storm the collector is given time to drain (until its output stops
growing), then stopped.

Safety (this changes the machine's audit state): the whole benchmark holds the exclusive
flock on ``/tmp/kaudit-live.lock``; the kernel's state (status fields, daemon pid, rules) is
read before the first run and put back after every run, also when a run fails; failure mode
2 and enabled 2 are never written; auditd and ``kaudit collect`` get ``PR_SET_PDEATHSIG`` so
that they stop if the benchmark dies, and auditd is stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.machine import machine_info, machine_line, write_outputs
from bench.peers import AuditdDaemon, peer_versions, unavailable

__all__ = ["COLLECTORS", "DEFAULT_COLLECTORS", "STORMS", "StormResult", "format_report", "register", "run_storm_bench"]

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK_PATH = "/tmp/kaudit-live.lock"
STORMS = ("connect", "execve", "mixed")
COLLECTORS = ("kaudit", "kaudit-noreceiver", "auditd")  # every collector --collectors accepts
DEFAULT_COLLECTORS = ("kaudit", "auditd")  # kaudit-noreceiver is a comparison, run on request
WORKERS = {"connect": ("connect", "connect"), "execve": ("execve", "execve"), "mixed": ("connect", "execve")}
STATUS_FIELDS = ("enabled", "failure", "rate_limit", "backlog_limit", "backlog_wait_time")
KAUDIT_KEY = "kaudit"  # collector.config.KAUDIT_KEY: the key of the rules kaudit collect adds
POLL_S = 0.05
CLOSED_PORT = 9  # discard: nothing listens on loopback here (checked before the storm)
_PR_SET_PDEATHSIG = 1


# --- the workers (python -m bench.storm _worker KIND SECONDS PORT) -------------------------------------


def _worker(kind: str, seconds: float, port: int) -> dict:
    """Wait for a line on stdin, then make calls for ``seconds``; return the count."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    t0 = time.monotonic()
    end = t0 + seconds
    n = 0
    if kind == "connect":
        addr = ("127.0.0.1", port)
        while True:
            for _ in range(32):
                s = socket.socket()
                try:
                    s.connect(addr)
                except OSError:
                    pass
                s.close()
            n += 32
            if time.monotonic() >= end:
                break
    elif kind == "execve":
        argv, env = ["/bin/true"], {}
        spawn, wait = os.posix_spawn, os.waitpid
        while time.monotonic() < end:
            wait(spawn("/bin/true", argv, env), 0)
            n += 1
    else:
        raise SystemExit(f"unknown worker kind {kind!r}")
    return {"kind": kind, "calls": n, "seconds": time.monotonic() - t0, "pid": os.getpid()}


def _pdeathsig(sig: int = signal.SIGTERM):
    """preexec_fn: the child gets ``sig`` when the benchmark dies (kept across exec)."""

    def fn() -> None:
        try:
            import ctypes

            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    return fn


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# --- the kernel: watch, snapshot, restore --------------------------------------------------------------


@dataclass(slots=True)
class KernelSnapshot:
    status: dict[str, int]
    pid: int
    rules: list[bytes]  # encoded audit_rule_data, in list order


class Kernel:
    """Our own control socket: status polling, the snapshot, and the restore.

    ``endpoint`` is ``kernel`` for the benchmark; tests point it at a simulator (``unix:PATH``).
    """

    def __init__(self, endpoint: str = "kernel") -> None:
        from collector.transport import open_transport

        self.t = open_transport(endpoint, rcvbuf=1 << 20)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.t.close()

    def status(self):
        from collector.protocol.records import AUDIT_GET
        from collector.protocol.status import AuditStatus

        with self._lock:
            for m in self.t.request(AUDIT_GET):
                if m.type == AUDIT_GET:
                    return AuditStatus.decode(m.payload)
        raise RuntimeError("AUDIT_GET: no status reply from the kernel")

    def rules(self) -> list[bytes]:
        from collector.protocol.records import AUDIT_LIST_RULES
        from collector.protocol.rules import AuditRuleData

        with self._lock:
            msgs = self.t.request(AUDIT_LIST_RULES, dump=True)
        return [AuditRuleData.decode(m.payload).encode() for m in msgs if m.type == AUDIT_LIST_RULES]

    def keyed_rules(self, key: str) -> int:
        """How many rules carry ``key``."""
        from collector.protocol.rules import AuditRuleData

        return sum(key in AuditRuleData.decode(p).keys() for p in self.rules())

    def snapshot(self) -> KernelSnapshot:
        st = self.status()
        return KernelSnapshot({f: getattr(st, f) for f in STATUS_FIELDS}, st.pid, self.rules())

    def set(self, **values: int) -> None:
        from collector.protocol.records import AUDIT_SET
        from collector.protocol.status import status_set

        if values.get("failure") == 2 or values.get("enabled") == 2:
            raise ValueError("refusing to set failure=2 (panic) or enabled=2 (immutable)")
        nf = self.status().nfields
        with self._lock:
            for k, v in values.items():
                self.t.request(AUDIT_SET, status_set(nf, **{k: v}).encode())

    def add_rule(self, payload: bytes) -> None:
        from collector.protocol.records import AUDIT_ADD_RULE

        with self._lock:
            self.t.request(AUDIT_ADD_RULE, payload)

    def del_rule(self, payload: bytes) -> None:
        from collector.protocol.records import AUDIT_DEL_RULE

        with self._lock:
            self.t.request(AUDIT_DEL_RULE, payload)

    def restore(self, snap: KernelSnapshot) -> list[str]:
        """Put status fields, rules and the daemon pid back as ``snap`` has them; return notes."""
        notes: list[str] = []
        current = self.rules()
        for payload in reversed(current):
            if payload not in snap.rules:
                try:
                    self.del_rule(payload)
                    notes.append("deleted a rule added during the run")
                except OSError as exc:
                    notes.append(f"could not delete a rule: {exc}")
        now = self.rules()
        if now != snap.rules:
            # order or content differs: rebuild the list as found
            for payload in reversed(now):
                with contextlib.suppress(OSError):
                    self.del_rule(payload)
            for payload in snap.rules:
                try:
                    self.add_rule(payload)
                except OSError as exc:
                    notes.append(f"could not re-add a rule: {exc}")
            notes.append("rule list rebuilt as found")
        st = self.status()
        changes = {f: v for f, v in snap.status.items() if getattr(st, f) != v}
        if changes.get("failure") == 2:
            changes.pop("failure")  # never written, even to restore
            notes.append("failure mode was 2 when found; left as is")
        # enabled last: disabling audit first would hide nothing, but keep the kernel's order
        enabled = changes.pop("enabled", None)
        if changes:
            self.set(**changes)
            notes.append("status restored: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        if enabled is not None and enabled != 2:
            self.set(enabled=enabled)
            notes.append(f"status restored: enabled={enabled}")
        st = self.status()
        if st.pid != snap.pid:
            if st.pid and not _pid_alive(st.pid):
                notes.append(f"daemon pid {st.pid} is dead; the kernel drops it on its next record")
            elif st.pid:
                notes.append(f"daemon pid is {st.pid} (found {snap.pid}): another daemon registered")
        return notes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class KernelWatch:
    """AUDIT_GET every ``interval`` s in a thread: samples of (monotonic t, backlog, lost, pid,
    backlog_wait_time_actual) - the last is how long audited tasks have waited for room in the
    backlog in total (jiffies, kernel 5.10+; 0 where the kernel does not report it)."""

    def __init__(self, kernel: Kernel, interval: float = POLL_S) -> None:
        self.kernel = kernel
        self.interval = interval
        self.samples: list[tuple[float, int, int, int, int]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> tuple[float, int, int, int, int]:
        st = self.kernel.status()
        s = (time.monotonic(), st.backlog, st.lost, st.pid, st.backlog_wait_time_actual or 0)
        self.samples.append(s)
        return s

    def start(self) -> KernelWatch:
        def run() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.sample()
                except Exception:  # noqa: BLE001 - a missed poll is counted, not fatal
                    self.errors += 1

        self._thread = threading.Thread(target=run, name="kernel-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def window(self, t0: float, t1: float) -> list[tuple[float, int, int, int, int]]:
        return [s for s in self.samples if t0 <= s[0] <= t1]


@contextlib.contextmanager
def live_lock(path: str = LOCK_PATH, timeout: float = 600.0, say=None) -> Iterator[None]:
    """The exclusive flock every change of the kernel's audit state holds (waits up to ``timeout``).

    ``collector.transport.live_lock`` itself, which is re-entrant within a process (a test
    fixture holding it can run the benchmark) and takes a timeout, so that a lock held
    elsewhere for too long is an error, not a hang. One try without waiting first, so that
    ``say`` can tell why the benchmark does not start.
    """
    from collector.transport import live_lock as held

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(held(path, timeout=0))
        except TimeoutError:
            if say:
                say(f"waiting for the live lock {path}")
            stack.enter_context(held(path, timeout=timeout))
        yield


# --- CPU of a process tree -------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system, reaped children included) of ``pid`` and its live descendants."""
    total = 0.0
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat", encoding="ascii", errors="replace") as f:
                parts = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields after the comm: state(3) ... utime(14) stime(15) cutime(16) cstime(17)
        total += sum(int(x) for x in parts[11:15]) / _TICK
        todo.extend(_children(p))
    return total


# --- collectors ---------------------------------------------------------------------------------------------


class KauditCollector:
    """``kaudit collect`` as the registered daemon: as it is (``kaudit``, its default receiver) or
    with ``--receiver off`` (``kaudit-noreceiver``)."""

    def __init__(self, workdir: Path, *, receiver: bool, backlog_limit: int, backlog_wait_time: int) -> None:
        self.name = "kaudit" if receiver else "kaudit-noreceiver"
        self.workdir = workdir
        self.receiver = receiver
        self.rows_path = workdir / f"{self.name}.jsonl"
        self.stats_path = workdir / f"{self.name}.stats.json"
        self.stderr_path = workdir / f"{self.name}.stderr"
        self.flags = [
            "--audit_allow_config",
            "--audit_allow_sockets",
            "--audit_allow_process_events",
            "--audit_allow_failed_socket_events",
            "--audit_allow_accept_socket_events=false",
            f"--audit_backlog_limit={backlog_limit}",
            f"--audit_backlog_wait_time={backlog_wait_time}",
        ]
        self.proc: subprocess.Popen | None = None
        self.how = ""

    def command(self) -> list[str]:
        common = [
            "--endpoint", "kernel", "--no-lock", "--state-file", "none", "--status-interval", "1",
            "--output", str(self.rows_path), "--stats-json", str(self.stats_path), *self.flags,
        ]
        if self.receiver:
            self.how = "kaudit collect"  # its default receiver (process)
            return [sys.executable, "-m", "collector.cli", "collect", *common]
        self.how = "kaudit collect --receiver off"
        return [sys.executable, "-m", "collector.cli", "collect", "--receiver", "off", *common]

    def start(self) -> int:
        err = open(self.stderr_path, "wb")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                self.command(), cwd=REPO_ROOT, env=_child_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_pdeathsig(signal.SIGTERM),
            )
        finally:
            err.close()
        return self.proc.pid

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def progress(self) -> int:
        """Bytes of rows written so far (drain detection)."""
        try:
            return self.rows_path.stat().st_size
        except OSError:
            return 0

    def stop(self, timeout: float = 60.0) -> int | None:
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        return p.returncode

    def stderr_tail(self) -> str:
        try:
            return " | ".join(self.stderr_path.read_text(errors="replace").strip().splitlines()[-4:])
        except OSError:
            return ""

    def results(self, worker_pids: set[int], exec_parents: set[int]) -> dict:
        out: dict = {}
        try:
            stats = json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            stats = {}
        out["records"] = stats.get("records")
        out["rows"] = stats.get("rows")
        out["events"] = stats.get("events")
        out["collector_kernel"] = stats.get("kernel")
        out["ledger_balanced"] = (stats.get("ledger") or {}).get("balanced")
        out["transport"] = stats.get("transport")
        worker_rows = 0
        try:
            with open(self.rows_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue
                    table = row.get("table")
                    if (table == "socket_events" and row.get("pid") in worker_pids) or (
                        table == "process_events" and row.get("parent") in exec_parents
                    ):
                        worker_rows += 1
        except OSError:
            pass
        out["worker_rows"] = worker_rows
        return out


class AuditdCollector:
    """auditd as the registered daemon; the bench sets the status and rules it does not set itself."""

    name = "auditd"

    def __init__(self, workdir: Path, kernel: Kernel, *, backlog_limit: int, backlog_wait_time: int,
                 log_format: str) -> None:
        self.workdir = workdir
        self.kernel = kernel
        self.backlog_limit = backlog_limit
        self.backlog_wait_time = backlog_wait_time
        self.daemon = AuditdDaemon(workdir / "auditd", log_format=log_format)
        self.how = f"auditd -n -s nochange -c CONFDIR (log_format={log_format})"

    def start(self) -> int:
        self.kernel.set(backlog_limit=self.backlog_limit, backlog_wait_time=self.backlog_wait_time)
        for rule in _planned_rules():
            try:
                self.kernel.add_rule(rule.encode())
            except OSError as exc:
                if exc.errno != errno.EEXIST:  # already there (a stale kaudit rule found): fine
                    raise
        self.kernel.set(enabled=1)
        self.daemon.workdir.mkdir(parents=True, exist_ok=True)
        self.daemon.start()
        return self.daemon.pid

    @property
    def pid(self) -> int | None:
        return self.daemon.pid

    def progress(self) -> int:
        try:
            return self.daemon.log_file.stat().st_size
        except OSError:
            return 0

    def stop(self, timeout: float = 30.0) -> int | None:
        self.daemon.grace = timeout
        return self.daemon.stop()

    def stderr_tail(self) -> str:
        return self.daemon.stderr_tail()

    def results(self, worker_pids: set[int], exec_parents: set[int]) -> dict:
        records = events = worker_events = 0
        daemon_records = 0
        wp = {str(p).encode() for p in worker_pids}
        ep = {str(p).encode() for p in exec_parents}
        try:
            with open(self.daemon.log_file, "rb") as f:
                for line in f:
                    if not line.startswith(b"type="):
                        continue
                    if line.startswith(b"type=DAEMON_"):
                        daemon_records += 1
                        continue
                    records += 1
                    if line.startswith(b"type=EOE "):
                        events += 1
                    elif line.startswith(b"type=SYSCALL "):
                        pid = _field(line, b" pid=")
                        ppid = _field(line, b" ppid=")
                        if (pid in wp and b" syscall=42 " in line) or (b" syscall=59 " in line and ppid in ep):
                            worker_events += 1
        except OSError:
            pass
        return {"records": records, "events": events, "worker_rows": worker_events, "rows": None,
                "daemon_records": daemon_records}


def _planned_rules() -> list:
    """The rules ``kaudit collect`` installs for both tables (key ``kaudit``): auditd gets the same."""
    from collector.config import KernelConfig
    from collector.flags import AuditFlags

    flags = AuditFlags(allow_config=True, allow_sockets=True, allow_process_events=True,
                       allow_accept_socket_events=False)
    return KernelConfig(None, flags).planned_rules()


def _field(line: bytes, key: bytes) -> bytes | None:
    i = line.find(key)
    if i < 0:
        return None
    j = line.find(b" ", i + len(key))
    return line[i + len(key) : j if j >= 0 else None]


# --- one run ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class StormResult:
    storm: str
    collector: str
    how: str = ""
    duration_s: float = 0.0
    calls: int = 0
    calls_per_s: float | None = None
    records: int | None = None  # received by the collector
    records_per_s: float | None = None  # over the storm window
    kernel_lost: int | None = None
    peak_backlog: int | None = None
    backlog_wait_actual: int | None = None  # jiffies audited tasks waited for backlog room (wait time > 0)
    backlog_limit: int = 0
    backlog_wait_time: int = 0
    cpu_storm_s: float | None = None
    cpu_percent: float | None = None  # over the storm window (100 = one core)
    cpu_total_s: float | None = None  # storm + drain
    cpu_ms_per_1k_records: float | None = None
    drain_s: float | None = None  # after the storm, until the collector's output stopped growing
    rows: int | None = None  # all rows kaudit wrote
    worker_rows: int | None = None  # rows (or auditd SYSCALL events) for the workers' calls
    events_generated: int = 0  # the workers' calls
    extra: dict = field(default_factory=dict)
    kernel_series: list = field(default_factory=list)  # (t, backlog, lost) every 50 ms
    restore_notes: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait(pred, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def run_one(storm: str, collector_name: str, kernel: Kernel, baseline: KernelSnapshot, workdir: Path, *,
            duration: float, backlog_limit: int, backlog_wait_time: int, port: int, drain_timeout: float,
            auditd_log_format: str, say) -> StormResult:
    res = StormResult(storm, collector_name, duration_s=duration, backlog_limit=backlog_limit,
                      backlog_wait_time=backlog_wait_time)
    rundir = workdir / f"{storm}-{collector_name}"
    rundir.mkdir(parents=True, exist_ok=True)
    if collector_name == "auditd":
        coll = AuditdCollector(rundir, kernel, backlog_limit=backlog_limit, backlog_wait_time=backlog_wait_time,
                               log_format=auditd_log_format)
    else:
        coll = KauditCollector(rundir, receiver=collector_name != "kaudit-noreceiver",
                               backlog_limit=backlog_limit, backlog_wait_time=backlog_wait_time)
    watch = KernelWatch(kernel)
    workers: list[subprocess.Popen] = []
    try:
        pid = coll.start()
        res.how = coll.how
        if not _wait(lambda: kernel.status().pid == pid and kernel.status().enabled == 1, 30, 0.1):
            raise RuntimeError(f"{collector_name} did not register as the audit daemon: {coll.stderr_tail()}")
        st = kernel.status()
        if st.backlog_limit != backlog_limit or st.backlog_wait_time != backlog_wait_time:
            raise RuntimeError(f"kernel has backlog_limit={st.backlog_limit} wait={st.backlog_wait_time}")
        want = len(_planned_rules())
        if not _wait(lambda: kernel.keyed_rules(KAUDIT_KEY) >= want, 30, 0.1):
            raise RuntimeError(f"{collector_name}: the rules did not appear: {coll.stderr_tail()}")
        time.sleep(0.5)  # let start-up records (config changes) drain
        for kind in WORKERS[storm]:
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "bench.storm", "_worker", kind, str(duration), str(port)],
                cwd=REPO_ROOT, env=_child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                preexec_fn=_pdeathsig(signal.SIGKILL),
            ))
        for w in workers:
            if w.stdout.readline().strip() != "ready":
                raise RuntimeError("a storm worker did not start")
        watch.start()
        first = watch.sample()
        cpu0 = tree_cpu(pid)
        say(f"  {storm} storm, {collector_name}: {duration:g} s")
        t0 = time.monotonic()
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        outs = []
        for w in workers:
            out, _ = w.communicate(timeout=duration + 60)
            outs.append(json.loads(out.strip().splitlines()[-1]))
        t1 = time.monotonic()
        cpu1 = tree_cpu(pid)
        # drain: until the output stops growing for 1 s and the kernel's backlog is empty
        last, last_change = coll.progress(), time.monotonic()
        while time.monotonic() - t1 < drain_timeout:
            time.sleep(0.2)
            cur = coll.progress()
            if cur != last:
                last, last_change = cur, time.monotonic()
            elif time.monotonic() - last_change >= 1.0 and watch.samples[-1][1] == 0:
                break
        t2 = last_change
        cpu2 = tree_cpu(pid)
        final = watch.sample()
        watch.stop()
        res.calls = sum(o["calls"] for o in outs)
        res.events_generated = res.calls
        storm_s = t1 - t0
        res.calls_per_s = res.calls / storm_s
        res.kernel_lost = (final[2] - first[2]) & 0xFFFFFFFF
        res.backlog_wait_actual = (final[4] - first[4]) & 0xFFFFFFFF
        series = watch.window(first[0], final[0])
        res.peak_backlog = max(s[1] for s in series) if series else None
        res.kernel_series = [(round(s[0] - t0, 3), s[1], s[2] - first[2]) for s in series]
        res.cpu_storm_s = cpu1 - cpu0
        res.cpu_percent = 100 * (cpu1 - cpu0) / storm_s
        res.cpu_total_s = cpu2 - cpu0
        res.drain_s = max(0.0, t2 - t1)
        rc = coll.stop()
        worker_pids = {o["pid"] for o in outs if o["kind"] == "connect"}
        exec_parents = {o["pid"] for o in outs if o["kind"] == "execve"}
        got = coll.results(worker_pids, exec_parents)
        res.records = got.get("records")
        res.rows = got.get("rows")
        res.worker_rows = got.get("worker_rows")
        res.extra = {k: v for k, v in got.items() if k not in ("records", "rows", "worker_rows")}
        res.extra["exit_status"] = rc
        res.extra["workers"] = outs
        if res.records:
            res.records_per_s = res.records / storm_s
            res.cpu_ms_per_1k_records = 1000 * res.cpu_total_s / (res.records / 1000)
        if collector_name != "auditd" and rc not in (0, 130):
            res.error = f"kaudit collect exited {rc}: {coll.stderr_tail()}"
    except Exception as exc:  # noqa: BLE001 - reported in the table; the restore still runs
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        watch.stop()
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        try:
            coll.stop()
        finally:
            time.sleep(0.2)
            res.restore_notes = kernel.restore(baseline)
            after = kernel.snapshot()
            if after.status != baseline.status or after.rules != baseline.rules:
                res.restore_notes.append("RESTORE INCOMPLETE: kernel differs from the state found")
                res.error = res.error or "kernel state not restored"
    return res


def run_storm_bench(
    storms: tuple[str, ...] = STORMS,
    collectors: tuple[str, ...] = DEFAULT_COLLECTORS,
    *,
    duration: float = 10.0,
    backlog_limit: int = 8192,
    backlog_wait_time: int = 0,
    port: int = CLOSED_PORT,
    drain_timeout: float = 120.0,
    auditd_log_format: str = "ENRICHED",
    workdir: str | os.PathLike[str] | None = None,
    keep: bool = False,
    lock_path: str = LOCK_PATH,
    progress=None,
) -> dict:
    """Every storm with every collector, the kernel restored after each; the report (JSON-ready)."""
    say = progress or (lambda msg: None)
    for s in storms:
        if s not in STORMS:
            raise ValueError(f"unknown storm {s!r} (known: {', '.join(STORMS)})")
    for c in collectors:
        if c not in COLLECTORS:
            raise ValueError(f"unknown collector {c!r} (known: {', '.join(COLLECTORS)})")
    if "auditd" in collectors and (why := unavailable("auditd")):
        raise FileNotFoundError(why)
    if any(s in ("connect", "mixed") for s in storms):
        if not _port_is_closed(port):
            raise ValueError(f"port {port} on 127.0.0.1 accepts connections; the connect storm needs a closed port")
    from collector.transport import kernel_unreachable_reason

    why = kernel_unreachable_reason()
    if why:
        raise RuntimeError(why)
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="kaudit-bench-storm-"))
    base.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "benchmark": "storm",
        "machine": machine_info(),
        "versions": peer_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {"duration_s": duration, "backlog_limit": backlog_limit, "backlog_wait_time": backlog_wait_time,
                     "auditd_log_format": auditd_log_format, "poll_s": POLL_S, "hz": _hz()},
        "runs": [],
    }
    try:
        with live_lock(lock_path, say=say):
            kernel = Kernel()
            try:
                baseline = kernel.snapshot()
                if baseline.status["enabled"] == 2:
                    raise RuntimeError("the kernel's audit is immutable (enabled=2): nothing can be configured")
                if baseline.pid and _pid_alive(baseline.pid):
                    raise RuntimeError(f"an audit daemon (pid {baseline.pid}) is registered; stop it first")
                stale = kernel.keyed_rules(KAUDIT_KEY)
                report["kernel_found"] = {"status": baseline.status, "pid": baseline.pid,
                                          "rules": len(baseline.rules), "kaudit_rules": stale}
                if stale:
                    say(f"note: the kernel was found with {stale} rule(s) keyed 'kaudit' (a killed run's?); "
                        "kaudit collect removes them at start, the restore puts them back as found")
                for storm in storms:
                    for c in collectors:
                        r = run_one(storm, c, kernel, baseline, base, duration=duration,
                                    backlog_limit=backlog_limit, backlog_wait_time=backlog_wait_time, port=port,
                                    drain_timeout=drain_timeout, auditd_log_format=auditd_log_format, say=say)
                        report["runs"].append(r.as_dict())
                        if r.error:
                            say(f"    {c}: {r.error}")
                final = kernel.snapshot()
                report["kernel_restored"] = final.status == baseline.status and final.rules == baseline.rules
            finally:
                kernel.close()
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return report


# --- output ---------------------------------------------------------------------------------------------


def _hz() -> int:
    """CONFIG_HZ (backlog_wait_time and its actual counterpart are in jiffies)."""
    try:
        from simulator.conformance import detect_hz

        return detect_hz()
    except Exception:  # noqa: BLE001 - the simulator is optional here
        return 250


def _f(x, spec: str, width: int) -> str:
    return "-".rjust(width) if x is None else format(x, spec).rjust(width)


def format_report(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"kaudit bench storm  ({report['started']}, {s['duration_s']:g} s per storm, backlog limit "
        f"{s['backlog_limit']}, backlog wait time {s['backlog_wait_time']})",
        machine_line(report["machine"]),
        f"auditd {report['versions'].get('auditd') or 'n/a'} (log_format={s['auditd_log_format']})",
        "",
        f"  {'storm':8s} {'collector':17s} {'calls/s':>8s} {'records/s':>10s} {'lost':>8s} {'peak bl':>7s} "
        f"{'CPU%':>5s} {'ms CPU/1k rec':>13s} {'drain s':>7s} {'rows/calls':>17s} {'waited s':>8s}",
    ]
    hz = s.get("hz") or 250
    for r in report["runs"]:
        if r["error"] and r["calls"] == 0:
            lines.append(f"  {r['storm']:8s} {r['collector']:17s} failed: {r['error']}")
            continue
        rows = (
            f"{r['worker_rows']:,}/{r['events_generated']:,}" if r["worker_rows"] is not None else "-"
        )
        lines.append(
            f"  {r['storm']:8s} {r['collector']:17s} {_f(r['calls_per_s'], ',.0f', 8)} "
            f"{_f(r['records_per_s'], ',.0f', 10)} {_f(r['kernel_lost'], ',d', 8)} {_f(r['peak_backlog'], 'd', 7)} "
            f"{_f(r['cpu_percent'], '.0f', 5)} {_f(r['cpu_ms_per_1k_records'], '.1f', 13)} "
            f"{_f(r['drain_s'], '.1f', 7)} {rows:>17s} "
            f"{_f(None if r.get('backlog_wait_actual') is None else r['backlog_wait_actual'] / hz, '.1f', 8)}"
            + (f"  ERROR: {r['error']}" if r["error"] else "")
        )
    lines.append("")
    lines.append("kernel state restored after every run: " + ("yes" if report.get("kernel_restored") else "NO"))
    lines.append("rows/calls: kaudit rows for the workers' calls (auditd: SYSCALL records) / calls made")
    lines.append("waited s: time audited tasks slept for room in the backlog (backlog_wait_time_actual)")
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------------------


def _list(allowed: tuple[str, ...], what: str):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        bad = [x for x in items if x not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or '(none)'}; known: {', '.join(allowed)}")
        return items

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storms", type=_list(STORMS, "storm"), default=STORMS, metavar="S,S",
                   help=f"storms to run (default {','.join(STORMS)})")
    p.add_argument("--collectors", type=_list(COLLECTORS, "collector"), default=DEFAULT_COLLECTORS, metavar="C,C",
                   help=f"collectors, of {','.join(COLLECTORS)} (default {','.join(DEFAULT_COLLECTORS)}; "
                   "kaudit-noreceiver is kaudit collect --receiver off, for comparison)")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="storm length (default 10 s)")
    p.add_argument("--backlog-limit", type=int, default=8192, metavar="N", help="kernel backlog limit (default 8192)")
    p.add_argument("--backlog-wait-time", type=int, default=0, metavar="N",
                   help="kernel backlog wait time, jiffies (default 0: drop when full)")
    p.add_argument("--port", type=int, default=CLOSED_PORT, metavar="N", help="closed loopback port for connect")
    p.add_argument("--drain-timeout", type=float, default=120.0, metavar="S",
                   help="longest wait for a collector to catch up after the storm (default 120)")
    p.add_argument("--auditd-log-format", choices=("ENRICHED", "RAW"), default="ENRICHED",
                   help="auditd's log_format (Debian ships ENRICHED)")
    p.add_argument("--work-dir", metavar="DIR", help="where logs and rows go (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the logs and rows")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw the kernel backlog over time per storm (matplotlib)")
    p.add_argument("--lock", default=LOCK_PATH, metavar="PATH", help="the live lock (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    say = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if os.geteuid() != 0:
        print("bench storm: needs root (it configures the kernel's audit)", file=sys.stderr)
        return 2
    try:
        report = run_storm_bench(
            args.storms, args.collectors, duration=args.duration, backlog_limit=args.backlog_limit,
            backlog_wait_time=args.backlog_wait_time, port=args.port, drain_timeout=args.drain_timeout,
            auditd_log_format=args.auditd_log_format, workdir=args.work_dir, keep=args.keep, lock_path=args.lock,
            progress=say,
        )
    except (FileNotFoundError, ValueError, RuntimeError, TimeoutError) as exc:
        print(f"bench storm: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    from bench.plot import plot_storm

    if write_outputs(report, args.json, args.plot, plot_storm, "storm"):
        return 2
    return 0 if report.get("kernel_restored") else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "storm",
        help="live storm benchmark: kaudit collect vs auditd under connect/execve storms (root)",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(p)
    p.set_defaults(func=run)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["_worker"]:
        print(json.dumps(_worker(argv[1], float(argv[2]), int(argv[3]))), flush=True)
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
