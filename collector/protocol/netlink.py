"""Netlink framing for NETLINK_AUDIT, with the kernel's record-length quirk.

The kernel sends each audit record to the registered daemon with ``nlmsg_len`` set to the
payload length *without* the 16-byte header (kernel/audit.c, audit_log_end: "nlmsg_len =
skb->len - NLMSG_HDRLEN"), while multicast readers get a copy with the true length. auditd has
relied on the broken form since 2005, so it will never be fixed; a decoder that trusts
``nlmsg_len`` blindly (pyroute2 does) drops or mangles every unicast record. We accept both.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._tables import ERRNO
from .records import is_record_type

NLMSG_HDRLEN = 16
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ECHO = 0x8
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the request was not echoed in full
NLM_F_ACK_TLVS = 0x200

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1

_HDR = struct.Struct("=IHHII")
_ERR = struct.Struct("=i")


class NetlinkError(ValueError):
    """A buffer that is not valid netlink; the message names the offset and the problem."""


@dataclass(slots=True)
class NetlinkMessage:
    type: int
    flags: int = 0
    seq: int = 0
    pid: int = 0
    payload: bytes = b""
    # True when the message arrived in the unicast short-length form (records to the daemon).
    short_len: bool = False

    @property
    def is_record(self) -> bool:
        return is_record_type(self.type)


def align(n: int) -> int:
    return (n + 3) & ~3


def encode(msg: NetlinkMessage, *, short_len: bool | None = None) -> bytes:
    """Bytes of one message as the kernel would put it in a datagram.

    ``short_len`` (default: the message's own flag) writes the unicast record form: length
    without the header and no padding, as the registered daemon receives records.
    """
    short = msg.short_len if short_len is None else short_len
    if short:
        return _HDR.pack(len(msg.payload), msg.type, msg.flags, msg.seq, msg.pid) + msg.payload
    length = NLMSG_HDRLEN + len(msg.payload)
    pad = align(length) - length
    return _HDR.pack(length, msg.type, msg.flags, msg.seq, msg.pid) + msg.payload + b"\0" * pad


def encode_many(msgs: list[NetlinkMessage]) -> bytes:
    return b"".join(encode(m, short_len=False) for m in msgs)


def decode_header(buf: bytes, offset: int = 0) -> tuple[int, int, int, int, int]:
    if len(buf) - offset < NLMSG_HDRLEN:
        raise NetlinkError(f"netlink header truncated at offset {offset}: {len(buf) - offset} bytes, need 16")
    return _HDR.unpack_from(buf, offset)


def decode_datagram(buf: bytes) -> list[NetlinkMessage]:
    """Every message in one received datagram.

    A record whose ``nlmsg_len`` equals the bytes after the header (possibly followed by at
    most 3 bytes of NUL padding) is the unicast short form; everything else must carry its true
    length. Raises NetlinkError naming the offset and what is wrong.
    """
    if not buf:
        raise NetlinkError("empty netlink datagram")
    out: list[NetlinkMessage] = []
    off = 0
    total = len(buf)
    while off < total:
        if total - off < NLMSG_HDRLEN:
            if off and not any(buf[off:]):
                break  # trailing alignment padding
            raise NetlinkError(
                f"netlink header truncated at offset {off}: {total - off} bytes, need {NLMSG_HDRLEN}"
            )
        length, mtype, flags, seq, pid = _HDR.unpack_from(buf, off)
        rest = total - off - NLMSG_HDRLEN
        if off == 0 and is_record_type(mtype) and length <= rest and rest - length < 4 and length != total:
            # unicast record: length counts only the payload
            payload = buf[NLMSG_HDRLEN : NLMSG_HDRLEN + length]
            out.append(NetlinkMessage(mtype, flags, seq, pid, payload, True))
            break
        if length < NLMSG_HDRLEN:
            raise NetlinkError(
                f"nlmsg_len {length} at offset {off} is shorter than the 16-byte header (type {mtype})"
            )
        if length > total - off:
            raise NetlinkError(
                f"nlmsg_len {length} at offset {off} runs past the end of the {total}-byte buffer (type {mtype})"
            )
        out.append(NetlinkMessage(mtype, flags, seq, pid, bytes(buf[off + NLMSG_HDRLEN : off + length])))
        off += align(length)
    return out


@dataclass(slots=True)
class NetlinkErrorReply:
    """The payload of NLMSG_ERROR: ``error`` is 0 for an ACK, else a negative errno."""

    error: int
    request: NetlinkMessage | None  # the echoed request header (and payload, when not capped)

    @property
    def is_ack(self) -> bool:
        return self.error == 0


def error_payload(errno: int, request: NetlinkMessage, *, echo_payload: bool = False) -> bytes:
    """nlmsgerr for ``request``: 0 = ACK, else -errno (a positive ``errno`` is negated)."""
    return nlmsgerr(0 if errno == 0 else -abs(errno), request, echo_payload=echo_payload)


def nlmsgerr(code: int, request: NetlinkMessage, *, echo_payload: bool) -> bytes:
    """``struct nlmsgerr`` as netlink_ack() writes it.

    ``code`` goes on the wire as is (audit's lost reset answers with a positive count). The
    kernel echoes the request header and, for errors without NETLINK_CAP_ACK, the request
    payload too, padded to 4 bytes; the echoed header keeps the request's own length.
    """
    echoed = _HDR.pack(NLMSG_HDRLEN + len(request.payload), request.type, request.flags, request.seq, request.pid)
    if echo_payload:
        echoed += request.payload + b"\0" * (align(len(request.payload)) - len(request.payload))
    return _ERR.pack(code) + echoed


def ack_datagram(code: int, request: NetlinkMessage, port_id: int, *, cap_ack: bool = False) -> bytes:
    """The NLMSG_ERROR datagram netlink_ack() sends: a plain ACK (code 0) or a capped one echoes
    only the header and carries NLM_F_CAPPED; an error echoes the whole request."""
    echo = code != 0 and not cap_ack
    payload = nlmsgerr(code, request, echo_payload=echo)
    flags = 0 if echo else NLM_F_CAPPED
    return _HDR.pack(NLMSG_HDRLEN + len(payload), NLMSG_ERROR, flags, request.seq, port_id) + payload


def parse_error(payload: bytes) -> NetlinkErrorReply:
    if len(payload) < 4:
        raise NetlinkError(f"NLMSG_ERROR payload truncated: {len(payload)} bytes, need at least 4")
    (code,) = _ERR.unpack_from(payload, 0)
    req = None
    if len(payload) >= 4 + NLMSG_HDRLEN:
        length, mtype, flags, seq, pid = _HDR.unpack_from(payload, 4)
        # the echoed payload is padded; the echoed header's own length says where it ends
        end = 4 + max(NLMSG_HDRLEN, min(length, len(payload) - 4))
        req = NetlinkMessage(mtype, flags, seq, pid, bytes(payload[4 + NLMSG_HDRLEN : end]))
    return NetlinkErrorReply(code, req)


def done_payload() -> bytes:
    """NLMSG_DONE carries an int (0) after the header, as netlink_dump does."""
    return _ERR.pack(0)


def errno_name(err: int) -> str:
    """``EEXIST`` for 17 or -17 (an NLMSG_ERROR's error), from the kernel's own errno table;
    ``E<n>`` for a number it does not name. Shared by the collector and the simulator."""
    n = abs(err)
    for name, num in ERRNO.items():
        if num == n and name not in ("EWOULDBLOCK", "EDEADLOCK"):
            return name
    return f"E{n}"
