"""Fuzz target ``pcap``: a capture file as ``kaudit check``/``kaudit replay`` import it.

``read_pcap`` must turn any file into messages or one ``ScenarioError`` naming the file and
packet (scapy's reader errors included); the records it yields then go through the pipeline,
whose ledger must balance.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from collections.abc import Iterator

from collector.pipeline import Pipeline
from simulator.pcap import Packet, read_pcap, write_pcap
from simulator.scenario import Message, ScenarioError, parse_record_line

from . import seeds as _seeds
from .netlink_target import OPTS

_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
_FD, _PATH = tempfile.mkstemp(prefix="kaudit-fuzz-", suffix=".pcap", dir=_DIR)
os.close(_FD)
atexit.register(lambda: os.path.exists(_PATH) and os.unlink(_PATH))


def one_input(data: bytes) -> None:
    with open(_PATH, "wb") as fp:
        fp.write(data)
    try:
        msgs = read_pcap(_PATH)
    except ScenarioError:
        return
    pipe = Pipeline(OPTS, lambda rows: None, uptime=None)
    n = 0
    for m in msgs:
        if m.is_record:
            pipe.feed_netlink(m.type, m.payload)
            n += 1
    st = pipe.finish()
    assert st.ledger.balanced and st.ledger.received == n, f"ledger: {st.ledger.as_dict()}"


def _capture(items: list[Message | Packet]) -> bytes:
    write_pcap(_PATH, items, start=1795601611.0)
    with open(_PATH, "rb") as fp:
        return fp.read()


def seeds() -> Iterator[bytes]:
    msgs: list[Message] = []
    for i, line in enumerate(_seeds.LOG_LINES):
        rtype, payload = parse_record_line(line)
        msgs.append(Message(rtype, payload, at=i * 0.001))
    yield _capture(msgs)
    yield _capture(msgs[:2])
    yield _capture([Packet(1795601611.0, m.datagram(), 9, 7) for m in msgs[:2]] + msgs[2:4])
    yield _capture([])
