"""What a live workload is, what it promises, and the context it runs in.

A workload runs real programs and, from its own ground truth (the pid of the process it
started, the argv it passed, the cwd, the address and port it used, what its helper reported
back), declares the rows the collector must produce for it. The declaration lists only the
columns the workload knows; the matcher (``simulator.verify``) compares exactly those.

Rows are attributed to a workload by pid: every process a workload starts is recorded in its
context (``ctx.spawn`` does it; grandchildren reported by a helper are added with
``ctx.add_pid``), so any row from those pids that no expectation claims is *unexpected*.
That is what makes a workload a two-sided check: a missing row and an extra row both fail.

Spawning goes through ``subprocess`` on purpose: CPython 3.11 starts a child with ``vfork``
(no ``preexec_fn``, no uid/gid change), so the fork row the kernel reports for our own child is
known exactly and can be declared, instead of being waved through.
"""

from __future__ import annotations

import json
import os
import platform
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from simulator.workloads.netns import TestNet

__all__ = [
    "Child",
    "ExpectedRow",
    "Identity",
    "WireExpectation",
    "Workload",
    "WorkloadContext",
    "WorkloadError",
    "exec_row",
    "family_of",
    "osq_address",
    "process_row",
    "socket_row",
]

# the helper program every python-side workload runs (stdlib only, so `-I -S` works)
PROG = Path(__file__).resolve().with_name("prog.py")

TABLES = ("socket_events", "process_events")


class WorkloadError(RuntimeError):
    """A workload could not do what it set out to do (a helper failed, a port was taken...).

    This is an environment or harness problem, not a collector mismatch: verify reports it as
    an error of that workload, with this message.
    """


@dataclass(slots=True)
class ExpectedRow:
    """One row a workload says the collector must emit, by the columns it knows.

    ``columns`` holds osquery column names -> exact values (ints for integer columns).
    ``optional`` marks a row that may be absent but, if present, must match: for behaviour
    of a third-party program the workload cannot pin down (none of the shipped workloads needs
    it today; it exists so one never has to widen ``unexpected`` instead).
    """

    table: str
    columns: dict[str, Any]
    why: str = ""
    optional: bool = False

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise ValueError(f"ExpectedRow: unknown table {self.table!r} (known: {', '.join(TABLES)})")
        if "pid" not in self.columns:
            raise ValueError(f"ExpectedRow {self.why or self.columns!r}: a row must name its pid")

    @property
    def kind(self) -> str:
        """``action`` for socket rows, ``syscall`` for process rows (the row's verb)."""
        key = "action" if self.table == "socket_events" else "syscall"
        return str(self.columns.get(key, "?"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "columns": dict(self.columns),
            "why": self.why,
            "optional": self.optional,
        }


def socket_row(
    action: str, pid: int, *, why: str = "", optional: bool = False, **columns: Any
) -> ExpectedRow:
    """An expected ``socket_events`` row."""
    return ExpectedRow("socket_events", {"action": action, "pid": pid, **columns}, why, optional)


def process_row(
    syscall: str, pid: int, *, why: str = "", optional: bool = False, **columns: Any
) -> ExpectedRow:
    """An expected ``process_events`` row."""
    return ExpectedRow("process_events", {"syscall": syscall, "pid": pid, **columns}, why, optional)


@dataclass(slots=True, frozen=True)
class WireExpectation:
    """A packet a network workload must have put on the veth: the second ground truth.

    ``proto`` is ``tcp`` (a SYN is expected) or ``udp`` (a datagram). Ports of 0 mean
    "any" (used only for a source port the kernel picked and the client could not report).
    """

    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    why: str = ""

    def describe(self) -> str:
        kind = "SYN" if self.proto == "tcp" else "UDP datagram"
        return f"{kind} {_hostport(self.src, self.sport)} -> {_hostport(self.dst, self.dport)}"


def _hostport(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@dataclass(slots=True, frozen=True)
class Identity:
    """Who the verify process is, as the kernel will report it for our children.

    Read from the process itself (``/proc/self/loginuid`` for auid), so the expectation
    holds on the host and in a container alike.
    """

    pid: int
    exe: str
    auid: int
    uid: int
    euid: int
    gid: int
    egid: int
    spawn_syscall: str

    @classmethod
    def current(cls) -> Identity:
        try:
            auid = int(Path("/proc/self/loginuid").read_text().strip())
        except (OSError, ValueError):
            auid = 4294967295
        return cls(
            pid=os.getpid(),
            exe=os.readlink("/proc/self/exe"),
            auid=auid,
            uid=os.getuid(),
            euid=os.geteuid(),
            gid=os.getgid(),
            egid=os.getegid(),
            spawn_syscall=spawn_syscall(),
        )

    def ids(self) -> dict[str, int]:
        """The identity columns every row of our children carries (children inherit them)."""
        return {"auid": self.auid, "uid": self.uid, "euid": self.euid, "gid": self.gid, "egid": self.egid}


def exec_row(
    syscall: str,
    pid: int,
    parent: int,
    exe: str,
    argv: Sequence[str],
    cwd: str,
    identity: Identity,
    *,
    why: str,
) -> ExpectedRow:
    """The process_events row of a successful exec, with every column the exec's caller knows.

    ``mode``, ``owner_uid`` and ``owner_gid`` come from stat()ing the executable now: the
    kernel's PATH record for it says the same unless the file changes during the run.
    """
    cmdline = " ".join(argv)
    st = os.stat(exe)
    return process_row(
        syscall,
        pid,
        parent=parent,
        path=exe,
        cmdline=cmdline,
        cmdline_size=len(cmdline.encode("utf-8", "surrogateescape")),
        cwd=cwd,
        mode=f"0{st.st_mode:o}",
        owner_uid=st.st_uid,
        owner_gid=st.st_gid,
        why=why,
        **identity.ids(),
    )


def osq_address(addr: str) -> str:
    """An IP address as socket_events spells it: dotted quad, or IPv6 as eight lower-case
    groups of four hex digits, never compressed (osquery's spelling)."""
    import ipaddress

    ip = ipaddress.ip_address(addr)
    return ip.exploded if ip.version == 6 else str(ip)


def family_of(addr: str) -> int:
    return 10 if ":" in addr else 2


def spawn_syscall() -> str:
    """The syscall ``subprocess.Popen`` creates a child with, as process_events names it.

    CPython's ``_posixsubprocess`` calls ``vfork()`` when it may (``_USE_VFORK``, no
    preexec_fn, no credential change); glibc's vfork is the vfork syscall on x86-64 and a
    ``clone(CLONE_VM|CLONE_VFORK)`` where the architecture has no vfork syscall. Otherwise it
    forks, which glibc implements with clone.
    """
    if getattr(subprocess, "_USE_VFORK", False) and platform.machine() in ("x86_64", "i686", "i386"):
        return "vfork"
    return "clone"


def resolve_exe(program: str) -> str:
    """The path the kernel reports as ``exe`` for a program: PATH lookup, then every symlink."""
    found = program if os.sep in program else shutil.which(program)
    if not found:
        raise WorkloadError(f"program {program!r} not found on PATH")
    return os.path.realpath(found)


@dataclass(slots=True)
class Child:
    """A process a workload started, with its pid, argv and a line reader for its stdout.

    Helper programs speak one JSON object per line on stdout; ``read_json`` waits for the next
    one with a deadline so that a stuck helper is an error, never a hang.
    """

    proc: subprocess.Popen[bytes]
    argv: list[str]
    cwd: str
    exe: str
    identity: Identity
    _buf: bytes = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def spawn_rows(self, *, why: str = "") -> list[ExpectedRow]:
        """The rows our starting this child must produce: the fork row and the execve row."""
        me = self.identity
        label = why or os.path.basename(self.argv[0])
        return [
            process_row(
                me.spawn_syscall,
                self.pid,
                parent=me.pid,
                path=me.exe,
                why=f"verify starts {label} ({me.spawn_syscall})",
                **me.ids(),
            ),
            self.execve_row(self.exe, self.argv, why=f"{label} execve"),
        ]

    def execve_row(self, exe: str, argv: Sequence[str], *, why: str, syscall: str = "execve") -> ExpectedRow:
        """An exec of ``argv`` by this child (its first exec, or a later one from a helper)."""
        return exec_row(syscall, self.pid, self.identity.pid, exe, argv, self.cwd, self.identity, why=why)

    def read_json(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next JSON line the child prints; WorkloadError on EOF, bad JSON or timeout."""
        deadline = time.monotonic() + timeout
        out = self.proc.stdout
        assert out is not None
        fd = out.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkloadError(f"{self.describe()}: no output within {timeout:.0f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                err = self._stderr()
                raise WorkloadError(f"{self.describe()}: exited before reporting{': ' + err if err else ''}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise WorkloadError(
                f"{self.describe()}: printed a line that is not JSON: {line[:200]!r}"
            ) from exc
        if not isinstance(obj, dict):
            raise WorkloadError(f"{self.describe()}: printed {obj!r}, expected a JSON object")
        if "error" in obj:
            raise WorkloadError(f"{self.describe()}: {obj['error']}")
        return obj

    def wait(self, timeout: float = 10.0) -> int:
        """Exit status; the child is killed (it is ours) if it outlives ``timeout``."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise WorkloadError(f"{self.describe()}: still running after {timeout:.0f}s, killed") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def _stderr(self) -> str:
        err = self.proc.stderr
        if err is None:
            return ""
        try:
            ready, _, _ = select.select([err.fileno()], [], [], 0.5)
            data = os.read(err.fileno(), 4000) if ready else b""
        except OSError:
            data = b""
        return data.decode("utf-8", "replace").strip().splitlines()[-1] if data.strip() else ""

    def describe(self) -> str:
        return f"pid {self.pid} ({os.path.basename(self.argv[0])} {' '.join(self.argv[1:3])[:60]})"


@dataclass(slots=True)
class WorkloadContext:
    """What a workload may use: a private cwd, the interpreter, the test network, spawning.

    The context records every pid the workload starts (``pids``) and the packets it promises
    (``wire``); verify reads both after ``run`` returns.
    """

    workdir: Path
    net: TestNet | None = None
    python: str = field(default_factory=lambda: sys.executable)
    identity: Identity = field(default_factory=Identity.current)
    pids: set[int] = field(default_factory=set)
    wire: list[WireExpectation] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)

    @property
    def python_exe(self) -> str:
        return os.path.realpath(self.python)

    def spawn(self, argv: Sequence[str], *, cwd: Path | None = None) -> Child:
        """Start ``argv`` (stdout piped for JSON lines) and record its pid as this workload's."""
        argv = [str(a) for a in argv]
        exe = resolve_exe(argv[0])
        workdir = str(cwd or self.workdir)
        try:
            # executable= : exec the resolved path once, instead of execvp trying each PATH entry
            # (every miss would be a failed execve in the audit trail)
            proc = subprocess.Popen(
                argv,
                executable=exe,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            raise WorkloadError(f"cannot start {argv[0]}: {exc}") from exc
        child = Child(proc, argv, workdir, exe, self.identity)
        self.pids.add(proc.pid)
        self.children.append(child)
        return child

    def prog(self, *args: Any, cwd: Path | None = None) -> Child:
        """Start the helper program (``prog.py``) with ``args``; see that module for commands."""
        return self.spawn([self.python, "-I", "-S", str(PROG), *map(str, args)], cwd=cwd)

    def add_pid(self, pid: int) -> None:
        """A process a helper started and reported: its rows belong to this workload too."""
        self.pids.add(int(pid))

    def expect_packet(self, proto: str, src: str, sport: int, dst: str, dport: int, why: str = "") -> None:
        if self.net is None:
            raise WorkloadError("expect_packet: this workload has no test network")
        self.wire.append(WireExpectation(proto, src, sport, dst, dport, why))

    def reap(self) -> None:
        """Kill what is still running (our own children only) and close their pipes."""
        for child in self.children:
            child.kill()
            for stream in (child.proc.stdout, child.proc.stderr):
                if stream is not None:
                    stream.close()


class Workload:
    """Base class: subclasses set ``name``, ``description``, ``needs_network`` and ``run``.

    ``run(ctx)`` does the work and returns the expected rows. It raises WorkloadError when the
    environment prevents the work (then nothing is matched for it and it is reported as an
    error). It must finish in bounded time: every wait has a timeout.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_network: ClassVar[bool] = False

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<workload {self.name}>"
