"""The fault matrix: for every fault the simulator injects, the documented outcome, pinned.

Each row of docs/reliability.md "Fault matrix" is one entry of ``MATRIX``: the bundled fault
scenario (scenarios/fault-*.yaml) is served through the simulator into the full collector
(``simulator.replay.run_scenario``), and the test checks

- the scenario passes (its rows and counters, ``simulator.check.compare``);
- what is counted: the counters of the matrix row, exactly;
- which rows still come out: their number;
- the accounting invariant: every record the collector's reader received (counted by a tap on
  its transports) is in the ledger, and the ledger balances (received = dispatched + dropped by
  reason + in flight at exit);
- the kernel is left as the collector found it (status and rules).

What is re-synced is pinned by the unit tests at the end (ENOBUFS asks for the status at once,
a stolen pid is taken back). "Endpoint closed" has no scenario form (the endpoint is gone):
it is driven directly.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from collector.protocol import netlink as nl
from collector.protocol.records import AUDIT_GET
from simulator import replay
from simulator.check import compare
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
AUDIT_REPLACE = 1329


@dataclass(frozen=True)
class Outcome:
    """One row of the fault matrix."""

    scenario: str
    counted: dict[str, int]  # counters that must have exactly these values
    rows: int  # rows that still come out
    zero: tuple[str, ...] = ()  # counters that must stay 0 (the fault is absorbed, not misreported)
    kernel_after: dict[str, int] = field(default_factory=dict)  # status fields after the run


MATRIX: dict[str, Outcome] = {
    "enobufs burst": Outcome(
        "fault-enobufs", {"kernel.enobufs": 1, "transport.enobufs": 1}, 3, zero=("lost_serials",)
    ),
    "enobufs with records lost": Outcome(
        "fault-enobufs-lost-event", {"kernel.enobufs": 1, "lost_serials": 1, "kernel.lost": 4}, 2
    ),
    "serial gap (records lost in the kernel)": Outcome(
        "fault-drop-serial-gap", {"lost_serials": 1, "kernel.lost": 4}, 2, zero=("kernel.enobufs",)
    ),
    "reordered events": Outcome(
        "fault-reorder-events", {"events_by_reason.eoe": 3}, 3, zero=("lost_serials", "duplicates", "ledger.dropped")
    ),
    "reordered records": Outcome(
        "fault-reorder-records", {"events_by_reason.eoe": 3}, 3, zero=("lost_serials", "duplicates", "ledger.dropped")
    ),
    "interleaved events": Outcome(
        "fault-interleave-events", {"events_by_reason.eoe": 3}, 3, zero=("lost_serials", "ledger.dropped")
    ),
    "duplicate record": Outcome(
        "fault-duplicate-record",
        {"duplicates": 1, "ledger.dropped_by_reason.duplicate_syscall": 1, "ledger.dropped": 1},
        3,
        zero=("lost_serials",),
    ),
    "truncated datagram": Outcome(
        "fault-truncated-message", {"transport.bad_datagram": 1, "drops.table_socket_no_sockaddr": 1}, 2,
        zero=("ledger.dropped", "lost_serials"),
    ),
    "spoofed sender (port id != 0)": Outcome(
        "fault-non-kernel-sender", {"transport.dropped_sender": 1}, 2, zero=("ledger.dropped", "lost_serials"),
    ),
    "garbage text": Outcome(
        "fault-garbage-text", {"drops.no_header": 1, "ledger.dropped_by_reason.no_header": 1}, 3,
        zero=("lost_serials",),
    ),
    "timeout (no EOE in time)": Outcome(
        "fault-timeout-delay", {"events_by_reason.timeout": 2, "events_by_reason.eoe": 2}, 3,
        zero=("ledger.dropped",),
    ),
    "daemon pid stolen": Outcome(
        "fault-steal-pid", {"kernel.pid_lost": 1, "kernel.pid_retaken": 1}, 3, kernel_after={"pid": 0},
    ),
    "audit disabled mid-run (--audit_persist, the default)": Outcome(
        "fault-audit-disabled-reenabled",
        {"kernel.kernel_disabled": 1, "kernel.kernel_reenabled": 1, "events_by_reason.eoe": 3}, 3,
        kernel_after={"enabled": 0, "pid": 0},
    ),
    "audit disabled mid-run (--audit_persist=false)": Outcome(
        "fault-audit-disabled",
        {"kernel.kernel_disabled": 1, "kernel.kernel_reenabled": 0, "events_by_reason.eoe": 2}, 2,
        kernel_after={"enabled": 0, "pid": 0},
    ),
    # read-only never registers: no pid to lose or to take back
    "immutable kernel": Outcome(
        "fault-immutable-kernel", {"config.read_only": 1, "config.multicast": 1, "config.rules_added": 0}, 3,
        zero=("kernel.pid_lost", "kernel.pid_retaken"), kernel_after={"enabled": 2, "pid": 0},
    ),
    "rule add refused": Outcome(
        "fault-rule-add-refused", {"config.read_only": 1, "config.multicast": 1, "config.rules_added": 0}, 3,
        zero=("kernel.pid_lost", "kernel.pid_retaken"), kernel_after={"enabled": 1, "pid": 0},
    ),
}


@dataclass
class Tapped:
    result: replay.RunResult
    received: int  # record messages the collector's transports handed to its reader


def run_tapped(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[object, Tapped]:
    """Run a bundled scenario with a tap counting the records the reader receives."""
    path = SCENARIOS / f"{name}.yaml"
    if not path.exists():
        pytest.skip(f"{path.name} is not bundled")
    sc = load_scenario(path)
    count = {"records": 0}
    lock = threading.Lock()

    def tap(transport) -> None:
        inner = transport.recv

        def recv(timeout):
            got = inner(timeout)
            if isinstance(got, list):
                n = sum(1 for m in got if m.type >= 1100 and m.type != AUDIT_REPLACE)
                with lock:
                    count["records"] += n
            return got

        transport.recv = recv

    real = replay.CollectorRun

    def make(endpoint, flags, **kw):
        kw.setdefault("tap", tap)
        return real(endpoint, flags, **kw)

    monkeypatch.setattr(replay, "CollectorRun", make)
    result = replay.run_scenario(sc)
    return sc, Tapped(result, count["records"])


def check_ledger(counters: dict[str, int], received: int) -> None:
    assert counters.get("ledger.balanced") == 1, {k: v for k, v in counters.items() if k.startswith("ledger")}
    assert counters.get("ledger.unaccounted", 0) == 0
    assert counters.get("ledger.received") == received, (
        f"the reader received {received} records, the ledger saw {counters.get('ledger.received')}"
    )
    assert counters["ledger.received"] == (
        counters.get("ledger.dispatched", 0) + counters.get("ledger.dropped", 0) + counters.get("ledger.in_flight", 0)
    )


@pytest.mark.parametrize("fault", list(MATRIX), ids=[MATRIX[k].scenario for k in MATRIX])
def test_fault_outcome(fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    want = MATRIX[fault]
    sc, run = run_tapped(want.scenario, monkeypatch)
    res = run.result
    assert res.error is None, res.error
    ok, diff = compare(sc, res)
    assert ok, diff
    c = res.counters
    got = {k: c.get(k, 0) for k in want.counted}
    assert got == want.counted, f"{fault}: counted {got}, documented {want.counted}"
    nonzero = {k: c.get(k, 0) for k in want.zero if c.get(k, 0)}
    assert not nonzero, f"{fault}: counters that must stay 0 moved: {nonzero}"
    assert len(res.rows) == want.rows, f"{fault}: {len(res.rows)} rows, documented {want.rows}"
    check_ledger(c, run.received)
    assert run.received > 0
    # the kernel as found (or as the matrix says, for faults that changed it from outside)
    found = dict(sc.kernel.status)
    expect_after = {**{k: v for k, v in found.items() if k in ("enabled", "failure", "backlog_limit")},
                    "pid": 0, **want.kernel_after}
    if sc.kernel.immutable:
        expect_after["enabled"] = 2
    after = {k: res.kernel["status"][k] for k in expect_after}
    assert after == expect_after, f"{fault}: kernel left as {after}, expected {expect_after}"
    assert res.kernel["rules"] == list(sc.kernel.rules)


def test_every_fault_kind_has_a_matrix_row() -> None:
    from simulator.scenario import FAULT_KINDS

    covered = set()
    for want in MATRIX.values():
        path = SCENARIOS / f"{want.scenario}.yaml"
        if path.exists():
            covered |= {f.kind for f in load_scenario(path).faults()}
    if not covered:
        pytest.skip("no bundled fault scenarios")
    # "drop" is the serial-gap fault; every kind the vocabulary has is in the matrix
    missing = set(FAULT_KINDS) - covered
    assert not missing, f"fault kinds without a matrix row: {sorted(missing)}"


# ---- what is re-synced ---------------------------------------------------------------------


class _FakeTransport:
    """Hands the reader a scripted sequence of receive results; records what it sends."""

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.sent: list[nl.NetlinkMessage] = []
        self.counters: dict[str, int] = {}

    def send(self, msg: nl.NetlinkMessage) -> int:
        self.sent.append(msg)
        return 100 + len(self.sent)

    def recv(self, timeout):
        return self.script.pop(0) if self.script else []


def test_enobufs_resyncs_the_kernel_counters_at_once() -> None:
    from collector.reader import Reader
    from collector.transport import TransportEvent

    clock = [0.0]
    t = _FakeTransport([TransportEvent("enobufs", 105, "overrun")])
    reader = Reader(t, pid=1, status_interval=1000.0, clock=lambda: clock[0])
    reader.drain(0)  # the first poll (baseline) is sent at once
    polls_before = sum(1 for m in t.sent if m.type == AUDIT_GET)
    t.script = [TransportEvent("enobufs", 105, "overrun")]
    clock[0] = 1.0  # long before the next scheduled poll
    reader.drain(0)
    assert reader.counters.enobufs == 2
    assert sum(1 for m in t.sent if m.type == AUDIT_GET) == polls_before + 1, "no status request after ENOBUFS"


def test_a_stolen_pid_is_taken_back_when_persist_is_on() -> None:
    from collector.protocol.status import AuditStatus
    from collector.reader import Reader

    retaken = []
    st = AuditStatus(enabled=1, pid=4242)
    t = _FakeTransport([[nl.NetlinkMessage(AUDIT_GET, 0, 101, 0, st.encode())]])
    reader = Reader(t, pid=1000, persist=True, retake=lambda: retaken.append(1), clock=lambda: 0.0)
    reader.drain(0)
    assert reader.counters.pid_lost == 1 and reader.counters.pid_retaken == 1 and retaken == [1]


def test_a_stolen_pid_is_left_alone_when_persist_is_off() -> None:
    from collector.protocol.status import AuditStatus
    from collector.reader import Reader

    st = AuditStatus(enabled=1, pid=4242)
    t = _FakeTransport([[nl.NetlinkMessage(AUDIT_GET, 0, 101, 0, st.encode())]])
    reader = Reader(t, pid=1000, persist=False, retake=lambda: pytest.fail("re-took the pid"), clock=lambda: 0.0)
    reader.drain(0)
    assert reader.counters.pid_lost == 1 and reader.counters.pid_retaken == 0


def test_rule_add_refused_leaves_no_daemon_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read-only means unchanged: after the fallback the collector must not register again."""
    sc, run = run_tapped("fault-rule-add-refused", monkeypatch)
    assert run.result.counters.get("config.read_only") == 1
    assert run.result.counters.get("kernel.pid_retaken", 0) == 0
    assert run.result.counters.get("kernel.pid_lost", 0) == 0


def test_stats_text_shows_audit_switched_off_and_the_pid_counters() -> None:
    """`kaudit collect --stats` prints what the reader counted when audit was switched off."""
    from collector.pipeline import PipelineStats

    st = PipelineStats()
    st.kernel = {"kernel_disabled": 2, "kernel_reenabled": 1, "kernel_reenable_failed": 1,
                 "pid_lost": 1, "pid_retaken": 0, "pid_retake_failed": 3}
    text = st.format_text()
    assert "audit off     disabled 2  re-enabled 1  re-enable failed 1" in text
    assert "daemon pid    lost 1  re-taken 0  re-take failed 3" in text
    st.kernel = {"lost": 0}
    assert "audit off" not in st.format_text() and "daemon pid" not in st.format_text()


# ---- endpoint closed -----------------------------------------------------------------------


def test_endpoint_closed_ends_the_run_with_a_balanced_ledger(tmp_path: Path) -> None:
    """The kernel side goes away mid-run: collect stops ("endpoint closed"), writes the rows of
    completed events and of the open one it flushes (whose records count as in flight), and
    reports that it could not restore."""
    from collector.commands.collect import Collector
    from collector.flags import parse_flags
    from collector.transport import open_transport
    from simulator.endpoint import EndpointServer
    from simulator.kernel import AuditKernel

    kernel = AuditKernel(enabled=1, backlog_limit=8192)
    server = EndpointServer(kernel)
    server.listen(str(tmp_path / "audit.sock"))
    server.start()
    out = io.StringIO()
    received = {"n": 0}

    def factory(endpoint, **kw):
        t = open_transport(endpoint, **kw)
        inner = t.recv

        def recv(timeout):
            got = inner(timeout)
            if isinstance(got, list):
                received["n"] += sum(1 for m in got if m.type >= 1100 and m.type != AUDIT_REPLACE)
            return got

        t.recv = recv
        return t

    flags = parse_flags(["--audit_allow_config=true", "--audit_allow_sockets=true"], warn=lambda m: None)
    col = Collector(server.endpoint, flags, out, status_interval=0.2, transport_factory=factory)
    result: dict = {}
    th = threading.Thread(target=lambda: result.setdefault("stats", col.run()), daemon=True)
    th.start()
    try:
        end = time.monotonic() + 10
        while kernel.auditd_pid == 0 and time.monotonic() < end:
            time.sleep(0.02)
        assert kernel.auditd_pid, "the collector did not register"
        syscall = (
            "arch=c000003e syscall=42 success=yes exit=0 a0=3 a1=0 a2=10 a3=0 items=0 ppid=1 pid=4242 "
            'auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="nc" '
            'exe="/usr/bin/nc" key="kaudit"'
        )
        for i in range(3):
            stamp = (1795601611, i, 9000 + i)
            server.emit_record(1300, syscall, stamp=stamp)
            server.emit_record(1306, "saddr=0200B3E37F0000010000000000000000", stamp=stamp)
            if i < 2:
                server.emit_record(1320, "", stamp=stamp)  # the third event stays open
        end = time.monotonic() + 10
        while out.getvalue().count("\n") < 2 and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(0.3)
    finally:
        server.stop()
    th.join(20)
    assert not th.is_alive(), "collect did not stop when the endpoint closed"
    st = result["stats"]
    assert col.stop.reason == "endpoint closed"
    # the two completed events, and the open one flushed at exit (its records count as in flight)
    assert out.getvalue().count('"socket_events"') == 3
    led = st.ledger
    assert led.balanced, led.as_dict()
    assert led.received == received["n"]
    assert led.in_flight >= 2  # SYSCALL + SOCKADDR of the event without EOE
    assert col.restore_errors, "restoring a vanished kernel cannot succeed and must say so"
