"""The pytest plugin: scenario files as test items, with the row diff on failure (also under xdist)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "scenarios"
SAMPLE = "python-tcp4-connect.yaml"


def run_pytest(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider", "-p", "no:benchmark", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=path if path.is_dir() else path.parent,
    )


@pytest.fixture
def scen_dir(tmp_path: Path) -> Path:
    if not (BUNDLED / SAMPLE).exists():
        pytest.skip(f"bundled scenario {SAMPLE} is missing")
    d = tmp_path / "scenarios"
    d.mkdir()
    shutil.copy(BUNDLED / SAMPLE, d / SAMPLE)
    return d


def test_scenario_file_is_collected_and_passes(scen_dir):
    out = run_pytest(scen_dir, "--collect-only")
    assert "python-tcp4-connect" in out.stdout, out.stdout + out.stderr
    res = run_pytest(scen_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout


def test_changed_expectation_fails_with_row_diff(scen_dir):
    p = scen_dir / SAMPLE
    text = p.read_text()
    assert "remote_address: 127.0.0.1" in text
    p.write_text(text.replace("remote_address: 127.0.0.1", "remote_address: 127.0.0.9", 1))
    res = run_pytest(scen_dir)
    assert res.returncode == 1, res.stdout
    assert "expected row" in res.stdout and "not produced" in res.stdout
    assert 'remote_address: expected "127.0.0.9", got "127.0.0.1"' in res.stdout


def test_broken_file_is_an_item_that_fails_with_its_place(scen_dir):
    (scen_dir / "broken.yaml").write_text("name: broken\nmessages:\n  - record: 'not audit'\n")
    res = run_pytest(scen_dir)
    assert res.returncode == 1
    assert "1 failed, 1 passed" in res.stdout
    assert "broken.yaml:3: not an audit record" in res.stdout


def test_yaml_outside_scenarios_dir_needs_top_level_messages(tmp_path):
    (tmp_path / "config.yaml").write_text("key: value\n")
    res = run_pytest(tmp_path, "--collect-only")
    assert res.returncode == 5, res.stdout  # pytest: no tests collected


def test_runs_under_xdist(scen_dir):
    for i in range(3):
        shutil.copy(scen_dir / SAMPLE, scen_dir / f"copy{i}.yaml")
    res = run_pytest(scen_dir, "-n", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 passed" in res.stdout
