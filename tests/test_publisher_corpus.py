"""The publisher on laurel's captured events: whole kernel events, each ending in EOE.

laurel's ``record-*.txt`` and ``shell-proc-trace*.txt`` files are real event streams from
kernels with syscall rules loaded; each event ends with EOE. Assembled by kaudit every one
must complete on its EOE with nothing late, duplicated or lost. record-service-start.txt is
the user-message case: systemd's SERVICE_START is a whole event, and the kernel's SYSCALL
(the sendto that carried it), SOCKADDR, PROCTITLE and EOE that follow with the same id are
the ``single_tail``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.parser import Record, iter_log_records
from collector.publisher import Event, Publisher

LAUREL = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "laurel"

pytestmark = pytest.mark.skipif(not LAUREL.is_dir(), reason=f"public corpus not found at {LAUREL}")


def streams() -> list[Path]:
    if not LAUREL.is_dir():
        return []
    names = set(LAUREL.glob("record-*.txt")) | set(LAUREL.glob("shell-proc-trace*.txt"))
    return sorted(names - {LAUREL / "record-service-start.txt"})


def assemble(path: Path) -> tuple[list[Event], Publisher, list[Record]]:
    events: list[Event] = []
    pub = Publisher(on_event=events.append)
    records = []
    with open(path, "rb") as fh:
        for lineno, rec in iter_log_records(fh):
            assert isinstance(rec, Record), f"{path.name}:{lineno}: {rec}"
            records.append(rec)
            pub.feed(rec)
    pub.flush()
    return events, pub, records


@pytest.mark.parametrize("path", streams(), ids=lambda p: p.name)
def test_every_event_completes_on_its_eoe(path):
    events, pub, records = assemble(path)
    eoes = [r for r in records if r.type_name == "EOE"]
    assert eoes, path.name
    assert len(events) == len(eoes)
    assert all(e.reason == "eoe" for e in events)
    assert sum(len(e.records) for e in events) == len(records) - len(eoes)
    for name in ("late", "duplicates", "single_tail", "orphan_eoe", "in_flight"):
        assert pub.counters[name] == 0, name
    for e in events:
        assert {(r.serial, r.sec, r.msec, r.node) for r in e.records} == {(e.serial, e.sec, e.msec, e.node)}


def test_user_message_then_the_kernels_sendto_tail():
    events, pub, _ = assemble(LAUREL / "record-service-start.txt")
    assert [(e.records[0].type_name, e.reason, len(e.records)) for e in events] == [
        ("SERVICE_START", "single", 1)
    ]
    assert pub.counters["single_tail"] == 4
    assert pub.counters["late"] == 0
