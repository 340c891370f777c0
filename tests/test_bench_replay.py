"""bench replay machinery on a tiny corpus: every tool counted what it was given, figures well formed.

No assertion is about speed: a rate only has to be a positive number, and the ratios have to
be the quotients of the rates they claim to compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers import count_lines, measure, unavailable
from bench.replay import BASELINE, TOOLS, format_report, run_replay_bench

ROOT = Path(__file__).resolve().parents[1]


def _by_tool(block: dict) -> dict[str, dict]:
    return {r["tool"]: r for r in block["results"]}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    corpus = ROOT.parent / "shared" / "corpus"
    if not corpus.is_dir():
        pytest.skip(f"the shared corpus is not at {corpus}")
    work = tmp_path_factory.mktemp("replay")
    return run_replay_bench((300, 600), TOOLS, workdir=work, repeat=2, corpus_dir=corpus)


def test_kaudit_tools_see_every_record_and_event(report: dict) -> None:
    for block in report["sizes"]:
        c = block["corpus"]
        by = _by_tool(block)
        for tool in ("kaudit-text", "kaudit-netlink"):
            r = by[tool]
            assert r["error"] is None and r["check"] is None, r
            assert r["seen"]["records"] == c["records"] and r["seen"]["events"] == c["events"]
            assert r["seen"]["balanced"] is True and r["seen"]["lost_serials"] == 0
            assert r["records"] == c["records"] and r["events"] == c["events"]
            assert r["records_per_s"] > 0 and r["maxrss_kb"] > 0 and len(r["wall_samples"]) == 2
            assert r["loop_records_per_s"] >= r["records_per_s"]  # the loop is part of the wall time
        assert by["kaudit-text"]["seen"]["rows"] == by["kaudit-netlink"]["seen"]["rows"] > 0
        assert by["kaudit-replay-cli"]["seen"]["rows"] == by["kaudit-text"]["seen"]["rows"]


def test_ratios_are_quotients_of_the_rates(report: dict) -> None:
    for block in report["sizes"]:
        by = _by_tool(block)
        base = by[BASELINE]["records_per_s"]
        assert by[BASELINE]["ratio_to_kaudit"] == pytest.approx(1.0)
        for r in block["results"]:
            if r["records_per_s"]:
                assert r["ratio_to_kaudit"] == pytest.approx(r["records_per_s"] / base)
                assert r["kaudit_speedup"] == pytest.approx(base / r["records_per_s"])
                assert r["events_per_s"] == pytest.approx(r["records_per_s"] * r["events"] / r["records"])


def test_peers_counted_the_corpus_or_were_skipped_with_a_reason(report: dict) -> None:
    for block in report["sizes"]:
        c = block["corpus"]
        by = _by_tool(block)
        for tool in ("auparse", "laurel", "ausearch"):
            why = unavailable(tool)
            r = by[tool]
            if why:
                assert r["error"] == why and r["records_per_s"] is None
                continue
            assert r["error"] is None and r["check"] is None, r
        if not unavailable("auparse"):
            # auparse ends an event at PROCTITLE and drops the EOE after it: fewer records, same events
            assert by["auparse"]["seen"]["events"] == c["events"]
            assert by["auparse"]["seen"]["records"] == c["records"] - c["records_by_type"].get("PROCTITLE", 0)
        if not unavailable("laurel"):
            assert by["laurel"]["seen"]["events"] == c["events"]
        if not unavailable("ausearch"):
            assert by["ausearch"]["seen"]["records"] == c["records"]


def test_report_is_json_and_the_table_names_every_tool(report: dict, tmp_path: Path) -> None:
    text = json.dumps(report)
    assert json.loads(text)["benchmark"] == "replay"
    assert report["machine"]["nproc"] == os.cpu_count()
    table = format_report(report)
    for r in report["sizes"][0]["results"]:
        assert r["label"] in table
    scaling = report["rss_scaling"][BASELINE]
    assert scaling["growth"] == pytest.approx(scaling["big_kb"] / scaling["small_kb"] - 1)
    if "vs_auparse" in report["targets"]:
        t = report["targets"]["vs_auparse"]
        assert t["met"] == (t["speedup"] >= 1.0)


def test_plot_writes_a_png(report: dict, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench.plot import plot_replay

    out = tmp_path / "replay.png"
    plot_replay(report, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_measure_reports_the_childs_own_figures(tmp_path: Path) -> None:
    m = measure([sys.executable, "-c", "import sys; x = b'x' * (30 << 20); print('done'); sys.exit(3)"])
    assert m.returncode == 3 and m.stdout.strip() == b"done" and not m.timed_out
    assert "exit status 3" in (m.failure() or "")
    # the child's own peak (a 30 MB buffer), not the benchmark's: at least 30 MB
    assert m.maxrss_kb >= 30 * 1024
    slow = measure([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert slow.timed_out and slow.failure().startswith("timed out")
    out = tmp_path / "o.txt"
    m = measure([sys.executable, "-c", "print('a'); print('b')"], stdout_path=out)
    assert count_lines(out) == 2 and m.stdout == b""


def test_unknown_tool_and_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown tool"):
        run_replay_bench((10,), ("nope",))
    r = subprocess.run(
        [sys.executable, "-m", "bench", "replay", "--sizes", "0"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 2 and "every size must be >= 1" in r.stderr


def test_kaudit_bench_is_registered_with_the_kaudit_command() -> None:
    from collector.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["bench", "replay", "--sizes", "100", "--repeat", "1"])
    assert args.sizes == (100,) and args.repeat == 1 and callable(args.func)
    args = parser.parse_args(["bench", "storm", "--storms", "connect", "--duration", "2"])
    assert args.storms == ("connect",) and args.duration == 2.0
