"""The host's kernel stays safe: checked against the simulated kernel, so nothing here can hurt it.

- failure mode 2 (panic: the machine halts when audit cannot log) and enabled 2 (locked until
  reboot) are never written, whatever the flags, whatever state the kernel is found in, whatever
  a restore-state file left by a killed run says; asking for them raises before anything is sent;
- configuration is undone exactly (status and rules as found) on a normal end and when a step
  fails half way;
- only the kernel (netlink port id 0) is listened to: a datagram from any other sender is
  dropped and counted, and never reaches the ledger.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config import AUDIT_FAIL_PANIC, AUDIT_LOCKED, KernelConfig, UnsafeSetting
from collector.flags import AuditFlags
from collector.protocol import netlink as nl
from collector.protocol.auditctl import parse_rule
from collector.protocol.records import AUDIT_SET
from collector.protocol.status import MASK_ENABLED, MASK_FAILURE, AuditStatus
from collector.transport import Transport
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel

SETTINGS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))


class RecordingTransport:
    """Wraps a transport; keeps every AUDIT_SET it sends, decoded."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sets: list[AuditStatus] = []

    def request(self, mtype, payload=b"", **kw):
        if mtype == AUDIT_SET:
            self.sets.append(AuditStatus.decode(payload))
        return self.inner.request(mtype, payload, **kw)

    def close(self) -> None:
        self.inner.close()


def _unsafe_writes(sets: list[AuditStatus]) -> list[str]:
    bad = []
    for s in sets:
        if s.mask & MASK_FAILURE and s.failure == AUDIT_FAIL_PANIC:
            bad.append("failure=2")
        if s.mask & MASK_ENABLED and s.enabled == AUDIT_LOCKED:
            bad.append("enabled=2")
    return bad


def _kernel(status: dict[str, int], rules: list[str] = ()) -> AuditKernel:
    k = AuditKernel(path_exists=lambda p: True, parent_exists=lambda p: True)
    locked = status.get("enabled") == 2
    k.load(status={**status, "enabled": 1 if locked else status.get("enabled", 0)},
           rules=[parse_rule(r, "x86_64").encode() for r in rules])
    if locked:
        k.enabled = 2
    return k


def _snapshot(k: AuditKernel) -> tuple:
    st = k.status()
    return (st.enabled, st.failure, st.pid, st.backlog_limit, st.backlog_wait_time, st.rate_limit,
            tuple(k.rule_payloads()))


flag_sets = st.builds(
    AuditFlags,
    allow_config=st.booleans(),
    allow_sockets=st.booleans(),
    allow_process_events=st.booleans(),
    allow_fork_process_events=st.booleans(),
    allow_kill_process_events=st.booleans(),
    backlog_limit=st.sampled_from([0, 64, 4096, 2**31]),
    backlog_wait_time=st.sampled_from([0, 1, 60000]),
    force_reconfigure=st.booleans(),
    persist=st.booleans(),
)
found_states = st.fixed_dictionaries({
    "enabled": st.sampled_from([0, 1, 2]),
    "failure": st.sampled_from([0, 1, 2]),
    "backlog_limit": st.sampled_from([64, 8192]),
})


@SETTINGS
@given(flag_sets, found_states, st.booleans())
def test_never_writes_panic_or_lock_and_restores_what_it_found(flags, found, with_rule) -> None:
    rules = ["-a always,exit -F arch=b64 -S openat -k other"] if with_rule else []
    kernel = _kernel(found, rules)
    before = _snapshot(kernel)
    with EndpointServer(kernel).start() as server:
        t = RecordingTransport(Transport.over_socket(server.connect_pair()))
        cfg = KernelConfig(t, flags, machine="x86_64")
        try:
            outcome = cfg.configure()
            if outcome.read_only:
                assert server.call(_snapshot) == before, "read-only mode changed the kernel"
        finally:
            report = cfg.restore()
            t.close()
        assert report.ok, report.errors
        assert server.call(_snapshot) == before, "the kernel was not restored to what was found"
    assert not _unsafe_writes(t.sets), _unsafe_writes(t.sets)
    assert kernel.panicked is None


@pytest.mark.parametrize("name", ["failure", "enabled"])
def test_asking_for_2_raises_before_anything_is_sent(name: str) -> None:
    class NoSend:
        def request(self, *a, **kw):
            raise AssertionError("a request was sent")

    cfg = KernelConfig(NoSend(), AuditFlags(allow_config=True))
    with pytest.raises(UnsafeSetting):
        cfg._set(name, 2, nfields=11)  # noqa: SLF001 - the one door every status write goes through


def test_kernel_found_with_failure_2_is_left_alone() -> None:
    kernel = _kernel({"enabled": 1, "failure": 2})
    with EndpointServer(kernel).start() as server:
        t = RecordingTransport(Transport.over_socket(server.connect_pair()))
        cfg = KernelConfig(t, AuditFlags(allow_config=True, allow_sockets=True), machine="x86_64")
        out = cfg.configure()
        assert not out.read_only
        assert "failure" not in out.status_changed
        assert any("panic" in w for w in out.warnings)
        cfg.restore()
        t.close()
    assert all(not (s.mask & MASK_FAILURE) for s in t.sets), "the failure mode was written"
    assert kernel.failure == 2


def test_immutable_kernel_is_not_touched() -> None:
    kernel = _kernel({"enabled": 2, "failure": 1})
    with EndpointServer(kernel).start() as server:
        t = RecordingTransport(Transport.over_socket(server.connect_pair()))
        cfg = KernelConfig(t, AuditFlags(allow_config=True, allow_sockets=True, force_reconfigure=True))
        out = cfg.configure()
        cfg.restore()
        t.close()
    assert out.read_only and out.mode == "multicast"
    assert t.sets == []


def test_a_state_file_asking_for_2_is_not_obeyed(tmp_path: Path) -> None:
    """A killed run's restore file (or a forged one) saying failure=2/enabled=2 is never written back."""
    state = tmp_path / "collect-kernel.json"
    state.write_text(json.dumps({"version": 1, "pid": 999999999, "time": int(time.time()),
                                 "registered_pid": None, "status": {"failure": 2, "enabled": 2},
                                 "deleted_rules": [], "added_rules": []}))
    kernel = _kernel({"enabled": 1, "failure": 1})
    with EndpointServer(kernel).start() as server:
        t = RecordingTransport(Transport.over_socket(server.connect_pair()))
        cfg = KernelConfig(t, AuditFlags(allow_config=True, allow_sockets=True), machine="x86_64",
                           state_path=state)
        cfg.configure()
        cfg.restore()
        t.close()
    assert not _unsafe_writes(t.sets)
    assert (kernel.failure, kernel.enabled) == (1, 1)


def test_a_failing_step_is_undone(tmp_path: Path) -> None:
    """The rule add is refused half way: everything done before it is undone, nothing leaks."""
    kernel = _kernel({"enabled": 0, "failure": 1, "backlog_limit": 64})
    before = _snapshot(kernel)
    original = kernel._receive_msg  # noqa: SLF001 - a refusal the model has no switch for

    def refuse(req):
        if req.msg.type == 1011:  # AUDIT_ADD_RULE
            return -22  # EINVAL: not a permission problem, so configure raises
        return original(req)

    kernel._receive_msg = refuse  # noqa: SLF001
    with EndpointServer(kernel).start() as server:
        t = Transport.over_socket(server.connect_pair())
        cfg = KernelConfig(t, AuditFlags(allow_config=True, allow_sockets=True), machine="x86_64",
                           state_path=tmp_path / "state.json")
        with pytest.raises(Exception, match="EINVAL|Invalid"):
            cfg.configure()
        t.close()
        assert server.call(_snapshot) == before
    assert not (tmp_path / "state.json").exists(), "a clean undo must remove the restore file"


# ---- only the kernel is listened to --------------------------------------------------------


def test_spoofed_sender_is_dropped_and_counted() -> None:
    from collector.pipeline import Pipeline
    from collector.reader import Reader
    from collector.tables.options import TableOptions

    kernel = AuditKernel(enabled=1)
    payload = b"audit(1795601611.485:77): arch=c000003e syscall=42 success=yes exit=0 pid=9 ppid=1"
    record = nl.encode(nl.NetlinkMessage(1300, 0, 0, 0, payload, short_len=True))
    with EndpointServer(kernel).start() as server:
        t = Transport.over_socket(server.connect_pair())
        try:
            port = t.port_id
            for sender in (1, 4242, 0xFFFFFFFE):
                assert server.send_datagram(port, record, sender=sender)
            assert server.send_datagram(port, record, sender=0)
            reader = Reader(t, pid=None, status_interval=3600)
            pipe = Pipeline(TableOptions(allow_sockets=True), uptime=None)
            end = time.monotonic() + 3
            while time.monotonic() < end and pipe.stats.ledger.received < 1:
                for m in reader.drain(0.1):
                    pipe.feed_netlink(m.type, m.payload)
            for m in reader.drain(0.2):
                pipe.feed_netlink(m.type, m.payload)
        finally:
            t.close()
    assert t.counters["dropped_sender"] == 3
    led = pipe.finish().ledger
    assert led.received == 1 and led.balanced


def test_netlink_backend_takes_the_sender_from_the_address() -> None:
    """On the real socket the sender is the nl_pid of recvmsg's address, not anything in the data."""
    from collector.transport import _NetlinkBackend

    class Sock:
        def recvmsg(self, n):
            hdr = struct.pack("=IHHII", 20, 1300, 0, 0, 0)  # nlmsg_pid 0 in the header ...
            return hdr + b"abcd", [], 0, (31337, 0)  # ... but sent from port 31337

    backend = _NetlinkBackend.__new__(_NetlinkBackend)
    backend.sock = Sock()
    sender, _data, _trunc = backend.recv()
    assert sender == 31337


def test_an_exception_mid_run_restores_the_kernel(tmp_path: Path) -> None:
    """The row sink fails (disk full, closed pipe) while events flow: collect raises, and the
    kernel is restored on the way out."""
    import threading

    from collector.commands.collect import Collector

    class FailingOut:
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            pass

    kernel = _kernel({"enabled": 0, "failure": 1, "backlog_limit": 64})
    before = _snapshot(kernel)
    server = EndpointServer(kernel)
    server.listen(str(tmp_path / "audit.sock"))
    server.start()
    try:
        col = Collector(server.endpoint, AuditFlags(allow_config=True, allow_sockets=True), FailingOut(),
                        duration=20, status_interval=0.2)
        result: dict = {}

        def run() -> None:
            try:
                col.run()
            except BaseException as exc:  # noqa: BLE001 - inspected below
                result["error"] = exc

        th = threading.Thread(target=run, daemon=True)
        th.start()
        end = time.monotonic() + 10
        while kernel.auditd_pid == 0 and time.monotonic() < end:
            time.sleep(0.02)
        assert kernel.auditd_pid, "collect did not register"
        stamp = (1795601611, 1, 500)
        syscall = ("arch=c000003e syscall=42 success=yes exit=0 a0=3 a1=0 a2=10 a3=0 items=0 ppid=1 pid=4242 "
                   'auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="nc" '
                   'exe="/usr/bin/nc" key="kaudit"')
        server.emit_record(1300, syscall, stamp=stamp)
        server.emit_record(1306, "saddr=0200B3E37F0000010000000000000000", stamp=stamp)
        server.emit_record(1320, "", stamp=stamp)
        th.join(15)
        assert not th.is_alive(), "collect kept running after its sink failed"
        assert isinstance(result.get("error"), OSError), result
        assert server.call(_snapshot) == before, "the kernel was not restored after the exception"
    finally:
        server.stop()
