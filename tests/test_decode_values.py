"""collector.decode: every value encoding the kernel uses, and the errors for corrupt ones."""

from __future__ import annotations

import pytest

from collector.decode import (
    AF_INET,
    AF_INET6,
    AF_NETLINK,
    AF_UNIX,
    DecodeError,
    arch_byteorder,
    arch_name,
    decode_bytes,
    decode_errno,
    decode_execve_argv,
    decode_int,
    decode_keys,
    decode_proctitle,
    decode_saddr,
    decode_str,
    decode_syscall,
    decode_text,
    errno_name,
)
from collector.parser import parse_record
from collector.protocol.records import record_type_number

EXECVE = record_type_number("EXECVE")


def reason(fn, *args) -> str:
    with pytest.raises(DecodeError) as info:
        fn(*args)
    return info.value.reason


# -- strings ----------------------------------------------------------------------------------


def test_quoted_hex_and_null():
    assert decode_str('"/usr/bin/curl"') == "/usr/bin/curl"
    assert decode_str("2F746D702F612062") == "/tmp/a b"
    assert decode_str("(null)") == ""
    assert decode_str('""') == ""
    assert decode_bytes("2f746d70") == b"/tmp"  # lower case hex too


def test_invalid_utf8_in_hex_is_replaced_or_kept_on_request():
    assert decode_str("41FF42") == "A\ufffdB"
    kept = decode_str("41FF42", "surrogateescape")
    assert kept.encode("utf-8", "surrogateescape") == b"A\xffB"


def test_odd_length_and_non_hex_are_errors_with_reasons():
    assert reason(decode_str, "2F7") == "odd_hex"
    assert reason(decode_str, "/tmp/x") == "bad_hex"
    assert reason(decode_str, '"unterminated') == "bad_quote"
    assert issubclass(DecodeError, ValueError)


def test_decode_text_tolerates_user_space_plain_words():
    assert decode_text("root") == "root"
    assert decode_text("?") == "?"
    assert decode_text("abc") == "abc"  # odd "hex" from user space is a word
    assert decode_text("'quoted msg'") == "quoted msg"
    assert decode_text("726F6F74") == "root"


def test_int():
    assert decode_int("-115") == -115
    assert decode_int("c000003e", 16) == 0xC000003E
    assert decode_int("0x7f", 16) == 0x7F
    assert decode_int("(null)") is None
    assert decode_int("?") is None
    assert decode_int(None) is None


def test_keys_are_split_on_the_kernels_separator():
    assert decode_keys("(null)") == []
    assert decode_keys('"net"') == ["net"]
    assert decode_keys("65786563013634626974") == ["exec", "64bit"]


def test_proctitle_shows_nul_separated_argv_as_words():
    assert decode_proctitle("6E63002D6C002D70003535353535") == "nc -l -p 55555"
    assert decode_proctitle('"bash"') == "bash"


# -- names ------------------------------------------------------------------------------------


def test_errno_names_from_the_generated_table():
    assert decode_errno("-115") == "EINPROGRESS"
    assert decode_errno("-11") == "EAGAIN"  # not EWOULDBLOCK: the first name of 11 wins
    assert decode_errno("-13") == "EACCES"
    assert decode_errno("0") is None
    assert decode_errno("3") is None
    assert decode_errno("-99999") is None
    assert errno_name(111) == "ECONNREFUSED"


def test_syscall_and_arch_names():
    assert arch_name("c000003e") == "x86_64"
    assert arch_name("c00000b7") == "aarch64"
    assert arch_name("40000003") == "i386"
    assert decode_syscall("c000003e", "42") == "connect"
    assert decode_syscall("c000003e", "59") == "execve"
    assert decode_syscall("c00000b7", "221") == "execve"
    assert decode_syscall("40000003", "132") == "getpgid"  # i386
    assert decode_syscall("80000015", "327") == "bind"  # ppc64
    assert decode_syscall("c0000015", "327") == "bind"  # ppc64le numbers as ppc64
    assert decode_syscall("c000003e", "17") == "pread"  # libaudit's spelling, as auparse prints it
    assert decode_syscall("80000016", "1") is None  # s390x: no table in this build
    assert decode_syscall("zz", "42") is None
    assert decode_syscall("c000003e", "x") is None


def test_byte_order_follows_the_audit_arch_le_bit():
    assert arch_byteorder("c000003e") == "little"
    assert arch_byteorder("80000015") == "big"  # ppc64
    assert arch_byteorder(None) == "little"


# -- sockaddr ---------------------------------------------------------------------------------


def test_ipv4():
    sa = decode_saddr("02000050A9FEA9FE0000000000000000")
    assert (sa.family, sa.address, sa.port, sa.path) == (AF_INET, "169.254.169.254", 80, "")


def test_ipv6_full_and_rfc2133_length():
    sa = decode_saddr("0A002BCB000000000000000000000000000000000000000100000000")
    assert (sa.family, sa.address, sa.port) == (AF_INET6, "::1", 11211)
    short = decode_saddr("0A0000160000000020010DB8000000000000000000000001")  # 24 bytes, no scope id
    assert (short.address, short.port) == ("2001:db8::1", 22)
    mapped = decode_saddr("0A00005000000000" + "00000000000000000000FFFF7F000001" + "00000000")
    assert mapped.address == "::ffff:127.0.0.1"


def test_unix_path_stops_at_the_first_nul():
    sa = decode_saddr("01002F7661722F72756E2F6E7363642F736F636B65740000A053A1AF7F0000")
    assert (sa.family, sa.path, sa.abstract) == (AF_UNIX, "/var/run/nscd/socket", False)


def test_unix_abstract_name_has_no_at_sign_but_is_flagged():
    sa = decode_saddr("0100" + "00" + b"/tmp/.X11-unix/X0".hex())
    assert (sa.path, sa.abstract) == ("/tmp/.X11-unix/X0", True)
    unnamed = decode_saddr("0100")  # autobind: family only
    assert (unnamed.family, unnamed.path, unnamed.abstract) == (AF_UNIX, "", False)


def test_netlink():
    sa = decode_saddr("10000000D2040000FFFFFFFF")
    assert (sa.family, sa.netlink_pid, sa.netlink_groups) == (AF_NETLINK, 1234, 0xFFFFFFFF)


def test_family_is_in_the_tasks_byte_order():
    # laurel's record-bind-ipv4-bigendian: nc on ppc64 binding 0.0.0.0:55555
    raw = "0002D903000000000000000000000000"
    sa = decode_saddr(raw, arch_byteorder("80000015"))
    assert (sa.family, sa.address, sa.port) == (AF_INET, "0.0.0.0", 55555)
    assert decode_saddr(raw).family == 512  # read little-endian it is not inet


def test_unknown_family_keeps_the_bytes():
    sa = decode_saddr("1100AABB")
    assert (sa.family, sa.address, sa.port, sa.raw) == (17, "", 0, b"\x11\x00\xaa\xbb")


def test_too_short_for_the_family_is_a_typed_error():
    assert reason(decode_saddr, "0200") == "saddr_too_short"
    assert reason(decode_saddr, "02000050A9FEA9FE00000000000000") == "saddr_too_short"  # 15 bytes
    assert reason(decode_saddr, "0A00001600000000000000000000000000000000000000") == "saddr_too_short"
    assert reason(decode_saddr, "100000000000") == "saddr_too_short"
    assert reason(decode_saddr, "02") == "saddr_too_short"
    assert reason(decode_saddr, "020") == "odd_hex"
    assert decode_saddr(None) is None
    assert decode_saddr("") is None


# -- execve arguments -------------------------------------------------------------------------


def execve(*bodies: str):
    return [parse_record(EXECVE, f"audit(1.000:1): {body}") for body in bodies]


def test_argv_in_argument_order_not_string_order():
    args = " ".join(f'a{i}="x{i}"' for i in range(12))
    assert decode_execve_argv(execve(f"argc=12 {args}")) == [f"x{i}" for i in range(12)]


def test_hex_arguments_are_decoded():
    recs = execve('argc=3 a0="jq" a1="." a2=7B0A20226122203A20317D')
    assert decode_execve_argv(recs) == ["jq", ".", '{\n "a" : 1}']


def test_split_argument_over_several_records_is_joined_as_bytes():
    word = "é" * 3  # 6 bytes, cut inside a character below
    hexed = word.encode().hex().upper()
    recs = execve(
        f'argc=2 a0="/bin/echo" a1_len={len(hexed)} a1[0]={hexed[: 5 * 2 - 2]}',
        f" a1[1]={hexed[5 * 2 - 2 :]}",
    )
    assert decode_execve_argv(recs) == ["/bin/echo", word]


def test_missing_chunk_or_argument_is_incomplete():
    recs = execve('argc=2 a0="/bin/echo" a1_len=8 a1[0]=6161')
    assert reason(decode_execve_argv, recs) == "execve_incomplete"
    recs = execve('argc=2 a0="/bin/echo" a1_len=6 a1[1]=616161')
    assert reason(decode_execve_argv, recs) == "execve_incomplete"
    recs = execve('argc=3 a0="/bin/echo" a2="x"')
    assert reason(decode_execve_argv, recs) == "execve_incomplete"


def test_corrupt_argument_is_a_decode_error():
    assert reason(decode_execve_argv, execve("argc=1 a0=616")) == "odd_hex"


def test_argv_without_argc_uses_the_arguments_present():
    assert decode_execve_argv(execve('a0="ls" a1="-l"')) == ["ls", "-l"]
