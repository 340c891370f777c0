"""Sockets that carry audit netlink: the real kernel, a simulator endpoint, an in-process pair.

One :class:`Transport` is one netlink conversation, whatever is on the other side:

* ``kernel``: an ``AF_NETLINK``/``NETLINK_AUDIT`` socket, unicast (the socket a daemon
  registers with AUDIT_SET pid) or read-only, bound to the multicast group
  AUDIT_NLGRP_READLOG;
* ``unix:PATH``: a client of the simulator's endpoint (docs/internals.md, "Endpoint wire
  protocol": SOCK_SEQPACKET, each packet a 4-byte little-endian sender port id and one
  netlink datagram);
* an in-process socket pair handed out by a simulator running in the same process.

Why one class: the reader, the configurator and the tests must not know which kernel they talk
to. What differs (addressing, how a sender is known, how the endpoint reports a socket error)
is hidden in two small backends.

The transport never dies on what it receives: a datagram from anyone but the kernel (sender
port id != 0) is dropped and counted, a datagram that does not decode is counted and skipped,
and ENOBUFS/EINTR come back as :class:`TransportEvent` values that a reader can count and
survive, not as exceptions.
"""

from __future__ import annotations

import errno as _errno
import fcntl
import itertools
import os
import select
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from collector.protocol import netlink as nl
from collector.protocol.netlink import errno_name
from collector.protocol.records import (
    AUDIT_GET,
    AUDIT_GET_FEATURE,
    AUDIT_LIST_RULES,
    AUDIT_SIGNAL_INFO,
    AUDIT_TTY_GET,
    record_type_name,
)

NETLINK_AUDIT = nl.NETLINK_AUDIT
AUDIT_NLGRP_READLOG = nl.AUDIT_NLGRP_READLOG
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
DEFAULT_RCVBUF = 8 * 1024 * 1024  # what auditd-style readers ask for; the kernel caps SO_RCVBUF
MAX_DATAGRAM = 1 << 18
LIVE_LOCK_PATH = "/tmp/kaudit-live.lock"

# --- endpoint wire protocol (docs/internals.md, "Endpoint wire protocol") --------------------

CONTROL_PORT = 0xFFFFFFFF  # sender/recipient "port id" of endpoint control packets
CONTROL_MAGIC = b"KAUDITC1"
_CTL = struct.Struct("=8sIIIi")  # magic, op, arg, value, error
OP_BIND = 1  # arg = nl_groups bitmask, value = nl_pid (0 = autobind)      (bind(2))
OP_SETSOCKOPT = 2  # arg = SOL_NETLINK option, value = its int value        (setsockopt(2))
OP_GETSOCKNAME = 3  # -> RESULT with the current port id and groups         (getsockname(2))
OP_RESULT = 0x80  # server -> client: arg = port id, value = groups, error = 0 or -errno; 0x80|op answers op
OP_SOCKERR = 0x90  # server -> client: a pending socket error (error = -errno), e.g. ENOBUFS
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

_PREFIX = struct.Struct("<I")
_HDR = struct.Struct("=IHHII")

# request types the kernel answers with a message besides the ACK (LIST_RULES: a dump)
REPLY_TYPES = frozenset({AUDIT_GET, AUDIT_GET_FEATURE, AUDIT_SIGNAL_INFO, AUDIT_TTY_GET, AUDIT_LIST_RULES})


@dataclass(slots=True)
class Control:
    """One endpoint control message (a NLMSG_NOOP whose payload is this struct)."""

    op: int
    arg: int = 0
    value: int = 0
    error: int = 0

    def encode(self) -> bytes:
        """The whole packet: CONTROL_PORT prefix + one NLMSG_NOOP netlink message."""
        payload = _CTL.pack(CONTROL_MAGIC, self.op, self.arg & 0xFFFFFFFF, self.value & 0xFFFFFFFF, self.error)
        return _PREFIX.pack(CONTROL_PORT) + _HDR.pack(nl.NLMSG_HDRLEN + len(payload), nl.NLMSG_NOOP, 0, 0, 0) + payload

    @classmethod
    def decode(cls, datagram: bytes) -> Control:
        """From the netlink part of a control packet; ValueError names what is wrong."""
        if len(datagram) < nl.NLMSG_HDRLEN + _CTL.size:
            raise ValueError(f"endpoint control packet of {len(datagram)} bytes, need {nl.NLMSG_HDRLEN + _CTL.size}")
        _len, mtype, _f, _s, _p = _HDR.unpack_from(datagram)
        magic, op, arg, value, error = _CTL.unpack_from(datagram, nl.NLMSG_HDRLEN)
        if mtype != nl.NLMSG_NOOP or magic != CONTROL_MAGIC:
            raise ValueError(f"endpoint control packet is not a kaudit control message (type {mtype}, magic {magic!r})")
        return cls(op, arg, value, error)


# --- errors and events ----------------------------------------------------------------------


class KernelError(OSError):
    """The kernel (or the simulator) refused a request with a negative errno in NLMSG_ERROR."""

    def __init__(self, err: int, request_type: int | None = None) -> None:
        self.request_type = request_type
        self.name = errno_name(err)
        what = f" to AUDIT_{record_type_name(request_type)}" if request_type is not None else ""
        super().__init__(abs(err), f"kernel answered {self.name} ({os.strerror(abs(err))}){what}")


class TransportError(RuntimeError):
    """The conversation cannot be set up or has broken (unreachable kernel, closed endpoint)."""


@dataclass(slots=True)
class TransportEvent:
    """Something that happened to the socket rather than a message on it.

    kind: ``enobufs`` (the receive queue overflowed: messages were lost), ``eintr`` (a receive
    was interrupted), ``closed`` (the endpoint went away).
    """

    kind: str
    errno: int = 0
    detail: str = ""


# --- the live-kernel lock ---------------------------------------------------------------------

_lock_state = {"fd": None, "depth": 0}
_lock_mutex = threading.RLock()


@contextmanager
def live_lock(path: str = LIVE_LOCK_PATH, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive flock that serialises everything changing the real kernel's audit state.

    Re-entrant within one process (a second open of the same file would deadlock against the
    first under flock), so a fixture and the code it runs can both take it. ``timeout``: give
    up after that many seconds with TimeoutError instead of waiting for ever.
    """
    with _lock_mutex:
        if _lock_state["depth"] == 0:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if timeout is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    deadline = time.monotonic() + timeout
                    while True:
                        try:
                            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if time.monotonic() >= deadline:
                                raise TimeoutError(
                                    f"another process has held the live lock {path} for {timeout:g} s"
                                ) from None
                            time.sleep(0.1)
            except BaseException:
                os.close(fd)
                raise
            _lock_state["fd"] = fd
        _lock_state["depth"] += 1
    try:
        yield
    finally:
        with _lock_mutex:
            _lock_state["depth"] -= 1
            if _lock_state["depth"] == 0:
                fd = _lock_state["fd"]
                _lock_state["fd"] = None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def live_lock_held() -> bool:
    """True while this process holds the live lock through live_lock()."""
    with _lock_mutex:
        return _lock_state["depth"] > 0


# --- backends ---------------------------------------------------------------------------------


def size_rcvbuf(sock: socket.socket, size: int) -> int:
    """SO_RCVBUFFORCE as root (ignores rmem_max), SO_RCVBUF otherwise; returns what we got."""
    if size > 0:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            except OSError:
                pass
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


class _Backend:
    sock: socket.socket
    port_id: int = 0
    groups: int = 0

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def buffered(self) -> bool:
        """True when a datagram is already waiting in user space (no need to poll)."""
        return False

    def recv(self) -> tuple[int, bytes, bool] | TransportEvent | None:
        """(sender port id, datagram, truncated), an event, or None for 'nothing useful'."""
        raise NotImplementedError


class _NetlinkBackend(_Backend):
    def __init__(self, *, multicast: bool, rcvbuf: int) -> None:
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        except OSError as exc:
            raise TransportError(
                f"cannot open a NETLINK_AUDIT socket ({exc}); is the kernel built with CONFIG_AUDIT?"
            ) from exc
        try:
            self.rcvbuf = size_rcvbuf(self.sock, rcvbuf)
            self.groups = 1 << (AUDIT_NLGRP_READLOG - 1) if multicast else 0
            try:
                self.sock.bind((0, self.groups))
            except OSError as exc:
                if multicast and exc.errno == _errno.EPERM:
                    raise TransportError(
                        "the kernel refused to join the audit multicast group (EPERM): CAP_AUDIT_READ is needed"
                    ) from exc
                raise TransportError(f"cannot bind the NETLINK_AUDIT socket: {exc}") from exc
            self.port_id = self.sock.getsockname()[0]
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, (0, 0))

    def recv(self) -> tuple[int, bytes, bool] | TransportEvent | None:
        data, _anc, flags, addr = self.sock.recvmsg(MAX_DATAGRAM)
        return addr[0], data, bool(flags & socket.MSG_TRUNC)


class _EndpointBackend(_Backend):
    """A client of the simulator endpoint (unix SOCK_SEQPACKET), see the wire protocol above."""

    def __init__(self, sock: socket.socket, *, multicast: bool, rcvbuf: int, timeout: float) -> None:
        self.sock = sock
        self.rcvbuf = size_rcvbuf(sock, rcvbuf)
        self.sock.setblocking(False)
        self._results: deque[Control] = deque()
        self._early: deque[tuple[int, bytes, bool]] = deque()  # data that overtook a control answer
        self.closed = False
        hello = self.control(None, timeout)  # the endpoint greets every connection
        self.port_id, self.groups = hello.arg, hello.value
        groups = 1 << (AUDIT_NLGRP_READLOG - 1) if multicast else 0
        res = self.control(Control(OP_BIND, groups, 0), timeout)
        if res.error:
            what = "join the audit multicast group" if multicast else "bind"
            raise TransportError(f"the simulator refused to {what}: {errno_name(res.error)}")
        self.port_id, self.groups = res.arg, res.value

    def control(self, request: Control | None, timeout: float) -> Control:
        """Send a control request (or none) and wait for the next RESULT."""
        if request is not None:
            self.sock.send(request.encode())
        deadline = time.monotonic() + timeout
        while not self._results:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise TransportError("the simulator endpoint did not answer a control request in time")
            got = self._read()
            if isinstance(got, tuple):
                self._early.append(got)
            elif isinstance(got, TransportEvent) and got.kind == "closed":
                raise TransportError("the simulator endpoint closed the connection")
        return self._results.popleft()

    def send(self, data: bytes) -> None:
        if self.closed:
            raise TransportError("the simulator endpoint has closed the connection")
        self.sock.send(_PREFIX.pack(self.port_id) + data)

    def buffered(self) -> bool:
        return bool(self._early)

    def recv(self) -> tuple[int, bytes, bool] | TransportEvent | None:
        if self._early:
            return self._early.popleft()
        return self._read()

    def _read(self) -> tuple[int, bytes, bool] | TransportEvent | None:
        data, _anc, flags, _addr = self.sock.recvmsg(MAX_DATAGRAM + _PREFIX.size)
        if not data:
            self.closed = True
            return TransportEvent("closed", 0, "the simulator endpoint closed the connection")
        if len(data) < _PREFIX.size:
            return -1, data, True  # too short to carry a sender: counted as a bad datagram
        (sender,) = _PREFIX.unpack_from(data)
        body = data[_PREFIX.size :]
        if sender == CONTROL_PORT:
            try:
                ctl = Control.decode(body)
            except ValueError:
                return sender, body, True
            if ctl.op == OP_SOCKERR:
                err = abs(ctl.error)
                kind = {_errno.ENOBUFS: "enobufs", _errno.EINTR: "eintr"}.get(err, errno_name(err).lower())
                return TransportEvent(kind, err, "reported by the simulator endpoint")
            self._results.append(ctl)
            return None
        return sender, body, bool(flags & socket.MSG_TRUNC)


# --- the transport --------------------------------------------------------------------------


class Transport:
    """One audit netlink conversation (see the module docstring for the endpoints)."""

    def __init__(self, backend: _Backend, endpoint: str) -> None:
        self._backend = backend
        self.endpoint = endpoint
        self.counters: Counter[str] = Counter(dropped_sender=0, enobufs=0, eintr=0, bad_datagram=0)
        self.last_bad: str | None = None  # why the last bad datagram was refused
        self.last_ack: nl.NetlinkErrorReply | None = None  # the ACK of the last request()
        self._pending: deque[nl.NetlinkMessage] = deque()
        self._seq = itertools.count(int(time.time()) & 0xFFFF or 1)

    # --- identity -----------------------------------------------------------------------

    @property
    def port_id(self) -> int:
        """Our netlink port id (the kernel's autobind: our tgid for a process's first socket)."""
        return self._backend.port_id

    @property
    def rcvbuf(self) -> int:
        return getattr(self._backend, "rcvbuf", 0)

    def fileno(self) -> int:
        return self._backend.sock.fileno()

    # --- sending ------------------------------------------------------------------------

    def next_seq(self) -> int:
        seq = next(self._seq) & 0xFFFFFFFF
        return seq or self.next_seq()

    def send(self, msg: nl.NetlinkMessage) -> int:
        """Send one message; a zero ``seq`` is replaced by the next sequence number. Returns it."""
        if not msg.seq:
            msg = nl.NetlinkMessage(msg.type, msg.flags, self.next_seq(), msg.pid, msg.payload)
        self.send_raw(nl.encode(msg, short_len=False))
        return msg.seq

    def send_raw(self, data: bytes) -> None:
        """Send one datagram exactly as given (tests of malformed input use this)."""
        try:
            self._backend.send(data)
        except OSError as exc:
            raise TransportError(f"sending to {self.endpoint} failed: {exc}") from exc

    # --- receiving ----------------------------------------------------------------------

    def recv_raw(self, timeout: float | None) -> tuple[int, bytes] | TransportEvent | None:
        """The next datagram as (sender port id, bytes), unfiltered; None at the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ready = self._backend.buffered() or select.select([self._backend.sock], [], [], left)[0]
            except InterruptedError:
                self.counters["eintr"] += 1
                return TransportEvent("eintr", _errno.EINTR, "interrupted while waiting")
            if not ready:
                return None
            try:
                got = self._backend.recv()
            except (BlockingIOError, InterruptedError) as exc:
                if isinstance(exc, InterruptedError):
                    self.counters["eintr"] += 1
                    return TransportEvent("eintr", _errno.EINTR, "interrupted while receiving")
                continue
            except OSError as exc:
                if exc.errno == _errno.ENOBUFS:
                    self.counters["enobufs"] += 1
                    return TransportEvent("enobufs", exc.errno, "the socket's receive queue overflowed")
                raise TransportError(f"receiving from {self.endpoint} failed: {exc}") from exc
            if got is None:
                continue
            if isinstance(got, TransportEvent):
                if got.kind in self.counters:
                    self.counters[got.kind] += 1
                return got
            sender, data, truncated = got
            if truncated:
                self.counters["bad_datagram"] += 1
                self.last_bad = f"datagram of {len(data)} bytes was truncated or malformed"
                continue
            return sender, data

    def recv(self, timeout: float | None) -> list[nl.NetlinkMessage] | TransportEvent:
        """The messages of the next datagram from the kernel; [] when ``timeout`` passes.

        Datagrams from other senders and datagrams that do not decode are counted and
        skipped (they never end the wait early).
        """
        if self._pending:
            out = list(self._pending)
            self._pending.clear()
            return out
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            got = self.recv_raw(left)
            if got is None:
                return []
            if isinstance(got, TransportEvent):
                return got
            sender, data = got
            if sender != 0:
                self.counters["dropped_sender"] += 1
                continue
            try:
                return nl.decode_datagram(data)
            except nl.NetlinkError as exc:
                self.counters["bad_datagram"] += 1
                self.last_bad = str(exc)

    def request(
        self,
        mtype: int,
        payload: bytes = b"",
        *,
        dump: bool | None = None,
        reply: bool | None = None,
        timeout: float = 2.0,
    ) -> list[nl.NetlinkMessage]:
        """Send a request with NLM_F_ACK and return the kernel's answer messages.

        The kernel sends the ACK *before* the answer (AUDIT_GET), a dump (AUDIT_LIST_RULES)
        as NLM_F_MULTI messages ending in NLMSG_DONE (not returned), and a refusal as
        NLMSG_ERROR with a negative errno, raised here as :class:`KernelError`. Messages that
        are not part of this exchange (records, AUDIT_REPLACE) are kept for the next recv().
        ``last_ack`` keeps the ACK: a lost-counter reset answers with a positive count there.
        """
        expect_reply = (mtype in REPLY_TYPES) if reply is None else reply
        is_dump = (mtype == AUDIT_LIST_RULES) if dump is None else dump
        seq = self.send(nl.NetlinkMessage(mtype, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 0, 0, payload))
        acked, done = False, False
        replies: list[nl.NetlinkMessage] = []
        deadline = time.monotonic() + timeout
        self.last_ack = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = "ACK" if not acked else ("NLMSG_DONE" if is_dump else "reply")
                raise TransportError(
                    f"no {missing} from {self.endpoint} for AUDIT_{record_type_name(mtype)} (seq {seq}) within {timeout} s"
                )
            got = self.recv_raw(left)
            if got is None or isinstance(got, TransportEvent):
                continue  # a lost ACK/reply shows up as the timeout above
            sender, data = got
            if sender != 0:
                self.counters["dropped_sender"] += 1
                continue
            try:
                msgs = nl.decode_datagram(data)
            except nl.NetlinkError as exc:
                self.counters["bad_datagram"] += 1
                self.last_bad = str(exc)
                continue
            for m in msgs:
                if m.seq != seq or m.type not in (nl.NLMSG_ERROR, nl.NLMSG_DONE, mtype):
                    self._pending.append(m)
                elif m.type == nl.NLMSG_ERROR:
                    err = nl.parse_error(m.payload)
                    if err.error < 0:
                        raise KernelError(-err.error, mtype)
                    acked, self.last_ack = True, err
                elif m.type == nl.NLMSG_DONE:
                    done = True
                else:
                    replies.append(m)
            if acked and (not expect_reply or (done if is_dump else bool(replies))):
                return replies

    # --- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        self._backend.sock.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def over_socket(cls, sock: socket.socket, *, multicast: bool = False, rcvbuf: int = DEFAULT_RCVBUF,
                    timeout: float = 2.0, endpoint: str = "in-process") -> Transport:
        """A transport over an already connected endpoint socket (an in-process pair)."""
        return cls(_EndpointBackend(sock, multicast=multicast, rcvbuf=rcvbuf, timeout=timeout), endpoint)


def open_transport(
    endpoint: str, *, multicast: bool = False, rcvbuf: int = DEFAULT_RCVBUF, timeout: float = 2.0
) -> Transport:
    """``kernel`` or ``unix:PATH``; ``multicast`` opens a read-only AUDIT_NLGRP_READLOG reader."""
    if endpoint == "kernel":
        return Transport(_NetlinkBackend(multicast=multicast, rcvbuf=rcvbuf), endpoint)
    if endpoint.startswith("unix:"):
        path = endpoint[5:]
        if not path:
            raise ValueError(f"endpoint {endpoint!r}: the unix socket path is empty")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot connect to the simulator endpoint {endpoint}: {exc}") from exc
        try:
            return Transport.over_socket(sock, multicast=multicast, rcvbuf=rcvbuf, timeout=timeout, endpoint=endpoint)
        except BaseException:
            sock.close()
            raise
    raise ValueError(f"endpoint {endpoint!r}: expected 'kernel' or 'unix:PATH'")


def kernel_unreachable_reason(timeout: float = 2.0) -> str | None:
    """None when the kernel's audit answers AUDIT_GET here, else why not (for skips and exit 2)."""
    try:
        with open_transport("kernel", rcvbuf=0) as t:
            t.request(AUDIT_GET, timeout=timeout)
    except TransportError as exc:
        return f"kernel audit is not reachable: {exc}"
    except KernelError as exc:
        hint = {
            _errno.EPERM: "audit control needs CAP_AUDIT_CONTROL in the initial pid namespace (a container needs --pid=host)",
            _errno.ECONNREFUSED: "audit control is refused outside the initial user namespace",
        }.get(exc.errno, "")
        return f"kernel audit is not reachable: AUDIT_GET refused with {exc.name}" + (f" ({hint})" if hint else "")
    return None


__all__ = [
    "CONTROL_PORT",
    "Control",
    "KernelError",
    "Transport",
    "TransportError",
    "TransportEvent",
    "kernel_unreachable_reason",
    "live_lock",
    "live_lock_held",
    "open_transport",
]
