"""KernelConfig against the in-process simulator: configure, verify, restore exactly, fall back.

Everything here talks to ``simulator.kernel.AuditKernel`` through the endpoint and the real
transport, never to the machine's kernel: the immutable and failure-mode-2 paths below would
be dangerous anywhere else.
"""

from __future__ import annotations

import errno
import json
import os
import time

import pytest

from collector.config import (
    KAUDIT_KEY,
    ConfigError,
    KernelConfig,
    UnsafeSetting,
    abis_for,
    syscalls_for,
)
from collector.flags import AuditFlags
from collector.protocol._tables import SYSCALLS
from collector.protocol.auditctl import format_rule, parse_rule
from collector.protocol.records import AUDIT_LIST_RULES, AUDIT_SET
from collector.protocol.status import status_set
from collector.transport import KernelError, Transport
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel

CONFIG = AuditFlags(allow_config=True, allow_sockets=True, allow_process_events=True)
OTHER_RULES = [
    "-a always,exit -F arch=b64 -S openat -k files",
    "-w /etc/passwd -p wa -k identity",
    "-a always,exit -F arch=b64 -S unlink -F auid>=1000 -k delete",
]


@pytest.fixture
def sim():
    servers: list[EndpointServer] = []
    transports: list[Transport] = []

    def make(kernel: AuditKernel | None = None, rules: list[str] = ()):
        k = kernel or AuditKernel()
        if rules:
            k.load(rules=[parse_rule(t, "x86_64", is_dir=lambda p: False).encode() for t in rules])
        srv = EndpointServer(k).start()
        servers.append(srv)
        return srv

    def connect(srv: EndpointServer) -> Transport:
        t = Transport.over_socket(srv.connect_pair())
        transports.append(t)
        return t

    make.connect = connect  # type: ignore[attr-defined]
    yield make
    for t in transports:
        t.close()
    for srv in servers:
        srv.stop()


def snapshot(srv: EndpointServer) -> tuple[dict, list[bytes]]:
    def grab(k: AuditKernel):
        st = k.status().as_dict()
        st.pop("lost")
        st.pop("backlog")
        return st, k.rule_payloads()

    return srv.call(grab)


def listed(srv: EndpointServer) -> list[str]:
    return srv.call(lambda k: [format_rule(r, "x86_64") for r in k.rule_objects()])


def test_planned_rules_per_abi():
    cfg = KernelConfig(None, AuditFlags(allow_sockets=True, allow_fork_process_events=True), machine="x86_64")
    rules = cfg.planned_rules()
    texts = [format_rule(r, "x86_64") for r in rules]
    assert texts[0].startswith("-a always,exit -F arch=b64 -S ")
    assert texts[0].endswith(f"-F key={KAUDIT_KEY}")
    b64 = set(texts[0].split(" -S ")[1].split(" ")[0].split(","))
    assert b64 == {
        "connect",
        "bind",
        "accept",
        "accept4",
        "execve",
        "execveat",
        "fork",
        "vfork",
        "clone",
        "clone3",
    }
    if "i386" in SYSCALLS:
        assert len(rules) == 2 and "-F arch=b32" in texts[1]
        # i386 has no plain accept syscall (only through socketcall): what exists is asked for
        b32 = set(texts[1].split(" -S ")[1].split(" ")[0].split(","))
        assert {"connect", "bind", "execve", "execveat", "accept4"} <= b32
        assert "accept" not in b32
    else:
        assert len(rules) == 1 and cfg.outcome.skipped_abis


def test_syscalls_follow_the_flags():
    assert syscalls_for(AuditFlags()) == ["execve", "execveat"]
    assert syscalls_for(AuditFlags(allow_process_events=False)) == []
    assert syscalls_for(AuditFlags(allow_process_events=False, allow_fork_process_events=True)) == []
    s = syscalls_for(AuditFlags(allow_sockets=True, allow_kill_process_events=True))
    assert s == ["connect", "bind", "accept", "accept4", "execve", "execveat", "kill", "tkill", "tgkill"]
    assert [a for a, _ in abis_for("x86_64")] == ["b64", "b32"]
    with pytest.raises(ConfigError, match="machine 'vax'"):
        abis_for("vax")


def test_configure_then_restore_exactly(sim):
    srv = sim(rules=OTHER_RULES)
    before = snapshot(srv)
    t = sim.connect(srv)
    cfg = KernelConfig(t, CONFIG)
    out = cfg.configure()
    assert out.mode == "unicast" and not out.read_only
    assert out.registered_pid == os.getpid()
    st = srv.call(lambda k: k.status())
    assert (st.enabled, st.failure, st.pid, st.backlog_limit, st.backlog_wait_time) == (
        1,
        0,
        os.getpid(),
        4096,
        0,
    )
    assert out.status_changed == {
        "enabled": (0, 1),
        "failure": (1, 0),
        "backlog_limit": (64, 4096),
        "backlog_wait_time": (15000, 0),
    }
    now = listed(srv)
    assert now[: len(OTHER_RULES)] == [
        format_rule(parse_rule(r, "x86_64", is_dir=lambda p: False), "x86_64") for r in OTHER_RULES
    ]
    ours = [r for r in now if r.endswith(f"key={KAUDIT_KEY}")]
    assert ours == out.added and ours
    report = cfg.restore()
    assert report.ok, report.errors
    assert snapshot(srv) == before
    assert cfg.restore().done == []  # nothing left to undo


def test_only_changed_fields_are_written_and_restored(sim):
    srv = sim(AuditKernel(enabled=1, failure=0, backlog_limit=4096, backlog_wait_time=0))
    before = snapshot(srv)
    cfg = KernelConfig(sim.connect(srv), CONFIG)
    out = cfg.configure()
    assert out.status_changed == {}
    assert cfg.pending == [f"delete rule {r}" for r in reversed(out.added)] + [
        f"unregister pid {os.getpid()}"
    ]
    assert cfg.restore().ok
    assert snapshot(srv) == before


def test_backlog_flags_are_used(sim):
    srv = sim()
    flags = AuditFlags(allow_config=True, backlog_limit=123, backlog_wait_time=250)
    cfg = KernelConfig(sim.connect(srv), flags)
    cfg.configure()
    st = srv.call(lambda k: k.status())
    assert (st.backlog_limit, st.backlog_wait_time) == (123, 250)
    cfg.restore()
    assert srv.call(lambda k: k.status()).backlog_limit == 64


def test_kernel_refusal_is_a_clear_error_and_undone(sim):
    srv = sim()
    before = snapshot(srv)
    # the kernel refuses a wait time above 10*60*HZ with EINVAL
    flags = AuditFlags(allow_config=True, backlog_wait_time=10 * 60 * 250 + 1)
    cfg = KernelConfig(sim.connect(srv), flags)
    with pytest.raises(ConfigError, match="EINVAL"):
        cfg.configure()
    assert snapshot(srv) == before


def test_stale_kaudit_rules_are_removed_and_not_restored(sim):
    stale = [
        f"-a always,exit -F arch=b64 -S connect -k {KAUDIT_KEY}",
        f"-a always,exit -F arch=b64 -S execve -k x -k {KAUDIT_KEY}",
    ]
    srv = sim(rules=[OTHER_RULES[0], *stale])
    cfg = KernelConfig(sim.connect(srv), CONFIG)
    out = cfg.configure()
    assert len(out.stale_removed) == 2
    cfg.restore()
    assert listed(srv) == [format_rule(parse_rule(OTHER_RULES[0], "x86_64"), "x86_64")]


def test_force_reconfigure_deletes_all_and_readds_in_order(sim):
    srv = sim(rules=OTHER_RULES)
    before = snapshot(srv)
    flags = AuditFlags(allow_config=True, force_reconfigure=True)
    cfg = KernelConfig(sim.connect(srv), flags)
    out = cfg.configure()
    assert len(out.reconfigure_deleted) == len(OTHER_RULES)
    assert listed(srv) == out.added  # only ours are left
    assert cfg.restore().ok
    assert snapshot(srv) == before  # same rules, same order


def test_refuses_failure_2_and_enabled_2(sim):
    srv = sim()
    before = snapshot(srv)
    cfg = KernelConfig(sim.connect(srv), CONFIG)
    cfg.read_found()
    with pytest.raises(UnsafeSetting, match="failure mode 2"):
        cfg.set_status("failure", 2)
    with pytest.raises(UnsafeSetting, match="enabled=2"):
        cfg.set_status("enabled", 2)
    assert snapshot(srv) == before  # nothing was sent


def test_found_failure_2_is_left_alone(sim):
    # simulator only: a kernel in panic mode. We must neither change it nor ever write 2 back.
    srv = sim(AuditKernel(failure=2))
    cfg = KernelConfig(sim.connect(srv), CONFIG)
    out = cfg.configure()
    assert "failure" not in out.status_changed
    assert any("failure mode is 2" in w for w in out.warnings)
    assert srv.call(lambda k: k.failure) == 2
    assert cfg.restore().ok
    assert srv.call(lambda k: (k.failure, k.enabled, k.panicked)) == (2, 0, None)


def test_immutable_kernel_falls_back_to_read_only(sim):
    # simulator only: enabled=2 would lock the real machine's audit until reboot
    srv = sim(AuditKernel(enabled=2), rules=[])
    before = snapshot(srv)
    warnings: list[str] = []
    cfg = KernelConfig(sim.connect(srv), CONFIG, warn=warnings.append)
    out = cfg.configure()
    assert (out.mode, out.read_only) == ("multicast", True)
    assert "immutable" in out.reason
    assert warnings and "multicast" in warnings[0]
    assert snapshot(srv) == before
    assert cfg.restore().done == []


def _deny_control(srv: EndpointServer, t: Transport) -> None:
    def deny(k: AuditKernel) -> None:
        k.clients[t.port_id].cap_audit_control = False

    srv.call(deny)


def test_no_permission_falls_back_to_read_only(sim):
    srv = sim()
    before = snapshot(srv)
    t = sim.connect(srv)
    _deny_control(srv, t)
    out = KernelConfig(t, CONFIG).configure()
    assert (out.mode, out.read_only) == ("multicast", True)
    assert "EPERM" in out.reason
    assert snapshot(srv) == before


class RefuseAfter:
    """A transport wrapper that makes the kernel 'refuse' the Nth AUDIT_SET with an errno."""

    def __init__(self, inner: Transport, nth: int, err: int) -> None:
        self.inner, self.nth, self.err, self.sets = inner, nth, err, 0

    def request(self, mtype, payload=b"", **kw):
        if mtype == AUDIT_SET:
            self.sets += 1
            if self.sets == self.nth:
                raise KernelError(self.err, mtype)
        return self.inner.request(mtype, payload, **kw)


def test_permission_lost_midway_undoes_what_was_done(sim):
    srv = sim(rules=OTHER_RULES)
    before = snapshot(srv)
    t = RefuseAfter(sim.connect(srv), nth=3, err=errno.EPERM)  # pid, backlog_limit done; then EPERM
    cfg = KernelConfig(t, AuditFlags(allow_config=True, force_reconfigure=True))
    out = cfg.configure()
    assert out.read_only and "EPERM" in out.reason
    assert snapshot(srv) == before  # rules re-added, backlog and pid put back


def test_another_daemon_keeps_the_pid(sim):
    srv = sim()
    daemon = sim.connect(srv)
    daemon.request(AUDIT_SET, status_set(pid=os.getpid()).encode())
    holder = srv.call(lambda k: k.auditd_port)
    before = snapshot(srv)
    cfg = KernelConfig(sim.connect(srv), CONFIG)
    out = cfg.configure()
    assert out.mode == "multicast" and not out.read_only
    assert "EEXIST" in out.reason
    assert out.registered_pid is None and out.added
    assert srv.call(lambda k: k.auditd_port) == holder
    assert cfg.restore().ok
    assert snapshot(srv) == before


class DropOurRule:
    """LIST_RULES that leaves out rules with our key: the read-back check must notice."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    def request(self, mtype, payload=b"", **kw):
        msgs = self.inner.request(mtype, payload, **kw)
        if mtype == AUDIT_LIST_RULES:
            msgs = [m for m in msgs if KAUDIT_KEY.encode() not in m.payload]
        return msgs


def test_read_back_mismatch_is_an_error_and_undone(sim):
    srv = sim()
    before = snapshot(srv)
    cfg = KernelConfig(DropOurRule(sim.connect(srv)), CONFIG)
    with pytest.raises(ConfigError, match="rules read back differ"):
        cfg.configure()
    assert snapshot(srv) == before


def test_config_off_changes_nothing(sim):
    srv = sim()
    before = snapshot(srv)
    cfg = KernelConfig(sim.connect(srv), AuditFlags(allow_sockets=True))
    out = cfg.configure()
    assert out.read_only and "audit_allow_config" in out.reason
    assert cfg.found is not None and cfg.found.status.backlog_limit == 64
    assert snapshot(srv) == before


def test_remove_added_rules_first_then_restore(sim):
    srv = sim(rules=OTHER_RULES[:1])
    before = snapshot(srv)
    cfg = KernelConfig(sim.connect(srv), CONFIG)
    out = cfg.configure()
    rep = cfg.remove_added_rules()
    assert rep.ok and len(rep.done) == len(out.added)
    assert srv.call(lambda k: k.auditd_pid) == os.getpid()  # still registered: draining goes on
    assert not any(r.endswith(KAUDIT_KEY) for r in listed(srv))
    assert cfg.restore().ok
    assert snapshot(srv) == before


def test_restore_survives_a_rule_already_gone(sim):
    srv = sim()
    before = snapshot(srv)
    t = sim.connect(srv)
    cfg = KernelConfig(t, CONFIG)
    cfg.configure()
    srv.call(lambda k: [lst.clear() for lst in k.rules])  # someone ran auditctl -D meanwhile
    rep = cfg.restore()
    assert rep.ok and any("already gone" in n for n in rep.notes)
    assert snapshot(srv) == before


def test_retake_pid(sim):
    srv = sim()
    t = sim.connect(srv)
    cfg = KernelConfig(t, CONFIG)
    cfg.configure()
    # the registration vanishes (same process: another socket of ours may unregister it)
    other = sim.connect(srv)
    other.request(AUDIT_SET, status_set(pid=0).encode())
    assert srv.call(lambda k: k.auditd_pid) == 0
    cfg.retake_pid()
    assert srv.call(lambda k: (k.auditd_pid, k.auditd_port)) == (os.getpid(), t.port_id)
    assert cfg.restore().ok
    assert srv.call(lambda k: k.auditd_pid) == 0


# ---- restore after SIGKILL: the state file ---------------------------------------------------


def test_state_file_follows_the_journal(sim, tmp_path):
    state = tmp_path / "state.json"
    srv = sim(rules=OTHER_RULES[:1])
    cfg = KernelConfig(
        sim.connect(srv), AuditFlags(allow_config=True, force_reconfigure=True), state_path=state
    )
    cfg.configure()
    data = json.loads(state.read_text())
    assert data["pid"] == os.getpid()
    assert data["status"] == {"backlog_limit": 64, "backlog_wait_time": 15000, "failure": 1, "enabled": 0}
    assert len(data["deleted_rules"]) == 1 and len(data["added_rules"]) == len(cfg.outcome.added)
    assert cfg.restore().ok
    assert not state.exists()


def _wait(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "the simulator did not get there in time"
        time.sleep(0.01)


def test_next_run_recovers_what_a_killed_run_left(sim, tmp_path):
    state = tmp_path / "state.json"
    srv = sim(rules=OTHER_RULES)
    before = snapshot(srv)
    flags = AuditFlags(allow_config=True, allow_sockets=True, force_reconfigure=True)
    killed = sim.connect(srv)
    KernelConfig(killed, flags, state_path=state).configure()
    port = killed.port_id
    fresh = sim.connect(srv)  # opened first: it must not inherit the dead socket's port id
    killed.close()  # SIGKILL: no restore, the socket closes with the process
    _wait(lambda: srv.call(lambda k: port not in k.clients))
    # as on the real kernel, the dead daemon's pid stays registered until someone probes it
    assert srv.call(lambda k: k.auditd_port) == port
    assert state.exists()
    # the next run finds the file, puts the state back, and configures from there
    warnings: list[str] = []
    cfg = KernelConfig(fresh, AuditFlags(allow_config=True), state_path=state, warn=warnings.append)
    out = cfg.configure()
    assert out.recovered and any("killed run" in w for w in warnings)
    # registering probed the dead daemon (AUDIT_REPLACE), the kernel dropped it, we took over
    assert out.registered_pid == os.getpid() and srv.call(lambda k: k.auditd_port) == fresh.port_id
    assert cfg.found is not None
    assert cfg.found.status.backlog_limit == 64 and cfg.found.status.enabled == 0
    assert cfg.restore().ok
    assert snapshot(srv) == before
    assert not state.exists()


def test_state_file_of_a_live_collector_is_refused(sim, tmp_path):
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps({"version": 1, "pid": 1, "status": {}, "deleted_rules": [], "added_rules": []})
    )
    srv = sim()
    before = snapshot(srv)
    with pytest.raises(ConfigError, match=r"pid 1\b"):
        KernelConfig(sim.connect(srv), CONFIG, state_path=state).configure()
    assert snapshot(srv) == before
    assert state.exists()


def test_unreadable_state_file_is_ignored(sim, tmp_path):
    state = tmp_path / "state.json"
    state.write_text("{not json")
    srv = sim()
    warnings: list[str] = []
    cfg = KernelConfig(sim.connect(srv), CONFIG, state_path=state, warn=warnings.append)
    cfg.configure()
    assert any("unreadable" in w for w in warnings)
    assert cfg.restore().ok


def test_status_payload_uses_the_kernel_size(sim):
    # the kernel refuses backlog_wait_time unless the whole struct was sent: nfields matters
    srv = sim()
    cfg = KernelConfig(sim.connect(srv), AuditFlags(allow_config=True, backlog_wait_time=7))
    cfg.configure()
    assert srv.call(lambda k: k.backlog_wait_time) == 7
    assert cfg.found is not None and len(status_set(cfg.found.status.nfields, pid=1).encode()) == 44
    cfg.restore()
