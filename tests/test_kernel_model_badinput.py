"""Bad input never crashes the kernel model and gets the kernel's answer (often: none)."""

from __future__ import annotations

import random
import struct

import pytest

from collector.protocol import netlink as nl
from simulator.fixtures import KernelHarness, errors

HDR = struct.Struct("=IHHII")
REQ_ACK = 5


@pytest.mark.parametrize(
    ("what", "data"),
    [
        ("empty", b""),
        ("short header", HDR.pack(16, 1000, REQ_ACK, 1, 0)[:8]),
        ("length past the buffer", HDR.pack(40, 1000, REQ_ACK, 1, 0)),
        ("zero length", HDR.pack(0, 1000, REQ_ACK, 1, 0)),
        ("length below the header", HDR.pack(8, 1000, REQ_ACK, 1, 0)),
    ],
)
def test_malformed_datagrams_are_ignored_like_nlmsg_ok_does(what: str, data: bytes) -> None:
    h = KernelHarness()
    c = h.sock()
    assert h.send_raw(c, data) == []
    assert errors(h.send(c, 1000)) == [0]  # still answering


def test_several_messages_acks_first_then_answers() -> None:
    h = KernelHarness()
    c = h.sock()
    set17 = HDR.pack(17, 1001, REQ_ACK, 1, 0) + b"\0\0\0\0"  # unaligned: the next message is at 20
    get = HDR.pack(16, 1000, REQ_ACK, 2, 0)
    msgs = h.send_raw(c, set17 + get + get[:10])
    assert [(m.type, m.seq) for m in msgs] == [(2, 1), (2, 2), (1000, 2)]


@pytest.mark.parametrize(
    ("mtype", "payload", "err"),
    [
        (1001, b"\x01\0\0\0", 0),  # audit_status cut after the mask: the rest reads as zero
        (1018, b"\0" * 15, -22),  # audit_features needs 16 bytes
        (1011, b"\0" * 1039, -22),  # audit_rule_data needs 1040
        (1012, b"\0" * 12, -22),
        (1017, b"\x01", 0),  # tty status: a short copy is zero-filled
        (1015, b"\0" * 7, -22),  # make_equiv needs two sizes
        (1015, struct.pack("=II", 100, 1) + b"/x", -22),  # sizes past the payload
    ],
)
def test_truncated_structs_get_the_kernels_answer(mtype: int, payload: bytes, err: int) -> None:
    h = KernelHarness()
    c = h.sock()
    assert errors(h.send(c, mtype, payload)) == [err]


def test_random_datagrams_never_crash_and_every_answer_is_well_formed() -> None:
    rng = random.Random(20240611)
    h = KernelHarness(parent_exists=lambda p: False, path_exists=lambda p: False)
    c = h.sock()
    types = [0, 1, 2, 3, 999, 1000, 1001, 1010, 1011, 1012, 1013, 1014, 1015, 1016, 1017, 1018, 1019, 1005, 1100, 2100, 3000]
    for _ in range(3000):
        mtype = rng.choice(types)
        payload = rng.randbytes(rng.choice([0, 1, 4, 16, 44, 1040, 1100]))
        if mtype == 1001 and len(payload) >= 12:  # never let fuzzing lock or panic the model
            payload = payload[:4] + b"\0\0\0\0\0\0\0\0" + payload[12:]
        length = 16 + len(payload) if rng.random() < 0.9 else rng.randrange(0, 2000)
        data = HDR.pack(length & 0xFFFFFFFF, mtype, rng.randrange(0, 16), rng.randrange(0, 99), 0) + payload
        if rng.random() < 0.1:
            data = data[: rng.randrange(0, len(data) + 1)]
        h.kernel.receive(c, data)
        h.kernel.deliver_records()
        for d in h.kernel.take_outputs():
            msgs = nl.decode_datagram(d.data)
            assert msgs and all(m.type for m in msgs)
