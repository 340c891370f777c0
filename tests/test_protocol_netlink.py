"""Netlink framing, including the unicast record-length quirk measured on this kernel."""

from __future__ import annotations

import struct

import pytest

from collector.protocol.netlink import (
    NLM_F_ACK,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NetlinkError,
    NetlinkMessage,
    decode_datagram,
    done_payload,
    encode,
    encode_many,
    error_payload,
    parse_error,
)

TEXT = b"audit(1795603084.600:2): op=set audit_pid=5433 old=0 auid=4294967295 ses=4294967295 res=1"
# bytes exactly as kernel 6.18 delivered them (unicast to the daemon / multicast copy)
UNICAST = bytes.fromhex("59000000190500000000000000000000") + TEXT
MULTICAST = bytes.fromhex("69000000190500000000000000000000") + TEXT


def test_unicast_record_has_short_length():
    (msg,) = decode_datagram(UNICAST)
    assert msg.type == 1305 and msg.payload == TEXT and msg.short_len


def test_multicast_record_has_true_length():
    (msg,) = decode_datagram(MULTICAST)
    assert msg.type == 1305 and msg.payload == TEXT and not msg.short_len


@pytest.mark.parametrize("short", [True, False])
def test_record_round_trip_is_byte_exact(short):
    raw = UNICAST if short else MULTICAST
    (msg,) = decode_datagram(raw)
    # records are never padded by the kernel in either form
    assert encode(msg) == raw if short else encode(msg)[: len(raw)] == raw


def test_control_messages_are_padded_and_framed_together():
    a = NetlinkMessage(NLMSG_ERROR, 0x100, 7, 0, error_payload(0, NetlinkMessage(1000, 5, 7, 99)))
    b = NetlinkMessage(1000, 0, 7, 0, b"x" * 5)
    c = NetlinkMessage(NLMSG_DONE, NLM_F_MULTI, 7, 0, done_payload())
    buf = encode_many([a, b, c])
    assert len(buf) % 4 == 0
    out = decode_datagram(buf)
    assert [m.type for m in out] == [NLMSG_ERROR, 1000, NLMSG_DONE]
    assert out[1].payload == b"x" * 5
    err = parse_error(out[0].payload)
    assert err.is_ack and err.request is not None and err.request.seq == 7 and err.request.pid == 99


def test_error_echoes_request_payload_when_asked():
    req = NetlinkMessage(1011, NLM_F_REQUEST | NLM_F_ACK, 3, 0, b"rule")
    err = parse_error(error_payload(17, req, echo_payload=True))
    assert err.error == -17 and err.request.payload == b"rule" and not err.is_ack


@pytest.mark.parametrize(
    ("buf", "problem"),
    [
        (b"", "empty"),
        (b"\x10\x00\x00\x00\xe8\x03", "truncated at offset 0"),
        (struct.pack("=IHHII", 0, 1000, 0, 0, 0), "shorter than the 16-byte header"),
        (struct.pack("=IHHII", 64, 1000, 0, 0, 0) + b"abcd", "runs past the end"),
        (struct.pack("=IHHII", 20, 1000, 0, 0, 0) + b"abcd" + b"\x01\x02\x03\x04\x05", "truncated at offset 20"),
    ],
)
def test_bad_buffers_name_the_problem(buf, problem):
    with pytest.raises(NetlinkError, match=problem):
        decode_datagram(buf)


def test_parse_error_rejects_truncated_payload():
    with pytest.raises(NetlinkError, match="truncated"):
        parse_error(b"\x00\x00")
