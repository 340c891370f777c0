"""The receive loop: records out of the socket, in batches, with the kernel watched on the side.

``Reader.drain(timeout)`` is the whole receive path: wait for the first datagram, take what
else is already queued (up to ``batch_max``), and return the record messages. Control
traffic is handled inside and never reaches the caller:

* **status polling**: every ``status_interval`` seconds an AUDIT_GET is *sent* (no ACK asked)
  and its reply is picked out of the stream when it comes, so no record is held up behind a
  synchronous request. The reply gives the kernel's ``lost`` (reported as the increase since
  the first poll) and ``backlog`` (last and largest seen) and who holds the daemon pid;
* **ENOBUFS** (the socket's queue overflowed, records are gone): counted; we keep reading,
  since the socket stays usable, and ask for the status at once so the kernel's own loss
  count is current. The lost records show up as serial gaps in the publisher as well;
* **pid lost**: a status whose pid is not ours while we are the registered daemon means
  another process took the audit connection (or the kernel dropped ours). It is reported
  either way, and with ``persist`` (``--audit_persist``) we register again. An AUDIT_REPLACE
  message (the kernel probing us because someone else tries to register) is counted;
* **audit disabled**: a status with ``enabled == 0`` (``auditctl -e 0`` from another process:
  the kernel then generates no records at all, so nothing else would show it) is counted as
  ``kernel_disabled``, once per time it is seen switched off; with ``persist`` and a
  ``reenable`` callable (given only when the configuration is ours to change) we switch it
  back on, as we take the daemon pid back.

Why batches: a later change moves ``drain`` to its own thread feeding a queue; keeping the
receive path a single call that returns plain messages makes that a small change.
"""

from __future__ import annotations

import errno as errno_mod
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector.protocol import netlink as nl
from collector.protocol.records import AUDIT_GET, record_type_number
from collector.protocol.status import AuditStatus, StatusError
from collector.transport import TransportEvent

__all__ = ["KernelCounters", "Reader"]

AUDIT_REPLACE = record_type_number("REPLACE")
_U32 = 0xFFFFFFFF


@dataclass(slots=True)
class KernelCounters:
    """What the reader learnt about the kernel and the socket during the run."""

    status_polls: int = 0  # AUDIT_GET replies received
    status_errors: int = 0  # AUDIT_GET refused (e.g. EPERM when reading without control)
    lost: int = 0  # increase of the kernel's lost counter since the first reply
    lost_at_start: int | None = None
    lost_now: int | None = None
    backlog: int = 0  # last reply's backlog
    backlog_max: int = 0
    enobufs: int = 0
    pid_lost: int = 0  # times another pid (or none) held the daemon registration
    pid_retaken: int = 0
    pid_retake_failed: int = 0
    replace_probes: int = 0  # AUDIT_REPLACE: someone tried to register while we were daemon
    kernel_disabled: int = 0  # times a status reply showed audit switched off (enabled == 0)
    kernel_reenabled: int = 0
    kernel_reenable_failed: int = 0
    stray: int = 0  # control messages that belonged to no exchange of ours

    def as_dict(self) -> dict[str, int]:
        return {
            "lost": self.lost,
            "backlog": self.backlog,
            "backlog_max": self.backlog_max,
            "enobufs": self.enobufs,
            "status_polls": self.status_polls,
            "status_errors": self.status_errors,
            "pid_lost": self.pid_lost,
            "pid_retaken": self.pid_retaken,
            "pid_retake_failed": self.pid_retake_failed,
            "replace_probes": self.replace_probes,
            "kernel_disabled": self.kernel_disabled,
            "kernel_reenabled": self.kernel_reenabled,
            "kernel_reenable_failed": self.kernel_reenable_failed,
        }


class Reader:
    """Receives records from one transport (unicast daemon socket or multicast reader).

    ``pid`` is the pid we registered as daemon (None when reading the multicast copy: then a
    foreign pid is nobody's business). ``retake`` registers us again (``KernelConfig.retake_pid``);
    it is called only with ``persist``, as is ``reenable`` (sets enabled=1 again after someone
    switched audit off; pass it only when configuring the kernel is allowed).
    ``warn`` receives one line per notable change.
    ``clock`` is monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        transport,
        *,
        pid: int | None = None,
        persist: bool = True,
        retake: Callable[[], None] | None = None,
        reenable: Callable[[], None] | None = None,
        status_interval: float = 5.0,
        batch_max: int = 1024,
        warn: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.pid = pid
        self.persist = persist
        self._retake = retake
        self._reenable = reenable
        self.status_interval = status_interval
        self.batch_max = batch_max
        self._warn = warn or (lambda msg: None)
        self._clock = clock
        self.counters = KernelCounters()
        self.last_status: AuditStatus | None = None
        self._status_seq: int | None = None
        self._next_poll = clock()  # first poll at once: it sets the baseline
        self._polling = True
        self._foreign_pid: int | None = None
        self._retake_error = ""
        self._disabled_seen = False
        self._reenable_error = ""
        self._quiet = False  # stop_polling(): status replies still arriving are ignored

    @property
    def polling(self) -> bool:
        """False once the kernel refused our status polls (no status reply will come)."""
        return self._polling

    def stop_polling(self) -> None:
        """No more status polls, and nothing done about the replies still on their way.

        For reading after the kernel's state was restored (the records a receiver still
        holds): a status reply then shows the daemon pid gone, and re-taking it, or switching
        audit back on, would undo the restore.
        """
        self._polling = False
        self._retake = None
        self._reenable = None
        self.pid = None
        self._quiet = True

    # ---- the receive path --------------------------------------------------------------

    def drain(self, timeout: float) -> list[nl.NetlinkMessage]:
        """Records received within ``timeout`` s: the first datagram's, then all already queued."""
        if self._polling and self._clock() >= self._next_poll:
            self.request_status()
        out: list[nl.NetlinkMessage] = []
        got = self.transport.recv(timeout)
        limit = self.batch_max
        while True:
            if isinstance(got, TransportEvent):
                self._event(got)
            elif not got:
                break
            else:
                for msg in got:
                    if msg.is_record and msg.type != AUDIT_REPLACE:
                        out.append(msg)
                    else:
                        self._control(msg)
            if len(out) >= limit:
                break
            got = self.transport.recv(0)
        return out

    # ---- control traffic ---------------------------------------------------------------

    def request_status(self) -> None:
        """Send AUDIT_GET now; the reply is handled when it arrives in ``drain``."""
        self._next_poll = self._clock() + self.status_interval
        try:
            self._status_seq = self.transport.send(nl.NetlinkMessage(AUDIT_GET, nl.NLM_F_REQUEST))
        except Exception as exc:  # noqa: BLE001 - a failed poll must not stop reading
            self.counters.status_errors += 1
            self._warn(f"status poll could not be sent: {exc}")

    def _event(self, ev: TransportEvent) -> None:
        if ev.kind == "enobufs":
            self.counters.enobufs += 1
            self._warn("ENOBUFS: the socket's receive queue overflowed, records were lost; re-syncing")
            self.request_status()
        elif ev.kind == "closed":
            raise ConnectionError(f"the audit endpoint closed the connection: {ev.detail}")
        # eintr: nothing to do, the next drain reads on

    def _control(self, msg: nl.NetlinkMessage) -> None:
        if msg.type == AUDIT_GET and self._quiet:
            return  # a poll answered after the restore: it describes the kernel as put back
        if msg.type == AUDIT_GET:
            try:
                self._status(AuditStatus.decode(msg.payload))
            except StatusError as exc:
                self.counters.status_errors += 1
                self._warn(f"status reply not understood: {exc}")
        elif msg.type == AUDIT_REPLACE:
            self.counters.replace_probes += 1
        elif msg.type == nl.NLMSG_ERROR and msg.seq == self._status_seq:
            try:
                err = nl.parse_error(msg.payload).error
            except nl.NetlinkError:
                err = 0
            if err < 0:
                self.counters.status_errors += 1
                if -err in (errno_mod.EPERM, errno_mod.EACCES, errno_mod.ECONNREFUSED):
                    self._polling = False
                    self._warn(
                        f"status polling refused ({errno_mod.errorcode.get(-err, -err)}): "
                        "kernel lost/backlog counters will not be reported"
                    )
        else:
            self.counters.stray += 1

    def _status(self, st: AuditStatus) -> None:
        c = self.counters
        c.status_polls += 1
        self.last_status = st
        if c.lost_at_start is None:
            c.lost_at_start = st.lost
        c.lost_now = st.lost
        c.lost = (st.lost - c.lost_at_start) & _U32
        c.backlog = st.backlog
        if st.backlog > c.backlog_max:
            c.backlog_max = st.backlog
        self._check_enabled(st)
        if self.pid is None or st.pid == self.pid:
            self._foreign_pid = None
            return
        if self._foreign_pid != st.pid:
            c.pid_lost += 1
            self._foreign_pid = st.pid
            holder = f"pid {st.pid}" if st.pid else "nobody (the kernel dropped our registration)"
            action = (
                "re-taking it (--audit_persist)"
                if self.persist
                else "not re-taking it (--audit_persist is off)"
            )
            self._warn(f"the audit daemon registration is held by {holder}; {action}")
        if self.persist and self._retake is not None:
            try:
                self._retake()
            except Exception as exc:  # noqa: BLE001 - reported, reading goes on
                c.pid_retake_failed += 1
                if c.pid_retake_failed == 1 or self._retake_error != str(exc):
                    self._warn(f"re-taking the audit daemon pid failed: {exc}")
                self._retake_error = str(exc)
            else:
                c.pid_retaken += 1
                self._foreign_pid = None
                self._warn(f"re-took the audit daemon registration (pid {self.pid})")
                self.request_status()

    def _check_enabled(self, st: AuditStatus) -> None:
        """Count audit switched off; switch it back on with ``persist`` (see the module doc)."""
        c = self.counters
        if st.enabled != 0:
            self._disabled_seen = False
            return
        if not self._disabled_seen:
            self._disabled_seen = True
            c.kernel_disabled += 1
            can = self.persist and self._reenable is not None
            action = (
                "re-enabling it (--audit_persist)"
                if can
                else "not re-enabling it ("
                + ("--audit_persist is off" if self._reenable is not None else "configuration is not ours")
                + ")"
            )
            self._warn(f"kernel audit is disabled (enabled=0): no records are generated; {action}")
        if not (self.persist and self._reenable is not None):
            return
        try:
            self._reenable()
        except Exception as exc:  # noqa: BLE001 - reported, reading goes on
            c.kernel_reenable_failed += 1
            if c.kernel_reenable_failed == 1 or self._reenable_error != str(exc):
                self._warn(f"re-enabling kernel audit failed: {exc}")
            self._reenable_error = str(exc)
        else:
            c.kernel_reenabled += 1
            self._disabled_seen = False
            self._warn("re-enabled kernel audit (enabled=1)")
            self.request_status()
