"""``kaudit status``: the kernel's (or a simulator's) audit status, as ``auditctl -s`` shows it.

The same fields come back from the real kernel and from ``kaudit simulate``: both answer
AUDIT_GET with the 11-field audit_status and AUDIT_GET_FEATURE with audit_features, and this
command prints whatever fields the answer carried, so a shorter (older kernel) or longer
(newer kernel) struct shows up as fewer or more fields rather than as an error.
"""

from __future__ import annotations

import argparse
import json
import sys

from collector.protocol.records import AUDIT_GET, AUDIT_GET_FEATURE
from collector.protocol.status import AuditFeatures, AuditStatus, StatusError
from collector.transport import KernelError, TransportError, open_transport

LOGINUID_IMMUTABLE = 1 << 1  # AUDIT_FEATURE_LOGINUID_IMMUTABLE


def read_status(endpoint: str, *, timeout: float = 2.0) -> dict[str, int]:
    """Status fields (without the request-only ``mask``) plus loginuid_immutable and its lock."""
    with open_transport(endpoint, rcvbuf=0, timeout=timeout) as t:
        status = AuditStatus.decode(t.request(AUDIT_GET, timeout=timeout)[0].payload)
        features = AuditFeatures.decode(t.request(AUDIT_GET_FEATURE, timeout=timeout)[0].payload)
    fields = status.as_dict()
    fields.pop("mask", None)
    fields["loginuid_immutable"] = int(bool(features.features & LOGINUID_IMMUTABLE))
    fields["loginuid_immutable_locked"] = int(bool(features.lock & LOGINUID_IMMUTABLE))
    return fields


def format_status(fields: dict[str, int]) -> str:
    lines = []
    for name, value in fields.items():
        if name == "loginuid_immutable_locked":
            continue
        if name == "loginuid_immutable":
            lock = "locked" if fields.get("loginuid_immutable_locked") else "unlocked"
            lines.append(f"{name} {value} {lock}")
        elif name == "feature_bitmap":
            lines.append(f"{name} {value:#x}")
        else:
            lines.append(f"{name} {value}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        fields = read_status(args.endpoint)
    except (TransportError, KernelError, StatusError, ValueError, IndexError) as exc:
        print(f"kaudit status: {args.endpoint}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(fields) if args.json else format_status(fields))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="show the audit status (enabled, failure, pid, backlog ...)",
        description="Ask the kernel (or a simulator endpoint) for its audit status, like auditctl -s.",
    )
    p.add_argument("--endpoint", default="kernel", metavar="kernel|unix:PATH",
                   help="the real kernel (default) or a simulator endpoint")
    p.add_argument("--json", action="store_true", help="one JSON object instead of auditctl-style lines")
    p.set_defaults(func=main)
