"""Field value decoding: the one place where kaudit interprets what a record's text says.

The parser (``collector.parser``) hands out *raw* value tokens exactly as the kernel or the
audit daemon wrote them; everything that turns such a token into a string, a number, an
address or a name lives here, so that a table never re-implements an encoding rule (osquery's
subscribers each carry their own copy, and disagree).

The kernel's encodings (``kernel/audit.c``, ``kernel/auditsc.c``):

* untrusted strings (``comm``, ``exe``, ``cwd``, ``name``, ``proctitle``, ``key``, EXECVE
  arguments, ...) are written ``"quoted"`` when every byte is printable ASCII other than ``"``
  and space, else as upper-case hex of the raw bytes (``audit_log_n_untrustedstring``); a
  NULL pointer is written ``(null)``. So an unquoted value of such a field *is* hex: an odd
  length or a non-hex digit means the record is corrupt (``DecodeError``).
* ``saddr`` is the raw ``struct sockaddr`` the task passed, in hex; ``sa_family`` and netlink
  ids are in the *task's* byte order (little-endian on x86; see ``arch_byteorder``), ports and
  IP addresses in network order.
* ``exit`` is the syscall's return value, a negative errno on failure.
* an EXECVE argument too long for one record is split as ``aN_len=<bytes>`` followed by
  ``aN[0]=``, ``aN[1]=`` ... chunks, possibly over several EXECVE records of the event.

Errors raise ``DecodeError`` (a ``ValueError``) whose ``reason`` is a short stable slug
(``odd_hex``, ``bad_hex``, ``saddr_too_short``, ``execve_incomplete``) so that a caller counts
it by reason and moves on; nothing here logs or swallows.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.protocol._tables import ARCHES, ERRNO
from collector.protocol.syscalls import machine_by_elf, syscall_name

if TYPE_CHECKING:
    from collector.parser import Record

__all__ = [
    "AF_INET",
    "AF_INET6",
    "AF_NETLINK",
    "AF_UNIX",
    "ENCODED_FIELDS",
    "DecodeError",
    "Sockaddr",
    "arch_byteorder",
    "arch_name",
    "decode_bytes",
    "decode_errno",
    "decode_execve_argv",
    "decode_field",
    "decode_int",
    "decode_keys",
    "decode_proctitle",
    "decode_saddr",
    "decode_str",
    "decode_syscall",
    "decode_text",
    "errno_name",
]

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16

_HEXDIGITS = frozenset("0123456789abcdefABCDEF")

# AUDIT_ARCH_* carries __AUDIT_ARCH_LE (0x40000000) for little-endian ABIs (linux/audit.h)
_AUDIT_ARCH_LE = 0x40000000

# errno number -> name; the first name the generated table lists for a number wins
# (EAGAIN over EWOULDBLOCK, EDEADLK over EDEADLOCK), as strerror-style tools print them
_ERRNO_NAMES: dict[int, str] = {}
for _name, _num in ERRNO.items():
    _ERRNO_NAMES.setdefault(_num, _name)

# AUDIT_ARCH_* value -> arch name: libaudit's machine name where it has one (x86_64, i386,
# ppc64), else the lower-cased header suffix
_ARCH_NAMES: dict[int, str] = {}
for _name, _num in ARCHES.items():
    _machine = machine_by_elf(_num)
    _ARCH_NAMES.setdefault(_num, _machine.name if _machine is not None else _name.lower())

class DecodeError(ValueError):
    """A value that cannot mean what its field says; ``reason`` is a counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _short(raw: str, limit: int = 60) -> str:
    return repr(raw if len(raw) <= limit else raw[:limit] + "...")


def decode_bytes(raw: str) -> bytes:
    """The bytes an untrusted-string token stands for: ``"quoted"``, hex, or ``(null)``.

    ``(null)`` (the kernel's NULL pointer) gives ``b""``. An unquoted token must be even-length
    hex; anything else raises DecodeError (``odd_hex``/``bad_hex``): the record is corrupt, and
    guessing would invent a value. Use this when bytes matter (joining split EXECVE chunks,
    paths); ``decode_str`` for text.
    """
    if raw[:1] == '"':
        if len(raw) >= 2 and raw[-1] == '"':
            return raw[1:-1].encode("utf-8", "surrogateescape")
        raise DecodeError("bad_quote", f"unterminated quoted value {_short(raw)}")
    if raw == "(null)":
        return b""
    try:
        return bytes.fromhex(raw)
    except ValueError:
        if len(raw) % 2 and all(c in _HEXDIGITS for c in raw):
            raise DecodeError("odd_hex", f"odd-length hex value {_short(raw)}") from None
        raise DecodeError("bad_hex", f"neither quoted nor hex: {_short(raw)}") from None


def decode_str(raw: str, errors: str = "replace") -> str:
    """Text of an untrusted-string token (``comm``, ``exe``, ``cwd``, ``name``, an argument).

    ``"quoted"`` -> the text inside; hex -> the bytes decoded as UTF-8 (invalid sequences
    replaced by U+FFFD unless ``errors`` says otherwise, e.g. ``"surrogateescape"`` to keep
    them); ``(null)`` -> ``""``. Raises DecodeError for an unquoted token that is not
    even-length hex.
    """
    if raw[:1] == '"' and len(raw) >= 2 and raw[-1] == '"':
        return raw[1:-1]  # fast path: the kernel only quotes printable ASCII
    return decode_bytes(raw).decode("utf-8", errors)


def decode_text(raw: str, errors: str = "replace") -> str:
    """Like ``decode_str`` for fields that user space may also write as plain words.

    User-space messages (``acct=root``, ``terminal=cron``, ``addr=?``) put unencoded words
    where the kernel would put hex; a token that is not valid hex is returned as written
    instead of raising. ``'single quoted'`` tokens lose their quotes.
    """
    if raw[:1] == "'" and len(raw) >= 2 and raw[-1] == "'":
        return raw[1:-1]
    try:
        return decode_str(raw, errors)
    except DecodeError:
        return raw


# fields whose values are untrusted strings (quoted or hex), as auparse's type table knows
# them (ESCAPED, ESCAPED_FILE, ESCAPED_KEY, PROCTITLE, TTY_DATA); EXECVE's aN are too, but
# SYSCALL's a0..a3 are hex *numbers*, so those are recognised by record type in decode_field
ENCODED_FIELDS: frozenset[str] = frozenset(
    {
        "acct", "cmd", "comm", "cwd", "data", "dir", "exe", "file", "key", "name", "new-disk",
        "new-fs", "new-net", "ocomm", "old-disk", "old-fs", "old-net", "path", "proctitle",
        "root_dir", "vm", "watch",
    }
)  # fmt: skip

_EXECVE_TYPE = 1309  # AUDIT_EXECVE


def _is_execve_arg(key: str) -> bool:
    if key[:1] != "a":
        return False
    body = key[1:]
    if body.isdigit():
        return True
    n, bracket, k = body.partition("[")
    return bool(bracket) and n.isdigit() and k[:-1].isdigit() and k[-1:] == "]"


def decode_field(rtype: int, key: str, raw: str) -> str:
    """A field's value as text, the way auparse shows an uninterpreted value.

    Quoted values lose their quotes; untrusted-string fields (``ENCODED_FIELDS``, and EXECVE's
    ``aN``/``aN[k]``) are hex-decoded, leniently (``decode_text``: user space writes plain
    words there too); every other value (numbers, ``arch``, SYSCALL's ``a0``) is returned as
    written. For the comparisons and dumps that show every field; tables call the specific
    decoders.
    """
    if raw[:1] == '"':
        return decode_text(raw)
    if key in ENCODED_FIELDS or (rtype == _EXECVE_TYPE and _is_execve_arg(key)):
        return decode_text(raw)
    return raw


def decode_int(raw: str | None, base: int = 10) -> int | None:
    """Integer value of a numeric token, or None when absent or not a number.

    ``base=16`` for the fields the kernel prints in hex (``arch``, ``a0``..``a3``); a ``0x``
    prefix is accepted there. ``(null)``, ``?`` and ``""`` give None.
    """
    if raw is None:
        return None
    try:
        return int(raw, base)
    except ValueError:
        return None


def decode_keys(raw: str) -> list[str]:
    """The rule keys of a ``key=`` field; the kernel joins several keys with ``\\x01``.

    ``(null)`` (no key) gives ``[]``.
    """
    if raw == "(null)":
        return []
    text = decode_str(raw)
    return text.split("\x01") if text else []


def decode_proctitle(raw: str) -> str:
    """``proctitle`` as a command line: the argv bytes with NUL separators shown as spaces.

    This is auparse's interpretation; the kernel truncates proctitle at 128 bytes, so use the
    EXECVE arguments (``decode_execve_argv``) when the exact argv matters.
    """
    data = decode_bytes(raw).rstrip(b"\x00")
    return data.replace(b"\x00", b" ").decode("utf-8", "replace")


def errno_name(number: int) -> str | None:
    """Name of errno ``number`` (positive), e.g. 115 -> ``EINPROGRESS``; None if unknown."""
    return _ERRNO_NAMES.get(number)


def decode_errno(raw_exit: str | None) -> str | None:
    """Errno name of a failed syscall's ``exit`` field (``-115`` -> ``EINPROGRESS``).

    A non-negative exit (success, a returned fd or count) or an unknown number gives None.
    """
    value = decode_int(raw_exit)
    if value is None or value >= 0:
        return None
    return _ERRNO_NAMES.get(-value)


def arch_name(raw_arch: str | None) -> str | None:
    """auparse's name for an ``arch=`` token (``c000003e`` -> ``x86_64``), None if unknown."""
    value = decode_int(raw_arch, 16)
    return None if value is None else _ARCH_NAMES.get(value)


def arch_byteorder(raw_arch: str | None) -> str:
    """``"little"`` or ``"big"``: the byte order of the task that made the syscall.

    The kernel logs ``sa_family`` and netlink ids in that order. Unknown or absent arch gives
    ``"little"`` (every arch kaudit runs on, and what auparse assumes on x86).
    """
    value = decode_int(raw_arch, 16)
    if value is None or value & _AUDIT_ARCH_LE:
        return "little"
    return "big"


def decode_syscall(raw_arch: str | None, raw_syscall: str | None) -> str | None:
    """Syscall name for an ``arch=``/``syscall=`` pair (``c000003e``, ``42`` -> ``connect``).

    Names are libaudit's spelling (``collector.protocol.syscalls.syscall_name``: x86_64's 17
    is ``pread``, as auparse and ``auditctl -l`` print it). None when either value is not a
    number, or the arch has no generated syscall table.
    """
    arch = decode_int(raw_arch, 16)
    number = decode_int(raw_syscall)
    if arch is None or number is None:
        return None
    return syscall_name(number, arch)


@dataclass(slots=True)
class Sockaddr:
    """A decoded ``saddr``.

    ``address`` is the textual IP address (inet_ntop form) for AF_INET/AF_INET6, ``port`` the
    port in host numbers; ``path`` the AF_UNIX path. An abstract unix name (``sun_path``
    starting with NUL) has ``abstract=True`` and ``path`` = the name without the NUL and
    without any ``@``: that is what osquery puts in its ``socket`` column and what auparse
    prints; a caller that wants ss's ``@name`` spelling adds it. ``netlink_pid`` and
    ``netlink_groups`` are set for AF_NETLINK. A family kaudit does not decode keeps only
    ``family`` (and ``raw``).
    """

    family: int
    address: str = ""
    port: int = 0
    path: str = ""
    abstract: bool = False
    netlink_pid: int = 0
    netlink_groups: int = 0
    raw: bytes = b""


# the length the kernel itself requires before it uses an address of each family
# (inet: sizeof(struct sockaddr_in); inet6: SIN6_LEN_RFC2133; netlink: sizeof(sockaddr_nl))
_MIN_LEN = {AF_INET: 16, AF_INET6: 24, AF_NETLINK: 12, AF_UNIX: 2}


def decode_saddr(raw: str | None, byteorder: str = "little") -> Sockaddr | None:
    """Decode a SOCKADDR ``saddr`` hex token; None when there is no value at all.

    ``byteorder`` is the syscall's task byte order (``arch_byteorder(syscall.get("arch"))``)
    for ``sa_family`` and netlink ids. Raises DecodeError: ``odd_hex``/``bad_hex`` for a token
    that is not hex, ``saddr_too_short`` when it is shorter than the kernel itself accepts for
    the family (16 bytes for AF_INET, 24 for AF_INET6, 12 for AF_NETLINK, 2 for any family).
    The kernel logs the bytes the task passed *before* validating them, so a too-short
    address comes from a syscall that failed with EINVAL.
    """
    if raw is None or raw == "" or raw == "(null)":
        return None
    data = decode_bytes(raw)
    if len(data) < 2:
        raise DecodeError("saddr_too_short", f"saddr of {len(data)} bytes has no family: {_short(raw)}")
    family = int.from_bytes(data[:2], byteorder)  # type: ignore[arg-type]
    need = _MIN_LEN.get(family, 2)
    if len(data) < need:
        raise DecodeError(
            "saddr_too_short", f"family {family} needs {need} bytes, saddr has {len(data)}: {_short(raw)}"
        )
    if family == AF_INET:
        return Sockaddr(
            family, socket.inet_ntop(socket.AF_INET, data[4:8]), int.from_bytes(data[2:4], "big"), raw=data
        )
    if family == AF_INET6:
        return Sockaddr(
            family, socket.inet_ntop(socket.AF_INET6, data[8:24]), int.from_bytes(data[2:4], "big"), raw=data
        )
    if family == AF_UNIX:
        name = data[2:]
        abstract = name[:1] == b"\x00"
        if abstract:
            name = name[1:]
        end = name.find(b"\x00")
        if end >= 0:
            name = name[:end]
        return Sockaddr(family, path=name.decode("utf-8", "replace"), abstract=abstract, raw=data)
    if family == AF_NETLINK:
        return Sockaddr(
            family,
            netlink_pid=int.from_bytes(data[4:8], byteorder),  # type: ignore[arg-type]
            netlink_groups=int.from_bytes(data[8:12], byteorder),  # type: ignore[arg-type]
            raw=data,
        )
    return Sockaddr(family, raw=data)


def decode_execve_argv(records: Iterable[Record], errors: str = "replace") -> list[str]:
    """The argument vector of an execve, from the event's EXECVE records in order.

    Arguments come back in argument order (``a2`` before ``a10``). A split argument
    (``aN_len=`` then ``aN[0]=``, ``aN[1]=``, ... possibly over several records) is joined as
    bytes before decoding, so a UTF-8 character cut between chunks survives. ``aN_len`` is the
    length the kernel *printed* for the whole argument (hex digits when hex-encoded: the
    kernel sets it to ``len * 2`` then), which is how a lost chunk is detected. Raises
    DecodeError ``execve_incomplete`` when an argument below ``argc`` is missing or a split
    argument's chunks do not add up to its ``aN_len``, and ``odd_hex``/``bad_hex`` for a
    corrupt value: a partial command line is not the command line.
    """
    argc: int | None = None
    whole: dict[int, str] = {}
    declared: dict[int, int] = {}
    chunks: dict[int, dict[int, str]] = {}
    for rec in records:
        for key, raw in rec.items():
            if key[:1] != "a":
                continue
            if key == "argc":
                if argc is None:
                    argc = decode_int(raw)
                continue
            body = key[1:]
            if body.isdigit():
                whole.setdefault(int(body), raw)
            elif body.endswith("_len") and body[:-4].isdigit():
                declared.setdefault(int(body[:-4]), decode_int(raw) or 0)
            elif body.endswith("]") and "[" in body:
                n, _, k = body[:-1].partition("[")
                if n.isdigit() and k.isdigit():
                    chunks.setdefault(int(n), {}).setdefault(int(k), raw)
    count = argc if argc is not None else (max([*whole, *chunks], default=-1) + 1)
    argv: list[str] = []
    for i in range(count):
        if i in whole:
            argv.append(decode_bytes(whole[i]).decode("utf-8", errors))
            continue
        parts = chunks.get(i)
        if not parts or sorted(parts) != list(range(len(parts))):
            raise DecodeError("execve_incomplete", f"argument a{i} of {count} is missing or has a gap")
        tokens = [parts[k] for k in range(len(parts))]
        if i in declared:
            # aN_len counts the characters the kernel printed (two per byte when hex)
            printed = sum(len(t) - 2 if t[:1] == '"' else len(t) for t in tokens)
            if printed != declared[i]:
                raise DecodeError(
                    "execve_incomplete", f"argument a{i} has {printed} of its {declared[i]} characters"
                )
        data = b"".join(decode_bytes(t) for t in tokens)
        argv.append(data.decode("utf-8", errors))
    return argv
