"""The receive path that cannot fall behind: one process (or thread) that only drains the socket.

Why: the kernel queues records for the audit daemon in a backlog of ``backlog_limit``
records; its kauditd thread moves them into the daemon's socket and *blocks* when that
socket's receive buffer is full. With ``backlog_wait_time`` 0 a full backlog means records
dropped (the kernel's ``lost`` counter). So a collector loses records as soon as its socket
is not emptied as fast as the kernel fills it, even for a moment, even though on average it
keeps up. A Python loop that parses, assembles and writes rows cannot promise that under a
syscall storm (issue 6: auditd itself loses 74,000-263,000 records in 10 s of connect storm,
while a bare Python loop that only receives loses none). The fix is to separate the two:

* a **drainer** does nothing but ``recv`` into a large preallocated buffer and hand the
  datagrams on in batches; nothing it does depends on how fast the rest is;
* the socket gets a large receive buffer (``SO_RCVBUFFORCE`` as root, 64 MiB by default);
* the **consumer** (reader, parser, publisher, tables) takes batches when it can. When it
  is slower than the storm, the batches wait in the drainer's memory, not in the kernel,
  and are processed after the storm; up to ``max_pending`` bytes (1 GiB by default), after
  which the drainer stops reading (the kernel applies its backlog policy, and
  ``stalls`` says so).

Two drainers:

* ``mode="process"`` (``kaudit collect``'s default): a forked child process reads the
  inherited socket and writes length-prefixed frames into a pipe. It runs on its own core
  and never waits for the interpreter lock, which a thread must: a CPU-bound parser thread
  holds the GIL for up to the switch interval (5 ms) each time the receiving thread comes
  back from ``recv``, so a receiving *thread* manages about 200 receives a second while the
  parser is busy. The child dies with its parent (``PR_SET_PDEATHSIG``), ignores the stop
  signals (SIGINT, SIGTERM, SIGHUP: a signal to the whole process group, or a ``pkill``
  that matches our command line, must not take the drainer away in the middle of the
  parent's restore; the parent tells it when to stop) and never touches the kernel's
  configuration; the registration stays with the parent (the kernel sends to the socket,
  i.e. the netlink port id, whichever process reads it).
* ``mode="thread"``: the same loop in a thread; for in-process use, tests, and platforms
  without ``fork``.

**Control replies overtake records.** The drainer hands over datagrams that are not
records (ACKs and errors, AUDIT_GET and AUDIT_LIST_RULES replies: netlink types below
1024 other than USER and LOGIN) through a second pipe, which the consumer reads first.
Why: when the consumer is behind by hundreds of megabytes of records, an ACK queued behind
them would not be seen for many seconds, and every request made meanwhile would time out:
deleting our rules and restoring the kernel's state on exit among them. Records keep their
order among themselves; a status reply may arrive before records that preceded it (it only
carries counters).

The consumer side is :class:`Receiver` (``start()``, ``get(timeout)``,
``get_control(timeout)``, ``batches()``, ``stop()``, ``counters``), and
:class:`ReceiverTransport`, a drop-in for ``collector.transport.Transport`` whose ``recv``
is served by a Receiver (started on the first ``recv``, i.e. after configuration) and whose
``request`` keeps working while the drainer runs (the ACK and the reply come through the
control pipe). If the drainer ends without being asked (killed), reading falls back to the
socket itself, which the parent still holds. ``kaudit collect`` uses it through its
``transport_factory``: ``receiver_transport_factory(mode=...)``.

Frames in the pipes: ``<u32 length><u32 sender or kind><datagram>`` (little-endian), sender
0 for the kernel; kind ``0xFFFFFFFE`` is an ENOBUFS marker (the socket overflowed: the
reader re-polls the kernel's counters) and ``0xFFFFFFFD`` carries the drainer's final
counters (always the last frame of the data pipe).
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import gc
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from collector.fastlane.build import NativeModule
from collector.protocol import netlink as nl
from collector.protocol.records import AUDIT_LIST_RULES, AUDIT_LOGIN, AUDIT_USER
from collector.transport import (
    CONTROL_PORT,
    OP_SOCKERR,
    REPLY_TYPES,
    Control,
    KernelError,
    Transport,
    TransportError,
    TransportEvent,
    open_transport,
    size_rcvbuf,
)

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_RCVBUF",
    "RECEIVER_MODES",
    "Receiver",
    "ReceiverCounters",
    "ReceiverTransport",
    "receiver_transport_factory",
]

RECEIVER_MODES = ("process", "thread")
DEFAULT_RCVBUF = 64 << 20  # bytes asked with SO_RCVBUFFORCE (the kernel doubles it)
DEFAULT_MAX_PENDING = 1 << 30  # bytes the drainer holds for a slow consumer before it stops reading
DEFAULT_PRIORITY_BOOST = 10  # the drainer's nice is lowered by this much (needs root; auditd uses 4)
BATCH_BYTES = 1 << 20  # the drainer hands over at least this often (or when the socket is empty)
MAX_DATAGRAM = 1 << 18  # room kept free for one datagram (records are under 9 KiB)
PIPE_SIZE = 16 << 20  # pipe capacity asked for (F_SETPIPE_SZ); the kernel may give less
COALESCE_MIN = 64  # fewer datagrams than this in one pass: wait up to COALESCE_S for more
COALESCE_S = 0.002  # (2 ms of latency at low rates buys one consumer wake-up per batch)
MAX_BATCH = 8192  # datagrams per get(): the consumer's loop comes back to its stop flag often
START_DRAIN_MAX = 4096  # datagrams the transport may hold in user space when the drainer starts

_FRAME = struct.Struct("<II")
_NLHDR = struct.Struct("=IHHII")
_KIND_ENOBUFS = 0xFFFFFFFE
_KIND_STATS = 0xFFFFFFFD
_F_SETPIPE_SZ = 1031
_PR_SET_PDEATHSIG = 1
# where the high byte of nlmsg_type (host order) sits in a frame: 8 bytes of frame header,
# then nlmsg_len (4), then the u16 type
_TYPE_HI = 8 + 4 + (1 if sys.byteorder == "little" else 0)
_TYPE_LO = 8 + 4 + (0 if sys.byteorder == "little" else 1)
_LOW_RECORDS = frozenset({AUDIT_USER, AUDIT_LOGIN})  # records numbered below 1024
_LOW_RECORDS_T = tuple(sorted(_LOW_RECORDS))  # the same, for the native drain


@dataclass(slots=True)
class ReceiverCounters:
    """What the drainer did (its own counters arrive when it stops) and what the consumer got."""

    datagrams: int = 0  # handed to the consumer (records and control replies)
    bytes: int = 0
    batches: int = 0
    control: int = 0  # of the datagrams: control replies (ACKs, status, rule lists), sent ahead
    enobufs: int = 0  # the socket overflowed anyway (counted by the drainer)
    dropped_sender: int = 0  # datagrams not from the kernel (port id != 0)
    truncated: int = 0  # datagrams cut by the buffer (never for audit records)
    bad_datagram: int = 0  # frames that did not decode as netlink (consumer side)
    max_pending_bytes: int = 0  # most bytes waiting in the drainer for the consumer
    stalls: int = 0  # times the drainer stopped reading because max_pending was reached
    recv_calls: int = 0
    rcvbuf: int = 0  # SO_RCVBUF the kernel granted
    pipe_size: int = 0
    drainer_cpu_s: float = 0.0  # CPU time of the drainer (process mode)
    discarded: int = 0  # datagrams handed over but never taken by the consumer (at close)
    died: int = 0  # 1 when the drainer ended without being asked (killed): reading fell back to the socket

    def as_dict(self) -> dict:
        return asdict(self)


_prctl: Callable[..., int] | None = None


def _native_drain() -> Callable[[int], Any] | None:
    """The native drain (collector/fastlane/_drain.c): its ``Drain(room)`` class, or None: the
    Python loop drains.

    Called in the parent before the drainer forks, so that the child finds it loaded (a child
    must not build or dlopen after fork). Never raises unless KAUDIT_FASTLANE=1 demands it.
    """
    m = _DRAIN.get()
    return None if m is None else m.Drain


# a module of its own: the drainer needs nothing of the fast lane's (nor its build to succeed)
_DRAIN = NativeModule("_drain")


def _resolve_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent: the child must not import or dlopen after fork
    (another thread of the parent may have held the loader's lock at that moment)."""
    global _prctl
    if _prctl is None:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = None
    return _prctl


class _Drainer:
    """What both modes run: socket -> frames in a preallocated bytearray -> chunks.

    ``drain()`` receives until the socket is empty or a budget of bytes is framed; ``take()``
    returns the record frames as one bytes chunk and reuses the buffer; control replies are
    framed into ``ctl`` (a list of frames) instead, to be handed over ahead of the records.
    Only kernel datagrams (sender 0) are framed; an ENOBUFS becomes a marker frame; other
    endpoint control packets (an injected EINTR) lose nothing and are skipped.

    For the kernel socket (no prefix) the loop runs in C when the native drain is built
    (``native``; the Python loop below is the reference and the fallback): the interpreter's
    overhead per datagram was most of the drainer's CPU in a storm (issue 6).
    """

    def __init__(self, sock: socket.socket, *, endpoint_prefix: bool) -> None:
        self.sock = sock
        self.prefix = endpoint_prefix  # simulator endpoint: 4-byte sender before each datagram
        native = None if endpoint_prefix else _native_drain()
        # the C loop's bound drain(fd, buf, off, limit, low_records, ctl), or None
        self.native = None if native is None else native(MAX_DATAGRAM).drain
        self.buf = bytearray(BATCH_BYTES + MAX_DATAGRAM + _FRAME.size)
        self.view = memoryview(self.buf)
        self.off = 0
        self.ctl: list[bytes] = []
        self.c = Counter()

    def drain(self, budget: int = BATCH_BYTES) -> tuple[bool, bool]:
        """Receive until the socket is empty or ``budget`` bytes are framed.

        Returns (socket_empty, closed).
        """
        if self.native is not None:
            return self._drain_native(budget)
        view, buf = self.view, self.buf
        pack = _FRAME.pack_into
        # recvfrom_into: no ancillary data and no list of buffers to build, about 0.6 us a
        # datagram cheaper than recvmsg_into; a datagram that fills the whole room counts as
        # truncated (audit datagrams are under 9 KiB, the room is 256 KiB)
        recv = self.sock.recvfrom_into
        room = MAX_DATAGRAM
        off = self.off
        limit = min(len(buf) - MAX_DATAGRAM - _FRAME.size, off + budget)
        c = self.c
        ctl = self.ctl
        prefix = self.prefix
        hi, lo = _TYPE_HI, _TYPE_LO
        n_calls = n_dgrams = n_bytes = 0
        empty = closed = False
        try:
            while off < limit:
                try:
                    n, addr = recv(view[off + 8 : off + 8 + room], room)
                except BlockingIOError:
                    empty = True
                    break
                except InterruptedError:
                    continue
                except OSError as exc:
                    if exc.errno == errno_mod.ENOBUFS:
                        c["enobufs"] += 1
                        pack(buf, off, 0, _KIND_ENOBUFS)
                        off += 8
                        continue
                    raise
                n_calls += 1
                if n >= room:
                    c["truncated"] += 1
                    continue
                if prefix:
                    if n == 0:
                        closed = True
                        break
                    if n < 4:
                        c["truncated"] += 1
                        continue
                    sender = int.from_bytes(view[off + 8 : off + 12], "little")
                    if sender == CONTROL_PORT:
                        # endpoint control: only socket errors matter once reading
                        try:
                            sockctl = Control.decode(bytes(view[off + 12 : off + 8 + n]))
                        except ValueError:
                            c["truncated"] += 1
                            continue
                        if sockctl.op == OP_SOCKERR and abs(sockctl.error) == errno_mod.ENOBUFS:
                            c["enobufs"] += 1
                            pack(buf, off, 0, _KIND_ENOBUFS)
                            off += 8
                        continue
                    # move the datagram over the 4-byte prefix (a bytearray slice is a copy,
                    # so the overlapping move is safe): frame = len, sender, datagram
                    buf[off + 8 : off + 4 + n] = buf[off + 12 : off + 8 + n]
                    n -= 4
                else:
                    sender = addr[0] if addr else 0
                if sender != 0:
                    c["dropped_sender"] += 1
                    continue
                pack(buf, off, n, 0)
                if n >= 16 and buf[off + hi] < 4 and (buf[off + hi] << 8 | buf[off + lo]) not in _LOW_RECORDS:
                    # a control reply (type < 1024): handed over ahead of the records
                    ctl.append(bytes(view[off : off + 8 + n]))
                    c["control"] += 1
                    continue
                off += 8 + n
                n_dgrams += 1
                n_bytes += n
        finally:
            self.off = off
            c["recv_calls"] += n_calls
            c["datagrams"] += n_dgrams
            c["bytes"] += n_bytes
        return empty, closed

    def _drain_native(self, budget: int) -> tuple[bool, bool]:
        """``drain()`` for the kernel socket, in C: the same frames, control frames and counters."""
        buf = self.buf
        limit = min(len(buf) - MAX_DATAGRAM - _FRAME.size, self.off + budget)
        off, empty, n_calls, n_dgrams, n_bytes, enobufs, truncated, dropped, control, error = self.native(
            self.sock.fileno(), buf, self.off, limit, _LOW_RECORDS_T, self.ctl
        )
        self.off = off
        c = self.c
        # keys created as the Python loop creates them (the counters are sent as a dict)
        for key, n in (("enobufs", enobufs), ("truncated", truncated), ("dropped_sender", dropped),
                       ("control", control)):  # fmt: skip
            if n:
                c[key] += n
        c["recv_calls"] += n_calls
        c["datagrams"] += n_dgrams
        c["bytes"] += n_bytes
        if error is not None:
            raise error
        return empty, False

    def take(self) -> bytes:
        """The record frames received so far, as one chunk (the buffer is reused)."""
        chunk = bytes(self.view[: self.off])
        self.off = 0
        return chunk

    def take_control(self) -> bytes:
        chunk = b"".join(self.ctl)
        self.ctl.clear()
        return chunk


class _Outlet:
    """One pipe the drainer process writes without ever blocking: chunks wait in a deque."""

    __slots__ = ("fd", "pending", "bytes")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending: deque[memoryview] = deque()
        self.bytes = 0

    def put(self, chunk: bytes) -> None:
        self.pending.append(memoryview(chunk))
        self.bytes += len(chunk)

    def flush(self) -> None:
        pending = self.pending
        while pending:
            head = pending[0]
            try:
                n = os.write(self.fd, head)
            except BlockingIOError:
                return
            self.bytes -= n
            if n == len(head):
                pending.popleft()
            else:
                pending[0] = head[n:]

    def finish(self) -> None:
        """Everything, blocking (the parent reads until EOF), then close."""
        os.set_blocking(self.fd, True)
        for chunk in self.pending:
            os.write(self.fd, chunk)
        self.pending.clear()
        os.close(self.fd)


def _child_main(
    sock: socket.socket,
    out_fd: int,
    ctl_out_fd: int,
    stop_fd: int,
    *,
    endpoint_prefix: bool,
    max_pending: int,
    boost: int,
    parent: int,
    prctl: Callable[..., int] | None,
) -> int:
    """The drainer process: read the socket, write frames to the pipes without ever blocking on them."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)  # the parent decides when we stop (module docstring)
    if prctl is not None:
        with contextlib.suppress(Exception):
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        return 0  # the parent died before we asked to die with it
    gc.disable()  # nothing here makes cycles; and no finalizer of the parent's garbage runs here
    if boost:
        # like auditd's priority_boost: the drainer needs little CPU but needs it *now*
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, max(-20, os.getpriority(os.PRIO_PROCESS, 0) - boost))
    sock.setblocking(False)
    os.set_blocking(out_fd, False)
    os.set_blocking(ctl_out_fd, False)
    d = _Drainer(sock, endpoint_prefix=endpoint_prefix)
    data, ctl = _Outlet(out_fd), _Outlet(ctl_out_fd)
    max_seen = stalls = 0
    stalled = stopping = closed = False
    sfd = sock.fileno()
    poll = select.poll()
    masks: dict[int, int] = {}

    def want(fd: int, mask: int) -> None:
        if masks.get(fd, 0) == mask:
            return
        if mask:
            poll.register(fd, mask)
            masks[fd] = mask
        else:
            poll.unregister(fd)
            del masks[fd]

    def hand_over() -> None:
        nonlocal max_seen
        if d.ctl:
            ctl.put(d.take_control())
            ctl.flush()
        if d.off:
            data.put(d.take())
            if data.bytes > max_seen:
                max_seen = data.bytes
        data.flush()

    want(stop_fd, select.POLLIN)
    while True:
        reading = data.bytes < max_pending
        if reading and stalled:
            stalled = False
        elif not reading and not stalled:
            stalled = True
            stalls += 1
        want(sfd, select.POLLIN if reading else 0)
        want(out_fd, select.POLLOUT if data.pending else 0)
        want(ctl_out_fd, select.POLLOUT if ctl.pending else 0)
        try:
            events = poll.poll()
        except InterruptedError:
            events = []
        for fd, _ev in events:
            if fd == stop_fd:
                stopping = True  # a byte from the parent, or its end of the pipe closed
        if reading or stopping:
            # read what is there (also on stop: the last records the kernel queued)
            first = d.c["datagrams"]
            deadline = 0.0
            while True:
                empty, closed = d.drain()
                if closed or data.bytes >= max_pending:
                    break
                if not empty:
                    hand_over()  # a full buffer: hand it over and read on
                    continue
                if stopping or d.ctl or d.c["datagrams"] - first >= COALESCE_MIN:
                    break
                # a trickle (an exec's 8 records, or a storm we keep up with): let more
                # arrive for a moment, so that the consumer wakes once per few milliseconds
                # rather than per record. Sleep, then read once more: waiting for the socket
                # to be readable woke us for every datagram, and each wake-up (select, a
                # drain() pass ending in EAGAIN) cost several times the datagram's recv
                # (most of the drainer's CPU in a storm, issue 6)
                now = time.monotonic()
                if not deadline:
                    deadline = now + COALESCE_S
                elif now >= deadline:
                    break
                time.sleep(deadline - now)
        hand_over()
        if stopping or closed:
            break
    # final counters (the data pipe's last frame), then everything, blocking
    usage = os.times()
    stats = dict(d.c)
    stats.update(max_pending_bytes=max_seen, stalls=stalls, drainer_cpu_s=usage.user + usage.system,
                 closed=int(closed))
    blob = json.dumps(stats).encode()
    data.put(_FRAME.pack(len(blob), _KIND_STATS) + blob)
    ctl.finish()
    data.finish()
    return 0


def _decode_frames(
    buf: bytearray, counters: ReceiverCounters, limit: int, on_stats: Callable[[bytes], None]
) -> tuple[list[nl.NetlinkMessage], TransportEvent | None]:
    """Decode up to ``limit`` complete frames at the start of ``buf`` and remove them from it.

    An ENOBUFS marker ends the batch: it comes back as the event, after the records before it.
    """
    total = len(buf)
    off = 0
    out: list[nl.NetlinkMessage] = []
    unpack = _FRAME.unpack_from
    unpack_hdr = _NLHDR.unpack_from
    decode = nl.decode_datagram
    Message = nl.NetlinkMessage
    event: TransportEvent | None = None
    n_dgrams = n_bytes = 0
    mv = memoryview(buf)
    try:
        while total - off >= 8 and n_dgrams < limit:
            n, kind = unpack(buf, off)
            if kind == _KIND_ENOBUFS:
                off += 8
                counters.enobufs += 1
                event = TransportEvent("enobufs", errno_mod.ENOBUFS, "the socket's receive queue overflowed")
                break
            if total - off - 8 < n:
                break
            start = off + 8
            off = start + n
            if kind == _KIND_STATS:
                on_stats(bytes(mv[start:off]))
                continue
            n_dgrams += 1
            n_bytes += n
            if n > 16:
                # the kernel's unicast record: one message whose nlmsg_len is the payload
                # length alone. decode_datagram gives exactly this for it (its short form);
                # taken here without building the datagram first: one copy, no call.
                length, mtype, flags, seq, pid = unpack_hdr(buf, start)
                if mtype >= 1100 and length == n - 16:
                    out.append(Message(mtype, flags, seq, pid, bytes(mv[start + 16 : off]), True))
                    continue
            try:
                out.extend(decode(bytes(mv[start:off])))
            except nl.NetlinkError:
                counters.bad_datagram += 1
    finally:
        mv.release()
        del buf[:off]
        counters.datagrams += n_dgrams
        counters.bytes += n_bytes
    return out, event


def _count_frames(buf: bytearray) -> int:
    """Datagram frames in ``buf`` (markers and the counters frame not counted)."""
    off, total, n_frames = 0, len(buf), 0
    while total - off >= 8:
        n, kind = _FRAME.unpack_from(buf, off)
        if kind == _KIND_ENOBUFS:
            off += 8
            continue
        if total - off - 8 < n:
            break
        off += 8 + n
        n_frames += kind != _KIND_STATS
    return n_frames


class Receiver:
    """Drains one transport's socket in a separate process (or thread); batches come out of ``get``.

    ``get(timeout)`` returns the next batch as a list of ``NetlinkMessage`` (every message of
    every datagram, in arrival order, control replies first), a ``TransportEvent``
    (``enobufs``), or ``None`` when ``timeout`` passes (or, once the drainer has ended, when
    everything it handed over was taken). ``get_control(timeout)`` takes control replies only
    (a request waiting for its ACK does not wait behind the records). ``stop()`` makes the
    drainer read what the socket holds and hand everything over; what it handed over can
    still be taken with ``get`` afterwards. The transport stays usable for sending while the
    drainer runs (and for everything after ``stop``); only its receiving belongs to the drainer.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        mode: str = "auto",
        rcvbuf: int = DEFAULT_RCVBUF,
        max_pending: int = DEFAULT_MAX_PENDING,
        priority_boost: int = DEFAULT_PRIORITY_BOOST,
    ) -> None:
        if mode == "auto":
            mode = "process" if hasattr(os, "fork") else "thread"
        if mode not in RECEIVER_MODES:
            raise ValueError(f"receiver mode {mode!r}: expected 'process', 'thread' or 'auto'")
        if max_pending < BATCH_BYTES:
            raise ValueError(f"max_pending must be at least {BATCH_BYTES} bytes, got {max_pending}")
        self.transport = transport
        self.mode = mode
        self.rcvbuf_wanted = rcvbuf
        self.max_pending = max_pending
        self.priority_boost = priority_boost
        self.counters = ReceiverCounters()
        self._sock: socket.socket | None = None
        self._pid: int | None = None
        self._rfd: int | None = None  # data pipe (records), process mode
        self._crfd: int | None = None  # control pipe (replies), process mode
        self._ctl_w: int | None = None  # "stop" pipe to the drainer
        self._inbuf = bytearray()
        self._cinbuf = bytearray()
        self._eof = False  # the data pipe ended (its last frame was the counters, if it ended well)
        self._ceof = False
        self._started = False
        self._stopped = False
        self._stats_seen = False
        self._closed_seen = False  # the drainer saw the endpoint close the connection
        self._ready: deque = deque()  # thread mode: chunks (bytes) from the drainer thread
        self._ready_ctl: deque = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._thread_stop = threading.Event()
        self._thread_error: BaseException | None = None

    # ---- lifetime ----------------------------------------------------------------------

    def start(self) -> Receiver:
        if self._started:
            raise RuntimeError("receiver already started")
        # our own handle on the same socket (a dup: closing it leaves the transport's open);
        # family, type and protocol are read from the descriptor
        self._sock = socket.socket(fileno=os.dup(self.transport.fileno()))
        self.counters.rcvbuf = size_rcvbuf(self._sock, self.rcvbuf_wanted)
        prefix = self._sock.family == socket.AF_UNIX
        self._started = True
        if self.mode == "process":
            self._start_process(prefix)
        else:
            self._start_thread(prefix)
        return self

    def _start_process(self, prefix: bool) -> None:
        import fcntl

        rfd, wfd = os.pipe()
        crfd, cwfd = os.pipe()
        stop_r, stop_w = os.pipe()
        for size in (PIPE_SIZE, 1 << 20):
            try:
                self.counters.pipe_size = fcntl.fcntl(wfd, _F_SETPIPE_SZ, size)
                break
            except OSError:
                self.counters.pipe_size = 0
        prctl = _resolve_prctl()
        if not prefix:
            _native_drain()  # built and loaded here: the child must not dlopen
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the drainer
            code = 1
            try:
                for fd in (rfd, crfd, stop_w):
                    os.close(fd)
                code = _child_main(
                    self._sock, wfd, cwfd, stop_r, endpoint_prefix=prefix, max_pending=self.max_pending,
                    boost=self.priority_boost, parent=parent, prctl=prctl,
                )
            except BaseException as exc:  # noqa: BLE001 - report and leave, never return
                with contextlib.suppress(OSError):
                    os.write(2, f"kaudit receiver: drainer failed: {exc!r}\n".encode())
            finally:
                os._exit(code)
        for fd in (wfd, cwfd, stop_r):
            os.close(fd)
        os.set_blocking(rfd, False)
        os.set_blocking(crfd, False)
        self._pid, self._rfd, self._crfd, self._ctl_w = pid, rfd, crfd, stop_w

    def _start_thread(self, prefix: bool) -> None:
        self._sock.setblocking(False)
        d = _Drainer(self._sock, endpoint_prefix=prefix)

        def run() -> None:
            stalled = closed = False
            try:
                while True:
                    stopping = self._thread_stop.is_set()
                    if not stopping:
                        with self._cond:
                            pending = sum(len(c) for c in self._ready)
                        if pending >= self.max_pending:
                            if not stalled:
                                stalled = True
                                d.c["stalls"] += 1
                            time.sleep(0.01)
                            continue
                        stalled = False
                        select.select([self._sock], [], [], 0.05)
                    empty, closed = d.drain()
                    if d.off or d.ctl:
                        with self._cond:
                            if d.ctl:
                                self._ready_ctl.append(d.take_control())
                            if d.off:
                                self._ready.append(d.take())
                            self._cond.notify_all()
                    if closed or (stopping and empty):
                        break
            except BaseException as exc:  # noqa: BLE001 - surfaced by get()
                self._thread_error = exc
            finally:
                stats = {k: v for k, v in d.c.items() if k in ("dropped_sender", "truncated", "recv_calls", "stalls")}
                stats["closed"] = int(closed)
                blob = json.dumps(stats).encode()
                with self._cond:
                    self._ready.append(_FRAME.pack(len(blob), _KIND_STATS) + blob)
                    self._ready.append(b"")  # EOF
                    self._cond.notify_all()

        self._thread = threading.Thread(target=run, name="kaudit-receiver", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Tell the drainer to read what is left and finish; wait for it. Idempotent."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        if self.mode == "process":
            if self._ctl_w is not None:
                with contextlib.suppress(OSError):
                    os.write(self._ctl_w, b"x")
            # the drainer writes its last frames blocking: keep reading while waiting for it
            deadline = time.monotonic() + timeout
            while not (self._eof and self._ceof) and time.monotonic() < deadline:
                self._fill(0.1)
            if not (self._eof and self._ceof):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            if self._ctl_w is not None:
                os.close(self._ctl_w)
                self._ctl_w = None
        else:
            self._thread_stop.set()
            self._thread.join(timeout)
            while not self._eof and (self._ready or self._ready_ctl):
                self._fill(0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Stop (if running), count what was never taken, and free the pipes."""
        self.stop()
        self.counters.discarded += _count_frames(self._inbuf) + _count_frames(self._cinbuf)
        self._inbuf.clear()
        self._cinbuf.clear()
        for name in ("_rfd", "_crfd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> Receiver:
        return self if self._started else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Started, not asked to stop, and the drainer has not ended by itself."""
        return self._started and not self._stopped and not self._eof

    @property
    def finished(self) -> bool:
        """The drainer has ended and everything it handed over was taken: the socket is the
        transport's again."""
        return self._started and self._eof and self._ceof and not self._inbuf and not self._cinbuf

    @property
    def died(self) -> bool:
        """The drainer ended without being asked to and without the endpoint closing (killed)."""
        return self._eof and not self._stopped and not self._closed_seen

    @property
    def drainer_pid(self) -> int | None:
        """The drainer process (process mode), for CPU accounting."""
        return self._pid

    # ---- consumer side -----------------------------------------------------------------

    def _read_fd(self, fd: int, into: bytearray) -> tuple[bool, bool]:
        """Read what the pipe holds into ``into``: (got any, reached EOF)."""
        got = False
        while True:
            try:
                data = os.read(fd, 8 << 20)
            except BlockingIOError:
                return got, False
            if not data:
                return got, True
            into += data
            got = True
            if len(data) < (8 << 20):
                return got, False

    def _fill(self, timeout: float | None, *, control_only: bool = False) -> bool:
        """Move bytes from the drainer into the in-buffers; True if any arrived."""
        if self.mode == "process":
            fds = []
            if not self._ceof and self._crfd is not None:
                fds.append(self._crfd)
            if not control_only and not self._eof and self._rfd is not None:
                fds.append(self._rfd)
            if not fds:
                return False
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                return False
            got = False
            if self._crfd in ready:
                g, self._ceof = self._read_fd(self._crfd, self._cinbuf)
                got |= g
            if self._rfd in ready:
                g, eof = self._read_fd(self._rfd, self._inbuf)
                got |= g
                if eof:
                    self._eof = True
                    self._take_stats()
            return got
        with self._cond:
            if not self._ready_ctl and (control_only or not self._ready) and not self._eof:
                self._cond.wait(timeout)
            got = False
            while self._ready_ctl:
                self._cinbuf += self._ready_ctl.popleft()
                got = True
            while not control_only and self._ready:
                chunk = self._ready.popleft()
                if not chunk:
                    self._eof = self._ceof = True
                    self._take_stats()
                    break
                self._inbuf += chunk
                got = True
        if self._thread_error is not None:
            err, self._thread_error = self._thread_error, None
            raise TransportError(f"the receiver thread failed: {err}") from err
        return got

    def _frames(self) -> list[nl.NetlinkMessage] | TransportEvent | None:
        """Every complete control frame, else up to MAX_BATCH record frames (or an event)."""
        c = self.counters
        if self._cinbuf:
            out, _ = _decode_frames(self._cinbuf, c, MAX_BATCH, self._merge_stats)
            if out:
                c.control += len(out)
                c.batches += 1
                return out
        if not self._inbuf:
            return None
        out, event = _decode_frames(self._inbuf, c, MAX_BATCH, self._merge_stats)
        if out:
            c.batches += 1
            if event is not None:
                # hand the records first; the marker is re-queued in front of what follows
                self._inbuf[0:0] = _FRAME.pack(0, _KIND_ENOBUFS)
                c.enobufs -= 1
            return out
        return event

    def _take_stats(self) -> None:
        """At EOF: find the drainer's counters frame (the last one) and merge it."""
        buf = self._inbuf
        off, total = 0, len(buf)
        while total - off >= 8:
            n, kind = _FRAME.unpack_from(buf, off)
            if kind == _KIND_ENOBUFS:
                off += 8
                continue
            if kind == _KIND_STATS and total - off - 8 >= n:
                self._merge_stats(bytes(buf[off + 8 : off + 8 + n]))
                del buf[off : off + 8 + n]
                return
            off += 8 + n

    def _merge_stats(self, blob: bytes) -> None:
        try:
            stats = json.loads(blob)
        except ValueError:
            return
        self._stats_seen = True
        self._closed_seen = bool(stats.get("closed"))
        c = self.counters
        c.dropped_sender += int(stats.get("dropped_sender", 0))
        c.truncated += int(stats.get("truncated", 0))
        c.recv_calls += int(stats.get("recv_calls", 0))
        c.stalls += int(stats.get("stalls", 0))
        c.max_pending_bytes = max(c.max_pending_bytes, int(stats.get("max_pending_bytes", 0)))
        c.drainer_cpu_s += float(stats.get("drainer_cpu_s", 0.0))

    def get(self, timeout: float | None = None) -> list[nl.NetlinkMessage] | TransportEvent | None:
        """The next batch (control replies first, then records in arrival order), an event,
        or None after ``timeout`` s. Once the drainer has ended, None as soon as all is taken."""
        if not self._started:
            raise RuntimeError("receiver not started")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            got = self._frames()
            if got:
                return got
            if self._eof:
                if self._ceof:
                    return None
                # the drainer closes its control pipe before the data pipe (a killed one: both
                # at once), so what is left of it can be read without waiting
                self._fill(0)
                if not self._cinbuf:
                    self._ceof = True
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._fill(left)

    def get_control(self, timeout: float | None = None) -> list[nl.NetlinkMessage] | None:
        """The control replies handed over so far (waiting up to ``timeout`` s for one), never records."""
        if not self._started:
            raise RuntimeError("receiver not started")
        deadline = None if timeout is None else time.monotonic() + timeout
        c = self.counters
        while True:
            if self._cinbuf:
                out, _ = _decode_frames(self._cinbuf, c, MAX_BATCH, self._merge_stats)
                if out:
                    c.control += len(out)
                    return out
            if self._ceof:
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._fill(left, control_only=True)

    def batches(self, timeout: float | None = None) -> Iterator[list[nl.NetlinkMessage] | TransportEvent]:
        """Batches until the drainer has finished (after ``stop()``) or ``timeout`` s pass idle."""
        while True:
            got = self.get(timeout)
            if got is None:
                return
            yield got


class ReceiverTransport:
    """A ``Transport`` whose receiving is done by a :class:`Receiver`; everything else delegates.

    Until the first ``recv`` it *is* the wrapped transport (configuration requests go straight
    to the socket). The first ``recv`` starts the drainer; from then on ``recv`` returns whole
    batches (every message of every datagram received, up to MAX_BATCH datagrams) and
    ``request`` sends, then takes its ACK/reply from the drainer's control pipe, keeping other
    control messages for the next ``recv``. Once the drainer has ended (stopped, or killed:
    ``warn`` is told once) and everything it handed over was taken, the socket is read
    directly again. ``close`` stops the drainer and closes the transport.
    """

    def __init__(self, transport: Transport, *, mode: str = "auto", rcvbuf: int = DEFAULT_RCVBUF,
                 max_pending: int = DEFAULT_MAX_PENDING, priority_boost: int = DEFAULT_PRIORITY_BOOST,
                 warn: Callable[[str], None] | None = None) -> None:
        self._t = transport
        self._receiver = Receiver(
            transport, mode=mode, rcvbuf=rcvbuf, max_pending=max_pending, priority_boost=priority_boost
        )
        self._pending: deque[nl.NetlinkMessage] = deque()
        self._event: TransportEvent | None = None
        self._warn = warn or (lambda _msg: None)
        self._death_told = False
        self._no_start = False  # stop_receiver() came first: the drainer is never started

    @property
    def receiver(self) -> Receiver:
        return self._receiver

    @property
    def wrapped(self) -> Transport:
        return self._t

    def __getattr__(self, name: str):
        return getattr(self._t, name)

    def _ensure_started(self) -> None:
        r = self._receiver
        if r._started or self._no_start:  # noqa: SLF001 - same module
            return
        # what the transport already holds in user space (kept by request(), or early data);
        # bounded, so that a storm already running cannot keep us from starting the drainer
        for _ in range(START_DRAIN_MAX):
            got = self._t.recv(0)
            if isinstance(got, TransportEvent):
                self._event = got
                break
            if not got:
                break
            self._pending.extend(got)
        r.start()

    def _direct(self) -> bool:
        """True when the drainer has ended and left nothing: the socket is read directly."""
        r = self._receiver
        if not r._started:  # noqa: SLF001 - same module
            return True  # stopped before it ever started
        if not r.finished:
            return False
        if r.died and not self._death_told:
            self._death_told = True
            r.counters.died = 1
            self._warn("the receiver's drainer process ended unexpectedly; reading the audit socket directly")
        return True

    def recv(self, timeout: float | None) -> list[nl.NetlinkMessage] | TransportEvent:
        self._ensure_started()
        if self._pending:
            out = list(self._pending)
            self._pending.clear()
            return out
        if self._event is not None:
            ev, self._event = self._event, None
            return ev
        if self._direct():
            return self._t.recv(timeout)
        got = self._receiver.get(timeout)
        if got is None:
            return []  # the timeout, or the drainer just ended: the next call reads directly
        if isinstance(got, TransportEvent) and got.kind in self._t.counters:
            self._t.counters[got.kind] += 1
        return got

    def request(self, mtype: int, payload: bytes = b"", *, dump: bool | None = None,
                reply: bool | None = None, timeout: float = 2.0) -> list[nl.NetlinkMessage]:
        r = self._receiver
        if not r._started or r._ceof:  # noqa: SLF001 - same module
            # not reading yet, or the drainer has ended: the socket is ours
            return self._t.request(mtype, payload, dump=dump, reply=reply, timeout=timeout)
        expect_reply = (mtype in REPLY_TYPES) if reply is None else reply
        is_dump = (mtype == AUDIT_LIST_RULES) if dump is None else dump
        seq = self._t.send(nl.NetlinkMessage(mtype, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 0, 0, payload))
        acked = done = False
        replies: list[nl.NetlinkMessage] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportError(
                    f"no answer from {self._t.endpoint} for request type {mtype} (seq {seq}) within {timeout} s"
                )
            got = r.get_control(left)
            if got is None:
                if r._ceof:  # noqa: SLF001 - same module
                    raise TransportError("the receiver's drainer ended while a request was waiting for its answer")
                continue
            for m in got:
                if m.seq != seq or m.type not in (nl.NLMSG_ERROR, nl.NLMSG_DONE, mtype):
                    self._pending.append(m)
                elif m.type == nl.NLMSG_ERROR:
                    err = nl.parse_error(m.payload)
                    if err.error < 0:
                        raise KernelError(-err.error, mtype)
                    acked = True
                    self._t.last_ack = err
                elif m.type == nl.NLMSG_DONE:
                    done = True
                else:
                    replies.append(m)
            if acked and (not expect_reply or (done if is_dump else bool(replies))):
                return replies

    def stop_receiver(self) -> None:
        """Stop the drainer; what it had received is still returned by ``recv``, then the socket.
        Called before the first ``recv``, the drainer is never started."""
        self._no_start = True
        self._receiver.stop()

    def close(self) -> None:
        """Stop the drainer (its counters land in the transport's as ``receiver_*``) and close."""
        try:
            r = self._receiver
            started = r._started  # noqa: SLF001 - same module
            r.close()
            if started:
                for k, v in r.counters.as_dict().items():
                    key = f"receiver_{k}" if not k.endswith("_s") else f"receiver_{k[:-2]}_ms"
                    self._t.counters[key] = int(v * 1000) if k.endswith("_s") else int(v)
        finally:
            self._t.close()

    def __enter__(self) -> ReceiverTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def receiver_transport_factory(
    open_fn: Callable[..., Transport] = open_transport, *, mode: str = "auto", rcvbuf: int = DEFAULT_RCVBUF,
    max_pending: int = DEFAULT_MAX_PENDING, priority_boost: int = DEFAULT_PRIORITY_BOOST,
    warn: Callable[[str], None] | None = None,
) -> Callable[..., ReceiverTransport]:
    """A ``transport_factory`` for ``collector.commands.collect.Collector``: ``open_fn``'s transports,
    each drained by a Receiver once reading starts."""

    def factory(endpoint: str, **kw) -> ReceiverTransport:
        return ReceiverTransport(
            open_fn(endpoint, **kw), mode=mode, rcvbuf=rcvbuf, max_pending=max_pending,
            priority_boost=priority_boost, warn=warn,
        )

    return factory
