"""Record delivery in the kernel model: daemon (short length), multicast (true length),
backlog and lost, filters, rate limit, hold queue, replay API."""

from __future__ import annotations

import struct

from collector.protocol.status import status_set
from simulator.conformance import EQ, FLD, rule_data
from simulator.fixtures import KernelHarness, errors

SET, ADD = 1001, 1011
ME = 4242


def registered(h: KernelHarness):
    """A registered daemon socket; audit is switched on afterwards so records are made."""
    daemon = h.sock(ME)
    assert errors(h.send(daemon, SET, status_set(pid=ME).encode())) == [0]
    h.kernel.enabled = 1
    return daemon


def test_records_are_made_only_while_audit_is_on() -> None:
    h = KernelHarness()
    reader = h.sock(groups=1)
    assert h.kernel.emit_record(1300, "off=1") is None
    assert h.kernel.emit_record(1305, "control=1", even_if_disabled=True) is not None
    h.kernel.enabled = 1
    assert h.kernel.emit_record(1300, "on=1") is not None
    h.pump()
    assert [t for _, t in h.records(reader)] == [b"control=1", b"on=1"]


def test_the_daemon_gets_the_short_length_and_readers_the_true_one() -> None:
    clock = iter([1795601611.485]).__next__
    h = KernelHarness(clock=clock, serial=1327822)
    reader = h.sock(groups=1)
    daemon = registered(h)
    serial = h.kernel.emit_record(1306, "saddr=0200B3E37F000001")
    h.pump()
    text = b"audit(1795601611.485:1327823): saddr=0200B3E37F000001"
    assert serial == 1327823
    assert h.datagrams(daemon)[-1] == struct.pack("=IHHII", len(text), 1306, 0, 0, 0) + text
    assert h.datagrams(reader)[-1] == struct.pack("=IHHII", 16 + len(text), 1306, 0, 0, 0) + text  # not padded


def test_replayed_text_is_sent_verbatim_and_stamps_can_be_given() -> None:
    h = KernelHarness(enabled=1)
    reader = h.sock(groups=1)
    assert h.kernel.emit_record(1320, "audit(1700000000.001:77): ") == 77
    assert h.kernel.emit_record(1300, "a=1", stamp=(5, 6, 7)) == 7
    h.pump()
    assert [d[16:] for d in h.datagrams(reader)[-2:]] == [b"audit(1700000000.001:77): ", b"audit(5.006:7): a=1"]


def test_a_daemon_that_does_not_read_builds_backlog_then_loses_records() -> None:
    h = KernelHarness(backlog_limit=3)
    daemon = registered(h)
    for i in range(6):
        h.kernel.emit_record(1300, f"n={i}")
    h.pump(daemon_ready=False)
    assert h.kernel.backlog == 4 and h.kernel.lost == 2  # lost once the queue is *over* the limit
    assert h.status(h.sock(ME)).backlog == 4
    h.pump()
    assert h.kernel.backlog == 0
    assert [t for _, t in h.records(daemon)] == [b"n=0", b"n=1", b"n=2", b"n=3"]


def test_without_a_daemon_records_reach_readers_and_are_then_dropped() -> None:
    h = KernelHarness()
    reader = h.sock(groups=1)
    h.kernel.enabled = 1
    h.kernel.emit_record(1300, "x=1")
    h.pump()
    assert h.records(reader) == [(1300, b"x=1")] and h.kernel.backlog == 0 and h.kernel.lost == 0


def test_booted_with_audit_1_records_wait_for_a_daemon() -> None:
    h = KernelHarness(audit_default=True, enabled=1)
    h.kernel.emit_record(1300, "early=1")
    h.pump()
    daemon = registered(h)
    h.pump()
    assert (1300, b"early=1") in h.records(daemon)


def test_an_exclude_rule_drops_the_record_type() -> None:
    h = KernelHarness()
    c, reader = h.sock(), h.sock(groups=1)
    h.kernel.enabled = 1
    assert errors(h.send(c, ADD, rule_data(flags=5, action=0, fields=((FLD["MSGTYPE"], EQ, 1300),)))) == [0]
    assert h.kernel.emit_record(1300, "dropped=1") is None
    h.kernel.emit_record(1306, "kept=1")
    h.pump()
    assert [t for ty, t in h.records(reader) if ty != 1305] == [b"kept=1"]


def test_the_rate_limit_follows_audit_rate_check() -> None:
    # audit_rate_check(): below the limit a record passes; at the limit it passes only when more
    # than a second has gone since the last reset, which then restarts the count. The last
    # reset starts at 0, so the first time the limit is reached the window simply restarts.
    now = [100.0]
    h = KernelHarness(rate_limit=3, clock=lambda: now[0])
    reader = h.sock(groups=1)
    h.kernel.enabled = 1
    results = [h.kernel.emit_record(1300, f"n={i}") for i in range(7)]
    assert [r is not None for r in results] == [True, True, True, True, True, False, False]
    now[0] += 1.5
    assert h.kernel.emit_record(1300, "later=1") is not None
    h.pump()
    assert h.kernel.lost == 2 and len(h.records(reader)) == 6


def test_listeners_are_logged_when_they_join_and_leave() -> None:
    h = KernelHarness(enabled=1)
    obs = h.sock(groups=1)
    other = h.sock(5151, groups=1, comm=b"my reader", exe=b"/usr/bin/reader", tty="pts0", auid=1000, ses=2)
    h.kernel.disconnect(other)
    h.pump()
    texts = [t for ty, t in h.records(obs) if ty == 1335]
    assert texts[-2:] == [
        b'pid=5151 uid=0 auid=1000 tty=pts0 ses=2 comm=6D7920726561646572 exe="/usr/bin/reader" nl-mcgrp=1 op=connect res=1',
        b'pid=5151 uid=0 auid=1000 tty=pts0 ses=2 comm=6D7920726561646572 exe="/usr/bin/reader" nl-mcgrp=1 op=disconnect res=1',
    ]


def test_membership_by_setsockopt() -> None:
    h = KernelHarness()
    c = h.sock()
    assert h.kernel.add_membership(c, 2) == -22 and h.kernel.add_membership(c, 0) == -22
    assert h.kernel.add_membership(c, 1) == 0
    h.kernel.enabled = 1
    h.kernel.emit_record(1300, "a=1")
    h.pump()
    assert h.kernel.drop_membership(c, 1) == 0
    h.kernel.emit_record(1300, "b=1")
    h.pump()
    assert [t for _, t in h.records(c)] == [b"a=1"]


def test_fault_hooks_lost_refusals_and_a_phantom_daemon() -> None:
    h = KernelHarness()
    daemon = registered(h)
    h.kernel.lose_records(3)
    assert h.status(daemon).lost == 3
    h.kernel.refuse[1011] = 1  # "a rule add refused by policy"
    assert errors(h.send(daemon, ADD, rule_data(syscalls=(42,)))) == [-1]
    h.kernel.phantom_daemon(6060)
    h.pump()
    replace = [d for d in h.datagrams(daemon) if struct.unpack_from("=H", d, 4)[0] == 1329]
    assert replace[-1][16:] == struct.pack("=i", 6060)
    assert h.status(daemon).pid == 6060
    h.kernel.emit_record(1300, "for=phantom")
    h.pump()
    assert (1300, b"for=phantom") not in h.records(daemon)
    failing = KernelHarness(failure=2)
    failing.kernel.lose_records()
    assert failing.kernel.panicked
