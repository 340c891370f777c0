"""`kaudit check` judging: row matching, the diff, counters, the table, JUnit, the process pool."""

from __future__ import annotations

import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

from simulator.check import (
    Outcome,
    RunResult,
    check_one,
    check_paths,
    check_scenario,
    compare,
    discover,
    format_failures,
    format_table,
    match_rows,
    write_junit,
)
from simulator.scenario import ExpectedRow, parse_scenario_text

CONNECT = {"table": "socket_events", "action": "connect", "pid": 10, "remote_port": 80, "status": "succeeded",
           "eid": "0000000001", "uptime": 5}


def scenario(rows: str = "", counters: str = "", extra: bool = False):
    text = "name: t\nmessages: []\nexpect:\n"
    if rows:
        text += "  rows:\n" + textwrap.indent(textwrap.dedent(rows), "    ")
    else:
        text += "  rows: []\n"
    if counters:
        text += f"  counters: {counters}\n"
    if extra:
        text += "  extra_rows: true\n"
    return parse_scenario_text(text, "t.yaml")


def test_matching_is_maximal_not_greedy():
    loose = ExpectedRow({"table": "socket_events"})
    strict = ExpectedRow({"table": "socket_events", "remote_port": 80})
    got = [dict(CONNECT), dict(CONNECT, remote_port=443)]
    # greedy would give row 0 to `loose` and leave `strict` without a row
    m = match_rows([loose, strict], got)
    assert m == {0: 1, 1: 0}


def test_pass_when_every_listed_column_matches():
    sc = scenario("- {table: socket_events, action: connect, remote_port: 80}\n")
    ok, diff = compare(sc, RunResult(rows=[dict(CONNECT)]))
    assert ok and diff == ""


def test_mismatch_diff_names_row_line_and_differing_columns():
    sc = scenario("- {table: socket_events, action: connect, remote_port: 81, status: succeeded}\n")
    ok, diff = compare(sc, RunResult(rows=[dict(CONNECT)]))
    assert not ok
    assert "expected row 1 (line 5) not produced" in diff
    assert "closest: got row 1: remote_port: expected 81, got 80" in diff
    assert "unexpected row 1" in diff
    assert "eid" not in diff.split("unexpected row 1")[1]  # volatile columns are not shown


def test_extra_rows_fail_unless_allowed():
    sc = scenario("- {table: socket_events, remote_port: 80}\n")
    got = [dict(CONNECT), dict(CONNECT, remote_port=443)]
    ok, diff = compare(sc, RunResult(rows=got))
    assert not ok and "+ unexpected row 2" in diff
    sc2 = scenario("- {table: socket_events, remote_port: 80}\n", extra=True)
    assert compare(sc2, RunResult(rows=got))[0]


def test_counters_compare_with_operators_and_missing_counter_is_zero():
    sc = scenario(counters="{lost: 2, enobufs: '>=1', timeouts: 0}")
    ok, _ = compare(sc, RunResult(counters={"lost": 2, "enobufs": 3}))
    assert ok
    ok, diff = compare(sc, RunResult(counters={"lost": 1}))
    assert not ok
    assert "counter lost: expected 2, got 1" in diff
    assert "counter enobufs: expected >=1, got 0 (the collector has no such counter)" in diff


def test_no_expectations_always_passes():
    sc = parse_scenario_text("name: t\nmessages: []\n", "t.yaml")
    assert compare(sc, RunResult(rows=[dict(CONNECT)]))[0]


def test_kernel_state_after_exit_is_compared():
    sc = parse_scenario_text("name: t\nmessages: []\nexpect:\n  kernel: {status: {enabled: 0, pid: 0}, rules: []}\n",
                             "t.yaml")
    ok, diff = compare(sc, RunResult(kernel={"status": {"enabled": 1, "pid": 0}, "rules": ["-a x"]}))
    assert not ok and "enabled expected 0, got 1" in diff and "rules after exit" in diff


def test_runner_crash_is_that_scenarios_error():
    sc = scenario("- {table: socket_events}\n")

    def boom(_sc):
        raise RuntimeError("endpoint exploded")

    o = check_scenario(sc, boom)
    assert o.verdict == "error" and "endpoint exploded" in o.diff and o.expected == 1


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(text))
    return p


def fake_runner(sc):
    # "produces" one connect row per SYSCALL record in the scenario
    n = sum(1 for m in sc.messages() if m.type == 1300)
    return RunResult(rows=[dict(CONNECT) for _ in range(n)], counters={"events": n}, seconds=0.01)


REC = "type=SYSCALL msg=audit(1.002:{n}): arch=c000003e syscall=42 success=yes exit=0"


def test_broken_file_is_its_own_error_and_the_rest_go_on(tmp_path):
    good = write(tmp_path, "a-good.yaml", f"""\
        name: good
        messages:
          - record: '{REC.format(n=1)}'
        expect:
          rows:
            - {{table: socket_events, remote_port: 80}}
        """)
    broken = write(tmp_path, "b-broken.yaml", "name: broken\nmessages:\n  - record: 'oops'\n")
    wrong = write(tmp_path, "c-wrong.yaml", f"""\
        name: wrong
        messages:
          - record: '{REC.format(n=1)}'
        expect:
          rows:
            - {{table: socket_events, remote_port: 8080}}
        """)
    files = discover([tmp_path])
    assert files == [good, broken, wrong]
    outs = check_paths(files, runner=fake_runner)
    assert [o.verdict for o in outs] == ["pass", "error", "fail"]
    assert outs[1].diff.startswith(f"{broken}:3: not an audit record")
    table = format_table(outs)
    assert "3 scenarios: 1 passed, 1 failed, 1 errors" in table
    lines = table.splitlines()
    assert lines[0].split() == ["scenario", "expected", "got", "verdict", "time"]
    assert lines[2].split()[:4] == ["good", "1", "1", "pass"]
    assert lines[3].split()[:4] == ["b-broken", "-", "-", "ERROR"]
    fails = format_failures(outs)
    assert "=== wrong" in fails and "remote_port: expected 8080, got 80" in fails and "=== good" not in fails


def test_junit_report_has_one_case_per_scenario(tmp_path):
    outs = [
        Outcome("a.yaml", "a", "pass", 1, 1, 0.5),
        Outcome("b.yaml", "b", "fail", 1, 0, 0.25, "- expected row 1 not produced"),
        Outcome("c.yaml", "c", "error", None, None, 0.1, "c.yaml:3: not an audit record"),
    ]
    path = tmp_path / "junit.xml"
    write_junit(outs, path)
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["a", "b", "c"]
    assert cases[1].find("failure").text == "- expected row 1 not produced"
    assert cases[2].find("error").get("message") == "c.yaml:3: not an audit record"


def test_check_one_in_worker_processes_keeps_order(tmp_path, monkeypatch):
    # a capture without expectations loads as a scenario; the default runner is not needed
    # because every file here is broken or a directory entry, so workers only load them
    files = [write(tmp_path, f"{i}.yaml", f"name: s{i}\nmessages:\n  - record: 'bad {i}'\n") for i in range(4)]
    outs = check_paths(files, jobs=2)
    assert [o.name for o in outs] == ["0", "1", "2", "3"]
    assert all(o.verdict == "error" and f"bad {i}" in o.diff for i, o in enumerate(outs))


def test_check_one_on_audit_log_reports_rows_without_expectation(tmp_path):
    log = write(tmp_path, "audit.log", REC.format(n=7) + "\n")
    o = check_one(log, fake_runner)
    assert o.verdict == "pass" and o.expected is None and o.got == 1
