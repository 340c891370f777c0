"""audit_status in every size the kernel has used."""

from __future__ import annotations

import struct

import pytest

from collector.protocol.status import (
    MASK_BACKLOG_LIMIT,
    MASK_PID,
    AuditFeatures,
    AuditStatus,
    StatusError,
    status_set,
)

# AUDIT_GET reply payload from this machine's kernel (6.18): 11 fields
KERNEL_REPLY = struct.pack("=11I", 0, 0, 1, 0, 0, 64, 0, 0, 0x7F, 15000, 0)


def test_decode_kernel_reply():
    st = AuditStatus.decode(KERNEL_REPLY)
    assert (st.enabled, st.failure, st.backlog_limit, st.feature_bitmap, st.backlog_wait_time) == (0, 1, 64, 0x7F, 15000)
    assert st.nfields == 11 and st.encode() == KERNEL_REPLY


@pytest.mark.parametrize("n", [8, 9, 10, 11, 12, 14])
def test_every_size_round_trips(n):
    vals = list(range(1, n + 1))
    raw = struct.pack(f"={n}I", *vals)
    st = AuditStatus.decode(raw)
    assert st.nfields == n
    assert st.encode() == raw
    assert st.enabled == 2 and st.backlog == 8
    assert list(st.as_dict().values()) == vals[: min(n, 11)]
    assert st.extra == tuple(vals[11:])


@pytest.mark.parametrize("raw", [b"", b"\0" * 28, b"\0" * 45])
def test_short_or_ragged_status_is_refused(raw):
    with pytest.raises(StatusError, match=f"{len(raw)} bytes"):
        AuditStatus.decode(raw)


def test_status_set_builds_mask():
    st = status_set(pid=42, backlog_limit=8192)
    assert st.mask == MASK_PID | MASK_BACKLOG_LIMIT and st.pid == 42
    with pytest.raises(StatusError, match="backlog"):
        status_set(backlog=1)


def test_features_round_trip():
    f = AuditFeatures(1, 3, 1, 0)
    assert AuditFeatures.decode(f.encode()) == f
    with pytest.raises(StatusError):
        AuditFeatures.decode(b"\0" * 8)
