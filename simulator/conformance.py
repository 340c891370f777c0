"""``kaudit conformance``: the same control-plane conversations with the real kernel and the simulator.

Each case is a short script of netlink datagrams sent from one or more sockets (and, where
the kernel's answer depends on *who* asks, from a child process). It runs once against the
real kernel and once against a fresh simulator loaded with the kernel's state, and what every
socket received is compared message by message and field by field.

Only what moves by itself is normalised: sequence numbers are fixed by the case, port ids and
the pids of child processes become names (``<port:a>``, ``<pid:child>``), record time stamps
and serials become ``<stamp>``, and the status counters ``lost``, ``backlog`` and
``backlog_wait_time_actual`` become ``*``. Records are compared as a separate stream per
socket (kauditd delivers them asynchronously, so their order relative to ACKs is a race in
the kernel too), and only the records the control plane writes are compared: CONFIG_CHANGE,
FEATURE_CHANGE, and user/EVENT_LISTENER records of our own processes. The SYSCALL/PROCTITLE/EOE
records the kernel adds for the requesting syscall, and anything other processes log
meanwhile, are outside the model and skipped.

Safety on the real kernel: everything runs under the live lock; no case sets failure=2 or
enabled=2 (the runner refuses to send such a datagram to the kernel), and after every case the
state found at the start (status, features, rules, our tty auditing, daemon registration) is
restored in a ``finally``. The one thing that cannot be given back is the value of the counters
``lost`` and ``backlog_wait_time_actual``: the lost-reset cases set them to 0, as ``auditctl
--reset-lost`` does, and the kernel offers no way to set them to anything else.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from collector.protocol import netlink as nl
from collector.protocol._tables import RECORD_TYPES, RULE_FIELDS
from collector.protocol.records import record_type_name
from collector.protocol.status import AuditFeatures, AuditStatus, status_set
from collector.transport import (
    KernelError,
    Transport,
    TransportError,
    errno_name,
    kernel_unreachable_reason,
    live_lock,
    open_transport,
)
from simulator.endpoint import EndpointServer
from simulator.kernel import RULE_DATA_SIZE, AuditKernel

T = RECORD_TYPES
GET, SET, LIST_RULES, ADD_RULE, DEL_RULE = T["GET"], T["SET"], T["LIST_RULES"], T["ADD_RULE"], T["DEL_RULE"]
GET_FEATURE, SET_FEATURE, SIGNAL_INFO = T["GET_FEATURE"], T["SET_FEATURE"], T["SIGNAL_INFO"]
TTY_GET, TTY_SET, TRIM, MAKE_EQUIV, USER = T["TTY_GET"], T["TTY_SET"], T["TRIM"], T["MAKE_EQUIV"], T["USER"]
CONFIG_CHANGE, FEATURE_CHANGE = T["CONFIG_CHANGE"], T.get("FEATURE_CHANGE", 1328)
REPLACE, EVENT_LISTENER = T.get("REPLACE", 1329), T.get("EVENT_LISTENER", 1335)
REQ_ACK = nl.NLM_F_REQUEST | nl.NLM_F_ACK
EQ, NE, BITMASK = 0x40000000, 0x30000000, 0x08000000
FLD = RULE_FIELDS
ALL_SYSCALLS = (0xFFFFFFFF,) * 64
_HDR = struct.Struct("=IHHII")
_STAMP = re.compile(rb"audit\(\d+\.\d+:\d+\)")
_COUNTER_OLD = re.compile(rb"(op=set (?:lost|backlog_wait_time_actual)=0 old=)\d+")


class KernelUnreachable(RuntimeError):
    """The kernel's audit cannot be reached here; the message says why."""


# --- building requests ------------------------------------------------------------------------


def rule_data(
    *,
    flags: int = 4,
    action: int = 2,
    fields: tuple[tuple[int, int, int | bytes | str], ...] = (),
    syscalls: tuple[int, ...] = (),
    mask: tuple[int, ...] | None = None,
    field_count: int | None = None,
) -> bytes:
    """A raw audit_rule_data (the conformance cases build exactly what they mean to send,
    including what no rule parser would produce)."""
    m = list(mask) if mask else [0] * 64
    for sc in syscalls:
        m[sc // 32] |= 1 << (sc % 32)
    ftypes, values, ops = [0] * 64, [0] * 64, [0] * 64
    buf = b""
    for i, (fid, op, val) in enumerate(fields):
        ftypes[i], ops[i] = fid, op
        if isinstance(val, (bytes, str)):
            raw = val.encode() if isinstance(val, str) else val
            values[i] = len(raw)
            buf += raw
        else:
            values[i] = val & 0xFFFFFFFF
    count = len(fields) if field_count is None else field_count
    return (
        struct.pack("=3I", flags, action, count)
        + struct.pack("=64I", *m)
        + struct.pack("=64I", *ftypes)
        + struct.pack("=64I", *values)
        + struct.pack("=64I", *ops)
        + struct.pack("=I", len(buf))
        + buf
    )


def _unsafe(data: bytes) -> str | None:
    """Why a datagram must never reach the real kernel (failure=2 panics, enabled=2 locks)."""
    off = 0
    while off + nl.NLMSG_HDRLEN <= len(data):
        length, mtype, _f, _s, _p = _HDR.unpack_from(data, off)
        if length < nl.NLMSG_HDRLEN:
            break
        if mtype == SET:
            payload = data[off + nl.NLMSG_HDRLEN : off + length][:44]
            mask, enabled, failure = struct.unpack_from("=3I", payload + b"\0" * 12)
            if mask & 1 and enabled == 2:
                return "AUDIT_SET enabled=2 would lock the kernel's audit until reboot"
            if mask & 2 and failure == 2:
                return "AUDIT_SET failure=2 would panic (reboot) the machine"
        off += nl.align(length)
    return None


# --- the kernel's state, taken and given back -------------------------------------------------


@dataclass(slots=True)
class KernelSnapshot:
    """What a live run must give back: status, features, rules, our tty auditing."""

    status: AuditStatus
    features: AuditFeatures
    rules: list[bytes]
    tty: tuple[int, int] = (0, 0)
    signal_info: tuple[int, int] = (0xFFFFFFFF, -1)
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def take(cls, t: Transport) -> KernelSnapshot:
        status = AuditStatus.decode(t.request(GET)[0].payload)
        features = AuditFeatures.decode(t.request(GET_FEATURE)[0].payload)
        rules = [m.payload for m in t.request(LIST_RULES)]
        tty = struct.unpack_from("=II", t.request(TTY_GET)[0].payload + b"\0" * 8)
        sig = struct.unpack_from("=Ii", t.request(SIGNAL_INFO)[0].payload + b"\0" * 8)
        return cls(status, features, rules, (tty[0], tty[1]), (sig[0], sig[1]))

    def restore(self, t: Transport) -> list[str]:
        """Put the kernel back; returns what had to change (empty when nothing did).

        Never sets enabled=2 or failure=2, never locks a feature; a daemon registration is
        only undone when it is ours (another process's daemon is not ours to remove).
        """
        done: list[str] = []
        now = AuditStatus.decode(t.request(GET)[0].payload)
        if now.pid and now.pid != self.status.pid and now.pid == os.getpid():
            t.request(SET, status_set(pid=0).encode())
            done.append(f"unregistered daemon pid {now.pid}")
        changes = {
            name: getattr(self.status, name)
            for name in ("enabled", "failure", "rate_limit", "backlog_limit", "backlog_wait_time")
            if getattr(now, name) != getattr(self.status, name)
        }
        if changes.get("enabled") == 2 or changes.get("failure") == 2:
            raise RuntimeError(f"refusing to restore {changes}: enabled=2/failure=2 are never set on a live kernel")
        if now.enabled == 2 and changes:
            raise RuntimeError("the kernel's audit was locked (enabled=2) meanwhile; its state cannot be restored")
        if changes:
            t.request(SET, status_set(**changes).encode())
            done.append("status " + " ".join(f"{k}={v}" for k, v in changes.items()))
        feat = AuditFeatures.decode(t.request(GET_FEATURE)[0].payload)
        if feat.features != self.features.features:
            t.request(SET_FEATURE, AuditFeatures(1, 0x3, self.features.features, 0).encode())
            done.append(f"features {feat.features:#x} -> {self.features.features:#x}")
        rules = [m.payload for m in t.request(LIST_RULES)]
        if rules != self.rules:
            for payload in rules:
                try:
                    t.request(DEL_RULE, payload)
                except KernelError:
                    pass
            for payload in self.rules:
                t.request(ADD_RULE, payload)
            done.append(f"rules ({len(rules)} -> {len(self.rules)})")
        tty = struct.unpack_from("=II", t.request(TTY_GET)[0].payload + b"\0" * 8)
        if tuple(tty) != self.tty:
            t.request(TTY_SET, struct.pack("=II", *self.tty))
            done.append("tty auditing")
        return done

    def simulator(self, *, hz: int | None = None) -> AuditKernel:
        """A kernel model in this state (our tty auditing and the last signal info included)."""
        kernel = AuditKernel(hz=hz or detect_hz())
        kernel.load(self.status, self.features, self.rules)
        kernel.tty_audit[self.pid] = self.tty
        kernel.sig_uid, kernel.sig_pid = self.signal_info
        return kernel


def detect_hz(default: int = 250) -> int:
    """CONFIG_HZ of the running kernel (backlog_wait_time is in jiffies), from its config."""
    release = os.uname().release
    for path in ("/proc/config.gz", f"/boot/config-{release}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as fh:  # type: ignore[operator]
                for line in fh:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except (OSError, ValueError):
            continue
    return default


# --- one run of one case against one side -----------------------------------------------------


class Run:
    """Sockets, the datagrams they received, and the names that normalise them."""

    def __init__(self, endpoint: str, *, kernel: bool, quiet: float) -> None:
        self.endpoint = endpoint
        self.kernel = kernel
        self.quiet = quiet
        self.pid = os.getpid()
        self.socks: dict[str, Transport] = {}
        self.received: dict[str, list[bytes]] = {}
        self.compared: dict[str, bool] = {}
        self.ports: dict[int, str] = {}
        self.pids: dict[int, str] = {}
        self._seq = 0

    # --- the case's vocabulary --------------------------------------------------------

    def req(self, mtype: int, payload: bytes = b"", *, flags: int = REQ_ACK, seq: int | None = None) -> bytes:
        """One request datagram with the case's next sequence number."""
        if seq is None:
            self._seq += 1
            seq = self._seq
        return nl.encode(nl.NetlinkMessage(mtype, flags, seq, 0, payload), short_len=False)

    def open(self, name: str, *, multicast: bool = False, compare: bool = True) -> None:
        t = open_transport(self.endpoint, multicast=multicast, rcvbuf=1 << 20)
        self.socks[name] = t
        self.received.setdefault(name, [])
        self.compared[name] = compare
        self.ports[t.port_id] = name
        self.settle()

    def send(self, name: str, data: bytes) -> None:
        if name not in self.socks:
            self.open(name)
        if self.kernel and (why := _unsafe(data)):
            raise RuntimeError(f"refusing to send to the real kernel: {why}")
        self.socks[name].send_raw(data)
        self.settle()

    def close(self, name: str) -> None:
        self.socks.pop(name).close()
        self.settle()

    def child(self, name: str, *datagrams: bytes) -> None:
        """Send from another process (its own tgid): a child that prints what it received."""
        for data in datagrams:
            if self.kernel and (why := _unsafe(data)):
                raise RuntimeError(f"refusing to send to the real kernel: {why}")
        cmd = [sys.executable, "-m", "simulator.conformance", "--child", self.endpoint, *(d.hex() for d in datagrams)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
        if proc.returncode:
            raise RuntimeError(f"conformance child failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        out = json.loads(proc.stdout)
        self.pids[out["pid"]] = name
        self.ports[out["port"]] = name
        self.compared[name] = True
        self.received.setdefault(name, []).extend(bytes.fromhex(h) for h in out["received"])
        self.settle()

    def settle(self) -> None:
        """Collect until every socket has been quiet for ``quiet`` seconds (3 s at most)."""
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            socks = list(self.socks.items())
            if not socks:
                return
            ready = select.select([t.fileno() for _, t in socks], [], [], self.quiet)[0]
            if not ready:
                return
            for name, t in socks:
                if t.fileno() in ready:
                    while isinstance(got := t.recv_raw(0), tuple):
                        if got[0] == 0:
                            self.received[name].append(got[1])

    def close_all(self) -> None:
        for t in self.socks.values():
            t.close()
        self.socks.clear()

    # --- normalising ------------------------------------------------------------------

    def transcript(self) -> dict[str, dict[str, list[dict[str, object]]]]:
        out: dict[str, dict[str, list[dict[str, object]]]] = {}
        for name, datagrams in self.received.items():
            if not self.compared.get(name, True):
                continue
            streams: dict[str, list[dict[str, object]]] = {"control": [], "records": []}
            for data in datagrams:
                for stream, msg in self._normalise(data):
                    streams[stream].append(msg)
            out[name] = streams
        return out

    def _port(self, port: int) -> object:
        if port == 0:
            return 0
        return f"<port:{self.ports[port]}>" if port in self.ports else "<port:?>"

    def _pid(self, pid: int) -> object:
        if pid == self.pid:
            return "<pid:self>"
        return f"<pid:{self.pids[pid]}>" if pid in self.pids else pid

    def _normalise(self, data: bytes) -> Iterator[tuple[str, dict[str, object]]]:
        if len(data) >= nl.NLMSG_HDRLEN:
            length, mtype, flags, seq, pid = _HDR.unpack_from(data)
            payload = data[nl.NLMSG_HDRLEN:]
            if mtype > nl.NLMSG_OVERRUN and mtype != REPLACE and payload.startswith(b"audit("):
                if length == len(payload):
                    form, text = "short", payload
                elif length == len(data):
                    form, text = "true", payload
                else:
                    form, text = f"nlmsg_len {length} for {len(data)} bytes", payload
                if self._keep_record(mtype, text):
                    yield "records", {"type": record_type_name(mtype), "length_form": form, "flags": flags,
                                      "seq": seq, "pid": self._port(pid), "text": self._text(text)}
                return
        off, first = 0, True
        while off < len(data):
            if len(data) - off < nl.NLMSG_HDRLEN:
                yield "control", {"trailing_bytes": data[off:].hex()}
                return
            length, mtype, flags, seq, pid = _HDR.unpack_from(data, off)
            if length < nl.NLMSG_HDRLEN or off + length > len(data):
                yield "control", {"bad_nlmsg_len": length, "type": mtype, "hex": data[off:].hex()}
                return
            payload = data[off + nl.NLMSG_HDRLEN : off + length]
            msg: dict[str, object] = {"type": _type_name(mtype), "nlmsg_len": length}
            if first:
                msg["datagram_len"] = len(data)
            msg.update(flags=hex(flags), seq=seq, pid=self._port(pid))
            msg.update(self._payload(mtype, payload))
            yield "control", msg
            off += nl.align(length)
            first = False

    def _payload(self, mtype: int, payload: bytes) -> dict[str, object]:
        if mtype == nl.NLMSG_ERROR and len(payload) >= 4 + nl.NLMSG_HDRLEN:
            (err,) = struct.unpack_from("=i", payload)
            elen, etype, eflags, eseq, epid = _HDR.unpack_from(payload, 4)
            echoed = payload[4 + nl.NLMSG_HDRLEN :]
            out: dict[str, object] = {"error": f"{err} ({errno_name(err)})" if err < 0 else err}
            if etype == SET and err > 0:
                out["error"] = "<counter>"  # a lost reset answers with the counter it cleared
            out["echo"] = {"nlmsg_len": elen, "type": _type_name(etype), "flags": hex(eflags), "seq": eseq, "pid": epid}
            if etype == SET and echoed:
                out["echo_payload"] = self._status(echoed[: elen - nl.NLMSG_HDRLEN])
                out["echo_padding"] = echoed[max(0, elen - nl.NLMSG_HDRLEN) :].hex()
            elif echoed:
                out["echo_payload"] = echoed.hex()
            return out
        if mtype == GET and len(payload) >= 32 and len(payload) % 4 == 0:
            return {"status": self._status(payload, counters=True)}
        if mtype == REPLACE and len(payload) == 4:
            return {"replace_pid": self._pid(struct.unpack("=i", payload)[0])}
        return {"payload": payload.hex()}

    def _status(self, payload: bytes, *, counters: bool = False) -> object:
        if len(payload) % 4 or len(payload) < 32:
            return payload.hex()
        st = AuditStatus.decode(payload).as_dict()
        st["pid"] = self._pid(st["pid"])  # type: ignore[assignment]
        if counters:
            for name in ("lost", "backlog", "backlog_wait_time_actual"):
                if name in st:
                    st[name] = "*"  # type: ignore[assignment]
        return st

    def _keep_record(self, mtype: int, text: bytes) -> bool:
        if mtype in (CONFIG_CHANGE, FEATURE_CHANGE):
            return True
        if mtype == EVENT_LISTENER or 1100 <= mtype <= 1199 or 2100 <= mtype <= 2999 or mtype == USER:
            return any(f"pid={p} ".encode() in text for p in [self.pid, *self.pids])
        return False

    def _text(self, text: bytes) -> str:
        text = _STAMP.sub(b"audit(<stamp>)", text)
        text = _COUNTER_OLD.sub(rb"\1<counter>", text)
        for pid, name in self.pids.items():
            text = re.sub(rb"\b%d\b" % pid, f"<pid:{name}>".encode(), text)
        return text.decode("utf-8", "backslashreplace")


def _type_name(mtype: int) -> str:
    return {1: "NLMSG_NOOP", 2: "NLMSG_ERROR", 3: "NLMSG_DONE", 4: "NLMSG_OVERRUN"}.get(mtype) or record_type_name(mtype)


# --- cases --------------------------------------------------------------------------------


@dataclass(slots=True)
class Case:
    name: str
    doc: str
    fn: Callable[[Run], None]


CASES: list[Case] = []


def case(name: str, doc: str) -> Callable[[Callable[[Run], None]], Callable[[Run], None]]:
    def register(fn: Callable[[Run], None]) -> Callable[[Run], None]:
        CASES.append(Case(name, doc, fn))
        return fn

    return register


def _st(**values: int) -> bytes:
    return status_set(**values).encode()


NET_RULE = rule_data(fields=((FLD["ARCH"], EQ, 0xC000003E), (FLD["FILTERKEY"], EQ, "net")), syscalls=(42,))
EXECVE_RULE = rule_data(fields=((FLD["ARCH"], EQ, 0xC000003E),), syscalls=(59,))
WATCH_RULE = rule_data(mask=ALL_SYSCALLS, fields=((FLD["WATCH"], EQ, "/etc/passwd"), (FLD["PERM"], EQ, 10),
                                                    (FLD["FILTERKEY"], EQ, "passwd")))


@case("get_status", "AUDIT_GET with NLM_F_ACK: the ACK first, then the 11-field status")
def _get_status(r: Run) -> None:
    r.send("a", r.req(GET))


@case("get_status_no_ack", "AUDIT_GET without NLM_F_ACK: the status alone")
def _get_no_ack(r: Run) -> None:
    r.send("a", r.req(GET, flags=nl.NLM_F_REQUEST))


@case("get_status_without_request_flag", "the kernel answers even without NLM_F_REQUEST")
def _get_no_request(r: Run) -> None:
    r.send("a", r.req(GET, flags=nl.NLM_F_ACK))


@case("set_empty_mask", "AUDIT_SET with mask 0 changes nothing and is ACKed")
def _set_empty(r: Run) -> None:
    r.send("a", r.req(SET, _st()))


@case("set_empty_payload", "AUDIT_SET with no payload at all is ACKed (the kernel zero-fills)")
def _set_no_payload(r: Run) -> None:
    r.send("a", r.req(SET, b""))


@case("set_enabled_invalid", "enabled=3 is EINVAL; the error echoes the whole request")
def _set_enabled_3(r: Run) -> None:
    r.send("a", r.req(SET, _st(enabled=3)))


@case("set_failure_invalid", "failure=5 is EINVAL")
def _set_failure_5(r: Run) -> None:
    r.send("a", r.req(SET, _st(failure=5)))


@case("set_rate_limit", "rate_limit=7 is applied and AUDIT_GET shows it")
def _set_rate(r: Run) -> None:
    r.send("a", r.req(SET, _st(rate_limit=7)))
    r.send("a", r.req(GET))


@case("set_backlog_limit", "backlog_limit=8192 is applied")
def _set_backlog(r: Run) -> None:
    r.send("a", r.req(SET, _st(backlog_limit=8192)))
    r.send("a", r.req(GET))


@case("set_backlog_wait_time_too_long", "backlog_wait_time above 10*60*HZ is EINVAL")
def _set_bwt_long(r: Run) -> None:
    r.send("a", r.req(SET, _st(backlog_wait_time=10 * 60 * detect_hz() + 1)))


@case("set_backlog_wait_time_short_struct", "a 6-field audit_status cannot set backlog_wait_time (EINVAL)")
def _set_bwt_short(r: Run) -> None:
    r.send("a", r.req(SET, status_set(nfields=6, backlog_wait_time=1).encode()))


@case("set_backlog_wait_time_8_fields", "an 8-field audit_status with the BWT bit sets it to 0 (the kernel zero-fills)")
def _set_bwt_8(r: Run) -> None:
    r.send("a", r.req(SET, status_set(nfields=8, backlog_wait_time=1).encode()))
    r.send("a", r.req(GET))


@case("set_partial", "fields are applied in order: rate_limit sticks although backlog_wait_time fails")
def _set_partial(r: Run) -> None:
    r.send("a", r.req(SET, _st(rate_limit=7, backlog_wait_time=10 * 60 * detect_hz() + 1)))
    r.send("a", r.req(GET))


@case("set_pid_not_ours", "registering a pid that is not the sender's tgid is EINVAL")
def _set_pid_1(r: Run) -> None:
    r.send("a", r.req(SET, _st(pid=1)))


@case("lost_reset", "mask == LOST resets the counter: ACK carries it, CONFIG_CHANGE logs it")
def _lost_reset(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(lost=0)))


@case("lost_reset_without_ack", "a lost reset without NLM_F_ACK: no answer when the counter was 0")
def _lost_reset_noack(r: Run) -> None:
    r.send("a", r.req(SET, _st(lost=0)))  # whatever it was, it is 0 now
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(lost=0), flags=nl.NLM_F_REQUEST))


@case("backlog_wait_time_actual_reset", "mask == BACKLOG_WAIT_TIME_ACTUAL resets that counter")
def _bwta_reset(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(backlog_wait_time_actual=0)))


@case("config_change_records", "with audit on, each change is logged as CONFIG_CHANGE (old and new values)")
def _config_change(r: Run) -> None:
    # rate_limit stays 0 here: with a limit, the kernel also counts the SYSCALL records of our
    # own sendmsg calls, which are outside the model, and drops CONFIG_CHANGE records by luck
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(enabled=1)))
    r.send("a", r.req(SET, _st(rate_limit=0)))
    r.send("a", r.req(SET, _st(backlog_limit=100)))
    r.send("a", r.req(SET, _st(failure=1)))
    r.send("a", r.req(SET, _st(enabled=3)))
    r.send("a", r.req(SET, _st(enabled=0)))


@case("register_daemon", "a process registers its own pid, AUDIT_GET shows it, it unregisters")
def _register(r: Run) -> None:
    r.send("a", r.req(SET, _st(pid=r.pid)))
    r.send("a", r.req(GET))
    r.send("a", r.req(SET, _st(pid=0)))
    r.send("a", r.req(GET))


@case("register_second_socket", "a second socket registering while the daemon lives: EEXIST, AUDIT_REPLACE to the daemon")
def _register_twice(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(pid=r.pid)))
    r.send("b", r.req(SET, _st(pid=r.pid)))
    r.send("b", r.req(SET, _st(pid=0)))


@case("unregister_other_process", "another process may not unregister the daemon (EACCES) nor replace it (EEXIST)")
def _unregister_other(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(pid=r.pid)))
    r.child("child", r.req(SET, _st(pid=0), seq=101), r.req(GET, seq=102))
    r.send("a", r.req(SET, _st(pid=0)))


@case("daemon_socket_closed", "after the daemon's socket closes its pid stays until a send fails; then anyone may register")
def _daemon_closed(r: Run) -> None:
    r.send("a", r.req(SET, _st(pid=r.pid)))
    r.close("a")
    r.send("b", r.req(GET))
    r.send("b", r.req(SET, _st(pid=r.pid)))
    r.send("b", r.req(GET))
    r.send("b", r.req(SET, _st(pid=0)))


@case("daemon_receives_records", "records reach the daemon with the short nlmsg_len and readers with the true one")
def _daemon_records(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(pid=r.pid)))
    r.send("a", r.req(SET, _st(enabled=1)))
    r.send("a", r.req(SET, _st(rate_limit=0)))
    r.send("a", r.req(USER, b"kaudit conformance\0"))
    r.send("a", r.req(SET, _st(enabled=0)))
    r.send("a", r.req(SET, _st(pid=0)))


@case("multicast_listener_records", "joining and leaving the multicast group is logged as EVENT_LISTENER")
def _listener(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(enabled=1)))
    r.open("m", multicast=True, compare=False)
    r.close("m")
    r.send("a", r.req(SET, _st(enabled=0)))


@case("features_get", "AUDIT_GET_FEATURE answers struct audit_features after the ACK")
def _features_get(r: Run) -> None:
    r.send("a", r.req(GET_FEATURE))


@case("features_set", "setting only_unset_loginuid and back, logged as FEATURE_CHANGE with audit on")
def _features_set(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(enabled=1)))
    r.send("a", r.req(SET_FEATURE, AuditFeatures(1, 1, 1, 0).encode()))
    r.send("a", r.req(GET_FEATURE))
    r.send("a", r.req(SET_FEATURE, AuditFeatures(1, 1, 0, 0).encode()))
    r.send("a", r.req(SET, _st(enabled=0)))


@case("features_set_short", "a truncated audit_features is EINVAL")
def _features_short(r: Run) -> None:
    r.send("a", r.req(SET_FEATURE, b"\0" * 8))


@case("rules_list", "AUDIT_LIST_RULES: ACK, one NLM_F_MULTI message per rule, then a bare NLMSG_DONE")
def _rules_list(r: Run) -> None:
    r.send("a", r.req(LIST_RULES))


@case("rule_add_list_delete", "a syscall rule is added, listed back as the kernel stores it, and deleted")
def _rule_add(r: Run) -> None:
    r.send("a", r.req(ADD_RULE, NET_RULE))
    r.send("a", r.req(LIST_RULES))
    r.send("a", r.req(DEL_RULE, NET_RULE))
    r.send("a", r.req(LIST_RULES))


@case("rule_add_duplicate", "adding the same rule twice is EEXIST (the error echoes the padded request)")
def _rule_dup(r: Run) -> None:
    r.send("a", r.req(ADD_RULE, NET_RULE))
    r.send("a", r.req(ADD_RULE, NET_RULE))
    r.send("a", r.req(DEL_RULE, NET_RULE))


@case("rule_delete_missing", "deleting a rule that is not there is ENOENT")
def _rule_missing(r: Run) -> None:
    r.send("a", r.req(DEL_RULE, NET_RULE))


@case("rule_change_records", "with audit on, rule changes are logged with key, list and result")
def _rule_records(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(enabled=1)))
    r.send("a", r.req(ADD_RULE, NET_RULE))
    r.send("a", r.req(ADD_RULE, NET_RULE))
    r.send("a", r.req(DEL_RULE, NET_RULE))
    r.send("a", r.req(DEL_RULE, NET_RULE))
    r.send("a", r.req(ADD_RULE, EXECVE_RULE))
    r.send("a", r.req(DEL_RULE, EXECVE_RULE))
    r.send("a", r.req(SET, _st(enabled=0)))


@case("rule_invalid", "invalid rules: unknown list, deprecated entry list, action possible, 65 fields, bad operator, "
      "unknown field, key too long, two keys, short struct, empty payload (all EINVAL)")
def _rule_invalid(r: Run) -> None:
    for payload in (
        rule_data(flags=99, syscalls=(42,)),
        rule_data(flags=2, syscalls=(42,)),
        rule_data(action=1, syscalls=(42,)),
        rule_data(syscalls=(42,), field_count=65),
        rule_data(fields=((FLD["PID"], 0x12345678, 1),), syscalls=(42,)),
        rule_data(fields=((99, EQ, 1),), syscalls=(42,)),
        rule_data(fields=((FLD["FILTERKEY"], EQ, "k" * 257),), syscalls=(42,)),
        rule_data(fields=((FLD["FILTERKEY"], EQ, "a"), (FLD["FILTERKEY"], EQ, "b")), syscalls=(42,)),
        rule_data(fields=((FLD["FILTERKEY"], EQ, 0),), syscalls=(42,)),
        rule_data(fields=((FLD["FILTERKEY"], EQ, 5),), syscalls=(42,)),
        NET_RULE[: RULE_DATA_SIZE - 4],
        b"",
    ):
        r.send("a", r.req(ADD_RULE, payload))


@case("rule_field_checks", "per-field checks: bit operators only on arguments, msgtype only on user/exclude, "
      "fstype only on fs, uid -1 invalid, unchecked values accepted as the kernel accepts them")
def _rule_fields(r: Run) -> None:
    accepted = (
        rule_data(fields=((FLD["ARG0"], BITMASK, 1),), syscalls=(42,)),
        rule_data(fields=((FLD["SADDR_FAM"], EQ, 1000),), syscalls=(42,)),
        rule_data(fields=((FLD["PERM"], EQ, 16),), syscalls=(42,)),
        rule_data(fields=((FLD["INODE"], NE, 5),), syscalls=(42,)),
    )
    refused = (
        rule_data(fields=((FLD["UID"], BITMASK, 0),), syscalls=(42,)),
        rule_data(fields=((FLD["MSGTYPE"], EQ, 1305),), syscalls=(42,)),
        rule_data(fields=((FLD["FSTYPE"], EQ, 0x9FA0),), syscalls=(42,)),
        rule_data(flags=6, action=0, fields=((FLD["UID"], EQ, 0),)),
        rule_data(fields=((FLD["UID"], EQ, 0xFFFFFFFF),), syscalls=(42,)),
        rule_data(fields=((FLD["ARCH"], 0x10000000, 1),), syscalls=(42,)),
    )
    for payload in accepted:
        r.send("a", r.req(ADD_RULE, payload))
    for payload in refused:
        r.send("a", r.req(ADD_RULE, payload))
    r.send("a", r.req(LIST_RULES))
    for payload in accepted:
        r.send("a", r.req(DEL_RULE, payload))


@case("rule_all_syscalls", "-S all: the kernel clears the 16 syscall-class bits before it stores the mask")
def _rule_all(r: Run) -> None:
    payload = rule_data(mask=ALL_SYSCALLS, fields=((FLD["FILTERKEY"], EQ, "all"),))
    r.send("a", r.req(ADD_RULE, payload))
    r.send("a", r.req(LIST_RULES))
    r.send("a", r.req(DEL_RULE, payload))


@case("rule_loginuid_legacy", "auid=-1 is stored as loginuid_set=0 and listed back as auid=-1")
def _rule_legacy(r: Run) -> None:
    payload = rule_data(fields=((FLD["LOGINUID"], NE, 0xFFFFFFFF),), syscalls=(59,))
    r.send("a", r.req(ADD_RULE, payload))
    r.send("a", r.req(LIST_RULES))
    r.send("a", r.req(DEL_RULE, payload))


@case("rule_prepend", "-A puts a rule first and is listed without the prepend flag; a -A copy of a stored rule is "
      "no duplicate, but once stored the flag is gone (a plain copy is EEXIST, deleting with -A is ENOENT)")
def _rule_prepend(r: Run) -> None:
    prepend = rule_data(flags=4 | 0x10, fields=((FLD["ARCH"], EQ, 0xC000003E),), syscalls=(59,))
    r.send("a", r.req(ADD_RULE, NET_RULE))
    r.send("a", r.req(ADD_RULE, EXECVE_RULE))
    r.send("a", r.req(ADD_RULE, prepend))
    r.send("a", r.req(LIST_RULES))
    r.send("a", r.req(ADD_RULE, EXECVE_RULE))
    r.send("a", r.req(DEL_RULE, prepend))
    r.send("a", r.req(DEL_RULE, EXECVE_RULE))
    r.send("a", r.req(DEL_RULE, EXECVE_RULE))
    r.send("a", r.req(DEL_RULE, NET_RULE))


@case("rule_watch", "a watch (-w /etc/passwd -p wa): added, listed, deleted; relative path EINVAL, missing parent ENOENT")
def _rule_watch(r: Run) -> None:
    r.send("a", r.req(ADD_RULE, WATCH_RULE))
    r.send("a", r.req(LIST_RULES))
    r.send("a", r.req(DEL_RULE, WATCH_RULE))
    r.send("a", r.req(ADD_RULE, rule_data(mask=ALL_SYSCALLS, fields=((FLD["WATCH"], EQ, "etc/passwd"),))))
    r.send("a", r.req(ADD_RULE, rule_data(mask=ALL_SYSCALLS, fields=((FLD["WATCH"], EQ, "/etc/"),))))
    r.send("a", r.req(ADD_RULE, rule_data(mask=ALL_SYSCALLS, fields=((FLD["WATCH"], EQ, "/nonexistent-kaudit/x"),))))


@case("rule_dir_and_exe", "directory (tree) and exe rules, and their EINVAL/ENOENT refusals")
def _rule_dir_exe(r: Run) -> None:
    tree = rule_data(mask=ALL_SYSCALLS, fields=((FLD["DIR"], EQ, "/etc"), (FLD["PERM"], EQ, 2)))
    exe = rule_data(fields=((FLD["EXE"], EQ, "/usr/bin/kaudit-no-such-exe"),), syscalls=(42,))
    r.send("a", r.req(ADD_RULE, tree))
    r.send("a", r.req(ADD_RULE, exe))
    r.send("a", r.req(LIST_RULES))
    r.send("a", r.req(DEL_RULE, tree))
    r.send("a", r.req(DEL_RULE, exe))
    r.send("a", r.req(ADD_RULE, rule_data(mask=ALL_SYSCALLS, fields=((FLD["DIR"], EQ, "/nonexistent-kaudit"),))))
    r.send("a", r.req(ADD_RULE, rule_data(fields=((FLD["EXE"], EQ, "curl"),), syscalls=(42,))))
    r.send("a", r.req(ADD_RULE, rule_data(fields=((FLD["EXE"], EQ, "/nonexistent-kaudit/curl"),), syscalls=(42,))))


@case("exclude_and_user_filters", "an exclude rule drops CONFIG_CHANGE records; a user-list never rule drops user messages")
def _filters(r: Run) -> None:
    exclude = rule_data(flags=5, action=0, fields=((FLD["MSGTYPE"], EQ, CONFIG_CHANGE),))
    user = rule_data(flags=0, action=0, fields=((FLD["MSGTYPE"], EQ, USER),))
    r.open("obs", multicast=True)
    r.send("a", r.req(SET, _st(enabled=1)))
    r.send("a", r.req(ADD_RULE, exclude))
    r.send("a", r.req(SET, _st(rate_limit=0)))
    r.send("a", r.req(DEL_RULE, exclude))
    r.send("a", r.req(ADD_RULE, user))
    r.send("a", r.req(USER, b"dropped by the user filter\0"))
    r.send("a", r.req(DEL_RULE, user))
    r.send("a", r.req(USER, b"logged\0"))
    r.send("a", r.req(SET, _st(enabled=0)))


@case("unknown_types", "types the kernel does not handle: EINVAL for unknown, EOPNOTSUPP for the obsolete LIST/ADD/DEL")
def _unknown(r: Run) -> None:
    for mtype in (999, 1099, 1002, 1003, 1004, nl.NLMSG_NOOP, nl.NLMSG_DONE, 3000, 1006):
        r.send("a", r.req(mtype, b"abcd"))


@case("user_messages", "user messages: ACKed and dropped while audit is off, logged while on, EINVAL when empty")
def _user_msgs(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(USER, b"while off\0"))
    r.send("a", r.req(SET, _st(enabled=1)))
    r.send("a", r.req(USER, b"hello world\0"))
    r.send("a", r.req(1100, b"ab\x01c"))
    r.send("a", r.req(2100, b"second range\0"))
    r.send("a", r.req(USER, b"x"))
    r.send("a", r.req(SET, _st(enabled=0)))


@case("signal_info_and_tty", "AUDIT_SIGNAL_INFO, AUDIT_TTY_GET, AUDIT_TTY_SET (valid and invalid), AUDIT_TRIM, AUDIT_MAKE_EQUIV")
def _misc(r: Run) -> None:
    r.open("obs", multicast=True)
    r.send("a", r.req(SIGNAL_INFO))
    r.send("a", r.req(TTY_GET))
    r.send("a", r.req(SET, _st(enabled=1)))
    r.send("a", r.req(TTY_SET, struct.pack("=II", 0, 0)))
    r.send("a", r.req(TTY_SET, struct.pack("=II", 5, 0)))
    r.send("a", r.req(TRIM))
    r.send("a", r.req(MAKE_EQUIV, b"\0" * 4))
    r.send("a", r.req(MAKE_EQUIV, struct.pack("=II", 0, 4) + b"/etc"))
    r.send("a", r.req(SET, _st(enabled=0)))


@case("malformed_datagrams", "short, overlong and zero-length headers get no answer; the socket keeps working")
def _malformed(r: Run) -> None:
    hdr = _HDR.pack
    r.send("a", hdr(16, GET, REQ_ACK, 1, 0)[:8])
    r.send("a", hdr(40, GET, REQ_ACK, 2, 0))
    r.send("a", hdr(0, GET, REQ_ACK, 3, 0))
    r.send("a", hdr(8, GET, REQ_ACK, 4, 0))
    r.send("a", r.req(GET, seq=5))


@case("several_messages_in_one_datagram", "every message is handled (unaligned lengths skip to the next 4 bytes), "
      "all ACKs come before the answers, a truncated tail is ignored")
def _multi(r: Run) -> None:
    set17 = _HDR.pack(17, SET, REQ_ACK, 1, 0) + b"\0\0\0\0"
    r.send("a", set17 + r.req(GET, seq=2))
    r.send("a", r.req(SET, _st(), seq=3) + r.req(GET, seq=4)[:10])
    r.send("a", r.req(SET, _st(), seq=5) + _HDR.pack(0, GET, REQ_ACK, 6, 0))


# --- running and comparing ----------------------------------------------------------------


@dataclass(slots=True)
class CaseResult:
    name: str
    doc: str
    identical: bool
    difference: str | None
    kernel: dict[str, object] | None = None
    simulator: dict[str, object] | None = None


def compare(kernel: dict, simulator: dict) -> str | None:
    """The first difference between two transcripts, said in one line (None: identical)."""
    for name in sorted(set(kernel) | set(simulator)):
        if name not in kernel or name not in simulator:
            return f"socket {name} exists only on the {'kernel' if name in kernel else 'simulator'} side"
        for stream in ("control", "records"):
            a, b = kernel[name][stream], simulator[name][stream]
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                if x != y:
                    for key in list(x) + [k for k in y if k not in x]:
                        if x.get(key) != y.get(key):
                            return (
                                f"socket {name}, {stream} message {i + 1} ({x.get('type')}): {key}: "
                                f"kernel {x.get(key)!r}, simulator {y.get(key)!r}"
                            )
            if len(a) != len(b):
                extra = (a if len(a) > len(b) else b)[min(len(a), len(b))]
                return (
                    f"socket {name}, {stream}: kernel sent {len(a)} messages, simulator {len(b)} "
                    f"(first extra: {extra.get('type')} {extra.get('error', extra.get('text', ''))})"
                )
    return None


@contextmanager
def _simulator_endpoint(snapshot: KernelSnapshot, hz: int) -> Iterator[str]:
    server = EndpointServer(snapshot.simulator(hz=hz))
    with tempfile.TemporaryDirectory(prefix="kaudit-conformance-") as tmp:
        server.listen(os.path.join(tmp, "sim.sock"))
        server.start()
        try:
            yield server.endpoint
        finally:
            server.stop()


def run_case(c: Case, snapshot: KernelSnapshot, *, hz: int, quiet: float = 0.12) -> CaseResult:
    """One case on the kernel (state restored in a finally), then on a fresh simulator.

    The simulator starts from the snapshot, except for the counters that move by themselves
    (lost, backlog_wait_time_actual): those are read from the kernel right before the case.
    """
    transcripts: dict[str, dict] = {}
    errors: dict[str, str] = {}
    with open_transport("kernel", rcvbuf=0) as t:
        now = AuditStatus.decode(t.request(GET)[0].payload)
    snapshot = replace(snapshot, status=replace(snapshot.status, lost=now.lost,
                                                backlog_wait_time_actual=now.backlog_wait_time_actual))
    run = Run("kernel", kernel=True, quiet=quiet)
    try:
        c.fn(run)
        transcripts["kernel"] = run.transcript()
    except Exception as exc:  # a case must not stop the others
        errors["kernel"] = f"{type(exc).__name__}: {exc}"
    finally:
        run.close_all()
        with open_transport("kernel", rcvbuf=0) as t:
            snapshot.restore(t)
        time.sleep(quiet)  # let kauditd deliver what the restore logged before the next case
    with _simulator_endpoint(snapshot, hz) as endpoint:
        run = Run(endpoint, kernel=False, quiet=min(quiet, 0.05))
        try:
            c.fn(run)
            transcripts["simulator"] = run.transcript()
        except Exception as exc:
            errors["simulator"] = f"{type(exc).__name__}: {exc}"
        finally:
            run.close_all()
    if errors:
        what = "; ".join(f"error on the {side}: {msg}" for side, msg in errors.items())
        return CaseResult(c.name, c.doc, False, what, transcripts.get("kernel"), transcripts.get("simulator"))
    diff = compare(transcripts["kernel"], transcripts["simulator"])
    return CaseResult(c.name, c.doc, diff is None, diff, transcripts["kernel"], transcripts["simulator"])


def run_conformance(
    names: list[str] | None = None,
    *,
    hz: int | None = None,
    quiet: float = 0.12,
    progress: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every case (or the named ones); raises KernelUnreachable with the kernel's reason."""
    selected = CASES if not names else [c for c in CASES if c.name in names]
    unknown = set(names or ()) - {c.name for c in CASES}
    if unknown:
        raise ValueError(f"unknown conformance case(s): {', '.join(sorted(unknown))}")
    reason = kernel_unreachable_reason()
    if reason:
        raise KernelUnreachable(reason)
    hz = hz or detect_hz()
    results = []
    with live_lock():
        with open_transport("kernel", rcvbuf=0) as t:
            snapshot = KernelSnapshot.take(t)
        try:
            for c in selected:
                res = run_case(c, snapshot, hz=hz, quiet=quiet)
                results.append(res)
                if progress:
                    progress(res)
        finally:
            with open_transport("kernel", rcvbuf=0) as t:
                snapshot.restore(t)
    return results


# --- the child process used by cases that need a second process --------------------------------


def _child_main(endpoint: str, hexes: list[str]) -> int:
    with open_transport(endpoint, rcvbuf=1 << 20) as t:
        received: list[str] = []
        for h in hexes:
            t.send_raw(bytes.fromhex(h))
            while isinstance(got := t.recv_raw(0.15), tuple):
                if got[0] == 0:
                    received.append(got[1].hex())
        print(json.dumps({"pid": os.getpid(), "port": t.port_id, "received": received}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        try:
            sys.exit(_child_main(sys.argv[2], sys.argv[3:]))
        except (TransportError, OSError) as exc:
            print(f"conformance child: {exc}", file=sys.stderr)
            sys.exit(1)
    print("usage: kaudit conformance (this module's own entry point is internal)", file=sys.stderr)
    sys.exit(2)


__all__ = ["CASES", "CaseResult", "KernelSnapshot", "KernelUnreachable", "compare", "detect_hz", "run_conformance"]
