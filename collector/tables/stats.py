"""Counters the table subscribers keep: rows emitted, events dropped, events skipped.

A collector never crashes on bad input and never invents a row, so every event that yields
no row is counted under a short, stable reason slug, in one of two counters:

- ``drops``: the input was bad (a SYSCALL without ``pid``, a SOCKADDR too short, an
  EXECVE argument that is neither quoted nor valid hex ...). These point at a broken record,
  a lost record or a parser problem, and ``kaudit collect --stats`` prints them.
- ``skipped``: the input was fine but the flags or osquery's rules leave it out (a failed
  connect without ``--audit_allow_failed_socket_events``, a thread-creating clone, a
  netlink socket ...). Counted so that "why is my row missing" has an answer.

There is no third outcome: a row is never emitted with a column half-filled from a broken
record (an EXECVE argument announced by ``argc`` that no record carried drops the row).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["TableStats"]


@dataclass(slots=True)
class TableStats:
    """Per-run counters of the table layer, keyed by table name or by reason slug."""

    rows: Counter[str] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        """Count an event dropped for bad input under ``reason``."""
        self.drops[reason] += 1

    def skip(self, reason: str) -> None:
        """Count an event left out on purpose under ``reason``."""
        self.skipped[reason] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Plain dicts (sorted by key) for ``--stats`` output and JSON."""
        return {
            "rows": dict(sorted(self.rows.items())),
            "drops": dict(sorted(self.drops.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }

    def merge(self, other: TableStats) -> None:
        """Add another set of counters into this one (e.g. per-source replays)."""
        self.rows.update(other.rows)
        self.drops.update(other.drops)
        self.skipped.update(other.skipped)
