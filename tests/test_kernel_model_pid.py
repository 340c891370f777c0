"""Daemon registration in the kernel model: who may register, replace, unregister, and what a
closed daemon socket leaves behind (measured on 6.18, see `kaudit conformance`)."""

from __future__ import annotations

import struct

from collector.protocol import netlink as nl
from collector.protocol.status import status_set
from simulator.fixtures import KernelHarness, errors

SET, REPLACE, CONFIG_CHANGE = 1001, 1329, 1305
ME, OTHER = 4242, 5151


def st(**kw: int) -> bytes:
    return status_set(**kw).encode()


def test_a_process_registers_its_own_pid() -> None:
    h = KernelHarness()
    a = h.sock(ME)
    assert errors(h.send(a, SET, st(pid=ME))) == [0]
    assert h.status(a).pid == ME
    assert h.kernel.auditd_port == a.port_id


def test_a_pid_that_is_not_the_senders_tgid_is_einval() -> None:
    h = KernelHarness()
    a = h.sock(ME)
    assert errors(h.send(a, SET, st(pid=OTHER))) == [-22]
    assert errors(h.send(a, SET, st(pid=0xFFFFFFFF))) == [-22]
    assert h.status(a).pid == 0


def test_a_second_socket_gets_eexist_and_the_daemon_hears_about_it() -> None:
    h = KernelHarness()
    a, b = h.sock(ME), h.sock(ME)
    h.send(a, SET, st(pid=ME))
    before = len(h.datagrams(a))
    assert errors(h.send(b, SET, st(pid=ME))) == [-17]
    got = h.datagrams(a)[before:]
    # AUDIT_REPLACE (a normal netlink message, true length) tells the daemon who asked ...
    assert got[0] == struct.pack("=IHHII", 20, REPLACE, 0, 0, 0) + struct.pack("=i", ME)
    # ... and the refusal is logged even with audit off, to the daemon with the short length
    length, rtype = struct.unpack_from("=IH", got[1])
    assert rtype == CONFIG_CHANGE and length == len(got[1]) - 16
    assert got[1].endswith(b"op=set audit_pid=4242 old=4242 auid=4294967295 ses=4294967295 res=0")


def test_another_process_may_neither_replace_nor_unregister() -> None:
    h = KernelHarness()
    a, other = h.sock(ME), h.sock(OTHER)
    h.send(a, SET, st(pid=ME))
    assert errors(h.send(other, SET, st(pid=0))) == [-13]
    assert errors(h.send(other, SET, st(pid=OTHER))) == [-17]
    texts = [t for ty, t in h.records(a) if ty == CONFIG_CHANGE]
    assert texts[0].startswith(b"op=set audit_pid=0 old=4242 ") and texts[0].endswith(b"res=0")
    assert texts[1].startswith(b"op=set audit_pid=5151 old=4242 ")
    assert h.status(a).pid == ME


def test_any_socket_of_the_daemon_process_may_unregister_after_a_replace() -> None:
    h = KernelHarness()
    a, b = h.sock(ME), h.sock(ME)
    h.send(a, SET, st(pid=ME))
    assert errors(h.send(b, SET, st(pid=0))) == [0]
    assert h.status(b).pid == 0
    # the daemon unregistering itself first receives the AUDIT_REPLACE, then its ACK
    h.send(a, SET, st(pid=ME))
    msgs = h.send(a, SET, st(pid=0))
    assert [m.type for m in msgs] == [REPLACE, nl.NLMSG_ERROR]


def test_the_ack_of_a_registration_comes_before_any_record() -> None:
    h = KernelHarness(enabled=1)
    a = h.sock(ME)
    msgs = h.send(a, SET, st(pid=ME))
    assert msgs[0].type == nl.NLMSG_ERROR
    assert msgs[1].type == CONFIG_CHANGE and msgs[1].short_len
    assert msgs[1].payload.endswith(b"op=set audit_pid=4242 old=0 auid=4294967295 ses=4294967295 res=1")


def test_a_closed_daemon_socket_keeps_its_pid_until_a_send_fails() -> None:
    h = KernelHarness()
    a, b = h.sock(ME), h.sock(ME)
    h.send(a, SET, st(pid=ME))
    h.kernel.disconnect(a)
    assert h.status(b).pid == ME  # the kernel does not notice the close
    assert errors(h.send(b, SET, st(pid=ME))) == [0]  # AUDIT_REPLACE fails -> reset -> allowed
    assert h.kernel.auditd_port == b.port_id


def test_a_record_to_a_vanished_daemon_resets_the_registration() -> None:
    h = KernelHarness()
    a, b = h.sock(ME), h.sock(ME)
    h.send(a, SET, st(pid=ME))
    h.kernel.disconnect(a)
    h.kernel.enabled = 1
    h.kernel.emit_record(1300, "x=1")
    h.pump()
    assert h.status(b).pid == 0


def test_port_ids_follow_the_kernels_autobind() -> None:
    h = KernelHarness()
    first, second, other = h.sock(ME), h.sock(ME), h.sock(OTHER)
    assert first.port_id == ME and other.port_id == OTHER
    assert second.port_id == (-4097) & 0xFFFFFFFF
    unbound = h.kernel.connect(ME)
    assert h.kernel.bind(unbound, port_id=OTHER) == -98  # EADDRINUSE
    assert h.kernel.bind(first, port_id=123) == -22  # already bound elsewhere
