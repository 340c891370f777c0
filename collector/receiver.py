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

* ``mode="process"`` (default for the real kernel): a forked child process reads the
  inherited socket and writes length-prefixed frames into a pipe. It runs on its own core
  and never waits for the interpreter lock, which a thread must: a CPU-bound parser thread
  holds the GIL for up to the switch interval (5 ms) each time the receiving thread comes
  back from ``recv``, so a receiving *thread* manages about 200 receives a second while the
  parser is busy. The child dies with its parent (``PR_SET_PDEATHSIG``) and never touches
  the kernel's configuration; the registration stays with the parent (the kernel sends to
  the socket, i.e. the netlink port id, whichever process reads it).
* ``mode="thread"``: the same loop in a thread; for simulator endpoints, tests, and
  platforms without ``fork``.

The consumer side is :class:`Receiver` (``start()``, ``get(timeout)``, ``batches()``,
``stop()``, ``counters``), and :class:`ReceiverTransport`, a drop-in for
``collector.transport.Transport`` whose ``recv`` is served by a Receiver (started on the
first ``recv``, i.e. after configuration) and whose ``request`` keeps working while the
drainer runs (the ACK and the reply are picked out of the stream). ``kaudit collect``
uses it through its ``transport_factory``: ``receiver_transport_factory(mode=...)``.

Frames in the pipe: ``<u32 length><u32 sender or kind><datagram>`` (little-endian), sender 0
for the kernel; kind ``0xFFFFFFFE`` is an ENOBUFS marker (the socket overflowed: the reader
re-polls the kernel's counters) and ``0xFFFFFFFD`` carries the drainer's final counters.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
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

from collector.protocol import netlink as nl
from collector.protocol.records import AUDIT_LIST_RULES
from collector.transport import (
    CONTROL_PORT,
    OP_SOCKERR,
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
    "Receiver",
    "ReceiverCounters",
    "ReceiverTransport",
    "receiver_transport_factory",
]

DEFAULT_RCVBUF = 64 << 20  # bytes asked with SO_RCVBUFFORCE (the kernel doubles it)
DEFAULT_MAX_PENDING = 1 << 30  # bytes the drainer holds for a slow consumer before it stops reading
DEFAULT_PRIORITY_BOOST = 10  # the drainer's nice is lowered by this much (needs root; auditd uses 4)
BATCH_BYTES = 1 << 20  # the drainer hands over at least this often (or when the socket is empty)
MAX_DATAGRAM = 1 << 18  # room kept free for one datagram (records are under 9 KiB)
PIPE_SIZE = 16 << 20  # pipe capacity asked for (F_SETPIPE_SZ); the kernel may give less
COALESCE_MIN = 64  # fewer datagrams than this in one pass: wait up to COALESCE_S for more
COALESCE_S = 0.002  # (2 ms of latency at low rates buys one consumer wake-up per batch)

_FRAME = struct.Struct("<II")
_NLHDR = struct.Struct("=IHHII")
_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: IntFlag's & is a Python-level call per datagram
_KIND_ENOBUFS = 0xFFFFFFFE
_KIND_STATS = 0xFFFFFFFD
_F_SETPIPE_SZ = 1031
_PR_SET_PDEATHSIG = 1


@dataclass(slots=True)
class ReceiverCounters:
    """What the drainer did (its own counters arrive when it stops) and what the consumer got."""

    datagrams: int = 0  # handed to the consumer
    bytes: int = 0
    batches: int = 0
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

    def as_dict(self) -> dict:
        return asdict(self)


def _set_pdeathsig() -> None:
    """Ask the kernel to SIGKILL us when the parent dies (Linux prctl); best effort."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class _Drainer:
    """What both modes run: socket -> frames in a preallocated bytearray -> chunks.

    ``drain()`` receives until the socket is empty or a budget of bytes is framed; ``take()``
    returns the frames as one bytes chunk and reuses the buffer. The caller hands chunks on
    without blocking (process mode: a deque of chunks waiting for the pipe; thread mode: the
    consumer's deque). Only kernel datagrams (sender 0) are framed; an ENOBUFS becomes a
    marker frame; other endpoint control packets (an injected EINTR) lose nothing and are
    skipped.
    """

    def __init__(self, sock: socket.socket, *, endpoint_prefix: bool) -> None:
        self.sock = sock
        self.prefix = endpoint_prefix  # simulator endpoint: 4-byte sender before each datagram
        self.buf = bytearray(BATCH_BYTES + MAX_DATAGRAM + _FRAME.size)
        self.view = memoryview(self.buf)
        self.off = 0
        self.c = Counter()

    def drain(self, budget: int = BATCH_BYTES) -> tuple[bool, bool]:
        """Receive until the socket is empty or ``budget`` bytes are framed.

        Returns (socket_empty, closed).
        """
        sock, view, buf = self.sock, self.view, self.buf
        pack = _FRAME.pack_into
        recv = sock.recvmsg_into
        off = self.off
        limit = min(len(buf) - MAX_DATAGRAM - _FRAME.size, off + budget)
        c = self.c
        n_calls = n_dgrams = n_bytes = 0
        empty = closed = False
        try:
            while off < limit:
                try:
                    n, _anc, flags, addr = recv([view[off + 8 : off + 8 + MAX_DATAGRAM]])
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
                if self.prefix:
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
                            ctl = Control.decode(bytes(view[off + 12 : off + 8 + n]))
                        except ValueError:
                            c["truncated"] += 1
                            continue
                        if ctl.op == OP_SOCKERR and abs(ctl.error) == errno_mod.ENOBUFS:
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
                if flags & _MSG_TRUNC:
                    c["truncated"] += 1
                    continue
                if sender != 0:
                    c["dropped_sender"] += 1
                    continue
                pack(buf, off, n, 0)
                off += 8 + n
                n_dgrams += 1
                n_bytes += n
        finally:
            self.off = off
            c["recv_calls"] += n_calls
            c["datagrams"] += n_dgrams
            c["bytes"] += n_bytes
        return empty, closed

    def take(self) -> bytes:
        """The frames received so far, as one chunk (the buffer is reused)."""
        chunk = bytes(self.view[: self.off])
        self.off = 0
        return chunk


def _child_main(
    sock: socket.socket, out_fd: int, ctl_fd: int, endpoint_prefix: bool, max_pending: int, boost: int
) -> int:
    """The drainer process: read the socket, write frames to ``out_fd`` without ever blocking on it."""
    _set_pdeathsig()
    if boost:
        # like auditd's priority_boost: the drainer needs little CPU but needs it *now*
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, max(-20, os.getpriority(os.PRIO_PROCESS, 0) - boost))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sock.setblocking(False)
    os.set_blocking(out_fd, False)
    d = _Drainer(sock, endpoint_prefix=endpoint_prefix)
    pending: deque[memoryview] = deque()
    pending_bytes = 0
    max_seen = 0
    stalls = 0
    stalled = False
    stopping = False
    sfd = sock.fileno()
    poll = select.poll()
    poll.register(ctl_fd, select.POLLIN | select.POLLHUP)
    sock_registered = False

    def flush() -> None:
        nonlocal pending_bytes
        while pending:
            head = pending[0]
            try:
                n = os.write(out_fd, head)
            except BlockingIOError:
                return
            pending_bytes -= n
            if n == len(head):
                pending.popleft()
            else:
                pending[0] = head[n:]

    while True:
        want_sock = not stopping and pending_bytes < max_pending
        if want_sock and stalled:
            stalled = False
        elif not want_sock and not stopping and not stalled:
            stalled = True
            stalls += 1
        if want_sock != sock_registered:
            if want_sock:
                poll.register(sfd, select.POLLIN)
            else:
                poll.unregister(sfd)
            sock_registered = want_sock
        if pending:
            poll.register(out_fd, select.POLLOUT)
        try:
            events = poll.poll(None if not stopping else 0)
        except InterruptedError:
            events = []
        if pending:
            poll.unregister(out_fd)
        for fd, _ev in events:
            if fd == ctl_fd:
                stopping = True
        if sock_registered or stopping:
            # read what is there (also on stop: the last records the kernel queued)
            first = d.c["datagrams"]
            deadline = 0.0
            while True:
                empty, closed = d.drain()
                if d.off:
                    chunk = d.take()
                    pending.append(memoryview(chunk))
                    pending_bytes += len(chunk)
                    if pending_bytes > max_seen:
                        max_seen = pending_bytes
                if closed or pending_bytes >= max_pending:
                    break
                if not empty:
                    continue  # a full buffer: hand it over and read on
                if stopping or d.c["datagrams"] - first >= COALESCE_MIN:
                    break
                # a trickle (an exec's 8 records, a status reply): wait a moment for more, so
                # that the consumer wakes once per few milliseconds rather than per record
                now = time.monotonic()
                if not deadline:
                    deadline = now + COALESCE_S
                if now >= deadline or not select.select([sock], [], [], deadline - now)[0]:
                    break
            if closed:
                stopping = True
        flush()
        if stopping:
            break
    # final counters, then everything, blocking: the parent reads until EOF
    usage = os.times()
    stats = dict(d.c)
    stats.update(max_pending_bytes=max_seen, stalls=stalls, drainer_cpu_s=usage.user + usage.system)
    blob = json.dumps(stats).encode()
    pending.append(memoryview(_FRAME.pack(len(blob), _KIND_STATS) + blob))
    os.set_blocking(out_fd, True)
    for chunk in pending:
        os.write(out_fd, chunk)
    os.close(out_fd)
    return 0


class Receiver:
    """Drains one transport's socket in a separate process (or thread); batches come out of ``get``.

    ``get(timeout)`` returns the next batch as a list of ``NetlinkMessage`` (every message of
    every datagram, in arrival order), a ``TransportEvent`` (``enobufs``, ``closed``), or
    ``None`` when ``timeout`` passes. ``stop()`` makes the drainer read what the socket holds
    and hand everything over; what it handed over can still be taken with ``get`` afterwards.
    The transport stays usable for sending while the drainer runs (and for everything after
    ``stop``); only its receiving belongs to the drainer.
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
        if mode not in ("process", "thread"):
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
        self._rfd: int | None = None
        self._ctl_w: int | None = None
        self._inbuf = bytearray()
        self._eof = False
        self._started = False
        self._stopped = False
        self._ready: deque = deque()  # thread mode: chunks (bytes) from the drainer thread
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
        rfd, wfd = os.pipe()
        ctl_r, ctl_w = os.pipe()
        try:
            fcntl_mod = __import__("fcntl")
            self.counters.pipe_size = fcntl_mod.fcntl(wfd, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            try:
                self.counters.pipe_size = __import__("fcntl").fcntl(wfd, _F_SETPIPE_SZ, 1 << 20)
            except OSError:
                self.counters.pipe_size = 0
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the drainer
            code = 1
            try:
                os.close(rfd)
                os.close(ctl_w)
                code = _child_main(self._sock, wfd, ctl_r, prefix, self.max_pending, self.priority_boost)
            except BaseException as exc:  # noqa: BLE001 - report and leave, never return
                try:
                    os.write(2, f"kaudit receiver: drainer failed: {exc!r}\n".encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        os.close(wfd)
        os.close(ctl_r)
        os.set_blocking(rfd, False)
        self._pid, self._rfd, self._ctl_w = pid, rfd, ctl_w

    def _start_thread(self, prefix: bool) -> None:
        self._sock.setblocking(False)
        d = _Drainer(self._sock, endpoint_prefix=prefix)

        def run() -> None:
            stalled = False
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
                    if d.off:
                        chunk = d.take()
                        with self._cond:
                            self._ready.append(chunk)
                            self._cond.notify()
                    if closed or (stopping and empty):
                        break
            except BaseException as exc:  # noqa: BLE001 - surfaced by get()
                self._thread_error = exc
            finally:
                stats = {k: v for k, v in d.c.items() if k in ("dropped_sender", "truncated", "recv_calls", "stalls")}
                blob = json.dumps(stats).encode()
                with self._cond:
                    self._ready.append(_FRAME.pack(len(blob), _KIND_STATS) + blob)
                    self._ready.append(b"")  # EOF
                    self._cond.notify()

        self._thread = threading.Thread(target=run, name="kaudit-receiver", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Tell the drainer to read what is left and finish; wait for it. Idempotent."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        if self.mode == "process":
            if self._ctl_w is not None:
                try:
                    os.write(self._ctl_w, b"x")
                except OSError:
                    pass
            # the drainer writes its last frames blocking: keep reading while waiting for it
            deadline = time.monotonic() + timeout
            while not self._eof and time.monotonic() < deadline:
                self._fill(0.1)
            if not self._eof:
                try:
                    os.kill(self._pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(self._pid, 0)
            except ChildProcessError:
                pass
            if self._ctl_w is not None:
                os.close(self._ctl_w)
                self._ctl_w = None
        else:
            self._thread_stop.set()
            self._thread.join(timeout)
            while not self._eof and self._ready:
                self._fill(0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Stop (if running) and free the pipe."""
        self.stop()
        if self._rfd is not None:
            os.close(self._rfd)
            self._rfd = None

    def __enter__(self) -> Receiver:
        return self if self._started else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    @property
    def drainer_pid(self) -> int | None:
        """The drainer process (process mode), for CPU accounting."""
        return self._pid

    # ---- consumer side -----------------------------------------------------------------

    def _fill(self, timeout: float | None) -> bool:
        """Move bytes from the drainer into ``_inbuf``; True if any arrived."""
        if self._eof:
            return False
        if self.mode == "process":
            if self._rfd is None:
                return False
            r, _, _ = select.select([self._rfd], [], [], timeout)
            if not r:
                return False
            got = False
            while True:
                try:
                    data = os.read(self._rfd, 8 << 20)
                except BlockingIOError:
                    break
                if not data:
                    self._eof = True
                    self._take_stats()
                    break
                self._inbuf += data
                got = True
                if len(data) < (8 << 20):
                    break
            return got
        with self._cond:
            if not self._ready:
                self._cond.wait(timeout)
            got = False
            while self._ready:
                chunk = self._ready.popleft()
                if not chunk:
                    self._eof = True
                    self._take_stats()
                    break
                self._inbuf += chunk
                got = True
        if self._thread_error is not None:
            err, self._thread_error = self._thread_error, None
            raise TransportError(f"the receiver thread failed: {err}") from err
        return got

    def _frames(self) -> list[nl.NetlinkMessage] | TransportEvent | None:
        """Decode every complete frame in ``_inbuf`` (an ENOBUFS marker ends the batch)."""
        buf = self._inbuf
        total = len(buf)
        off = 0
        out: list[nl.NetlinkMessage] = []
        unpack = _FRAME.unpack_from
        unpack_hdr = _NLHDR.unpack_from
        decode = nl.decode_datagram
        Message = nl.NetlinkMessage
        c = self.counters
        event: TransportEvent | None = None
        n_dgrams = n_bytes = 0
        mv = memoryview(buf)
        try:
            while total - off >= 8:
                n, kind = unpack(buf, off)
                if kind == _KIND_ENOBUFS:
                    off += 8
                    c.enobufs += 1
                    event = TransportEvent("enobufs", errno_mod.ENOBUFS, "the socket's receive queue overflowed")
                    break
                if total - off - 8 < n:
                    break
                start = off + 8
                off = start + n
                if kind == _KIND_STATS:
                    self._merge_stats(bytes(mv[start:off]))
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
                data = bytes(mv[start:off])
                try:
                    out.extend(decode(data))
                except nl.NetlinkError:
                    c.bad_datagram += 1
        finally:
            mv.release()
            del buf[:off]
            c.datagrams += n_dgrams
            c.bytes += n_bytes
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
        c = self.counters
        c.dropped_sender += int(stats.get("dropped_sender", 0))
        c.truncated += int(stats.get("truncated", 0))
        c.recv_calls += int(stats.get("recv_calls", 0))
        c.stalls += int(stats.get("stalls", 0))
        c.max_pending_bytes = max(c.max_pending_bytes, int(stats.get("max_pending_bytes", 0)))
        c.drainer_cpu_s += float(stats.get("drainer_cpu_s", 0.0))

    def get(self, timeout: float | None = None) -> list[nl.NetlinkMessage] | TransportEvent | None:
        """The next batch (messages in arrival order), an event, or None after ``timeout`` s.

        After ``stop()``, returns what the drainer handed over and then ``None`` at once.
        """
        if not self._started:
            raise RuntimeError("receiver not started")
        got = self._frames()
        if got:
            return got
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._eof:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._fill(left)
            got = self._frames()
            if got:
                return got
            if deadline is not None and time.monotonic() >= deadline:
                return None
        return self._frames() or None

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
    batches (every message of every datagram received, possibly thousands) and ``request``
    sends, then picks its ACK/reply out of the drainer's stream, keeping the other messages
    for the next ``recv``. ``close`` stops the drainer and closes the transport.
    """

    def __init__(self, transport: Transport, *, mode: str = "auto", rcvbuf: int = DEFAULT_RCVBUF,
                 max_pending: int = DEFAULT_MAX_PENDING, priority_boost: int = DEFAULT_PRIORITY_BOOST) -> None:
        self._t = transport
        self._receiver = Receiver(
            transport, mode=mode, rcvbuf=rcvbuf, max_pending=max_pending, priority_boost=priority_boost
        )
        self._pending: deque[nl.NetlinkMessage] = deque()
        self._event: TransportEvent | None = None

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
        if r._started:  # noqa: SLF001 - same module
            return
        # what the transport already holds in user space (kept by request(), or early data)
        while True:
            got = self._t.recv(0)
            if isinstance(got, TransportEvent):
                self._event = got
                break
            if not got:
                break
            self._pending.extend(got)
        r.start()

    def recv(self, timeout: float | None) -> list[nl.NetlinkMessage] | TransportEvent:
        self._ensure_started()
        if self._pending:
            out = list(self._pending)
            self._pending.clear()
            return out
        if self._event is not None:
            ev, self._event = self._event, None
            return ev
        r = self._receiver
        if not r.running and r._eof:  # noqa: SLF001 - same module
            # stopped and everything handed over: the socket is ours again
            got = r.get(0)
            return got if got is not None else self._t.recv(timeout)
        got = r.get(timeout)
        if got is None:
            if r._eof:  # noqa: SLF001 - the drainer ended without being asked (socket closed)
                return TransportEvent("closed", 0, "the audit socket was closed")
            return []
        if isinstance(got, TransportEvent):
            if got.kind in self._t.counters:
                self._t.counters[got.kind] += 1
        return got

    def request(self, mtype: int, payload: bytes = b"", *, dump: bool | None = None,
                reply: bool | None = None, timeout: float = 2.0) -> list[nl.NetlinkMessage]:
        r = self._receiver
        if not r.running:
            return self._t.request(mtype, payload, dump=dump, reply=reply, timeout=timeout)
        from collector.transport import REPLY_TYPES

        expect_reply = (mtype in REPLY_TYPES) if reply is None else reply
        is_dump = (mtype == AUDIT_LIST_RULES) if dump is None else dump
        seq = self._t.send(nl.NetlinkMessage(mtype, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 0, 0, payload))
        acked = done = False
        replies: list[nl.NetlinkMessage] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportError(f"no answer from {self._t.endpoint} for request type {mtype} (seq {seq}) within {timeout} s")
            got = r.get(left)
            if got is None:
                if r._eof:  # noqa: SLF001 - same module
                    raise TransportError("the receiver stopped while a request was waiting for its answer")
                continue
            if isinstance(got, TransportEvent):
                self._event = self._event or got
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
        """Stop the drainer; what it had received is still returned by ``recv``, then the socket."""
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
) -> Callable[..., ReceiverTransport]:
    """A ``transport_factory`` for ``collector.commands.collect.Collector``: ``open_fn``'s transports,
    each drained by a Receiver once reading starts."""

    def factory(endpoint: str, **kw) -> ReceiverTransport:
        return ReceiverTransport(
            open_fn(endpoint, **kw), mode=mode, rcvbuf=rcvbuf, max_pending=max_pending, priority_boost=priority_boost
        )

    return factory
