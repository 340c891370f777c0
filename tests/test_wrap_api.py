"""simulator/wrap.py on the public API of the replay engine and the kernel model.

``kaudit wrap --scenario`` feeds a scenario with the same engine as ``kaudit check``
(``simulator.replay.Feeder``), finds the wrapped program's sockets with
``replay.reader_clients`` and reports the kernel with ``replay.kernel_snapshot``; the signal
sender that auditd logs in DAEMON_END goes through ``AuditKernel.note_signal``
(``audit_signal_info()``). No private names of other modules: these tests pin that, and what
``note_signal`` does.
"""

from __future__ import annotations

import ast
import struct
import subprocess
import sys
from pathlib import Path

from simulator import replay
from simulator.fixtures import KernelHarness
from simulator.kernel import AuditKernel
from simulator.scenario import parse_scenario_text

AUDIT_SIGNAL_INFO = 1010
WRAP = Path(__file__).resolve().parents[1] / "simulator" / "wrap.py"


def _signal_info(box: KernelHarness, client) -> tuple[int, int]:
    payload = [m for m in box.send(client, AUDIT_SIGNAL_INFO) if m.type == AUDIT_SIGNAL_INFO][0].payload
    return struct.unpack("=Ii", payload[:8])


def test_note_signal_is_what_signal_info_answers() -> None:
    box = KernelHarness(AuditKernel(enabled=1))
    daemon = box.sock(pid=700)
    assert box.send(daemon, 1001, struct.pack("=10I", 4, 0, 0, 700, 0, 0, 0, 0, 0, 0))  # AUDIT_SET pid
    assert box.kernel.auditd_pid == 700
    assert _signal_info(box, daemon) == (0xFFFFFFFF, -1)  # nobody signalled it yet
    # a signal to another process is not the daemon's business: nothing is remembered
    assert box.kernel.note_signal(1234, 1000, target=701) is False
    assert _signal_info(box, daemon) == (0xFFFFFFFF, -1)
    assert box.kernel.note_signal(1234, 1000, target=700) is True
    assert _signal_info(box, daemon) == (1000, 1234)
    assert box.kernel.note_signal(99, 0) is True  # no target: the caller vouches for it
    assert _signal_info(box, daemon) == (0, 99)


def test_note_signal_without_a_daemon_remembers_nothing() -> None:
    k = AuditKernel(enabled=1)
    assert k.note_signal(1234, 0, target=1) is False
    assert (k.sig_pid, k.sig_uid) == (-1, 0xFFFFFFFF)


def test_wrap_uses_no_private_name_of_another_module() -> None:
    tree = ast.parse(WRAP.read_text())
    private = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                private.append(node.attr)
        if isinstance(node, ast.ImportFrom):
            private += [a.name for a in node.names if a.name.startswith("_")]
        if isinstance(node, ast.Attribute) and node.attr in ("sig_pid", "sig_uid"):
            private.append(node.attr)
    assert not private, f"simulator/wrap.py reaches into other modules: {sorted(set(private))}"
    assert not hasattr(replay, "_Feeder") and not hasattr(replay, "_kernel_snapshot")
    assert {"Feeder", "reader_clients", "kernel_snapshot"} <= set(replay.__all__)


def test_wrap_feeder_is_the_replay_engines() -> None:
    from simulator.endpoint import EndpointServer
    from simulator.wrap import _feeder

    sc = parse_scenario_text("name: x\nmessages:\n  - record: 'type=EOE msg=audit(1.1:2): '\n", "x.yaml")
    server = EndpointServer(AuditKernel(enabled=1))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        feeder = _feeder(sc, server, proc, 4242)
        assert type(feeder) is replay.Feeder and feeder.our_pid == 4242
        proc.wait(10)
        assert feeder.collector.error  # the command is gone: the feed gives up
    finally:
        proc.wait(10)


def test_kernel_snapshot_names_status_and_rules() -> None:
    k = AuditKernel(enabled=1, backlog_limit=321)
    from collector.protocol.auditctl import parse_rule

    k.load(rules=[parse_rule("-a always,exit -F arch=b64 -S connect -k net", "x86_64").encode()])
    snap = replay.kernel_snapshot(k)
    assert snap["status"]["enabled"] == 1 and snap["status"]["backlog_limit"] == 321 and snap["status"]["pid"] == 0
    assert "mask" not in snap["status"]
    assert snap["rules"] == ["-a always,exit -F arch=b64 -S connect -F key=net"]
