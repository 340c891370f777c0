"""Fuzz target ``scenario``: scenario YAML text, as ``kaudit check`` and the pytest plugin read it.

The loader must turn any text into a Scenario or one ``ScenarioError`` (``file:line: problem``);
a YAML, schema or type error escaping as anything else would crash ``kaudit check`` in the
middle of a suite. A scenario that loads is dumped (``dump_scenario``, what ``kaudit record``
writes) and must load again to the same messages, faults, kernel state and flags.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from simulator.scenario import Fault, ScenarioError, dump_scenario, parse_scenario_text

from . import seeds as _seeds

_SKELETON = """name: fuzz-seed
description: a seed for the scenario fuzz target
kernel:
  status: {{enabled: 1, failure: 1, backlog_limit: 8192}}
  rules: ['-a always,exit -F arch=b64 -S connect -k net']
  refuse: {{ADD_RULE: EPERM}}
flags: [--audit_allow_sockets]
timing: {{mode: asap, settle: 0.1}}
messages:
{messages}
expect:
  rows:
    - {{table: socket_events, action: connect, pid: 14967, remote_port: 46051, status: in_progress}}
  counters: {{kernel.enobufs: 1, lost_serials: '>=0'}}
"""

_FAULTS = (
    "  - fault: enobufs",
    "  - fault: {drop: 1}",
    "  - fault: {reorder: [1, 0]}",
    "  - fault: {duplicate: 1}",
    "  - fault: {truncate: 10}",
    "  - fault: {sender: 4242}",
    "  - fault: {garbage: 'not audit text'}",
    "  - fault: {delay: 0.01}",
    "  - fault: {steal_pid: 999}",
    "  - fault: disable",
    "  - fault: {interleave: 2}",
)


def _quote(line: str) -> str:
    return "'" + line.replace("'", "''") + "'"


def _fault_key(f: Fault) -> tuple:
    msg = None if f.message is None else (f.message.type, f.message.payload, f.message.raw)
    return (f.kind, f.count, f.order, f.nbytes, f.sender, f.seconds, f.pid, msg, f.at)


def one_input(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # load_scenario reports non-UTF-8 bytes itself, before this parser
    try:
        sc = parse_scenario_text(text, "fuzz.yaml")
    except ScenarioError:
        return
    dumped = dump_scenario(sc)
    try:
        again = parse_scenario_text(dumped, "dumped.yaml")
    except ScenarioError as exc:
        raise AssertionError(f"a dumped scenario does not load: {exc}\n{dumped}") from None
    assert [(m.type, m.payload, m.raw) for m in again.messages()] == [
        (m.type, m.payload, m.raw) for m in sc.messages()
    ], "dump/load changed the messages"
    assert [_fault_key(f) for f in again.faults()] == [_fault_key(f) for f in sc.faults()], (
        "dump/load changed the faults"
    )
    assert (again.kernel, again.flags) == (sc.kernel, sc.flags), "dump/load changed the kernel or flags"


def seeds() -> Iterator[bytes]:
    lines = _seeds.LOG_LINES[:4]
    msgs = [f"  - record: {_quote(line)}" for line in lines]
    yield _SKELETON.format(messages="\n".join(msgs)).encode()
    for fault in _FAULTS:
        yield _SKELETON.format(messages="\n".join([msgs[0], fault, *msgs[1:]])).encode()
    yield _SKELETON.format(
        messages="  - raw: '1000000028050000000000000000000061756469742831'\n"
        "  - message: {type: GET, flags: 0, seq: 1, pid: 0, hex: '0100000001000000'}"
    ).encode()
    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "scenarios").glob("*.yaml"))[:40]:
        data = path.read_bytes()
        if len(data) <= 8192:
            yield data
