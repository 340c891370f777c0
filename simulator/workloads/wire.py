"""Wire ground truth: scapy watches the server end of the veth for each promised packet.

Audit says what the kernel was *asked* (connect to 10.213.0.2:80) and what it answered; the
wire says what actually left the client namespace. A network workload promises, from its own
report, the packet its connect must have produced: a TCP SYN, or a UDP datagram, with exact
addresses and ports. This check is independent of audit and of the collector, so a workload
whose audit rows match but whose traffic never happened (or went somewhere else) still fails.

The capture socket is opened inside the server namespace by a thread that has setns'd there
(``netns.in_netns``), then handed to scapy's AsyncSniffer; the rest of the process stays in its
own namespace. Only TCP SYNs (without ACK) and UDP datagrams are kept: neighbour discovery,
MLD and the server's answers are noise here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.workloads.base import WireExpectation
from simulator.workloads.netns import in_netns

if TYPE_CHECKING:
    from simulator.workloads.netns import TestNet

__all__ = ["Packet", "WireError", "WireResult", "WireWatch", "match_packets"]


class WireError(RuntimeError):
    """The capture could not be started (no CAP_NET_RAW, scapy missing...)."""


@dataclass(slots=True, frozen=True)
class Packet:
    """The fields of a captured SYN or datagram that expectations compare."""

    proto: str  # tcp | udp
    src: str
    sport: int
    dst: str
    dport: int
    time: float = 0.0

    def describe(self) -> str:
        kind = "SYN" if self.proto == "tcp" else "UDP"
        s = f"[{self.src}]" if ":" in self.src else self.src
        d = f"[{self.dst}]" if ":" in self.dst else self.dst
        return f"{kind} {s}:{self.sport} -> {d}:{self.dport}"


@dataclass(slots=True)
class WireResult:
    expectation: WireExpectation
    seen: Packet | None

    @property
    def ok(self) -> bool:
        return self.seen is not None

    def describe(self) -> str:
        return f"{self.expectation.describe()}: {'seen' if self.ok else 'NOT SEEN on the veth'}"


def _same_addr(a: str, b: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def packet_matches(exp: WireExpectation, pkt: Packet) -> bool:
    return (
        exp.proto == pkt.proto
        and _same_addr(exp.src, pkt.src)
        and _same_addr(exp.dst, pkt.dst)
        and exp.dport == pkt.dport
        and (exp.sport == 0 or exp.sport == pkt.sport)
    )


def match_packets(expectations: list[WireExpectation], packets: list[Packet]) -> list[WireResult]:
    """Each expectation against the captured packets (a retransmitted SYN may match twice)."""
    return [WireResult(e, next((p for p in packets if packet_matches(e, p)), None)) for e in expectations]


def to_packet(pkt: Any) -> Packet | None:
    """A scapy packet -> Packet, if it is a TCP SYN (no ACK) or a UDP datagram over IP."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    if ip is None:
        return None
    # ICMP errors quote the offending header: only the outer transport layer counts
    payload = ip.payload
    if isinstance(payload, TCP):
        flags = int(payload.flags)
        if not (flags & 0x02) or (flags & 0x10):
            return None
        return Packet("tcp", ip.src, int(payload.sport), ip.dst, int(payload.dport), float(pkt.time))
    if isinstance(payload, UDP):
        return Packet("udp", ip.src, int(payload.sport), ip.dst, int(payload.dport), float(pkt.time))
    return None


@dataclass(slots=True)
class WireWatch:
    """Captures on the server-side veth for the duration of a run (context manager)."""

    net: TestNet
    packets: list[Packet] = field(default_factory=list)
    _sniffer: Any = None
    _socket: Any = None

    def start(self) -> WireWatch:
        try:
            # the layer modules register Ether for ARPHRD_ETHER; without them frames stay Raw
            import scapy.layers.inet  # noqa: F401
            import scapy.layers.inet6  # noqa: F401
            import scapy.layers.l2  # noqa: F401
            from scapy.arch.linux import L2ListenSocket
            from scapy.sendrecv import AsyncSniffer
        except ImportError as exc:  # pragma: no cover - scapy is a dependency
            raise WireError(f"scapy is not importable: {exc}") from exc
        try:
            with in_netns(self.net.server_path):
                self._socket = L2ListenSocket(iface=self.net.server_if)
        except PermissionError as exc:
            raise WireError(
                f"cannot open a packet socket on {self.net.server_if} (needs CAP_NET_RAW): {exc}"
            ) from exc
        except OSError as exc:
            raise WireError(f"cannot capture on {self.net.server_if} in {self.net.server_ns}: {exc}") from exc
        self._sniffer = AsyncSniffer(opened_socket=self._socket, store=False, prn=self._keep)
        self._sniffer.start()
        # the sniffer thread must be reading before the first workload sends
        deadline = time.monotonic() + 5.0
        while not getattr(self._sniffer, "running", False) and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def _keep(self, pkt: Any) -> None:
        p = to_packet(pkt)
        if p is not None:
            self.packets.append(p)

    def stop(self, settle: float = 0.2) -> list[Packet]:
        """Stop capturing (after ``settle`` seconds for frames in flight); returns the packets."""
        if self._sniffer is not None:
            time.sleep(settle)
            try:
                if getattr(self._sniffer, "running", False):
                    self._sniffer.stop(join=True)
            finally:
                self._sniffer = None
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None
        return list(self.packets)

    def check(self, expectations: list[WireExpectation]) -> list[WireResult]:
        return match_packets(expectations, list(self.packets))

    def __enter__(self) -> WireWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(settle=0)
