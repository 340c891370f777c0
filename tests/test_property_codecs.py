"""Property tests of the sans-I/O codecs: whatever the values, encoding and decoding agree.

Netlink framing (both the true-length form and the kernel's unicast short-length record form),
``audit_status`` in every size from the 8-field original up, ``audit_rule_data`` bytes, the
auditctl text of generated rules, and record text -> Record -> text.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from collector.protocol import netlink as nl
from collector.protocol._tables import OPERATORS, RULE_FIELDS
from collector.protocol.auditctl import format_rule, parse_rule
from collector.protocol.records import record_type_name
from collector.protocol.rules import (
    RULE_DATA_SIZE,
    STRING_FIELDS,
    AuditRuleData,
    RuleError,
    RuleField,
)
from collector.protocol.status import STATUS_FIELDS, AuditStatus, StatusError

SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

messages = st.builds(nl.NetlinkMessage, u16, u16, u32, u32, st.binary(max_size=200))
record_types = st.integers(1100, 0xFFFF)


# ---- netlink ---------------------------------------------------------------------------------


def _ambiguous(msgs: list[nl.NetlinkMessage], blob: bytes) -> bool:
    """[record, header-only message] is byte for byte a short-length record (see netlink.py)."""
    if len(msgs) < 2 or msgs[0].type < 1100:
        return False
    length, rest = nl.NLMSG_HDRLEN + len(msgs[0].payload), len(blob) - nl.NLMSG_HDRLEN
    return length <= rest and rest - length < 4


@SETTINGS
@given(st.lists(messages, min_size=1, max_size=6))
def test_true_length_datagram_round_trip(msgs: list[nl.NetlinkMessage]) -> None:
    blob = nl.encode_many(msgs)
    assume(not _ambiguous(msgs, blob))
    assert len(blob) % 4 == 0
    assert nl.decode_datagram(blob) == msgs


@SETTINGS
@given(record_types, u16, u32, u32, st.binary(max_size=9000), st.integers(0, 3))
def test_unicast_short_length_record_round_trip(rtype, flags, seq, pid, payload, pad) -> None:
    """The form the registered daemon gets: nlmsg_len = payload length, maybe NUL-padded."""
    msg = nl.NetlinkMessage(rtype, flags, seq, pid, payload, short_len=True)
    data = nl.encode(msg)
    assert struct.unpack_from("=I", data)[0] == len(payload)
    assert nl.decode_datagram(data + b"\0" * pad) == [msg]


@SETTINGS
@given(record_types, st.binary(max_size=2000))
def test_multicast_record_is_true_length(rtype, payload) -> None:
    msg = nl.NetlinkMessage(rtype, 0, 0, 0, payload)
    (got,) = nl.decode_datagram(nl.encode(msg))
    assert got == msg and not got.short_len


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_netlink_error(data: bytes) -> None:
    try:
        msgs = nl.decode_datagram(data)
    except nl.NetlinkError as exc:
        assert str(exc)
        return
    assert sum(nl.NLMSG_HDRLEN + len(m.payload) for m in msgs) <= len(data) + nl.NLMSG_HDRLEN


@SETTINGS
@given(st.integers(0, 4095), messages, st.booleans())
def test_error_payload_round_trip(errno: int, request: nl.NetlinkMessage, echo: bool) -> None:
    rep = nl.parse_error(nl.error_payload(errno, request, echo_payload=echo))
    assert rep.error == -errno and rep.is_ack == (errno == 0)
    assert rep.request is not None
    assert (rep.request.type, rep.request.flags, rep.request.seq, rep.request.pid) == (
        request.type, request.flags, request.seq, request.pid)
    assert rep.request.payload == (request.payload if echo else b"")


# ---- audit_status ------------------------------------------------------------------------------


@SETTINGS
@given(st.integers(8, 20).flatmap(lambda n: st.tuples(st.just(n), st.lists(u32, min_size=n, max_size=n))))
def test_status_every_size_round_trip(sized) -> None:
    n, values = sized
    payload = struct.pack(f"={n}I", *values)
    st_ = AuditStatus.decode(payload)
    assert st_.nfields == n
    assert st_.encode() == payload
    known = min(n, len(STATUS_FIELDS))
    assert list(st_.as_dict()) == list(STATUS_FIELDS[:known])
    assert [st_.as_dict()[k] for k in STATUS_FIELDS[:known]] == values[:known]
    assert list(st_.extra) == values[known:]


@SETTINGS
@given(st.binary(max_size=64))
def test_status_bad_sizes_are_refused(payload: bytes) -> None:
    assume(len(payload) % 4 or len(payload) < 32)
    with pytest.raises(StatusError):
        AuditStatus.decode(payload)


# ---- audit_rule_data ---------------------------------------------------------------------------

_OPS = [v for k, v in OPERATORS.items() if k != "OPERATORS"]
_NUMERIC_FIELDS = sorted(v for v in set(RULE_FIELDS.values()) if v not in STRING_FIELDS)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def rule_fields(draw) -> RuleField:
    if draw(st.booleans()):
        fid = draw(st.sampled_from(sorted(STRING_FIELDS)))
        text = draw(_TEXT)
        return RuleField(fid, draw(st.sampled_from(_OPS)), len(text.encode()), text)
    return RuleField(draw(st.sampled_from(_NUMERIC_FIELDS)), draw(st.sampled_from(_OPS)), draw(u32))


rules = st.builds(
    AuditRuleData,
    st.integers(0, 7) | st.integers(0, 7).map(lambda n: n | 0x10),
    st.integers(0, 2),
    st.lists(u32, min_size=64, max_size=64).map(tuple),
    st.lists(rule_fields(), max_size=64),
)


@SETTINGS
@given(rules)
def test_rule_data_round_trip(rule: AuditRuleData) -> None:
    data = rule.encode()
    assert len(data) == RULE_DATA_SIZE + sum(f.value for f in rule.fields if f.strval is not None)
    assert AuditRuleData.decode(data) == rule
    assert AuditRuleData.decode(data + b"\0\0\0") == rule  # netlink padding after buf is ignored
    kf = rule.kernel_form()
    assert not kf.prepend and kf.mask[-1] & 0xFFFF0000 == 0
    assert kf.kernel_form() == kf
    format_rule(rule, "x86_64")  # auditctl -l can print any rule a kernel lists


@SETTINGS
@given(st.binary(max_size=RULE_DATA_SIZE + 64))
def test_rule_data_any_bytes_decode_or_rule_error(data: bytes) -> None:
    try:
        rule = AuditRuleData.decode(data)
    except RuleError as exc:
        assert "audit_rule_data" in str(exc)
        return
    assert AuditRuleData.decode(rule.encode()) == rule


# ---- auditctl text -------------------------------------------------------------------------------

_SYSCALLS = ["connect", "bind", "accept", "accept4", "execve", "execveat", "clone", "kill", "openat", "unlink"]
_NUMERIC = ["uid", "gid", "euid", "pid", "ppid", "auid", "exit", "a0", "a1", "a2", "a3", "success"]


@st.composite
def rule_texts(draw) -> str:
    parts = [draw(st.sampled_from(["-a always,exit", "-A always,exit", "-a never,exit"]))]
    if draw(st.booleans()):
        parts.append(f"-F arch={draw(st.sampled_from(['b64', 'b32']))}")
    for name in draw(st.lists(st.sampled_from(_SYSCALLS), min_size=1, max_size=4, unique=True)):
        parts.append(f"-S {name}")
    for name in draw(st.lists(st.sampled_from(_NUMERIC), max_size=3, unique=True)):
        op = draw(st.sampled_from(["=", "!="] if name in ("success",) else ["=", "!=", "<", ">", "<=", ">="]))
        if name == "success":
            value = str(draw(st.integers(0, 1)))
        elif name == "auid" and draw(st.booleans()):
            value = "unset"
        elif name == "exit" and draw(st.booleans()):
            value = draw(st.sampled_from(["-EACCES", "-EPERM", "-EINPROGRESS"]))
        else:
            value = str(draw(st.integers(0, 65535)))
        parts.append(f"-F {name}{op}{value}")
    if draw(st.booleans()):
        parts.append(f"-F exe=/usr/bin/{draw(st.sampled_from(['curl', 'bash', 'python3']))}")
    for key in draw(st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True), max_size=2, unique=True)):
        parts.append(f"-k {key}")
    return " ".join(parts)


@SETTINGS
@given(rule_texts())
def test_auditctl_text_round_trip(text: str) -> None:
    """parse -> auditctl -l text -> parse gives the bytes the kernel lists for the rule."""
    try:
        rule = parse_rule(text, "x86_64")
    except RuleError:
        assume(False)
        return
    printed = format_rule(rule, "x86_64")
    again = parse_rule(printed, "x86_64")
    assert again.kernel_form().encode() == rule.kernel_form().encode(), (text, printed)
    assert format_rule(again, "x86_64") == printed


# ---- records: text -> Record -> text -------------------------------------------------------------

_KEY = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
_VALUE = st.one_of(
    st.from_regex(r"[A-Za-z0-9/._:,-]{1,20}", fullmatch=True),
    st.from_regex(r'"[A-Za-z0-9/._:,=-]{0,20}"', fullmatch=True),
    st.binary(min_size=1, max_size=12).map(lambda b: b.hex().upper()),
    st.just("(null)"),
)
_TYPES = st.sampled_from([1300, 1306, 1302, 1307, 1309, 1327, 1320, 1112, 1400, 1999])


@st.composite
def record_lines(draw) -> tuple[str, int, list[tuple[str, str]]]:
    rtype = draw(_TYPES)
    pairs = draw(st.lists(st.tuples(_KEY, _VALUE), max_size=12))
    stamp = f"{draw(st.integers(0, 2**33))}.{draw(st.integers(0, 999)):03d}:{draw(u32)}"
    node = draw(st.none() | st.from_regex(r"[a-z][a-z0-9.-]{0,10}", fullmatch=True))
    body = " ".join(f"{k}={v}" for k, v in pairs)
    prefix = f"node={node} " if node else ""
    return f"{prefix}type={record_type_name(rtype)} msg=audit({stamp}): {body}", rtype, pairs


@SETTINGS
@given(record_lines())
def test_record_text_round_trip(item) -> None:
    from collector.parser import parse_log_line, parse_record

    line, rtype, pairs = item
    rec = parse_log_line(line)
    assert rec is not None and rec.type == rtype
    assert rec.items() == pairs
    assert rec.fields() == dict(reversed(pairs))
    expect = line if pairs else line.rstrip(" ")
    assert rec.log_line() == (expect if pairs else expect.replace("): ", "):"))
    back = parse_log_line(rec.log_line())
    assert (back.type, back.sec, back.msec, back.serial, back.node, back.text) == (
        rec.type, rec.sec, rec.msec, rec.serial, rec.node, rec.text)
    # the netlink form of the same record parses to the same header and fields
    nrec = parse_record(rtype, line.split(" msg=", 1)[1].encode())
    assert (nrec.sec, nrec.msec, nrec.serial, nrec.items()) == (rec.sec, rec.msec, rec.serial, rec.items())
