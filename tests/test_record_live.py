"""`kaudit record` on the real kernel: a curl recording replays to the rows the live run printed,
and the same traffic exported to pcap and imported again gives the same rows."""

from __future__ import annotations

import copy
import http.server
import json
import shutil
import subprocess
import sys
import threading

import pytest

from simulator.check import compare
from simulator.pcap import read_pcap
from simulator.record import VOLATILE_COLUMNS
from simulator.replay import run_scenario
from simulator.scenario import load_any, load_scenario

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("live")]


def _unreachable() -> str | None:
    try:
        from collector.transport import kernel_unreachable_reason
    except ImportError as exc:  # pragma: no cover
        return str(exc)
    return kernel_unreachable_reason()


@pytest.fixture(scope="module")
def http_port():
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # noqa: ANN002
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _stable(rows: list[dict]) -> list[str]:
    return sorted(json.dumps({k: v for k, v in r.items() if k not in VOLATILE_COLUMNS}, sort_keys=True) for r in rows)


@pytest.fixture(scope="module")
def recording(tmp_path_factory, http_port):
    why = _unreachable()
    if why:
        pytest.skip(why)
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    d = tmp_path_factory.mktemp("record")
    out, pcap = d / "curl.yaml", d / "curl.pcap"
    res = subprocess.run(
        [sys.executable, "-m", "collector.cli", "record", "--output", str(out), "--pcap", str(pcap),
         "--duration", "0.5", "--", "curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{http_port}/"],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    printed = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    return out, pcap, printed


def test_recording_has_curl_rows(recording, http_port):
    out, _pcap, printed = recording
    sc = load_scenario(out)
    assert sc.origin["command"].startswith("curl ")
    connects = [r for r in printed if r["table"] == "socket_events" and r["action"] == "connect"
                and r["remote_port"] == http_port]
    assert connects and connects[0]["remote_address"] == "127.0.0.1"
    assert any(r["table"] == "process_events" and r["path"].endswith("/curl") for r in printed)
    assert all(not (set(e.columns) & VOLATILE_COLUMNS) for e in sc.expect.rows)


def test_recorded_scenario_replays_to_the_printed_rows(recording):
    out, _pcap, printed = recording
    sc = load_scenario(out)
    result = run_scenario(sc)
    ok, diff = compare(sc, result)
    assert ok, diff
    assert _stable(result.rows) == _stable(printed)


def test_pcap_export_imports_to_the_same_rows(recording):
    out, pcap, printed = recording
    sc = load_scenario(out)
    msgs = read_pcap(pcap)
    assert [(m.type, m.payload) for m in msgs] == [(m.type, m.payload) for m in sc.messages()]
    from_pcap = copy.deepcopy(sc)
    from_pcap.steps = list(msgs)
    result = run_scenario(from_pcap)
    assert _stable(result.rows) == _stable(printed)
    plain = load_any(pcap)  # a bare capture: default kernel state and flags, no expectations
    assert plain.expect.rows is None and len(plain.messages()) == len(msgs)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_recorded_pcap_opens_in_tshark_as_netlink_audit(recording):
    _out, pcap, _printed = recording
    res = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "netlink.family"],
                         capture_output=True, text=True, timeout=60, check=True)
    fams = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
    assert fams and all(int(f, 0) == 9 for f in fams)
