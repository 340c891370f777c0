"""Fuzz target ``kernel``: any datagram a client sends the simulated kernel.

The simulator's endpoint hands every datagram a client sends to ``AuditKernel.receive``; a
collector under test may send anything, so the model must answer like the kernel (ACK, errno,
reply) and never raise. Every datagram it sends back, records included, must decode with the
collector's codec, and an audit_status reply must decode. The kernel is driven as a privileged
client of the initial namespaces (the paths with the most code), with audit enabled and a
registered daemon so that records flow.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from collector.parser import RecordError, parse_record
from collector.protocol import netlink as nl
from collector.protocol.auditctl import parse_rule
from collector.protocol.records import (
    AUDIT_ADD_RULE,
    AUDIT_DEL_RULE,
    AUDIT_GET,
    AUDIT_GET_FEATURE,
    AUDIT_LIST_RULES,
    AUDIT_SET,
    AUDIT_SET_FEATURE,
    AUDIT_SIGNAL_INFO,
    AUDIT_TTY_GET,
    AUDIT_TTY_SET,
    AUDIT_USER,
)
from collector.protocol.status import AuditFeatures, AuditStatus, status_set

from . import seeds as _seeds

_DAEMON_PID = 1000


def one_input(data: bytes) -> None:
    from simulator.kernel import AuditKernel

    kernel = AuditKernel(enabled=1, path_exists=lambda p: True, parent_exists=lambda p: True, clock=lambda: 1.0)
    daemon = kernel.connect(_DAEMON_PID, comm=b"kaudit")
    kernel.receive(daemon, nl.encode(nl.NetlinkMessage(AUDIT_SET, nl.NLM_F_REQUEST, 1, 0,
                                                       status_set(pid=_DAEMON_PID).encode())))
    assert kernel.auditd_pid == _DAEMON_PID
    kernel.take_outputs()
    other = kernel.connect(2000, comm=b"fuzz", exe=b"/usr/bin/fuzz", auid=1000, ses=3)
    kernel.receive(other, data)
    kernel.receive(daemon, data)
    kernel.deliver_records()
    for d in kernel.take_outputs():
        if d.kind == "record":
            _check_record(d.data)
            continue
        msgs = nl.decode_datagram(d.data)
        for m in msgs:
            if m.type == AUDIT_GET:
                AuditStatus.decode(m.payload)
            elif m.type == nl.NLMSG_ERROR:
                nl.parse_error(m.payload)


def _check_record(data: bytes) -> None:
    """A record to the daemon: one message, unicast short length, audit text payload.

    Checked by hand rather than with ``decode_datagram``, which does not know the short form
    for record types below 1100 (USER 1005, LOGIN 1006): pinned in
    tests/test_fuzz_regressions.py, kept out of this target so it can find other problems.
    """
    length, mtype = struct.unpack_from("=IH", data)
    assert length == len(data) - nl.NLMSG_HDRLEN, f"record of type {mtype}: nlmsg_len {length}, {len(data)} bytes"
    try:
        parse_record(mtype, data[nl.NLMSG_HDRLEN :])
    except RecordError as exc:
        if exc.reason in ("bad_utf8", "too_long"):
            return  # a user message is relayed as sent: any bytes, up to the kernel's limit
        raise AssertionError(f"the kernel model wrote a record the parser refuses: {exc}") from None


def _req(mtype: int, payload: bytes = b"", flags: int = nl.NLM_F_REQUEST | nl.NLM_F_ACK) -> bytes:
    return nl.encode(nl.NetlinkMessage(mtype, flags, 5, 0, payload))


def seeds() -> Iterator[bytes]:
    yield _req(AUDIT_GET)
    yield _req(AUDIT_LIST_RULES)
    yield _req(AUDIT_GET_FEATURE)
    yield _req(AUDIT_SIGNAL_INFO)
    yield _req(AUDIT_TTY_GET)
    yield _req(AUDIT_TTY_SET, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    yield _req(AUDIT_SET_FEATURE, AuditFeatures(vers=1, mask=1, features=1, lock=0).encode())
    yield _req(AUDIT_SET, status_set(enabled=0).encode())
    yield _req(AUDIT_SET, status_set(backlog_limit=100, rate_limit=5).encode())
    yield _req(AUDIT_SET, status_set(lost=0).encode())
    yield _req(AUDIT_USER, b"hello from the fuzzer")
    yield _req(1112, b"op=login acct=\"root\" res=success")
    for text in _seeds.RULES[:5]:
        try:
            payload = parse_rule(text, "x86_64", is_dir=lambda p: p.endswith("/")).encode()
        except ValueError:
            continue
        yield _req(AUDIT_ADD_RULE, payload)
        yield _req(AUDIT_ADD_RULE, payload) + _req(AUDIT_DEL_RULE, payload) + _req(AUDIT_LIST_RULES)
    yield _req(AUDIT_GET) + _req(AUDIT_LIST_RULES)
