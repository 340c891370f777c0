#!/usr/bin/env python3
"""Probe what this process may do with the kernel's audit over NETLINK_AUDIT; print JSON.

    python3 ci/audit-probe.py [--full] [--timeout SECONDS]

Why it exists: a container's capabilities, pid namespace and network namespace each decide a
different part of what an audit collector can do, and the kernel answers each with its own errno.
This script tries every operation a collector needs and reports ok or the errno, so the minimal
capability set for kaudit's container mode can be found (and re-checked on another host) by
running it in containers with different settings. It is self-contained (standard library only,
raw struct packing) so that it runs in any image with python3, before kaudit is installed.

Default (read-only): AUDIT_GET, joining the multicast group AUDIT_NLGRP_READLOG (bind, no
records read), SO_RCVBUFFORCE. Changes nothing in the kernel.

--full also changes the audit state and restores it in a `finally`: registers this process as
the audit daemon (AUDIT_SET pid), enables audit if it is off (AUDIT_SET enabled=1, never 2),
adds an exit rule on getppid with a unique key, lists the rules, triggers the rule, waits for
the SYSCALL record on the unicast (daemon) socket and on the multicast socket, deletes the rule,
and puts back enabled and pid. It never touches the failure mode. The caller must hold the
exclusive flock on /tmp/kaudit-live.lock for the whole run (the host's lock; a container cannot
take it) and should compare the status and rules before and after.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import select
import socket
import struct
import sys
import time

NETLINK_AUDIT = 9
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
AUDIT_GET, AUDIT_SET, AUDIT_LIST_RULES, AUDIT_ADD_RULE, AUDIT_DEL_RULE = 1000, 1001, 1013, 1011, 1012
AUDIT_SYSCALL = 1300
AUDIT_NLGRP_READLOG = 1
AUDIT_STATUS_ENABLED, AUDIT_STATUS_PID = 0x1, 0x4
AUDIT_FILTER_EXIT, AUDIT_ALWAYS = 0x04, 2
AUDIT_ARCH_FIELD, AUDIT_FILTERKEY_FIELD, AUDIT_EQUAL = 11, 210, 0x40000000
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
SO_RCVBUFFORCE = 33
STATUS_FIELDS = ("mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost", "backlog")
# getppid: a syscall nothing else here calls in a loop, so the rule stays quiet.
ARCHES = {"x86_64": (0xC000003E, 110), "aarch64": (0xC00000B7, 173)}


class NetlinkError(Exception):
    def __init__(self, err: int, what: str) -> None:
        super().__init__(f"{what}: {errno.errorcode.get(err, err)}")
        self.errno = err


def outcome(err: BaseException | None = None, **extra: object) -> dict[str, object]:
    """{"ok": true, ...} or {"ok": false, "errno": "EPERM", "error": "..."}."""
    if err is None:
        return {"ok": True, **extra}
    code = getattr(err, "errno", None)
    name = errno.errorcode.get(code, str(code)) if isinstance(code, int) else type(err).__name__
    return {"ok": False, "errno": name, "error": str(err), **extra}


class Audit:
    """A minimal NETLINK_AUDIT client: request, wait for the ACK, collect replies."""

    def __init__(self, groups: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        self.sock.bind((0, groups))
        self.seq = int(time.time()) & 0xFFFF

    def close(self) -> None:
        self.sock.close()

    def request(self, msg_type: int, payload: bytes = b"", *, timeout: float = 2.0) -> list[tuple[int, bytes]]:
        """Send one request with NLM_F_ACK; return the (type, payload) replies up to DONE/ACK."""
        self.seq += 1
        header = struct.pack("=IHHII", 16 + len(payload), msg_type, NLM_F_REQUEST | NLM_F_ACK, self.seq, 0)
        self.sock.sendto(header + payload, (0, 0))
        replies: list[tuple[int, bytes]] = []
        acked = msg_type not in (AUDIT_GET, AUDIT_LIST_RULES)  # these end with a reply / DONE
        deadline = time.monotonic() + timeout
        while True:
            for mtype, seq, body in self._receive(deadline):
                if seq != self.seq:
                    continue
                if mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", body)
                    if err:
                        raise NetlinkError(-err, f"request {msg_type}")
                    if acked:
                        return replies
                    continue
                if mtype == NLMSG_DONE:
                    return replies
                replies.append((mtype, body))
                if msg_type == AUDIT_GET:
                    return replies

    def _receive(self, deadline: float) -> list[tuple[int, int, bytes]]:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.sock], [], [], left)[0]:
            raise NetlinkError(errno.ETIMEDOUT, "no answer from the kernel")
        data, (port, _groups) = self.sock.recvfrom(65536)
        if port != 0:
            return []
        out = []
        offset = 0
        while offset + 16 <= len(data):
            length, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
            length = max(length, 16)
            out.append((mtype, seq, data[offset + 16 : offset + length]))
            offset += (length + 3) & ~3
        return out

    def status(self) -> dict[str, int]:
        ((_, body),) = self.request(AUDIT_GET)
        values = struct.unpack_from("=8I", body.ljust(32, b"\0"))
        return dict(zip(STATUS_FIELDS, values, strict=True))

    def set_status(self, mask: int, **values: int) -> None:
        fields = [mask] + [values.get(name, 0) for name in STATUS_FIELDS[1:]]
        self.request(AUDIT_SET, struct.pack("=8I", *fields))


def wait_record(sock: socket.socket, key: str, timeout: float) -> dict[str, object]:
    """Wait for the SYSCALL record carrying `key`; unicast records have the short nlmsg_len."""
    deadline = time.monotonic() + timeout
    needle = f'key="{key}"'.encode()
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        data, (port, _groups) = sock.recvfrom(65536)
        if port != 0 or len(data) < 16:
            continue
        length, mtype = struct.unpack_from("=IH", data)
        if mtype == AUDIT_SYSCALL and needle in data[16:]:
            return outcome(nlmsg_len=length, text=data[16:].decode(errors="replace")[:200])
    return outcome(NetlinkError(errno.ETIMEDOUT, f"no SYSCALL record with {needle.decode()}"))


def trigger() -> None:
    """Call getppid in a child forked now: only tasks forked while audit is enabled get an audit
    context (kernel audit_alloc), so this process itself, started with audit off, would not."""
    child = os.fork()
    if child == 0:
        os.getppid()
        os._exit(0)
    os.waitpid(child, 0)


def rule_payload(arch: int, syscall: int, key: str) -> bytes:
    """audit_rule_data for `-a always,exit -F arch=... -S getppid -k KEY`."""
    mask = [0] * 64
    mask[syscall // 32] |= 1 << (syscall % 32)
    fields = [AUDIT_ARCH_FIELD, AUDIT_FILTERKEY_FIELD] + [0] * 62
    values = [arch, len(key)] + [0] * 62
    fieldflags = [AUDIT_EQUAL, AUDIT_EQUAL] + [0] * 62
    body = struct.pack("=3I", AUDIT_FILTER_EXIT, AUDIT_ALWAYS, 2)
    body += struct.pack("=64I", *mask) + struct.pack("=64I", *fields)
    body += struct.pack("=64I", *values) + struct.pack("=64I", *fieldflags)
    return body + struct.pack("=I", len(key)) + key.encode()


def probe(full: bool, timeout: float) -> dict[str, object]:
    report: dict[str, object] = {"pid": os.getpid(), "full": full}
    try:
        audit = Audit()
    except OSError as exc:
        report["socket"] = outcome(exc)
        return report
    report["socket"] = outcome()
    mcast: Audit | None = None
    try:
        try:
            status = audit.status()
            report["get"] = outcome(status=status)
        except (OSError, NetlinkError) as exc:
            report["get"] = outcome(exc)
            status = None
        try:
            audit.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
            report["rcvbufforce"] = outcome()
        except OSError as exc:
            report["rcvbufforce"] = outcome(exc)
        try:
            mcast = Audit()
            mcast.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, AUDIT_NLGRP_READLOG)
            report["multicast_join"] = outcome()
        except OSError as exc:
            report["multicast_join"] = outcome(exc)
            if mcast is not None:
                mcast.close()
            mcast = None
        if full and status is not None:
            full_probe(audit, mcast, status, report, timeout)
    finally:
        if mcast is not None:
            mcast.close()
        audit.close()
    return report


def full_probe(audit: Audit, mcast: Audit | None, status: dict[str, int], report: dict[str, object],
               timeout: float) -> None:
    """The state-changing half of the probe; everything it changes is put back in `finally`."""
    if status["enabled"] not in (0, 1):
        report["full"] = outcome(NetlinkError(errno.EPERM, f"audit enabled={status['enabled']} (locked)"))
        return
    arch = ARCHES.get(platform.machine())
    key = f"kaudit-probe-{os.getpid()}"
    registered = enabled = rule_added = False
    try:
        if status["pid"]:
            report["set_pid"] = {"ok": None, "skipped": f"pid {status['pid']} is the audit daemon"}
        else:
            try:
                audit.set_status(AUDIT_STATUS_PID, pid=os.getpid())
                registered = True
                report["set_pid"] = outcome()
            except NetlinkError as exc:
                report["set_pid"] = outcome(exc)
        if status["enabled"] == 0:
            try:
                audit.set_status(AUDIT_STATUS_ENABLED, enabled=1)
                enabled = True
                report["set_enabled"] = outcome()
            except NetlinkError as exc:
                report["set_enabled"] = outcome(exc)
        if arch is None:
            report["add_rule"] = {"ok": None, "skipped": f"no syscall table for {platform.machine()}"}
            return
        payload = rule_payload(*arch, key)
        try:
            audit.request(AUDIT_ADD_RULE, payload)
            rule_added = True
            report["add_rule"] = outcome()
        except NetlinkError as exc:
            report["add_rule"] = outcome(exc)
            return
        try:
            rules = audit.request(AUDIT_LIST_RULES)
            report["list_rules"] = outcome(rules=len(rules), found=any(key.encode() in b for _, b in rules))
        except NetlinkError as exc:
            report["list_rules"] = outcome(exc)
        trigger()
        if registered:
            report["unicast_record"] = wait_record(audit.sock, key, timeout)
        if mcast is not None:
            report["multicast_record"] = wait_record(mcast.sock, key, timeout)
    finally:
        restore: dict[str, object] = {}
        if rule_added:
            try:
                audit.request(AUDIT_DEL_RULE, rule_payload(*arch, key))
                report["del_rule"] = outcome()
            except NetlinkError as exc:
                report["del_rule"] = restore["del_rule"] = outcome(exc)
        if enabled:
            try:
                audit.set_status(AUDIT_STATUS_ENABLED, enabled=status["enabled"])
            except NetlinkError as exc:
                restore["enabled"] = outcome(exc)
        if registered:
            try:
                audit.set_status(AUDIT_STATUS_PID, pid=0)
            except NetlinkError as exc:
                restore["pid"] = outcome(exc)
        report["restored"] = outcome() if not restore else {"ok": False, "failures": restore}


def main(argv: list[str]) -> int:
    full = "--full" in argv
    timeout = 3.0
    if "--timeout" in argv:
        timeout = float(argv[argv.index("--timeout") + 1])
    report = probe(full, timeout)
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
