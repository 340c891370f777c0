"""osquery-style audit flags: names, gflags syntax, defaults, flag files, argparse wiring."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from collector.flags import (
    FLAG_SPECS,
    AuditFlags,
    FlagError,
    add_flag_arguments,
    parse_flags,
    read_flagfile,
    split_flags,
)
from collector.tables.options import TableOptions

OSQUERY_FLAGS = [
    "audit_allow_config",
    "audit_allow_sockets",
    "audit_allow_process_events",
    "audit_allow_failed_socket_events",
    "audit_allow_accept_socket_events",
    "audit_allow_null_accept_socket_events",
    "audit_allow_unix",
    "audit_allow_fork_process_events",
    "audit_allow_kill_process_events",
    "audit_backlog_limit",
    "audit_backlog_wait_time",
    "audit_force_reconfigure",
    "audit_persist",
]


def test_every_osquery_flag_is_known():
    assert sorted(FLAG_SPECS) == sorted(OSQUERY_FLAGS)


def test_defaults_are_osquerys():
    # osquery 5: auditdnetlink.cpp, events/linux/*.cpp, core/flags.cpp
    f = AuditFlags()
    assert f.allow_config is False
    assert f.allow_sockets is False
    assert f.allow_process_events is True
    assert f.allow_accept_socket_events is True
    assert f.allow_failed_socket_events is False
    assert f.allow_null_accept_socket_events is False
    assert f.allow_unix is False
    assert f.allow_fork_process_events is False
    assert f.allow_kill_process_events is False
    assert f.backlog_limit == 4096
    assert f.backlog_wait_time == 0
    assert f.force_reconfigure is False
    assert f.persist is True


def test_table_options_mirror_flags():
    # every TableOptions field is a flag, with the same default
    for tf in fields(TableOptions):
        assert f"audit_{tf.name}" in FLAG_SPECS
        assert getattr(AuditFlags(), tf.name) == tf.default
    opts = parse_flags(["--audit_allow_unix", "--audit_allow_process_events=false"]).table_options()
    assert opts == TableOptions(allow_unix=True, allow_process_events=False)


@pytest.mark.parametrize(
    "argv, attr, value",
    [
        (["--audit_allow_sockets"], "allow_sockets", True),
        (["--audit-allow-sockets"], "allow_sockets", True),
        (["--audit_allow_sockets=true"], "allow_sockets", True),
        (["--audit_allow_sockets=YES"], "allow_sockets", True),
        (["--audit_allow_process_events=false"], "allow_process_events", False),
        (["--audit-allow-process-events=0"], "allow_process_events", False),
        (["--noaudit_allow_process_events"], "allow_process_events", False),
        (["--no-audit-allow-process-events"], "allow_process_events", False),
        (["--noaudit_persist"], "persist", False),
        (["--audit_backlog_limit=8192"], "backlog_limit", 8192),
        (["--audit_backlog_limit", "8192"], "backlog_limit", 8192),
        (["--audit-backlog-wait-time=0x10"], "backlog_wait_time", 16),
    ],
)
def test_flag_syntax(argv, attr, value):
    assert getattr(parse_flags(argv), attr) == value


def test_later_flag_wins():
    assert parse_flags(["--audit_allow_unix", "--audit_allow_unix=false"]).allow_unix is False
    assert parse_flags(["--audit_allow_unix=false", "--audit_allow_unix"]).allow_unix is True


def test_bare_bool_never_eats_the_next_word():
    flags, rest = split_flags(["--audit_allow_unix", "false", "a.log"])
    assert flags.allow_unix is True
    assert rest == ["false", "a.log"]


def test_other_words_and_double_dash_pass_through():
    flags, rest = split_flags(["--output", "x", "--audit_allow_sockets", "--", "--audit_allow_unix"])
    assert flags.allow_sockets is True and flags.allow_unix is False
    assert rest == ["--output", "x", "--", "--audit_allow_unix"]


def test_base_supplies_command_defaults():
    base = AuditFlags(allow_config=True, allow_sockets=True)
    assert parse_flags([], base) == base
    assert parse_flags(["--audit_allow_config=false"], base).allow_config is False


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--audit_allow_sokets"], "--audit_allow_sokets"),
        (["--audit_allow_unix=maybe"], "--audit_allow_unix='maybe'"),
        (["--audit_backlog_limit=lots"], "--audit_backlog_limit='lots'"),
        (["--audit_backlog_limit=-1"], "--audit_backlog_limit=-1"),
        (["--audit_backlog_limit=4294967296"], "out of range"),
        (["--audit_backlog_limit"], "--audit_backlog_limit needs a value"),
        (["--noaudit_backlog_limit"], "not a boolean flag"),
        (["--noaudit_allow_unix=true"], "takes no value"),
        (["--flagfile"], "--flagfile needs a PATH"),
        (["--logger_plugin=x"], "not an audit flag"),
    ],
)
def test_errors_name_the_flag(argv, needle):
    with pytest.raises(FlagError) as exc:
        parse_flags(argv)
    assert needle in str(exc.value)


def test_flagfile(tmp_path):
    ff = tmp_path / "osquery.flags"
    ff.write_text(
        "# osquery flags\n"
        "--disable_audit=false\n"
        "\n"
        "--audit_allow_config=true\n"
        "  --audit_allow_sockets  \n"
        "--audit_backlog_limit=16384\n"
        "--audit_allow_user_events=true\n"
        "--logger_plugin=filesystem\n"
        "-audit_persist=false\n"
    )
    warnings: list[str] = []
    flags = read_flagfile(ff, warn=warnings.append)
    assert flags.allow_config and flags.allow_sockets
    assert flags.backlog_limit == 16384
    assert flags.persist is False
    assert len(warnings) == 1
    for ignored in ("disable_audit", "audit_allow_user_events", "logger_plugin"):
        assert ignored in warnings[0]


def test_flagfile_in_argv_applies_in_order(tmp_path):
    ff = tmp_path / "f.flags"
    ff.write_text("--audit_allow_unix=true\n--audit_backlog_limit=10\n")
    flags = parse_flags(["--audit_backlog_limit=5", f"--flagfile={ff}", "--audit_allow_unix=false"])
    assert flags.backlog_limit == 10  # the file came after the first flag
    assert flags.allow_unix is False  # the command line after the file wins
    flags, rest = split_flags(["--flagfile", str(ff), "src.log"])
    assert flags.allow_unix is True and rest == ["src.log"]


def test_flagfile_errors_name_file_and_line(tmp_path):
    ff = tmp_path / "bad.flags"
    ff.write_text("--audit_allow_unix\n--audit_allow_unix=perhaps\n")
    with pytest.raises(FlagError, match=r"bad\.flags:2: --audit_allow_unix='perhaps'"):
        read_flagfile(ff)
    ff.write_text("--audit_allow_sokets=true\n")
    with pytest.raises(FlagError, match=r"bad\.flags:1: unknown flag --audit_allow_sokets"):
        read_flagfile(ff)
    with pytest.raises(FlagError, match="no such file"):
        read_flagfile(tmp_path / "missing.flags")


def test_flagfile_loop_is_refused(tmp_path):
    ff = tmp_path / "loop.flags"
    ff.write_text(f"--flagfile={ff}\n")
    with pytest.raises(FlagError, match="nest deeper"):
        read_flagfile(ff)


def test_as_flags_round_trips():
    f = AuditFlags(allow_sockets=True, backlog_limit=77, persist=False)
    assert parse_flags(f.as_flags()) == f
    assert f.changed() == {"audit_allow_sockets": True, "audit_backlog_limit": 77, "audit_persist": False}


def _sub_parser(defaults: AuditFlags) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kaudit")
    sub = top.add_subparsers(dest="command")
    p = sub.add_parser("replay")
    p.add_argument("sources", nargs="+")
    p.add_argument("--output")
    add_flag_arguments(p, defaults)
    return top


def test_argparse_wiring_through_subcommand():
    top = _sub_parser(AuditFlags(allow_sockets=True))
    args = top.parse_args(
        ["replay", "--audit_allow_unix", "a.log", "--noaudit_allow_sockets", "b.log", "--output", "o"]
    )
    assert args.sources == ["a.log", "b.log"]
    assert args.output == "o"
    assert args.audit_flags.allow_unix is True
    assert args.audit_flags.allow_sockets is False
    assert not any(k.startswith("_flag_") for k in vars(args))


def test_argparse_defaults_and_errors(capsys):
    top = _sub_parser(AuditFlags(allow_sockets=True))
    args = top.parse_args(["replay", "a.log"])
    assert args.audit_flags == AuditFlags(allow_sockets=True)
    with pytest.raises(SystemExit) as exc:
        top.parse_args(["replay", "a.log", "--audit_allow_unix=perhaps"])
    assert exc.value.code == 2
    assert "--audit_allow_unix='perhaps'" in capsys.readouterr().err


def test_help_lists_the_flags():
    top = _sub_parser(AuditFlags())
    sub = top._subparsers._group_actions[0].choices["replay"]  # noqa: SLF001
    text = sub.format_help()
    for name in OSQUERY_FLAGS:
        assert f"--{name}" in text
    assert "--flagfile" in text
