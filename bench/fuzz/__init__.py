"""Coverage-guided fuzzing of every input surface kaudit reads, with a time budget.

``python -m bench.fuzz --target NAME --seconds N [--json FILE]`` fuzzes one surface (``--target
all`` runs each in turn) and reports executions and crashes. A *crash* is any exception a
surface is not documented to raise (a collector never crashes on bad input: it counts and
skips), or a broken invariant checked by the target (a codec round trip, a balanced ledger).

Why a registry of small modules: each target is one plain function ``one_input(data: bytes)``
that returns for good and for rejected input and raises only for a bug, so the same function
serves atheris (coverage-guided, libFuzzer underneath), the hypothesis fallback where atheris
does not install, the crash minimiser, and the regression tests in
``tests/test_fuzz_regressions.py``, which replay every minimised input kept in
``tests/fuzz_corpus/<target>/``.

This module imports nothing of kaudit at import time: the atheris child must import the code
under test *inside* ``atheris.instrument_imports()`` to get coverage feedback from it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType

__all__ = ["TARGETS", "Target", "get_target", "load"]


@dataclass(frozen=True, slots=True)
class Target:
    """One input surface: where its fuzz function lives and how big an input may get."""

    name: str
    module: str  # defines one_input(data: bytes) -> None and seeds() -> Iterable[bytes]
    description: str
    max_len: int = 4096
    instrument: tuple[str, ...] = ("collector", "simulator")


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "netlink",
            "bench.fuzz.netlink_target",
            "one datagram from the kernel: netlink framing (short-length record form), NLMSG_ERROR, "
            "audit_status, rule dumps, then the reader's control handling and the record pipeline",
            max_len=9216,
        ),
        Target(
            "records",
            "bench.fuzz.records_target",
            "audit.log / netlink record text: parser, field splitting, value decoding, publisher "
            "and both tables on the events; the ledger must balance",
            max_len=12288,
        ),
        Target(
            "scenario",
            "bench.fuzz.scenario_target",
            "scenario YAML text: loader and validation, then dump and reload",
            max_len=8192,
            instrument=("collector", "simulator", "yaml", "jsonschema"),
        ),
        Target(
            "pcap",
            "bench.fuzz.pcap_target",
            "a pcap/pcapng capture (LINKTYPE_NETLINK): import, then the pipeline on its records",
            max_len=8192,
            instrument=("collector", "simulator", "scapy.utils"),
        ),
        Target(
            "auditctl",
            "bench.fuzz.auditctl_target",
            "auditctl rule text: parse, encode, `auditctl -l` formatting, and the printed text back",
            max_len=1024,
        ),
        Target(
            "rule_data",
            "bench.fuzz.rule_data_target",
            "audit_rule_data bytes: decode, encode round trip, `auditctl -l` formatting, and the "
            "simulated kernel's AUDIT_ADD_RULE of them",
            max_len=4096,
        ),
        Target(
            "kernel",
            "bench.fuzz.kernel_target",
            "any datagram a client sends the simulated kernel: the model never raises and every "
            "answer it sends decodes with the collector's codec",
            max_len=4096,
        ),
    )
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown fuzz target {name!r} (known: {', '.join(TARGETS)})") from None


def load(name: str) -> tuple[Callable[[bytes], None], Callable[[], Iterable[bytes]], ModuleType]:
    """The target's ``one_input`` and ``seeds`` functions (imports the code under test)."""
    mod = importlib.import_module(get_target(name).module)
    return mod.one_input, mod.seeds, mod
