"""``struct audit_rule_data``: the bytes of AUDIT_ADD_RULE, AUDIT_DEL_RULE and AUDIT_LIST_RULES.

Layout (linux/audit.h), host byte order, 1040 bytes before the string buffer::

    u32 flags          filter list (AUDIT_FILTER_EXIT ...), | AUDIT_FILTER_PREPEND for -A
    u32 action         AUDIT_NEVER / AUDIT_ALWAYS
    u32 field_count
    u32 mask[64]       syscall bitmap; the top 16 bits of mask[63] select syscall classes
    u32 fields[64]     field ids (AUDIT_ARCH, AUDIT_FILTERKEY ...)
    u32 values[64]     the value, or for a string field its length in ``buf``
    u32 fieldflags[64] operator (AUDIT_EQUAL ...)
    u32 buflen
    char buf[buflen]   the string fields' bytes, in field order, no separators, no NULs

String fields are the ones the kernel unpacks with ``audit_unpack_string`` in
kernel/auditfilter.c ``audit_data_to_entry`` (and packs back in ``audit_krule_to_data``): the
LSM subject and object labels, path (AUDIT_WATCH), dir, exe and the filter key. libaudit's
``audit_rule_fieldpair_data`` lays them out the same way. Everything else is a u32 value.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from ._tables import FILTERS, MISC, OPERATORS, RULE_FIELDS

__all__ = [
    "RuleError",
    "RuleField",
    "AuditRuleData",
    "RULE_DATA_SIZE",
    "STRING_FIELDS",
    "ALL_SYSCALLS_MASK",
    "EMPTY_MASK",
    "KEY_SEPARATOR",
    "is_string_field",
]

MAX_FIELDS = MISC["AUDIT_MAX_FIELDS"]  # 64
BITMASK_SIZE = MISC["AUDIT_BITMASK_SIZE"]  # 64
FILTER_PREPEND = FILTERS["PREPEND"]
FILTER_MASK = 0x07  # libaudit's AUDIT_FILTER_MASK: the list number without PREPEND
OPERATOR_BITS = OPERATORS["OPERATORS"] | OPERATORS["NEGATE"]  # legacy rules kept ops in fields[]
KEY_SEPARATOR = "\x01"  # AUDIT_KEY_SEPARATOR: several -k keys share one filterkey field
SYSCALL_CLASS_BITS = 0xFFFF0000  # in mask[63]: AUDIT_SYSCALL_CLASSES, stripped by the kernel

_HEAD = struct.Struct("=3I")
_WORDS = struct.Struct(f"={BITMASK_SIZE}I")
_BUFLEN = struct.Struct("=I")
RULE_DATA_SIZE = _HEAD.size + 4 * _WORDS.size + _BUFLEN.size  # 1040

EMPTY_MASK: tuple[int, ...] = (0,) * BITMASK_SIZE
# "-S all" as the kernel stores and lists it: every syscall, no class bits (go-libaudit does
# the same so that a rule it builds is byte-identical to the kernel's listing of it).
ALL_SYSCALLS_MASK: tuple[int, ...] = (0xFFFFFFFF,) * (BITMASK_SIZE - 1) + (0xFFFFFFFF & ~SYSCALL_CLASS_BITS,)

_F = RULE_FIELDS
STRING_FIELDS: frozenset[int] = frozenset(
    list(range(_F["SUBJ_USER"], _F["SUBJ_CLR"] + 1))
    + list(range(_F["OBJ_USER"], _F["OBJ_LEV_HIGH"] + 1))
    + [_F["WATCH"], _F["DIR"], _F["FILTERKEY"], _F["EXE"]]
)
_FIELD_NAMES = {v: k.lower() for k, v in RULE_FIELDS.items()}


class RuleError(ValueError):
    """A rule that cannot be encoded, decoded or parsed; the message names the input and problem."""


def is_string_field(field_id: int) -> bool:
    """True for fields whose value is a length into the string buffer."""
    return (field_id & ~OPERATOR_BITS) in STRING_FIELDS


def _field_label(field_id: int) -> str:
    return _FIELD_NAMES.get(field_id & ~OPERATOR_BITS, str(field_id))


@dataclass(slots=True)
class RuleField:
    """One (field, operator, value) triple; ``strval`` holds a string field's text.

    For a string field ``value`` is the string's byte length; ``encode`` always recomputes it
    from ``strval``, so the two cannot disagree on the wire.
    """

    field: int
    op: int
    value: int = 0
    strval: str | bytes | None = None

    @property
    def field_id(self) -> int:
        """The field number without legacy operator bits."""
        return self.field & ~OPERATOR_BITS

    def strbytes(self) -> bytes:
        """The string value as the bytes that go into ``buf``."""
        if self.strval is None:
            return b""
        if isinstance(self.strval, bytes):
            return self.strval
        return self.strval.encode("utf-8", "surrogateescape")


@dataclass(slots=True)
class AuditRuleData:
    """A decoded ``struct audit_rule_data``."""

    flags: int
    action: int
    mask: tuple[int, ...] = EMPTY_MASK
    fields: list[RuleField] = field(default_factory=list)

    # -- views -------------------------------------------------------------------------

    @property
    def list_nr(self) -> int:
        """The filter list (AUDIT_FILTER_EXIT ...) without the PREPEND flag."""
        return self.flags & FILTER_MASK

    @property
    def prepend(self) -> bool:
        return bool(self.flags & FILTER_PREPEND)

    def all_syscalls(self) -> bool:
        """True when the bitmap selects every syscall (auditctl checks words 0..62 only)."""
        return all(w == 0xFFFFFFFF for w in self.mask[: BITMASK_SIZE - 1])

    def syscalls(self) -> list[int]:
        """Syscall numbers set in the bitmap, ascending."""
        out = []
        for word, bits in enumerate(self.mask):
            if not bits:
                continue
            for bit in range(32):
                if bits & (1 << bit):
                    out.append(word * 32 + bit)
        return out

    def arch(self) -> int | None:
        """The value of the last ``arch`` field, None when the rule has none."""
        value = None
        for f in self.fields:
            if f.field_id == RULE_FIELDS["ARCH"]:
                value = f.value
        return value

    def keys(self) -> list[str]:
        """The rule's keys (several -k are joined with \\x01 in one filterkey field)."""
        out: list[str] = []
        for f in self.fields:
            if f.field_id == RULE_FIELDS["FILTERKEY"]:
                text = f.strbytes().decode("utf-8", "surrogateescape")
                out.extend(k for k in text.split(KEY_SEPARATOR) if k)
        return out

    def kernel_form(self) -> AuditRuleData:
        """This rule as the kernel lists it back: without PREPEND, without class bits, and with
        string fields up to their first NUL.

        The kernel (auditfilter.c ``audit_to_entry_common``) clears the syscall-class bits in
        the top of mask[63] after expanding them, and keeps only the list number in
        ``flags``. Class expansion itself is not modelled: auditctl only sets class bits as
        part of "-S all", where the expansion adds nothing. A string is kept as the C string
        ``audit_unpack_string`` makes of it, and listed by ``audit_pack_string``, which measures
        it with ``strlen``: bytes from a NUL on are gone, and the length shrinks with them.
        """
        mask = list(self.mask)
        mask[-1] &= ~SYSCALL_CLASS_BITS
        fields = []
        for f in self.fields:
            if is_string_field(f.field) and f.strval is not None:
                data = f.strbytes().split(b"\0", 1)[0]
                strval = data if isinstance(f.strval, bytes) else data.decode("utf-8", "surrogateescape")
                fields.append(replace(f, value=len(data), strval=strval))
            else:
                fields.append(replace(f))
        return replace(self, flags=self.list_nr, mask=tuple(mask), fields=fields)

    # -- wire format ---------------------------------------------------------------------

    def encode(self) -> bytes:
        """The struct followed by its string buffer, exactly as auditctl sends it."""
        if len(self.fields) > MAX_FIELDS:
            raise RuleError(
                f"audit rule has {len(self.fields)} fields, the kernel takes at most {MAX_FIELDS}"
            )
        if len(self.mask) != BITMASK_SIZE:
            raise RuleError(f"audit rule mask has {len(self.mask)} words, need {BITMASK_SIZE}")
        ids = [0] * MAX_FIELDS
        values = [0] * MAX_FIELDS
        ops = [0] * MAX_FIELDS
        buf = bytearray()
        for i, f in enumerate(self.fields):
            ids[i] = f.field
            ops[i] = f.op
            if is_string_field(f.field) and f.strval is not None:
                data = f.strbytes()
                values[i] = len(data)
                buf += data
            else:
                if f.strval is not None:
                    raise RuleError(
                        f"field {i} ({_field_label(f.field)}) is numeric but has a string value {f.strval!r}"
                    )
                values[i] = f.value
        try:
            return b"".join(
                (
                    _HEAD.pack(self.flags, self.action, len(self.fields)),
                    _WORDS.pack(*self.mask),
                    _WORDS.pack(*ids),
                    _WORDS.pack(*values),
                    _WORDS.pack(*ops),
                    _BUFLEN.pack(len(buf)),
                    bytes(buf),
                )
            )
        except struct.error as exc:
            raise RuleError(f"audit rule has a value outside 0..0xffffffff: {exc}") from None

    @classmethod
    def decode(cls, payload: bytes) -> AuditRuleData:
        """Parse a rule payload; raises RuleError naming what is wrong and where.

        Bytes after ``buflen`` (netlink padding) are ignored, as the kernel ignores them.
        """
        data = bytes(payload)
        if len(data) < RULE_DATA_SIZE:
            raise RuleError(f"audit_rule_data truncated: {len(data)} bytes, need at least {RULE_DATA_SIZE}")
        flags, action, count = _HEAD.unpack_from(data, 0)
        if count > MAX_FIELDS:
            raise RuleError(f"audit_rule_data field_count {count} exceeds the maximum of {MAX_FIELDS}")
        off = _HEAD.size
        mask = _WORDS.unpack_from(data, off)
        ids = _WORDS.unpack_from(data, off + _WORDS.size)
        values = _WORDS.unpack_from(data, off + 2 * _WORDS.size)
        ops = _WORDS.unpack_from(data, off + 3 * _WORDS.size)
        (buflen,) = _BUFLEN.unpack_from(data, RULE_DATA_SIZE - _BUFLEN.size)
        avail = len(data) - RULE_DATA_SIZE
        if buflen > avail:
            raise RuleError(
                f"audit_rule_data buflen {buflen} runs past the end of the payload ({avail} bytes after the struct)"
            )
        buf = data[RULE_DATA_SIZE : RULE_DATA_SIZE + buflen]
        pos = 0
        fields: list[RuleField] = []
        for i in range(count):
            fid, op, value = ids[i], ops[i], values[i]
            if is_string_field(fid):
                if value > buflen - pos:
                    raise RuleError(
                        f"audit_rule_data field {i} ({_field_label(fid)}) string of {value} bytes at buffer "
                        f"offset {pos} runs past buflen {buflen}"
                    )
                raw = buf[pos : pos + value]
                pos += value
                fields.append(RuleField(fid, op, value, raw.decode("utf-8", "surrogateescape")))
            else:
                fields.append(RuleField(fid, op, value))
        return cls(flags, action, tuple(mask), fields)
