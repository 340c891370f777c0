"""The generated kernel tables: regenerated from the headers and compared with the committed copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collector.protocol import _tables
from collector.protocol.records import record_type_name, record_type_number

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed to read the kernel headers")
def test_generated_tables_match_headers(tmp_path):
    for h in ("/usr/include/linux/audit.h", "/usr/include/libaudit.h",
              "/usr/powerpc64le-linux-gnu/include/asm/unistd_64.h"):
        if not Path(h).exists():
            pytest.skip(f"{h} missing: install linux-libc-dev, libaudit-dev and linux-libc-dev-ppc64el-cross (ci/setup does)")
    out = tmp_path / "_tables.py"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_tables.py"), "--output", str(out)], check=True)
    assert out.read_text() == (ROOT / "collector" / "protocol" / "_tables.py").read_text()


def test_known_values_from_the_kernel_abi():
    # values fixed by the kernel ABI: a wrong generator shows here
    assert _tables.RECORD_TYPES["SYSCALL"] == 1300 and _tables.RECORD_TYPES["EOE"] == 1320
    assert _tables.SYSCALLS["x86_64"]["connect"] == 42 and _tables.SYSCALLS["aarch64"]["connect"] == 203
    assert _tables.SYSCALLS["x86_64"]["execve"] == 59 and _tables.SYSCALLS["aarch64"]["execve"] == 221
    assert _tables.ARCHES["X86_64"] == 0xC000003E and _tables.ARCHES["AARCH64"] == 0xC00000B7
    assert _tables.RULE_FIELDS["FILTERKEY"] == 210 and _tables.OPERATORS["EQUAL"] == 0x40000000
    assert _tables.ERRNO["EINPROGRESS"] == 115 and _tables.ERRNO["ECONNREFUSED"] == 111


def test_record_type_names_round_trip():
    assert record_type_name(1300) == "SYSCALL"
    assert record_type_name(1105) == "USER_START"
    assert record_type_name(1399) == "UNKNOWN[1399]"
    assert record_type_number("UNKNOWN[1399]") == 1399
    assert record_type_number("AUDIT_SYSCALL") == 1300
    for name, num in _tables.RECORD_TYPES.items():
        assert record_type_number(name) == num
    try:
        record_type_number("NOT_A_TYPE")
    except ValueError as e:
        assert "NOT_A_TYPE" in str(e)
    else:
        raise AssertionError("unknown name accepted")
