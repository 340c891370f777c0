"""bench storm machinery: workers, CPU accounting, the kernel snapshot and restore, the report.

The snapshot/restore logic runs against the simulator (no kernel state touched). One test,
marked ``live``, runs a one-second connect storm on the real kernel under the live lock with
kaudit (receiver) and auditd, and checks what must hold whatever the machine's speed: the
kernel's state comes back, no auditd is left running, and the figures add up.

``kaudit`` is ``kaudit collect`` as it is (its default receiver, ``process``);
``kaudit-noreceiver`` (``--receiver off``) is only run when asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.peers import AuditdDaemon, unavailable
from bench.storm import (
    COLLECTORS,
    DEFAULT_COLLECTORS,
    KauditCollector,
    Kernel,
    KernelWatch,
    _field,
    _port_is_closed,
    add_arguments,
    format_report,
    run_storm_bench,
    tree_cpu,
)
from collector.config import KernelConfig
from collector.flags import AuditFlags
from collector.protocol.auditctl import parse_rule
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel

ROOT = Path(__file__).resolve().parents[1]


def _free_closed_port() -> int:
    for port in (9, 19, 47, 1023):
        if _port_is_closed(port):
            return port
    pytest.skip("no closed loopback port found")


@pytest.mark.parametrize("kind", ["connect", "execve"])
def test_worker_waits_for_go_then_counts_its_calls(kind: str) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "bench.storm", "_worker", kind, "0.3", str(_free_closed_port())],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert p.stdout.readline().strip() == "ready"
    out, _ = p.communicate("go\n", timeout=60)
    got = json.loads(out.strip().splitlines()[-1])
    assert p.returncode == 0 and got["kind"] == kind and got["pid"] == p.pid
    assert got["calls"] > 0 and got["seconds"] >= 0.3


def test_tree_cpu_counts_a_busy_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nend=time.time()+1.5\nwhile time.time()<end: pass"])
    try:
        me_before = tree_cpu(os.getpid())
        time.sleep(1.0)
        me_after = tree_cpu(os.getpid())
    finally:
        child.wait()
    assert me_after - me_before >= 0.3  # the busy child is in our tree
    assert tree_cpu(999_999_999) == 0.0  # no such process: nothing, no error


@pytest.fixture
def sim_kernel_endpoint(tmp_path: Path):
    kernel = AuditKernel()
    kernel.load(rules=[parse_rule("-a always,exit -F arch=b64 -S openat -k files", "x86_64").encode()])
    server = EndpointServer(kernel)
    server.listen(str(tmp_path / "k.sock"))
    server.start()
    try:
        yield f"unix:{tmp_path / 'k.sock'}", server
    finally:
        server.stop()


def test_restore_puts_back_status_and_rules_found(sim_kernel_endpoint) -> None:
    endpoint, server = sim_kernel_endpoint
    k = Kernel(endpoint)
    try:
        snap = k.snapshot()
        flags = AuditFlags(allow_config=True, allow_sockets=True, allow_process_events=True)
        for rule in KernelConfig(None, flags).planned_rules():
            k.add_rule(rule.encode())
        assert k.keyed_rules("kaudit") == len(KernelConfig(None, flags).planned_rules()) >= 1
        assert k.keyed_rules("files") == 1 and k.keyed_rules("nope") == 0
        k.set(backlog_limit=8192, backlog_wait_time=0)
        k.set(enabled=1)
        k.del_rule(snap.rules[0])  # and one found rule gone
        assert k.snapshot() != snap
        notes = k.restore(snap)
        assert k.snapshot() == snap
        assert any("rule" in n for n in notes) and any("enabled=0" in n for n in notes)
        assert k.restore(snap) == []  # nothing left to do
        with pytest.raises(ValueError, match="failure=2"):
            k.set(failure=2)
        with pytest.raises(ValueError, match="enabled=2"):
            k.set(enabled=2)
    finally:
        k.close()


def test_kernel_watch_samples_backlog_and_lost(sim_kernel_endpoint) -> None:
    endpoint, server = sim_kernel_endpoint
    k = Kernel(endpoint)
    try:
        w = KernelWatch(k, interval=0.01).start()
        time.sleep(0.3)
        w.stop()
        assert len(w.samples) >= 3 and w.errors == 0
        t, backlog, lost, pid, waited = w.samples[-1]
        assert backlog == 0 and lost == server.call(lambda kern: kern.lost) and pid == 0 and waited >= 0
        assert w.window(w.samples[0][0], w.samples[1][0]) == w.samples[:2]
    finally:
        k.close()


def test_auditd_config_is_private_and_never_rotates(tmp_path: Path) -> None:
    d = AuditdDaemon(tmp_path / "a")
    conf = d.write_config()
    text = conf.read_text()
    assert f"log_file = {d.log_file}" in text and f"plugin_dir = {d.conf_dir / 'plugins.d'}" in text
    assert "max_log_file_action = IGNORE" in text and "log_format = ENRICHED" in text
    assert oct(conf.stat().st_mode & 0o777) == "0o640"  # auditd refuses a config others may write
    assert not any((d.conf_dir / "plugins.d").iterdir())  # no dispatcher plugin (laurel's stays out)
    assert d.stop() is None  # never started: stopping is a no-op


def test_field_reads_a_token() -> None:
    line = b"type=SYSCALL msg=audit(1.0:1): arch=c000003e syscall=42 ppid=7 pid=123 auid=0"
    assert _field(line, b" pid=") == b"123" and _field(line, b" ppid=") == b"7"
    assert _field(line, b" nope=") is None


def test_format_report_shows_each_run() -> None:
    report = {
        "started": "now",
        "settings": {"duration_s": 1, "backlog_limit": 8192, "backlog_wait_time": 0, "auditd_log_format": "RAW"},
        "machine": {"nproc": 2, "cpu_model": "x", "kernel": "6", "machine": "x86_64", "mem_total_mib": 1,
                    "python": "3", "loadavg_at_start": [0.5, 0, 0]},
        "versions": {"auditd": "3.0.9"},
        "kernel_restored": True,
        "runs": [
            {"storm": "connect", "collector": "kaudit-noreceiver", "calls_per_s": 100.0, "records_per_s": 400.0,
             "kernel_lost": 0, "peak_backlog": 3, "cpu_percent": 12.0, "cpu_ms_per_1k_records": 20.0,
             "drain_s": 1.0, "worker_rows": 100, "events_generated": 100, "calls": 100, "error": None},
            {"storm": "connect", "collector": "auditd", "calls": 0, "error": "it broke"},
        ],
    }
    text = format_report(report)
    assert "kaudit-noreceiver" in text and "100/100" in text and "failed: it broke" in text
    assert "restored after every run: yes" in text


def test_kaudit_is_collect_as_it_is_and_noreceiver_only_on_request(tmp_path: Path) -> None:
    """``kaudit`` runs the plain command (so its default receiver); ``kaudit-noreceiver`` adds
    ``--receiver off`` and is not in the default list (a comparison, not a peer)."""
    limits = {"backlog_limit": 8192, "backlog_wait_time": 0}
    plain = KauditCollector(tmp_path, receiver=True, **limits)
    cmd = plain.command()
    assert plain.name == "kaudit" and cmd[1:4] == ["-m", "collector.cli", "collect"]
    assert "--receiver" not in cmd and plain.how == "kaudit collect"
    off = KauditCollector(tmp_path, receiver=False, **limits)
    cmd = off.command()
    assert off.name == "kaudit-noreceiver" and cmd[cmd.index("--receiver") + 1] == "off"
    assert "kaudit-noreceiver" in COLLECTORS and "kaudit-noreceiver" not in DEFAULT_COLLECTORS
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args([]).collectors == DEFAULT_COLLECTORS == ("kaudit", "auditd")
    assert p.parse_args(["--collectors", "kaudit,kaudit-noreceiver"]).collectors == ("kaudit", "kaudit-noreceiver")
    with pytest.raises(SystemExit):
        p.parse_args(["--collectors", "kaudit-receiver"])  # the old shim's name is gone


@pytest.mark.live
def test_live_connect_storm_restores_the_kernel_and_leaves_no_auditd(live_audit, tmp_path: Path) -> None:
    collectors = ("kaudit",) + (() if unavailable("auditd") else ("auditd",))
    before = subprocess.run(["pgrep", "-x", "auditd"], capture_output=True, text=True).stdout.split()
    report = run_storm_bench(("connect",), collectors, duration=1.0, drain_timeout=60, workdir=tmp_path,
                             port=_free_closed_port())
    after = subprocess.run(["pgrep", "-x", "auditd"], capture_output=True, text=True).stdout.split()
    assert after == before  # no auditd left behind
    assert report["kernel_restored"] is True
    for run in report["runs"]:
        assert run["error"] is None, run
        assert run["calls"] > 0 and run["records"] > 0 and run["kernel_series"]
        assert not [n for n in run["restore_notes"] if "INCOMPLETE" in n]
    k = next(r for r in report["runs"] if r["collector"] == "kaudit")
    assert k["how"] == "kaudit collect"
    # every row kaudit wrote for a worker's connect is one of the calls made, never more
    assert 0 < k["worker_rows"] <= k["events_generated"]
    assert k["cpu_ms_per_1k_records"] > 0 and k["extra"]["ledger_balanced"] is True
