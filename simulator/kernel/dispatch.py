"""The receive path: how the kernel walks a datagram and answers each request in it.

audit_receive() splits a datagram into messages (nlmsg_ok()), audit_netlink_ok() decides who
may send what, and audit_receive_msg() hands each request to the part of the model that owns
it (status, features and rules have modules of their own). User messages, TTY auditing, TRIM
and MAKE_EQUIV need nothing else and are handled here.
"""

from __future__ import annotations

import struct

from collector.protocol import netlink as nl
from collector.protocol.status import AuditFeatures

from .constants import (
    _CONTROL_TYPES,
    _HDR,
    AUDIT_ADD,
    AUDIT_ADD_RULE,
    AUDIT_CONFIG_CHANGE,
    AUDIT_DEL,
    AUDIT_DEL_RULE,
    AUDIT_FIRST_USER_MSG,
    AUDIT_FIRST_USER_MSG2,
    AUDIT_GET,
    AUDIT_GET_FEATURE,
    AUDIT_LAST_USER_MSG,
    AUDIT_LAST_USER_MSG2,
    AUDIT_LIST,
    AUDIT_LIST_RULES,
    AUDIT_LOCKED,
    AUDIT_MAKE_EQUIV,
    AUDIT_MESSAGE_TEXT_MAX,
    AUDIT_SET,
    AUDIT_SET_FEATURE,
    AUDIT_SIGNAL_INFO,
    AUDIT_TRIM,
    AUDIT_TTY_GET,
    AUDIT_TTY_SET,
    AUDIT_USER,
    AUDIT_USER_AVC,
    AUDIT_USER_TTY,
    ECONNREFUSED,
    EINVAL,
    ENAMETOOLONG,
    ENOENT,
    EOPNOTSUPP,
    EPERM,
    PATH_MAX,
    RULE_DATA_SIZE,
)
from .sockets import Client, Delivery, _Request, untrusted


class DispatchMixin:
    """AuditKernel's receive path (the state it answers from is set up in AuditKernel)."""

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


def _is_user_msg(mtype: int) -> bool:
    return (
        mtype == AUDIT_USER
        or AUDIT_FIRST_USER_MSG <= mtype <= AUDIT_LAST_USER_MSG
        or AUDIT_FIRST_USER_MSG2 <= mtype <= AUDIT_LAST_USER_MSG2
    )


def _signed(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v
