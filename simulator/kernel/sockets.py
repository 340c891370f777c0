"""Netlink sockets as the kernel sees them, and the paths the kernel's datagrams leave by.

:class:`Client` is one socket of one process, with the identity the kernel reads from
``current``; :class:`Delivery` is one datagram sent to one socket. ``SocketsMixin`` holds the
socket calls (netlink_bind(), netlink_autobind(), multicast membership, netlink_release()) and
the ways an answer goes out (netlink_unicast(), audit_send_reply(), netlink_ack()).
``untrusted()`` is here because a client's comm and exe are the first things it formats.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.protocol import netlink as nl

from .constants import (
    AUDIT_EVENT_LISTENER,
    AUDIT_NLGRP_MAX,
    AUDIT_SID_UNSET,
    AUDIT_UID_UNSET,
    EADDRINUSE,
    ECONNREFUSED,
    EINVAL,
    EPERM,
)


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


class SocketsMixin:
    """AuditKernel's socket calls and output paths (the state they use is set up in AuditKernel)."""

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
