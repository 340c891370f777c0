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

The model is one class, :class:`AuditKernel` (``model.py``), whose methods live in parts that
each hold one concern of the kernel's code:

- ``constants.py``: the kernel's numbers (audit.h, errno values) and the field sets of
  audit_field_valid();
- ``sockets.py``: netlink sockets as the kernel sees them (:class:`Client`, :class:`Delivery`),
  bind, multicast membership, close, and the unicast/reply/ACK paths answers leave by;
- ``dispatch.py``: the receive path (audit_receive(), audit_netlink_ok(), audit_receive_msg())
  and the small requests: user messages, TTY auditing, TRIM, MAKE_EQUIV;
- ``status.py``: the status and features the kernel reports, loading a known state, AUDIT_SET,
  daemon registration and AUDIT_SET_FEATURE;
- ``rules.py``: the rule table (:class:`KernelRule`), audit_data_to_entry(), adding and
  deleting rules, and the exclude/user filters;
- ``records.py``: making records (backlog and rate limits, lost records) and kauditd's delivery;
- ``faults.py``: the hooks scenario replay injects faults through.

Every name importable from ``simulator.kernel`` before it became a package still is.
"""

from __future__ import annotations

from collector.protocol import netlink as nl  # noqa: F401 - importable from here before the split
from collector.protocol._tables import ERRNO, FEATURE_BITMAP, FILTERS, OPERATORS, RECORD_TYPES, RULE_FIELDS  # noqa: F401
from collector.protocol.status import KERNEL_STATUS_FIELDS, STATUS_FIELDS, AuditFeatures, AuditStatus  # noqa: F401

from .constants import *  # noqa: F403 - the kernel's numbers (AUDIT_*, FILTER_*, OP_*, E*, F, T) are importable from here
from .constants import AUDIT_NLGRP_READLOG, RULE_DATA_SIZE, errno_name
from .model import AuditKernel
from .rules import KernelField, KernelRule
from .sockets import Client, Delivery, untrusted

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
