"""``kaudit verify``: run real workloads under a live collector and check every row they cause.

The chain under test is the whole of it: the real kernel's audit, the collector's transport,
parser, publisher and tables, and the JSON-lines sink. The workloads (``simulator.workloads``)
each know, from their own ground truth, the rows they must cause; this module

1. takes the live lock and records the kernel's audit status and rules;
2. makes the test network (only if a selected workload needs it) and starts the wire capture;
3. starts the collector as a subprocess (``kaudit collect --output FILE`` with sockets, failed,
   unix, accept and fork events on; in its own process group and with ``--exit-with-parent``,
   so that even a SIGKILLed verify leaves no collector configuring the kernel) and waits for a
   *barrier*: a canary process whose row must appear in the output, which proves the rules
   are in and rows flow;
4. runs the workloads, one at a time, with a progress line;
5. runs a closing barrier (every earlier event is then written), stops the collector;
6. matches rows per workload: missing, unexpected (from the workload's pids), wrong values;
   checks each promised packet against the capture;
7. checks that the kernel's audit status and rules are what they were, and that no network
   namespace of ours is left.

Rows are attributed to a workload by pid: a row belongs to it when its ``pid`` is one the
workload started (or reported), or, for process_events, when its ``parent`` is (an undeclared
fork or exec by one of its processes is then caught as unexpected). Rows of other processes on
the machine are ignored.

Exit status: 0 everything matched; 1 a mismatch, a workload error, a packet not seen, or the
kernel not restored; 2 the run could not happen (not root, audit unreachable, collector did
not start, lock busy), with the reason on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree as ET

from simulator.workloads.base import ExpectedRow, WireExpectation, Workload, WorkloadContext, WorkloadError
from simulator.workloads.netns import SignalGuard

__all__ = [
    "COLLECTOR_FLAGS",
    "KernelState",
    "LiveRun",
    "RowCheck",
    "VerifyError",
    "VerifyOptions",
    "VerifyReport",
    "WorkloadResult",
    "attribute_rows",
    "check_times",
    "match_rows",
    "render_result",
    "run_verify",
    "write_junit",
]

LIVE_LOCK = Path("/tmp/kaudit-live.lock")
#: The osquery flags verify runs the collector with: every row kind the workloads exercise.
COLLECTOR_FLAGS = (
    "--audit_allow_sockets",
    "--audit_allow_process_events",
    "--audit_allow_failed_socket_events",
    "--audit_allow_accept_socket_events",
    "--audit_allow_unix",
    "--audit_allow_fork_process_events",
)
BARRIER_WORD = "kaudit-verify-barrier"


class VerifyError(RuntimeError):
    """The run could not happen (exit 2): the message says what is missing and what to do."""


# ---------------------------------------------------------------------------------------------
# matching


@dataclass(slots=True)
class RowCheck:
    """One expectation and what became of it.

    ``result``: ``ok``; ``wrong`` (a row of the same table, pid and verb exists but some
    columns differ: ``diffs`` maps column -> (expected, actual)); ``missing``; ``absent`` (an
    optional row that did not appear, which is fine).
    """

    expected: ExpectedRow
    result: str
    actual: dict[str, Any] | None = None
    diffs: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result in ("ok", "absent")


def attribute_rows(rows: Sequence[dict[str, Any]], pids: set[int]) -> list[dict[str, Any]]:
    """The rows that belong to a workload whose processes are ``pids`` (see module doc)."""
    out = []
    for row in rows:
        if row.get("pid") in pids:
            out.append(row)
        elif row.get("table") == "process_events" and row.get("parent") in pids:
            out.append(row)
    return out


def _same(expected: Any, actual: Any) -> bool:
    # exact: an int column must be an int in the row (the row contract), a str a str
    return type(expected) is type(actual) and expected == actual


_ABSENT = object()


def _differences(exp: ExpectedRow, row: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        k: (v, row.get(k, "<absent>")) for k, v in exp.columns.items() if not _same(v, row.get(k, _ABSENT))
    }


def _kind_of(row: dict[str, Any]) -> Any:
    return row.get("action") if row.get("table") == "socket_events" else row.get("syscall")


def match_rows(
    expected: Sequence[ExpectedRow], rows: Sequence[dict[str, Any]]
) -> tuple[list[RowCheck], list[dict[str, Any]]]:
    """Match expectations to a workload's rows; returns (checks in expectation order, unexpected).

    Exact matches are taken first for every expectation, so a near miss never steals the row an
    exact expectation needs. Then each unmatched expectation takes the closest unused row of
    the same table, pid and verb (most equal columns) and reports the differing columns. Rows
    left over are unexpected. Each row satisfies at most one expectation, so a duplicate row is
    unexpected too.
    """
    used = [False] * len(rows)
    checks: list[RowCheck | None] = [None] * len(expected)
    for i, exp in enumerate(expected):
        for j, row in enumerate(rows):
            if not used[j] and row.get("table") == exp.table and not _differences(exp, row):
                used[j] = True
                checks[i] = RowCheck(exp, "ok", row)
                break
    for i, exp in enumerate(expected):
        if checks[i] is not None:
            continue
        best, best_score = None, -1
        for j, row in enumerate(rows):
            if used[j] or row.get("table") != exp.table or row.get("pid") != exp.columns.get("pid"):
                continue
            if _kind_of(row) != exp.kind:
                continue
            score = len(exp.columns) - len(_differences(exp, row))
            if score > best_score:
                best, best_score = j, score
        if best is not None:
            used[best] = True
            checks[i] = RowCheck(exp, "wrong", rows[best], _differences(exp, rows[best]))
        else:
            checks[i] = RowCheck(exp, "absent" if exp.optional else "missing")
    unexpected = [row for j, row in enumerate(rows) if not used[j]]
    return [c for c in checks if c is not None], unexpected


def check_times(checks: Sequence[RowCheck], start: float, end: float, slack: int = 2) -> None:
    """A matched row's ``time`` (the event's audit timestamp, seconds) must fall while its
    workload ran, within ``slack`` seconds: the audit clock is the kernel's wall clock, the
    same one the workload read. A row outside is turned into a *wrong* check."""
    low, high = int(start) - slack, int(end) + 1 + slack
    for chk in checks:
        if chk.result != "ok" or chk.actual is None:
            continue
        t = chk.actual.get("time")
        if not isinstance(t, int) or not low <= t <= high:
            chk.result = "wrong"
            chk.diffs["time"] = (f"{int(start)}..{int(end) + 1}", t)


@dataclass(slots=True)
class WireCheck:
    expectation: WireExpectation
    seen: bool
    packet: str = ""


@dataclass(slots=True)
class WorkloadResult:
    """Everything verify knows about one workload after the run."""

    name: str
    description: str
    needs_network: bool
    duration: float = 0.0
    pids: list[int] = field(default_factory=list)
    checks: list[RowCheck] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    wire: list[WireCheck] = field(default_factory=list)
    error: str | None = None
    expected: list[ExpectedRow] = field(default_factory=list)
    wall: tuple[float, float] = (0.0, 0.0)  # time.time() when the workload started and ended

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and all(c.ok for c in self.checks)
            and not self.unexpected
            and all(w.seen for w in self.wire)
        )

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "ERROR"
        return "PASS" if self.ok else "FAIL"

    def counts(self) -> dict[str, int]:
        c = {"expected": len(self.checks), "matched": 0, "missing": 0, "wrong": 0, "absent": 0}
        for chk in self.checks:
            key = {"ok": "matched"}.get(chk.result, chk.result)
            c[key] += 1
        c["unexpected"] = len(self.unexpected)
        c["wire"] = len(self.wire)
        c["wire_seen"] = sum(1 for w in self.wire if w.seen)
        return c

    def problems(self) -> list[str]:
        """One line per failure, for JUnit messages and the summary."""
        out = []
        if self.error:
            out.append(f"error: {self.error}")
        for chk in self.checks:
            if chk.result == "missing":
                out.append(f"missing: {_describe_expected(chk.expected)}")
            elif chk.result == "wrong":
                diffs = ", ".join(f"{k}: expected {e!r}, got {a!r}" for k, (e, a) in chk.diffs.items())
                out.append(f"wrong values in {_describe_expected(chk.expected)}: {diffs}")
        for row in self.unexpected:
            out.append(f"unexpected: {_describe_row(row)}")
        for w in self.wire:
            if not w.seen:
                out.append(f"not on the wire: {w.expectation.describe()}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "duration": round(self.duration, 3),
            "pids": self.pids,
            "error": self.error,
            "counts": self.counts(),
            "problems": self.problems(),
            "checks": [
                {
                    "expected": c.expected.to_dict(),
                    "result": c.result,
                    "actual": c.actual,
                    "diffs": {k: list(v) for k, v in c.diffs.items()},
                }
                for c in self.checks
            ],
            "unexpected": self.unexpected,
            "wire": [{"packet": w.expectation.describe(), "seen": w.seen} for w in self.wire],
        }


# ---------------------------------------------------------------------------------------------
# rendering


def _short(text: str, n: int) -> str:
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= n else text[: n - 1] + "…"


def _addr(addr: Any, port: Any) -> str:
    a = str(addr)
    return f"[{a}]:{port}" if ":" in a else f"{a}:{port}"


def _key_columns(table: str, cols: dict[str, Any]) -> str:
    if table == "socket_events":
        if cols.get("socket"):
            where = f"socket={cols['socket']}"
        elif cols.get("action") == "bind":
            where = f"local={_addr(cols.get('local_address', '?'), cols.get('local_port', '?'))}"
        else:
            where = f"remote={_addr(cols.get('remote_address', '?'), cols.get('remote_port', '?'))}"
        return f"{where} {cols.get('status', '')}".strip()
    parts = [f"parent={cols.get('parent', '?')}"]
    if cols.get("cmdline") is not None and cols.get("syscall") in ("execve", "execveat"):
        parts.append(f"cmdline={cols.get('cmdline')}")
    elif cols.get("path"):
        parts.append(f"path={cols.get('path')}")
    return " ".join(parts)


def _describe_expected(exp: ExpectedRow) -> str:
    return (
        f"{exp.table} {exp.kind} pid={exp.columns.get('pid')} {_short(_key_columns(exp.table, exp.columns), 90)}"
        + (f" ({exp.why})" if exp.why else "")
    )


def _describe_row(row: dict[str, Any]) -> str:
    table = str(row.get("table"))
    return f"{table} {_kind_of(row)} pid={row.get('pid')} {_short(_key_columns(table, row), 90)}"


def render_result(res: WorkloadResult, *, width: int = 110) -> str:
    """The table verify prints for one workload (plain text, fixed columns)."""
    c = res.counts()
    head = (
        f"{res.verdict:<5} {res.name}  ({res.duration:.2f}s) — {c['matched']}/{c['expected']} rows matched"
        f", {c['missing']} missing, {c['wrong']} wrong, {c['unexpected']} unexpected"
    )
    if res.wire:
        head += f"; wire {c['wire_seen']}/{c['wire']}"
    lines = [head]
    if res.error:
        lines.append(f"      error: {res.error}")
    if res.checks or res.unexpected:
        lines.append(f"      {'result':<10} {'table':<8} {'verb':<9} {'pid':>7}  what")
    for chk in res.checks:
        exp = chk.expected
        tag = {"ok": "ok", "wrong": "WRONG", "missing": "MISSING", "absent": "absent"}[chk.result]
        what = _short(f"{exp.why}: {_key_columns(exp.table, exp.columns)}", width - 45)
        lines.append(
            f"      {tag:<10} {exp.table.split('_')[0]:<8} {exp.kind:<9} {exp.columns.get('pid'):>7}  {what}"
        )
        for k, (e, a) in chk.diffs.items():
            lines.append(f"{'':<18}{k}: expected {_short(repr(e), 60)}, got {_short(repr(a), 60)}")
    for row in res.unexpected:
        what = _short(_key_columns(str(row.get("table")), row), width - 45)
        lines.append(
            f"      {'UNEXPECTED':<10} {str(row.get('table')).split('_')[0]:<8} {str(_kind_of(row)):<9} "
            f"{row.get('pid'):>7}  {what}"
        )
    for w in res.wire:
        lines.append(
            f"      {'wire ok' if w.seen else 'NOT SEEN':<10} {'wire':<8} {w.expectation.proto:<9} {'':>7}  {w.expectation.describe()}"
        )
    return "\n".join(lines)


class Progress:
    """A progress bar on a terminal, one line per step otherwise (CI logs, pipes)."""

    def __init__(self, total: int, stream: IO[str], *, width: int = 24) -> None:
        self.total = total
        self.stream = stream
        self.width = width
        self.done = 0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def start(self, name: str) -> None:
        if self.tty:
            self._bar(f"running {name}")

    def finish(self, name: str, outcome: str, seconds: float) -> None:
        self.done += 1
        if self.tty:
            self._bar(f"{name}: {outcome}")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(
                f"[{self.done:>2}/{self.total}] {self._hashes()} {name}: {outcome} ({seconds:.2f}s)\n"
            )
        self.stream.flush()

    def _hashes(self) -> str:
        n = self.width * self.done // max(self.total, 1)
        return "[" + "#" * n + "." * (self.width - n) + "]"

    def _bar(self, text: str) -> None:
        self.stream.write(f"\r{self._hashes()} {self.done}/{self.total} {_short(text, 50):<50}")
        self.stream.flush()


# ---------------------------------------------------------------------------------------------
# JUnit


def write_junit(
    path: Path,
    results: Sequence[WorkloadResult],
    *,
    suite: str = "kaudit-verify",
    extra: Sequence[tuple[str, str | None]] = (),
) -> None:
    """JUnit XML: one testcase per workload, plus ``extra`` (name, failure message or None)."""
    failures = sum(1 for r in results if r.verdict == "FAIL") + sum(1 for _, msg in extra if msg)
    errors = sum(1 for r in results if r.verdict == "ERROR")
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results) + len(extra)),
        failures=str(failures),
        errors=str(errors),
        time=f"{sum(r.duration for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(root, "testcase", classname=suite, name=r.name, time=f"{r.duration:.3f}")
        if r.verdict == "ERROR":
            el = ET.SubElement(case, "error", message=_short(r.error or "", 500))
            el.text = render_result(r)
        elif r.verdict == "FAIL":
            probs = r.problems()
            el = ET.SubElement(case, "failure", message=_short(f"{len(probs)} problem(s): {probs[0]}", 500))
            el.text = "\n".join(probs) + "\n\n" + render_result(r)
        out = ET.SubElement(case, "system-out")
        out.text = render_result(r)
    for name, msg in extra:
        case = ET.SubElement(root, "testcase", classname=suite, name=name, time="0")
        if msg:
            el = ET.SubElement(case, "failure", message=_short(msg, 500))
            el.text = msg
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)


# ---------------------------------------------------------------------------------------------
# kernel state


@dataclass(slots=True, frozen=True)
class KernelState:
    """The audit state a collector must leave as it found it."""

    status: tuple[tuple[str, int], ...]
    rules: tuple[str, ...]

    def diff(self, after: KernelState) -> list[str]:
        out = []
        before_s, after_s = dict(self.status), dict(after.status)
        for k in before_s:
            if before_s[k] != after_s.get(k):
                out.append(f"status {k}: was {before_s[k]}, now {after_s.get(k)}")
        gone = [r for r in self.rules if r not in after.rules]
        new = [r for r in after.rules if r not in self.rules]
        out += [f"rule missing after the run: {r}" for r in gone]
        out += [f"rule left behind: {r}" for r in new]
        if not gone and not new and self.rules != after.rules:
            out.append("rules are the same but their order changed")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"status": dict(self.status), "rules": list(self.rules)}


STATE_FIELDS = ("enabled", "failure", "pid", "rate_limit", "backlog_limit", "backlog_wait_time")


def read_kernel_state() -> KernelState:
    """Read audit status and rules over NETLINK_AUDIT; VerifyError when audit is unreachable."""
    try:
        from collector.config import KernelConfig
        from collector.flags import AuditFlags
        from collector.transport import open_transport
    except ImportError as exc:
        raise VerifyError(f"the collector's kernel modules are not importable ({exc})") from exc
    try:
        transport = open_transport("kernel")
    except Exception as exc:
        raise VerifyError(f"the kernel's audit is unreachable over NETLINK_AUDIT: {exc}") from exc
    try:
        cfg = KernelConfig(transport, AuditFlags())
        status = cfg.get_status()
        rules = cfg.list_rules()
    except Exception as exc:
        raise VerifyError(f"cannot read the kernel's audit status and rules: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            transport.close()
    return KernelState(
        tuple((k, int(getattr(status, k))) for k in STATE_FIELDS),
        tuple(_rule_text(r) for r in rules),
    )


def _rule_text(rule: Any) -> str:
    try:
        from collector.protocol.auditctl import format_rule

        return format_rule(rule)
    except Exception:
        return rule.encode().hex()


# ---------------------------------------------------------------------------------------------
# the live run


@dataclass(slots=True)
class VerifyOptions:
    workloads: list[str] = field(default_factory=list)
    junit: Path | None = None
    report: Path | None = None  # JSON report (verdicts, checks, rows per workload)
    rows_out: Path | None = None  # a copy of every row the collector wrote
    collector: list[str] | None = None  # command; "{output}" is replaced by the rows file
    take_lock: bool = True
    lock_timeout: float = 300.0
    startup_timeout: float = 30.0
    stop_timeout: float = 20.0
    keep: bool = False  # keep the work folder (collector log, rows)
    check_kernel: bool = True
    suite: str = "kaudit-verify"


@dataclass(slots=True)
class VerifyReport:
    results: list[WorkloadResult]
    kernel_problems: list[str] = field(default_factory=list)
    netns_left: list[str] = field(default_factory=list)
    collector_problems: list[str] = field(default_factory=list)
    rows_total: int = 0
    workdir: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            all(r.ok for r in self.results)
            and not self.kernel_problems
            and not self.netns_left
            and not self.collector_problems
        )

    def extra_cases(self) -> list[tuple[str, str | None]]:
        return [
            ("collector-ran-cleanly", "; ".join(self.collector_problems) or None),
            ("kernel-audit-restored", "; ".join(self.kernel_problems) or None),
            (
                "network-namespaces-removed",
                ("left: " + ", ".join(self.netns_left)) if self.netns_left else None,
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "rows_total": self.rows_total,
            "kernel_problems": self.kernel_problems,
            "netns_left": self.netns_left,
            "collector_problems": self.collector_problems,
            "workloads": [r.to_dict() for r in self.results],
        }


@contextlib.contextmanager
def live_lock(timeout: float, notify: Callable[[str], None]) -> Iterator[None]:
    """The machine-wide lock every change to the kernel's audit state holds.

    Through ``collector.transport.live_lock`` (re-entrant within the process: a caller that
    holds it already, such as a test fixture, is not blocked by its own lock); tried in short
    steps so that the wait can be announced once.
    """
    from collector.transport import live_lock as _transport_live_lock

    deadline = time.monotonic() + timeout
    told = False
    with contextlib.ExitStack() as held:
        while True:
            try:
                step = min(0.5, max(0.0, deadline - time.monotonic()))
                held.enter_context(_transport_live_lock(str(LIVE_LOCK), timeout=step))
                break
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise VerifyError(f"{LIVE_LOCK} stayed locked for {timeout:.0f}s (another live run?)") from None
                if not told:
                    notify(f"waiting for {LIVE_LOCK} (another live run holds it)")
                    told = True
        yield


class RowTail:
    """Reads the collector's JSON-lines output as it grows; keeps complete lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fp:
                fp.seek(self._offset)
                data = fp.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        new = []
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                self.bad_lines.append(line[:200].decode("utf-8", "replace"))
                continue
            if isinstance(row, dict):
                new.append(row)
            else:
                self.bad_lines.append(line[:200].decode("utf-8", "replace"))
        self.rows.extend(new)
        return new


def _in_fresh_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a thread created now, after the start barrier; its result or exception.

    Why: the kernel gives a task an audit context only if audit had been enabled at least once
    when the task was created (``audit_alloc`` checks ``audit_ever_enabled``). On a machine
    where this run is the first to enable audit since boot, this process was created before,
    so its own syscalls - the vfork of every workload child - would never be audited and their
    rows would be missing. A thread made after the collector enabled audit has a context; its
    records carry the process's pid, so the expected rows do not change.
    """
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it is
            out["error"] = exc

    worker = threading.Thread(target=run, name="kaudit-verify-workloads", daemon=True)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def default_collector(output: Path) -> list[str]:
    """kaudit's own collector; ``--no-lock`` because verify holds the live lock for it."""
    return [
        sys.executable,
        "-m",
        "collector.cli",
        "collect",
        "--endpoint",
        "kernel",
        "--output",
        str(output),
        "--no-lock",
        # a verify that is SIGKILLed cannot stop its collector: the collector stops by itself
        "--exit-with-parent",
        str(os.getpid()),
        *COLLECTOR_FLAGS,
    ]


class LiveRun:
    """One verify run on this machine: see the module docstring for the steps."""

    def __init__(self, options: VerifyOptions, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> None:
        self.opts = options
        self.out = out
        self.err = err
        self.workloads: list[Workload] = []
        self.collector: subprocess.Popen[bytes] | None = None
        self.collector_log: Path | None = None
        self.tail: RowTail | None = None
        self.true_exe = shutil.which("true") or "/bin/true"
        self._netns_names: list[str] = []
        self._wire_expectations: list[list[WireExpectation]] = []  # per workload, in run order

    def note(self, msg: str) -> None:
        self.err.write(f"kaudit verify: {msg}\n")
        self.err.flush()

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> VerifyReport:
        from simulator import workloads as registry

        started = time.monotonic()
        try:
            self.workloads = registry.select(self.opts.workloads)
        except KeyError as exc:
            raise VerifyError(str(exc.args[0])) from None
        if os.geteuid() != 0:
            raise VerifyError("live verification needs root (audit control, network namespaces)")
        lock = (
            live_lock(self.opts.lock_timeout, self.note) if self.opts.take_lock else contextlib.nullcontext()
        )
        workdir = Path(tempfile.mkdtemp(prefix="kaudit-verify-"))
        # SIGTERM/SIGHUP become SystemExit, so the collector is stopped (and restores the kernel)
        # and the network removed by the finally clauses below, as on Ctrl-C
        guard = SignalGuard.install()
        try:
            with lock:
                report = self._run_locked(workdir)
        finally:
            guard.restore()
            if not self.opts.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        report.workdir = workdir if self.opts.keep else None
        report.seconds = time.monotonic() - started
        return report

    def _run_locked(self, workdir: Path) -> VerifyReport:
        from simulator.workloads.netns import NetnsError, TestNet, list_ours

        before = read_kernel_state() if self.opts.check_kernel else None
        results: list[WorkloadResult] = []
        collector_problems: list[str] = []
        rows_file = workdir / "rows.jsonl"
        need_net = any(w.needs_network for w in self.workloads)
        try:
            net_cm = TestNet.create() if need_net else contextlib.nullcontext()
        except NetnsError as exc:
            raise VerifyError(f"cannot make the test network: {exc}") from exc
        if isinstance(net_cm, TestNet):
            self._netns_names = [net_cm.client_ns, net_cm.server_ns]
            if net_cm.leftovers_removed:
                self.note(
                    f"removed network namespaces left by a killed run: {', '.join(net_cm.leftovers_removed)}"
                )
        try:
            with net_cm as net:
                wire = self._start_wire(net)
                try:
                    self._start_collector(rows_file, workdir)
                    try:
                        self._barrier("start", self.opts.startup_timeout, repeat=True)
                        results = _in_fresh_thread(self._run_workloads, workdir, net)
                        self._barrier("end", 15.0, repeat=False)
                    finally:
                        collector_problems += self._stop_collector()
                finally:
                    if wire is not None:
                        wire.stop()
                for res, wire_exp in zip(results, self._wire_expectations, strict=True):
                    if wire is not None and wire_exp:
                        checks = wire.check(wire_exp)
                        res.wire = [
                            WireCheck(c.expectation, c.ok, c.seen.describe() if c.seen else "")
                            for c in checks
                        ]
        finally:
            self._cleanup_children()
        assert self.tail is not None
        self.tail.poll()
        rows = self.tail.rows
        if self.tail.bad_lines:
            collector_problems.append(
                f"{len(self.tail.bad_lines)} output line(s) are not JSON objects, first: {self.tail.bad_lines[0]!r}"
            )
        for res in results:
            if res.error is None:
                mine = attribute_rows(rows, set(res.pids))
                res.checks, res.unexpected = match_rows(res.expected, mine)
                check_times(res.checks, *res.wall)
        if self.opts.rows_out is not None:
            self.opts.rows_out.parent.mkdir(parents=True, exist_ok=True)
            if rows_file.exists():
                shutil.copyfile(rows_file, self.opts.rows_out)
            else:
                self.opts.rows_out.write_text("")
        kernel_problems: list[str] = []
        if before is not None:
            after = read_kernel_state()
            kernel_problems = before.diff(after)
        # only this run's namespaces: a parallel test may be making its own right now
        netns_left = sorted(set(list_ours()) & set(self._netns_names))
        return VerifyReport(results, kernel_problems, netns_left, collector_problems, rows_total=len(rows))

    def _start_wire(self, net: Any) -> Any:
        if net is None:
            return None
        from simulator.workloads.wire import WireError, WireWatch

        try:
            return WireWatch(net).start()
        except WireError as exc:
            raise VerifyError(str(exc)) from exc

    def _run_workloads(self, workdir: Path, net: Any) -> list[WorkloadResult]:
        results = []
        self._wire_expectations = []
        progress = Progress(len(self.workloads), self.err)
        for wl in self.workloads:
            res = WorkloadResult(wl.name, wl.description, wl.needs_network)
            wdir = workdir / "work" / wl.name
            wdir.mkdir(parents=True)
            ctx = WorkloadContext(wdir.resolve(), net=net)
            progress.start(wl.name)
            t0 = time.monotonic()
            wall0 = time.time()
            try:
                res.expected = wl.run(ctx)
                outcome = f"ran, {len(res.expected)} rows expected"
            except WorkloadError as exc:
                res.error = str(exc)
                outcome = f"ERROR: {exc}"
            except Exception as exc:  # a bug in a workload must not end the run for the others
                res.error = f"{type(exc).__name__}: {exc}"
                outcome = f"ERROR: {res.error}"
            finally:
                ctx.reap()
            res.duration = time.monotonic() - t0
            res.wall = (wall0, time.time())
            res.pids = sorted(ctx.pids)
            results.append(res)
            self._wire_expectations.append(list(ctx.wire))
            self._check_collector_alive()
            progress.finish(wl.name, outcome, res.duration)
        return results

    # -- collector ---------------------------------------------------------------------------

    def _start_collector(self, rows_file: Path, workdir: Path) -> None:
        argv = (
            [a.replace("{output}", str(rows_file)) for a in self.opts.collector]
            if self.opts.collector
            else default_collector(rows_file)
        )
        self.collector_log = workdir / "collector.log"
        env = dict(os.environ)
        # a collector given with --collector may not know --no-lock: tell it the lock is held for it
        env["KAUDIT_LIVE_LOCK_HELD"] = str(os.getpid())
        self.tail = RowTail(rows_file)
        log = open(self.collector_log, "wb")
        try:
            # its own process group: a Ctrl-C or a kill of verify's group does not reach the
            # collector, which verify stops itself (SIGTERM, so it restores), or which stops by
            # itself when verify is gone (--exit-with-parent)
            self.collector = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
                process_group=0,
            )
        except OSError as exc:
            raise VerifyError(f"cannot start the collector ({shlex.join(argv)}): {exc}") from exc
        finally:
            log.close()
        self.note(f"collector started (pid {self.collector.pid}): {shlex.join(argv)}")

    def _collector_output(self, lines: int = 15) -> str:
        if self.collector_log is None or not self.collector_log.exists():
            return ""
        text = self.collector_log.read_text("utf-8", "replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def _check_collector_alive(self) -> None:
        if self.collector is not None and self.collector.poll() is not None:
            raise VerifyError(
                f"the collector exited with status {self.collector.returncode} during the run:\n"
                + self._collector_output()
            )

    def _barrier(self, which: str, timeout: float, *, repeat: bool) -> None:
        """Run a canary process and wait until its exec row is in the output."""
        assert self.tail is not None
        token = f"{which}-{uuid.uuid4().hex[:12]}"
        want = f"true {BARRIER_WORD} {token}"
        deadline = time.monotonic() + timeout
        next_canary = 0.0
        scan_from = len(self.tail.rows)
        while True:
            now = time.monotonic()
            if now >= next_canary:
                subprocess.run(["true", BARRIER_WORD, token], executable=self.true_exe, check=False)
                # at start the rules may not be in yet: try again every second until one shows
                next_canary = now + 1.0 if repeat else float("inf")
            self.tail.poll()
            if any(
                r.get("table") == "process_events" and r.get("cmdline") == want
                for r in self.tail.rows[scan_from:]
            ):
                return
            scan_from = len(self.tail.rows)
            if self.collector is not None and self.collector.poll() is not None:
                raise VerifyError(
                    f"the collector exited with status {self.collector.returncode} before the {which} barrier"
                    f" row appeared:\n{self._collector_output()}"
                )
            if time.monotonic() > deadline:
                raise VerifyError(
                    f"the {which} barrier row ({want!r}) did not appear in the collector's output within "
                    f"{timeout:.0f}s: the collector is not receiving the kernel's records"
                    + (f"\ncollector output:\n{self._collector_output()}" if self._collector_output() else "")
                )
            time.sleep(0.05)

    def _stop_collector(self) -> list[str]:
        """SIGTERM, wait; SIGKILL as a last resort (then the kernel check will say what is left)."""
        proc = self.collector
        if proc is None:
            return []
        problems = []
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.opts.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                problems.append(
                    f"the collector did not stop within {self.opts.stop_timeout:.0f}s of SIGTERM: killed"
                )
        if proc.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM) and not problems:
            problems.append(
                f"the collector exited with status {proc.returncode}: {self._collector_output(5)}"
            )
        self.collector = None
        return problems

    def _cleanup_children(self) -> None:
        if self.collector is not None and self.collector.poll() is None:
            self.collector.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.collector.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# entry points


def print_report(report: VerifyReport, out: IO[str]) -> None:
    for res in report.results:
        out.write(render_result(res) + "\n\n")
    passed = sum(1 for r in report.results if r.ok)
    out.write(
        f"{passed}/{len(report.results)} workloads passed, {report.rows_total} rows collected, "
        f"{report.seconds:.1f}s\n"
    )
    wire = [w for r in report.results for w in r.wire]
    if wire:
        out.write(f"wire: {sum(w.seen for w in wire)}/{len(wire)} promised packets seen on the veth\n")
    for name, msg in report.extra_cases():
        out.write(f"{name}: {'FAIL: ' + msg if msg else 'ok'}\n")
    out.flush()


def run_verify(options: VerifyOptions, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> int:
    """Run, print, write JUnit/JSON; returns the exit status (0, 1, or 2 with the reason on err)."""
    try:
        report = LiveRun(options, out, err).run()
    except VerifyError as exc:
        err.write(f"kaudit verify: {exc}\n")
        if options.junit is not None:
            write_junit(options.junit, [], suite=options.suite, extra=[("verify-could-run", str(exc))])
        return 2
    print_report(report, out)
    if options.junit is not None:
        write_junit(options.junit, report.results, suite=options.suite, extra=report.extra_cases())
    if options.report is not None:
        options.report.parent.mkdir(parents=True, exist_ok=True)
        options.report.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False, default=str))
    return 0 if report.ok else 1
