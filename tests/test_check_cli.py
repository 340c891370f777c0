"""`kaudit check` end to end: the bundled scenarios, a changed expectation, a broken file, JUnit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "scenarios"


def kaudit(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def bundled() -> list[Path]:
    return sorted(BUNDLED.glob("*.yaml"))


def test_at_least_forty_bundled_scenarios_with_one_per_fault():
    files = bundled()
    assert len(files) >= 40
    names = {f.stem for f in files}
    for fault in ("enobufs", "drop", "reorder", "interleave", "duplicate", "truncated", "sender", "garbage",
                  "timeout", "steal-pid", "disabled", "immutable", "rule-add-refused"):
        assert any(n.startswith("fault-") and fault in n for n in names), fault


def test_check_passes_on_bundled_scenarios(tmp_path):
    junit = tmp_path / "junit.xml"
    res = kaudit("check", "--junit", str(junit))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    last = res.stdout.strip().splitlines()[-1]
    n = len(bundled())
    assert last.startswith(f"{n} scenarios: {n} passed, 0 failed, 0 errors"), last
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == str(n) and suite.get("failures") == "0"


def test_check_fails_with_diff_when_an_expected_value_changes(tmp_path):
    src = BUNDLED / "curl-closed-port.yaml"
    if not src.exists():
        pytest.skip("bundled curl-closed-port.yaml missing")
    text = src.read_text()
    assert "status: in_progress" in text
    (tmp_path / "changed.yaml").write_text(text.replace("status: in_progress", "status: succeeded"))
    shutil.copy(BUNDLED / "execve-simple.yaml", tmp_path / "ok.yaml")
    (tmp_path / "broken.yaml").write_text("name: broken\nmessages: [\n")
    res = kaudit("check", str(tmp_path), "-j", "2")
    assert res.returncode == 1
    out = res.stdout
    assert "=== curl-closed-port" in out and "fail" in out
    assert 'status: expected "succeeded", got "in_progress"' in out
    assert f"{tmp_path / 'broken.yaml'}:2: YAML error" in out
    assert "3 scenarios: 1 passed, 1 failed, 1 errors" in out


def test_check_on_missing_path_is_a_usage_error(tmp_path):
    res = kaudit("check", str(tmp_path / "nope"))
    assert res.returncode == 2 and "no such file" in res.stderr
