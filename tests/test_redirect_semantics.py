"""The LD_PRELOAD redirector gives a NETLINK_AUDIT socket on the simulator a netlink socket's semantics.

A Python interpreter runs under the preload as a small step-by-step client (one JSON command
per line on stdin, one answer per line on stdout): Python's socket module calls the C
library's socket functions, so every call below goes through the redirector exactly as
libaudit's would. The test process serves the simulator (or, for faults the simulator does
not make, a scripted endpoint) and drives the model between the client's steps.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.protocol import netlink as nl
from collector.protocol.status import AuditStatus
from collector.transport import CONTROL_PORT, OP_RESULT, OP_SOCKERR, Control
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel
from simulator.redirect import ShimBuildError, shim_path
from simulator.wrap import wrap_env

AUDIT_GET, AUDIT_SET, AUDIT_LIST_RULES, AUDIT_USER = 1000, 1001, 1013, 1005
SYSCALL = 1300
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_NO_ENOBUFS, NETLINK_LIST_MEMBERSHIPS = 1, 2, 5, 9
SO_PROTOCOL, SO_DOMAIN = 38, 39
REQ_ACK = nl.NLM_F_REQUEST | nl.NLM_F_ACK

CLIENT = r'''
import json, os, select, socket, sys, threading
socks = {}
g = {"socks": socks, "socket": socket, "os": os, "threading": threading, "select": select}

def out(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()

for line in sys.stdin:
    c = json.loads(line)
    op = c.pop("op")
    fd = c.get("fd")
    s = socks.get(fd)
    try:
        if op == "open":
            s = socket.socket(socket.AF_NETLINK, c.get("type", socket.SOCK_RAW), c.get("proto", 9))
            socks[s.fileno()] = s
            out({"fd": s.fileno()})
        elif op == "bind":
            s.bind((c.get("pid", 0), c.get("groups", 0)))
            out({})
        elif op == "name":
            out({"name": list(s.getsockname())})
        elif op == "send":
            out({"n": s.sendto(bytes.fromhex(c["hex"]), (c.get("dst", 0), c.get("dgroups", 0)))})
        elif op == "recvfrom":
            data, addr = s.recvfrom(c.get("size", 65536), c.get("flags", 0))
            out({"hex": data.hex(), "addr": list(addr)})
        elif op == "recvmsg":
            data, _anc, flags, addr = s.recvmsg(c.get("size", 65536), 0, c.get("flags", 0))
            out({"hex": data.hex(), "msg_flags": flags, "addr": list(addr) if addr else None})
        elif op == "recv_into":
            buf = bytearray(c["size"])
            n = s.recv_into(buf, c["size"], c.get("flags", 0))
            out({"n": n, "hex": bytes(buf[: min(n, c["size"])]).hex()})
        elif op == "poll":
            p = select.poll()
            p.register(fd, select.POLLIN)
            out({"ready": bool(p.poll(c.get("ms", 0)))})
        elif op == "select":
            r, _, _ = select.select([fd], [], [], c.get("s", 0))
            out({"ready": bool(r)})
        elif op == "setsockopt":
            s.setsockopt(c["level"], c["name"], c["value"])
            out({})
        elif op == "getsockopt":
            out({"value": s.getsockopt(c["level"], c["name"])})
        elif op == "blocking":
            s.setblocking(c["value"])
            out({})
        elif op == "close":
            socks.pop(fd).close()
            out({})
        elif op == "exec":
            g["result"] = None
            exec(c["code"], g)
            out({"result": g["result"]})
        else:
            out({"error": "unknown op " + op})
    except OSError as exc:
        out({"errno": exc.errno, "strerror": exc.strerror})
'''


@pytest.fixture(scope="module")
def shim() -> str:
    try:
        return str(shim_path())
    except ShimBuildError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def sockdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="kaudit-rt-") as d:  # short: unix paths have 107 bytes
        yield d


@pytest.fixture
def server(sockdir: str) -> Iterator[EndpointServer]:
    srv = EndpointServer(AuditKernel(enabled=1, backlog_limit=4242))
    srv.listen(os.path.join(sockdir, "audit.sock"))
    srv.start()
    yield srv
    srv.stop()


class Client:
    """The preloaded interpreter; ``call`` sends one step and returns its answer."""

    def __init__(self, endpoint: str, shim: str, *, on_close: str = "errno", extra_env: dict | None = None) -> None:
        env = wrap_env(endpoint, shim=shim, on_close=on_close)
        env.update(extra_env or {})
        self.stderr_path = tempfile.mktemp(prefix="kaudit-rt-err-")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._err, text=True, bufsize=1,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, op: str, timeout: float = 10.0, **kw: object) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"the client did not answer {op} within {timeout} s (it hangs); stderr: {self.stderr()}")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the client died during {op}: rc={self.proc.wait()} stderr: {self.stderr()}")
        return json.loads(line)

    def stderr(self) -> str:
        self._err.flush()
        return Path(self.stderr_path).read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._err.close()
        os.unlink(self.stderr_path)


@pytest.fixture
def client_for(shim: str) -> Iterator:
    made: list[Client] = []

    def make(endpoint: str, **kw: object) -> Client:
        c = Client(endpoint, shim, **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def request(mtype: int, payload: bytes = b"", *, seq: int = 1, flags: int = REQ_ACK) -> str:
    return nl.encode(nl.NetlinkMessage(mtype, flags, seq, 0, payload), short_len=False).hex()


def messages(answer: dict) -> list[nl.NetlinkMessage]:
    assert "hex" in answer, answer
    return nl.decode_datagram(bytes.fromhex(answer["hex"]))


def wait_for(cond, timeout: float = 5.0) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


# --- addressing ----------------------------------------------------------------------------------


def test_getsockname_is_unbound_then_autobound_to_the_pid(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    assert c.call("name", fd=fd)["name"] == [0, 0]  # a fresh netlink socket has no port id
    c.call("send", fd=fd, hex=request(AUDIT_GET))
    assert c.call("name", fd=fd)["name"] == [c.pid, 0]  # the kernel's autobind: the tgid
    ack = messages(c.call("recvfrom", fd=fd, flags=socket.MSG_DONTWAIT))
    assert ack[0].type == nl.NLMSG_ERROR and ack[0].pid == c.pid  # the ACK names our port id


def test_bind_explicit_port_and_the_kernels_errors(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    a, b = c.call("open")["fd"], c.call("open")["fd"]
    assert c.call("bind", fd=a, pid=777001) == {}
    assert c.call("name", fd=a)["name"] == [777001, 0]
    assert c.call("bind", fd=b, pid=777001)["errno"] == errno.EADDRINUSE
    assert c.call("bind", fd=a, pid=777002)["errno"] == errno.EINVAL  # already bound elsewhere
    assert c.call("bind", fd=b) == {}
    assert c.call("name", fd=b)["name"] == [c.pid, 0]
    # a second socket of the same process autobinds to a negative port id, as netlink does
    d = c.call("open")["fd"]
    assert c.call("bind", fd=d) == {}
    assert c.call("name", fd=d)["name"][0] >= 0x80000000


def test_reply_is_queued_when_sendto_returns_and_comes_from_the_kernel(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    c.call("send", fd=fd, hex=request(AUDIT_GET, seq=5))
    # no poll: the kernel has queued the ACK and the status before sendto() returned
    first = c.call("recvfrom", fd=fd, flags=socket.MSG_DONTWAIT)
    assert first["addr"] == [0, 0]
    (ack,) = messages(first)
    assert ack.type == nl.NLMSG_ERROR and nl.parse_error(ack.payload).error == 0 and ack.seq == 5
    (reply,) = messages(c.call("recvfrom", fd=fd, flags=socket.MSG_DONTWAIT))
    assert reply.type == AUDIT_GET
    assert AuditStatus.decode(reply.payload).backlog_limit == 4242
    assert c.call("recvfrom", fd=fd, flags=socket.MSG_DONTWAIT)["errno"] == errno.EAGAIN


def test_peek_trunc_and_dontwait(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    assert c.call("recv_into", fd=fd, size=64, flags=socket.MSG_DONTWAIT)["errno"] == errno.EAGAIN
    c.call("send", fd=fd, hex=request(AUDIT_GET, flags=nl.NLM_F_REQUEST))  # no ACK: the status only
    # MSG_PEEK|MSG_TRUNC with a 16-byte buffer: the header, and the datagram's real length
    peek = c.call("recv_into", fd=fd, size=16, flags=socket.MSG_PEEK | socket.MSG_TRUNC)
    full_len = struct.unpack_from("=I", bytes.fromhex(peek["hex"]))[0]
    assert peek["n"] == full_len > 16
    # the peeked datagram is still there: a short read truncates it and says so ...
    short = c.call("recvmsg", fd=fd, size=20)
    assert len(bytes.fromhex(short["hex"])) == 20 and short["msg_flags"] & socket.MSG_TRUNC
    assert short["addr"] == [0, 0]
    # ... and the rest of it is gone (datagram semantics)
    assert c.call("recv_into", fd=fd, size=64, flags=socket.MSG_DONTWAIT)["errno"] == errno.EAGAIN


def test_poll_and_select_follow_the_queue(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    assert c.call("poll", fd=fd, ms=50)["ready"] is False
    assert c.call("select", fd=fd, s=0.05)["ready"] is False
    c.call("send", fd=fd, hex=request(AUDIT_GET))
    assert c.call("poll", fd=fd, ms=0)["ready"] is True
    assert c.call("select", fd=fd, s=0)["ready"] is True
    c.call("recvfrom", fd=fd)
    c.call("recvfrom", fd=fd)
    assert c.call("poll", fd=fd, ms=50)["ready"] is False


def test_blocking_recv_waits_for_a_record(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    st = AuditStatus(mask=0x4, pid=c.pid)
    c.call("send", fd=fd, hex=request(AUDIT_SET, st.encode()))  # register as the audit daemon
    assert wait_for(lambda: server.kernel.auditd_pid == c.pid)
    while c.call("recvfrom", fd=fd, flags=socket.MSG_DONTWAIT).get("errno") != errno.EAGAIN:
        pass  # the ACK and the CONFIG_CHANGE of the registration
    threading.Timer(0.3, lambda: server.emit_record(SYSCALL, "arch=c000003e syscall=59 success=yes")).start()
    t0 = time.monotonic()
    got = c.call("recvfrom", fd=fd)  # blocks until the record comes
    assert time.monotonic() - t0 >= 0.2
    (rec,) = messages_short(got)
    assert rec[0] == SYSCALL and b"syscall=59" in rec[1]


def messages_short(answer: dict) -> list[tuple[int, bytes]]:
    """A unicast record datagram: its nlmsg_len is the payload length (the kernel's quirk)."""
    data = bytes.fromhex(answer["hex"])
    length, mtype = struct.unpack_from("=IH", data)
    assert length == len(data) - nl.NLMSG_HDRLEN, "the daemon's copy carries the short nlmsg_len"
    return [(mtype, data[nl.NLMSG_HDRLEN:])]


# --- options ---------------------------------------------------------------------------------------


def test_socket_options(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    assert c.call("getsockopt", fd=fd, level=socket.SOL_SOCKET, name=socket.SO_TYPE)["value"] == socket.SOCK_RAW
    assert c.call("getsockopt", fd=fd, level=socket.SOL_SOCKET, name=SO_PROTOCOL)["value"] == 9
    assert c.call("getsockopt", fd=fd, level=socket.SOL_SOCKET, name=SO_DOMAIN)["value"] == socket.AF_NETLINK
    c.call("setsockopt", fd=fd, level=socket.SOL_SOCKET, name=socket.SO_RCVBUF, value=65536)
    got = c.call("getsockopt", fd=fd, level=socket.SOL_SOCKET, name=socket.SO_RCVBUF)["value"]
    assert got == 2 * 65536  # as on any Linux socket: the kernel doubles it
    assert c.call("getsockopt", fd=fd, level=SOL_NETLINK, name=NETLINK_NO_ENOBUFS)["value"] == 0
    c.call("setsockopt", fd=fd, level=SOL_NETLINK, name=NETLINK_NO_ENOBUFS, value=1)
    assert c.call("getsockopt", fd=fd, level=SOL_NETLINK, name=NETLINK_NO_ENOBUFS)["value"] == 1
    assert c.call("setsockopt", fd=fd, level=SOL_NETLINK, name=99, value=1)["errno"] == errno.ENOPROTOOPT
    # a socket made from a dup()ed descriptor asks SO_DOMAIN/SO_TYPE/SO_PROTOCOL: still netlink
    res = c.call("exec", code=(
        f"s2 = socket.socket(fileno=os.dup({fd})); "
        "result = [s2.family, s2.type, s2.proto, list(s2.getsockname())]; s2.detach()"
    ))["result"]
    assert res[:3] == [socket.AF_NETLINK, socket.SOCK_RAW, 9]


def test_multicast_membership_and_sender_group(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    c.call("setsockopt", fd=fd, level=SOL_NETLINK, name=NETLINK_ADD_MEMBERSHIP, value=1)
    assert wait_for(lambda: len(server.kernel.members) == 1)
    assert c.call("getsockopt", fd=fd, level=SOL_NETLINK, name=NETLINK_LIST_MEMBERSHIPS)["value"] == 1
    server.emit_record(SYSCALL, "arch=c000003e syscall=42 success=no exit=-115")
    got = None
    for _ in range(5):  # the model logs the join itself (EVENT_LISTENER) first
        got = c.call("recvfrom", fd=fd, timeout=5)
        (m,) = messages(got)  # the multicast copy carries the true nlmsg_len
        if m.type == SYSCALL:
            break
    assert got is not None and m.type == SYSCALL and b"exit=-115" in m.payload
    assert got["addr"] == [0, 1]  # sender: the kernel, to group AUDIT_NLGRP_READLOG


def test_data_overtaking_a_control_answer_keeps_the_socket_readable(server: EndpointServer, client_for) -> None:
    """Records queued before a membership change are kept in order and still wake poll()."""
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    c.call("bind", fd=fd, groups=1)
    assert wait_for(lambda: len(server.kernel.members) == 1)
    for i in range(3):
        server.emit_record(SYSCALL, f"arch=c000003e syscall=42 n={i}")
    assert c.call("poll", fd=fd, ms=2000)["ready"]
    time.sleep(0.1)  # let all three arrive
    # the answer to this setsockopt comes after the records: they are stashed, not lost
    assert c.call("setsockopt", fd=fd, level=SOL_NETLINK, name=NETLINK_DROP_MEMBERSHIP, value=1) == {}
    assert c.call("poll", fd=fd, ms=1000)["ready"] is True
    seen = []
    while True:
        got = c.call("recvfrom", fd=fd, flags=socket.MSG_DONTWAIT)
        if "errno" in got:
            assert got["errno"] == errno.EAGAIN
            break
        seen.extend(m.payload for m in messages(got) if m.type == SYSCALL)
    assert [p.split(b" ")[-1] for p in seen] == [b"n=0", b"n=1", b"n=2"]
    assert c.call("name", fd=fd)["name"][1] == 0


def test_enobufs_is_reported_once_unless_no_enobufs(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    c.call("bind", fd=fd)
    port = c.call("name", fd=fd)["name"][0]
    assert server.inject_error(port, errno.ENOBUFS)
    assert c.call("recvfrom", fd=fd, timeout=5)["errno"] == errno.ENOBUFS
    assert c.call("recvfrom", fd=fd, flags=socket.MSG_DONTWAIT)["errno"] == errno.EAGAIN
    c.call("setsockopt", fd=fd, level=SOL_NETLINK, name=NETLINK_NO_ENOBUFS, value=1)
    assert server.inject_error(port, errno.ENOBUFS)
    time.sleep(0.1)
    assert c.call("recvfrom", fd=fd, flags=socket.MSG_DONTWAIT)["errno"] == errno.EAGAIN


def test_sending_to_another_netlink_port_is_refused_and_said(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    assert c.call("send", fd=fd, hex=request(AUDIT_GET), dst=4242)["errno"] == errno.ECONNREFUSED
    assert "not modelled" in c.stderr()


# --- other descriptors are left alone ------------------------------------------------------------------


def test_other_sockets_and_descriptors_are_untouched(server: EndpointServer, client_for, sockdir: str) -> None:
    c = client_for(server.endpoint)
    res = c.call("exec", code=(
        "a, b = socket.socketpair(); a.send(b'ping'); r1 = b.recv(10).decode(); "
        "rt = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); rt.bind((0, 0)); "
        "r2 = rt.getsockname()[0] == os.getpid(); "
        f"fd = os.open({sockdir!r} + '/f', os.O_CREAT | os.O_RDWR); os.write(fd, b'file'); "
        "os.lseek(fd, 0, 0); r3 = os.read(fd, 10).decode(); os.close(fd); "
        "result = [r1, r2, r3]"
    ))
    assert res["result"] == ["ping", True, "file"]
    assert not server.clients()  # NETLINK_ROUTE did not come here


def test_a_closed_descriptor_number_reused_by_a_file_reads_the_file(server: EndpointServer, client_for,
                                                                      sockdir: str) -> None:
    c = client_for(server.endpoint)
    fd = c.call("open")["fd"]
    c.call("close", fd=fd)
    res = c.call("exec", code=(
        f"p = {sockdir!r} + '/g'; open(p, 'w').write('plain file'); "
        f"fd = os.open(p, os.O_RDONLY); result = [fd == {fd}, os.read(fd, 100).decode()]; os.close(fd)"
    ))
    assert res["result"] == [True, "plain file"]


def test_many_threads_with_their_own_sockets(server: EndpointServer, client_for) -> None:
    c = client_for(server.endpoint)
    code = f'''
import struct
req = bytes.fromhex({request(AUDIT_GET)!r})
errors = []
def worker():
    try:
        for _ in range(25):
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)
            s.sendto(req, (0, 0))
            kinds = [struct.unpack_from("=IH", s.recv(8192))[1] for _ in range(2)]
            if kinds != [2, 1000]:
                errors.append(kinds)
            s.close()
    except OSError as exc:
        errors.append(str(exc))
ts = [threading.Thread(target=worker) for _ in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
result = errors
'''
    assert c.call("exec", code=code, timeout=60)["result"] == []


# --- faults ------------------------------------------------------------------------------------------


def test_missing_endpoint_is_econnrefused_and_named(client_for, sockdir: str) -> None:
    path = os.path.join(sockdir, "nobody-here.sock")
    c = client_for(f"unix:{path}")
    assert c.call("open")["errno"] == errno.ECONNREFUSED
    err = c.stderr()
    assert path in err and "ECONNREFUSED" in err
    assert len(err.strip().splitlines()) == 1


class ScriptedEndpoint:
    """A one-connection endpoint that greets and then does what the test says."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(1)
        self.path = path
        self.conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.conn, _ = self.listener.accept()
        self.conn.send(Control(OP_RESULT, 0, 0, 0).encode())

    def connected(self) -> socket.socket:
        self._thread.join(5)
        assert self.conn is not None, "the client never connected"
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def test_endpoint_closing_mid_run_gives_econnrefused_and_nothing_hangs(client_for, sockdir: str) -> None:
    ep = ScriptedEndpoint(os.path.join(sockdir, "scripted.sock"))
    try:
        c = client_for(f"unix:{ep.path}")
        fd = c.call("open")["fd"]
        conn = ep.connected()
        conn.close()  # the simulator goes away
        assert c.call("recvfrom", fd=fd, timeout=5)["errno"] == errno.ECONNREFUSED  # a blocking recv returns
        assert c.call("send", fd=fd, hex=request(AUDIT_GET), timeout=10)["errno"] == errno.ECONNREFUSED
        assert c.call("poll", fd=fd, ms=0)["ready"] is True  # a reader is woken to see the error
        err = c.stderr()
        assert "closed the connection" in err and "ECONNREFUSED" in err and ep.path in err
    finally:
        ep.close()


def test_on_close_term_stops_the_program(client_for, sockdir: str) -> None:
    ep = ScriptedEndpoint(os.path.join(sockdir, "scripted.sock"))
    try:
        c = client_for(f"unix:{ep.path}", on_close="term")
        fd = c.call("open")["fd"]
        ep.connected().close()
        assert c.proc.stdin is not None
        c.proc.stdin.write(json.dumps({"op": "recvfrom", "fd": fd}) + "\n")
        c.proc.stdin.flush()
        assert c.proc.wait(10) == -15  # SIGTERM (Python's default action: die)
        assert "SIGTERM" in c.stderr()
    finally:
        ep.close()


def test_foreign_sender_and_bad_packets(client_for, sockdir: str) -> None:
    ep = ScriptedEndpoint(os.path.join(sockdir, "scripted.sock"))
    try:
        c = client_for(f"unix:{ep.path}")
        fd = c.call("open")["fd"]
        conn = ep.connected()
        body = request(AUDIT_USER, b"hello")
        conn.send(b"\x01")  # too short to carry a sender: skipped
        conn.send(struct.pack("<I", 1234) + bytes.fromhex(body))
        conn.send(struct.pack("<I", CONTROL_PORT) + b"garbage")  # a control packet that is not one
        conn.send(Control(OP_SOCKERR, 0, 0, -errno.EIO).encode())  # (EINTR: Python retries itself)
        conn.send(struct.pack("<I", 0) + bytes.fromhex(body))
        got = c.call("recvfrom", fd=fd, timeout=5)
        assert got["addr"] == [1234, 0]  # libaudit calls this a spoofed packet: it must see the sender
        assert c.call("recvfrom", fd=fd, timeout=5)["errno"] == errno.EIO
        assert c.call("recvfrom", fd=fd, timeout=5)["addr"] == [0, 0]
    finally:
        ep.close()
