"""The SYSCALL record as both table subscribers read it: which syscall, who, and how it ended.

osquery's AuditEventPublisher checks these fields once for every syscall event and drops
the event when one is missing or not a number (``exe``, ``syscall``, ``pid``, ``ppid`` and
the eight uid/gid fields); its subscribers then read the same fields again. Here the check
happens once, in ``read_syscall``, and both subscribers take the result.

Syscall numbers are per architecture: the record's ``arch`` picks the table generated from
the kernel headers (``collector.decode.decode_syscall``), so an aarch64 ``connect`` (203) is
a connect, where osquery compares with the host's ``__NR_connect`` only.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.decode import DecodeError, arch_name, decode_int, decode_str, decode_syscall, decode_text
from collector.protocol._tables import SYSCALLS
from collector.protocol.records import AUDIT_SYSCALL

if TYPE_CHECKING:
    from collector.parser import Record
    from collector.publisher import Event
    from collector.tables.stats import TableStats

__all__ = ["SyscallInfo", "read_syscall"]

# the identity fields osquery's publisher requires, in its order; all decimal
_ID_FIELDS = ("pid", "ppid", "uid", "auid", "euid", "fsuid", "suid", "gid", "egid", "fsgid", "sgid")


@dataclass(slots=True)
class SyscallInfo:
    """The decoded fields of one event's SYSCALL record that the tables use."""

    record: Record
    arch: str  # auparse's arch name: x86_64, aarch64
    number: int
    name: str
    success: bool
    exe: str
    pid: int
    ppid: int
    uid: int
    auid: int
    euid: int
    fsuid: int
    suid: int
    gid: int
    egid: int
    fsgid: int
    sgid: int

    def exit_code(self) -> int | None:
        """The ``exit`` field (a negative errno on failure); None when absent or not a number."""
        return decode_int(self.record.get("exit"))

    def arg(self, n: int) -> int | None:
        """Syscall argument ``aN`` (hex in the record); None when absent or not hex."""
        return decode_int(self.record.get(f"a{n}"), 16)


def read_syscall(event: Event, wanted: Container[str], stats: TableStats) -> SyscallInfo | None:
    """The event's SYSCALL fields if it is a syscall named in ``wanted``, else None.

    Events without a SYSCALL record (user messages, a lone PROCTITLE) and syscalls no table
    asked for return None without counting: they are not ours. Otherwise a missing or
    malformed field is counted in ``stats.drops`` (``syscall_no_<field>``,
    ``syscall_bad_<field>``) and None returned: no row is made from a broken record. A
    SYSCALL of an arch kaudit has no syscall table for is counted as skipped
    (``unsupported_arch``): it may well be ours, but we cannot tell.
    """
    rec = event.first(AUDIT_SYSCALL)
    if rec is None:
        return None
    f = rec.fields()  # one dict for every lookup below: this runs for every syscall event
    raw_nr = f.get("syscall")
    if raw_nr is None:
        stats.drop("syscall_no_syscall")
        return None
    number = decode_int(raw_nr)
    if number is None:
        stats.drop("syscall_bad_syscall")
        return None
    raw_arch = f.get("arch")
    if raw_arch is None:
        stats.drop("syscall_no_arch")
        return None
    name = decode_syscall(raw_arch, raw_nr)
    if name is None:
        arch = arch_name(raw_arch)
        if arch is None:
            stats.drop("syscall_bad_arch")
        elif arch not in SYSCALLS:
            stats.skip("unsupported_arch")
        return None  # else: a number the arch's table does not name; not a syscall we watch
    if name not in wanted:
        return None

    raw_exe = f.get("exe")
    if raw_exe is None:
        stats.drop("syscall_no_exe")
        return None
    try:
        exe = decode_str(raw_exe)
    except DecodeError:
        stats.drop("syscall_bad_exe")
        return None
    try:
        # the fast path (every field present and decimal): one int() each, no per-field calls;
        # int(raw) is decode_int(raw) when it succeeds, so the result is the same
        ids = (
            int(f["pid"]), int(f["ppid"]), int(f["uid"]), int(f["auid"]), int(f["euid"]), int(f["fsuid"]),
            int(f["suid"]), int(f["gid"]), int(f["egid"]), int(f["fsgid"]), int(f["sgid"]),
        )  # fmt: skip
    except (KeyError, ValueError):
        # which field, and why: counted by name, as osquery's publisher checks them in order
        for key in _ID_FIELDS:
            raw = f.get(key)
            if raw is None:
                stats.drop(f"syscall_no_{key}")
                return None
            if decode_int(raw) is None:
                stats.drop(f"syscall_bad_{key}")
                return None
        raise  # pragma: no cover - every field decoded on the second look: cannot happen
    # osquery: a record without `success` counts as a success
    raw_success = f.get("success")
    # ("no" is decode_text("no"): skip the hex attempt and its exception for every failed syscall)
    success = raw_success is None or raw_success == "yes" or (raw_success != "no" and decode_text(raw_success) == "yes")
    return SyscallInfo(rec, arch_name(raw_arch) or "", number, name, success, exe, *ids)
