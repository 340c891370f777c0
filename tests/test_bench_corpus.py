"""bench/corpus.py: the replay benchmark's corpus is real records, renumbered, each event with EOE.

Built small (a few hundred records) in a temporary directory; the checks are about content,
never about time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.corpus import (
    CORPUS_INFO,
    CorpusInfo,
    Template,
    build_corpus,
    iter_netlink_datagrams,
    load_templates,
)
from collector.commands.replay import REPLAY_DEFAULTS, replay_sources
from collector.parser import parse_log_line, parse_record
from collector.pipeline import Pipeline
from collector.protocol.netlink import decode_datagram


@pytest.fixture
def templates(corpus: Path) -> list[Template]:
    return load_templates(corpus)


def test_templates_are_the_captured_connect_and_execve_events(templates: list[Template]) -> None:
    kinds = {t.kind for t in templates}
    assert kinds == {"connect", "execve"}
    for t in templates:
        first = t.records[0]
        assert first[1] == "SYSCALL"
        assert ("syscall=42 " in first[2]) == (t.kind == "connect")
        assert all(name != "EOE" for _n, name, _t in t.records)  # EOE is added uniformly
        assert all("\x1d" not in text for _n, _name, text in t.records)  # enrichment dropped
    # the four sources all contribute
    assert {t.name.split(":")[0] for t in templates} == {
        "go-libaudit/reassembler/normal.log",
        "laurel/record-connect.txt",
        "laurel/record-execve.txt",
        "laurel/shell-proc-trace.txt",
    }


def test_corpus_is_renumbered_whole_events_each_ending_in_eoe(tmp_path: Path, templates: list[Template]) -> None:
    info = build_corpus(tmp_path, 500, templates=templates, first_serial=77)
    assert info.records >= 500 and info.records - 500 < 8  # whole events only
    lines = Path(info.log_path).read_text().splitlines()
    assert len(lines) == info.records
    recs = [parse_log_line(line) for line in lines]
    serials = [r.serial for r in recs]
    # consecutive serials, one event after the other, each closed by its EOE
    events: list[list] = []
    for r in recs:
        if not events or events[-1][-1].type_name == "EOE":
            events.append([])
        events[-1].append(r)
    assert len(events) == info.events
    assert [e[0].serial for e in events] == list(range(77, 77 + info.events))
    assert all(e[-1].type_name == "EOE" and len({r.serial for r in e}) == 1 for e in events)
    assert serials == sorted(serials)
    kinds = [("connect" if "syscall=42 " in e[0].text else "execve") for e in events]
    assert kinds[:4] == ["connect", "execve", "connect", "execve"]  # alternating
    assert info.events_by_kind == {"connect": kinds.count("connect"), "execve": kinds.count("execve")}
    assert sum(info.records_by_type.values()) == info.records and info.records_by_type["EOE"] == info.events
    assert CorpusInfo.load(tmp_path).as_dict() == info.as_dict()
    assert json.loads((tmp_path / CORPUS_INFO).read_text())["records"] == info.records


def test_netlink_file_holds_the_same_records_as_unicast_datagrams(tmp_path: Path, templates: list[Template]) -> None:
    info = build_corpus(tmp_path, 300, templates=templates)
    text = [parse_log_line(line) for line in Path(info.log_path).read_text().splitlines()]
    dgrams = list(iter_netlink_datagrams(info.netlink_path, chunk=97))  # odd chunk: frames cross reads
    assert len(dgrams) == info.records
    for dgram, rec in zip(dgrams, text, strict=True):
        (msg,) = decode_datagram(dgram)
        assert msg.short_len  # nlmsg_len = payload only, as the kernel sends to the daemon
        got = parse_record(msg.type, msg.payload)
        assert (got.type, got.sec, got.msec, got.serial, got.text) == (rec.type, rec.sec, rec.msec, rec.serial, rec.text)


def test_truncated_netlink_file_is_an_error(tmp_path: Path, templates: list[Template]) -> None:
    info = build_corpus(tmp_path, 20, templates=templates)
    data = Path(info.netlink_path).read_bytes()
    Path(info.netlink_path).write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        list(iter_netlink_datagrams(info.netlink_path))


def test_kaudit_reads_every_event_of_the_corpus_both_ways(tmp_path: Path, templates: list[Template]) -> None:
    info = build_corpus(tmp_path, 1000, templates=templates)
    text = replay_sources([info.log_path], REPLAY_DEFAULTS, None)
    p = Pipeline(REPLAY_DEFAULTS.table_options(), None, uptime=None)
    for d in iter_netlink_datagrams(info.netlink_path):
        for m in decode_datagram(d):
            p.feed_netlink(m.type, m.payload)
    nl = p.finish()
    for st in (text, nl):
        assert st.records == info.records and st.events == info.events
        assert st.lost_serials == 0 and st.ledger.balanced and not st.drops
    assert text.rows == nl.rows > 0
    assert text.table.rows == nl.table.rows


def test_missing_capture_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="normal.log"):
        load_templates(tmp_path)
    with pytest.raises(ValueError, match="records must be"):
        build_corpus(tmp_path / "x", 0, templates=[])
