"""Syscall names and numbers per architecture, and the audit ``arch`` field.

A rule's syscall bitmap is indexed by the syscall number of *one* ABI, and which ABI is
decided by the rule's ``arch`` field (``-F arch=b64``), or, when the rule has none, by the
machine auditctl runs on. So every name lookup here takes an AUDIT_ARCH_* value (the ELF
machine id the kernel reports in ``arch=``), never a bare table name.

The numbers come from the generated ``_tables.SYSCALLS`` (kernel headers). Where the
generated tables have no ABI (i386 for ``b32`` on x86_64, arm for ``b32`` on aarch64) only
numeric syscalls work and names raise a ``SyscallError`` that says so; the moment the
generator adds that table, names work without a change here.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from ._tables import ARCHES, SYSCALLS

__all__ = [
    "SyscallError",
    "Machine",
    "MACHINES",
    "machine_by_name",
    "machine_by_elf",
    "host_machine",
    "resolve_arch",
    "arch_bits_name",
    "parse_c_int",
    "syscall_table",
    "syscall_number",
    "syscall_name",
]

AUDIT_ARCH_64BIT = 0x80000000
MAX_SYSCALL = 64 * 32 - 1  # the rule bitmap has 64 32-bit words


class SyscallError(ValueError):
    """An arch or syscall that cannot be resolved; the message names the input."""


@dataclass(slots=True, frozen=True)
class Machine:
    """One ABI as libaudit's machine table knows it."""

    name: str  # canonical name, as ``auditctl -l -i`` prints it
    elf: int  # AUDIT_ARCH_* value
    table: str  # key into _tables.SYSCALLS
    compat: str | None = None  # the 32-bit ABI this 64-bit machine also runs (b32)

    @property
    def is_64bit(self) -> bool:
        return bool(self.elf & AUDIT_ARCH_64BIT)


# The machines libaudit maps to an ELF id (lib/machinetab.h); an arch value outside this set
# is printed by auditctl as hex, and b64/b32 only make sense for these.
MACHINES: dict[str, Machine] = {
    m.name: m
    for m in (
        Machine("i386", ARCHES["I386"], "i386"),
        Machine("x86_64", ARCHES["X86_64"], "x86_64", compat="i386"),
        Machine("ppc", ARCHES["PPC"], "ppc"),
        Machine("ppc64", ARCHES["PPC64"], "ppc64", compat="ppc"),
        Machine("ppc64le", ARCHES["PPC64LE"], "ppc64"),  # same numbers as big-endian ppc64
        Machine("s390", ARCHES["S390"], "s390"),
        Machine("s390x", ARCHES["S390X"], "s390x", compat="s390"),
        Machine("arm", ARCHES["ARM"], "arm"),
        Machine("aarch64", ARCHES["AARCH64"], "aarch64", compat="arm"),
    )
}

# uname -m spellings -> canonical machine (libaudit accepts all of these after -F arch=)
_ALIASES: dict[str, str] = {
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "ppc": "ppc",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "s390": "s390",
    "s390x": "s390x",
    "arm": "arm",
    "armeb": "arm",
    "armv5tejl": "arm",
    "armv5tel": "arm",
    "armv6l": "arm",
    "armv7l": "arm",
    "aarch64": "aarch64",
    "arm64": "aarch64",
}

_BY_ELF: dict[int, Machine] = {m.elf: m for m in MACHINES.values()}

# libaudit's own tables spell a few syscalls differently from the kernel headers; auditctl -l
# prints libaudit's spelling, so we print it too and accept both spellings on input.
_AUDITCTL_SPELLING: dict[str, dict[int, str]] = {
    "x86_64": {17: "pread", 18: "pwrite"},
    "aarch64": {61: "getdents", 67: "pread", 68: "pwrite", 80: "newfstat"},
    "i386": {283: "sys_kexec_load", 423: "sched_rr_get_interval64"},
}

_BY_NUMBER: dict[str, dict[int, str]] = {}
for _table, _names in SYSCALLS.items():
    _inv: dict[int, str] = {}
    for _name, _nr in _names.items():
        _inv.setdefault(_nr, _name)
    _inv.update(_AUDITCTL_SPELLING.get(_table, {}))
    _BY_NUMBER[_table] = _inv


def machine_by_name(name: str) -> Machine:
    """The machine for an arch name (``x86_64``, ``i686``, ``aarch64``...)."""
    canon = _ALIASES.get(name.lower())
    if canon is None:
        raise SyscallError(f"unknown machine {name!r} (known: {', '.join(sorted(_ALIASES))})")
    return MACHINES[canon]


def machine_by_elf(elf: int) -> Machine | None:
    """The machine for an AUDIT_ARCH_* value, None when libaudit would not know it."""
    return _BY_ELF.get(elf & 0xFFFFFFFF)


def host_machine() -> Machine:
    """The machine this process runs on, as auditctl's ``audit_detect_machine`` finds it."""
    return machine_by_name(platform.machine())


def _as_machine(host: str | Machine | None) -> Machine:
    if host is None:
        return host_machine()
    if isinstance(host, Machine):
        return host
    return machine_by_name(host)


def resolve_arch(value: str, host: str | Machine | None = None) -> int:
    """AUDIT_ARCH_* value for the right-hand side of ``-F arch=``.

    ``b64``/``b32`` mean the host's own 64-bit ABI or its 32-bit compat ABI (x86_64 -> i386,
    aarch64 -> arm); a machine name picks that ABI; a number (decimal, 0x hex or 0 octal,
    as strtoul base 0 reads it) must be an ELF id libaudit knows.
    """
    if not value:
        raise SyscallError("empty arch value")
    if value[0].isdigit():
        try:
            elf = parse_c_int(value, signed=False)
        except ValueError as exc:
            raise SyscallError(f"arch value {value!r} is not a number") from exc
        if machine_by_elf(elf) is None:
            raise SyscallError(f"arch value {value!r} (0x{elf:x}) is not an architecture libaudit knows")
        return elf
    mach = _as_machine(host)
    low = value.lower()
    if low == "b64":
        if not mach.is_64bit:
            raise SyscallError(f"arch=b64 is not valid on the 32-bit machine {mach.name}")
        return mach.elf
    if low == "b32":
        if mach.is_64bit:
            if mach.compat is None:
                raise SyscallError(f"arch=b32: machine {mach.name} has no 32-bit ABI")
            return MACHINES[mach.compat].elf
        return mach.elf
    return machine_by_name(value).elf


def arch_bits_name(elf: int) -> str:
    """How ``auditctl -l`` prints an arch value: b64/b32 for a known ABI, else 0x%X."""
    if machine_by_elf(elf) is None:
        return f"0x{elf & 0xFFFFFFFF:X}"
    return "b64" if elf & AUDIT_ARCH_64BIT else "b32"


def syscall_table(elf: int) -> dict[str, int] | None:
    """Name -> number for the ABI of ``elf``; None when this build has no table for it."""
    mach = machine_by_elf(elf)
    if mach is None:
        return None
    return SYSCALLS.get(mach.table)


def parse_c_int(text: str, *, signed: bool = True) -> int:
    """An integer as C's strtol/strtoul with base 0 reads the whole string.

    ``0x1F`` is hex, ``017`` octal, ``17`` decimal; a leading ``-`` is allowed when
    ``signed``. Unlike C, trailing junk is an error, not silently ignored. The result is
    the 32-bit two's complement value the kernel stores (u32).
    """
    s = text.strip()
    neg = False
    if s[:1] in "+-" and s:
        if s[0] == "-":
            if not signed:
                raise ValueError(f"{text!r}: negative value not allowed")
            neg = True
        s = s[1:]
    if not s:
        raise ValueError(f"{text!r}: no digits")
    low = s.lower()
    try:
        if low.startswith("0x"):
            n = int(low[2:], 16)
        elif len(low) > 1 and low.startswith("0"):
            n = int(low[1:], 8)
        else:
            if not low.isdigit():
                raise ValueError
            n = int(low, 10)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if neg:
        n = -n
    if n > 0xFFFFFFFF or n < -0x80000000:
        raise ValueError(f"{text!r} does not fit in 32 bits")
    return n & 0xFFFFFFFF


def syscall_number(name: str, elf: int) -> int:
    """Number of syscall ``name`` (or a numeric string) in the ABI of ``elf``."""
    mach = machine_by_elf(elf)
    table = syscall_table(elf)
    if table is not None:
        nr = table.get(name)
        if nr is not None:
            return nr
        for num, spelled in _AUDITCTL_SPELLING.get(mach.table if mach else "", {}).items():
            if spelled == name:
                return num
    if name[:1].isdigit():
        try:
            nr = parse_c_int(name, signed=False)
        except ValueError as exc:
            raise SyscallError(f"syscall {name!r} is not a number or a known name") from exc
        if nr > MAX_SYSCALL:
            raise SyscallError(f"syscall number {name!r} is past the rule bitmap (max {MAX_SYSCALL})")
        return nr
    if mach is None:
        raise SyscallError(f"syscall name {name!r} cannot be resolved for unknown arch 0x{elf:x}")
    if table is None:
        raise SyscallError(
            f"syscall name {name!r} cannot be resolved for {mach.name}: this build has no {mach.name} "
            f"syscall table (give the syscall number instead)"
        )
    raise SyscallError(f"unknown syscall {name!r} for {mach.name}")


def syscall_name(nr: int, elf: int) -> str | None:
    """Name of syscall ``nr`` in the ABI of ``elf`` as auditctl spells it, None if unknown."""
    mach = machine_by_elf(elf)
    if mach is None:
        return None
    inv = _BY_NUMBER.get(mach.table)
    if inv is None:
        return None
    return inv.get(nr)
