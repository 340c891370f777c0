"""Records: how the kernel makes them and how kauditd delivers them.

``emit_record()`` is audit_log_start()/audit_log_end(): the exclude filter, the backlog and
rate limits, and audit_log_lost() with its panic on failure=2. ``deliver_records()`` is
kauditd_thread(): the true-length copy to every multicast reader, the short one to the
registered daemon, and the hold queue kept for a daemon yet to come (booted with audit=1).
"""

from __future__ import annotations

from collector.protocol import netlink as nl

from .constants import _HDR, AUDIT_FAIL_PANIC
from .sockets import Delivery


class RecordsMixin:
    """AuditKernel's record emission and delivery (the queues are set up in AuditKernel)."""

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


def _record(rtype: int, payload: bytes, *, short: bool) -> bytes:
    """A record datagram: unpadded, nlmsg_len short (daemon) or true (multicast)."""
    length = len(payload) if short else nl.NLMSG_HDRLEN + len(payload)
    return _HDR.pack(length, rtype, 0, 0, 0) + payload


def _serial_of(body: bytes) -> int | None:
    try:
        return int(body[6 : body.index(b")")].split(b":", 1)[1])
    except (ValueError, IndexError):
        return None
