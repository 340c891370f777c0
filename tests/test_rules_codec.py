"""struct audit_rule_data: layout, string buffer, and bad input."""

from __future__ import annotations

import struct

import pytest

from collector.protocol._tables import FILTERS, OPERATORS, RULE_FIELDS
from collector.protocol.rules import (
    ALL_SYSCALLS_MASK,
    EMPTY_MASK,
    RULE_DATA_SIZE,
    AuditRuleData,
    RuleError,
    RuleField,
    is_string_field,
)

EQ = OPERATORS["EQUAL"]
F = RULE_FIELDS


def sample_rule() -> AuditRuleData:
    mask = list(EMPTY_MASK)
    mask[42 // 32] |= 1 << (42 % 32)  # connect on x86_64
    return AuditRuleData(
        FILTERS["EXIT"],
        2,
        tuple(mask),
        [
            RuleField(F["ARCH"], EQ, 0xC000003E),
            RuleField(F["EXE"], EQ, 0, "/usr/bin/curl"),
            RuleField(F["LOGINUID"], OPERATORS["NOT_EQUAL"], 0xFFFFFFFF),
            RuleField(F["FILTERKEY"], EQ, 0, "net"),
        ],
    )


def test_struct_size_is_the_kernels():
    assert RULE_DATA_SIZE == 1040


def test_encode_layout_by_offsets():
    raw = sample_rule().encode()
    assert len(raw) == RULE_DATA_SIZE + len("/usr/bin/curl") + len("net")
    flags, action, count = struct.unpack_from("=3I", raw, 0)
    assert (flags, action, count) == (4, 2, 4)
    mask = struct.unpack_from("=64I", raw, 12)
    assert mask[1] == 1 << 10 and sum(1 for w in mask if w) == 1
    fields = struct.unpack_from("=64I", raw, 12 + 256)
    values = struct.unpack_from("=64I", raw, 12 + 512)
    ops = struct.unpack_from("=64I", raw, 12 + 768)
    assert fields[:5] == (11, 112, 9, 210, 0)
    # a string field's value is its length in the buffer
    assert values[:4] == (0xC000003E, 13, 0xFFFFFFFF, 3)
    assert ops[:4] == (EQ, EQ, OPERATORS["NOT_EQUAL"], EQ)
    (buflen,) = struct.unpack_from("=I", raw, 1036)
    assert buflen == 16
    assert raw[1040:] == b"/usr/bin/curlnet"


def test_decode_round_trip():
    rule = sample_rule()
    raw = rule.encode()
    back = AuditRuleData.decode(raw)
    assert back.encode() == raw
    assert [f.strval for f in back.fields] == [None, "/usr/bin/curl", None, "net"]
    assert back.fields[1].value == 13  # decode fills in the length
    assert back.syscalls() == [42]
    assert back.arch() == 0xC000003E
    assert back.keys() == ["net"]


def test_decode_ignores_netlink_padding():
    raw = sample_rule().encode()
    assert AuditRuleData.decode(raw + b"\0\0\0").encode() == raw


def test_string_value_recomputed_from_text():
    rule = AuditRuleData(4, 2, ALL_SYSCALLS_MASK, [RuleField(F["WATCH"], EQ, 999, "/etc/passwd")])
    raw = rule.encode()
    assert struct.unpack_from("=I", raw, 12 + 512)[0] == 11


def test_non_utf8_strings_survive():
    rule = AuditRuleData(4, 2, ALL_SYSCALLS_MASK, [RuleField(F["WATCH"], EQ, 0, b"/tmp/\xff\xfe")])
    raw = rule.encode()
    back = AuditRuleData.decode(raw)
    assert back.encode() == raw
    assert back.fields[0].strbytes() == b"/tmp/\xff\xfe"


def test_several_keys_share_one_field():
    rule = AuditRuleData(4, 2, ALL_SYSCALLS_MASK, [RuleField(F["FILTERKEY"], EQ, 0, "a\x01b\x01c")])
    assert AuditRuleData.decode(rule.encode()).keys() == ["a", "b", "c"]


def test_string_fields_are_the_kernels():
    names = {n for n, v in RULE_FIELDS.items() if is_string_field(v)}
    assert names == {
        "SUBJ_USER", "SUBJ_ROLE", "SUBJ_TYPE", "SUBJ_SEN", "SUBJ_CLR",
        "OBJ_USER", "OBJ_ROLE", "OBJ_TYPE", "OBJ_LEV_LOW", "OBJ_LEV_HIGH",
        "WATCH", "DIR", "FILTERKEY", "EXE",
    }  # fmt: skip
    assert not is_string_field(F["PPID"])  # between the subject and object labels, but a number


def test_all_syscalls_mask_has_no_class_bits():
    assert ALL_SYSCALLS_MASK[:63] == (0xFFFFFFFF,) * 63
    assert ALL_SYSCALLS_MASK[63] == 0x0000FFFF
    rule = AuditRuleData(4, 2, ALL_SYSCALLS_MASK)
    assert rule.all_syscalls()


def test_kernel_form_clears_prepend_and_class_bits():
    rule = AuditRuleData(FILTERS["EXIT"] | FILTERS["PREPEND"], 2, (0xFFFFFFFF,) * 64)
    assert rule.prepend and rule.list_nr == 4
    kf = rule.kernel_form()
    assert kf.flags == 4 and kf.mask[63] == 0xFFFF
    assert rule.flags == 0x14  # the original is untouched


# -- bad input --------------------------------------------------------------------------------


def header(count=0, buflen=0, **kw) -> bytearray:
    raw = bytearray(RULE_DATA_SIZE)
    struct.pack_into("=3I", raw, 0, 4, 2, count)
    struct.pack_into("=I", raw, 1036, buflen)
    return raw


@pytest.mark.parametrize("size", [0, 1, 12, 1039])
def test_truncated_struct(size):
    with pytest.raises(RuleError, match=rf"truncated: {size} bytes, need at least 1040"):
        AuditRuleData.decode(bytes(RULE_DATA_SIZE)[:size])


def test_field_count_over_64():
    with pytest.raises(RuleError, match="field_count 65 exceeds the maximum of 64"):
        AuditRuleData.decode(bytes(header(count=65)))


def test_buflen_past_the_end():
    raw = header(buflen=10) + b"abc"
    with pytest.raises(RuleError, match="buflen 10 runs past the end of the payload \\(3 bytes"):
        AuditRuleData.decode(bytes(raw))


def test_string_length_past_buflen():
    raw = header(count=2, buflen=5)
    struct.pack_into("=2I", raw, 12 + 256, F["WATCH"], F["FILTERKEY"])
    struct.pack_into("=2I", raw, 12 + 512, 3, 4)  # 3 + 4 > 5
    struct.pack_into("=2I", raw, 12 + 768, EQ, EQ)
    with pytest.raises(
        RuleError, match=r"field 1 \(filterkey\) string of 4 bytes at buffer offset 3 runs past buflen 5"
    ):
        AuditRuleData.decode(bytes(raw) + b"/abcd")


def test_numeric_fields_do_not_consume_the_buffer():
    raw = header(count=2, buflen=3)
    struct.pack_into("=2I", raw, 12 + 256, F["UID"], F["FILTERKEY"])
    struct.pack_into("=2I", raw, 12 + 512, 1000, 3)
    rule = AuditRuleData.decode(bytes(raw) + b"key")
    assert rule.fields[0].value == 1000 and rule.fields[1].strval == "key"


def test_encode_too_many_fields():
    rule = AuditRuleData(4, 2, EMPTY_MASK, [RuleField(F["UID"], EQ, i) for i in range(65)])
    with pytest.raises(RuleError, match="65 fields, the kernel takes at most 64"):
        rule.encode()


def test_encode_value_out_of_range():
    rule = AuditRuleData(4, 2, EMPTY_MASK, [RuleField(F["UID"], EQ, 1 << 32)])
    with pytest.raises(RuleError, match="outside 0..0xffffffff"):
        rule.encode()


def test_encode_numeric_field_with_string():
    rule = AuditRuleData(4, 2, EMPTY_MASK, [RuleField(F["UID"], EQ, 0, "root")])
    with pytest.raises(RuleError, match=r"field 0 \(uid\) is numeric but has a string value 'root'"):
        rule.encode()


def test_encode_wrong_mask_length():
    with pytest.raises(RuleError, match="mask has 3 words, need 64"):
        AuditRuleData(4, 2, (0, 0, 0)).encode()
