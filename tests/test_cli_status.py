"""`kaudit status` against the simulator and the kernel: the same fields from both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector.cli import main
from collector.transport import kernel_unreachable_reason

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ["enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost", "backlog", "feature_bitmap",
            "backlog_wait_time", "backlog_wait_time_actual", "loginuid_immutable", "loginuid_immutable_locked"]


def test_status_json_from_the_simulator(sim_endpoint: str, sim_server, capsys) -> None:
    sim_server.call(lambda k: setattr(k, "rate_limit", 17))
    assert main(["status", "--endpoint", sim_endpoint, "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert list(fields) == EXPECTED
    assert fields["rate_limit"] == 17 and fields["backlog_wait_time"] == 15000 and fields["feature_bitmap"] == 0x7F


def test_status_text_looks_like_auditctl(sim_endpoint: str, capsys) -> None:
    assert main(["status", "--endpoint", sim_endpoint]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "enabled 0" and "feature_bitmap 0x7f" in lines
    assert lines[-1] == "loginuid_immutable 0 unlocked"


def test_an_unreachable_endpoint_exits_2(capsys) -> None:
    assert main(["status", "--endpoint", "unix:/nonexistent/kaudit.sock"]) == 2
    assert "cannot connect" in capsys.readouterr().err


@pytest.mark.skipif(kernel_unreachable_reason() is not None, reason=kernel_unreachable_reason() or "")
def test_kernel_and_simulator_give_the_same_fields(sim_endpoint: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = {}
    for endpoint in ("kernel", sim_endpoint):
        proc = subprocess.run([sys.executable, "-m", "collector.cli", "status", "--endpoint", endpoint, "--json"],
                              capture_output=True, text=True, timeout=30, env=env, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        out[endpoint] = json.loads(proc.stdout)
    assert list(out["kernel"]) == list(out[sim_endpoint]) == EXPECTED
