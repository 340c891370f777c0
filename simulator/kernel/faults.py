"""The hooks scenario replay injects faults through (docs/internals.md, "Faults").

Besides ``AuditKernel.refuse`` (a request type answered with an errno, checked in the receive
path), replay needs to lose records inside the kernel, to have another process take the
daemon registration, and to record who signalled the daemon. Each is done the way the kernel
itself would do it, so that what a collector sees afterwards is what a real kernel shows.
"""

from __future__ import annotations

from .constants import AUDIT_OFF
from .sockets import Client, _Auditd


class FaultsMixin:
    """AuditKernel's fault hooks (the state they change is set up in AuditKernel)."""

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
