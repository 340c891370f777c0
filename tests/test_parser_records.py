"""collector.parser: header, fields, encodings and every bad-input reason, on hand-made records.

The real-world shapes come from the public corpus (test_parser_corpus.py); these pin each rule
on the smallest record that shows it.
"""

from __future__ import annotations

import pytest

from collector.parser import (
    MAX_AUDIT_MESSAGE_LENGTH,
    Record,
    RecordError,
    iter_log_records,
    parse_log_line,
    parse_record,
)
from collector.protocol.records import record_type_number

SYSCALL = record_type_number("SYSCALL")
EXECVE = record_type_number("EXECVE")
AVC = record_type_number("AVC")
LOGIN = record_type_number("LOGIN")
USER_START = record_type_number("USER_START")

CONNECT = (
    "audit(1492037289.295:49): arch=c000003e syscall=42 success=no exit=-115 a0=6 a1=7ffed2893080 "
    'a2=10 a3=fe items=0 ppid=1 pid=1172 auid=4294967295 tty=(none) comm="google_ip_forwa" '
    'exe="/usr/bin/python2.7" key=(null)'
)


def reason(fn, *args) -> str:
    with pytest.raises(RecordError) as info:
        fn(*args)
    return info.value.reason


# -- header -----------------------------------------------------------------------------------


def test_netlink_form_takes_type_from_the_caller_and_keeps_the_body_as_text():
    rec = parse_record(SYSCALL, CONNECT.encode())
    assert (rec.type, rec.sec, rec.msec, rec.serial, rec.node) == (SYSCALL, 1492037289, 295, 49, None)
    assert rec.text == CONNECT.split("): ", 1)[1]
    assert rec.audit_id == "1492037289.295:49"
    assert rec.time_ms == 1492037289295
    assert rec.type_name == "SYSCALL"


def test_netlink_payload_trailing_nul_and_newline_are_not_part_of_the_record():
    rec = parse_record(SYSCALL, CONNECT.encode() + b"\n\x00")
    assert rec.text.endswith("key=(null)")
    assert rec.get("key") == "(null)"


def test_audit_log_form_names_its_type_and_may_carry_a_node():
    rec = parse_record(None, 'node=web-1 type=EXECVE msg=audit(1.002:3): argc=1 a0="ls"')
    assert (rec.type, rec.sec, rec.msec, rec.serial, rec.node) == (EXECVE, 1, 2, 3, "web-1")
    assert rec.items() == [("argc", "1"), ("a0", '"ls"')]


def test_unknown_type_number_spelling_round_trips():
    rec = parse_record(None, "type=UNKNOWN[1399] msg=audit(1.000:1): x=1")
    assert rec.type == 1399
    assert rec.type_name == "UNKNOWN[1399]"
    assert rec.log_line() == "type=UNKNOWN[1399] msg=audit(1.000:1): x=1"


def test_body_keeps_its_leading_space_and_eoe_has_no_fields():
    cwd = parse_record(None, 'type=CWD msg=audit(1.000:1):  cwd="/root"')
    assert cwd.text == ' cwd="/root"'
    assert cwd.fields() == {"cwd": '"/root"'}
    for line in ("type=EOE msg=audit(1.000:1): ", "type=EOE msg=audit(1.000:1):"):
        eoe = parse_record(None, line)
        assert eoe.text == ""
        assert eoe.items() == []


def test_daemon_record_without_colon_after_the_stamp_is_accepted():
    # auditd writes its own DAEMON_CONFIG as "audit(...) config changed, ..."
    rec = parse_record(
        None, "type=DAEMON_CONFIG msg=audit(1490239800.477:34) config changed, auid=0 pid=1512 res=success"
    )
    assert rec.serial == 34
    assert rec.fields() == {"auid": "0", "pid": "1512", "res": "success"}


def test_log_line_reconstructs_the_audit_log_form():
    line = 'node=h type=SYSCALL msg=audit(1.020:3): arch=c000003e syscall=59 comm="ls"'
    assert parse_record(None, line).log_line() == line


# -- fields -----------------------------------------------------------------------------------


def test_fields_in_order_with_raw_values_quotes_kept():
    rec = parse_record(SYSCALL, CONNECT)
    keys = [k for k, _ in rec.items()]
    assert keys[:4] == ["arch", "syscall", "success", "exit"]
    assert rec.get("exe") == '"/usr/bin/python2.7"'
    assert rec.get("tty") == "(none)"
    assert rec.get("missing") is None
    assert rec.get("missing", "x") == "x"


def test_repeated_key_first_occurrence_wins_but_items_keeps_both():
    rec = parse_record(SYSCALL, "audit(1.000:1): arch=c000003e uid=0 uid=5 euid=1")
    assert rec.get("uid") == "0"
    assert rec.items() == [("arch", "c000003e"), ("uid", "0"), ("uid", "5"), ("euid", "1")]


def test_hex_and_null_values_stay_raw():
    rec = parse_record(SYSCALL, "audit(1.000:1): comm=2F746D702F612062 key=(null) exe=(null)")
    assert rec.fields() == {"comm": "2F746D702F612062", "key": "(null)", "exe": "(null)"}


def test_execve_split_argument_fields_are_kept_as_the_kernel_wrote_them():
    rec = parse_record(EXECVE, 'audit(1.000:1): argc=2 a0="/bin/echo" a1_len=8 a1[0]=6161 a1[1]=616161')
    assert rec.items() == [
        ("argc", "2"),
        ("a0", '"/bin/echo"'),
        ("a1_len", "8"),
        ("a1[0]", "6161"),
        ("a1[1]", "616161"),
    ]


def test_user_message_msg_is_opened_in_place_with_spaces_inside_its_quotes():
    rec = parse_record(
        USER_START,
        'audit(1.000:1): pid=1298 uid=0 msg=\'op=PAM:session_open acct="andrew" exe="/usr/sbin/sshd" '
        "hostname=? addr=96.241.146.97 terminal=ssh res=success'",
    )
    assert [k for k, _ in rec.items()] == [
        "pid",
        "uid",
        "op",
        "acct",
        "exe",
        "hostname",
        "addr",
        "terminal",
        "res",
    ]
    assert rec.get("res") == "success"
    assert rec.get("msg") is None  # opened, as auparse and go-libaudit do
    assert "msg='op=PAM" in rec.text  # the text keeps it


def test_old_pam_punctuation_is_dropped_as_auparse_does():
    rec = parse_record(
        USER_START,
        'audit(1.000:1): user pid=13015 uid=0 msg=\'PAM: session open acct=root : exe="/usr/sbin/crond" '
        "(hostname=?, addr=?, terminal=cron res=success)'",
    )
    assert rec.items()[-4:] == [("hostname", "?"), ("addr", "?"), ("terminal", "cron"), ("res", "success")]


def test_quoted_value_with_spaces_stays_one_value():
    # AppArmor's kernel code writes info="..." with spaces (laurel's record-avc-apparmor)
    rec = parse_record(
        AVC, 'audit(1.000:1): apparmor="STATUS" info="same as current profile, skipping" pid=5'
    )
    assert rec.get("info") == '"same as current profile, skipping"'
    assert rec.get("pid") == "5"


def test_selinux_avc_prose_gives_seresult_and_seperms():
    rec = parse_record(
        AVC, 'audit(1.000:1): avc:  denied  { read write } for  pid=13010 comm="pickup" tclass=dir'
    )
    assert rec.items() == [
        ("seresult", "denied"),
        ("seperms", "read,write"),
        ("pid", "13010"),
        ("comm", '"pickup"'),
        ("tclass", "dir"),
    ]


def test_words_without_equals_are_skipped_in_records_that_have_prose():
    rec = parse_record(LOGIN, "audit(1.000:1): login pid=13015 uid=0 old auid=4294967295 new auid=0")
    assert rec.items() == [("pid", "13015"), ("uid", "0"), ("auid", "4294967295"), ("auid", "0")]


def test_empty_values_are_not_fields():
    rec = parse_record(SYSCALL, "audit(1.000:1): a=1 mac= b=2 c=")
    assert rec.items() == [("a", "1"), ("b", "2")]


def test_enrichment_after_group_separator_is_not_part_of_the_record():
    line = 'type=SYSCALL msg=audit(1.000:1): arch=c000003e syscall=59 key=(null)\x1dARCH=x86_64 SYSCALL=execve AUID="user"'
    rec = parse_record(None, line)
    assert rec.text == "arch=c000003e syscall=59 key=(null)"
    assert rec.enrichment == 'ARCH=x86_64 SYSCALL=execve AUID="user"'
    assert "ARCH" not in rec.fields() and "AUID" not in rec.fields()


def test_fields_are_split_only_on_first_access_and_then_cached():
    rec = parse_record(SYSCALL, CONNECT)
    assert rec._items is None and rec._fields is None
    first = rec.items()
    assert rec.items() is first
    assert rec.fields() is rec.fields()


def test_records_compare_by_content_not_by_cache():
    a = parse_record(SYSCALL, CONNECT)
    b = parse_record(SYSCALL, CONNECT)
    a.items()
    assert a == b
    assert isinstance(a, Record)


# -- bad input --------------------------------------------------------------------------------


def test_too_long_is_measured_against_the_kernel_limit_not_8_kib():
    body_len = MAX_AUDIT_MESSAGE_LENGTH - len("audit(1.000:1): ")
    exact = "audit(1.000:1): " + "a0=" + "6" * (body_len - 3)
    assert len(exact) == MAX_AUDIT_MESSAGE_LENGTH
    assert parse_record(EXECVE, exact).serial == 1  # 8970 is legal, though over 8 KiB
    assert reason(parse_record, EXECVE, exact + "6") == "too_long"
    # the audit.log prefix and the enrichment are not counted
    line = "node=somehost type=EXECVE msg=" + exact + "\x1d" + "X" * 500
    assert parse_record(None, line).serial == 1
    assert reason(parse_record, None, "type=EXECVE msg=" + exact + "6") == "too_long"


def test_too_long_counts_bytes_for_a_netlink_payload():
    head = "audit(1.000:1): key="
    text = head + '"' + "é" * ((MAX_AUDIT_MESSAGE_LENGTH - len(head)) // 2) + '"'
    assert len(text) < MAX_AUDIT_MESSAGE_LENGTH < len(text.encode())
    assert reason(parse_record, EXECVE, text.encode()) == "too_long"


def test_invalid_utf8_is_counted_not_decoded_by_guessing():
    assert reason(parse_record, SYSCALL, b'audit(1.000:1): comm="\xff\xfe"') == "bad_utf8"


def test_missing_header_and_missing_close_are_reasons():
    assert reason(parse_record, SYSCALL, "pid=1 uid=0") == "no_header"
    assert reason(parse_record, None, "type=UNKNOWN[1329] msg=?") == "no_header"
    assert reason(parse_record, SYSCALL, "audit(1.000:1)pid=1") == "bad_header"
    assert reason(parse_record, SYSCALL, "audit(1.000:1 pid=1") == "bad_header"
    assert reason(parse_record, SYSCALL, "audit(1:1): pid=1") == "bad_header"
    assert reason(parse_record, None, "msg=audit(1.000:1): pid=1") == "bad_header"


def test_unknown_type_name_is_a_reason():
    assert reason(parse_record, None, "type=NOT_A_TYPE msg=audit(1.000:1): x=1") == "unknown_type"


def test_word_without_equals_in_a_syscall_record_is_corruption():
    # an unencoded "exe=/tmp/my prog" must not silently become exe=/tmp/my
    rec = parse_record(SYSCALL, "audit(1.000:1): arch=c000003e syscall=59 exe=/tmp/my prog key=(null)")
    assert reason(rec.items) == "field_without_equals"
    assert reason(rec.get, "exe") == "field_without_equals"


def test_record_error_names_the_input():
    with pytest.raises(RecordError, match="pid=1 uid=0"):
        parse_record(SYSCALL, "pid=1 uid=0")
    with pytest.raises(ValueError):  # RecordError is a ValueError
        parse_record(SYSCALL, "")


# -- log files --------------------------------------------------------------------------------


def test_log_reader_skips_comments_blank_lines_and_ausearch_separators():
    lines = [
        "# a comment\n",
        "\n",
        "----\n",
        "time->Thu Apr 13 02:08:09 2017\n",
        "type=EOE msg=audit(1.000:1): \n",
        "garbage\n",
        b"type=EOE msg=audit(1.000:2): \n",
    ]
    out = list(iter_log_records(lines))
    assert [n for n, _ in out] == [5, 6, 7]
    assert isinstance(out[0][1], Record) and out[0][1].serial == 1
    assert isinstance(out[1][1], RecordError) and out[1][1].reason == "no_header"
    assert isinstance(out[2][1], Record) and out[2][1].serial == 2
    assert parse_log_line("   ") is None
