"""What the kernel reports about itself, and the requests that change it.

AUDIT_GET's status and AUDIT_GET_FEATURE's features; loading a known state (a snapshot of a
real kernel, a scenario's ``kernel:`` block); AUDIT_SET field by field in the kernel's order,
with the CONFIG_CHANGE record each change writes; daemon registration (the AUDIT_STATUS_PID
branch, audit_replace()); and audit_set_feature() with its FEATURE_CHANGE records.
"""

from __future__ import annotations

from collections.abc import Iterable

from collector.protocol import netlink as nl
from collector.protocol.status import KERNEL_STATUS_FIELDS, AuditFeatures, AuditStatus

from .constants import (
    _I32,
    AUDIT_CONFIG_CHANGE,
    AUDIT_FAIL_PANIC,
    AUDIT_FAIL_PRINTK,
    AUDIT_FAIL_SILENT,
    AUDIT_FEATURE_CHANGE,
    AUDIT_FEATURE_NAMES,
    AUDIT_FEATURE_VERSION,
    AUDIT_LAST_FEATURE,
    AUDIT_LOCKED,
    AUDIT_OFF,
    AUDIT_REPLACE,
    EACCES,
    EEXIST,
    EINVAL,
    EPERM,
    STATUS_BACKLOG_LIMIT,
    STATUS_BACKLOG_WAIT_TIME,
    STATUS_BACKLOG_WAIT_TIME_ACTUAL,
    STATUS_ENABLED,
    STATUS_FAILURE,
    STATUS_LOST,
    STATUS_PID,
    STATUS_RATE_LIMIT,
    STATUS_SIZE,
    errno_name,
)
from .sockets import Client, _Auditd, _Request


class StatusMixin:
    """AuditKernel's status, features and daemon registration (the state is set up in AuditKernel)."""

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
