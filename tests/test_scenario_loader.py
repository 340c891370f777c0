"""Scenario files: the loader, its file:line errors, the JSON Schema, and writing them back."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from collector.protocol.netlink import decode_datagram
from simulator.scenario import (
    FAULT_KINDS,
    Fault,
    Message,
    ScenarioError,
    dump_scenario,
    load_any,
    load_messages,
    load_scenario,
    messages_from_text,
    parse_record_line,
    parse_scenario_text,
    schema,
)

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"

SYSCALL = (
    "type=SYSCALL msg=audit(1795601611.485:1327823): arch=c000003e syscall=42 success=no exit=-115 "
    'a0=5 a1=7ffd a2=10 a3=0 items=0 ppid=1 pid=14967 auid=4294967295 uid=0 comm="curl" exe="/usr/bin/curl" key=(null)'
)
SOCKADDR = "type=SOCKADDR msg=audit(1795601611.485:1327823): saddr=0200B3E37F0000010000000000000000"
EOE = "type=EOE msg=audit(1795601611.485:1327823): "

GOOD = f"""\
name: curl-closed-port
description: curl connects non-blocking to a closed local port.
kernel:
  status: {{enabled: 1, failure: 1, backlog_limit: 8192}}
  rules: []
flags: [--audit_allow_sockets]
messages:
  - record: '{SYSCALL}'
  - record: '{SOCKADDR}'
    at: 0.5
  - fault: enobufs
  - fault: {{drop: 1}}
  - record: '{EOE}'
expect:
  rows:
    - {{table: socket_events, action: connect, pid: 14967, fd: 5, remote_port: 46051, status: in_progress}}
  counters: {{enobufs: 1, lost: '>=1'}}
"""


def load_text(tmp_path: Path, text: str, name: str = "s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_scenario(p)


def error_of(tmp_path: Path, text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as ei:
        load_text(tmp_path, text)
    return ei.value


def test_good_scenario_loads_every_part(tmp_path):
    sc = load_text(tmp_path, GOOD)
    assert sc.name == "curl-closed-port"
    assert sc.kernel.status == {"enabled": 1, "failure": 1, "backlog_limit": 8192}
    assert sc.flags == ["--audit_allow_sockets"]
    kinds = [s.kind for s in sc.steps]
    assert kinds == ["record", "record", "enobufs", "drop", "record"]
    m0 = sc.steps[0]
    assert isinstance(m0, Message)
    assert m0.type == 1300 and m0.line == 8
    assert m0.payload.startswith(b"audit(1795601611.485:1327823): arch=c000003e")
    assert sc.steps[1].at == 0.5
    eoe = sc.steps[4]
    assert eoe.type == 1320 and eoe.payload == b"audit(1795601611.485:1327823): "  # trailing space kept
    (row,) = sc.expect.rows
    assert row.columns["fd"] == "5"  # TEXT column: the number the YAML author wrote becomes text
    assert row.columns["pid"] == 14967 and row.line == 16
    assert str(sc.expect.counters["lost"]) == ">=1" and sc.expect.counters["lost"].holds(3)
    assert not sc.expect.counters["enobufs"].holds(2)


def test_record_datagram_is_the_unicast_form_the_daemon_gets(tmp_path):
    sc = load_text(tmp_path, GOOD)
    m = sc.messages()[0]
    dgram = m.datagram()
    (nl,) = decode_datagram(dgram)
    assert nl.short_len and nl.type == 1300 and nl.payload == m.payload
    assert int.from_bytes(dgram[:4], "little") == len(m.payload)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("name: x\nmessages: [\n", 2, "YAML error"),
        ("name: x\nmessages: []\nbogus: 1\n", 3, "unknown key 'bogus'"),
        ("name: x\nmessages:\n  - record: 'hello world'\n", 3, "not an audit record"),
        ("name: x\nmessages:\n  - record: 'type=NOPE msg=audit(1.2:3): x'\n", 3, "unknown audit record type name 'NOPE'"),
        ("name: x\nmessages:\n  - fault: {explode: 1}\n", 3, "unknown key 'explode'"),
        ("name: x\nmessages:\n  - fault: sideways\n", 3, "unknown fault 'sideways'"),
        ("name: x\nmessages:\n  - fault: {drop: 0}\n", 3, "minimum of 1"),
        ("name: x\nmessages:\n\n  - fault: {drop: 2}\n  - record: 'type=EOE msg=audit(1.002:3): '\n", 4,
         "needs 2 following messages"),
        ("name: x\nmessages:\n  - {record: 'type=EOE msg=audit(1.002:3): ', fault: enobufs}\n", 3, "exactly one of"),
        ("name: x\nmessages: []\nexpect:\n  rows:\n    - {table: socket_events, bogus: 1}\n", 5, "unknown column 'bogus'"),
        ("name: x\nmessages: []\nexpect:\n  rows:\n    - {table: socket_events, pid: abc}\n", 5, "pid is BIGINT"),
        ("name: x\nmessages: []\nexpect:\n  rows:\n    - {table: nope_events}\n", 5, "nope_events"),
        ("name: x\nmessages: []\nexpect:\n  counters: {lost: '~3'}\n", 4, "comparison like '>=1'"),
        ("name: x\nname: y\nmessages: []\n", 2, "duplicate key 'name'"),
        ("messages: []\n", 1, "missing 'name'"),
        ("name: x\nkernel: {refuse: {ADD_RULE: EWHAT}}\nmessages: []\n", 2, "unknown errno name 'EWHAT'"),
        ("name: x\nmessages:\n  - raw: '0102'\n", 3, "raw is not a netlink datagram"),
        ("name: x\nmessages:\n  - fault: {reorder: [0, 0]}\n  - record: 'type=EOE msg=audit(1.002:3): '\n", 3,
         "not a permutation"),
        ("- just\n- a list\n", 1, "must be a YAML mapping"),
        ("name: x\nflags: [--audit_allow_nothing]\nmessages: []\n", 2, "audit_allow_nothing"),
        ("name: x\nmessages: []\ntiming: {mode: warp}\n", 3, "'warp' is not one of"),
    ],
)
def test_bad_scenarios_name_file_and_line(tmp_path, text, line, words):
    err = error_of(tmp_path, text)
    assert err.line == line, str(err)
    assert words in err.problem, str(err)
    assert str(err).startswith(f"{tmp_path / 's.yaml'}:{line}: ")


def test_first_error_in_file_order_is_reported(tmp_path):
    err = error_of(tmp_path, "name: x\nmessages:\n  - fault: {drop: 0}\nbogus: 2\n")
    assert err.line == 3


def test_not_utf8_names_the_line(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_bytes(b"name: x\nmessages: []\ndescription: '\xff'\n")
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    assert ei.value.line == 3 and "UTF-8" in ei.value.problem


def test_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError) as ei:
        load_scenario(tmp_path / "nope.yaml")
    assert "cannot read" in str(ei.value)


def test_every_fault_kind_loads_and_round_trips(tmp_path):
    rec = "  - record: 'type=SYSCALL msg=audit(1.002:{n}): arch=c000003e syscall=42 success=yes exit=0'\n"
    faults = [
        "enobufs", "{enobufs: {drop: 1}}", "{drop: 1}", "{reorder: [1, 0]}", "{interleave: 2}", "duplicate",
        "{duplicate: 2}", "{truncate: 20}", "{sender: 4242}", "{garbage: 'not audit text'}",
        "{garbage: {type: USER, text: 'x'}}", "{delay: 1.5}", "{steal_pid: 31337}", "disable",
    ]
    body = "name: all-faults\nmessages:\n"
    for i, f in enumerate(faults):
        body += f"  - fault: {f}\n" + rec.format(n=2 * i + 1) + rec.format(n=2 * i + 2)
    sc = load_text(tmp_path, body)
    got = {s.kind for s in sc.faults()}
    assert got == set(FAULT_KINDS)
    again = parse_scenario_text(dump_scenario(sc), "again.yaml")
    assert [(type(s), getattr(s, "kind", None)) for s in again.steps] == [
        (type(s), getattr(s, "kind", None)) for s in sc.steps
    ]
    f_by_kind = {f.kind: f for f in again.faults()}
    assert f_by_kind["reorder"].order == (1, 0)
    assert f_by_kind["truncate"].nbytes == 20
    assert f_by_kind["sender"].sender == 4242
    assert f_by_kind["delay"].seconds == 1.5
    assert f_by_kind["steal_pid"].pid == 31337
    garbage = [f for f in again.faults() if f.kind == "garbage"]
    assert all(isinstance(f, Fault) for f in garbage)
    assert [f.message.payload for f in garbage] == [b"not audit text", b"x"]


def test_dump_round_trips_messages_rows_and_counters(tmp_path):
    sc = load_text(tmp_path, GOOD)
    text = dump_scenario(sc)
    again = parse_scenario_text(text, "again.yaml")
    assert [m.payload for m in again.messages()] == [m.payload for m in sc.messages()]
    assert [m.type for m in again.messages()] == [m.type for m in sc.messages()]
    assert again.expect.rows[0].columns == sc.expect.rows[0].columns
    assert {k: str(v) for k, v in again.expect.counters.items()} == {k: str(v) for k, v in sc.expect.counters.items()}
    # one line per message and per row: diffs between recordings stay readable
    assert sum(1 for ln in text.splitlines() if ln.lstrip().startswith("- record:")) == 3
    assert sum(1 for ln in text.splitlines() if ln.lstrip().startswith("- {table:")) == 1


def test_dump_keeps_odd_payloads_exact():
    sc = parse_scenario_text(f"name: odd\nmessages:\n  - record: '{EOE}'\n", "x.yaml")
    weird = Message(1300, b"audit(1.002:3): a0=\xff\xfe bad utf8")
    ctrl = Message(1300, b"audit(1.002:4): tab\there")
    sc.steps += [weird, ctrl]
    again = parse_scenario_text(dump_scenario(sc), "y.yaml")
    assert [m.payload for m in again.messages()] == [m.payload for m in sc.messages()]
    # a non-UTF-8 record stays a record (escaped), so it still goes through the kernel model
    assert again.messages()[1].kind == "record"


def test_schema_is_valid_and_matches_loader_vocabulary():
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    assert set(s["$defs"]["fault"]["else"]["properties"]) == set(FAULT_KINDS)


def test_good_scenario_validates_against_schema_directly():
    data = yaml.safe_load(GOOD)
    jsonschema.validate(data, schema())
    data["bogus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema())


def test_parse_record_line_drops_node_prefix_and_enrichment():
    n, payload = parse_record_line('node=work type=EXECVE msg=audit(1.002:3): argc=1 a0="x"\x1dAUID="root"\n')
    assert n == 1309 and payload == b'audit(1.002:3): argc=1 a0="x"'
    n, payload = parse_record_line("type=UNKNOWN[1399] msg=audit(1.002:3): x=1")
    assert n == 1399
    with pytest.raises(ValueError, match="not an audit record"):
        parse_record_line("type=SYSCALL msg=nothing")


def test_messages_from_text_skips_separators_and_names_bad_line():
    text = "----\ntime->Mon\n" + SYSCALL + "\n\n" + EOE + "\n"
    msgs = messages_from_text(text, "a.log")
    assert [m.type for m in msgs] == [1300, 1320] and msgs[1].line == 5
    with pytest.raises(ScenarioError) as ei:
        messages_from_text(SYSCALL + "\ngarbage here\n", "a.log")
    assert str(ei.value).startswith("a.log:2: not an audit record")


def test_load_messages_reads_scenarios_and_logs_alike(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD)
    from_scenario = load_messages(p)
    log = tmp_path / "audit.log"
    log.write_text("\n".join([SYSCALL, SOCKADDR, EOE]) + "\n")
    from_log = load_messages(log)
    assert [(m.type, m.payload) for m in from_scenario] == [(m.type, m.payload) for m in from_log]
    assert all(m.short_len for m in from_log)
    sc = load_any(log)
    assert sc.expect.rows is None and sc.name == "audit.log"


def corpus_logs():
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in (CORPUS / "go-libaudit" / "reassembler").glob("*.log"))


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"public corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", corpus_logs(), ids=lambda p: p.name)
def test_corpus_logs_import_every_line(path):
    lines = [ln for ln in path.read_text().split("\n") if ln.strip()]
    msgs = load_messages(path)
    assert len(msgs) == len(lines)
    assert all(m.payload.startswith(b"audit(") for m in msgs)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"public corpus not found at {CORPUS}")
def test_enriched_corpus_log_imports():
    path = CORPUS / "laurel" / "record-execve.txt"
    msgs = load_messages(path)
    assert msgs and all(b"\x1d" not in m.payload for m in msgs)
    assert all(not m.payload.startswith(b"node=") for m in msgs)


def test_bundled_scenarios_load():
    files = sorted((ROOT / "scenarios").glob("*.yaml"))
    if not files:
        pytest.skip("no bundled scenarios yet")
    for f in files:
        sc = load_scenario(f)
        assert sc.expect.rows is not None, f"{f}: a bundled scenario must state its rows"
        assert json.dumps(sc.name)
