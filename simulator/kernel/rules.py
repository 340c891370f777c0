"""Audit rules in the kernel's representation, the rule table, and the filters that read it.

:class:`KernelRule` and :class:`KernelField` are struct audit_krule and struct audit_field,
reduced to what the kernel compares and lists back. ``RulesMixin`` holds the table in
AUDIT_LIST_RULES' order, audit_data_to_entry() with the errno of every refusal,
audit_add_rule()/audit_del_rule() with their CONFIG_CHANGE records, and audit_filter() for the
exclude and user lists.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .constants import (
    _ANY_OP_FIELDS,
    _EQ_ONLY_FIELDS,
    _GID_FIELDS,
    _NO_BITOP_FIELDS,
    _STRING_FIELDS,
    _U32,
    _UID_FIELDS,
    AUDIT_ADD_RULE,
    AUDIT_ALWAYS,
    AUDIT_BITMASK_SIZE,
    AUDIT_CONFIG_CHANGE,
    AUDIT_LOGINUID_LEGACY,
    AUDIT_MAX_FIELDS,
    AUDIT_MAX_KEY_LEN,
    AUDIT_NEVER,
    AUDIT_SYSCALL_CLASSES,
    AUDIT_UID_UNSET,
    EEXIST,
    EINVAL,
    ENAMETOOLONG,
    ENOENT,
    FILTER_EXCLUDE,
    FILTER_EXIT,
    FILTER_FS,
    FILTER_PREPEND,
    FILTER_TASK,
    FILTER_URING_EXIT,
    FILTER_USER,
    OP_BITMASK,
    OP_BITTEST,
    OP_EQ,
    OP_GE,
    OP_GT,
    OP_LE,
    OP_LT,
    OP_NE,
    PATH_MAX,
    RULE_DATA_SIZE,
    VALID_OPS,
    F,
)
from .sockets import Client, untrusted

# --- rules in the kernel's representation ---------------------------------------------------


@dataclass(slots=True)
class KernelField:
    """struct audit_field, reduced to what the kernel compares and lists back."""

    type: int
    op: int  # the wire operator value (AUDIT_EQUAL ...)
    value: int
    text: bytes | None = None  # string fields, cut at the first NUL as strlen() would


@dataclass(slots=True)
class KernelRule:
    """struct audit_krule: what audit_data_to_entry() keeps of an audit_rule_data."""

    listnr: int
    action: int
    flags: int  # AUDIT_FILTER_PREPEND or 0 (cleared once the rule is on a list)
    mask: tuple[int, ...]
    fields: list[KernelField] = field(default_factory=list)
    pflags: int = 0

    def field_of(self, ftype: int) -> KernelField | None:
        return next((f for f in self.fields if f.type == ftype), None)

    @property
    def key(self) -> bytes | None:
        f = self.field_of(F["FILTERKEY"])
        return f.text if f else None

    def same_as(self, other: KernelRule) -> bool:
        """audit_compare_rule() == 0."""
        if (self.flags, self.pflags, self.listnr, self.action, len(self.fields)) != (
            other.flags, other.pflags, other.listnr, other.action, len(other.fields)
        ):
            return False
        for a, b in zip(self.fields, other.fields, strict=True):
            if a.type != b.type or a.op != b.op:
                return False
            if a.type in _STRING_FIELDS:
                if a.text != b.text:
                    return False
            elif a.value != b.value:
                return False
        return self.mask == other.mask

    def to_data(self) -> bytes:
        """audit_krule_to_data(): the payload of one AUDIT_LIST_RULES answer."""
        n = len(self.fields)
        ftypes, values, ops = [0] * 64, [0] * 64, [0] * 64
        buf = b""
        for i, f in enumerate(self.fields):
            ftypes[i], ops[i] = f.type, f.op
            if f.type in _STRING_FIELDS:
                text = f.text or b""
                values[i] = len(text)
                buf += text
            elif f.type == F["LOGINUID_SET"] and self.pflags & AUDIT_LOGINUID_LEGACY and not f.value:
                ftypes[i], values[i] = F["LOGINUID"], AUDIT_UID_UNSET
            else:
                values[i] = f.value
        return (
            struct.pack("=3I", self.flags | self.listnr, self.action, n)
            + struct.pack("=64I", *self.mask)
            + struct.pack("=64I", *ftypes)
            + struct.pack("=64I", *values)
            + struct.pack("=64I", *ops)
            + _U32.pack(len(buf))
            + buf
        )


class RulesMixin:
    """AuditKernel's rule table, rule changes and filters (the lists are set up in AuditKernel)."""

    def rule_list(self) -> list[KernelRule]:
        """Rules in the order AUDIT_LIST_RULES sends them (by list, then list order)."""
        return [r for lst in self.rules for r in lst]

    def rule_payloads(self) -> list[bytes]:
        return [r.to_data() for r in self.rule_list()]

    def rule_objects(self) -> list[object]:
        """The rules as collector.protocol.rules.AuditRuleData (needs that module)."""
        from collector.protocol.rules import AuditRuleData  # optional: only when asked for

        return [AuditRuleData.decode(p) for p in self.rule_payloads()]

    def _filter_exclude(self, rtype: int) -> bool:
        """audit_filter(type, AUDIT_FILTER_EXCLUDE): False when a `never` rule drops the type."""
        return self._filter_list(FILTER_EXCLUDE, rtype, None)

    def _filter_user(self, rtype: int, client: Client) -> bool:
        return self._filter_list(FILTER_USER, rtype, client)

    def _filter_list(self, listnr: int, rtype: int, client: Client | None) -> bool:
        """audit_filter(): the first rule whose fields all match decides; default is to log.

        A rule without fields never matches, and on the exclude list a match drops the
        record whatever the rule's action says (both as the kernel's loop is written).
        """
        for rule in self.rules[listnr]:
            if rule.fields and all(self._field_matches(f, rtype, client) for f in rule.fields):
                return not (rule.action == AUDIT_NEVER or listnr == FILTER_EXCLUDE)
        return True

    @staticmethod
    def _field_matches(f: KernelField, rtype: int, client: Client | None) -> bool:
        values = {F["MSGTYPE"]: rtype}
        if client is not None:
            values.update({F["PID"]: client.pid, F["UID"]: client.uid, F["GID"]: client.gid,
                           F["LOGINUID"]: client.auid, F["SESSIONID"]: client.ses,
                           F["LOGINUID_SET"]: int(client.auid != AUDIT_UID_UNSET)})
        if f.type not in values:
            return True  # fields this model cannot see (LSM labels ...) do not veto
        return _compare(values[f.type], f.op, f.value)

    # --- rules ------------------------------------------------------------------------------

    def _rule_change(self, client: Client, mtype: int, data: bytes) -> int:
        """audit_rule_change()."""
        rule = self._parse_rule(data)
        if isinstance(rule, int):
            return rule
        if mtype == AUDIT_ADD_RULE:
            err = self._add_rule(rule)
            self._log_rule_change(client, "add_rule", rule, int(not err))
        else:
            err = self._del_rule(rule)
            self._log_rule_change(client, "remove_rule", rule, int(not err))
        return err

    def _log_rule_change(self, client: Client, action: str, rule: KernelRule, res: int) -> None:
        """audit_log_rule_change()."""
        if not self.enabled:
            return
        key = rule.key
        text = client.session() + f" op={action} key=".encode() + (untrusted(key) if key is not None else b"(null)")
        self._log(AUDIT_CONFIG_CHANGE, text + f" list={rule.listnr} res={res}".encode())

    def _add_rule(self, rule: KernelRule) -> int:
        """audit_add_rule(): EEXIST for a duplicate, then what a watch or tree needs on disk."""
        lst = self.rules[rule.listnr]
        if any(rule.same_as(r) for r in lst):
            return -EEXIST
        watch = rule.field_of(F["WATCH"])
        if watch is not None and not self.parent_exists(_path(watch.text)):
            return -ENOENT
        tree = rule.field_of(F["DIR"])
        if tree is not None and not self.path_exists(_path(tree.text)):
            return -ENOENT
        if rule.flags & FILTER_PREPEND:
            rule.flags &= ~FILTER_PREPEND
            lst.insert(0, rule)
        else:
            lst.append(rule)
        return 0

    def _del_rule(self, rule: KernelRule) -> int:
        """audit_del_rule(): ENOENT when no rule compares equal."""
        lst = self.rules[rule.listnr]
        for i, r in enumerate(lst):
            if rule.same_as(r):
                del lst[i]
                return 0
        return -ENOENT

    def _parse_rule(self, data: bytes) -> KernelRule | int:
        """audit_data_to_entry(): a KernelRule or the negative errno the kernel answers.

        ``data`` is at least sizeof(struct audit_rule_data); the strings follow it and the
        kernel trusts neither buflen nor anything but the per-field lengths in values[].
        """
        flags, action, field_count = struct.unpack_from("=3I", data, 0)
        mask = list(struct.unpack_from("=64I", data, 12))
        ftypes = struct.unpack_from("=64I", data, 12 + 256)
        values = struct.unpack_from("=64I", data, 12 + 512)
        ops = struct.unpack_from("=64I", data, 12 + 768)
        # audit_to_entry_common()
        listnr = flags & ~FILTER_PREPEND & 0xFFFFFFFF
        if listnr not in (FILTER_EXIT, FILTER_URING_EXIT, FILTER_TASK, FILTER_USER, FILTER_EXCLUDE, FILTER_FS):
            return -EINVAL  # includes the deprecated AUDIT_FILTER_ENTRY
        if action not in (AUDIT_NEVER, AUDIT_ALWAYS):
            return -EINVAL  # includes the deprecated AUDIT_POSSIBLE
        if field_count > AUDIT_MAX_FIELDS:
            return -EINVAL
        for i in range(AUDIT_SYSCALL_CLASSES):
            bit = AUDIT_BITMASK_SIZE * 32 - i - 1
            mask[bit // 32] &= ~(1 << (bit % 32))  # class bits; the class lists are not modelled
        rule = KernelRule(listnr, action, flags & FILTER_PREPEND, tuple(mask))
        buf, remain = RULE_DATA_SIZE, len(data) - RULE_DATA_SIZE
        has = {"inode": None, "watch": False, "tree": False, "key": False, "exe": False}
        for i in range(field_count):
            op, ftype, val = ops[i], ftypes[i], values[i]
            if op not in VALID_OPS:
                return -EINVAL
            if ftype == F["LOGINUID"] and val == AUDIT_UID_UNSET:
                ftype, val = F["LOGINUID_SET"], 0
                rule.pflags |= AUDIT_LOGINUID_LEGACY
            err = _field_valid(listnr, ftype, op)
            if err:
                return err
            kf = KernelField(ftype, op, val)
            if ftype in _UID_FIELDS or ftype in _GID_FIELDS:
                if val == 0xFFFFFFFF:
                    return -EINVAL  # make_kuid()/make_kgid() of (uid_t)-1 is invalid
            elif ftype in _STRING_FIELDS:
                if ftype == F["FILTERKEY"] and (has["key"] or val > AUDIT_MAX_KEY_LEN):
                    return -EINVAL
                if ftype == F["EXE"] and (has["exe"] or val > PATH_MAX):
                    return -EINVAL
                if val == 0 or val > remain:
                    return -EINVAL  # audit_unpack_string()
                if val > PATH_MAX:
                    return -ENAMETOOLONG
                raw = data[buf : buf + val]
                buf, remain = buf + val, remain - val
                kf.text = raw.split(b"\0", 1)[0]
                if ftype == F["WATCH"]:
                    if (raw[:1] != b"/" or raw[-1:] == b"/" or listnr not in (FILTER_EXIT, FILTER_URING_EXIT)
                            or op != OP_EQ or has["inode"] is not None or has["watch"] or has["tree"]):
                        return -EINVAL  # audit_to_watch()
                    has["watch"] = True
                elif ftype == F["DIR"]:
                    if (raw[:1] != b"/" or listnr not in (FILTER_EXIT, FILTER_URING_EXIT)
                            or op != OP_EQ or has["inode"] is not None or has["watch"] or has["tree"]):
                        return -EINVAL  # audit_make_tree()
                    has["tree"] = True
                elif ftype == F["FILTERKEY"]:
                    has["key"] = True
                elif ftype == F["EXE"]:
                    if raw[:1] != b"/" or raw[-1:] == b"/":
                        return -EINVAL  # audit_alloc_mark()
                    if not self.parent_exists(_path(kf.text)):
                        return -ENOENT
                    has["exe"] = True
            elif ftype == F["INODE"]:
                if (listnr not in (FILTER_EXIT, FILTER_URING_EXIT) or has["inode"] is not None
                        or has["watch"] or has["tree"] or op not in (OP_EQ, OP_NE)):
                    return -EINVAL  # audit_to_inode()
                has["inode"] = op
            rule.fields.append(kf)
        return rule


# --- helpers ----------------------------------------------------------------------------------


def _field_valid(listnr: int, ftype: int, op: int) -> int:
    """audit_field_valid(), as it behaves on 6.x kernels.

    The kernel also has value checks (loginuid_set 0/1, perm <= 15, filetype within S_IFMT,
    field_compare <= AUDIT_MAX_FIELD_COMPARE, saddr_fam < AF_MAX), but audit_data_to_entry()
    calls audit_field_valid() before it stores the value in f->val, so they test 0 and never
    refuse anything. Measured on 6.18: perm=16, field_compare=26, saddr_fam=0xffffffff are
    all accepted. A model that enforced them would disagree with every real kernel.
    """
    if ftype == F["MSGTYPE"] and listnr not in (FILTER_EXCLUDE, FILTER_USER):
        return -EINVAL
    if ftype == F["FSTYPE"] and listnr != FILTER_FS:
        return -EINVAL
    if ftype == F["PERM"] and listnr == FILTER_URING_EXIT:
        return -EINVAL
    if listnr == FILTER_FS and ftype not in (F["FSTYPE"], F["FILTERKEY"]):
        return -EINVAL
    if ftype in _ANY_OP_FIELDS:
        return 0
    if ftype in _NO_BITOP_FIELDS:
        return -EINVAL if op in (OP_BITMASK, OP_BITTEST) else 0
    if ftype in _EQ_ONLY_FIELDS:
        return 0 if op in (OP_EQ, OP_NE) else -EINVAL
    return -EINVAL  # field not recognized


def _compare(left: int, op: int, right: int) -> bool:
    """audit_comparator()."""
    if op == OP_EQ:
        return left == right
    if op == OP_NE:
        return left != right
    if op == OP_LT:
        return left < right
    if op == OP_LE:
        return left <= right
    if op == OP_GT:
        return left > right
    if op == OP_GE:
        return left >= right
    if op == OP_BITMASK:
        return bool(left & right)
    if op == OP_BITTEST:
        return (left & right) == right
    return False


def _path(text: bytes | None) -> str:
    return (text or b"").decode("utf-8", "surrogateescape")
