"""auditctl's rule syntax to ``AuditRuleData`` and back, as auditctl itself does it.

Parsing follows auditctl.c ``setopt`` and libaudit's ``audit_rule_fieldpair_data``: the same
option letters (-a -A -d -S -F -C -w -W -k -p), the same value spellings (``auid!=unset``,
``exit=-EACCES``, ``a0=0x4``, ``msgtype=SYSCALL``, ``arch=b64``), the same field order on the
wire (fields in the order given, all keys joined by \\x01 in one trailing ``key`` field) and the
same checks, but a failure raises ``RuleError`` naming the rule text and the problem instead of
printing a message. Values are read as libaudit reads them, with ``strtol``/``strtoul`` (the
number at the start of the value, the rest ignored: ``uid=0-3`` is 0), except that a value
outside 32 bits is refused rather than wrapped. String values (paths, keys) are bytes, as on
auditctl's command line: undecodable argv bytes, which Python passes on as surrogate escapes,
go into the rule as the same bytes.

Formatting follows auditctl-listing.c ``print_rule`` (what ``auditctl -l`` prints) character
for character, quirks included: ``arch`` printed as b64/b32, syscalls in number order,
uids as signed decimals (``auid!=-1``), a0..a3 as upper-case hex, keys as ``-F key=`` except
on watches (``-k``), a directory watch without its trailing slash.

One deliberate difference: "-S all" (and the implied all-syscalls mask of a rule without -S)
leaves the 16 syscall-class bits at the top of mask[63] clear, which is how the kernel stores
and lists such a rule. auditctl sends them set and the kernel clears them, so the two requests
are equivalent, and ours is byte-identical to the kernel's listing.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ._tables import ERRNO, FIELD_COMPARE, FILTERS, MISC, OPERATORS, PERMS
from ._tables import RULE_FIELDS as F
from .records import record_type_name, record_type_number
from .rules import (
    ALL_SYSCALLS_MASK,
    FILTER_MASK,
    FILTER_PREPEND,
    KEY_SEPARATOR,
    AuditRuleData,
    RuleError,
    RuleField,
    is_string_field,
)
from .syscalls import (
    Machine,
    SyscallError,
    arch_bits_name,
    host_machine,
    machine_by_elf,
    machine_by_name,
    resolve_arch,
    syscall_name,
    syscall_number,
)

__all__ = [
    "RuleCommand",
    "parse_rule",
    "parse_rule_command",
    "format_rule",
    "format_rules",
    "FILTER_NAMES",
    "ACTION_NAMES",
]

AUDIT_NEVER = MISC["AUDIT_NEVER"]
AUDIT_POSSIBLE = MISC["AUDIT_POSSIBLE"]
AUDIT_ALWAYS = MISC["AUDIT_ALWAYS"]
MAX_KEY_LEN = MISC["AUDIT_MAX_KEY_LEN"]  # 256
PATH_MAX = 4096
NAME_MAX = 255
AF_MAX = 46  # libaudit refuses saddr_fam >= AF_MAX

EQUAL = OPERATORS["EQUAL"]
NOT_EQUAL = OPERATORS["NOT_EQUAL"]
OPERATOR_BITS = OPERATORS["OPERATORS"]

# list names as libaudit's flagtab.h spells them (audit_name_to_flag / audit_flag_to_name)
FILTER_NAMES: dict[int, str] = {
    FILTERS["USER"]: "user",
    FILTERS["TASK"]: "task",
    FILTERS["EXIT"]: "exit",
    FILTERS["EXCLUDE"]: "exclude",
    FILTERS["FS"]: "filesystem",
    FILTERS["URING_EXIT"]: "io_uring",
}
_FILTER_BY_NAME = {v: k for k, v in FILTER_NAMES.items()}
ACTION_NAMES: dict[int, str] = {AUDIT_NEVER: "never", AUDIT_POSSIBLE: "possible", AUDIT_ALWAYS: "always"}

EXIT_LIST = FILTERS["EXIT"]
TASK_LIST = FILTERS["TASK"]
USER_LIST = FILTERS["USER"]
EXCLUDE_LIST = FILTERS["EXCLUDE"]
FS_LIST = FILTERS["FS"]
URING_LIST = FILTERS["URING_EXIT"]

# operators in the order libaudit searches for them (two-character ones first)
_OPERATOR_SEARCH: tuple[tuple[str, int], ...] = (
    ("!=", NOT_EQUAL),
    (">=", OPERATORS["GREATER_THAN_OR_EQUAL"]),
    ("<=", OPERATORS["LESS_THAN_OR_EQUAL"]),
    ("&=", OPERATORS["BIT_TEST"]),
    ("=", EQUAL),
    (">", OPERATORS["GREATER_THAN"]),
    ("<", OPERATORS["LESS_THAN"]),
    ("&", OPERATORS["BIT_MASK"]),
)
_OP_SYMBOL: dict[int, str] = {op: sym for sym, op in _OPERATOR_SEARCH}

# field names as libaudit's fieldtab.h knows them; the first name of a number is the printed one
_FIELD_BY_NAME: dict[str, int] = {
    "pid": F["PID"],
    "uid": F["UID"],
    "euid": F["EUID"],
    "suid": F["SUID"],
    "fsuid": F["FSUID"],
    "gid": F["GID"],
    "egid": F["EGID"],
    "sgid": F["SGID"],
    "fsgid": F["FSGID"],
    "auid": F["LOGINUID"],
    "loginuid": F["LOGINUID"],
    "pers": F["PERS"],
    "arch": F["ARCH"],
    "msgtype": F["MSGTYPE"],
    "subj_user": F["SUBJ_USER"],
    "subj_role": F["SUBJ_ROLE"],
    "subj_type": F["SUBJ_TYPE"],
    "subj_sen": F["SUBJ_SEN"],
    "subj_clr": F["SUBJ_CLR"],
    "ppid": F["PPID"],
    "obj_user": F["OBJ_USER"],
    "obj_role": F["OBJ_ROLE"],
    "obj_type": F["OBJ_TYPE"],
    "obj_lev_low": F["OBJ_LEV_LOW"],
    "obj_lev_high": F["OBJ_LEV_HIGH"],
    "sessionid": F["SESSIONID"],
    "fstype": F["FSTYPE"],
    "devmajor": F["DEVMAJOR"],
    "devminor": F["DEVMINOR"],
    "inode": F["INODE"],
    "exit": F["EXIT"],
    "success": F["SUCCESS"],
    "path": F["WATCH"],
    "perm": F["PERM"],
    "dir": F["DIR"],
    "filetype": F["FILETYPE"],
    "obj_uid": F["OBJ_UID"],
    "obj_gid": F["OBJ_GID"],
    "field_compare": F["FIELD_COMPARE"],
    "exe": F["EXE"],
    "saddr_fam": F["SADDR_FAM"],
    "a0": F["ARG0"],
    "a1": F["ARG1"],
    "a2": F["ARG2"],
    "a3": F["ARG3"],
    "key": F["FILTERKEY"],
}
_FIELD_NAME: dict[int, str] = {}
for _n, _i in _FIELD_BY_NAME.items():
    _FIELD_NAME.setdefault(_i, _n)
# The kernel's AUDIT_LOGINUID_SET has no name in libaudit (auditctl -l prints it as "f24=");
# we accept the kernel's name on input so that such a rule can be written at all.
_FIELD_BY_NAME["loginuid_set"] = F["LOGINUID_SET"]

_UID_FIELDS = frozenset({F["UID"], F["EUID"], F["SUID"], F["FSUID"], F["LOGINUID"], F["OBJ_UID"]})
_GID_FIELDS = frozenset({F["GID"], F["EGID"], F["SGID"], F["FSGID"], F["OBJ_GID"]})
_OBJ_STRING_FIELDS = frozenset(range(F["OBJ_USER"], F["OBJ_LEV_HIGH"] + 1)) | {F["WATCH"], F["DIR"]}
_ARG_FIELDS = frozenset(range(F["ARG0"], F["ARG3"] + 1))
_EXIT_ONLY_NUMERIC = frozenset(range(F["DEVMAJOR"], F["INODE"] + 1)) | {F["SUCCESS"]}

_FILETYPES: dict[str, int] = {
    "socket": 0o140000,
    "link": 0o120000,
    "file": 0o100000,
    "block": 0o060000,
    "dir": 0o040000,
    "character": 0o020000,
    "fifo": 0o010000,
}
_FSTYPES: dict[str, int] = {"debugfs": 0x64626720, "tracefs": 0x74726163}  # libaudit fstypetab.h
_FSTYPE_NAME = {v: k for k, v in _FSTYPES.items()}

_ERRNO_NAME: dict[int, str] = {}
for _n, _i in ERRNO.items():
    _ERRNO_NAME.setdefault(_i, _n)

_PERM_LETTERS = (("r", PERMS["READ"]), ("w", PERMS["WRITE"]), ("x", PERMS["EXEC"]), ("a", PERMS["ATTR"]))
_PERM_ALL = PERMS["READ"] | PERMS["WRITE"] | PERMS["EXEC"] | PERMS["ATTR"]

# -C field1<op>field2 -> AUDIT_COMPARE_*; libaudit accepts either order of the two fields
_COMPARE_FIELD = {
    "UID": "uid",
    "EUID": "euid",
    "SUID": "suid",
    "FSUID": "fsuid",
    "AUID": "auid",
    "OBJ_UID": "obj_uid",
    "GID": "gid",
    "EGID": "egid",
    "SGID": "sgid",
    "FSGID": "fsgid",
    "OBJ_GID": "obj_gid",
}
_COMPARE_PRINT: dict[int, tuple[str, str]] = {}
_COMPARE_BY_FIELDS: dict[frozenset[int], int] = {}
for _cname, _cval in FIELD_COMPARE.items():
    _left, _right = _cname[len("COMPARE_") :].split("_TO_")
    _pair = (_COMPARE_FIELD[_left], _COMPARE_FIELD[_right])
    _COMPARE_PRINT[_cval] = _pair
    _COMPARE_BY_FIELDS[frozenset((_FIELD_BY_NAME[_pair[0]], _FIELD_BY_NAME[_pair[1]]))] = _cval

# option letters that are auditctl commands, not parts of a rule
_NOT_RULE_OPTIONS = set("hicslDvteflrbmRq")
_RULE_OPTIONS_WITH_ARG = set("aAdSFCwWkp")


@dataclass(slots=True)
class RuleCommand:
    """What a rule text asks for: add (-a/-A/-w) or delete (-d/-W) this rule."""

    op: str  # "add" or "delete"
    rule: AuditRuleData


def parse_rule(
    text: str | Sequence[str],
    arch: str | Machine | None = None,
    *,
    is_dir: Callable[[str], bool] | None = None,
) -> AuditRuleData:
    """The rule that auditctl would send for ``text`` (``-a``/``-A``/``-d``/``-w``/``-W`` ...).

    ``arch`` is the machine auditctl runs on (default: this host); it decides what b64/b32
    mean and which syscall table names resolve in when the rule has no ``-F arch``.
    ``is_dir`` decides whether ``-w PATH`` watches a directory (AUDIT_DIR) or a file
    (AUDIT_WATCH); auditctl stats the path, and so does the default.
    """
    return parse_rule_command(text, arch, is_dir=is_dir).rule


def parse_rule_command(
    text: str | Sequence[str],
    arch: str | Machine | None = None,
    *,
    is_dir: Callable[[str], bool] | None = None,
) -> RuleCommand:
    """Like ``parse_rule`` and also says whether the text adds or deletes the rule."""
    if isinstance(text, str):
        shown = text
        try:
            tokens = shlex.split(text)
        except ValueError as exc:
            raise RuleError(f"rule {text!r}: {exc}") from None
    else:
        tokens = list(text)
        shown = shlex.join(tokens)
    for tok in tokens:
        _check_argument(tok, shown)
    if tokens and tokens[0] == "auditctl":
        tokens = tokens[1:]
    if not tokens:
        raise RuleError(f"rule {shown!r}: empty rule")
    try:
        machine = arch if isinstance(arch, Machine) else (machine_by_name(arch) if arch else host_machine())
    except SyscallError as exc:
        raise RuleError(f"rule {shown!r}: {exc}") from None
    builder = _RuleBuilder(shown, machine, is_dir or os.path.isdir)
    return builder.build(tokens)


def _check_argument(token: str, shown: str) -> None:
    """Refuse what no argv element can hold; everything else is auditctl's to judge.

    auditctl takes its arguments as C strings: bytes up to a NUL. Paths, keys and names are
    bytes on Linux, and Python gives undecodable argv bytes to us as surrogate escapes
    (U+DC80..U+DCFF), which go back to the same bytes (``_b``): ``-w /\\udc8f`` watches the path
    b"/\\x8f", as ``auditctl -w $'/\\x8f'`` does. A NUL, or a surrogate that is no escaped byte,
    cannot come from any command line.
    """
    if "\0" in token:
        raise RuleError(f"rule {shown!r}: argument {token!r} holds a NUL character, which no argument can carry")
    try:
        _b(token)
    except UnicodeEncodeError as exc:
        raise RuleError(
            f"rule {shown!r}: argument {token!r} holds {token[exc.start]!r}, which stands for no byte"
        ) from None


def _b(text: str) -> bytes:
    """The bytes auditctl would see for ``text`` (undecodable argv bytes come back as they were)."""
    return text.encode("utf-8", "surrogateescape")


def _isdigit(ch: str) -> bool:
    """C's isdigit: ASCII 0-9 only (str.isdigit also says yes to '²' and '٣')."""
    return "0" <= ch <= "9" and len(ch) == 1


def _starts_number(v: str, *, negative: bool = True) -> bool:
    """libaudit's test before it calls strtol: a digit, or (``negative``) '-' and a digit."""
    return _isdigit(v[:1]) or (negative and len(v) >= 2 and v[0] == "-" and _isdigit(v[1]))


_C_SPACE = " \t\n\v\f\r"
_HEX = "0123456789abcdefABCDEF"


def _strtol(text: str) -> tuple[int, str] | None:
    """C's ``strtol(text, &end, 0)``: the value of the number at the start and the rest.

    Leading white space and one sign are skipped; ``0x``/``0X`` followed by a hex digit means
    hex, a leading ``0`` octal, else decimal; reading stops at the first character that is not
    a digit of the base (``0-3`` is 0 and ``-3`` is the rest, ``0x`` is 0 and ``x`` the rest).
    None when no digit was read (C returns 0 with ``end == text``). The value is exact: the
    caller decides what is out of range.
    """
    i, n = 0, len(text)
    while i < n and text[i] in _C_SPACE:
        i += 1
    neg = False
    if i < n and text[i] in "+-":
        neg = text[i] == "-"
        i += 1
    if text[i : i + 2] in ("0x", "0X") and i + 2 < n and text[i + 2] in _HEX:
        base, i = 16, i + 2
        digits = _HEX
    elif text[i : i + 1] == "0":
        base, digits = 8, "01234567"
    else:
        base, digits = 10, "0123456789"
    j = i
    while j < n and text[j] in digits:
        j += 1
    if j == i:
        return None
    value = int(text[i:j], base)
    return (-value if neg else value), text[j:]


class _RuleBuilder:
    """auditctl's setopt state machine for one rule."""

    def __init__(self, text: str, machine: Machine, is_dir: Callable[[str], bool]) -> None:
        self.text = text
        self.machine = machine
        self.is_dir = is_dir
        self.add: int | None = None
        self.delete: int | None = None
        self.action: int | None = None
        self.setups = 0
        self.elf: int | None = None  # libaudit's _audit_elf: arch used to resolve syscall names
        self.syscall_added = False
        self.perm_added = False
        self.exe_added = False
        self.key = ""
        self.mask = [0] * 64
        self.fields: list[RuleField] = []

    def error(self, problem: str) -> RuleError:
        return RuleError(f"rule {self.text!r}: {problem}")

    @property
    def list_nr(self) -> int | None:
        if self.add is not None:
            return self.add & FILTER_MASK
        if self.delete is not None:
            return self.delete & FILTER_MASK
        return None

    # -- driver --------------------------------------------------------------------------

    def build(self, tokens: list[str]) -> RuleCommand:
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            i += 1
            if len(tok) < 2 or tok[0] != "-":
                raise self.error(f"{tok!r} is not an option (parameter passed without an option given)")
            if tok.startswith("--"):
                raise self.error(f"option {tok} is not a rule option")
            letter, arg = tok[1], tok[2:]
            if letter in _NOT_RULE_OPTIONS:
                raise self.error(f"option -{letter} is an auditctl command, not part of a rule")
            if letter not in _RULE_OPTIONS_WITH_ARG:
                raise self.error(f"unknown option -{letter}")
            if not arg:
                if i >= len(tokens):
                    raise self.error(f"option -{letter} needs a value")
                arg = tokens[i]
                i += 1
            self.option(letter, arg)
        return self.finish()

    def option(self, letter: str, arg: str) -> None:
        if letter in "aAd":
            self.setup(letter, arg)
        elif letter == "S":
            self.syscalls(arg)
        elif letter == "F":
            if self.list_nr is None:
                raise self.error(f"-F {arg}: list must be given before field (-a/-A/-d list,action first)")
            if arg.startswith("key="):
                self.add_key(arg[4:])
            else:
                self.fieldpair(arg)
        elif letter == "C":
            self.compare(arg)
        elif letter in "wW":
            self.watch(letter, arg)
        elif letter == "k":
            if not (self.syscall_added or self.perm_added or self.exe_added) or self.list_nr is None:
                raise self.error(f"-k {arg}: key option needs a watch or syscall given prior to it")
            self.add_key(arg)
        elif letter == "p":
            self.perms(arg)

    # -- -a / -A / -d --------------------------------------------------------------------

    def setup(self, letter: str, opt: str) -> None:
        self.setups += 1
        if self.setups != 1 or (self.add is not None or self.delete is not None):
            raise self.error("multiple rule insert/delete operations are not allowed")
        if letter in "aA" and "task" in opt and self.syscall_added:
            raise self.error("syscall auditing requested for task list")
        parts = opt.split(",")
        if len(parts) != 2:
            raise self.error(f"-{letter} {opt}: expected list,action (e.g. always,exit)")
        listnr: int | None = None
        action: int | None = None
        for word in parts:
            if word in ("always", "never"):
                if action is not None:
                    raise self.error(f"-{letter} {opt}: two actions given")
                action = AUDIT_ALWAYS if word == "always" else AUDIT_NEVER
            elif word == "possible":
                raise self.error(f"-{letter} {opt}: the possible action is deprecated and not supported")
            elif word in _FILTER_BY_NAME:
                if listnr is not None:
                    raise self.error(f"-{letter} {opt}: two lists given")
                listnr = _FILTER_BY_NAME[word]
            else:
                raise self.error(
                    f"-{letter} {opt}: bad keyword {word!r} (lists: {', '.join(_FILTER_BY_NAME)}; actions: always, never)"
                )
        if listnr is None:
            raise self.error(
                f"-{letter} {opt}: missing list (exit, task, user, exclude, filesystem, io_uring)"
            )
        if action is None:
            raise self.error(f"-{letter} {opt}: missing action (always or never)")
        self.action = action
        if letter == "d":
            self.delete = listnr
        else:
            self.add = listnr | (FILTER_PREPEND if letter == "A" else 0)

    # -- -S ------------------------------------------------------------------------------

    def syscalls(self, arg: str) -> None:
        listnr = self.list_nr
        if listnr == TASK_LIST:
            raise self.error(f"-S {arg}: syscall auditing being added to task list")
        if listnr == USER_LIST:
            raise self.error(f"-S {arg}: syscall auditing being added to user list")
        if listnr == FS_LIST:
            raise self.error(f"-S {arg}: syscall auditing being added to filesystem list")
        if listnr == EXCLUDE_LIST:
            raise self.error(f"-S {arg}: syscall auditing cannot be put on exclude list")
        if self.elf is None:
            self.elf = self.machine.elf  # auditctl resolves names for the host, adds no arch field
        for name in arg.split(","):
            if not name:
                continue
            if name == "all":
                self.mask = [a | b for a, b in zip(self.mask, ALL_SYSCALLS_MASK, strict=True)]
                continue
            if listnr == URING_LIST and not _isdigit(name[:1]):
                raise self.error(f"-S {name}: io_uring operation names are not known here; give the number")
            try:
                nr = syscall_number(name, self.elf)
            except SyscallError as exc:
                raise self.error(f"-S {arg}: {exc}") from None
            self.mask[nr // 32] |= 1 << (nr % 32)
        self.syscall_added = True

    # -- -w / -W / -p ----------------------------------------------------------------------

    def watch(self, letter: str, path: str) -> None:
        if letter == "w" and (self.add is not None or self.delete is not None):
            raise self.error(f"-w {path}: watch option can't be given with a syscall rule (-a/-d)")
        if len(_b(path)) >= PATH_MAX:
            raise self.error(f"-{letter}: the path passed for the watch is too big ({len(_b(path))} bytes)")
        if not path.startswith("/"):
            raise self.error(f"-{letter} {path}: the path must start with '/'")
        if len(_b(os.path.basename(path.rstrip("/") or "/"))) > NAME_MAX:
            raise self.error(f"-{letter} {path}: the base name of the path is too big")
        if self.fields:
            raise self.error(f"-{letter} {path}: a watch must come before any field")
        if len(path) > 2:
            path = path.rstrip("/") or "/"
        ftype = F["DIR"] if self.is_dir(path) else F["WATCH"]
        if letter == "w":
            self.add = EXIT_LIST
        else:
            self.delete = EXIT_LIST
        self.action = AUDIT_ALWAYS
        self.syscall_added = True
        self.mask = list(ALL_SYSCALLS_MASK)
        self.fields = [RuleField(ftype, EQUAL, 0, path), RuleField(F["PERM"], EQUAL, _PERM_ALL)]
        self.perm_added = True

    def perms(self, arg: str) -> None:
        if self.list_nr is None:
            raise self.error(f"-p {arg}: permission option needs a watch given prior to it")
        val = self.perm_value(arg, f"-p {arg}")
        if not self.fields:
            raise self.error(f"-p {arg}: permission option needs a watch or field given prior to it")
        for f in self.fields:
            if f.field == F["PERM"]:
                f.value = val
                break
        else:
            if len(self.fields) >= 63:
                raise self.error(f"-p {arg}: too many fields in the rule")
            self.fields.append(RuleField(F["PERM"], EQUAL, val))
        self.perm_added = True

    def perm_value(self, text: str, where: str) -> int:
        if len(text) > 4:
            raise self.error(f"{where}: permission {text!r} is too long (at most 4 of r, w, x, a)")
        val = 0
        for ch in text:
            for letter, bit in _PERM_LETTERS:
                if ch.lower() == letter:
                    val |= bit
                    break
            else:
                raise self.error(f"{where}: permission {ch!r} isn't supported (use r, w, x, a)")
        return val

    # -- keys ----------------------------------------------------------------------------

    def add_key(self, key: str) -> None:
        if len(_b(key)) + len(_b(self.key)) + (1 if self.key else 0) > MAX_KEY_LEN:
            raise self.error(f"key {key!r}: key option exceeds the size limit of {MAX_KEY_LEN} bytes")
        if KEY_SEPARATOR in key:
            raise self.error(f"key {key!r} has the illegal character \\x01")
        if not key:
            raise self.error("key option needs a value")
        self.key = f"{self.key}{KEY_SEPARATOR}{key}" if self.key else key

    # -- -F ------------------------------------------------------------------------------

    def split_pair(self, pair: str, what: str) -> tuple[str, int, str]:
        for sym, op in _OPERATOR_SEARCH:
            at = pair.find(sym)
            if at >= 0:
                name, value = pair[:at], pair[at + len(sym) :]
                if not name:
                    raise self.error(f"{what} {pair}: missing field name before the operator")
                if not value:
                    raise self.error(f"{what} {pair}: missing value after the operator")
                return name, op, value
        raise self.error(f"{what} {pair}: missing operation (one of =, !=, <, >, <=, >=, &, &=)")

    def fieldpair(self, pair: str) -> None:
        if len(self.fields) >= 63:
            raise self.error(f"-F {pair}: too many fields in the rule (at most 63 plus the key)")
        name, op, v = self.split_pair(pair, "-F")
        fid = _FIELD_BY_NAME.get(name)
        if fid is None:
            raise self.error(f"-F {pair}: unknown field {name!r}")
        where = f"-F {pair}"
        listnr = self.list_nr
        f = RuleField(fid, op, 0)

        def need_exit(reason: str = "field") -> None:
            if listnr != EXIT_LIST:
                raise self.error(f"{where}: {reason} {name!r} is only valid on the exit list")

        if fid in _UID_FIELDS:
            f.value = self.id_value(v, where, users=True)
        elif fid in _GID_FIELDS:
            f.value = self.id_value(v, where, users=False)
        elif fid == F["EXIT"]:
            need_exit()
            f.value = self.exit_value(v, where)
        elif fid == F["MSGTYPE"]:
            if listnr not in (EXCLUDE_LIST, USER_LIST):
                raise self.error(f"{where}: msgtype is only valid on the exclude and user lists")
            if _isdigit(v[:1]):
                f.value = self.number(v, where)
            else:
                try:
                    f.value = record_type_number(v)
                except ValueError:
                    raise self.error(f"{where}: unknown message type {v!r}") from None
        elif is_string_field(fid) and fid != F["FILTERKEY"]:
            if fid in _OBJ_STRING_FIELDS:
                need_exit()
                if fid in (F["WATCH"], F["DIR"]):
                    self.perm_added = True
            if fid == F["EXE"]:
                if op not in (EQUAL, NOT_EQUAL):
                    raise self.error(f"{where}: exe only takes = or !=")
                self.exe_added = True
            if len(_b(v)) > PATH_MAX:
                raise self.error(f"{where}: value is longer than {PATH_MAX} bytes")
            f.strval = v
        elif fid == F["FILTERKEY"]:  # reached only via the final key=...
            f.strval = v
        elif fid == F["ARCH"]:
            if self.syscall_added:
                raise self.error(f"{where}: arch must be given before the syscalls (-F arch=... before -S)")
            if op not in (EQUAL, NOT_EQUAL):
                raise self.error(f"{where}: arch only takes = or !=")
            try:
                f.value = resolve_arch(v, self.machine)
            except SyscallError as exc:
                raise self.error(f"{where}: {exc}") from None
            self.elf = f.value
        elif fid == F["PERM"]:
            need_exit()
            if op != EQUAL:
                raise self.error(f"{where}: perm only takes =")
            f.value = self.perm_value(v, where)
            self.perm_added = True
        elif fid == F["FILETYPE"]:
            need_exit()
            if v in _FILETYPES:
                f.value = _FILETYPES[v]
            elif _isdigit(v[:1]):
                f.value = self.number(v, where)
            else:
                raise self.error(f"{where}: unknown file type {v!r} (one of {', '.join(_FILETYPES)})")
        elif fid == F["FSTYPE"]:
            if listnr != FS_LIST:
                raise self.error(f"{where}: fstype is only valid on the filesystem list")
            if v in _FSTYPES:
                f.value = _FSTYPES[v]
            elif _isdigit(v[:1]):
                f.value = self.number(v, where, signed=False)
            else:
                raise self.error(
                    f"{where}: file system type is unknown: {v!r} (known: {', '.join(_FSTYPES)})"
                )
        elif fid in _ARG_FIELDS:
            if not _starts_number(v):
                raise self.error(f"{where}: value {v!r} should be a number")
            f.value = self.number(v, where)
        elif fid == F["SESSIONID"]:
            if listnr not in (EXCLUDE_LIST, USER_LIST, EXIT_LIST):
                raise self.error(f"{where}: sessionid is only valid on the exclude, user and exit lists")
            f.value = 0xFFFFFFFF if v == "unset" else self.number(v, where)
        elif fid == F["SADDR_FAM"]:
            f.value = self.number(v, where, signed=False)
            if f.value >= AF_MAX:
                raise self.error(
                    f"{where}: value is too large for field saddr_fam (address families < {AF_MAX})"
                )
        else:
            if fid in _EXIT_ONLY_NUMERIC:
                need_exit()
            if fid == F["INODE"] and op not in (EQUAL, NOT_EQUAL):
                raise self.error(f"{where}: inode only takes = or !=")
            if fid == F["PPID"] and listnr != EXIT_LIST:
                raise self.error(f"{where}: ppid is only valid on the exit list")
            if not _isdigit(v[:1]):
                raise self.error(f"{where}: value {v!r} should be a number")
            f.value = self.number(v, where)
        self.fields.append(f)

    def number(self, v: str, where: str, *, signed: bool = True) -> int:
        """The u32 auditctl sends for ``v``: libaudit reads values with ``strtol``/``strtoul(v,
        NULL, 0)``, which take the number at the start and ignore the rest (``uid=0-3`` is sent,
        and listed, as ``uid=0``; checked with auditctl 3.0.9).

        One deliberate difference: a value outside 32 bits is an error. auditctl stores the C
        ``long`` in a u32, which on a 64-bit machine silently makes ``99999999999`` into
        1215752191 and on a 32-bit one saturates: no user means either.
        """
        parsed = _strtol(v)
        if parsed is None:
            raise self.error(f"{where}: {v!r} is not a number")
        n = parsed[0]
        if n < 0 and not signed:
            raise self.error(f"{where}: {v!r}: negative value not allowed")
        if n > 0xFFFFFFFF or n < -0x80000000:
            raise self.error(f"{where}: {v!r} does not fit in 32 bits")
        return n & 0xFFFFFFFF

    def id_value(self, v: str, where: str, *, users: bool) -> int:
        if _starts_number(v, negative=users):
            return self.number(v, where)
        if users and v == "unset":
            return 0xFFFFFFFF
        try:
            return pwd.getpwnam(v).pw_uid if users else grp.getgrnam(v).gr_gid
        except (KeyError, ValueError, UnicodeError):  # ValueError: a name no passwd line can have
            raise self.error(f"{where}: unknown {'user' if users else 'group'} {v!r}") from None

    def exit_value(self, v: str, where: str) -> int:
        if _starts_number(v):
            return self.number(v, where)
        sign, name = (-1, v[1:]) if v.startswith("-") else (1, v)
        num = ERRNO.get(name)
        if num is None:
            raise self.error(f"{where}: unknown errno name {name!r}")
        return (sign * num) & 0xFFFFFFFF

    # -- -C ------------------------------------------------------------------------------

    def compare(self, pair: str) -> None:
        where = f"-C {pair}"
        if len(self.fields) >= 63:
            raise self.error(f"{where}: too many fields in the rule")
        if "!=" in pair:
            left, right = pair.split("!=", 1)
            op = NOT_EQUAL
        elif "=" in pair:
            left, right = pair.split("=", 1)
            op = EQUAL
        else:
            raise self.error(f"{where}: field comparison takes = or !=")
        if not left:
            raise self.error(f"{where}: missing first field name")
        if not right:
            raise self.error(f"{where}: missing second field name")
        f1, f2 = _FIELD_BY_NAME.get(left), _FIELD_BY_NAME.get(right)
        if f1 is None:
            raise self.error(f"{where}: unknown field {left!r}")
        if f2 is None:
            raise self.error(f"{where}: unknown field {right!r}")
        if self.list_nr != EXIT_LIST:
            raise self.error(f"{where}: field comparisons are only valid on the exit list")
        value = _COMPARE_BY_FIELDS.get(frozenset((f1, f2)))
        if value is None or f1 == f2:
            raise self.error(f"{where}: {left} and {right} cannot be compared")
        self.fields.append(RuleField(F["FIELD_COMPARE"], op, value))

    # -- end of the rule -------------------------------------------------------------------

    def finish(self) -> RuleCommand:
        if self.add is None and self.delete is None:
            raise self.error("no list and action given (-a/-A/-d list,action, or -w/-W path)")
        if self.key:
            if not (self.syscall_added or self.perm_added or self.exe_added):
                raise self.error("key option needs a watch or syscall given prior to it")
            if len(self.fields) >= 63:
                raise self.error("too many fields in the rule to add the key")
            self.fields.append(RuleField(F["FILTERKEY"], EQUAL, 0, self.key))
        for f in self.fields:
            if f.strval is not None:
                f.value = len(f.strbytes())  # as on the wire, so decode(encode(rule)) == rule
        listnr = self.list_nr
        assert listnr is not None and self.action is not None
        if listnr != TASK_LIST and not self.syscall_added:
            self.mask = list(ALL_SYSCALLS_MASK)
        flags = self.add if self.add is not None else self.delete
        assert flags is not None
        rule = AuditRuleData(flags, self.action, tuple(self.mask), self.fields)
        return RuleCommand("add" if self.add is not None else "delete", rule)


# ---------------------------------------------------------------------------------------
# auditctl -l
# ---------------------------------------------------------------------------------------


def _c_str(value: str | None) -> str:
    # printf("%s", NULL) in glibc
    return "(null)" if value is None else value


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


def _is_watch(rule: AuditRuleData) -> bool:
    """auditctl's is_watch: only path/dir/perm/key fields, a perm field, and all syscalls."""
    perm = False
    for f in rule.fields:
        fid = f.field_id
        if fid == F["PERM"]:
            perm = True
        if fid not in (F["PERM"], F["FILTERKEY"], F["DIR"], F["WATCH"]):
            return False
    if rule.list_nr not in (USER_LIST, TASK_LIST, EXCLUDE_LIST, FS_LIST) and not rule.all_syscalls():
        return False
    return perm


def _strval(f: RuleField) -> str:
    data = f.strbytes()
    # %.*s stops at a NUL byte
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _format_one(rule: AuditRuleData, host: Machine, sticky_elf: int) -> tuple[str, int]:
    out: list[str] = []
    watch = _is_watch(rule)
    elf = sticky_elf
    if not watch:
        flag = rule.flags & ~FILTER_PREPEND
        opt = "-A" if rule.flags & FILTER_PREPEND else "-a"
        out.append(f"{opt} {_c_str(ACTION_NAMES.get(rule.action))},{_c_str(FILTER_NAMES.get(flag))}")
        for f in rule.fields:
            if f.field_id == F["ARCH"]:
                elf = f.value
                out.append(f" -F arch{_c_str(_OP_SYMBOL.get(f.op & OPERATOR_BITS))}{arch_bits_name(f.value)}")
        if rule.list_nr not in (USER_LIST, TASK_LIST, EXCLUDE_LIST, FS_LIST):
            if rule.all_syscalls():
                out.append(" -S all")
            else:
                names = []
                table_elf = elf if elf else host.elf
                # io_uring rules hold operation numbers, not syscalls; we have no op names
                known = machine_by_elf(table_elf) is not None and rule.list_nr != URING_LIST
                for nr in rule.syscalls():
                    name = syscall_name(nr, table_elf) if known else None
                    names.append(name if name else str(nr))
                if names:
                    out.append(" -S " + ",".join(names))
    for f in rule.fields:
        fid = f.field_id
        sym = _c_str(_OP_SYMBOL.get(f.op & OPERATOR_BITS))
        if fid == F["ARCH"]:
            continue
        name = _FIELD_NAME.get(fid)
        if name is None:
            out.append(f" f{f.field}{sym}{_signed(f.value)}")
            continue
        if fid == F["MSGTYPE"]:
            tname = record_type_name(f.value) if f.value <= 0xFFFF else None
            if tname is None or tname.startswith("UNKNOWN["):
                out.append(f" -F {name}{sym}{_signed(f.value)}")
            else:
                out.append(f" -F {name}{sym}{tname}")
        elif fid == F["WATCH"]:
            out.append(f"-w {_strval(f)}" if watch else f" -F path={_strval(f)}")
        elif fid == F["DIR"]:
            out.append(f"-w {_strval(f)}" if watch else f" -F dir={_strval(f)}")
        elif fid == F["EXE"]:
            out.append(f" -F exe={_strval(f)}")
        elif fid == F["FILTERKEY"]:
            for key in _strval(f).split(KEY_SEPARATOR):
                if key:
                    out.append(f" -k {key}" if watch else f" -F key={key}")
        elif is_string_field(fid):
            out.append(f" -F {name}{sym}{_strval(f)}")
        elif fid == F["PERM"]:
            perms = "".join(letter for letter, bit in _PERM_LETTERS if f.value & bit)
            out.append(f" -p {perms}" if watch else f" -F perm={perms}")
        elif fid == F["INODE"]:
            out.append(f" -F {name}{sym}{f.value & 0xFFFFFFFF}")
        elif fid == F["FIELD_COMPARE"]:
            pair = _COMPARE_PRINT.get(f.value)
            if pair is not None:  # auditctl prints nothing for an unknown comparison
                out.append(f" -C {pair[0]}{sym}{pair[1]}")
        elif fid in _ARG_FIELDS:
            out.append(f" -F {name}{sym}0x{f.value & 0xFFFFFFFF:X}")
        elif fid == F["EXIT"]:
            val = _signed(f.value)
            err = _ERRNO_NAME.get(abs(val))
            out.append(f" -F {name}{sym}-{err}" if val < 0 and err else f" -F {name}{sym}{val}")
        elif fid == F["FSTYPE"]:
            fs = _FSTYPE_NAME.get(f.value)
            out.append(f" -F {name}{sym}{fs if fs else _signed(f.value)}")
        else:
            out.append(f" -F {name}{sym}{_signed(f.value)}")
    return "".join(out), elf


def _host(arch: str | Machine | None) -> Machine:
    if isinstance(arch, Machine):
        return arch
    return machine_by_name(arch) if arch else host_machine()


def format_rule(rule: AuditRuleData, arch: str | Machine | None = None) -> str:
    """One rule exactly as ``auditctl -l`` prints it (without the newline).

    ``arch`` is the machine auditctl would run on (default: this host); its syscall table
    names the syscalls of a rule that has no arch field.
    """
    return _format_one(rule, _host(arch), 0)[0]


def format_rules(rules: Iterable[AuditRuleData], arch: str | Machine | None = None) -> list[str]:
    """A whole listing as ``auditctl -l`` prints it, one line per rule.

    Faithful to a quirk of auditctl: the arch of the last rule that had one stays in force
    for naming the syscalls of following rules without an arch field (auditctl resets its
    ``_audit_elf`` once per listing, not per rule).
    """
    host = _host(arch)
    sticky = 0
    lines = []
    for rule in rules:
        line, sticky = _format_one(rule, host, sticky)
        lines.append(line)
    return lines
