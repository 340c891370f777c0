"""Live workloads: real programs whose audit rows are known in advance from ground truth.

``ALL`` lists every workload in the order verify runs them; ``select(names)`` picks some by
name. See ``base.py`` for the contract and docs/live.md for what each one proves.
"""

from __future__ import annotations

from simulator.workloads.base import (
    ExpectedRow,
    WireExpectation,
    Workload,
    WorkloadContext,
    WorkloadError,
    process_row,
    socket_row,
)
from simulator.workloads.network import Blackhole, CurlVeth, RefusedVeth, TcpVeth, UdpVeth
from simulator.workloads.processes import (
    ExecFailed,
    ExecLongArgs,
    ExecNonAscii,
    ExecQuotedArgs,
    Execveat,
    ForkChain,
    PosixSpawn,
)
from simulator.workloads.sockets import (
    AcceptKinds,
    BindLoopback,
    ConnectRefused,
    CurlClosedPort,
    CurlLoopback,
    Tcp6Loopback,
    UnixAbstract,
    UnixPath,
)

__all__ = [
    "ALL",
    "ExpectedRow",
    "WireExpectation",
    "Workload",
    "WorkloadContext",
    "WorkloadError",
    "names",
    "process_row",
    "select",
    "socket_row",
]


def _all() -> list[Workload]:
    return [
        CurlLoopback(),
        CurlClosedPort(),
        ConnectRefused(),
        Tcp6Loopback(),
        UnixPath(),
        UnixAbstract(),
        BindLoopback(),
        AcceptKinds(),
        TcpVeth(4),
        TcpVeth(6),
        UdpVeth(4),
        UdpVeth(6),
        Blackhole(),
        RefusedVeth(),
        CurlVeth(),
        ExecLongArgs(),
        ExecQuotedArgs(),
        ExecNonAscii(),
        Execveat(),
        ExecFailed(),
        ForkChain(),
        PosixSpawn(),
    ]


ALL: list[Workload] = _all()


def names() -> list[str]:
    return [w.name for w in ALL]


def select(wanted: list[str] | None) -> list[Workload]:
    """The workloads named in ``wanted`` (all when empty), in ``ALL``'s order.

    Raises KeyError naming every unknown name and listing the known ones.
    """
    if not wanted:
        return list(ALL)
    known = {w.name: w for w in ALL}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise KeyError(f"unknown workload(s): {', '.join(unknown)} (known: {', '.join(known)})")
    chosen = set(wanted)
    return [w for w in ALL if w.name in chosen]
