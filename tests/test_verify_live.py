"""``kaudit verify`` against the real kernel: the whole chain, and that failures are caught.

Live: these change the kernel's audit state (through the collector), so they hold the live
lock, run in one xdist group and check the state is as found afterwards. They skip, with the
reason, where the kernel's audit cannot be reached or we are not root.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from simulator import workloads
from simulator.verify import VerifyError, VerifyOptions, default_collector, read_kernel_state, run_verify
from simulator.workloads.netns import list_ours

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("live")]


@pytest.fixture
def live_kernel(live_audit) -> Iterator[None]:
    """conftest's ``live_audit`` (lock, snapshot, restore; skips where audit is unreachable).

    verify then runs with take_lock=False and its collector with --no-lock: the lock is ours.
    """
    if os.geteuid() != 0:
        pytest.skip("live verification needs root")
    try:
        read_kernel_state()
    except VerifyError as exc:
        pytest.skip(str(exc))
    yield


def _ours_left() -> list[str]:
    """Namespaces a run from this process left (verify's network carries the pid of its maker);
    other kaudit- namespaces may belong to tests running in parallel."""
    return [n for n in list_ours() if n.startswith(f"kaudit-{os.getpid()}-")]


def _verify(tmp_path: Path, **kw) -> tuple[int, dict, str, str]:
    out, err = io.StringIO(), io.StringIO()
    opts = VerifyOptions(take_lock=False, junit=tmp_path / "junit.xml", report=tmp_path / "report.json", **kw)
    rc = run_verify(opts, out, err)
    report = json.loads((tmp_path / "report.json").read_text()) if (tmp_path / "report.json").exists() else {}
    return rc, report, out.getvalue(), err.getvalue()


def test_every_workload_passes_and_the_kernel_is_left_as_found(live_kernel, tmp_path: Path):
    before = read_kernel_state()
    rc, report, out, err = _verify(tmp_path, rows_out=tmp_path / "rows.jsonl")
    failing = [
        w["name"] + ": " + "; ".join(w["problems"][:3])
        for w in report.get("workloads", [])
        if w["verdict"] != "PASS"
    ]
    summary = out[out.rfind("workloads passed") - 10 :]
    assert rc == 0, f"failing workloads: {failing}\n{err[-2000:]}\n{summary}"
    assert len(report["workloads"]) == len(workloads.ALL) >= 14
    assert read_kernel_state() == before
    assert report["netns_left"] == [] and not _ours_left()
    # every network workload's packet was seen, independently of audit
    net = [w for w in report["workloads"] if w["wire"]]
    assert len(net) == sum(1 for w in workloads.ALL if w.needs_network)
    assert all(p["seen"] for w in net for p in w["wire"])
    # JUnit: a case per workload plus the run-level checks, none failing
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.get("failures") == "0" and root.get("errors") == "0"
    assert int(root.get("tests")) == len(workloads.ALL) + 3
    # the rows file came back and holds the rows the matcher used
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines() if line]
    assert len(rows) == report["rows_total"] > 0
    assert "PASS  curl-loopback" in out and "wire:" in out


def test_a_collector_missing_unix_rows_fails_the_unix_workloads(live_kernel, tmp_path: Path):
    rows_file = "{output}"
    argv = [a for a in default_collector(Path(rows_file)) if a != "--audit_allow_unix"]
    assert len(argv) == len(default_collector(Path(rows_file))) - 1
    rc, report, out, _ = _verify(tmp_path, collector=argv, workloads=["unix-path", "unix-abstract", "bind"])
    assert rc == 1
    by_name = {w["name"]: w for w in report["workloads"]}
    assert by_name["bind"]["verdict"] == "PASS"
    for name in ("unix-path", "unix-abstract"):
        w = by_name[name]
        assert w["verdict"] == "FAIL"
        assert w["counts"]["missing"] == 3 and w["counts"]["matched"] == 2  # the spawn rows still match
    assert "MISSING" in out
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.get("failures") == "2"


def test_a_collector_that_cannot_start_is_status_2_and_changes_nothing(live_kernel, tmp_path: Path):
    before = read_kernel_state()
    rc, report, _, err = _verify(
        tmp_path, collector=[sys.executable, "-c", "import sys; sys.exit(3)"], workloads=["bind"]
    )
    assert rc == 2 and report == {}
    assert "the collector exited with status 3" in err
    assert read_kernel_state() == before
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.get("failures") == "1"


def test_a_collector_that_delivers_nothing_times_out_cleanly(live_kernel, tmp_path: Path):
    silent = [sys.executable, "-c", "import time; time.sleep(60)"]
    out, err = io.StringIO(), io.StringIO()
    opts = VerifyOptions(take_lock=False, collector=silent, workloads=["bind"], startup_timeout=2.0)
    assert run_verify(opts, out, err) == 2
    assert "did not appear in the collector's output within 2s" in err.getvalue()


@pytest.mark.container
def test_verify_in_a_container_passes_and_leaves_the_host_as_found(live_kernel, tmp_path: Path):
    """``kaudit verify --container``: the same workloads from inside kaudit's image."""
    from simulator import container

    try:
        container.client()
    except container.DockerUnavailable as exc:
        pytest.skip(str(exc))
    before = read_kernel_state()
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.cli",
            "verify",
            "--container",
            "--no-lock",
            "--junit",
            str(junit),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["ok"] and data["container_exit_code"] == 0
    assert sum(1 for w in data["workloads"] if w["verdict"] == "PASS") == len(workloads.ALL)
    assert all(p["seen"] for w in data["workloads"] for p in w["wire"])
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "0" and int(root.get("tests")) == len(workloads.ALL) + 6
    assert read_kernel_state() == before
    assert not _ours_left()


def test_sigterm_mid_run_stops_the_collector_and_removes_the_network(live_kernel, tmp_path: Path):
    before = read_kernel_state()
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "verify", "--no-lock", "-w", "connect-timeout", "bind"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:  # wait until the collector runs, then for the first workload
            if "[ 1/2]" in line:
                break
        ns = [n for n in list_ours() if n.startswith(f"kaudit-{proc.pid}-")]
        assert len(ns) == 2, "the run's network should exist while it runs"
        assert read_kernel_state() != before, "the collector should have configured the kernel"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert read_kernel_state() == before
    assert not [n for n in list_ours() if n.startswith(f"kaudit-{proc.pid}-")]
