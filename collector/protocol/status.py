"""``struct audit_status`` in every size the kernel has used, and ``struct audit_features``.

The struct has grown by appending fields (version/feature_bitmap in 3.12, backlog_wait_time
in 3.14, backlog_wait_time_actual in 5.9). The kernel copies min(sent, its own size) on
AUDIT_SET and answers AUDIT_GET with its own size, so a codec must accept any multiple of 4
from the 8-field original up, keep unknown trailing fields, and report which fields were present.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ._tables import STATUS_MASK

STATUS_FIELDS = (
    "mask",
    "enabled",
    "failure",
    "pid",
    "rate_limit",
    "backlog_limit",
    "lost",
    "backlog",
    "feature_bitmap",
    "backlog_wait_time",
    "backlog_wait_time_actual",
)
MIN_STATUS_FIELDS = 8  # Linux 2.6 original
KERNEL_STATUS_FIELDS = 11  # what 5.9+ kernels (and this machine's 6.18) send
MASK_ENABLED = STATUS_MASK["ENABLED"]
MASK_FAILURE = STATUS_MASK["FAILURE"]
MASK_PID = STATUS_MASK["PID"]
MASK_RATE_LIMIT = STATUS_MASK["RATE_LIMIT"]
MASK_BACKLOG_LIMIT = STATUS_MASK["BACKLOG_LIMIT"]
MASK_BACKLOG_WAIT_TIME = STATUS_MASK["BACKLOG_WAIT_TIME"]
MASK_LOST = STATUS_MASK["LOST"]
MASK_BACKLOG_WAIT_TIME_ACTUAL = STATUS_MASK["BACKLOG_WAIT_TIME_ACTUAL"]


class StatusError(ValueError):
    pass


@dataclass(slots=True)
class AuditStatus:
    mask: int = 0
    enabled: int = 0
    failure: int = 0
    pid: int = 0
    rate_limit: int = 0
    backlog_limit: int = 0
    lost: int = 0
    backlog: int = 0
    feature_bitmap: int = 0  # a.k.a. version
    backlog_wait_time: int = 0
    backlog_wait_time_actual: int = 0
    # how many u32 fields were on the wire (and are written back); extra: unknown trailing u32s
    nfields: int = KERNEL_STATUS_FIELDS
    extra: tuple[int, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        vals = [getattr(self, n) for n in STATUS_FIELDS[: min(self.nfields, len(STATUS_FIELDS))]]
        vals.extend(self.extra)
        return struct.pack(f"={len(vals)}I", *[v & 0xFFFFFFFF for v in vals])

    @classmethod
    def decode(cls, payload: bytes) -> AuditStatus:
        n = len(payload) // 4
        if len(payload) % 4 or n < MIN_STATUS_FIELDS:
            raise StatusError(
                f"audit_status payload of {len(payload)} bytes: need a multiple of 4, at least "
                f"{MIN_STATUS_FIELDS * 4}"
            )
        vals = struct.unpack_from(f"={n}I", payload)
        known = min(n, len(STATUS_FIELDS))
        st = cls(**dict(zip(STATUS_FIELDS[:known], vals[:known], strict=True)), nfields=n)
        st.extra = tuple(vals[known:])
        return st

    def as_dict(self) -> dict[str, int]:
        """The fields that were present, by name (for `kaudit status --json`)."""
        return {n: getattr(self, n) for n in STATUS_FIELDS[: min(self.nfields, len(STATUS_FIELDS))]}


def status_set(nfields: int = KERNEL_STATUS_FIELDS, **values: int) -> AuditStatus:
    """An AUDIT_SET payload that changes exactly the named fields (the mask says which)."""
    bits = {
        "enabled": MASK_ENABLED,
        "failure": MASK_FAILURE,
        "pid": MASK_PID,
        "rate_limit": MASK_RATE_LIMIT,
        "backlog_limit": MASK_BACKLOG_LIMIT,
        "backlog_wait_time": MASK_BACKLOG_WAIT_TIME,
        "lost": MASK_LOST,
        "backlog_wait_time_actual": MASK_BACKLOG_WAIT_TIME_ACTUAL,
    }
    mask = 0
    for k in values:
        if k not in bits:
            raise StatusError(f"audit_status field {k!r} cannot be set (settable: {', '.join(bits)})")
        mask |= bits[k]
    return AuditStatus(mask=mask, nfields=nfields, **values)


@dataclass(slots=True)
class AuditFeatures:
    """``struct audit_features`` (AUDIT_GET_FEATURE / AUDIT_SET_FEATURE)."""

    vers: int = 1
    mask: int = 0
    features: int = 0
    lock: int = 0

    def encode(self) -> bytes:
        return struct.pack("=4I", self.vers, self.mask, self.features, self.lock)

    @classmethod
    def decode(cls, payload: bytes) -> AuditFeatures:
        if len(payload) < 16:
            raise StatusError(f"audit_features payload of {len(payload)} bytes: need 16")
        return cls(*struct.unpack_from("=4I", payload))

