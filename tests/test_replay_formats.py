"""``kaudit replay`` of scenario files and pcap captures (the scenario engine's readers)."""

from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path

import pytest

from collector.cli import main
from collector.commands import replay
from simulator.check import RunResult, compare
from simulator.pcap import write_pcap
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _judge(name: str, rows: list[dict]) -> None:
    """The rows are the scenario's expected rows (its counters are the live collector's)."""
    sc = copy.deepcopy(load_scenario(SCENARIOS / f"{name}.yaml"))
    sc.expect.counters = {}
    sc.expect.kernel = {}
    ok, diff = compare(sc, RunResult(rows=rows))
    assert ok, diff


def test_the_formats_are_registered_before_the_auditlog_fallback():
    names = [f.name for f in replay.SOURCE_FORMATS]
    assert names.index("pcap") < names.index("auditlog") and names.index("scenario") < names.index("auditlog")
    assert names[-1] == "auditlog"


@pytest.mark.parametrize("name", ["python-tcp4-connect", "execve-long-argument", "sockets-and-processes"])
def test_replay_of_a_scenario_file_gives_its_expected_rows(name, capsys):
    sc = load_scenario(SCENARIOS / f"{name}.yaml")
    assert main(["replay", str(SCENARIOS / f"{name}.yaml"), *sc.flags]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows
    _judge(name, rows)


def test_replay_of_a_pcap_gives_the_same_rows_as_its_scenario(tmp_path, capsys):
    name = "python-tcp4-connect"
    sc = load_scenario(SCENARIOS / f"{name}.yaml")
    cap = tmp_path / "capture.pcap"
    assert write_pcap(cap, sc.messages(), start=1795605174.0) == len(sc.messages())
    stats = tmp_path / "stats.json"
    assert main(["replay", str(cap), "--stats-json", str(stats), *sc.flags]) == 0
    from_pcap = _rows(capsys.readouterr().out)
    _judge(name, from_pcap)
    assert json.loads(stats.read_text())["records"] == len(sc.messages())
    assert main(["replay", str(SCENARIOS / f"{name}.yaml"), *sc.flags]) == 0
    assert _rows(capsys.readouterr().out) == from_pcap


def test_a_pcap_on_standard_input_is_detected_by_its_magic(tmp_path, capsys, monkeypatch):
    sc = load_scenario(SCENARIOS / "python-tcp4-connect.yaml")
    cap = tmp_path / "capture.pcap"
    write_pcap(cap, sc.messages())
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(cap.read_bytes())))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["replay", "-", *sc.flags]) == 0
    _judge("python-tcp4-connect", _rows(capsys.readouterr().out))


def test_a_broken_scenario_is_exit_2_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmessages:\n  - record: 'type=SYSCALL msg=audit(1.2:3): a=b'\n  - fault: nosuch\n")
    assert main(["replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kaudit replay: {bad}:4: ") and "nosuch" in err


def test_a_broken_pcap_is_exit_2_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 7)  # pcap magic, then a truncated header
    assert main(["replay", str(bad)]) == 2
    assert f"kaudit replay: {bad}" in capsys.readouterr().err


def test_format_can_be_forced_and_is_listed(tmp_path, capsys):
    sc_text = (SCENARIOS / "python-tcp4-connect.yaml").read_text()
    src = tmp_path / "scenario.txt"  # no .yaml suffix: the content still says scenario
    src.write_text(sc_text)
    assert main(["replay", "--format", "scenario", str(src)]) == 0
    assert len(_rows(capsys.readouterr().out)) == 3
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    assert "known: pcap, scenario, auditlog" in " ".join(capsys.readouterr().out.split())
