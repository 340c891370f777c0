"""pcap files of netlink traffic (LINKTYPE_NETLINK), as an ``nlmon`` capture writes them.

Capturing on an ``nlmon`` device with libpcap gives link type 253 (LINKTYPE_NETLINK), and
every packet starts with the 16-byte Linux "cooked" header (the DLT_LINUX_SLL layout):
packet type, ARPHRD_NETLINK (824), address length and address (unused), and the netlink
family in network byte order (9 = NETLINK_AUDIT). The packet type says which way it went:
nlmon marks a message delivered to a user socket PACKET_USER (6) and one delivered to the
kernel PACKET_KERNEL (7). After the header comes the netlink datagram exactly as it was
delivered, in host byte order, including the kernel's short ``nlmsg_len`` on records sent
to the registered daemon. Wireshark's netlink dissector reads this layout, and so do we.

Files are read and written with scapy's raw pcap reader and writer, so that pcapng and both
byte orders are handled by code that is not ours.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collector.protocol.netlink import (
    NETLINK_AUDIT,
    NLM_F_REQUEST,
    NetlinkError,
    decode_datagram,
)

from .scenario import Message, ScenarioError, parse_record_line

__all__ = [
    "ARPHRD_NETLINK",
    "LINKTYPE_NETLINK",
    "PACKET_KERNEL",
    "PACKET_USER",
    "Packet",
    "messages_from_packets",
    "read_packets",
    "read_pcap",
    "write_pcap",
]

LINKTYPE_NETLINK = 253
ARPHRD_NETLINK = 824
PACKET_USER = 6  # delivered to a user-space socket: kernel -> collector
PACKET_KERNEL = 7  # delivered to the kernel: collector -> kernel
_SLL = struct.Struct(">HHH8sH")  # pkttype, hatype, halen, addr, protocol (all network order)
SLL_LEN = _SLL.size  # 16

_LINKTYPE_NAMES = {0: "NULL", 1: "ETHERNET", 101: "RAW", 113: "LINUX_SLL", 276: "LINUX_SLL2", 253: "NETLINK"}


@dataclass(slots=True)
class Packet:
    """One captured netlink datagram and which way it went."""

    time: float
    data: bytes  # the netlink datagram, without the cooked header
    family: int = NETLINK_AUDIT
    pkttype: int = PACKET_USER

    @property
    def to_kernel(self) -> bool:
        return self.pkttype == PACKET_KERNEL

    def frame(self) -> bytes:
        return _SLL.pack(self.pkttype, ARPHRD_NETLINK, 0, b"\0" * 8, self.family) + self.data


def read_packets(path: str | Path) -> list[Packet]:
    """Every packet of a LINKTYPE_NETLINK capture (pcap or pcapng).

    Raises ScenarioError naming the file, and the packet number when one packet is bad
    (another link type, a missing cooked header, another hardware type).
    """
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader, RawPcapReader

    p = str(path)
    try:
        with open(p, "rb") as fp:
            magic = fp.read(4)
    except OSError as exc:
        raise ScenarioError(p, None, f"cannot read: {exc.strerror}") from None
    reader_cls = RawPcapNgReader if magic == b"\x0a\x0d\x0d\x0a" else RawPcapReader
    out: list[Packet] = []
    try:
        reader = reader_cls(p)
    except (Scapy_Exception, OSError, struct.error, EOFError) as exc:
        raise ScenarioError(p, None, f"not a pcap file: {exc}") from None
    try:
        linktype = getattr(reader, "linktype", LINKTYPE_NETLINK)
        if linktype != LINKTYPE_NETLINK:
            raise ScenarioError(
                p, None, f"link type {linktype} ({_LINKTYPE_NAMES.get(linktype, 'unknown')}) is not "
                f"LINKTYPE_NETLINK ({LINKTYPE_NETLINK}): capture netlink traffic on an nlmon device"
            )
        n = 0
        it = iter(reader)
        while True:
            try:
                item = next(it)
            except StopIteration:
                break
            except (Scapy_Exception, struct.error, EOFError) as exc:
                raise ScenarioError(p, None, f"packet {n + 1}: unreadable: {exc}") from None
            n += 1
            data, meta = item
            if getattr(meta, "linktype", LINKTYPE_NETLINK) != LINKTYPE_NETLINK:  # pcapng: per interface
                raise ScenarioError(p, None, f"packet {n}: link type {meta.linktype} is not LINKTYPE_NETLINK (253)")
            out.append(_packet(p, n, bytes(data), _time(meta)))
    finally:
        reader.close()
    return out


def _time(meta: object) -> float:
    if hasattr(meta, "sec"):  # pcap
        usec = getattr(meta, "usec", 0)
        return float(meta.sec) + usec / 1e6  # type: ignore[attr-defined]
    high = getattr(meta, "tshigh", 0)
    low = getattr(meta, "tslow", 0)
    res = getattr(meta, "tsresol", 1_000_000) or 1_000_000
    return ((high << 32) | low) / res


def _packet(path: str, n: int, frame: bytes, when: float) -> Packet:
    if len(frame) < SLL_LEN:
        raise ScenarioError(path, None, f"packet {n}: {len(frame)} bytes, shorter than the 16-byte cooked header")
    pkttype, hatype, _halen, _addr, family = _SLL.unpack_from(frame)
    if hatype != ARPHRD_NETLINK:
        raise ScenarioError(path, None, f"packet {n}: hardware type {hatype} is not ARPHRD_NETLINK (824)")
    return Packet(when, frame[SLL_LEN:], family, pkttype)


def messages_from_packets(packets: Iterable[Packet], *, path: str = "<pcap>") -> list[Message]:
    """The audit messages the kernel delivered to user space, in capture order.

    Messages to the kernel (the collector's requests) and other netlink families are left
    out. When the capture holds both the daemon's unicast copy of the records (short
    ``nlmsg_len``) and a multicast reader's copy (true length), only the unicast copy is
    kept, so that each record is replayed once. ``at`` is seconds since the first packet.
    """
    pkts = [p for p in packets if p.family == NETLINK_AUDIT]
    t0 = pkts[0].time if pkts else 0.0
    decoded: list[tuple[Packet, int, list]] = []
    for n, pk in enumerate(pkts, 1):
        if pk.to_kernel:
            continue
        try:
            msgs = decode_datagram(pk.data)
        except NetlinkError as exc:
            raise ScenarioError(path, None, f"audit packet {n}: {exc}") from None
        if pk.pkttype not in (PACKET_USER, PACKET_KERNEL) and any(m.flags & NLM_F_REQUEST for m in msgs):
            continue  # no direction in the header: a request is from user space
        decoded.append((pk, n, msgs))
    has_short = any(m.short_len for _, _, ms in decoded for m in ms)
    out: list[Message] = []
    for pk, _n, msgs in decoded:
        for m in msgs:
            is_rec = m.is_record
            if is_rec and has_short and not m.short_len:
                continue  # the multicast copy of a record the daemon also got
            at = round(pk.time - t0, 6)
            if is_rec:
                text = None
                try:
                    text = m.payload.decode("utf-8")
                except UnicodeDecodeError:
                    pass
                ok = False
                if text is not None:
                    try:
                        ok = parse_record_line(f"type=UNKNOWN[{m.type}] msg={text}")[1] == m.payload
                    except ValueError:
                        ok = False
                if ok and len(msgs) == 1:
                    out.append(Message(m.type, m.payload, at=at, flags=m.flags, seq=m.seq, pid=m.pid))
                    continue
                raw = pk.data if len(msgs) == 1 else None
                out.append(Message(m.type, m.payload, at=at, flags=m.flags, seq=m.seq, pid=m.pid, raw=raw,
                                   kind="raw" if raw is not None else "message"))
            else:
                out.append(Message(m.type, m.payload, at=at, flags=m.flags, seq=m.seq, pid=m.pid, kind="message"))
    return out


def read_pcap(path: str | Path) -> list[Message]:
    """The kernel-to-user audit messages of a LINKTYPE_NETLINK capture (see messages_from_packets).

    ``Message.netlink()`` gives the NetlinkMessage a pipeline consumes. Raises ScenarioError
    naming the file and packet on bad input.
    """
    return messages_from_packets(read_packets(path), path=str(path))


def write_pcap(path: str | Path, items: Iterable[Message | Packet], *, start: float | None = None) -> int:
    """Write messages (kernel -> collector) and packets (either way) as an nlmon capture.

    A Message is written as the datagram the collector received (records in the unicast
    short-length form); its ``at`` offset, added to ``start`` (default: now), is the packet
    time. Returns the number of packets written.
    """
    import time as time_mod

    from scapy.utils import PcapWriter

    base = time_mod.time() if start is None else start
    n = 0
    writer = PcapWriter(str(path), linktype=LINKTYPE_NETLINK, sync=False, nano=False)
    try:
        writer.write_header(None)  # also for an empty capture; write_packet() alone never writes it
        last = base
        for item in items:
            if isinstance(item, Packet):
                pk = item
            else:
                when = base + item.at if item.at is not None else last
                pk = Packet(when, item.datagram(), NETLINK_AUDIT, PACKET_USER)
            last = pk.time
            sec = int(pk.time)
            usec = int(round((pk.time - sec) * 1e6))
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            frame = pk.frame()
            writer.write_packet(frame, sec=sec, usec=usec, caplen=len(frame), wirelen=len(frame))
            n += 1
    finally:
        writer.close()
    return n

