"""Fuzz target ``auditctl``: rule text in auditctl syntax, as ``kaudit rules add`` and scenario
``kernel.rules`` take it.

``parse_rule_command`` must give a rule or one ``RuleError`` naming the text. A rule that
parses must encode (the struct is what goes to the kernel), ``auditctl -l`` must format it,
and the printed text must parse back to the bytes the kernel would list for the rule — the
check ``collector.config.verify_rules`` relies on.
"""

from __future__ import annotations

from collections.abc import Iterator

from collector.protocol._tables import FILTERS, OPERATORS, RULE_FIELDS
from collector.protocol.auditctl import format_rule, parse_rule, parse_rule_command
from collector.protocol.rules import RuleError, is_string_field

from . import seeds as _seeds

ARCH = "x86_64"
_DIR = RULE_FIELDS["DIR"]
_PATH_FIELDS = (RULE_FIELDS["WATCH"], _DIR)
_PERM = RULE_FIELDS["PERM"]
_KEY = RULE_FIELDS["FILTERKEY"]
_EQUAL_ONLY_PRINTED = (*_PATH_FIELDS, RULE_FIELDS["EXE"], _KEY)
_EQ = OPERATORS["EQUAL"]
_ARCH = RULE_FIELDS["ARCH"]
_HOST_ARCHES = (0xC000003E, 0x40000003)  # x86_64 (b64) and i386 (b32): what ARCH's b64/b32 name
_EXIT = FILTERS["EXIT"]
_URING = FILTERS["URING_EXIT"]


def _is_dir(path: str) -> bool:
    """Deterministic stand-in for auditctl's stat(), the same with or without a trailing /:
    a path whose last component has no dot is a directory."""
    return "." not in path.rstrip("/").rsplit("/", 1)[-1]


def _unprintable(value: bytes) -> bool:
    """A string value auditctl -l prints so that it does not read back: empty, with white
    space or NUL, or with operator characters (``dir=/>=`` reads as the operator ``>=``)."""
    return not value or any(c in value for c in b" \t\n\r\x0b\x0c\x00=<>!&")


def _odd_watch(rule) -> bool:
    """A rule auditctl -l prints in watch form (-w/-p/-k) that is not one watch of one path:
    perm without a path, two perms, the path not first. auditctl prints such rules as
    text that is not rule syntax (`` -p a``, ``-w /a -p rwxa -p a``); nothing to round trip."""
    ids = [f.field_id for f in rule.fields]
    if _PERM not in ids or any(i not in (_PERM, _KEY, *_PATH_FIELDS) for i in ids):
        return False
    return ids.count(_PERM) != 1 or sum(ids.count(i) for i in _PATH_FIELDS) != 1 or ids[0] not in _PATH_FIELDS


def kernel_accepts(payload: bytes) -> bool:
    """Whether the simulated kernel takes this AUDIT_ADD_RULE (every path exists, as seen by it)."""
    from simulator.kernel import AuditKernel

    kernel = AuditKernel(enabled=1, path_exists=lambda p: True, parent_exists=lambda p: True)
    rule = kernel._parse_rule(payload)  # noqa: SLF001 - the model's audit_data_to_entry
    return not isinstance(rule, int) and kernel._add_rule(rule) == 0  # noqa: SLF001


def one_input(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        cmd = parse_rule_command(text, ARCH, is_dir=_is_dir)
    except RuleError:
        return
    rule = cmd.rule
    wire = rule.kernel_form().encode()
    printed = format_rule(rule, ARCH)
    if not kernel_accepts(rule.encode()):
        return  # auditctl -l only ever prints rules a kernel holds
    if any(_unprintable(f.strbytes()) for f in rule.fields if is_string_field(f.field)):
        return  # auditctl -l prints string values unquoted: such a listing is not rule syntax
    if any(f.field_id in _PATH_FIELDS and f.strbytes().endswith(b"/") for f in rule.fields):
        return  # `-F dir=/d/` keeps its slash but lists as `-w /d/`, which auditctl trims
    if _odd_watch(rule):
        return
    if any(f.field_id in _EQUAL_ONLY_PRINTED and f.op & OPERATORS["OPERATORS"] != _EQ for f in rule.fields):
        return  # auditctl -l prints path/dir/exe/key with a hard-coded "="
    if rule.list_nr in (_EXIT, _URING) and not any(rule.mask):
        return  # `-S ,` adds no syscall; listed without -S, which reads back as every syscall
    if rule.list_nr != _EXIT and any(f.field_id == _PERM for f in rule.fields):
        return  # auditctl takes `-p` on any list but lists it as `-F perm=`, which it takes on exit only
    if any(f.field_id == _ARCH and f.value not in _HOST_ARCHES for f in rule.fields):
        return  # a foreign arch (-F arch=20) lists as b32/b64, which reads back as this host's
    try:
        # -w stats its path; the listing's kernel rule already says what the path was
        dirs = {f.strbytes().decode("utf-8", "surrogateescape") for f in rule.fields if f.field_id == _DIR}
        back = parse_rule(printed.split(" "), ARCH, is_dir=lambda p: p in dirs)
    except RuleError as exc:
        raise AssertionError(f"auditctl -l text of {text!r} does not parse back: {printed!r}: {exc}") from None
    assert back.kernel_form().encode() == wire, f"{text!r} -> {printed!r} parses to another rule"


def seeds() -> Iterator[bytes]:
    for text in _seeds.rule_texts():
        yield text.encode()
