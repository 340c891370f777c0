"""Every crash the fuzzers found, replayed: tests/fuzz_corpus/<target>/*.bin through its target.

A file in the corpus is a minimised input that once made a fuzz target (bench/fuzz) raise. The
generic test runs each through its target's ``one_input``, which must return: the input is
either accepted or rejected with the documented, counted error. Crashes whose fix belongs to
another module's owner are listed in ``OPEN`` and expected to fail (strict: the day the fix
lands the test says so, and the entry must go). The tests below the generic one state each
finding in plain terms, with the error the caller is promised.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not an installed package: run from the repository
    sys.path.insert(0, str(ROOT))

from bench.fuzz import TARGETS, load  # noqa: E402
from collector.protocol import netlink as nl  # noqa: E402

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"

# corpus file (target/name) -> why it still fails; reported to the lead for routing
OPEN: dict[str, str] = {}


def _corpus() -> list:
    items = []
    for path in sorted(CORPUS.glob("*/*.bin")):
        key = f"{path.parent.name}/{path.name}"
        marks = []
        if key in OPEN:
            marks.append(pytest.mark.xfail(strict=True, reason=OPEN[key]))
        items.append(pytest.param(path, id=key, marks=marks))
    return items


def test_corpus_is_not_empty_and_named_for_targets() -> None:
    dirs = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert dirs, "tests/fuzz_corpus holds no target directories"
    assert dirs <= set(TARGETS), f"corpus directories that are not fuzz targets: {dirs - set(TARGETS)}"
    assert set(OPEN) <= {f"{p.parent.name}/{p.name}" for p in CORPUS.glob("*/*.bin")}, "OPEN names a missing file"


@pytest.mark.parametrize("path", _corpus())
def test_fuzz_crash_input_is_handled(path: Path) -> None:
    one_input, _seeds, _mod = load(path.parent.name)
    one_input(path.read_bytes())


# ---- the findings, stated for their callers --------------------------------------------------


@pytest.mark.parametrize(
    "text,raw",
    [("-w /\udc8f", b"/\x8f"), ("-a always,exit -S all -k \udc8a", b"\x8a"), ("-a always,exit -F dir=/\udcaf", b"/\xaf")],
    ids=["watch", "key", "dir"],
)
def test_auditctl_non_utf8_text_is_the_bytes_auditctl_sends(text: str, raw: bytes) -> None:
    """Paths and keys are bytes: ``auditctl -w $'/\\x8f'`` sends b"/\\x8f" and lists it back
    (checked with Debian's auditctl 3.0.9 against the simulator). Python hands such argv bytes
    over as surrogate escapes; they must come out as the same bytes, and list and parse back
    to the same rule, not crash with UnicodeEncodeError."""
    from collector.protocol.auditctl import format_rule, parse_rule

    rule = parse_rule(text, "x86_64", is_dir=lambda p: False)
    strings = [f.strbytes() for f in rule.fields if f.strval is not None]
    assert raw in strings
    assert rule.encode().endswith(raw)
    printed = format_rule(rule, "x86_64")
    back = parse_rule(printed, "x86_64", is_dir=lambda p: False)
    assert back.kernel_form().encode() == rule.kernel_form().encode()


@pytest.mark.parametrize("text", ["-w /\ud800", "-a always,exit -S all -k \udfff"], ids=["watch", "key"])
def test_auditctl_text_no_argv_can_hold_is_a_rule_error(text: str) -> None:
    """A surrogate that is no escaped byte cannot come from a command line: RuleError, naming it."""
    from collector.protocol.auditctl import parse_rule
    from collector.protocol.rules import RuleError

    with pytest.raises(RuleError) as info:
        parse_rule(text, "x86_64", is_dir=lambda p: False)
    assert "stands for no byte" in str(info.value)


@pytest.mark.parametrize("field", ["uid", "gid"])
def test_auditctl_user_name_with_nul_is_a_rule_error(field: str) -> None:
    from collector.protocol.auditctl import parse_rule
    from collector.protocol.rules import RuleError

    with pytest.raises(RuleError) as info:
        parse_rule(f"-a always,exit -F {field}=a\x00b", "x86_64")
    assert type(info.value) is RuleError


@pytest.mark.parametrize("text", ["\x00", "name: a\x00\n", "name: \x07bell\n"], ids=["nul", "nul-in-value", "bel"])
def test_scenario_with_forbidden_character_is_a_scenario_error(text: str) -> None:
    from simulator.scenario import ScenarioError, parse_scenario_text

    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text, "bad.yaml")
    assert "bad.yaml" in str(info.value)


@pytest.mark.parametrize("field", ["uid", "success"])
def test_auditctl_number_followed_by_junk_is_read_as_strtoul_does(field: str) -> None:
    from collector.protocol.auditctl import parse_rule

    rule = parse_rule(f"-a always,exit -F arch=b64 -S unlinkat -F {field}=0-3", "x86_64")
    assert [f.value for f in rule.fields if f.field_id == {"uid": 1, "success": 104}[field]] == [0]


@pytest.mark.parametrize(
    "value,sent",
    [("0x", 0), ("0x1f", 31), ("010", 8), ("1_0", 1), ("-5x", 0xFFFFFFFB), ("08", 0)],
    ids=["0x", "hex", "octal", "underscore", "negative-junk", "octal-stops-at-8"],
)
def test_auditctl_numbers_are_read_as_strtol_reads_them(value: str, sent: int) -> None:
    """Each value as Debian's auditctl 3.0.9 sends it (`-F uid=VALUE`, listed back): strtol with
    base 0 stops at the first character that is no digit of the base; Python's int() would
    take `1_0` as 10 and refuse `08`."""
    from collector.protocol.auditctl import parse_rule

    rule = parse_rule(f"-a always,exit -F arch=b64 -S unlinkat -F uid={value}", "x86_64")
    assert [f.value for f in rule.fields if f.field_id == 1] == [sent]


@pytest.mark.parametrize("value", ["\u00b2", "\u0663"], ids=["superscript-two", "arabic-three"])
def test_auditctl_digits_are_ascii_digits(value: str) -> None:
    """C's isdigit knows 0-9 only; str.isdigit() also says yes to these."""
    from collector.protocol.auditctl import parse_rule
    from collector.protocol.rules import RuleError

    with pytest.raises(RuleError):
        parse_rule(f"-a always,exit -F pid={value}", "x86_64")


def test_scenario_yaml_tag_on_a_key_is_a_scenario_error() -> None:
    from simulator.scenario import ScenarioError, parse_scenario_text

    with pytest.raises(ScenarioError):
        parse_scenario_text("{!a a: 1}", "bad.yaml")


@pytest.mark.parametrize(
    "text,problem",
    [
        ("name: x\nv: !!int abc\n", "int"),  # PyYAML's constructor raises a plain ValueError
        ("name: !!timestamp 2024-99-99\n", "month"),
        ("name: &a [*a]\n", "refers to a node that contains it"),  # would recurse for ever
        ("[" * 3000 + "]" * 3000, "nested too deeply"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
         + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
         "expand to far more nodes"),  # 10**9 nodes from 9 lines
    ],
    ids=["bad-int", "bad-timestamp", "recursive-alias", "deep", "alias-bomb"],
)
def test_scenario_yaml_that_cannot_be_built_is_a_scenario_error(text: str, problem: str) -> None:
    from simulator.scenario import ScenarioError, parse_scenario_text

    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text, "bad.yaml")
    assert str(info.value).startswith("bad.yaml") and problem in str(info.value)


def test_scenario_record_with_a_malformed_header_dumps_as_a_record() -> None:
    """``audit(1.1:25)`` without ``): `` is a record all the same: the kernel model sends it
    (and nothing while audit is off). Dumped as ``raw:`` it would replay past the model."""
    from simulator.scenario import dump_scenario, parse_scenario_text

    sc = parse_scenario_text("name: x\nmessages:\n  - record: 'type=SYSCALL msg=audit(1.1:25)'\n", "x.yaml")
    dumped = dump_scenario(sc)
    assert "raw:" not in dumped and "record: 'type=SYSCALL msg=audit(1.1:25)'" in dumped
    again = parse_scenario_text(dumped, "dumped.yaml")
    assert [(m.kind, m.type, m.payload, m.raw) for m in again.messages()] == [("record", 1300, b"audit(1.1:25)", None)]


@pytest.mark.parametrize(
    "garbage", ["'plain text'", "{type: 1300, hex: 'ff00'}", '"\\udc8f\\x01 control"'], ids=["text", "hex", "escaped"]
)
def test_scenario_garbage_fault_dumps_to_the_same_bytes(garbage: str) -> None:
    """A garbage fault's payload is bytes: dumped as text only when it is plain UTF-8 text."""
    from simulator.scenario import dump_scenario, parse_scenario_text

    text = f"name: x\nmessages:\n  - fault: {{garbage: {garbage}}}\n  - record: 'type=EOE msg=audit(1.1:2): '\n"
    sc = parse_scenario_text(text, "x.yaml")
    again = parse_scenario_text(dump_scenario(sc), "dumped.yaml")
    want = [(f.message.type, f.message.payload) for f in sc.faults() if f.message is not None]
    assert want and [(f.message.type, f.message.payload) for f in again.faults() if f.message is not None] == want


# Found by the `kernel` target: the kernel writes every record to the registered daemon in the
# short-length form (audit_log_end: nlmsg_len = skb->len - NLMSG_HDRLEN), whatever its type,
# and two record types are numbered below 1100: USER (1005, `auditctl -m`) and LOGIN (1006,
# written whenever a login sets loginuid). decode_datagram once recognised the short form only
# for types >= 1100, so these records were dropped as transport.bad_datagram, outside the ledger.
LOGIN_PAYLOAD = (
    b"audit(1795601611.485:42): pid=1 uid=0 old-auid=4294967295 auid=0 tty=(none) old-ses=4294967295 ses=1 res=1"
)
USER_PAYLOAD = b"audit(1795601611.486:43): pid=7 uid=0 auid=0 ses=1 msg='hello'"


@pytest.mark.parametrize("rtype,payload", [(1006, LOGIN_PAYLOAD), (1005, USER_PAYLOAD)], ids=["LOGIN", "USER"])
def test_unicast_records_below_1100_decode(rtype: int, payload: bytes) -> None:
    data = nl.encode(nl.NetlinkMessage(rtype, 0, 0, 0, payload, short_len=True))
    msgs = nl.decode_datagram(data)
    assert [(m.type, m.payload) for m in msgs] == [(rtype, payload)]


def test_login_record_reaches_the_ledger_through_the_simulator() -> None:
    """End to end over the simulator endpoint: a LOGIN record counts as received."""
    from collector.pipeline import Pipeline
    from collector.reader import Reader
    from collector.tables.options import TableOptions
    from collector.transport import Transport
    from simulator.endpoint import EndpointServer
    from simulator.kernel import AuditKernel

    with EndpointServer(AuditKernel(enabled=1)).start() as server:
        t = Transport.over_socket(server.connect_pair())
        try:
            from collector.protocol.records import AUDIT_SET
            from collector.protocol.status import status_set

            t.request(AUDIT_SET, status_set(pid=__import__("os").getpid()).encode())
            server.emit_record(1006, LOGIN_PAYLOAD.split(b"): ", 1)[1])
            reader = Reader(t, pid=__import__("os").getpid(), status_interval=60)
            pipe = Pipeline(TableOptions(), uptime=None)
            import time

            deadline = time.monotonic() + 3
            seen: list[int] = []
            while time.monotonic() < deadline and 1006 not in seen:
                for m in reader.drain(0.2):
                    seen.append(m.type)
                    pipe.feed_netlink(m.type, m.payload)
            assert t.counters["bad_datagram"] == 0
            stats = pipe.finish()
            assert 1006 in seen
            assert stats.ledger.received == len(seen)
            assert stats.ledger.received == stats.ledger.dispatched + sum(stats.ledger.dropped.values()) + stats.ledger.in_flight
        finally:
            t.close()


def test_kernel_form_lists_strings_as_the_kernel_does() -> None:
    from bench.fuzz.rule_data_target import _kernel, _send
    from collector.protocol.auditctl import parse_rule
    from collector.protocol.records import AUDIT_ADD_RULE, AUDIT_LIST_RULES
    from collector.protocol.rules import AuditRuleData

    rule = parse_rule("-a always,exit -F arch=b64 -S connect -F exe=/usr/bin/curl -k net", "x86_64")
    for f in rule.fields:
        if f.strval == "/usr/bin/curl":
            f.strval = "/usr/bin/curl\x00junk"
    kernel = _kernel()
    client = kernel.connect(4242)
    acks = _send(kernel, client, AUDIT_ADD_RULE, rule.encode())
    assert nl.parse_error(acks[0].payload).error == 0
    listed = [m.payload for m in _send(kernel, client, AUDIT_LIST_RULES, b"") if m.type == AUDIT_LIST_RULES]
    assert AuditRuleData.decode(listed[0]).fields[-2].strval == "/usr/bin/curl"  # the model lists what the kernel would
    assert listed[0] == rule.kernel_form().encode()


# ---- the fuzz driver itself ------------------------------------------------------------------


def test_every_target_runs_its_seeds_cleanly() -> None:
    """A target that crashes on its own seeds would report noise, not findings."""
    for name in TARGETS:
        one_input, seeds, _mod = load(name)
        n = 0
        for data in seeds():
            one_input(data)
            n += 1
        assert n > 0, f"target {name} has no seeds"


def test_minimiser_keeps_the_signature() -> None:
    from bench.fuzz.engine import minimise, signature_of

    def one_input(data: bytes) -> None:
        if b"\xff" in data and len(data) > 3:
            raise KeyError("boom")

    data = b"hello \xff world, this is long"
    sig = signature_of(one_input, data)
    assert sig and sig.startswith("KeyError@tests/test_fuzz_regressions.py:")
    small = minimise(one_input, data, sig, budget=5)
    assert signature_of(one_input, small) == sig
    assert len(small) == 4 and b"\xff" in small


def test_hypothesis_engine_reports_executions_and_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.fuzz import engine

    rep = engine.run_target("auditctl", 1.5, engine="hypothesis", workdir=tmp_path, quiet=True)
    assert rep.engine == "hypothesis" and rep.executions > 50 and rep.seconds >= 1.5
    assert rep.crashes == len(rep.signatures) == len(rep.crash_files)
    assert (tmp_path / "auditctl" / "runs.jsonl").exists()


def test_cli_usage(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.fuzz.__main__ import main

    assert main(["--list"]) == 0
    assert "netlink" in capsys.readouterr().out
    assert main(["--target", "nope", "--seconds", "1"]) == 2
    assert main(["--target", "records", "--seconds", "0"]) == 2
