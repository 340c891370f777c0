"""Rules in the kernel model: add, duplicate, delete, list, and the kernel's refusals."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from collector.protocol import netlink as nl
from simulator.conformance import ALL_SYSCALLS, EQ, FLD, NE, rule_data
from simulator.fixtures import KernelHarness, errors
from simulator.kernel import AuditKernel, KernelRule

ADD, DEL, LIST = 1011, 1012, 1013
NET = rule_data(fields=((FLD["ARCH"], EQ, 0xC000003E), (FLD["FILTERKEY"], EQ, "net")), syscalls=(42,))
EXECVE = rule_data(fields=((FLD["ARCH"], EQ, 0xC000003E),), syscalls=(59,))


def listing(h: KernelHarness, c) -> list[nl.NetlinkMessage]:
    msgs = h.send(c, LIST)
    assert msgs[0].type == nl.NLMSG_ERROR and msgs[-1].type == nl.NLMSG_DONE
    done = msgs[-1]
    assert done.flags == nl.NLM_F_MULTI and done.payload == b""
    assert all(m.flags == nl.NLM_F_MULTI for m in msgs[1:-1])
    return msgs[1:-1]


def test_add_list_delete_round_trip() -> None:
    h = KernelHarness()
    c = h.sock()
    assert listing(h, c) == []
    assert errors(h.send(c, ADD, NET)) == [0]
    (rule,) = listing(h, c)
    assert rule.type == LIST and rule.payload == NET  # a plain rule lists back byte for byte
    assert h.datagrams(c)[-2][:4] == struct.pack("=I", 16 + len(NET))  # true length, padded datagram
    assert errors(h.send(c, DEL, NET)) == [0]
    assert listing(h, c) == []


def test_duplicate_and_missing() -> None:
    h = KernelHarness()
    c = h.sock()
    h.send(c, ADD, NET)
    assert errors(h.send(c, ADD, NET)) == [-17]
    h.send(c, DEL, NET)
    assert errors(h.send(c, DEL, NET)) == [-2]


INVALID = [
    ("unknown list", rule_data(flags=99, syscalls=(42,)), -22),
    ("deprecated entry list", rule_data(flags=2, syscalls=(42,)), -22),
    ("action possible", rule_data(action=1, syscalls=(42,)), -22),
    ("65 fields", rule_data(syscalls=(42,), field_count=65), -22),
    ("bad operator", rule_data(fields=((FLD["PID"], 0x12345678, 1),), syscalls=(42,)), -22),
    ("unknown field", rule_data(fields=((99, EQ, 1),), syscalls=(42,)), -22),
    ("key too long", rule_data(fields=((FLD["FILTERKEY"], EQ, "k" * 257),), syscalls=(42,)), -22),
    ("two keys", rule_data(fields=((FLD["FILTERKEY"], EQ, "a"), (FLD["FILTERKEY"], EQ, "b"))), -22),
    ("string past the buffer", rule_data(fields=((FLD["FILTERKEY"], EQ, 5),), syscalls=(42,)), -22),
    ("empty string", rule_data(fields=((FLD["FILTERKEY"], EQ, 0),), syscalls=(42,)), -22),
    ("uid -1", rule_data(fields=((FLD["UID"], EQ, 0xFFFFFFFF),), syscalls=(42,)), -22),
    ("bit operator on uid", rule_data(fields=((FLD["UID"], 0x08000000, 1),), syscalls=(42,)), -22),
    ("msgtype on exit", rule_data(fields=((FLD["MSGTYPE"], EQ, 1300),), syscalls=(42,)), -22),
    ("uid on the fs list", rule_data(flags=6, action=0, fields=((FLD["UID"], EQ, 0),)), -22),
    ("< on arch", rule_data(fields=((FLD["ARCH"], 0x10000000, 1),), syscalls=(42,)), -22),
    ("relative watch", rule_data(mask=ALL_SYSCALLS, fields=((FLD["WATCH"], EQ, "etc/x"),)), -22),
    ("watch ending in /", rule_data(mask=ALL_SYSCALLS, fields=((FLD["WATCH"], EQ, "/etc/"),)), -22),
    ("watch with !=", rule_data(mask=ALL_SYSCALLS, fields=((FLD["WATCH"], NE, "/etc/x"),)), -22),
    ("relative exe", rule_data(fields=((FLD["EXE"], EQ, "curl"),), syscalls=(42,)), -22),
    ("short struct", NET[:1036], -22),
    ("empty", b"", -22),
]


@pytest.mark.parametrize(("what", "payload", "err"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_rules_get_the_kernels_errno(what: str, payload: bytes, err: int) -> None:
    h = KernelHarness()
    c = h.sock()
    assert errors(h.send(c, ADD, payload)) == [err]
    assert listing(h, c) == []


def test_values_the_kernel_never_checks_are_accepted() -> None:
    h = KernelHarness()
    c = h.sock()
    for fid, val in ((FLD["PERM"], 16), (FLD["SADDR_FAM"], 0xFFFFFFFF), (FLD["FIELD_COMPARE"], 26),
                     (FLD["LOGINUID_SET"], 2), (FLD["FILETYPE"], 1)):
        assert errors(h.send(c, ADD, rule_data(fields=((fid, EQ, val),), syscalls=(42,)))) == [0], fid


def test_missing_paths_are_enoent() -> None:
    h = KernelHarness(parent_exists=lambda p: False, path_exists=lambda p: False)
    c = h.sock()
    assert errors(h.send(c, ADD, rule_data(mask=ALL_SYSCALLS, fields=((FLD["WATCH"], EQ, "/x/y"),)))) == [-2]
    assert errors(h.send(c, ADD, rule_data(mask=ALL_SYSCALLS, fields=((FLD["DIR"], EQ, "/x"),)))) == [-2]
    assert errors(h.send(c, ADD, rule_data(fields=((FLD["EXE"], EQ, "/x/curl"),), syscalls=(42,)))) == [-2]


def test_all_syscalls_lose_the_class_bits() -> None:
    h = KernelHarness()
    c = h.sock()
    h.send(c, ADD, rule_data(mask=ALL_SYSCALLS, fields=((FLD["FILTERKEY"], EQ, "all"),)))
    (rule,) = listing(h, c)
    mask = struct.unpack_from("=64I", rule.payload, 12)
    assert mask[:63] == (0xFFFFFFFF,) * 63 and mask[63] == 0x0000FFFF


def test_auid_unset_is_stored_as_loginuid_set_and_listed_back() -> None:
    h = KernelHarness()
    c = h.sock()
    legacy = rule_data(fields=((FLD["LOGINUID"], NE, 0xFFFFFFFF),), syscalls=(59,))
    assert errors(h.send(c, ADD, legacy)) == [0]
    (rule,) = h.kernel.rule_list()
    assert rule.fields[0].type == FLD["LOGINUID_SET"] and rule.fields[0].value == 0
    assert listing(h, c)[0].payload == legacy
    assert errors(h.send(c, DEL, legacy)) == [0]


def test_prepend_goes_first_and_is_listed_without_the_flag() -> None:
    h = KernelHarness()
    c = h.sock()
    prepended = bytearray(EXECVE)
    prepended[0] |= 0x10
    h.send(c, ADD, NET)
    h.send(c, ADD, EXECVE)
    assert errors(h.send(c, ADD, bytes(prepended))) == [0]  # the flag differs: no duplicate
    assert [m.payload for m in listing(h, c)] == [EXECVE, NET, EXECVE]
    # once stored, the flag is gone: a plain copy is a duplicate, a prepended one is not found
    assert errors(h.send(c, ADD, EXECVE)) == [-17]
    assert errors(h.send(c, DEL, bytes(prepended))) == [-2]
    assert errors(h.send(c, DEL, EXECVE)) == [0]
    assert errors(h.send(c, DEL, EXECVE)) == [0]


def test_rules_are_listed_by_filter_list() -> None:
    h = KernelHarness()
    c = h.sock()
    user = rule_data(flags=0, action=0, fields=((FLD["MSGTYPE"], EQ, 1005),))
    h.send(c, ADD, NET)
    h.send(c, ADD, user)
    assert [m.payload for m in listing(h, c)] == [user, NET]


def test_rule_change_records_name_key_list_and_result() -> None:
    h = KernelHarness(enabled=1)
    c = h.sock()
    obs = h.sock(groups=1)
    h.send(c, ADD, NET)
    h.send(c, ADD, NET)
    h.send(c, DEL, EXECVE)
    assert [t for ty, t in h.records(obs) if ty == 1305] == [
        b'auid=4294967295 ses=4294967295 op=add_rule key="net" list=4 res=1',
        b'auid=4294967295 ses=4294967295 op=add_rule key="net" list=4 res=0',
        b"auid=4294967295 ses=4294967295 op=remove_rule key=(null) list=4 res=0",
    ]


def _golden_rules(corpus: Path) -> list[tuple[str, bytes]]:
    yaml = pytest.importorskip("yaml")
    out = []
    for path in sorted((corpus / "go-libaudit" / "rules").glob("*.golden.yml")):
        for rule in yaml.safe_load(path.read_text())["rules"]:
            out.append((f"{path.name}: {rule['flags']}", rule["bytes"]))
    return out


def test_every_rule_auditctl_sent_in_the_corpus_loads_and_lists_back(corpus: Path) -> None:
    rules = _golden_rules(corpus)
    assert len(rules) > 100
    h = KernelHarness(parent_exists=lambda p: True, path_exists=lambda p: True)
    c = h.sock()
    for what, payload in rules:
        err = errors(h.send(c, ADD, payload))
        assert err in ([0], [-17]), f"{what}: {err}"  # some files repeat a rule
    listed = [m.payload for m in listing(h, c)]
    assert listed == [r.to_data() for r in h.kernel.rule_list()]
    for payload in listed:  # the kernel's own listing is accepted back and deletes each rule
        assert errors(h.send(c, ADD, payload)) == [-17]
        assert errors(h.send(c, DEL, payload)) == [0]
    assert listing(h, c) == []


def test_kernel_rule_round_trips_through_its_own_listing() -> None:
    k = AuditKernel()
    rule = k._parse_rule(NET)
    assert isinstance(rule, KernelRule) and rule.key == b"net"
    again = k._parse_rule(rule.to_data())
    assert isinstance(again, KernelRule) and again.same_as(rule)


@pytest.mark.parametrize("text", [
    "-a always,exit -F arch=b64 -S connect -F key=net",
    "-a always,exit -F arch=b64 -S execve -F auid!=-1",
    "-w /etc/passwd -p wa -k passwd",
    "-a never,exclude -F msgtype=CWD",
])
def test_auditctl_text_through_the_simulator_and_back(text: str) -> None:
    auditctl = pytest.importorskip("collector.protocol.auditctl")
    rule = auditctl.parse_rule(text, "x86_64", is_dir=lambda p: False)
    h = KernelHarness()
    c = h.sock()
    assert errors(h.send(c, ADD, rule.encode())) == [0]
    (obj,) = h.kernel.rule_objects()
    assert obj.encode() == listing(h, c)[0].payload
    again = auditctl.format_rule(obj, "x86_64")
    assert auditctl.parse_rule(again, "x86_64", is_dir=lambda p: False).encode() == obj.encode()
