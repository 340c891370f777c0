"""The endpoint wire protocol, spoken by hand (docs/internals.md, "Endpoint wire protocol")."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from collector.protocol import netlink as nl
from collector.protocol.status import status_set
from collector.transport import (
    CONTROL_MAGIC,
    CONTROL_PORT,
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_CAP_ACK,
    OP_BIND,
    OP_GETSOCKNAME,
    OP_RESULT,
    OP_SETSOCKOPT,
    Control,
    Transport,
)
from simulator.endpoint import EndpointServer, process_identity
from simulator.kernel import AuditKernel

HDR = struct.Struct("=IHHII")


class RawClient:
    """A client that knows nothing but the documented packet format."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(2)
        self.sock.connect(path)

    def packet(self) -> tuple[int, bytes]:
        data = self.sock.recv(1 << 17)
        return struct.unpack_from("<I", data)[0], data[4:]

    def control(self, op: int, arg: int = 0, value: int = 0) -> Control:
        self.sock.send(Control(op, arg, value).encode())
        port, body = self.packet()
        assert port == CONTROL_PORT
        return Control.decode(body)

    def send(self, datagram: bytes, sender: int = 0) -> None:
        self.sock.send(struct.pack("<I", sender) + datagram)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(sim_server: EndpointServer):
    clients = []

    def connect() -> RawClient:
        c = RawClient(sim_server.path)
        clients.append(c)
        return c

    yield connect
    for c in clients:
        c.close()


def test_hello_then_autobind_on_first_send(raw) -> None:
    c = raw()
    port, body = c.packet()
    assert port == CONTROL_PORT
    length, mtype, flags, seq, pid = HDR.unpack_from(body)
    assert mtype == nl.NLMSG_NOOP and length == len(body) == 16 + 24
    assert body[16:24] == CONTROL_MAGIC
    hello = Control.decode(body)
    assert (hello.op, hello.arg, hello.value, hello.error) == (OP_RESULT, 0, 0, 0)  # unbound yet
    c.send(HDR.pack(16, 1000, 5, 9, 0))
    port, ack = c.packet()
    assert port == 0  # the kernel
    assert HDR.unpack_from(ack)[1:] == (nl.NLMSG_ERROR, nl.NLM_F_CAPPED, 9, os.getpid())  # our tgid
    port, reply = c.packet()
    assert port == 0 and HDR.unpack_from(reply)[:2] == (60, 1000)
    assert c.control(OP_GETSOCKNAME).arg == os.getpid()


def test_the_sender_field_of_a_client_is_not_trusted(raw, sim_kernel: AuditKernel) -> None:
    c = raw()
    c.packet()
    c.send(HDR.pack(16, 1000, 5, 1, 0), sender=12345)
    _, ack = c.packet()
    assert HDR.unpack_from(ack)[4] == os.getpid()


def test_bind_groups_setsockopt_and_unknown_ops(raw) -> None:
    a, b = raw(), raw()
    a.packet(), b.packet()
    res = a.control(OP_BIND, 1, 0)
    assert (res.op, res.arg, res.value, res.error) == (OP_RESULT | OP_BIND, os.getpid(), 1, 0)
    res = b.control(OP_BIND, 0, os.getpid())  # that port id is taken
    assert res.error == -98
    res = b.control(OP_BIND, 0, 0)
    assert res.arg == (-4097) & 0xFFFFFFFF and res.error == 0
    assert b.control(OP_BIND, 0, 0).error == -22  # already bound: nl_pid 0 != its port id
    assert b.control(OP_SETSOCKOPT, NETLINK_ADD_MEMBERSHIP, 2).error == -22
    assert b.control(OP_SETSOCKOPT, NETLINK_ADD_MEMBERSHIP, 1).value == 1
    assert b.control(OP_SETSOCKOPT, 99, 1).error == -92  # ENOPROTOOPT
    assert b.control(42).error == -95


def test_cap_ack_makes_errors_echo_only_the_header(raw) -> None:
    c = raw()
    c.packet()
    assert c.control(OP_SETSOCKOPT, NETLINK_CAP_ACK, 1).error == 0
    payload = status_set(enabled=7).encode()
    c.send(HDR.pack(16 + len(payload), 1001, 5, 3, 0) + payload)
    _, err = c.packet()
    assert HDR.unpack_from(err)[:3] == (36, nl.NLMSG_ERROR, nl.NLM_F_CAPPED)


def test_garbage_is_counted_and_the_server_keeps_serving(raw, sim_server: EndpointServer) -> None:
    c = raw()
    c.packet()
    c.sock.send(b"")  # an empty packet is not the end of the connection
    c.sock.send(b"\x01\x02")
    c.sock.send(struct.pack("<I", CONTROL_PORT) + b"not a control message")
    c.send(b"\xff" * 7)
    c.send(HDR.pack(16, 1000, 5, 4, 0))
    _, ack = c.packet()
    assert HDR.unpack_from(ack)[3] == 4
    assert sim_server.counters["bad_packet"] == 2 and sim_server.counters["bad_control"] == 1


def test_clients_are_identified_from_so_peercred_and_proc(sim_server: EndpointServer) -> None:
    t = Transport.over_socket(sim_server.connect_pair())
    try:
        (client,) = [c for c in sim_server.clients() if c.port_id == t.port_id]
        ident = process_identity(os.getpid())
        assert client.pid == os.getpid()
        assert client.comm == ident["comm"] and client.exe == os.readlink(f"/proc/{os.getpid()}/exe").encode()
        with open("/proc/self/loginuid") as fh:
            assert client.auid == int(fh.read())
    finally:
        t.close()


def test_process_identity_of_an_unmappable_peer_is_another_pid_namespace() -> None:
    assert process_identity(0) == {"uid": 0, "gid": 0, "init_pid_ns": False}


def test_listen_replaces_a_stale_socket_and_refuses_a_live_one(tmp_path_factory) -> None:
    path = os.path.join(str(tmp_path_factory.mktemp("ep")), "s")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(path)
    stale.close()
    with EndpointServer() as first:
        first.listen(path)
        first.start()
        with pytest.raises(OSError, match="already listening"):
            EndpointServer().listen(path)
    assert not os.path.exists(path)
    open(path, "w").close()
    with pytest.raises(OSError, match="not a socket"):
        EndpointServer().listen(path)


def test_closing_the_daemon_connection_is_seen_by_the_kernel(sim_server: EndpointServer) -> None:
    t = Transport.over_socket(sim_server.connect_pair())
    t.request(1001, status_set(pid=os.getpid()).encode())
    port = t.port_id
    t.close()
    deadline = time.monotonic() + 2
    while port in sim_server.kernel.clients and time.monotonic() < deadline:
        time.sleep(0.01)
    assert port not in sim_server.kernel.clients
    assert sim_server.kernel.auditd_pid == os.getpid()  # lazy, as in the kernel


def test_packets_sent_just_before_closing_are_still_served(sim_server: EndpointServer) -> None:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.connect(sim_server.path)
    get = struct.pack("<I", 0) + HDR.pack(16, 1000, 5, 1, 0)
    for data in (get, b"", get, b"\x01"):
        c.send(data)
    c.close()  # before the server has even greeted us
    deadline = time.monotonic() + 2
    while sim_server.counters["datagrams"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim_server.counters["datagrams"] == 2
    assert sim_server.counters["bad_packet"] == 2
