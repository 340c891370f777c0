"""``kaudit wrap``: exit codes, the endpoint and scenario modes, and the command's lifetime."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel
from simulator.redirect import ShimBuildError, shim_path
from simulator.scenario import parse_scenario_text
from simulator.wrap import run_with_scenario

ROOT = Path(__file__).resolve().parents[1]
AUDITCTL = "/usr/sbin/auditctl"

SCENARIO = """\
name: wrap-cli-connect
kernel: {status: {enabled: 1, failure: 1, backlog_limit: 8192}}
messages:
  - record: 'type=SYSCALL msg=audit(1795601611.485:1327823): arch=c000003e syscall=42 success=no exit=-115 a0=5 a1=7ffd3c1e2a40 a2=10 a3=0 items=0 ppid=14960 pid=14967 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="curl" exe="/usr/bin/curl" key="kaudit-net"'
  - record: 'type=SOCKADDR msg=audit(1795601611.485:1327823): saddr=0200B3E37F0000010000000000000000'
  - record: 'type=EOE msg=audit(1795601611.485:1327823): '
  - record: 'type=SYSCALL msg=audit(1795601611.502:1327824): arch=c000003e syscall=42 success=yes exit=0 a0=6 a1=7ffd3c1e2b80 a2=1c a3=0 items=0 ppid=14960 pid=14967 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="curl" exe="/usr/bin/curl" key="kaudit-net"'
  - record: 'type=SOCKADDR msg=audit(1795601611.502:1327824): saddr=0A00B3E3000000000000000000000000000000000000000100000000'
  - record: 'type=EOE msg=audit(1795601611.502:1327824): '
"""

# A minimal collector: registers late (so replay has to wait for it), prints every record.
COLLECTOR = r"""
import os, signal, socket, struct, sys, time
mode = sys.argv[1]
signal.signal(signal.SIGTERM, lambda *_: (print("TERM", flush=True), sys.exit(0)))
time.sleep(0.5)
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)
if mode == "multicast":
    s.bind((0, 1))
else:
    status = struct.pack("=10I", 4, 0, 0, os.getpid(), 0, 0, 0, 0, 0, 0)
    s.sendto(struct.pack("=IHHII", 16 + len(status), 1001, 5, 1, 0) + status, (0, 0))
while True:
    data = s.recv(65536)
    length, mtype = struct.unpack_from("=IH", data)
    if mtype >= 1300 and mtype not in (1305, 1335):  # not the control plane's own records
        print(mtype, data[16:].decode(), flush=True)
"""


@pytest.fixture(scope="module", autouse=True)
def shim() -> str:
    try:
        return str(shim_path())
    except ShimBuildError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def sockdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="kaudit-wc-") as d:
        yield d


def kaudit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def scenario_file(tmp_path: Path, text: str = SCENARIO) -> str:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return str(p)


needs_auditctl = pytest.mark.skipif(not os.access(AUDITCTL, os.X_OK), reason=f"{AUDITCTL} (package auditd) is not installed")


@needs_auditctl
def test_endpoint_mode_runs_auditctl_against_the_simulator(sockdir: str) -> None:
    with EndpointServer(AuditKernel(enabled=1, backlog_limit=4242)) as srv:
        srv.listen(os.path.join(sockdir, "a.sock"))
        srv.start()
        ok = kaudit("wrap", "--endpoint", srv.endpoint, "--", AUDITCTL, "-s")
        assert ok.returncode == 0, ok.stderr
        assert "backlog_limit 4242" in ok.stdout  # the simulator answered, not the kernel
        gone = kaudit("wrap", "--endpoint", srv.endpoint, "--", AUDITCTL, "-d", "always,exit", "-F", "arch=b64",
                      "-S", "connect", "-k", "kaudit-none")
        assert gone.returncode == 255 and "No such file or directory" in gone.stderr  # the kernel's ENOENT


def test_exit_code_is_the_commands(sockdir: str) -> None:
    with EndpointServer() as srv:
        srv.listen(os.path.join(sockdir, "a.sock"))
        srv.start()
        assert kaudit("wrap", "--endpoint", srv.endpoint, "--", "sh", "-c", "exit 7").returncode == 7
        killed = kaudit("wrap", "--endpoint", srv.endpoint, "--", "sh", "-c", "kill -USR1 $$")
        assert killed.returncode in (128 + 10, -10)  # exec'd: the caller sees the signal itself


@needs_auditctl
def test_missing_endpoint_is_said_and_the_program_fails(sockdir: str) -> None:
    path = os.path.join(sockdir, "nobody.sock")
    r = kaudit("wrap", "--endpoint", f"unix:{path}", "--", AUDITCTL, "-s")
    assert r.returncode != 0
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("kaudit-redirect:")]
    assert len(line) == 1 and path in line[0] and "ECONNREFUSED" in line[0]
    assert "Connection refused" in r.stderr  # what auditctl itself makes of it


def test_usage_errors() -> None:
    assert kaudit("wrap", "--endpoint", "unix:/tmp/x.sock").returncode == 2  # no command
    assert kaudit("wrap", "--", "true").returncode == 2  # neither --endpoint nor --scenario
    assert kaudit("wrap", "--endpoint", "tcp:1.2.3.4", "--", "true").returncode == 2
    nf = kaudit("wrap", "--endpoint", "unix:/tmp/x.sock", "--", "kaudit-no-such-command")
    assert nf.returncode == 127 and "not found" in nf.stderr


def test_bad_scenario_is_named(tmp_path: Path) -> None:
    r = kaudit("wrap", "--scenario", scenario_file(tmp_path, "name: x\nmessages: [{record: 'nonsense'}]\n"),
               "--", "true")
    assert r.returncode == 2 and "s.yaml" in r.stderr


def test_scenario_for_a_command_that_never_registers(tmp_path: Path) -> None:
    r = kaudit("wrap", "--scenario", scenario_file(tmp_path), "--", "sh", "-c", "exit 3")
    assert r.returncode == 3
    assert "never registered" in r.stderr and "6 messages were not delivered" in r.stderr


def test_ready_timeout_stops_the_command(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = kaudit("wrap", "--scenario", scenario_file(tmp_path), "--ready-timeout", "0.5", "--grace", "2",
               "--", "sleep", "60")
    assert r.returncode == 2 and "within 0.5 s" in r.stderr
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("mode", ["unicast", "multicast"])
def test_replay_waits_for_the_reader_then_stops_it(tmp_path: Path, mode: str) -> None:
    sc = parse_scenario_text(SCENARIO, "inline")
    out = tmp_path / "out"
    with open(out, "w") as fp:
        res = run_with_scenario([sys.executable, "-c", COLLECTOR, mode], sc, ready_timeout=20, linger=0.2,
                                grace=5, stdout=fp)
    assert res.error is None, res
    assert res.registered and res.mode == mode and res.delivered
    assert res.stopped_by == "SIGTERM" and res.returncode == 0
    lines = out.read_text().splitlines()
    assert lines[-1] == "TERM"
    got = [ln.split(" ", 1) for ln in lines[:-1]]
    want = [m for m in sc.messages()]
    assert [int(t) for t, _ in got] == [m.type for m in want]
    for (_, text), m in zip(got, want, strict=True):
        body = m.payload.decode()
        assert text.split("): ", 1)[1] == body.split("): ", 1)[1]  # every record arrived whole
        assert text.split(":", 1)[0] == body.split(":", 1)[0]  # with its recorded time stamp
    assert res.kernel["status"]["pid"] in (0, res.reader_pid)


def test_wrapped_command_cannot_outlive_kaudit(tmp_path: Path) -> None:
    """A command that ignores SIGTERM is killed after the grace period; its children too."""
    sc = parse_scenario_text(SCENARIO, "inline")
    pidfile = tmp_path / "child.pid"
    script = (
        "import os, signal, socket, struct, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"c = subprocess.Popen(['sleep', '120']); open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
        "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9); s.bind((0, 1))\n"
        "while True: s.recv(65536)\n"
    )
    res = run_with_scenario([sys.executable, "-c", script], sc, ready_timeout=20, linger=0, grace=1)
    assert res.stopped_by == "SIGKILL" and res.returncode == 128 + 9
    child = int(pidfile.read_text())
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the wrapped command's child {child} survived")
