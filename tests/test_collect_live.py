"""``kaudit collect`` on this machine's kernel: the issue's "Done when", SIGTERM and SIGKILL.

Marked ``live``: these change the real kernel's audit state. The test holds the live lock
for its whole duration (the conftest ``live_audit`` fixture when there is one, else our own
``collector.transport.live_lock``), runs the collector as a subprocess with ``--no-lock`` (the
lock is ours), and checks that the kernel's status and rules are afterwards exactly as found.
A safety net puts back anything a failing test would otherwise leave behind; it never writes
failure=2 or enabled=2.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from shutil import which

import pytest

from collector.protocol.records import AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_GET, AUDIT_LIST_RULES, AUDIT_SET
from collector.protocol.status import AuditStatus, status_set
from collector.transport import KernelError, kernel_unreachable_reason, live_lock, open_transport

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("live")]

ROOT = Path(__file__).resolve().parents[1]
RESTORED = ("enabled", "failure", "pid", "rate_limit", "backlog_limit", "backlog_wait_time")


def kernel_state() -> tuple[dict[str, int], list[bytes]]:
    """The kernel's restorable status fields and its rules (raw, in list order)."""
    with open_transport("kernel", rcvbuf=0) as t:
        st = AuditStatus.decode(t.request(AUDIT_GET)[0].payload)
        rules = [m.payload for m in t.request(AUDIT_LIST_RULES, dump=True) if m.type == AUDIT_LIST_RULES]
    return {k: getattr(st, k) for k in RESTORED}, rules


def _put_back(found: tuple[dict[str, int], list[bytes]]) -> None:
    """Safety net after a failed test: rules and status as found (never failure=2/enabled=2)."""
    status, rules = found
    now_status, now_rules = kernel_state()
    with open_transport("kernel", rcvbuf=0) as t:
        for payload in now_rules:
            if payload not in rules:
                t.request(AUDIT_DEL_RULE, payload)
        for payload in rules:
            if payload not in now_rules:
                t.request(AUDIT_ADD_RULE, payload)
        for name in ("backlog_limit", "backlog_wait_time", "rate_limit", "failure", "enabled"):
            value = status[name]
            if now_status[name] != value and not (name in ("failure", "enabled") and value == 2):
                t.request(AUDIT_SET, status_set(**{name: value}).encode())
        if now_status["pid"] and now_status["pid"] != status["pid"]:
            try:  # only a dead registration can be dropped by us; a live one is not ours
                t.request(AUDIT_SET, status_set(pid=0).encode())
            except KernelError:
                pass


@pytest.fixture
def live(request) -> Iterator[tuple[dict[str, int], list[bytes]]]:
    reason = kernel_unreachable_reason()
    if reason:
        pytest.skip(reason)
    try:
        request.getfixturevalue("live_audit")  # conftest: lock + snapshot + restore, if present
        held = contextlib.nullcontext()
    except pytest.FixtureLookupError:
        held = live_lock()
    with held:
        found = kernel_state()
        try:
            yield found
        finally:
            if kernel_state()[1] != found[1] or _differs(kernel_state()[0], found[0]):
                _put_back(found)


def _differs(a: dict[str, int], b: dict[str, int]) -> bool:
    return any(a[k] != b[k] for k in RESTORED)


def _collect(tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector.cli",
            "collect",
            "--no-lock",
            "--state-file",
            str(tmp_path / "collect-state.json"),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_configured(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"collect exited early ({proc.returncode}): {proc.stderr.read()}")
        status, rules = kernel_state()
        if status["pid"] == proc.pid and any(b"kaudit" in r for r in rules):
            return
        time.sleep(0.1)
    raise AssertionError("collect did not register and add its rules in time")


@contextmanager
def http_server() -> Iterator[int]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.skipif(which("curl") is None, reason="curl is not installed")
def test_done_when_connect_and_execve_rows(live, tmp_path):
    found = live
    out = tmp_path / "rows.jsonl"
    stats = tmp_path / "stats.json"
    with http_server() as port:
        proc = _collect(tmp_path, "--duration", "10", "--output", str(out), "--stats-json", str(stats))
        try:
            _wait_configured(proc)
            curl = subprocess.Popen(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/"],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert curl.communicate(timeout=20)[0] == "200"
            echo = subprocess.Popen(["/bin/echo", "hello", "world"], cwd=tmp_path, stdout=subprocess.PIPE)
            assert echo.communicate(timeout=10)[0] == b"hello world\n"
            _, err = proc.communicate(timeout=40)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    rows = _rows(out)
    connects = [
        r
        for r in rows
        if r["table"] == "socket_events"
        and r["action"] == "connect"
        and r["remote_port"] == port
        and r["remote_address"] == "127.0.0.1"
    ]
    assert connects, f"no connect row to 127.0.0.1:{port} in {len(rows)} rows"
    mine = [r for r in connects if r["pid"] == curl.pid]
    assert mine, (curl.pid, connects)
    assert mine[0]["path"] == os.path.realpath(which("curl"))
    assert any(r["table"] == "process_events" and r["pid"] == curl.pid for r in rows)
    execs = [r for r in rows if r["table"] == "process_events" and r["pid"] == echo.pid]
    assert len(execs) == 1, execs
    ex = execs[0]
    assert ex["syscall"] == "execve"
    assert ex["path"] == os.path.realpath("/bin/echo")
    assert ex["cmdline"] == "/bin/echo hello world"
    assert ex["cwd"] == str(tmp_path)
    assert ex["parent"] == os.getpid()
    # every received record is accounted for, and the kernel is as we found it
    st = json.loads(stats.read_text())
    assert st["ledger"]["balanced"] is True, st["ledger"]
    assert "kernel" in st and st["kernel"]["status_polls"] >= 1
    now = kernel_state()
    assert now[1] == found[1]
    assert not _differs(now[0], found[0]), (now[0], found[0])


def test_sigterm_restores(live, tmp_path):
    proc = _collect(tmp_path, "--output", str(tmp_path / "rows.jsonl"))
    try:
        _wait_configured(proc)
        assert kernel_state() != live
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    status, rules = kernel_state()
    assert rules == live[1]
    assert not _differs(status, live[0]), (status, live[0])


def test_sigkill_then_next_run_cleans_up(live, tmp_path):
    proc = _collect(tmp_path, "--output", str(tmp_path / "rows.jsonl"))
    try:
        _wait_configured(proc)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    status, rules = kernel_state()
    stale = [r for r in rules if b"kaudit" in r]
    assert stale, "the killed run's rules should still be in the kernel"
    # The kernel does not drop a dead daemon's registration when its socket closes: it keeps
    # the pid until it next tries to send it a record (kauditd gets ECONNREFUSED and resets it)
    # or someone registers (audit_replace). An audited exec makes the kernel send a record.
    assert status["pid"] in (proc.pid, 0)
    subprocess.run(["/bin/true"], check=True)
    end = time.monotonic() + 5
    while kernel_state()[0]["pid"] == proc.pid and time.monotonic() < end:
        subprocess.run(["/bin/true"], check=True)
        time.sleep(0.1)
    assert kernel_state()[0]["pid"] == 0, "the kernel kept the dead daemon's pid after sending a record"
    # the next run removes the stale rules, puts back what the killed run changed, and restores
    nxt = _collect(tmp_path, "--duration", "1", "--output", str(tmp_path / "rows2.jsonl"))
    _, err = nxt.communicate(timeout=30)
    assert nxt.returncode == 0, err
    assert "killed run" in err
    status, rules = kernel_state()
    assert rules == live[1]
    assert not _differs(status, live[0]), (status, live[0])
