"""The host's kernel stays safe, on the real kernel (marker ``live``, fixture ``live_audit``).

Extends tests/test_collect_live.py (SIGTERM restores; SIGKILL is cleaned up by the next start)
with the cases where the most is at stake:

- SIGINT restores, like SIGTERM;
- a run with ``--audit_force_reconfigure`` deleted the machine's own rules; killed with SIGKILL,
  it cannot put them back, so the next start must: the rules come back in their order;
- while it runs, the rules in the kernel are exactly the ones it asked for (read back
  independently of the collector), and failure mode 2 / enabled 2 are never set.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.protocol.auditctl import parse_rule
from collector.protocol.records import AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_GET, AUDIT_LIST_RULES
from collector.protocol.rules import AuditRuleData
from collector.protocol.status import AuditStatus
from collector.transport import open_transport

pytestmark = [pytest.mark.live]

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("enabled", "failure", "pid", "rate_limit", "backlog_limit", "backlog_wait_time")
FOREIGN = [
    "-a always,exit -F arch=b64 -S unlinkat -F key=safety-foreign-1",
    "-a always,exit -F arch=b64 -S renameat -F key=safety-foreign-2",
]


def state() -> tuple[dict[str, int], list[bytes]]:
    with open_transport("kernel", rcvbuf=0) as t:
        st = AuditStatus.decode(t.request(AUDIT_GET)[0].payload)
        rules = [m.payload for m in t.request(AUDIT_LIST_RULES, dump=True) if m.type == AUDIT_LIST_RULES]
    return {k: getattr(st, k) for k in FIELDS}, rules


def collect(tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "collect", "--no-lock",
         "--state-file", str(tmp_path / "state.json"), "--output", str(tmp_path / "rows.jsonl"),
         "--status-interval", "0.5", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_registered(proc: subprocess.Popen, timeout: float = 20.0) -> tuple[dict[str, int], list[bytes]]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"collect exited early ({proc.returncode}): {proc.stderr.read()}")
        now = state()
        if now[0]["pid"] == proc.pid and any(b"kaudit" in r for r in now[1]):
            return now
        time.sleep(0.1)
    raise AssertionError("collect did not register and add its rules in time")


def unsafe(status: dict[str, int]) -> bool:
    return status["failure"] == 2 or status["enabled"] == 2


def test_sigint_restores(live_audit, tmp_path: Path) -> None:
    found = state()
    proc = collect(tmp_path)
    try:
        during = wait_registered(proc)
        assert not unsafe(during[0])
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert state() == found


def test_rules_in_the_kernel_are_the_ones_asked_for(live_audit, tmp_path: Path) -> None:
    proc = collect(tmp_path, "--audit_allow_sockets=true", "--audit_allow_process_events=true")
    try:
        status, rules = wait_registered(proc)
        ours = [AuditRuleData.decode(r) for r in rules if b"kaudit" in r]
        from collector.config import KernelConfig
        from collector.flags import parse_flags

        asked = KernelConfig(None, parse_flags(["--audit_allow_config=true", "--audit_allow_sockets=true",
                                                "--audit_allow_process_events=true"])).planned_rules()
        assert sorted(r.encode() for r in ours) == sorted(r.kernel_form().encode() for r in asked)
        assert status["failure"] == 0 and status["enabled"] == 1  # silent, as osquery sets it
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143


def test_sigkill_during_force_reconfigure_is_repaired_by_the_next_start(live_audit, tmp_path: Path) -> None:
    payloads = [parse_rule(text, "x86_64").encode() for text in FOREIGN]
    with open_transport("kernel", rcvbuf=0) as t:
        for p in payloads:
            t.request(AUDIT_ADD_RULE, p)
    try:
        found = state()
        assert all(p in found[1] for p in payloads)
        proc = collect(tmp_path, "--audit_force_reconfigure=true")
        try:
            _status, during = wait_registered(proc)
            assert not any(p in during for p in payloads), "force reconfigure kept the machine's rules"
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        # the kernel keeps a dead daemon's pid until it next sends it a record
        end = time.monotonic() + 5
        while state()[0]["pid"] == proc.pid and time.monotonic() < end:
            subprocess.run(["/bin/true"], check=True)
            time.sleep(0.1)
        killed = state()
        assert not any(p in killed[1] for p in payloads), "the killed run's deletions should still be in effect"
        nxt = collect(tmp_path, "--duration", "1")
        _out, err = nxt.communicate(timeout=60)
        assert nxt.returncode == 0, err
        after = state()
        assert after[1] == found[1], "the machine's rules did not come back in their order"
        assert {k: v for k, v in after[0].items() if k != "pid"} == {k: v for k, v in found[0].items() if k != "pid"}
        assert after[0]["pid"] in (0, found[0]["pid"])
    finally:
        with open_transport("kernel", rcvbuf=0) as t:
            now = [m.payload for m in t.request(AUDIT_LIST_RULES, dump=True) if m.type == AUDIT_LIST_RULES]
            for p in payloads:
                if p in now:
                    t.request(AUDIT_DEL_RULE, p)
