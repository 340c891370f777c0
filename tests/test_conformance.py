"""`kaudit conformance`: its comparison, its safety guard, every case against the simulator,
and (live) the full run against this machine's kernel."""

from __future__ import annotations

import json
import struct

import pytest

from collector.cli import main
from collector.protocol.status import status_set
from simulator import conformance as conf
from simulator.conformance import CASES, Run, _simulator_endpoint, _unsafe, compare


def snapshot() -> conf.KernelSnapshot:
    from collector.protocol.status import AuditFeatures, AuditStatus

    return conf.KernelSnapshot(AuditStatus(enabled=0, failure=1, backlog_limit=64, backlog_wait_time=15000,
                                           feature_bitmap=0x7F), AuditFeatures(1, 0xFFFFFFFF, 0, 0), [])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_case_runs_identically_on_two_simulators(case: conf.Case) -> None:
    transcripts = []
    for _ in range(2):
        with _simulator_endpoint(snapshot(), 250) as endpoint:
            run = Run(endpoint, kernel=False, quiet=0.03)
            try:
                case.fn(run)
                transcripts.append(run.transcript())
            finally:
                run.close_all()
    assert transcripts[0], f"{case.name} received nothing"
    assert compare(*transcripts) is None


def test_compare_names_the_first_differing_field() -> None:
    a = {"a": {"control": [{"type": "NLMSG_ERROR", "error": 0}], "records": []}}
    b = {"a": {"control": [{"type": "NLMSG_ERROR", "error": "-17 (EEXIST)"}], "records": []}}
    assert compare(a, b) == "socket a, control message 1 (NLMSG_ERROR): error: kernel 0, simulator '-17 (EEXIST)'"
    c = {"a": {"control": [], "records": []}}
    assert compare(a, c).startswith("socket a, control: kernel sent 1 messages, simulator 0")
    assert compare(a, a) is None


def test_the_runner_never_sends_failure_2_or_enabled_2_to_the_kernel() -> None:
    hdr = struct.Struct("=IHHII")
    for values in ({"failure": 2}, {"enabled": 2}, {"enabled": 1, "failure": 2}):
        payload = status_set(**values).encode()
        assert _unsafe(hdr.pack(16 + len(payload), 1001, 5, 1, 0) + payload)
    ok = status_set(enabled=1, failure=1).encode()
    assert _unsafe(hdr.pack(16 + len(ok), 1001, 5, 1, 0) + ok) is None
    run = Run("kernel", kernel=True, quiet=0.01)
    with pytest.raises(RuntimeError, match="panic"):
        run.send("a", run.req(1001, status_set(failure=2).encode()))
    run.close_all()


def test_unreachable_kernel_exits_2_with_the_reason(monkeypatch, capsys) -> None:
    monkeypatch.setattr(conf, "kernel_unreachable_reason", lambda: "kernel audit is not reachable: testing")
    assert main(["conformance"]) == 2
    assert "kernel audit is not reachable: testing" in capsys.readouterr().err


def test_list_names_at_least_25_cases(capsys) -> None:
    assert main(["conformance", "--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(CASES) >= 25


@pytest.mark.live
def test_conformance_against_this_kernel(live_audit, capsys) -> None:
    rc = main(["conformance"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"conformance: {len(CASES)}/{len(CASES)} cases identical", "\n".join(
        line for line in lines if "different" in line
    )
    assert rc == 0 and len(CASES) >= 25
    assert all(line.endswith(": identical") for line in lines[:-1])


@pytest.mark.live
def test_conformance_json_names_each_case(live_audit, capsys) -> None:
    assert main(["conformance", "--json", "--case", "get_status", "--case", "rule_add_duplicate"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"] == "conformance: 2/2 cases identical"
    assert [c["name"] for c in doc["cases"]] == ["get_status", "rule_add_duplicate"]
    assert doc["cases"][0]["kernel"]["a"]["control"][1]["status"]["lost"] == "*"
