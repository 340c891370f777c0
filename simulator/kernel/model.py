"""AuditKernel: the kernel's audit state in one object, with the behaviour of every part.

The state (status fields, rule lists, sockets, queues) is created here, in ``__init__``, so
that one place lists everything the model remembers; the methods that read and change it
live in the mixins next to this module, one per concern of the kernel's code (see the
package docstring).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable

from collector.protocol._tables import FEATURE_BITMAP

from .constants import AUDIT_FAIL_PRINTK, AUDIT_NR_FILTERS, AUDIT_OFF, AUDIT_UID_UNSET, DEFAULT_HZ
from .dispatch import DispatchMixin
from .faults import FaultsMixin
from .records import RecordsMixin
from .rules import KernelRule, RulesMixin
from .sockets import Client, Delivery, SocketsMixin, _Auditd
from .status import StatusMixin

# --- the kernel -----------------------------------------------------------------------------


def _parent_exists(path: str) -> bool:
    parent = os.path.dirname(path.rstrip("/")) or "/"
    return os.path.isdir(parent)


class AuditKernel(StatusMixin, SocketsMixin, RecordsMixin, FaultsMixin, RulesMixin, DispatchMixin):
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
