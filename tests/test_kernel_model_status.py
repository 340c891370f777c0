"""The kernel model's status, features, permissions and odd message types (sans-I/O)."""

from __future__ import annotations

import struct

import pytest

from collector.protocol import netlink as nl
from collector.protocol.status import AuditFeatures, AuditStatus, status_set
from simulator.fixtures import KernelHarness as Box
from simulator.fixtures import errors
from simulator.kernel import AuditKernel

GET, SET, GET_FEATURE, SET_FEATURE = 1000, 1001, 1019, 1018
ADD_RULE, USER, CONFIG_CHANGE, FEATURE_CHANGE = 1011, 1005, 1305, 1328
PID = 4242


def st(**kw: int) -> bytes:
    return status_set(**kw).encode()


def test_get_answers_ack_first_then_the_11_field_status() -> None:
    box = Box()
    c = box.sock()
    msgs = box.send(c, GET)
    assert [m.type for m in msgs] == [nl.NLMSG_ERROR, GET]
    ack = nl.parse_error(msgs[0].payload)
    assert ack.error == 0 and msgs[0].flags == nl.NLM_F_CAPPED and msgs[0].pid == c.port_id
    assert ack.request.type == GET and ack.request.seq == 7 and ack.request.payload == b""
    assert msgs[1].pid == 0 and msgs[1].seq == 7 and len(msgs[1].payload) == 44
    s = AuditStatus.decode(msgs[1].payload)
    assert (s.enabled, s.failure, s.pid, s.backlog_limit, s.feature_bitmap, s.backlog_wait_time) == (0, 1, 0, 64, 0x7F, 15000)


def test_get_without_ack_flag_answers_the_status_alone() -> None:
    box = Box()
    c = box.sock()
    assert [m.type for m in box.send(c, GET, flags=nl.NLM_F_REQUEST)] == [GET]


def test_set_changes_only_the_masked_fields() -> None:
    box = Box()
    c = box.sock()
    raw = AuditStatus(mask=0x8, rate_limit=9, backlog_limit=1, failure=2, enabled=1).encode()
    assert errors(box.send(c, SET, raw)) == [0]
    s = box.status(c)
    assert (s.rate_limit, s.backlog_limit, s.failure, s.enabled) == (9, 64, 1, 0)


def test_an_error_echoes_the_whole_request_padded() -> None:
    box = Box()
    c = box.sock()
    payload = st(enabled=3) + b"\x01"  # 45 bytes: the echo is padded to 48 and counted in nlmsg_len
    (msg,) = box.send(c, SET, payload)
    err = nl.parse_error(msg.payload)
    assert err.error == -22 and msg.flags == 0
    data = box.datagrams(c)[-1]
    assert struct.unpack_from("=I", data)[0] == 16 + 4 + 16 + 48 == len(data)
    assert err.request.payload[:45] == payload


@pytest.mark.parametrize(("field", "good", "bad"), [("enabled", (0, 1, 2), 3), ("failure", (0, 1, 2), 3)])
def test_enabled_and_failure_accept_0_1_2_only(field: str, good: tuple[int, ...], bad: int) -> None:
    for value in good:
        box = Box()
        c = box.sock()
        assert errors(box.send(c, SET, st(**{field: value}))) == [0]
        assert getattr(box.status(c), field) == value
    box = Box()
    c = box.sock()
    assert errors(box.send(c, SET, st(**{field: bad}))) == [-22]


def test_enabled_2_locks_every_change_with_eperm_and_logs_the_refusal() -> None:
    box = Box(enabled=1)
    c = box.sock()
    obs = box.sock(groups=1)
    assert errors(box.send(c, SET, st(enabled=2))) == [0]
    for change in ({"enabled": 0}, {"enabled": 1}, {"failure": 0}, {"rate_limit": 5},
                   {"backlog_limit": 5}, {"backlog_wait_time": 5}):
        assert errors(box.send(c, SET, st(**change))) == [-1], change
    s = box.status(c)
    assert (s.enabled, s.failure, s.rate_limit, s.backlog_limit) == (2, 1, 0, 64)
    texts = [t for ty, t in box.records(obs) if ty == CONFIG_CHANGE]
    assert texts[0].startswith(b"op=set audit_enabled=2 old=1 ") and texts[0].endswith(b"res=1")
    assert texts[1].startswith(b"op=set audit_enabled=0 old=2 ") and texts[1].endswith(b"res=0")
    assert all(t.endswith(b"res=0") for t in texts[1:])
    # rules are locked too, with the kernel's own record
    rule = struct.pack("=3I", 4, 2, 0) + b"\0" * (1040 - 12)
    assert errors(box.send(c, ADD_RULE, rule)) == [-1]
    assert box.records(obs)[-1][1] == b"pid=4242 uid=0 auid=4294967295 ses=4294967295 op=add_rule audit_enabled=2 res=0"
    # registering a daemon and resetting lost are not locked
    assert errors(box.send(c, SET, st(pid=PID))) == [0]
    assert errors(box.send(c, SET, st(lost=0))) == [0]


def test_backlog_wait_time_limit_and_struct_size_follow_the_kernel() -> None:
    box = Box(hz=100)
    c = box.sock()
    assert box.status(c).backlog_wait_time == 6000
    assert errors(box.send(c, SET, st(backlog_wait_time=60001))) == [-22]
    assert errors(box.send(c, SET, st(backlog_wait_time=60000))) == [0]
    # sizeof(audit_status) is compared with nlmsg_len, header included: 28 payload bytes pass
    assert errors(box.send(c, SET, status_set(nfields=6, backlog_wait_time=1).encode())) == [-22]
    assert errors(box.send(c, SET, status_set(nfields=8, backlog_wait_time=1).encode())) == [0]
    assert box.status(c).backlog_wait_time == 0  # the missing field reads as zero


def test_fields_are_applied_in_order_until_the_first_error() -> None:
    box = Box()
    c = box.sock()
    assert errors(box.send(c, SET, st(rate_limit=7, backlog_wait_time=10**7))) == [-22]
    assert box.status(c).rate_limit == 7


def test_lost_reset_answers_the_counter_even_without_ack() -> None:
    box = Box()
    c = box.sock()
    box.kernel.lost = 5
    msgs = box.send(c, SET, st(lost=0), flags=nl.NLM_F_REQUEST)
    assert len(msgs) == 1 and msgs[0].flags == 0  # a non-zero "error" echoes the request in full
    err = nl.parse_error(msgs[0].payload)
    assert err.error == 5 and err.request.payload == st(lost=0)
    assert box.kernel.lost == 0
    assert box.send(c, SET, st(lost=0), flags=nl.NLM_F_REQUEST) == []  # 0 lost: no answer


def test_failure_2_panics_when_a_record_is_lost() -> None:
    box = Box(failure=2, rate_limit=1, enabled=1)
    box.kernel.emit_record(1300, "first")
    assert box.kernel.panicked is None
    box.kernel.emit_record(1300, "second")
    assert box.kernel.panicked and "rate limit" in box.kernel.panicked
    assert box.kernel.lost == 1


def test_config_change_records_only_once_audit_is_on() -> None:
    box = Box()
    c = box.sock()
    obs = box.sock(groups=1)
    box.send(c, SET, st(rate_limit=1))
    box.send(c, SET, st(enabled=1))  # 0 -> 1 is not logged: audit was off when it was asked
    box.send(c, SET, st(rate_limit=0))
    assert [t for _, t in box.records(obs)] == [b"op=set audit_rate_limit=0 old=1 auid=4294967295 ses=4294967295 res=1"]


def test_features_get_set_and_lock() -> None:
    box = Box(enabled=1)
    c = box.sock(comm=b"python3", exe=b"/usr/bin/python3", ppid=1)
    obs = box.sock(groups=1)
    get = [m for m in box.send(c, GET_FEATURE) if m.type == GET_FEATURE][0]
    assert AuditFeatures.decode(get.payload) == AuditFeatures(1, 0xFFFFFFFF, 0, 0)
    assert errors(box.send(c, SET_FEATURE, b"\0" * 8)) == [-22]
    assert errors(box.send(c, SET_FEATURE, AuditFeatures(1, 2, 2, 2).encode())) == [0]  # set and lock
    assert errors(box.send(c, SET_FEATURE, AuditFeatures(1, 2, 0, 0).encode())) == [-1]
    assert box.kernel.features == 2 and box.kernel.features_lock == 2
    texts = [t for ty, t in box.records(obs) if ty == FEATURE_CHANGE]
    assert texts[0].startswith(b" ppid=1 pid=4242 auid=4294967295 uid=0 gid=0 euid=0")
    assert texts[0].endswith(b'comm="python3" exe="/usr/bin/python3" feature=loginuid_immutable old=0 new=1 old_lock=0 new_lock=1 res=1')
    assert texts[1].endswith(b"old=1 new=0 old_lock=1 new_lock=1 res=0")


@pytest.mark.parametrize(("mtype", "err"), [(999, -22), (1099, -22), (1002, -95), (1003, -95), (1004, -95),
                                            (nl.NLMSG_NOOP, -22), (nl.NLMSG_DONE, -22), (3000, -22), (1006, -22)])
def test_types_the_kernel_does_not_handle(mtype: int, err: int) -> None:
    box = Box()
    c = box.sock()
    msgs = box.send(c, mtype, b"abcd")
    assert errors(msgs) == [err]
    assert nl.parse_error(msgs[0].payload).request.payload == b"abcd"


def test_permissions_and_namespaces_as_audit_netlink_ok() -> None:
    box = Box()
    assert errors(box.send(box.sock(cap_audit_control=False), GET)) == [-1]
    assert errors(box.send(box.sock(cap_audit_write=False), USER, b"hi\0")) == [-1]
    assert errors(box.send(box.sock(init_pid_ns=False), GET)) == [-1]
    assert errors(box.send(box.sock(init_user_ns=False), GET)) == [-111]
    assert errors(box.send(box.sock(init_user_ns=False), 1002)) == [-111]
    with pytest.raises(OSError):
        box.sock(groups=1, cap_audit_read=False)


def test_user_messages_are_logged_only_while_audit_is_on() -> None:
    box = Box()
    c = box.sock(uid=1000, auid=1000, ses=3)
    obs = box.sock(groups=1)
    assert errors(box.send(c, USER, b"off\0")) == [0]
    assert errors(box.send(c, USER, b"x")) == [0]  # too short, but audit is off: just ACKed
    box.kernel.enabled = 1
    assert errors(box.send(c, USER, b"x")) == [-22]
    assert errors(box.send(c, USER, b"hello world\0")) == [0]
    assert errors(box.send(c, 1124, b"typed \x7f\0")) == [0]  # USER_TTY: data= untrusted string
    assert box.records(obs) == [
        (USER, b"pid=4242 uid=1000 auid=1000 ses=3 msg='hello world'"),
        (1124, b"pid=4242 uid=1000 auid=1000 ses=3 data=7479706564207F"),
    ]


def test_tty_auditing_is_per_process_and_signal_info_defaults() -> None:
    box = Box()
    a, b = box.sock(pid=1), box.sock(pid=2)
    assert errors(box.send(a, 1017, struct.pack("=II", 1, 1))) == [0]
    assert errors(box.send(a, 1017, struct.pack("=II", 2, 0))) == [-22]
    tty = lambda c: [m for m in box.send(c, 1016) if m.type == 1016][0].payload  # noqa: E731
    assert tty(a) == struct.pack("=II", 1, 1) and tty(b) == struct.pack("=II", 0, 0)
    sig = [m for m in box.send(a, 1010) if m.type == 1010][0].payload
    assert sig == struct.pack("=Ii", 0xFFFFFFFF, -1)


def test_load_takes_a_snapshot_state() -> None:
    k = AuditKernel()
    k.load(AuditStatus(enabled=1, failure=0, rate_limit=3, backlog_limit=10, lost=4, backlog_wait_time=99),
           AuditFeatures(1, 0xFFFFFFFF, 1, 0))
    s = k.status()
    assert (s.enabled, s.failure, s.rate_limit, s.backlog_limit, s.lost, s.backlog_wait_time) == (1, 0, 3, 10, 4, 99)
    assert k.features == 1
    with pytest.raises(ValueError, match="rule 0 of the initial state.*EINVAL"):
        k.load(rules=[struct.pack("=I", 99) + b"\0" * 1036])  # filter list 99 does not exist
