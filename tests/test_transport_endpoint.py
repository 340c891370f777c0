"""The transport against a fake endpoint played by the test: filtering, counting, request()."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

from collector.protocol import netlink as nl
from collector.transport import (
    OP_RESULT,
    OP_SOCKERR,
    Control,
    KernelError,
    Transport,
    TransportError,
    TransportEvent,
    live_lock,
    live_lock_held,
    open_transport,
)

HDR = struct.Struct("=IHHII")
PORT = 777


class FakeEndpoint:
    """The server side of a socket pair: greets, answers the bind, then sends what a test says."""

    def __init__(self) -> None:
        self.server, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.server.settimeout(2)
        self.server.send(Control(OP_RESULT, 0, 0, 0).encode())
        answer = threading.Thread(target=self._answer_bind)
        answer.start()
        self.transport = Transport.over_socket(client)
        answer.join()

    def _answer_bind(self) -> None:
        req = Control.decode(self.server.recv(4096)[4:])
        self.server.send(Control(OP_RESULT | req.op, PORT, req.arg, 0).encode())

    def put(self, datagram: bytes, sender: int = 0) -> None:
        self.server.send(struct.pack("<I", sender) + datagram)

    def request(self) -> tuple[int, int]:
        data = self.server.recv(1 << 16)
        assert struct.unpack_from("<I", data)[0] == PORT  # the client names itself as the sender
        _len, mtype, _flags, seq, _pid = HDR.unpack_from(data, 4)
        return mtype, seq


def msg(mtype: int, payload: bytes = b"", *, seq: int = 0, flags: int = 0, pid: int = 0) -> bytes:
    return nl.encode(nl.NetlinkMessage(mtype, flags, seq, pid, payload), short_len=False)


def ack(seq: int, err: int = 0, mtype: int = 1000) -> bytes:
    req = nl.NetlinkMessage(mtype, 5, seq, 0, b"")
    return msg(nl.NLMSG_ERROR, nl.error_payload(err, req), seq=seq, flags=0 if err else nl.NLM_F_CAPPED, pid=PORT)


@pytest.fixture
def fake():
    f = FakeEndpoint()
    yield f
    f.transport.close()
    f.server.close()


def test_the_bind_answer_gives_the_port_id(fake: FakeEndpoint) -> None:
    assert fake.transport.port_id == PORT


def test_datagrams_from_other_senders_are_dropped_and_counted(fake: FakeEndpoint) -> None:
    fake.put(msg(1300, b"audit(1.2:3): x=1"), sender=4242)
    fake.put(msg(1300, b"audit(1.2:4): x=2"))
    (m,) = fake.transport.recv(1)
    assert m.payload.endswith(b"x=2")
    assert fake.transport.counters["dropped_sender"] == 1


def test_bad_datagrams_are_counted_and_skipped(fake: FakeEndpoint) -> None:
    fake.put(HDR.pack(400, 1000, 0, 1, 0))  # nlmsg_len past the end
    fake.put(b"\x01\x02\x03")  # shorter than a header
    assert fake.transport.recv(0.2) == []
    assert fake.transport.counters["bad_datagram"] == 2 and "runs past the end" not in (fake.transport.last_bad or "")
    assert "truncated at offset 0" in fake.transport.last_bad
    fake.server.send(b"\x00")  # shorter than the sender prefix
    fake.put(msg(1000, b"\0" * 44, seq=2))
    assert [m.seq for m in fake.transport.recv(1)] == [2]
    assert fake.transport.counters["bad_datagram"] == 3
    assert fake.transport.last_bad == "datagram of 1 bytes was truncated or malformed"


def test_the_unicast_record_form_is_decoded(fake: FakeEndpoint) -> None:
    text = b"audit(1795601611.485:1327823): saddr=0200"
    fake.put(HDR.pack(len(text), 1306, 0, 0, 0) + text)
    (m,) = fake.transport.recv(1)
    assert m.short_len and m.payload == text


def test_socket_errors_come_back_as_events(fake: FakeEndpoint) -> None:
    fake.server.send(Control(OP_SOCKERR, 0, 0, -105).encode())
    fake.server.send(Control(OP_SOCKERR, 0, 0, -4).encode())
    assert fake.transport.recv(1) == TransportEvent("enobufs", 105, "reported by the simulator endpoint")
    assert fake.transport.recv(1).kind == "eintr"
    assert fake.transport.counters["enobufs"] == 1 and fake.transport.counters["eintr"] == 1
    fake.server.close()
    assert fake.transport.recv(1).kind == "closed"


def test_request_waits_for_the_ack_and_then_the_reply(fake: FakeEndpoint) -> None:
    def kernel() -> None:
        mtype, seq = fake.request()
        fake.put(msg(1300, b"audit(1.2:3): before=1"))  # a record on the daemon socket meanwhile
        fake.put(ack(seq))
        fake.put(msg(mtype, b"\0" * 44, seq=seq))

    th = threading.Thread(target=kernel)
    th.start()
    replies = fake.transport.request(1000)
    th.join()
    assert [m.type for m in replies] == [1000]
    assert fake.transport.last_ack.error == 0
    (kept,) = fake.transport.recv(0.1)  # the record was kept for the reader, not lost
    assert kept.payload.endswith(b"before=1")


def test_a_dump_ends_at_nlmsg_done(fake: FakeEndpoint) -> None:
    def kernel() -> None:
        mtype, seq = fake.request()
        fake.put(ack(seq, mtype=mtype))
        fake.put(msg(mtype, b"r1", seq=seq, flags=nl.NLM_F_MULTI))
        fake.put(msg(mtype, b"r2", seq=seq, flags=nl.NLM_F_MULTI))
        fake.put(msg(nl.NLMSG_DONE, seq=seq, flags=nl.NLM_F_MULTI))

    th = threading.Thread(target=kernel)
    th.start()
    assert [m.payload for m in fake.transport.request(1013)] == [b"r1", b"r2"]
    th.join()


def test_a_refusal_raises_kernel_error_with_the_errno_name(fake: FakeEndpoint) -> None:
    def kernel() -> None:
        mtype, seq = fake.request()
        fake.put(ack(seq, 17, mtype))

    th = threading.Thread(target=kernel)
    th.start()
    with pytest.raises(KernelError, match=r"EEXIST.*AUDIT_ADD_RULE") as info:
        fake.transport.request(1011, b"\0" * 1040)
    th.join()
    assert info.value.errno == 17 and info.value.name == "EEXIST"


def test_a_missing_answer_times_out_naming_the_request(fake: FakeEndpoint) -> None:
    with pytest.raises(TransportError, match=r"no ACK .* AUDIT_GET"):
        fake.transport.request(1000, timeout=0.2)


def test_endpoint_strings_are_checked() -> None:
    with pytest.raises(ValueError, match="expected 'kernel' or 'unix:PATH'"):
        open_transport("tcp:1.2.3.4")
    with pytest.raises(ValueError, match="path is empty"):
        open_transport("unix:")
    with pytest.raises(TransportError, match="cannot connect"):
        open_transport("unix:/nonexistent/kaudit.sock")


def test_the_live_lock_is_reentrant_in_one_process(tmp_path) -> None:
    path = str(tmp_path / "lock")
    assert not live_lock_held()
    with live_lock(path):
        with live_lock(path, timeout=0.1):
            assert live_lock_held()
        fd = os.open(path, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # still held by us
        os.close(fd)
    assert not live_lock_held()


def test_the_live_lock_times_out_when_another_process_holds_it(tmp_path) -> None:
    path = str(tmp_path / "lock")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)"), path],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match="held the live lock"):
            with live_lock(path, timeout=0.3):
                pass
        assert not live_lock_held()
    finally:
        holder.kill()
        holder.wait()
