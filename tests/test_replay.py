"""``kaudit replay``: audit logs to JSON lines, through the shared pipeline."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from collector.cli import main
from collector.commands import replay
from collector.rows import ProcessEventsRow, SocketEventsRow

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"public corpus not found at {CORPUS}")

LOG = """\
type=SYSCALL msg=audit(1700000000.100:501): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=2 ppid=10 pid=11 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm="echo" exe="/usr/bin/echo" key="kaudit"
type=EXECVE msg=audit(1700000000.100:501): argc=3 a0="/bin/echo" a1="hello" a2="world"
type=CWD msg=audit(1700000000.100:501): cwd="/tmp"
type=PATH msg=audit(1700000000.100:501): item=0 name="/bin/echo" inode=1 dev=08:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL
type=SYSCALL msg=audit(1700000001.200:502): arch=c000003e syscall=42 success=yes exit=0 a0=3 a1=7ffd a2=10 a3=0 items=0 ppid=10 pid=12 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm="curl" exe="/usr/bin/curl" key="kaudit"
type=SOCKADDR msg=audit(1700000001.200:502): saddr=02001F907F0000010000000000000000
"""


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    p = tmp_path / "audit.log"
    p.write_text(LOG)
    return p


def test_replay_writes_json_lines(log, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    assert main(["replay", str(log), "--output", str(out)]) == 0
    rows = _rows(out.read_text())
    assert [r["table"] for r in rows] == ["process_events", "socket_events"]
    assert all(next(iter(r)) == "table" for r in rows)
    proc, sock = rows
    assert proc["cmdline"] == "/bin/echo hello world" and proc["cwd"] == "/tmp" and proc["pid"] == 11
    assert sock["remote_address"] == "127.0.0.1" and sock["remote_port"] == 8080
    # integer columns are JSON numbers, text columns strings
    for row, cls in ((proc, ProcessEventsRow), (sock, SocketEventsRow)):
        for col, typ in cls.COLUMN_TYPES.items():
            assert isinstance(row[col], int if typ in ("INTEGER", "BIGINT") else str), col
    assert capsys.readouterr().out == ""


def test_replay_to_stdout_and_from_stdin(log, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(log.read_bytes())))
    assert main(["replay", "-"]) == 0
    assert len(_rows(capsys.readouterr().out)) == 2


def test_missing_source_is_exit_2_and_writes_nothing(log, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    rc = main(["replay", str(log), str(tmp_path / "nope.log"), "--output", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope.log: no such file" in err
    assert not out.exists()
    assert main(["replay", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_unknown_flag_is_a_usage_error(log, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(log), "--audit_allow_sokets"])
    assert exc.value.code == 2
    assert "--audit_allow_sokets" in capsys.readouterr().err


def test_flags_select_tables(log, capsys):
    assert main(["replay", str(log), "--audit_allow_sockets=false"]) == 0
    assert [r["table"] for r in _rows(capsys.readouterr().out)] == ["process_events"]
    assert main(["replay", "--noaudit_allow_process_events", str(log)]) == 0
    assert [r["table"] for r in _rows(capsys.readouterr().out)] == ["socket_events"]


def test_flagfile(log, tmp_path, capsys):
    ff = tmp_path / "osquery.flags"
    ff.write_text("--audit_allow_process_events=false\n--logger_plugin=filesystem\n")
    assert main(["replay", "--flagfile", str(ff), str(log)]) == 0
    cap = capsys.readouterr()
    assert [r["table"] for r in _rows(cap.out)] == ["socket_events"]
    assert "logger_plugin" in cap.err  # ignored, and said so


def test_several_sources_continue_eids(log, tmp_path, capsys):
    assert main(["replay", str(log), str(log)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r["eid"] for r in rows] == ["0000000001", "0000000002", "0000000003", "0000000004"]


def test_stats_and_stats_json(log, tmp_path, capsys):
    sj = tmp_path / "stats.json"
    bad = tmp_path / "bad.log"
    bad.write_bytes(LOG.encode() + b"type=CWD msg=audit(1700000003.000:9 cwd=x\n\xff\xfe\n")
    assert main(["replay", str(bad), "--stats", "--stats-json", str(sj)]) == 0
    err = capsys.readouterr().err
    assert "ledger        received 8 = dispatched 0 + dropped 2 + in flight at exit 6" in err
    stats = json.loads(sj.read_text())
    assert stats["records"] == 8 and stats["rows"] == 2
    assert stats["drops"] == {"bad_header": 1, "bad_utf8": 1}
    assert stats["ledger"]["balanced"] is True


def test_source_formats_are_pluggable(tmp_path, capsys):
    seen: list[str] = []

    def feed(stream, pipeline):
        seen.append("custom")
        pipeline.feed_lines(line for line in stream.read().decode().split("|"))

    fmt = replay.SourceFormat("pipes", lambda name, head: name.endswith(".pipes"), feed)
    replay.register_source_format(fmt)
    try:
        src = tmp_path / "x.pipes"
        src.write_text("|".join(LOG.splitlines()[:4]))
        assert main(["replay", str(src)]) == 0
        assert seen == ["custom"]
        assert [r["table"] for r in _rows(capsys.readouterr().out)] == ["process_events"]
        with pytest.raises(ValueError, match="already registered"):
            replay.register_source_format(fmt)
    finally:
        replay.SOURCE_FORMATS.remove(fmt)
    assert main(["replay", "--format", "nosuch", str(src)]) == 2
    assert "unknown source format 'nosuch'" in capsys.readouterr().err


@needs_corpus
def test_node_prefixed_log(capsys):
    # auparse's test3.log carries node= prefixes and out-of-order serials
    assert main(["replay", str(CORPUS / "audit-userspace" / "test3.log"), "--stats"]) == 0
    err = capsys.readouterr().err
    assert "dropped 0" in err


@needs_corpus
def test_reassembler_logs_rows_and_lost(tmp_path):
    # go-libaudit's reassembler logs: connect + execve events; lost_messages has 9 lost serials
    for name, lost in (
        ("normal.log", 0),
        ("lost_messages.log", 9),
        ("out_of_order.log", 0),
        ("rollover.log", 0),
    ):
        sj = tmp_path / f"{name}.json"
        rc = main(
            [
                "replay",
                str(CORPUS / "go-libaudit" / "reassembler" / name),
                "-o",
                str(tmp_path / "r"),
                "--stats-json",
                str(sj),
            ]
        )
        assert rc == 0
        assert json.loads(sj.read_text())["lost_serials"] == lost, name


def test_module_entry_point(log):
    # what the live test and users run: python -m collector.cli replay
    proc = subprocess.run(
        [sys.executable, "-m", "collector.cli", "replay", str(log)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(_rows(proc.stdout)) == 2
