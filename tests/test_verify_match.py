"""The verify matcher: missing, unexpected and wrong rows are found; exact rows pass.

Pure functions, no kernel: rows are the dicts the collector writes as JSON lines.
"""

from __future__ import annotations

import io
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from simulator.verify import (
    KernelState,
    Progress,
    RowCheck,
    WireCheck,
    WorkloadResult,
    attribute_rows,
    check_times,
    match_rows,
    render_result,
    write_junit,
)
from simulator.workloads.base import ExpectedRow, WireExpectation, process_row, socket_row


def sock(**cols):
    return {
        "table": "socket_events",
        "action": "connect",
        "pid": 100,
        "path": "/usr/bin/curl",
        "remote_address": "127.0.0.1",
        "remote_port": 8080,
        "status": "in_progress",
        "success": 1,
        **cols,
    }


def proc(**cols):
    return {
        "table": "process_events",
        "syscall": "execve",
        "pid": 100,
        "parent": 1,
        "path": "/usr/bin/true",
        "cmdline": "true x",
        **cols,
    }


def exp_connect(**cols) -> ExpectedRow:
    base = {"remote_address": "127.0.0.1", "remote_port": 8080, "status": "in_progress", "success": 1}
    base.update(cols)
    return socket_row("connect", 100, why="curl connect", **base)


def test_exact_rows_match_and_nothing_is_left():
    rows = [proc(), sock()]
    checks, unexpected = match_rows([process_row("execve", 100, cmdline="true x"), exp_connect()], rows)
    assert [c.result for c in checks] == ["ok", "ok"]
    assert unexpected == []
    assert checks[1].actual is rows[1]


def test_missing_row_is_reported():
    checks, unexpected = match_rows([exp_connect(), process_row("execve", 100)], [proc()])
    assert [c.result for c in checks] == ["missing", "ok"]
    assert not checks[0].ok
    assert unexpected == []


def test_unexpected_row_is_reported():
    extra = sock(remote_port=9999)
    checks, unexpected = match_rows([exp_connect()], [sock(), extra])
    assert [c.result for c in checks] == ["ok"]
    assert unexpected == [extra]


def test_duplicate_row_is_unexpected():
    checks, unexpected = match_rows([exp_connect()], [sock(), sock()])
    assert checks[0].result == "ok"
    assert len(unexpected) == 1


def test_wrong_values_name_each_column():
    row = sock(status="failed", success=0)
    checks, unexpected = match_rows([exp_connect()], [row])
    assert checks[0].result == "wrong"
    assert checks[0].diffs == {"status": ("in_progress", "failed"), "success": (1, 0)}
    assert unexpected == []


def test_type_matters_an_int_column_written_as_string_is_wrong():
    checks, _ = match_rows([exp_connect()], [sock(remote_port="8080")])
    assert checks[0].result == "wrong"
    assert checks[0].diffs == {"remote_port": (8080, "8080")}


def test_absent_column_is_a_difference():
    row = sock()
    del row["status"]
    checks, _ = match_rows([exp_connect()], [row])
    assert checks[0].result == "wrong"
    assert checks[0].diffs["status"] == ("in_progress", "<absent>")


def test_exact_match_is_not_stolen_by_a_near_miss():
    # expectation 1 nearly matches row B; expectation 2 exactly matches row B and must get it
    e1 = exp_connect(remote_port=1111)
    e2 = exp_connect(remote_port=2222)
    row_a = sock(remote_port=3333)
    row_b = sock(remote_port=2222)
    checks, unexpected = match_rows([e1, e2], [row_b, row_a])
    assert checks[1].result == "ok" and checks[1].actual is row_b
    assert checks[0].result == "wrong" and checks[0].actual is row_a
    assert unexpected == []


def test_wrong_needs_same_pid_and_verb():
    # a bind row of the same pid is not "the connect with wrong values": connect is missing
    bind = sock(action="bind")
    checks, unexpected = match_rows([exp_connect()], [bind])
    assert checks[0].result == "missing"
    assert unexpected == [bind]


def test_optional_row_may_be_absent_but_must_match_when_present():
    opt = socket_row("connect", 100, remote_port=53, optional=True, why="nscd probe")
    checks, _ = match_rows([opt], [])
    assert checks[0].result == "absent" and checks[0].ok
    checks, _ = match_rows([opt], [sock(remote_port=54)])
    assert checks[0].result == "wrong" and not checks[0].ok


def test_attribution_by_pid_and_by_parent():
    rows = [
        proc(pid=5, parent=1),  # ours by pid
        proc(pid=6, parent=5, syscall="clone"),  # a fork by one of ours: ours by parent
        sock(pid=7),  # someone else's
        proc(pid=8, parent=7),  # someone else's child
        sock(pid=6, parent=5),  # socket rows are attributed by pid only
    ]
    mine = attribute_rows(rows, {5})
    assert mine == [rows[0], rows[1]]


def test_expected_row_validates_table_and_pid():
    with pytest.raises(ValueError, match="unknown table"):
        ExpectedRow("file_events", {"pid": 1})
    with pytest.raises(ValueError, match="pid"):
        ExpectedRow("socket_events", {"action": "bind"})


def _result(**kw) -> WorkloadResult:
    res = WorkloadResult("demo", "a demo workload", False, duration=0.5, pids=[100])
    for k, v in kw.items():
        setattr(res, k, v)
    return res


def test_result_verdicts_and_problems():
    ok = RowCheck(exp_connect(), "ok", sock())
    wrong = RowCheck(exp_connect(), "wrong", sock(status="failed"), {"status": ("in_progress", "failed")})
    missing = RowCheck(process_row("execve", 100, cmdline="true x", why="exec"), "missing")
    assert _result(checks=[ok]).verdict == "PASS"
    res = _result(checks=[ok, wrong, missing], unexpected=[sock(pid=100, remote_port=1)])
    assert res.verdict == "FAIL"
    probs = res.problems()
    assert any(
        p.startswith("wrong values") and "status: expected 'in_progress', got 'failed'" in p for p in probs
    )
    assert any(p.startswith("missing: process_events execve pid=100") for p in probs)
    assert any(p.startswith("unexpected: socket_events connect pid=100") for p in probs)
    assert res.counts() == {
        "expected": 3,
        "matched": 1,
        "missing": 1,
        "wrong": 1,
        "absent": 0,
        "unexpected": 1,
        "wire": 0,
        "wire_seen": 0,
    }
    assert _result(error="helper died").verdict == "ERROR"


def test_unseen_packet_fails_the_workload():
    w = WireExpectation("tcp", "10.213.0.1", 4000, "10.213.0.2", 80)
    res = _result(checks=[RowCheck(exp_connect(), "ok", sock())], wire=[WireCheck(w, False)])
    assert res.verdict == "FAIL"
    assert res.problems() == ["not on the wire: SYN 10.213.0.1:4000 -> 10.213.0.2:80"]
    res.wire = [WireCheck(w, True)]
    assert res.verdict == "PASS"


def test_render_shows_every_problem_kind():
    res = _result(
        checks=[
            RowCheck(exp_connect(), "wrong", sock(status="failed"), {"status": ("in_progress", "failed")}),
            RowCheck(process_row("execve", 100, cmdline="true x", why="exec"), "missing"),
        ],
        unexpected=[proc(pid=100, cmdline="sh -c oops")],
    )
    text = render_result(res)
    assert text.startswith("FAIL  demo")
    assert "WRONG" in text and "status: expected 'in_progress', got 'failed'" in text
    assert "MISSING" in text and "UNEXPECTED" in text and "sh -c oops" in text


def test_junit_has_a_case_per_workload_and_fails_the_bad_ones(tmp_path: Path):
    good = _result(checks=[RowCheck(exp_connect(), "ok", sock())])
    good.name = "good"
    bad = _result(checks=[RowCheck(exp_connect(), "missing")])
    bad.name = "bad"
    err = _result(error="could not bind")
    err.name = "broken"
    path = tmp_path / "junit.xml"
    write_junit(
        path, [good, bad, err], extra=[("kernel-audit-restored", None), ("netns", "left: kaudit-1-c")]
    )
    root = ET.parse(path).getroot()
    assert root.get("tests") == "5" and root.get("failures") == "2" and root.get("errors") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["good"].find("failure") is None
    assert "missing" in cases["bad"].find("failure").get("message")
    assert cases["broken"].find("error").get("message") == "could not bind"
    assert cases["netns"].find("failure").get("message") == "left: kaudit-1-c"


def test_kernel_state_diff():
    before = KernelState((("enabled", 0), ("pid", 0)), ("-a always,exit -S connect",))
    assert before.diff(before) == []
    after = KernelState(
        (("enabled", 1), ("pid", 0)), ("-a always,exit -S connect", "-a always,exit -S bind -k kaudit")
    )
    assert before.diff(after) == [
        "status enabled: was 0, now 1",
        "rule left behind: -a always,exit -S bind -k kaudit",
    ]
    gone = KernelState((("enabled", 0), ("pid", 0)), ())
    assert before.diff(gone) == ["rule missing after the run: -a always,exit -S connect"]


def test_progress_without_a_tty_prints_one_line_per_step():
    buf = io.StringIO()
    p = Progress(2, buf, width=4)
    p.start("a")
    p.finish("a", "ran", 0.1)
    p.finish("b", "ERROR: x", 0.2)
    lines = buf.getvalue().splitlines()
    assert lines == ["[ 1/2] [##..] a: ran (0.10s)", "[ 2/2] [####] b: ERROR: x (0.20s)"]


def test_row_time_must_fall_while_the_workload_ran():
    start, end = 1_700_000_000.4, 1_700_000_001.2
    inside = RowCheck(exp_connect(), "ok", sock(time=1_700_000_001))
    early = RowCheck(exp_connect(), "ok", sock(time=1_699_999_000))
    missing_time = RowCheck(exp_connect(), "ok", sock())
    already_bad = RowCheck(exp_connect(), "missing")
    check_times([inside, early, missing_time, already_bad], start, end)
    assert inside.result == "ok"
    assert early.result == "wrong" and early.diffs["time"] == ("1700000000..1700000002", 1_699_999_000)
    assert missing_time.result == "wrong" and missing_time.diffs["time"][1] is None
    assert already_bad.result == "missing" and not already_bad.diffs
