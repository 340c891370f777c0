"""The simulator's endpoint: a unix SOCK_SEQPACKET server that speaks the kernel's bytes.

Each accepted connection is one netlink socket of the client process; every packet, both ways,
is a 4-byte little-endian sender port id followed by one netlink datagram exactly as the
kernel would deliver it (docs/internals.md, "Endpoint wire protocol", is the contract; the
client side lives in collector/transport.py). Packets with the reserved port id CONTROL_PORT
carry the socket calls netlink has and a byte stream does not: bind(groups), setsockopt
(multicast membership, NETLINK_CAP_ACK), getsockname, and socket errors such as ENOBUFS.

Who a client is comes from the kernel's own sources: SO_PEERCRED gives the pid (the process's
tgid) and /proc/PID gives the uids, loginuid, session, comm, exe, tty, capabilities and
namespaces that the kernel would read from ``current``. So CONFIG_CHANGE records name the
client exactly as the real kernel names it, and a process without CAP_AUDIT_CONTROL, or in
another pid namespace, gets the kernel's EPERM.

All state changes happen in :class:`simulator.kernel.AuditKernel`; this module only moves
bytes. It never dies on what a client sends: a packet that is too short is counted and
ignored, and a bug in the model is logged and counted rather than taking the server down.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import selectors
import socket
import stat
import struct
import termios
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from collector.transport import (
    CONTROL_PORT,
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_CAP_ACK,
    NETLINK_DROP_MEMBERSHIP,
    NETLINK_EXT_ACK,
    OP_BIND,
    OP_GETSOCKNAME,
    OP_RESULT,
    OP_SETSOCKOPT,
    OP_SOCKERR,
    Control,
)
from simulator.kernel import AuditKernel, Client, Delivery

log = logging.getLogger("kaudit.simulator")

_PREFIX = struct.Struct("<I")
_UCRED = struct.Struct("3i")
MAX_PACKET = (1 << 18) + _PREFIX.size
CAP_AUDIT_WRITE, CAP_AUDIT_CONTROL, CAP_AUDIT_READ = 29, 30, 37
ENOBUFS, EINVAL, ENOPROTOOPT, EOPNOTSUPP = 105, 22, 92, 95
R = TypeVar("R")


# --- who is the client (what the kernel reads from `current`) ------------------------------


def _tty_name(tty_nr: int) -> str | None:
    """A controlling tty number (/proc/PID/stat) as the kernel's tty_name() spells it."""
    if not tty_nr:
        return None
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    if major == 5 and minor == 1:
        return "console"
    return None


def _same_ns(pid: int, kind: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}") == os.readlink(f"/proc/self/ns/{kind}")
    except OSError:
        return True  # cannot tell: do not refuse


def process_identity(pid: int, uid: int = 0, gid: int = 0) -> dict[str, object]:
    """Client fields for process ``pid`` from /proc; best effort, falling back to the creds.

    A pid of 0 means SO_PEERCRED could not map the peer into our pid namespace, so the peer
    lives in another one: the kernel refuses audit control from there with EPERM.
    """
    ident: dict[str, object] = {"uid": uid, "gid": gid}
    if pid <= 0:
        ident["init_pid_ns"] = False
        return ident
    base = f"/proc/{pid}"
    try:
        with open(f"{base}/status") as fh:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)
        uids = [int(x) for x in status.get("Uid", "").split()]
        gids = [int(x) for x in status.get("Gid", "").split()]
        if len(uids) == 4:
            ident.update(uid=uids[0], euid=uids[1], suid=uids[2], fsuid=uids[3])
        if len(gids) == 4:
            ident.update(gid=gids[0], egid=gids[1], sgid=gids[2], fsgid=gids[3])
        ident["ppid"] = int(status.get("PPid", "0"))
        caps = int(status.get("CapEff", "0"), 16)
        ident.update(
            cap_audit_write=bool(caps >> CAP_AUDIT_WRITE & 1),
            cap_audit_control=bool(caps >> CAP_AUDIT_CONTROL & 1),
            cap_audit_read=bool(caps >> CAP_AUDIT_READ & 1),
        )
    except (OSError, ValueError):
        pass
    for name, key in (("loginuid", "auid"), ("sessionid", "ses")):
        try:
            with open(f"{base}/{name}") as fh:
                ident[key] = int(fh.read().strip())
        except (OSError, ValueError):
            pass
    try:
        with open(f"{base}/comm", "rb") as fh:
            ident["comm"] = fh.read().rstrip(b"\n")
    except OSError:
        pass
    try:
        ident["exe"] = os.readlink(f"{base}/exe".encode())
    except OSError:
        pass
    try:
        with open(f"{base}/stat", "rb") as fh:
            after = fh.read().rsplit(b")", 1)[1].split()
        ident["tty"] = _tty_name(int(after[4]))
    except (OSError, IndexError, ValueError):
        pass
    ident["init_pid_ns"] = _same_ns(pid, "pid")
    ident["init_user_ns"] = _same_ns(pid, "user")
    return ident


# --- connections ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Conn:
    sock: socket.socket
    client: Client
    out: deque[bytes] = field(default_factory=deque)
    out_bytes: int = 0
    err_queued: bool = False
    write_failed: bool = False
    closed: bool = False


class EndpointServer:
    """Serves one :class:`AuditKernel` on a unix socket and/or in-process socket pairs.

    ``queue_limit`` is how many unsent bytes a connection may have backed up before a
    multicast copy is dropped with ENOBUFS (the kernel's multicast overrun) and before records
    for the registered daemon stay in the kernel's queue (where they count as backlog).
    """

    def __init__(self, kernel: AuditKernel | None = None, *, queue_limit: int = 65536) -> None:
        self.kernel = kernel if kernel is not None else AuditKernel()
        self.queue_limit = queue_limit
        self.counters: Counter[str] = Counter()
        self.path: str | None = None
        self.panic_message: str | None = None
        self._lock = threading.RLock()
        self._sel = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._conns: dict[socket.socket, _Conn] = {}
        self._new: list[_Conn] = []
        self._dead: list[_Conn] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- setup ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self.path is None:
            raise RuntimeError("the simulator endpoint is not listening on a path")
        return f"unix:{self.path}"

    def listen(self, path: str) -> str:
        """Listen on ``path`` (a stale socket file left by a dead server is replaced)."""
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise OSError(f"{path} exists and is not a socket; refusing to replace it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # nobody answers: stale
            else:
                raise OSError(f"{path}: another simulator is already listening there")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.bind(path)
        os.chmod(path, 0o666)  # any user may connect; the kernel model decides what it may do
        sock.listen(64)
        sock.setblocking(False)
        with self._lock:
            self._listener = sock
            self.path = path
            self._sel.register(sock, selectors.EVENT_READ, "listen")
        return path

    def start(self) -> EndpointServer:
        """Serve in a background thread (pytest fixtures, conformance)."""
        self._thread = threading.Thread(target=self.serve_forever, name="kaudit-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            for conn in list(self._conns.values()) + self._new:
                self._close(conn, notify_kernel=False)
            self._purge()
            for sock in list(self._conns):
                sock.close()
            self._conns.clear()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            if self.path and os.path.exists(self.path):
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
        self._wake_r.close()
        self._wake_w.close()
        self._sel.close()

    def __enter__(self) -> EndpointServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connect_pair(self) -> socket.socket:
        """A connected in-process socket; the server keeps the other end."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self._lock:
            conn = self._adopt(ours)
            self._new.append(conn)
        self._wake()
        return theirs

    # --- calls from other threads -------------------------------------------------------

    def call(self, fn: Callable[[AuditKernel], R]) -> R:
        """Run ``fn(kernel)`` under the server's lock, then send what it produced."""
        with self._lock:
            result = fn(self.kernel)
            self._pump()
        self._wake()
        return result

    def emit_record(self, rtype: int, text: str | bytes, **kw: object) -> int | None:
        """AuditKernel.emit_record(), delivered to the daemon and multicast readers."""
        return self.call(lambda k: k.emit_record(rtype, text, **kw))  # type: ignore[arg-type]

    def inject_error(self, port_id: int, err: int = ENOBUFS) -> bool:
        """Make the next receive on socket ``port_id`` fail with ``err`` (ENOBUFS, EINTR ...)."""
        with self._lock:
            client = self.kernel.clients.get(port_id)
            conn = client.handle if client is not None else None
            if not isinstance(conn, _Conn) or conn.closed:
                return False
            self._push_error(conn, err, force=True)
            self._flush(conn)
        self._wake()
        return True

    def send_datagram(self, port_id: int, data: bytes, *, sender: int = 0) -> bool:
        """Send ``data`` to socket ``port_id`` as if ``sender`` had sent it (0 = the kernel).

        Any bytes go: a datagram from another netlink sender, a truncated one. False when no
        connection has that port id.
        """
        with self._lock:
            client = self.kernel.clients.get(port_id)
            conn = client.handle if client is not None else None
            if not isinstance(conn, _Conn) or conn.closed:
                return False
            packet = _PREFIX.pack(sender & 0xFFFFFFFF) + bytes(data)
            conn.out.append(packet)
            conn.out_bytes += len(packet)
            self._flush(conn)
        self._wake()
        return True

    def pending_bytes(self, port_id: int) -> int | None:
        """Bytes sent to socket ``port_id`` that its client has not read yet (None: no such socket)."""
        with self._lock:
            client = self.kernel.clients.get(port_id)
            conn = client.handle if client is not None else None
            if not isinstance(conn, _Conn) or conn.closed:
                return None
            try:
                unread = struct.unpack("i", fcntl.ioctl(conn.sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            except OSError:
                unread = 0
            return conn.out_bytes + unread

    def wait_drained(self, port_id: int, timeout: float = 5.0) -> bool:
        """Wait until the client of ``port_id`` has read everything sent to it (SIOCOUTQ == 0)."""
        end = time.monotonic() + timeout
        while True:
            pending = self.pending_bytes(port_id)
            if not pending:
                return pending == 0
            if time.monotonic() >= end:
                return False
            time.sleep(0.005)

    def clients(self) -> list[Client]:
        with self._lock:
            return [c.client for c in self._conns.values() if not c.closed]

    # --- the loop ---------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until stop() (or a simulated kernel panic, which closes every connection)."""
        while not self._stop.is_set():
            with self._lock:
                self._purge()
                for conn in self._new:
                    self._conns[conn.sock] = conn
                    self._sel.register(conn.sock, self._interest(conn), conn)
                self._new.clear()
                for conn in self._conns.values():
                    self._sel.modify(conn.sock, self._interest(conn), conn)
            events = self._sel.select(timeout=0.5)
            with self._lock:
                for key, mask in events:
                    if key.data == "wake":
                        self._drain_wake()
                    elif key.data == "listen":
                        self._accept()
                    else:
                        conn = key.data
                        try:
                            if mask & selectors.EVENT_WRITE and not conn.closed:
                                self._flush(conn)
                            if mask & selectors.EVENT_READ and not conn.closed:
                                self._read(conn)
                        except Exception:  # a model bug must not take the server down
                            self.counters["internal_error"] += 1
                            log.exception("serving pid %d failed", conn.client.pid)
                try:
                    self._pump()
                except Exception:
                    self.counters["internal_error"] += 1
                    log.exception("delivering the kernel's output failed")
                if self.kernel.panicked and self.panic_message is None:
                    self.panic_message = self.kernel.panicked
                    log.error("simulated kernel panic (%s): closing every connection", self.panic_message)
                    for conn in list(self._conns.values()) + self._new:
                        self._close(conn, notify_kernel=False)
                    self._stop.set()
        with self._lock:
            self._purge()

    def _purge(self) -> None:
        """Unregister, then close, the sockets of closed connections (only the loop does this,
        so a recycled file descriptor can never be confused with a closed one)."""
        for conn in self._dead:
            if self._conns.get(conn.sock) is conn:
                self._sel.unregister(conn.sock)
                del self._conns[conn.sock]
            try:
                conn.sock.close()
            except OSError:
                pass
        self._dead.clear()

    @staticmethod
    def _interest(conn: _Conn) -> int:
        return selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            conn = self._adopt(sock)
            self._conns[sock] = conn
            self._sel.register(sock, self._interest(conn), conn)

    def _adopt(self, sock: socket.socket) -> _Conn:
        """A new connection = a new, unbound netlink socket of the peer process."""
        sock.setblocking(False)
        try:
            pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        except OSError:
            pid, uid, gid = 0, 0, 0
        client = self.kernel.connect(pid, **process_identity(pid, uid, gid))
        conn = _Conn(sock, client)
        client.handle = conn
        self.counters["connections"] += 1
        self._send_control(conn, Control(OP_RESULT, client.port_id, client.groups, 0))
        return conn

    def _read(self, conn: _Conn) -> None:
        for _ in range(64):
            try:
                data = conn.sock.recv(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:
                # the peer closed with our packets unread: unix sockets report ECONNRESET once
                # (sk_err), and what the peer sent before closing is still queued behind it
                conn.write_failed = True
                continue
            except OSError:
                self._close(conn)
                return
            if not data:
                if self._peer_closed(conn):
                    self._close(conn)
                    return
                self.counters["bad_packet"] += 1  # an empty packet, which the kernel ignores too
                continue
            if len(data) < _PREFIX.size:
                self.counters["bad_packet"] += 1
                continue
            (port,) = _PREFIX.unpack_from(data)
            body = data[_PREFIX.size :]
            if port == CONTROL_PORT:
                self._control(conn, body)
                continue
            self.counters["datagrams"] += 1
            try:
                self.kernel.receive(conn.client, body)
            except Exception:  # a model bug must not take the server down
                self.counters["internal_error"] += 1
                log.exception("the kernel model failed on a datagram of %d bytes from pid %d", len(body), conn.client.pid)
            self._pump()

    @staticmethod
    def _peer_closed(conn: _Conn) -> bool:
        """Is an empty read the end? SEQPACKET also carries empty packets, which read the same.

        It is the end only when the peer has hung up *and* nothing is queued behind (FIONREAD
        sums every queued packet on a unix SEQPACKET socket); an empty packet followed by data,
        even from a peer that has since closed, is just an empty packet.
        """
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN | select.POLLHUP | select.POLLRDHUP)
        if not any(ev & (select.POLLHUP | select.POLLRDHUP | select.POLLERR) for _, ev in poller.poll(0)):
            return False
        try:
            queued = struct.unpack("i", fcntl.ioctl(conn.sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return True
        return queued == 0

    def _control(self, conn: _Conn, body: bytes) -> None:
        try:
            ctl = Control.decode(body)
        except ValueError as exc:
            self.counters["bad_control"] += 1
            log.debug("bad control packet from pid %d: %s", conn.client.pid, exc)
            return
        k, client = self.kernel, conn.client
        if ctl.op == OP_BIND:
            err = k.bind(client, port_id=ctl.value, groups=ctl.arg)
        elif ctl.op == OP_SETSOCKOPT:
            if ctl.arg == NETLINK_ADD_MEMBERSHIP:
                err = k.add_membership(client, ctl.value)
            elif ctl.arg == NETLINK_DROP_MEMBERSHIP:
                err = k.drop_membership(client, ctl.value)
            elif ctl.arg == NETLINK_CAP_ACK:
                client.cap_ack, err = bool(ctl.value), 0
            elif ctl.arg == NETLINK_EXT_ACK:
                err = 0  # accepted; audit never attaches extended-ack TLVs
            else:
                err = -ENOPROTOOPT
        elif ctl.op == OP_GETSOCKNAME:
            err = 0
        else:
            err = -EOPNOTSUPP
        self._send_control(conn, Control(OP_RESULT | ctl.op, client.port_id, client.groups, err))
        self._pump()

    # --- output -----------------------------------------------------------------------------

    def _pump(self) -> None:
        """Send what the kernel produced, then let kauditd move records while the daemon can take them."""
        k = self.kernel
        for d in k.take_outputs():
            self._enqueue(d)
        while True:
            daemon = k.clients.get(k.auditd_port) if k.auditd_pid else None
            conn = daemon.handle if daemon is not None else None
            ready = not (isinstance(conn, _Conn) and not conn.closed and conn.out_bytes >= self.queue_limit)
            moved = k.deliver_records(limit=256, daemon_ready=ready)
            for d in k.take_outputs():
                self._enqueue(d)
            if not moved:
                break
        for conn in list(self._conns.values()) + self._new:
            if conn.out and not conn.closed:
                self._flush(conn)

    def _enqueue(self, d: Delivery) -> None:
        conn = d.client.handle
        if not isinstance(conn, _Conn) or conn.closed or conn.write_failed:
            self.counters["undeliverable"] += 1
            return
        if d.kind == "multicast" and conn.out_bytes >= self.queue_limit:
            self.counters["multicast_overrun"] += 1  # netlink_overrun(): dropped, ENOBUFS
            self._push_error(conn, ENOBUFS)
            return
        packet = _PREFIX.pack(0) + d.data
        conn.out.append(packet)
        conn.out_bytes += len(packet)

    def _push_error(self, conn: _Conn, err: int, *, force: bool = False) -> None:
        """A pending socket error, reported before the data still queued (sk_err semantics)."""
        if conn.err_queued and not force:
            return
        packet = Control(OP_SOCKERR, 0, 0, -abs(err)).encode()
        conn.out.appendleft(packet)
        conn.out_bytes += len(packet)
        conn.err_queued = True

    def _send_control(self, conn: _Conn, ctl: Control) -> None:
        if conn.write_failed:
            return
        packet = ctl.encode()
        conn.out.append(packet)
        conn.out_bytes += len(packet)
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.out:
            packet = conn.out[0]
            try:
                conn.sock.send(packet)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # the peer has gone; what it sent before going is still to be read (and the
                # read side closes the connection at EOF), so only stop writing to it
                conn.write_failed = True
                conn.out.clear()
                conn.out_bytes = 0
                return
            conn.out.popleft()
            conn.out_bytes -= len(packet)
            if packet[:4] == b"\xff\xff\xff\xff":
                conn.err_queued = False

    def _close(self, conn: _Conn, *, notify_kernel: bool = True) -> None:
        if conn.closed:
            return
        conn.closed = True
        conn.out.clear()
        conn.out_bytes = 0
        if notify_kernel:
            self.kernel.disconnect(conn.client)
        else:
            conn.client.alive = False
        if conn in self._new:
            self._new.remove(conn)
        self._dead.append(conn)


__all__ = ["EndpointServer", "process_identity"]
