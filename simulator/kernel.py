"""A sans-I/O model of the kernel's audit control plane (kernel/audit.c, kernel/auditfilter.c).

The model answers netlink datagrams the way Linux 6.x does, byte for byte: the ACK before the
reply, errors that echo the whole request, the errno of every refusal, CONFIG_CHANGE records
where the kernel writes them, and records delivered to the registered daemon with the short
``nlmsg_len`` and to multicast readers with the true one. Every rule here was read in the
kernel source and then measured against a real kernel (see ``kaudit conformance``); comments
name the kernel function a behaviour comes from so that the next kernel change can be traced.

No sockets here: the endpoint (simulator/endpoint.py) owns I/O. A caller feeds datagrams with
``receive(client, data)`` and collects what the kernel would send with ``take_outputs()`` and
``deliver_records()``. Outputs name the receiving :class:`Client`, not a port id, because an
unbound multicast member has no port id yet still receives.

Not modelled (documented so nobody relies on it): the syscall classes of the kernel
(``audit_register_class``) — a class bit in a rule's mask is cleared as the kernel does, but the
class's syscalls are not added; LSM contexts (``subj=``) — this machine has no LSM; the
syscall records (SYSCALL, PROCTITLE, ...) the kernel attaches to the requesting process's own
sendmsg; user-filter rules are evaluated on the fields a user message can be filtered on
(pid, uid, gid, auid, session, msgtype) only.
"""

from __future__ import annotations

import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from collector.protocol import netlink as nl
from collector.protocol._tables import ERRNO, FEATURE_BITMAP, FILTERS, OPERATORS, RECORD_TYPES, RULE_FIELDS
from collector.protocol.status import KERNEL_STATUS_FIELDS, STATUS_FIELDS, AuditFeatures, AuditStatus

# --- constants the kernel uses (include/uapi/linux/audit.h and friends) ---------------------

AUDIT_OFF, AUDIT_ON, AUDIT_LOCKED = 0, 1, 2
AUDIT_FAIL_SILENT, AUDIT_FAIL_PRINTK, AUDIT_FAIL_PANIC = 0, 1, 2
AUDIT_UID_UNSET = 0xFFFFFFFF
AUDIT_SID_UNSET = 0xFFFFFFFF
AUDIT_NLGRP_READLOG = 1
AUDIT_NLGRP_MAX = 1
AUDIT_FIRST_USER_MSG, AUDIT_LAST_USER_MSG = 1100, 1199
AUDIT_FIRST_USER_MSG2, AUDIT_LAST_USER_MSG2 = 2100, 2999
AUDIT_MESSAGE_TEXT_MAX = 8560
AUDIT_MAX_FIELDS = 64
AUDIT_BITMASK_SIZE = 64
AUDIT_SYSCALL_CLASSES = 16
AUDIT_MAX_KEY_LEN = 256
AUDIT_LAST_FEATURE = 1
AUDIT_FEATURE_NAMES = ("only_unset_loginuid", "loginuid_immutable")
AUDIT_FEATURE_VERSION = 1
PATH_MAX = 4096
RULE_DATA_SIZE = 4 * (3 + 4 * AUDIT_BITMASK_SIZE + 1)  # sizeof(struct audit_rule_data) = 1040
STATUS_SIZE = 4 * KERNEL_STATUS_FIELDS  # sizeof(struct audit_status) on 5.9+ = 44
DEFAULT_HZ = 250
DEFAULT_RCVBUF = 212992  # net.core.rmem_default

T = RECORD_TYPES
AUDIT_GET, AUDIT_SET = T["GET"], T["SET"]
AUDIT_LIST, AUDIT_ADD, AUDIT_DEL = T["LIST"], T["ADD"], T["DEL"]
AUDIT_USER, AUDIT_SIGNAL_INFO = T["USER"], T["SIGNAL_INFO"]
AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_LIST_RULES = T["ADD_RULE"], T["DEL_RULE"], T["LIST_RULES"]
AUDIT_TRIM, AUDIT_MAKE_EQUIV = T["TRIM"], T["MAKE_EQUIV"]
AUDIT_TTY_GET, AUDIT_TTY_SET = T["TTY_GET"], T["TTY_SET"]
AUDIT_SET_FEATURE, AUDIT_GET_FEATURE = T["SET_FEATURE"], T["GET_FEATURE"]
AUDIT_USER_AVC, AUDIT_USER_TTY = T["USER_AVC"], T["USER_TTY"]
AUDIT_CONFIG_CHANGE = T["CONFIG_CHANGE"]
AUDIT_FEATURE_CHANGE = T.get("FEATURE_CHANGE", 1328)
AUDIT_REPLACE = T.get("REPLACE", 1329)
AUDIT_EVENT_LISTENER = T.get("EVENT_LISTENER", 1335)

STATUS_ENABLED, STATUS_FAILURE, STATUS_PID = 0x1, 0x2, 0x4
STATUS_RATE_LIMIT, STATUS_BACKLOG_LIMIT, STATUS_BACKLOG_WAIT_TIME = 0x8, 0x10, 0x20
STATUS_LOST, STATUS_BACKLOG_WAIT_TIME_ACTUAL = 0x40, 0x80

F = RULE_FIELDS
FILTER_USER, FILTER_TASK, FILTER_ENTRY = FILTERS["USER"], FILTERS["TASK"], FILTERS["ENTRY"]
FILTER_EXIT, FILTER_EXCLUDE, FILTER_FS = FILTERS["EXIT"], FILTERS["EXCLUDE"], FILTERS["FS"]
FILTER_URING_EXIT = FILTERS.get("URING_EXIT", 7)
FILTER_PREPEND = FILTERS["PREPEND"]
AUDIT_NR_FILTERS = 8
AUDIT_NEVER, AUDIT_POSSIBLE, AUDIT_ALWAYS = 0, 1, 2
AUDIT_LOGINUID_LEGACY = 0x1  # krule->pflags

OP_EQ, OP_NE = OPERATORS["EQUAL"], OPERATORS["NOT_EQUAL"]
OP_BITMASK, OP_BITTEST = OPERATORS["BIT_MASK"], OPERATORS["BIT_TEST"]
OP_LT, OP_GT = OPERATORS["LESS_THAN"], OPERATORS["GREATER_THAN"]
OP_LE, OP_GE = OPERATORS["LESS_THAN_OR_EQUAL"], OPERATORS["GREATER_THAN_OR_EQUAL"]
VALID_OPS = frozenset({OP_EQ, OP_NE, OP_BITMASK, OP_BITTEST, OP_LT, OP_GT, OP_LE, OP_GE})

E = ERRNO
EPERM, ENOENT, EINVAL, EEXIST = E["EPERM"], E["ENOENT"], E["EINVAL"], E["EEXIST"]
EACCES, ENOTDIR, EOPNOTSUPP = E["EACCES"], E["ENOTDIR"], E["EOPNOTSUPP"]
ECONNREFUSED, EADDRINUSE, ENAMETOOLONG = E["ECONNREFUSED"], E["EADDRINUSE"], E["ENAMETOOLONG"]

_CONTROL_TYPES = frozenset(
    {AUDIT_GET, AUDIT_SET, AUDIT_GET_FEATURE, AUDIT_SET_FEATURE, AUDIT_LIST_RULES, AUDIT_ADD_RULE,
     AUDIT_DEL_RULE, AUDIT_SIGNAL_INFO, AUDIT_TTY_GET, AUDIT_TTY_SET, AUDIT_TRIM, AUDIT_MAKE_EQUIV}
)
_LSM_FIELDS = frozenset(
    F[n] for n in ("SUBJ_USER", "SUBJ_ROLE", "SUBJ_TYPE", "SUBJ_SEN", "SUBJ_CLR",
                   "OBJ_USER", "OBJ_ROLE", "OBJ_TYPE", "OBJ_LEV_LOW", "OBJ_LEV_HIGH")
)
_UID_FIELDS = frozenset(F[n] for n in ("LOGINUID", "UID", "EUID", "SUID", "FSUID", "OBJ_UID"))
_GID_FIELDS = frozenset(F[n] for n in ("GID", "EGID", "SGID", "FSGID", "OBJ_GID"))
_STRING_FIELDS = _LSM_FIELDS | {F["WATCH"], F["DIR"], F["FILTERKEY"], F["EXE"]}
# audit_field_valid(): fields on which every operator is valid ...
_ANY_OP_FIELDS = frozenset(F[n] for n in ("ARG0", "ARG1", "ARG2", "ARG3", "PERS", "DEVMINOR"))
# ... fields on which every operator but the bit operators is valid ...
_NO_BITOP_FIELDS = frozenset(
    F[n] for n in ("UID", "EUID", "SUID", "FSUID", "LOGINUID", "OBJ_UID", "GID", "EGID", "SGID", "FSGID",
                   "OBJ_GID", "PID", "MSGTYPE", "PPID", "DEVMAJOR", "EXIT", "SUCCESS", "INODE",
                   "SESSIONID", "SUBJ_SEN", "SUBJ_CLR", "OBJ_LEV_LOW", "OBJ_LEV_HIGH", "SADDR_FAM")
)
# ... and fields that only take = and !=.
_EQ_ONLY_FIELDS = frozenset(
    F[n] for n in ("SUBJ_USER", "SUBJ_ROLE", "SUBJ_TYPE", "OBJ_USER", "OBJ_ROLE", "OBJ_TYPE", "WATCH", "DIR",
                   "FILTERKEY", "LOGINUID_SET", "ARCH", "FSTYPE", "PERM", "FILETYPE", "FIELD_COMPARE", "EXE")
)

_HDR = struct.Struct("=IHHII")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


def errno_name(err: int) -> str:
    """``EEXIST`` for 17 or -17 (the kernel's name, from the generated table)."""
    n = abs(err)
    for name, num in ERRNO.items():
        if num == n and name not in ("EWOULDBLOCK", "EDEADLOCK"):
            return name
    return f"E{n}"


def untrusted(value: bytes | str) -> bytes:
    """audit_log_n_untrustedstring(): quoted when printable, else upper-case hex.

    A space, a double quote or any byte outside 0x21..0x7e counts as a control character,
    exactly as audit_string_contains_control() decides.
    """
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    if any(b == 0x22 or b < 0x21 or b > 0x7E for b in raw):
        return raw.hex().upper().encode()
    return b'"' + raw + b'"'


# --- clients and outputs --------------------------------------------------------------------


@dataclass(slots=True)
class Client:
    """One netlink socket of one process, as the kernel sees it.

    The identity fields (pid, uids, auid, ses, comm, exe, tty, capabilities) are what the
    kernel reads from ``current`` when it formats records and checks permissions; the endpoint
    fills them from SO_PEERCRED and /proc.
    """

    pid: int  # tgid of the owning process
    uid: int = 0
    gid: int = 0
    euid: int | None = None
    suid: int | None = None
    fsuid: int | None = None
    egid: int | None = None
    sgid: int | None = None
    fsgid: int | None = None
    ppid: int = 0
    auid: int = AUDIT_UID_UNSET
    ses: int = AUDIT_SID_UNSET
    comm: bytes = b""
    exe: bytes | None = None
    tty: str | None = None
    cap_audit_control: bool = True
    cap_audit_write: bool = True
    cap_audit_read: bool = True
    init_user_ns: bool = True
    init_pid_ns: bool = True
    # socket state
    port_id: int = 0
    bound: bool = False
    groups: int = 0  # multicast membership, bit 0 = AUDIT_NLGRP_READLOG
    cap_ack: bool = False  # NETLINK_CAP_ACK
    alive: bool = True
    handle: object = None  # the I/O layer's connection object

    def task_info(self) -> bytes:
        """audit_log_task_info(): the ``ppid=... exe=...`` block FEATURE_CHANGE starts with."""
        eu = self.uid if self.euid is None else self.euid
        su = self.uid if self.suid is None else self.suid
        fu = self.uid if self.fsuid is None else self.fsuid
        eg = self.gid if self.egid is None else self.egid
        sg = self.gid if self.sgid is None else self.sgid
        fg = self.gid if self.fsgid is None else self.fsgid
        head = (
            f" ppid={self.ppid} pid={self.pid} auid={self.auid} uid={self.uid} gid={self.gid}"
            f" euid={eu} suid={su} fsuid={fu} egid={eg} sgid={sg} fsgid={fg}"
            f" tty={self.tty or '(none)'} ses={self.ses} comm="
        ).encode()
        return head + untrusted(self.comm) + self.exe_field()

    def exe_field(self) -> bytes:
        """audit_log_d_path_exe()."""
        return b" exe=" + (untrusted(self.exe) if self.exe is not None else b"(null)")

    def session(self) -> bytes:
        """audit_log_session_info()."""
        return f"auid={self.auid} ses={self.ses}".encode()


@dataclass(slots=True)
class Delivery:
    """One datagram the kernel sends to one socket."""

    client: Client
    data: bytes
    kind: str  # "reply" (ACK, error, answers), "replace", "record" (to the daemon), "multicast"


@dataclass(slots=True)
class _Auditd:
    """struct auditd_connection: who is registered, by pid and port id."""

    pid: int
    port_id: int


@dataclass(slots=True)
class _Request:
    client: Client
    msg: nl.NetlinkMessage
    ack: bool
    deferred: list[Delivery]


# --- rules in the kernel's representation ---------------------------------------------------


@dataclass(slots=True)
class KernelField:
    """struct audit_field, reduced to what the kernel compares and lists back."""

    type: int
    op: int  # the wire operator value (AUDIT_EQUAL ...)
    value: int
    text: bytes | None = None  # string fields, cut at the first NUL as strlen() would


@dataclass(slots=True)
class KernelRule:
    """struct audit_krule: what audit_data_to_entry() keeps of an audit_rule_data."""

    listnr: int
    action: int
    flags: int  # AUDIT_FILTER_PREPEND or 0 (cleared once the rule is on a list)
    mask: tuple[int, ...]
    fields: list[KernelField] = field(default_factory=list)
    pflags: int = 0

    def field_of(self, ftype: int) -> KernelField | None:
        return next((f for f in self.fields if f.type == ftype), None)

    @property
    def key(self) -> bytes | None:
        f = self.field_of(F["FILTERKEY"])
        return f.text if f else None

    def same_as(self, other: KernelRule) -> bool:
        """audit_compare_rule() == 0."""
        if (self.flags, self.pflags, self.listnr, self.action, len(self.fields)) != (
            other.flags, other.pflags, other.listnr, other.action, len(other.fields)
        ):
            return False
        for a, b in zip(self.fields, other.fields, strict=True):
            if a.type != b.type or a.op != b.op:
                return False
            if a.type in _STRING_FIELDS:
                if a.text != b.text:
                    return False
            elif a.value != b.value:
                return False
        return self.mask == other.mask

    def to_data(self) -> bytes:
        """audit_krule_to_data(): the payload of one AUDIT_LIST_RULES answer."""
        n = len(self.fields)
        ftypes, values, ops = [0] * 64, [0] * 64, [0] * 64
        buf = b""
        for i, f in enumerate(self.fields):
            ftypes[i], ops[i] = f.type, f.op
            if f.type in _STRING_FIELDS:
                text = f.text or b""
                values[i] = len(text)
                buf += text
            elif f.type == F["LOGINUID_SET"] and self.pflags & AUDIT_LOGINUID_LEGACY and not f.value:
                ftypes[i], values[i] = F["LOGINUID"], AUDIT_UID_UNSET
            else:
                values[i] = f.value
        return (
            struct.pack("=3I", self.flags | self.listnr, self.action, n)
            + struct.pack("=64I", *self.mask)
            + struct.pack("=64I", *ftypes)
            + struct.pack("=64I", *values)
            + struct.pack("=64I", *ops)
            + _U32.pack(len(buf))
            + buf
        )


# --- the kernel -----------------------------------------------------------------------------


def _parent_exists(path: str) -> bool:
    parent = os.path.dirname(path.rstrip("/")) or "/"
    return os.path.isdir(parent)


class AuditKernel:
    """The audit control plane of one (simulated) kernel.

    Constructor arguments set the boot state; ``hz`` matters because the kernel keeps
    backlog_wait_time in jiffies (default 60*HZ, limit 10 times that). ``path_exists`` and
    ``dir_exists`` answer the filesystem questions that watch, exe and dir rules ask
    (defaults look at this host, as the kernel looks at its own).
    """

    def __init__(
        self,
        *,
        enabled: int = AUDIT_OFF,
        failure: int = AUDIT_FAIL_PRINTK,
        rate_limit: int = 0,
        backlog_limit: int = 64,
        backlog_wait_time: int | None = None,
        hz: int = DEFAULT_HZ,
        audit_default: bool = False,
        serial: int = 0,
        clock: Callable[[], float] = time.time,
        parent_exists: Callable[[str], bool] = _parent_exists,
        path_exists: Callable[[str], bool] = os.path.exists,
        feature_bitmap: int = FEATURE_BITMAP["ALL"],
    ) -> None:
        self.hz = hz
        self.enabled = enabled
        self.ever_enabled = bool(enabled)
        self.failure = failure
        self.rate_limit = rate_limit
        self.backlog_limit = backlog_limit
        self.backlog_wait_time = 60 * hz if backlog_wait_time is None else backlog_wait_time
        self.lost = 0
        self.backlog_wait_time_actual = 0
        self.feature_bitmap = feature_bitmap
        self.features = 0
        self.features_lock = 0
        self.sig_uid = AUDIT_UID_UNSET
        self.sig_pid = -1
        self.audit_default = audit_default
        self.serial = serial
        self.clock = clock
        self.parent_exists = parent_exists
        self.path_exists = path_exists
        self.panicked: str | None = None  # failure=2 and a record was lost: the machine is gone
        # message type -> errno the kernel answers instead of handling it (fault injection:
        # "a rule add refused by policy"); checked after the permission checks, like an LSM hook
        self.refuse: dict[int, int] = {}
        self.rules: list[list[KernelRule]] = [[] for _ in range(AUDIT_NR_FILTERS)]
        self.clients: dict[int, Client] = {}  # port id -> bound socket
        self.members: list[Client] = []  # sockets in a multicast group, bound or not
        self.tty_audit: dict[int, tuple[int, int]] = {}  # pid -> (enabled, log_passwd)
        self._auditd: _Auditd | None = None
        self._queue: deque[bytes] = deque()  # audit_queue: record payloads (text) by type
        self._queue_types: deque[int] = deque()
        self._hold: deque[tuple[int, bytes]] = deque()
        self._out: list[Delivery] = []
        self._rover = -4096
        self._rate_messages = 0
        self._rate_last = 0.0

    # --- state -------------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        return len(self._queue)

    @property
    def auditd_pid(self) -> int:
        return self._auditd.pid if self._auditd else 0

    @property
    def auditd_port(self) -> int:
        return self._auditd.port_id if self._auditd else 0

    def status(self) -> AuditStatus:
        """What AUDIT_GET answers right now."""
        return AuditStatus(
            mask=0,
            enabled=self.enabled,
            failure=self.failure,
            pid=self.auditd_pid,
            rate_limit=self.rate_limit,
            backlog_limit=self.backlog_limit,
            lost=self.lost,
            backlog=self.backlog,
            feature_bitmap=self.feature_bitmap,
            backlog_wait_time=self.backlog_wait_time,
            backlog_wait_time_actual=self.backlog_wait_time_actual,
            nfields=KERNEL_STATUS_FIELDS,
        )

    def feature_state(self) -> AuditFeatures:
        return AuditFeatures(vers=AUDIT_FEATURE_VERSION, mask=0xFFFFFFFF, features=self.features, lock=self.features_lock)

    def rule_list(self) -> list[KernelRule]:
        """Rules in the order AUDIT_LIST_RULES sends them (by list, then list order)."""
        return [r for lst in self.rules for r in lst]

    def rule_payloads(self) -> list[bytes]:
        return [r.to_data() for r in self.rule_list()]

    def rule_objects(self) -> list[object]:
        """The rules as collector.protocol.rules.AuditRuleData (needs that module)."""
        from collector.protocol.rules import AuditRuleData  # optional: only when asked for

        return [AuditRuleData.decode(p) for p in self.rule_payloads()]

    def load(
        self,
        status: AuditStatus | dict[str, int] | None = None,
        features: AuditFeatures | None = None,
        rules: Iterable[bytes] = (),
    ) -> None:
        """Start from a known state (a snapshot of a real kernel, a scenario's ``kernel:`` block).

        ``rules`` are audit_rule_data payloads (as AUDIT_LIST_RULES returns them); each is
        validated as AUDIT_ADD_RULE would and a rejected one raises ValueError naming it.
        """
        if status is not None:
            vals = status.as_dict() if isinstance(status, AuditStatus) else dict(status)
            for name in ("enabled", "failure", "rate_limit", "backlog_limit", "backlog_wait_time", "lost",
                         "backlog_wait_time_actual", "feature_bitmap"):
                if name in vals:
                    setattr(self, name, int(vals[name]))
            self.ever_enabled = self.ever_enabled or bool(self.enabled)
        if features is not None:
            self.features, self.features_lock = features.features & 0x3, features.lock & 0x3
        for i, payload in enumerate(rules):
            rule = self._parse_rule(bytes(payload))
            if isinstance(rule, int):
                raise ValueError(f"rule {i} of the initial state: the kernel refuses it with {errno_name(rule)}")
            err = self._add_rule(rule)
            if err:
                raise ValueError(f"rule {i} of the initial state: the kernel refuses it with {errno_name(err)}")

    # --- sockets -------------------------------------------------------------------------------

    def connect(self, pid: int, **identity: object) -> Client:
        """A new, unbound netlink socket of process ``pid`` (socket(2))."""
        return Client(pid=pid, **identity)  # type: ignore[arg-type]

    def _autobind(self, client: Client) -> None:
        """netlink_autobind(): the process's tgid first, then negative port ids."""
        port = client.pid & 0xFFFFFFFF
        while port in self.clients or port == 0:
            self._rover = -4097 if self._rover >= -4096 else self._rover - 1
            port = self._rover & 0xFFFFFFFF
        client.port_id, client.bound = port, True
        self.clients[port] = client

    def bind(self, client: Client, *, port_id: int = 0, groups: int = 0) -> int:
        """netlink_bind(): 0 or a negative errno."""
        groups &= (1 << AUDIT_NLGRP_MAX) - 1
        if client.bound and port_id != client.port_id:
            return -EINVAL
        for group in range(32):
            if groups & (1 << group):
                err = self._multicast_bind(client, group + 1)
                if err:
                    return err
        if not client.bound:
            if port_id:
                if port_id in self.clients:
                    return -EADDRINUSE
                client.port_id, client.bound = port_id, True
                self.clients[port_id] = client
            else:
                self._autobind(client)
        if groups or client.groups:
            self._set_groups(client, groups)
        return 0

    def add_membership(self, client: Client, group: int) -> int:
        """setsockopt(NETLINK_ADD_MEMBERSHIP)."""
        if group <= 0 or group - 1 >= AUDIT_NLGRP_MAX:
            return -EINVAL
        err = self._multicast_bind(client, group)
        if err:
            return err
        self._set_groups(client, client.groups | (1 << (group - 1)))
        return 0

    def drop_membership(self, client: Client, group: int) -> int:
        """setsockopt(NETLINK_DROP_MEMBERSHIP)."""
        if group <= 0 or group - 1 >= AUDIT_NLGRP_MAX:
            return -EINVAL
        self._set_groups(client, client.groups & ~(1 << (group - 1)))
        self._log_multicast(client, group, "disconnect", 0)
        return 0

    def _set_groups(self, client: Client, groups: int) -> None:
        client.groups = groups
        if groups and client not in self.members:
            self.members.append(client)
        elif not groups and client in self.members:
            self.members.remove(client)

    def _multicast_bind(self, client: Client, group: int) -> int:
        """audit_multicast_bind(): CAP_AUDIT_READ, logged as EVENT_LISTENER when enabled."""
        err = 0 if client.cap_audit_read else -EPERM
        self._log_multicast(client, group, "connect", err)
        return err

    def _log_multicast(self, client: Client, group: int, op: str, err: int) -> None:
        """audit_log_multicast()."""
        if not self.enabled:
            return
        text = (
            f"pid={client.pid} uid={client.uid} auid={client.auid} tty={client.tty or '(none)'} ses={client.ses}"
            " comm="
        ).encode() + untrusted(client.comm) + client.exe_field() + f" nl-mcgrp={group} op={op} res={int(not err)}".encode()
        self._log(AUDIT_EVENT_LISTENER, text)

    def disconnect(self, client: Client) -> None:
        """close(2) of the socket: netlink_release().

        The kernel does *not* forget a registered daemon here: auditd_conn keeps the pid and
        port id until a send to it fails (ECONNREFUSED), so AUDIT_GET still shows the pid of a
        daemon that has closed its socket until the next record or registration attempt.
        """
        if not client.alive:
            return
        client.alive = False
        for group in range(32):
            if client.groups & (1 << group):
                self._log_multicast(client, group + 1, "disconnect", 0)
        self._set_groups(client, 0)
        if client.bound and self.clients.get(client.port_id) is client:
            del self.clients[client.port_id]

    # --- outputs ------------------------------------------------------------------------------

    def take_outputs(self) -> list[Delivery]:
        """Datagrams the kernel has sent since the last call (replies, ACKs, AUDIT_REPLACE)."""
        out, self._out = self._out, []
        return out

    def _unicast(self, port_id: int, data: bytes, kind: str) -> int:
        """netlink_unicast() to a port id: 0, or -ECONNREFUSED when nobody is bound there."""
        client = self.clients.get(port_id)
        if client is None or not client.alive:
            return -ECONNREFUSED
        self._out.append(Delivery(client, data, kind))
        return 0

    def _reply(self, req: _Request, mtype: int, payload: bytes, *, flags: int = 0) -> None:
        """audit_send_reply(): sent after the request datagram is processed (after every ACK)."""
        data = nl.encode(nl.NetlinkMessage(mtype, flags, req.msg.seq, 0, payload), short_len=False)
        req.deferred.append(Delivery(req.client, data, "reply"))

    def _ack(self, client: Client, msg: nl.NetlinkMessage, err: int) -> None:
        """netlink_ack(): the request header only for a plain ACK, the whole request otherwise."""
        data = nl.ack_datagram(err, msg, client.port_id, cap_ack=client.cap_ack)
        self._out.append(Delivery(client, data, "reply"))

    # --- records ------------------------------------------------------------------------------

    def emit_record(
        self,
        rtype: int,
        text: str | bytes,
        *,
        stamp: tuple[int, int, int] | None = None,
        even_if_disabled: bool = False,
        from_auditd: bool = False,
    ) -> int | None:
        """Queue one record as audit_log_start()/audit_log_end() would; returns its serial.

        ``text`` is the record body; when it already starts with ``audit(`` it is sent as is
        (replay of recorded traffic), else ``audit(SEC.MSEC:SERIAL): `` is put in front, from
        ``stamp`` or from the clock and the next serial. None means the record was not made:
        audit is off (syscall auditing and almost every kernel record need ``enabled != 0``;
        ``even_if_disabled`` is for the few that do not, such as CONFIG_CHANGE), an exclude rule
        matched, or the backlog or rate limit lost it (``lost`` then counts it, and failure=2
        marks the kernel as panicked). ``from_auditd``: emitted by the daemon's own context,
        which the kernel never makes wait for the backlog.
        """
        if not self.enabled and not even_if_disabled:
            return None
        return self._emit(rtype, text, stamp=stamp, ctl_owner=from_auditd)

    def lose_records(self, count: int = 1, reason: str = "backlog limit exceeded") -> None:
        """Count records as lost inside the kernel (audit_log_lost(), with its panic on failure=2)."""
        for _ in range(count):
            self._log_lost(reason)

    def phantom_daemon(self, pid: int) -> Client:
        """Another process takes the daemon registration (its socket is not served by anyone).

        The current daemon gets the AUDIT_REPLACE the kernel sends when someone asks, and from
        then on records go to the phantom, i.e. nowhere a client can see, until someone else
        registers or the phantom is disconnected.
        """
        phantom = self.connect(pid, comm=b"phantom")
        self._autobind(phantom)
        old = self.auditd_pid
        self._audit_replace(pid)
        self._auditd = _Auditd(pid, phantom.port_id)
        if self.enabled != AUDIT_OFF:
            self._log_config_change(phantom, "audit_pid", pid, old, 1)
        return phantom

    def note_signal(self, pid: int, uid: int, *, target: int | None = None) -> bool:
        """``audit_signal_info()``: someone signals the audit daemon; the kernel remembers who.

        ``pid`` is the sender's tgid, ``uid`` its loginuid, or its uid when the loginuid is
        unset (the kernel's choice); AUDIT_SIGNAL_INFO answers with them, and auditd logs them
        in DAEMON_END. ``target``: the pid signalled; the kernel remembers only signals to the
        registered daemon (``auditd_test_task``), so for another pid nothing changes and False
        is returned. The kernel does this for SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2, which is
        the caller's to check.
        """
        if target is not None and (not self.auditd_pid or target != self.auditd_pid):
            return False
        self.sig_pid, self.sig_uid = pid, uid & 0xFFFFFFFF
        return True

    def _log(self, rtype: int, text: bytes) -> None:
        """A record the kernel writes while holding the control mutex (never backlog-blocked)."""
        self._emit(rtype, text, stamp=None, ctl_owner=True)

    def _emit(self, rtype: int, text: str | bytes, *, stamp: tuple[int, int, int] | None, ctl_owner: bool) -> int | None:
        body = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
        if not self._filter_exclude(rtype):
            return None
        if not ctl_owner and self.backlog_limit and len(self._queue) > self.backlog_limit:
            self._log_lost("backlog limit exceeded")
            return None
        if body.startswith(b"audit("):
            payload = body
            serial = _serial_of(body)
        else:
            if stamp is None:
                self.serial = (self.serial + 1) & 0xFFFFFFFF
                millis = int(round(self.clock() * 1000))  # round: a float clock is not exact
                sec, msec, serial = millis // 1000, millis % 1000, self.serial
            else:
                sec, msec, serial = stamp
            payload = f"audit({sec}.{msec:03d}:{serial}): ".encode() + body
        if not self._rate_check():
            self._log_lost("rate limit exceeded")
            return None
        self._queue.append(payload)
        self._queue_types.append(rtype)
        return serial

    def _rate_check(self) -> bool:
        """audit_rate_check(): at most rate_limit records per second."""
        if not self.rate_limit:
            return True
        self._rate_messages += 1
        if self._rate_messages < self.rate_limit:
            return True
        now = self.clock()
        if now - self._rate_last > 1.0:
            self._rate_last, self._rate_messages = now, 0
            return True
        return False

    def _log_lost(self, message: str) -> None:
        """audit_log_lost(): count, and panic when failure=2 says so."""
        self.lost = (self.lost + 1) & 0xFFFFFFFF
        if self.failure == AUDIT_FAIL_PANIC:
            self.panicked = f"audit: {message}"

    def deliver_records(self, *, limit: int | None = None, daemon_ready: bool = True) -> int:
        """kauditd_thread(): move queued records to their readers; returns how many moved.

        Each record goes to every multicast member with its true nlmsg_len, then to the
        registered daemon with the short one. ``daemon_ready=False`` (the daemon's socket
        is full) leaves records queued, where they count as ``backlog`` and, past
        backlog_limit, make new records lost, as a daemon that stops reading does.
        """
        moved = 0
        if self._auditd and daemon_ready:
            while self._hold and self._auditd:
                rtype, payload = self._hold[0]
                if self._unicast(self._auditd.port_id, _record(rtype, payload, short=True), "record"):
                    self._auditd = None  # auditd_reset()
                    break
                self._hold.popleft()
        while self._queue and (limit is None or moved < limit):
            if self._auditd and not daemon_ready:
                break
            payload, rtype = self._queue.popleft(), self._queue_types.popleft()
            moved += 1
            for member in list(self.members):
                if member.alive and member.groups & 1:
                    self._out.append(Delivery(member, _record(rtype, payload, short=False), "multicast"))
            if self._auditd:
                if self._unicast(self._auditd.port_id, _record(rtype, payload, short=True), "record") == 0:
                    continue
                self._auditd = None  # auditd_reset(): the daemon is gone
            self._hold_record(rtype, payload)
        return moved

    def _hold_record(self, rtype: int, payload: bytes) -> None:
        """kauditd_hold_skb(): keep for a future daemon only when booted with audit=1."""
        if not self.audit_default:
            return
        if not self.backlog_limit or len(self._hold) < self.backlog_limit:
            self._hold.append((rtype, payload))
            return
        self._log_lost("kauditd hold queue overflow")

    def _filter_exclude(self, rtype: int) -> bool:
        """audit_filter(type, AUDIT_FILTER_EXCLUDE): False when a `never` rule drops the type."""
        return self._filter_list(FILTER_EXCLUDE, rtype, None)

    def _filter_user(self, rtype: int, client: Client) -> bool:
        return self._filter_list(FILTER_USER, rtype, client)

    def _filter_list(self, listnr: int, rtype: int, client: Client | None) -> bool:
        """audit_filter(): the first rule whose fields all match decides; default is to log.

        A rule without fields never matches, and on the exclude list a match drops the
        record whatever the rule's action says (both as the kernel's loop is written).
        """
        for rule in self.rules[listnr]:
            if rule.fields and all(self._field_matches(f, rtype, client) for f in rule.fields):
                return not (rule.action == AUDIT_NEVER or listnr == FILTER_EXCLUDE)
        return True

    @staticmethod
    def _field_matches(f: KernelField, rtype: int, client: Client | None) -> bool:
        values = {F["MSGTYPE"]: rtype}
        if client is not None:
            values.update({F["PID"]: client.pid, F["UID"]: client.uid, F["GID"]: client.gid,
                           F["LOGINUID"]: client.auid, F["SESSIONID"]: client.ses,
                           F["LOGINUID_SET"]: int(client.auid != AUDIT_UID_UNSET)})
        if f.type not in values:
            return True  # fields this model cannot see (LSM labels ...) do not veto
        return _compare(values[f.type], f.op, f.value)

    # --- the receive path ---------------------------------------------------------------------

    def receive(self, client: Client, data: bytes) -> None:
        """audit_receive(): every message of one datagram, as the kernel walks it.

        A datagram too short for a header, or whose nlmsg_len is below 16 or past the end,
        ends the walk silently (nlmsg_ok()); nothing is answered for it, exactly as the kernel
        does. Replies are sent after the whole datagram, after every ACK.
        """
        if not client.bound:
            self._autobind(client)  # netlink_sendmsg() autobinds
        deferred: list[Delivery] = []
        remaining, off = len(data), 0
        while remaining >= nl.NLMSG_HDRLEN:
            length, mtype, flags, seq, pid = _HDR.unpack_from(data, off)
            if length < nl.NLMSG_HDRLEN or length > remaining:
                break
            msg = nl.NetlinkMessage(mtype, flags, seq, pid, bytes(data[off + nl.NLMSG_HDRLEN : off + length]))
            req = _Request(client, msg, bool(flags & nl.NLM_F_ACK), deferred)
            err = self._receive_msg(req)
            if req.ack or err:
                self._ack(client, msg, err)
            step = nl.align(length)
            off += step
            remaining -= step
        self._out.extend(deferred)

    def _netlink_ok(self, client: Client, mtype: int) -> int:
        """audit_netlink_ok()."""
        if not client.init_user_ns:
            return -ECONNREFUSED
        if mtype in (AUDIT_LIST, AUDIT_ADD, AUDIT_DEL):
            return -EOPNOTSUPP
        if mtype in _CONTROL_TYPES:
            if not client.init_pid_ns:
                return -EPERM
            return 0 if client.cap_audit_control else -EPERM
        if _is_user_msg(mtype):
            return 0 if client.cap_audit_write else -EPERM
        return -EINVAL

    def _receive_msg(self, req: _Request) -> int:
        """audit_receive_msg(): 0, a negative errno, or (lost reset) a positive count."""
        mtype = req.msg.type
        err = self._netlink_ok(req.client, mtype)
        if err:
            return err
        if mtype in self.refuse:
            return -abs(self.refuse[mtype])
        data = req.msg.payload
        if mtype == AUDIT_GET:
            self._reply(req, AUDIT_GET, self.status().encode())
            return 0
        if mtype == AUDIT_SET:
            return self._set_status(req)
        if mtype == AUDIT_GET_FEATURE:
            self._reply(req, AUDIT_GET_FEATURE, self.feature_state().encode())
            return 0
        if mtype == AUDIT_SET_FEATURE:
            if len(data) < 16:
                return -EINVAL
            return self._set_feature(req.client, AuditFeatures.decode(data))
        if _is_user_msg(mtype):
            return self._user_msg(req)
        if mtype in (AUDIT_ADD_RULE, AUDIT_DEL_RULE):
            if len(data) < RULE_DATA_SIZE:
                return -EINVAL
            if self.enabled == AUDIT_LOCKED:
                op = "add_rule" if mtype == AUDIT_ADD_RULE else "remove_rule"
                self._log_recv(req.client, AUDIT_CONFIG_CHANGE, f" op={op} audit_enabled={self.enabled} res=0".encode())
                return -EPERM
            return self._rule_change(req.client, mtype, data)
        if mtype == AUDIT_LIST_RULES:
            for rule in self.rule_list():
                self._reply(req, AUDIT_LIST_RULES, rule.to_data(), flags=nl.NLM_F_MULTI)
            self._reply(req, nl.NLMSG_DONE, b"", flags=nl.NLM_F_MULTI)
            return 0
        if mtype == AUDIT_TRIM:
            self._log_recv(req.client, AUDIT_CONFIG_CHANGE, b" op=trim res=1")
            return 0
        if mtype == AUDIT_MAKE_EQUIV:
            return self._make_equiv(req.client, data)
        if mtype == AUDIT_SIGNAL_INFO:
            self._reply(req, AUDIT_SIGNAL_INFO, struct.pack("=Ii", self.sig_uid, self.sig_pid))
            return 0
        if mtype == AUDIT_TTY_GET:
            self._reply(req, AUDIT_TTY_GET, struct.pack("=II", *self.tty_audit.get(req.client.pid, (0, 0))))
            return 0
        if mtype == AUDIT_TTY_SET:
            return self._tty_set(req.client, data)
        return -EINVAL

    # --- AUDIT_SET ------------------------------------------------------------------------------

    def _set_status(self, req: _Request) -> int:
        """The AUDIT_SET case: each masked field in the kernel's order, stopping at the first error."""
        data = req.msg.payload[:STATUS_SIZE]
        s = AuditStatus.decode(data + b"\0" * (STATUS_SIZE - len(data)))
        client = req.client
        if s.mask & STATUS_ENABLED:
            if s.enabled > AUDIT_LOCKED:
                return -EINVAL
            err = self._do_config_change(client, "audit_enabled", "enabled", s.enabled)
            if err:
                return err
            self.ever_enabled = self.ever_enabled or bool(s.enabled)
        if s.mask & STATUS_FAILURE:
            if s.failure not in (AUDIT_FAIL_SILENT, AUDIT_FAIL_PRINTK, AUDIT_FAIL_PANIC):
                return -EINVAL
            err = self._do_config_change(client, "audit_failure", "failure", s.failure)
            if err:
                return err
        if s.mask & STATUS_PID:
            err = self._set_pid(req, s.pid)
            if err:
                return err
        if s.mask & STATUS_RATE_LIMIT:
            err = self._do_config_change(client, "audit_rate_limit", "rate_limit", s.rate_limit)
            if err:
                return err
        if s.mask & STATUS_BACKLOG_LIMIT:
            err = self._do_config_change(client, "audit_backlog_limit", "backlog_limit", s.backlog_limit)
            if err:
                return err
        if s.mask & STATUS_BACKLOG_WAIT_TIME:
            # the kernel compares sizeof(struct audit_status) with nlmsg_len, header included
            if STATUS_SIZE > nl.NLMSG_HDRLEN + len(req.msg.payload):
                return -EINVAL
            if s.backlog_wait_time > 10 * 60 * self.hz:
                return -EINVAL
            err = self._do_config_change(client, "audit_backlog_wait_time", "backlog_wait_time", s.backlog_wait_time)
            if err:
                return err
        if s.mask == STATUS_LOST:
            lost, self.lost = self.lost, 0
            self._log_config_change(client, "lost", 0, lost, 1)
            return lost
        if s.mask == STATUS_BACKLOG_WAIT_TIME_ACTUAL:
            actual, self.backlog_wait_time_actual = self.backlog_wait_time_actual, 0
            self._log_config_change(client, "backlog_wait_time_actual", 0, actual, 1)
            return actual
        return 0

    def _do_config_change(self, client: Client, name: str, attr: str, new: int) -> int:
        """audit_do_config_change(): refused with EPERM (and logged) while enabled=2."""
        old = getattr(self, attr)
        allow = self.enabled != AUDIT_LOCKED
        if self.enabled != AUDIT_OFF:
            self._log_config_change(client, name, new, old, int(allow))
        if allow:
            setattr(self, attr, new)
            return 0
        return -EPERM

    def _log_config_change(self, client: Client, name: str, new: int, old: int, res: int) -> None:
        """audit_log_config_change()."""
        self._log(AUDIT_CONFIG_CHANGE, f"op=set {name}={new} old={old} ".encode() + client.session() + f" res={res}".encode())

    def _set_pid(self, req: _Request, raw_pid: int) -> int:
        """Daemon registration (the AUDIT_STATUS_PID branch)."""
        client = req.client
        new_pid = raw_pid - (1 << 32) if raw_pid & 0x80000000 else raw_pid
        if new_pid and new_pid != client.pid:
            return -EINVAL  # "Sanity check - PID values must match"
        self._audit_replace(client.pid)
        auditd_pid = self.auditd_pid
        if auditd_pid:
            if new_pid:
                self._log_config_change(client, "audit_pid", new_pid, auditd_pid, 0)
                return -EEXIST  # replacing a healthy auditd is not allowed
            if client.pid != auditd_pid:
                self._log_config_change(client, "audit_pid", new_pid, auditd_pid, 0)
                return -EACCES  # only the current auditd can unregister itself
        if new_pid:
            if req.ack:  # auditd_set() ACKs before the first record can reach the daemon
                self._ack(client, req.msg, 0)
                req.ack = False
            self._auditd = _Auditd(client.pid, client.port_id)
            if self.enabled != AUDIT_OFF:
                self._log_config_change(client, "audit_pid", new_pid, auditd_pid, 1)
        else:
            if self.enabled != AUDIT_OFF:
                self._log_config_change(client, "audit_pid", new_pid, auditd_pid, 1)
            self._auditd = None
        return 0

    def _audit_replace(self, pid: int) -> None:
        """audit_replace(): tell the registered daemon who asks; a dead daemon is reset here."""
        if self._auditd is None:
            return
        data = nl.encode(nl.NetlinkMessage(AUDIT_REPLACE, 0, 0, 0, _I32.pack(pid)), short_len=False)
        if self._unicast(self._auditd.port_id, data, "replace"):
            self._auditd = None

    # --- features -----------------------------------------------------------------------------

    def _set_feature(self, client: Client, uaf: AuditFeatures) -> int:
        """audit_set_feature(): all-or-nothing; a locked feature refuses a change with EPERM."""
        for i in range(AUDIT_LAST_FEATURE + 1):
            bit = 1 << i
            if not uaf.mask & bit:
                continue
            old_f, new_f = self.features & bit, uaf.features & bit
            old_l, new_l = self.features_lock & bit, (uaf.lock | self.features_lock) & bit
            if old_l and new_f != old_f:
                self._log_feature_change(client, i, old_f, new_f, old_l, new_l, 0)
                return -EPERM
        for i in range(AUDIT_LAST_FEATURE + 1):
            bit = 1 << i
            if not uaf.mask & bit:
                continue
            old_f, new_f = self.features & bit, uaf.features & bit
            old_l, new_l = self.features_lock & bit, (uaf.lock | self.features_lock) & bit
            if new_f != old_f:
                self._log_feature_change(client, i, old_f, new_f, old_l, new_l, 1)
            self.features = (self.features | bit) if new_f else (self.features & ~bit)
            self.features_lock |= new_l
        return 0

    def _log_feature_change(self, client: Client, i: int, old_f: int, new_f: int, old_l: int, new_l: int, res: int) -> None:
        if self.enabled == AUDIT_OFF:
            return
        tail = (
            f" feature={AUDIT_FEATURE_NAMES[i]} old={int(bool(old_f))} new={int(bool(new_f))}"
            f" old_lock={int(bool(old_l))} new_lock={int(bool(new_l))} res={res}"
        )
        self._log(AUDIT_FEATURE_CHANGE, client.task_info() + tail.encode())

    # --- user messages, tty, trim, make_equiv ---------------------------------------------

    def _log_recv(self, client: Client, rtype: int, tail: bytes) -> None:
        """audit_log_common_recv_msg() + tail; nothing while audit is off (except USER_AVC)."""
        if not self.enabled and rtype != AUDIT_USER_AVC:
            return
        self._log(rtype, f"pid={client.pid} uid={client.uid} ".encode() + client.session() + tail)

    def _user_msg(self, req: _Request) -> int:
        mtype, data = req.msg.type, req.msg.payload
        if not self.enabled and mtype != AUDIT_USER_AVC:
            return 0
        if len(data) < 2:
            return -EINVAL
        if not self._filter_user(mtype, req.client):
            return 0
        if mtype == AUDIT_USER_TTY:
            n = len(data) - 1 if data[-1:] == b"\0" else len(data)
            self._log_recv(req.client, mtype, b" data=" + untrusted(data[:n]))
        else:
            text = data[: len(data) - 1].split(b"\0", 1)[0][:AUDIT_MESSAGE_TEXT_MAX]
            self._log_recv(req.client, mtype, b" msg='" + text + b"'")
        return 0

    def _tty_set(self, client: Client, data: bytes) -> int:
        raw = (data[:8] + b"\0" * 8)[:8]
        enabled, log_passwd = struct.unpack("=II", raw)
        err = 0
        if enabled not in (0, 1) or log_passwd not in (0, 1):
            err = -EINVAL
        old = self.tty_audit.get(client.pid, (0, 0))
        if not err:
            self.tty_audit[client.pid] = (enabled, log_passwd)
        tail = (
            f" op=tty_set old-enabled={old[0]} new-enabled={_signed(enabled)} old-log_passwd={old[1]}"
            f" new-log_passwd={_signed(log_passwd)} res={int(not err)}"
        )
        self._log_recv(client, AUDIT_CONFIG_CHANGE, tail.encode())
        return err

    def _make_equiv(self, client: Client, data: bytes) -> int:
        if len(data) < 8:
            return -EINVAL
        sizes = struct.unpack_from("=II", data)
        rest, strings = data[8:], []
        for size in sizes:
            if size == 0 or size > len(rest):
                return -EINVAL
            if size > PATH_MAX:
                return -ENAMETOOLONG
            strings.append(rest[:size].split(b"\0", 1)[0])
            rest = rest[size:]
        old, new = strings
        err = 0
        if not self.path_exists(new.decode("utf-8", "surrogateescape")):
            err = -ENOENT
        elif not self.path_exists(old.decode("utf-8", "surrogateescape")):
            err = -ENOENT
        self._log_recv(client, AUDIT_CONFIG_CHANGE,
                       b" op=make_equiv old=" + untrusted(old) + b" new=" + untrusted(new) + f" res={int(not err)}".encode())
        return err

    # --- rules ------------------------------------------------------------------------------

    def _rule_change(self, client: Client, mtype: int, data: bytes) -> int:
        """audit_rule_change()."""
        rule = self._parse_rule(data)
        if isinstance(rule, int):
            return rule
        if mtype == AUDIT_ADD_RULE:
            err = self._add_rule(rule)
            self._log_rule_change(client, "add_rule", rule, int(not err))
        else:
            err = self._del_rule(rule)
            self._log_rule_change(client, "remove_rule", rule, int(not err))
        return err

    def _log_rule_change(self, client: Client, action: str, rule: KernelRule, res: int) -> None:
        """audit_log_rule_change()."""
        if not self.enabled:
            return
        key = rule.key
        text = client.session() + f" op={action} key=".encode() + (untrusted(key) if key is not None else b"(null)")
        self._log(AUDIT_CONFIG_CHANGE, text + f" list={rule.listnr} res={res}".encode())

    def _add_rule(self, rule: KernelRule) -> int:
        """audit_add_rule(): EEXIST for a duplicate, then what a watch or tree needs on disk."""
        lst = self.rules[rule.listnr]
        if any(rule.same_as(r) for r in lst):
            return -EEXIST
        watch = rule.field_of(F["WATCH"])
        if watch is not None and not self.parent_exists(_path(watch.text)):
            return -ENOENT
        tree = rule.field_of(F["DIR"])
        if tree is not None and not self.path_exists(_path(tree.text)):
            return -ENOENT
        if rule.flags & FILTER_PREPEND:
            rule.flags &= ~FILTER_PREPEND
            lst.insert(0, rule)
        else:
            lst.append(rule)
        return 0

    def _del_rule(self, rule: KernelRule) -> int:
        """audit_del_rule(): ENOENT when no rule compares equal."""
        lst = self.rules[rule.listnr]
        for i, r in enumerate(lst):
            if rule.same_as(r):
                del lst[i]
                return 0
        return -ENOENT

    def _parse_rule(self, data: bytes) -> KernelRule | int:
        """audit_data_to_entry(): a KernelRule or the negative errno the kernel answers.

        ``data`` is at least sizeof(struct audit_rule_data); the strings follow it and the
        kernel trusts neither buflen nor anything but the per-field lengths in values[].
        """
        flags, action, field_count = struct.unpack_from("=3I", data, 0)
        mask = list(struct.unpack_from("=64I", data, 12))
        ftypes = struct.unpack_from("=64I", data, 12 + 256)
        values = struct.unpack_from("=64I", data, 12 + 512)
        ops = struct.unpack_from("=64I", data, 12 + 768)
        # audit_to_entry_common()
        listnr = flags & ~FILTER_PREPEND & 0xFFFFFFFF
        if listnr not in (FILTER_EXIT, FILTER_URING_EXIT, FILTER_TASK, FILTER_USER, FILTER_EXCLUDE, FILTER_FS):
            return -EINVAL  # includes the deprecated AUDIT_FILTER_ENTRY
        if action not in (AUDIT_NEVER, AUDIT_ALWAYS):
            return -EINVAL  # includes the deprecated AUDIT_POSSIBLE
        if field_count > AUDIT_MAX_FIELDS:
            return -EINVAL
        for i in range(AUDIT_SYSCALL_CLASSES):
            bit = AUDIT_BITMASK_SIZE * 32 - i - 1
            mask[bit // 32] &= ~(1 << (bit % 32))  # class bits; the class lists are not modelled
        rule = KernelRule(listnr, action, flags & FILTER_PREPEND, tuple(mask))
        buf, remain = RULE_DATA_SIZE, len(data) - RULE_DATA_SIZE
        has = {"inode": None, "watch": False, "tree": False, "key": False, "exe": False}
        for i in range(field_count):
            op, ftype, val = ops[i], ftypes[i], values[i]
            if op not in VALID_OPS:
                return -EINVAL
            if ftype == F["LOGINUID"] and val == AUDIT_UID_UNSET:
                ftype, val = F["LOGINUID_SET"], 0
                rule.pflags |= AUDIT_LOGINUID_LEGACY
            err = _field_valid(listnr, ftype, op)
            if err:
                return err
            kf = KernelField(ftype, op, val)
            if ftype in _UID_FIELDS or ftype in _GID_FIELDS:
                if val == 0xFFFFFFFF:
                    return -EINVAL  # make_kuid()/make_kgid() of (uid_t)-1 is invalid
            elif ftype in _STRING_FIELDS:
                if ftype == F["FILTERKEY"] and (has["key"] or val > AUDIT_MAX_KEY_LEN):
                    return -EINVAL
                if ftype == F["EXE"] and (has["exe"] or val > PATH_MAX):
                    return -EINVAL
                if val == 0 or val > remain:
                    return -EINVAL  # audit_unpack_string()
                if val > PATH_MAX:
                    return -ENAMETOOLONG
                raw = data[buf : buf + val]
                buf, remain = buf + val, remain - val
                kf.text = raw.split(b"\0", 1)[0]
                if ftype == F["WATCH"]:
                    if (raw[:1] != b"/" or raw[-1:] == b"/" or listnr not in (FILTER_EXIT, FILTER_URING_EXIT)
                            or op != OP_EQ or has["inode"] is not None or has["watch"] or has["tree"]):
                        return -EINVAL  # audit_to_watch()
                    has["watch"] = True
                elif ftype == F["DIR"]:
                    if (raw[:1] != b"/" or listnr not in (FILTER_EXIT, FILTER_URING_EXIT)
                            or op != OP_EQ or has["inode"] is not None or has["watch"] or has["tree"]):
                        return -EINVAL  # audit_make_tree()
                    has["tree"] = True
                elif ftype == F["FILTERKEY"]:
                    has["key"] = True
                elif ftype == F["EXE"]:
                    if raw[:1] != b"/" or raw[-1:] == b"/":
                        return -EINVAL  # audit_alloc_mark()
                    if not self.parent_exists(_path(kf.text)):
                        return -ENOENT
                    has["exe"] = True
            elif ftype == F["INODE"]:
                if (listnr not in (FILTER_EXIT, FILTER_URING_EXIT) or has["inode"] is not None
                        or has["watch"] or has["tree"] or op not in (OP_EQ, OP_NE)):
                    return -EINVAL  # audit_to_inode()
                has["inode"] = op
            rule.fields.append(kf)
        return rule


# --- helpers ----------------------------------------------------------------------------------


def _field_valid(listnr: int, ftype: int, op: int) -> int:
    """audit_field_valid(), as it behaves on 6.x kernels.

    The kernel also has value checks (loginuid_set 0/1, perm <= 15, filetype within S_IFMT,
    field_compare <= AUDIT_MAX_FIELD_COMPARE, saddr_fam < AF_MAX), but audit_data_to_entry()
    calls audit_field_valid() before it stores the value in f->val, so they test 0 and never
    refuse anything. Measured on 6.18: perm=16, field_compare=26, saddr_fam=0xffffffff are
    all accepted. A model that enforced them would disagree with every real kernel.
    """
    if ftype == F["MSGTYPE"] and listnr not in (FILTER_EXCLUDE, FILTER_USER):
        return -EINVAL
    if ftype == F["FSTYPE"] and listnr != FILTER_FS:
        return -EINVAL
    if ftype == F["PERM"] and listnr == FILTER_URING_EXIT:
        return -EINVAL
    if listnr == FILTER_FS and ftype not in (F["FSTYPE"], F["FILTERKEY"]):
        return -EINVAL
    if ftype in _ANY_OP_FIELDS:
        return 0
    if ftype in _NO_BITOP_FIELDS:
        return -EINVAL if op in (OP_BITMASK, OP_BITTEST) else 0
    if ftype in _EQ_ONLY_FIELDS:
        return 0 if op in (OP_EQ, OP_NE) else -EINVAL
    return -EINVAL  # field not recognized


def _compare(left: int, op: int, right: int) -> bool:
    """audit_comparator()."""
    if op == OP_EQ:
        return left == right
    if op == OP_NE:
        return left != right
    if op == OP_LT:
        return left < right
    if op == OP_LE:
        return left <= right
    if op == OP_GT:
        return left > right
    if op == OP_GE:
        return left >= right
    if op == OP_BITMASK:
        return bool(left & right)
    if op == OP_BITTEST:
        return (left & right) == right
    return False


def _is_user_msg(mtype: int) -> bool:
    return (
        mtype == AUDIT_USER
        or AUDIT_FIRST_USER_MSG <= mtype <= AUDIT_LAST_USER_MSG
        or AUDIT_FIRST_USER_MSG2 <= mtype <= AUDIT_LAST_USER_MSG2
    )


def _record(rtype: int, payload: bytes, *, short: bool) -> bytes:
    """A record datagram: unpadded, nlmsg_len short (daemon) or true (multicast)."""
    length = len(payload) if short else nl.NLMSG_HDRLEN + len(payload)
    return _HDR.pack(length, rtype, 0, 0, 0) + payload


def _serial_of(body: bytes) -> int | None:
    try:
        return int(body[6 : body.index(b")")].split(b":", 1)[1])
    except (ValueError, IndexError):
        return None


def _signed(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _path(text: bytes | None) -> str:
    return (text or b"").decode("utf-8", "surrogateescape")


__all__ = [
    "AUDIT_NLGRP_READLOG",
    "AuditKernel",
    "Client",
    "Delivery",
    "KernelField",
    "KernelRule",
    "RULE_DATA_SIZE",
    "STATUS_FIELDS",
    "errno_name",
    "untrusted",
]
