"""Record and message type numbers to names and back.

Names follow auditd's spelling (``SYSCALL``, ``EOE``); a number the headers do not know is
shown as ``UNKNOWN[n]`` exactly as ausearch prints it, and that spelling parses back, so that a
record of a future type survives a text round trip.
"""

from __future__ import annotations

import re

from ._tables import KERNEL_RECORD_TYPE_NAMES, RECORD_TYPES

_BY_NUMBER: dict[int, str] = {}
for _name, _num in RECORD_TYPES.items():
    # the kernel's own name wins over a user-space alias for the same number
    if _num not in _BY_NUMBER or (_name in KERNEL_RECORD_TYPE_NAMES and _BY_NUMBER[_num] not in KERNEL_RECORD_TYPE_NAMES):
        _BY_NUMBER[_num] = _name
_UNKNOWN = re.compile(r"UNKNOWN\[(\d+)\]")

# control-plane message types (1000..1099 are commands; not records)
AUDIT_GET = RECORD_TYPES["GET"]
AUDIT_SET = RECORD_TYPES["SET"]
AUDIT_LIST_RULES = RECORD_TYPES["LIST_RULES"]
AUDIT_ADD_RULE = RECORD_TYPES["ADD_RULE"]
AUDIT_DEL_RULE = RECORD_TYPES["DEL_RULE"]
AUDIT_USER = RECORD_TYPES["USER"]
AUDIT_SIGNAL_INFO = RECORD_TYPES["SIGNAL_INFO"]
AUDIT_GET_FEATURE = RECORD_TYPES["GET_FEATURE"]
AUDIT_SET_FEATURE = RECORD_TYPES["SET_FEATURE"]
AUDIT_TTY_GET = RECORD_TYPES["TTY_GET"]
AUDIT_TTY_SET = RECORD_TYPES["TTY_SET"]
AUDIT_SYSCALL = RECORD_TYPES["SYSCALL"]
AUDIT_EOE = RECORD_TYPES["EOE"]


def record_type_name(number: int) -> str:
    """Name for a type number, ``UNKNOWN[n]`` when no header defines it."""
    return _BY_NUMBER.get(number) or f"UNKNOWN[{number}]"


def record_type_number(name: str) -> int:
    """Number for a type name (``SYSCALL``, ``AUDIT_SYSCALL`` or ``UNKNOWN[1399]``).

    Raises ValueError naming the input when it is neither a known name nor UNKNOWN[n].
    """
    key = name[6:] if name.startswith("AUDIT_") else name
    num = RECORD_TYPES.get(key)
    if num is not None:
        return num
    m = _UNKNOWN.fullmatch(name)
    if m:
        return int(m.group(1))
    raise ValueError(f"unknown audit record type name {name!r}")


AUDIT_LOGIN = RECORD_TYPES["LOGIN"]
# Two record types predate the 1100+ numbering: the kernel logs LOGIN (loginuid changes) and
# relays USER (`auditctl -m`) as records, in the same short-length unicast form as every record.
_LOW_RECORD_TYPES = frozenset({AUDIT_USER, AUDIT_LOGIN})


def is_control(number: int) -> bool:
    """1000-1099 are commands to the kernel and its replies (USER and LOGIN excepted)."""
    return 1000 <= number <= 1099 and number not in _LOW_RECORD_TYPES


def is_record_type(number: int) -> bool:
    """Does the kernel send this type as an audit record (never as a control reply)?"""
    return number >= 1100 or number in _LOW_RECORD_TYPES
