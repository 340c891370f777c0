"""``kaudit collect`` against the simulator: rows as events complete, restore on every exit path.

The simulator serves from this test process (a thread); the collector runs in-process or as
a subprocess (``python -m collector.cli collect --endpoint unix:PATH``), which is how signals
are tested. Nothing here touches the machine's kernel.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from collector.cli import main
from collector.commands.collect import COLLECT_DEFAULTS, Collector
from collector.flags import AuditFlags
from collector.protocol.auditctl import parse_rule
from collector.protocol.records import record_type_number
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel

ROOT = Path(__file__).resolve().parents[1]
SYSCALL, EXECVE, CWD, PATH, EOE = (record_type_number(n) for n in ("SYSCALL", "EXECVE", "CWD", "PATH", "EOE"))
SOCKADDR = record_type_number("SOCKADDR")
OTHER_RULE = "-a always,exit -F arch=b64 -S openat -k files"


def exec_event(pid: int, serial: int) -> list[tuple[int, str]]:
    stamp = (1700000000, 100, serial)
    body = [
        (
            SYSCALL,
            f'arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=1 ppid=1 pid={pid} auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="echo" exe="/usr/bin/echo" key="kaudit"',
        ),
        (EXECVE, 'argc=3 a0="/bin/echo" a1="hello" a2="world"'),
        (CWD, 'cwd="/srv"'),
        (
            PATH,
            'item=0 name="/bin/echo" inode=1 dev=08:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL',
        ),
        (EOE, ""),
    ]
    return [(t, f"audit({stamp[0]}.{stamp[1]:03d}:{stamp[2]}): {text}") for t, text in body]


def connect_event(pid: int, serial: int) -> list[tuple[int, str]]:
    head = f"audit(1700000001.000:{serial}): "
    return [
        (
            SYSCALL,
            head
            + f'arch=c000003e syscall=42 success=yes exit=0 a0=3 a1=7ffd a2=10 a3=0 items=0 ppid=1 pid={pid} auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="curl" exe="/usr/bin/curl" key="kaudit"',
        ),
        (SOCKADDR, head + "saddr=02001F907F0000010000000000000000"),
        (EOE, head),
    ]


class Sim:
    """A simulated kernel served on a unix socket path."""

    def __init__(self, path: Path, kernel: AuditKernel) -> None:
        self.kernel = kernel
        self.server = EndpointServer(kernel)
        self.server.listen(str(path))
        self.server.start()
        self.endpoint = f"unix:{path}"

    def state(self) -> tuple:
        def grab(k: AuditKernel):
            return (
                k.enabled,
                k.failure,
                k.auditd_pid,
                k.backlog_limit,
                k.backlog_wait_time,
                k.rule_payloads(),
            )

        return self.server.call(grab)

    def emit(self, records: list[tuple[int, str]]) -> None:
        for rtype, text in records:
            self.server.emit_record(rtype, text)

    def wait(self, cond, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not self.server.call(cond):
            assert time.monotonic() < end, "the simulator did not reach the expected state"
            time.sleep(0.02)


@pytest.fixture
def sim():
    sims: list[Sim] = []
    # a short directory: unix socket paths are limited to 107 bytes, pytest's tmp_path may be longer
    tmp = Path(tempfile.mkdtemp(prefix="kaudit-collect-"))

    def make(kernel: AuditKernel | None = None, rules: tuple[str, ...] = (OTHER_RULE,)) -> Sim:
        k = kernel or AuditKernel()
        k.load(rules=[parse_rule(r, "x86_64").encode() for r in rules])
        s = Sim(tmp / f"k{len(sims)}.sock", k)
        sims.append(s)
        return s

    yield make
    for s in sims:
        s.server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_collect_in_process(sim):
    s = sim()
    before = s.state()
    out = io.StringIO()
    c = Collector(s.endpoint, COLLECT_DEFAULTS, out, duration=1.5, status_interval=0.3)

    def workload():
        s.wait(lambda k: k.auditd_pid == os.getpid() and any(b"kaudit" in p for p in k.rule_payloads()))
        s.emit(exec_event(4321, 90001) + connect_event(4322, 90002))

    th = threading.Thread(target=workload, daemon=True)
    th.start()
    stats = c.run()
    th.join(5)
    rows = _rows(out.getvalue())
    assert [(r["table"], r["pid"]) for r in rows] == [("process_events", 4321), ("socket_events", 4322)]
    assert rows[0]["cmdline"] == "/bin/echo hello world" and rows[0]["cwd"] == "/srv"
    assert rows[1]["remote_address"] == "127.0.0.1" and rows[1]["remote_port"] == 8080
    assert rows[0]["uptime"] > 0  # live rows carry the host's uptime
    assert s.state() == before
    assert not c.restore_errors
    assert stats.ledger.balanced and stats.rows == 2
    assert stats.kernel is not None and stats.kernel["status_polls"] >= 1


def _spawn(endpoint: str, *extra: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector.cli",
            "collect",
            "--endpoint",
            endpoint,
            "--output",
            str(out),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_restores_and_rows_were_flushed_per_event(sim, tmp_path, signum, code):
    s = sim()
    before = s.state()
    out = tmp_path / "rows.jsonl"
    proc = _spawn(s.endpoint, "--stats", out=out)
    try:
        s.wait(lambda k: k.auditd_pid == proc.pid and k.enabled == 1 and len(k.rule_payloads()) > 1)
        s.emit(exec_event(5555, 91001))
        # the row is in the file while the collector still runs: flushed when the event completed
        end = time.monotonic() + 10
        while not (out.exists() and out.read_text().strip()):
            assert time.monotonic() < end, "no row was flushed"
            time.sleep(0.05)
        assert _rows(out.read_text())[0]["pid"] == 5555
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert s.state() == before, err
    assert "restored the audit state found at start" in err
    assert "ledger        received" in err


def test_duration_end_exits_0_and_restores(sim, tmp_path):
    s = sim()
    before = s.state()
    out = tmp_path / "rows.jsonl"
    stats = tmp_path / "stats.json"
    proc = _spawn(s.endpoint, "--duration", "1", "--stats-json", str(stats), out=out)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert s.state() == before
    d = json.loads(stats.read_text())
    assert d["ledger"]["balanced"] is True and "kernel" in d


def test_immutable_kernel_is_read_through_multicast(sim, tmp_path):
    # simulator only: enabled=2 would lock the real kernel's audit until reboot
    s = sim(AuditKernel(enabled=2))
    before = s.state()
    out = io.StringIO()
    c = Collector(s.endpoint, COLLECT_DEFAULTS, out, duration=1.5)

    def workload():
        s.wait(lambda k: any(m.groups & 1 for m in k.members))
        s.emit(exec_event(6666, 92001))

    th = threading.Thread(target=workload, daemon=True)
    th.start()
    stats = c.run()
    th.join(5)
    assert c.config is not None and c.config.outcome.read_only
    assert [r["pid"] for r in _rows(out.getvalue())] == [6666]
    assert s.state() == before
    assert stats.ledger.balanced


def test_allow_config_off_reads_without_changing(sim, tmp_path, capsys):
    s = sim()
    before = s.state()
    rc = main(["collect", "--endpoint", s.endpoint, "--duration", "0.5", "--audit_allow_config=false"])
    assert rc == 0
    assert "audit_allow_config is off" in capsys.readouterr().err
    assert s.state() == before


def test_stale_rules_of_a_killed_run_are_removed(sim, tmp_path):
    s = sim()
    before = s.state()
    out = tmp_path / "rows.jsonl"
    state = tmp_path / "state.json"
    proc = _spawn(s.endpoint, "--state-file", str(state), out=out)
    try:
        s.wait(lambda k: k.auditd_pid == proc.pid and len(k.rule_payloads()) > 1)
    finally:
        proc.kill()
        proc.communicate(timeout=20)
    assert s.state() != before  # killed: nothing was restored
    assert state.exists()
    proc2 = _spawn(s.endpoint, "--duration", "0.5", "--state-file", str(state), out=out)
    _, err = proc2.communicate(timeout=30)
    assert proc2.returncode == 0, err
    assert "killed run" in err
    assert s.state() == before
    assert not state.exists()


def test_stale_rules_are_removed_even_without_a_state_file(sim, tmp_path):
    s = sim(rules=(OTHER_RULE, "-a always,exit -F arch=b64 -S connect -k kaudit"))
    out = io.StringIO()
    c = Collector(s.endpoint, COLLECT_DEFAULTS, out, duration=0.2)
    c.run()
    assert c.config is not None and len(c.config.outcome.stale_removed) == 1
    assert s.server.call(lambda k: [p for p in k.rule_payloads() if b"kaudit" in p]) == []


def test_usage_errors(sim, tmp_path, capsys):
    assert main(["collect", "--endpoint", "tcp:1"]) == 2
    assert "expected 'kernel' or 'unix:PATH'" in capsys.readouterr().err
    assert main(["collect", "--endpoint", f"unix:{tmp_path / 'none.sock'}", "--duration", "0"]) == 2
    assert "cannot connect to the simulator endpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--audit_backlog_limit=many"])
    assert exc.value.code == 2


def test_collect_defaults():
    assert (
        COLLECT_DEFAULTS.allow_config
        and COLLECT_DEFAULTS.allow_sockets
        and COLLECT_DEFAULTS.allow_process_events
    )
    assert COLLECT_DEFAULTS.backlog_limit == AuditFlags().backlog_limit
