"""pcap import and export: LINKTYPE_NETLINK with the cooked header an nlmon capture carries."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from collector.protocol.netlink import NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, encode
from simulator.pcap import (
    ARPHRD_NETLINK,
    LINKTYPE_NETLINK,
    PACKET_KERNEL,
    PACKET_USER,
    Packet,
    read_packets,
    read_pcap,
    write_pcap,
)
from simulator.scenario import Message, ScenarioError, load_any, load_messages, messages_from_text

RECORDS = [
    "type=SYSCALL msg=audit(1795601611.485:1327823): arch=c000003e syscall=42 success=no exit=-115 a0=5 pid=14967",
    "type=SOCKADDR msg=audit(1795601611.485:1327823): saddr=0200B3E37F0000010000000000000000",
    "type=PROCTITLE msg=audit(1795601611.485:1327823): proctitle=6375726C",
    "type=EOE msg=audit(1795601611.485:1327823): ",
]


def sample_messages() -> list[Message]:
    msgs = messages_from_text("\n".join(RECORDS))
    for i, m in enumerate(msgs):
        m.at = i * 0.25
    return msgs


def test_round_trip_keeps_types_payloads_and_timing(tmp_path):
    path = tmp_path / "t.pcap"
    msgs = sample_messages()
    assert write_pcap(path, msgs, start=1795601611.0) == len(msgs)
    back = read_pcap(path)
    assert [(m.type, m.payload) for m in back] == [(m.type, m.payload) for m in msgs]
    assert [m.at for m in back] == [0.0, 0.25, 0.5, 0.75]
    assert all(m.kind == "record" for m in back)


def test_packets_carry_the_cooked_header_and_the_unicast_datagram(tmp_path):
    path = tmp_path / "t.pcap"
    msgs = sample_messages()
    write_pcap(path, msgs, start=1000.0)
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, 20)[0] == LINKTYPE_NETLINK  # pcap global header: network
    pkts = read_packets(path)
    assert [p.data for p in pkts] == [m.datagram() for m in msgs]
    assert all(p.family == 9 and p.pkttype == PACKET_USER for p in pkts)
    frame = pkts[0].frame()
    assert struct.unpack(">HHH8sH", frame[:16]) == (PACKET_USER, ARPHRD_NETLINK, 0, b"\0" * 8, 9)


def test_requests_other_families_and_multicast_copies_are_left_out(tmp_path):
    rec = Message(1300, b"audit(1.002:3): arch=c000003e syscall=42")
    request = NetlinkMessage(1000, NLM_F_REQUEST | NLM_F_ACK, 1, 4242, b"")
    multicast_copy = encode(NetlinkMessage(1300, 0, 0, 0, rec.payload), short_len=False)
    pkts = [
        Packet(1.0, encode(request), 9, PACKET_KERNEL),
        Packet(1.1, b"\x14\0\0\0\x10\0\x05\x03" + b"\0" * 12, 0, PACKET_USER),  # NETLINK_ROUTE
        Packet(1.2, rec.datagram(), 9, PACKET_USER),
        Packet(1.2, multicast_copy, 9, PACKET_USER),
    ]
    path = tmp_path / "mixed.pcap"
    write_pcap(path, pkts)
    back = read_pcap(path)
    assert [(m.type, m.payload) for m in back] == [(1300, rec.payload)]
    assert back[0].at == pytest.approx(0.2)


def test_multicast_only_capture_keeps_true_length_records(tmp_path):
    payload = b"audit(1.002:3): arch=c000003e syscall=42"
    path = tmp_path / "mc.pcap"
    write_pcap(path, [Packet(1.0, encode(NetlinkMessage(1300, 0, 0, 0, payload), short_len=False))])
    (m,) = read_pcap(path)
    assert m.type == 1300 and m.payload == payload


def test_other_link_type_is_one_clear_error(tmp_path):
    from scapy.utils import PcapWriter

    path = tmp_path / "eth.pcap"
    w = PcapWriter(str(path), linktype=1)
    w.write_header(None)
    w.write_packet(b"\0" * 60, sec=1, usec=0)
    w.close()
    with pytest.raises(ScenarioError) as ei:
        read_pcap(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: link type 1 (ETHERNET) is not LINKTYPE_NETLINK (253)")


def test_packet_without_netlink_hatype_names_the_packet(tmp_path):
    from scapy.utils import PcapWriter

    path = tmp_path / "bad.pcap"
    w = PcapWriter(str(path), linktype=LINKTYPE_NETLINK)
    w.write_header(None)
    good = Packet(1.0, Message(1300, b"audit(1.002:3): x=1").datagram()).frame()
    w.write_packet(good, sec=1, usec=0)
    w.write_packet(struct.pack(">HHH8sH", 0, 1, 0, b"\0" * 8, 9) + b"\0" * 16, sec=1, usec=1)
    w.close()
    with pytest.raises(ScenarioError, match=r"packet 2: hardware type 1 is not ARPHRD_NETLINK"):
        read_pcap(path)


def test_not_a_pcap_is_an_error(tmp_path):
    path = tmp_path / "x.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 3)
    with pytest.raises(ScenarioError, match="x.pcap"):
        read_pcap(path)


def test_load_messages_and_load_any_detect_pcap_by_content(tmp_path):
    path = tmp_path / "capture.bin"
    msgs = sample_messages()
    write_pcap(path, msgs)
    got = load_messages(path)
    assert [(m.type, m.payload, m.short_len) for m in got] == [(m.type, m.payload, True) for m in msgs]
    sc = load_any(path)
    assert sc.expect.rows is None and len(sc.messages()) == len(msgs)


def test_pcapng_is_read_too(tmp_path):
    from scapy.utils import RawPcapNgReader  # noqa: F401 - only checks the reader exists

    tshark = shutil.which("tshark") or shutil.which("editcap")
    if not tshark:
        pytest.skip("no tshark/editcap to convert to pcapng")
    src = tmp_path / "t.pcap"
    dst = tmp_path / "t.pcapng"
    write_pcap(src, sample_messages())
    if Path(tshark).name == "tshark":
        cmd = [tshark, "-r", str(src), "-F", "pcapng", "-w", str(dst)]
    else:
        cmd = [tshark, "-F", "pcapng", str(src), str(dst)]
    subprocess.run(cmd, check=True, capture_output=True)
    assert [m.payload for m in read_pcap(dst)] == [m.payload for m in sample_messages()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_written_pcap_as_netlink_audit(tmp_path):
    path = tmp_path / "t.pcap"
    msgs = sample_messages()
    write_pcap(path, msgs)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "netlink.family", "-e", "netlink.hdr_type"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    rows = [ln.split("\t") for ln in out if ln.strip()]
    assert len(rows) == len(msgs)
    assert all(int(r[0], 0) == 9 for r in rows)  # netlink family 9: NETLINK_AUDIT ("Auditing")
    assert [int(r[1].split(",")[0], 0) for r in rows] == [m.type for m in msgs]
