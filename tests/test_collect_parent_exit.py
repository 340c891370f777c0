"""A collector whose parent is SIGKILLed stops by itself and restores the kernel it configured.

``kaudit collect --exit-with-parent`` polls ``getppid()`` in its loop; ``kaudit verify`` starts
its collector so, in a process group of its own. Here the collector always talks to a simulator
(served from this test process), so the "kernel" it must restore is the model: nothing here
changes the machine's audit state. The verify test reads the real kernel's status (read-only)
because verify does so before it starts its collector.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from collector.protocol.auditctl import parse_rule
from collector.transport import kernel_unreachable_reason
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel
from simulator.verify import default_collector

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
OTHER_RULE = "-a always,exit -F arch=b64 -S openat -k files"


@pytest.fixture
def sim():
    tmp = Path(tempfile.mkdtemp(prefix="kaudit-orphan-"))
    kernel = AuditKernel()
    kernel.load(rules=[parse_rule(OTHER_RULE, "x86_64").encode()])
    server = EndpointServer(kernel)
    server.listen(str(tmp / "audit.sock"))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def _state(server: EndpointServer) -> tuple:
    return server.call(lambda k: (k.enabled, k.auditd_pid, k.backlog_limit, k.rule_payloads()))


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, what
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _collect_argv(endpoint: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "collector.cli", "collect", "--endpoint", endpoint, "--output", str(out),
            "--state-file", "none", "--duration", "120", *extra]


def _configured(server: EndpointServer, pid: int) -> bool:
    return server.call(lambda k: k.auditd_pid == pid and k.enabled == 1 and len(k.rule_payloads()) > 1)


def _parent_of_collect(endpoint: str, out: Path, *extra: str) -> subprocess.Popen:
    """A process that starts the collector, prints its pid and waits for ever (until SIGKILLed)."""
    code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen({_collect_argv(endpoint, out, *extra)!r}, stderr=open({str(out) + '.log'!r}, 'w'))\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)


def test_collect_stops_and_restores_when_its_parent_is_killed(sim, tmp_path):
    before = _state(sim)
    out = tmp_path / "rows.jsonl"
    parent = _parent_of_collect(sim.endpoint, out, "--exit-with-parent")
    pid = 0
    try:
        pid = int(parent.stdout.readline())
        _wait(lambda: _configured(sim, pid), 20, "the collector never configured the simulator")
        parent.kill()
        parent.wait()
        # the loop looks at getppid() every POLL_SECONDS; restoring takes a moment more
        _wait(lambda: not _alive(pid), 15, "the collector outlived its SIGKILLed parent")
    finally:
        parent.stdout.close()
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert _state(sim) == before, Path(str(out) + ".log").read_text()
    log = Path(str(out) + ".log").read_text()
    assert f"parent process {parent.pid} exited: stopping" in log
    assert "restored the audit state found at start" in log


def test_without_the_flag_an_orphan_keeps_running(sim, tmp_path):
    """The behaviour is opt-in: a collector started by a shell that exits keeps collecting."""
    out = tmp_path / "rows.jsonl"
    parent = _parent_of_collect(sim.endpoint, out)
    pid = int(parent.stdout.readline())
    try:
        _wait(lambda: _configured(sim, pid), 20, "the collector never configured the simulator")
        parent.kill()
        parent.wait()
        time.sleep(1.0)
        assert _alive(pid)
    finally:
        parent.stdout.close()
        os.kill(pid, signal.SIGTERM)
    _wait(lambda: not _alive(pid), 20, "the collector did not stop on SIGTERM")


def test_exit_with_parent_pid_that_is_not_our_parent_stops_at_once(sim, tmp_path):
    """verify passes its own pid: a verify gone before the collector started is noticed too."""
    before = _state(sim)
    proc = subprocess.run(
        _collect_argv(sim.endpoint, tmp_path / "rows.jsonl", "--exit-with-parent", "1"),
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "parent process 1 exited: stopping" in proc.stderr
    assert _state(sim) == before


def test_verify_starts_its_collector_so():
    argv = default_collector(Path("/tmp/rows.jsonl"))
    assert argv[argv.index("--exit-with-parent") + 1] == str(os.getpid())


@pytest.mark.skipif(os.geteuid() != 0, reason="kaudit verify needs root")
def test_a_sigkilled_verify_leaves_no_collector_running(sim, tmp_path):
    why = kernel_unreachable_reason()
    if why:
        pytest.skip(f"kaudit verify reads the kernel's audit state first: {why}")
    before = _state(sim)
    collector = shlex.join(
        _collect_argv(sim.endpoint, Path("OUTPUT"), "--exit-with-parent")
    ).replace("OUTPUT", "{output}")
    err_path = tmp_path / "verify.err"
    with open(err_path, "w") as err:
        verify = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "verify", "--no-lock", "--workload", "bind",
             "--collector", collector],
            stdout=subprocess.DEVNULL, stderr=err, env=ENV, cwd=ROOT, process_group=0,
        )
    pid = 0
    workdir = None
    try:
        def started() -> bool:
            return "collector started (pid" in err_path.read_text() or verify.poll() is not None

        _wait(started, 60, "verify never started its collector")
        text = err_path.read_text()
        m = re.search(r"collector started \(pid (\d+)\): .*--output (\S+)", text)
        assert m, text
        pid, workdir = int(m.group(1)), Path(m.group(2)).parent
        # its own process group: a kill of verify's group (a CI job killed, Ctrl-C) does not
        # take the collector with it before it could restore
        assert os.getpgid(pid) == pid != os.getpgid(verify.pid)
        _wait(lambda: _configured(sim, pid), 20, "the collector never configured the simulator")
        os.killpg(verify.pid, signal.SIGKILL)
        verify.wait()
        _wait(lambda: not _alive(pid), 15, "the collector outlived its SIGKILLed verify")
    finally:
        if verify.poll() is None:
            verify.kill()
            verify.wait()
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        if workdir is not None and workdir.name.startswith("kaudit-verify-"):
            shutil.rmtree(workdir, ignore_errors=True)  # verify could not clean up after a SIGKILL
    assert _state(sim) == before, err_path.read_text()
