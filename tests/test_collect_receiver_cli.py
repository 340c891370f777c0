"""``kaudit collect --receiver``: the option, its default, its errors, and the default end to end.

Why these: ``collect`` drains the audit socket through ``collector.receiver`` unless told
otherwise (issue 6: a receive path that cannot fall behind), while ``Collector`` itself
defaults to ``off`` for in-process users. A test pins each default so that neither flips
silently. The end-to-end test runs the command as a subprocess against the in-process
simulator (nothing here touches the machine's kernel).
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_receiver_drain import connect_event  # the same connect event the drain tests send

from collector.cli import build_parser, main
from collector.commands.collect import COLLECT_DEFAULTS, RECEIVER_CHOICES, Collector
from collector.protocol.auditctl import parse_rule
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel

ROOT = Path(__file__).resolve().parents[1]


def test_receiver_defaults_to_process_and_takes_each_choice() -> None:
    parser = build_parser()
    assert parser.parse_args(["collect"]).receiver == "process"
    for mode in RECEIVER_CHOICES:
        assert parser.parse_args(["collect", "--receiver", mode]).receiver == mode
    assert set(RECEIVER_CHOICES) == {"process", "thread", "off"}


def test_help_names_the_option_and_its_default() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "collector.cli", "collect", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "--receiver {process,thread,off}" in r.stdout and "'process' (default)" in r.stdout


def test_an_unknown_receiver_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--receiver", "bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--receiver" in err and "invalid choice: 'bogus'" in err


def test_collector_refuses_an_unknown_receiver_by_name() -> None:
    with pytest.raises(ValueError, match="'bogus'") as exc:
        Collector("unix:/nonexistent", COLLECT_DEFAULTS, io.StringIO(), receiver="bogus")
    assert "process" in str(exc.value)  # and says what it expected


@pytest.fixture
def sim_server() -> Iterator[tuple[str, EndpointServer]]:
    # a short directory: unix socket paths are limited to 107 bytes, pytest's tmp_path may be longer
    tmp = Path(tempfile.mkdtemp(prefix="kaudit-rcv-cli-"))
    kernel = AuditKernel()
    kernel.load(rules=[parse_rule("-a always,exit -F arch=b64 -S openat -k files", "x86_64").encode()])
    server = EndpointServer(kernel)
    server.listen(str(tmp / "k.sock"))
    server.start()
    try:
        yield f"unix:{tmp / 'k.sock'}", server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _state(server: EndpointServer) -> tuple:
    return server.call(
        lambda k: (k.enabled, k.failure, k.auditd_pid, k.backlog_limit, k.backlog_wait_time, k.rule_payloads())
    )


def _wait(pred, timeout: float, what: str) -> None:
    """Generous timeouts: this is a hang detector, not a speed test."""
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, what
        time.sleep(0.05)


def test_collect_subprocess_with_the_default_receiver_writes_every_row_and_restores(sim_server, tmp_path) -> None:
    endpoint, server = sim_server
    before = _state(server)
    out, stats_path = tmp_path / "rows.jsonl", tmp_path / "stats.json"
    n = 200
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "collect", "--endpoint", endpoint, "--output", str(out),
         "--status-interval", "0.3", "--stats-json", str(stats_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait(lambda: server.call(lambda k: k.auditd_pid == proc.pid and any(b"kaudit" in p for p in k.rule_payloads())),
              30, "collect did not register and add its rules")
        # the drainer starts with the first read after configuration: records sent while the
        # last configuration request is answered are read by that request instead (then the
        # counters below would not see them); two status polls later it is running
        time.sleep(1.0)
        for i in range(n):
            for rtype, text in connect_event(7000 + i, 95000 + i, "1700000001.000"):
                server.emit_record(rtype, text)

        def rows_written() -> int:
            return len(out.read_text().splitlines()) if out.exists() else 0

        _wait(lambda: rows_written() >= n or proc.poll() is not None, 30, "the rows did not all arrive")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert _state(server) == before, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["pid"] for r in rows] == [7000 + i for i in range(n)]
    stats = json.loads(stats_path.read_text())
    assert stats["ledger"]["balanced"] is True
    # the records came through the drainer: the receiver's counters are there and add up
    transport = stats["transport"]
    assert transport["receiver_datagrams"] >= 3 * n and transport["receiver_died"] == 0
    assert transport["receiver_discarded"] == 0
