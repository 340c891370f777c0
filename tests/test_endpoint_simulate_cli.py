"""`kaudit simulate --listen unix:PATH` as a process: serves, answers, stops cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from collector.cli import main
from collector.protocol.status import AuditStatus
from collector.transport import open_transport

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def test_simulate_serves_until_sigterm() -> None:
    tmp = tempfile.mkdtemp(prefix="kaudit-cli-")
    path = os.path.join(tmp, "sim.sock")
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "simulate", "--listen", f"unix:{path}"],
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        assert "listening on unix:" in proc.stderr.readline()
        with open_transport(f"unix:{path}") as t:
            assert AuditStatus.decode(t.request(1000)[0].payload).backlog_limit == 64
        status = subprocess.run([sys.executable, "-m", "collector.cli", "status", "--endpoint", f"unix:{path}", "--json"],
                                capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=30)
        assert json.loads(status.stdout)["enabled"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        proc.stderr.close()
        leftover = os.path.exists(path)
        shutil.rmtree(tmp, ignore_errors=True)
    assert rc == 0 and not leftover


def test_a_scenario_that_cannot_be_read_is_exit_2_naming_it(capsys, tmp_path) -> None:
    # serving a scenario end to end: tests/test_simulate_scenario.py
    rc = main(["simulate", "--listen", f"unix:{tmp_path}/s.sock", "some.yaml"])
    assert rc == 2
    assert "some.yaml: cannot read" in capsys.readouterr().err


def test_a_bad_listen_address_exits_2(capsys) -> None:
    assert main(["simulate", "--listen", "tcp:1234"]) == 2
    assert "expected unix:PATH" in capsys.readouterr().err


def test_a_path_that_is_not_a_socket_is_not_replaced(tmp_path, capsys) -> None:
    path = tmp_path / "file"
    path.write_text("keep me")
    assert main(["simulate", "--listen", f"unix:{path}"]) == 2
    assert path.read_text() == "keep me" and "not a socket" in capsys.readouterr().err
