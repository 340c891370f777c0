"""Fuzz target ``records``: audit record text, from an audit.log file and from netlink.

The input is read as lines. Every line goes through two pipelines, as ``kaudit replay``
reads a log (``feed_line``: ``type=NAME msg=audit(...)``) and as ``kaudit collect`` reads the
kernel (``feed_netlink``: the type from the header, the text after ``msg=``); the publisher
assembles events and both tables make rows from them with every optional row kind on. Each
parsed record's fields are split and decoded as auparse would show them. Invariants:

- nothing raises but the documented ``RecordError``/``DecodeError`` (counted and skipped);
- both ledgers balance: every line that was a record is dispatched, dropped by reason, or in
  flight at the end;
- text -> Record -> text: a record's ``log_line()`` parses back to the same record.
"""

from __future__ import annotations

from collections.abc import Iterator

from collector.decode import DecodeError, decode_field
from collector.parser import MAX_AUDIT_MESSAGE_LENGTH, Record, RecordError, parse_log_line, parse_record
from collector.pipeline import Pipeline
from collector.protocol.records import AUDIT_SYSCALL

from . import seeds as _seeds
from .netlink_target import OPTS


def check_round_trip(rec: Record) -> None:
    """``parse_log_line(rec.log_line())`` is ``rec`` (enrichment aside)."""
    line = rec.log_line()
    if len(line) > MAX_AUDIT_MESSAGE_LENGTH - 64:
        return  # msec is re-padded to 3 digits: a record at the limit may grow past it
    back = parse_log_line(line)
    assert back is not None, f"log_line() of a record is not a record line: {line!r}"
    got = (back.type, back.sec, back.msec, back.serial, back.node, back.text.rstrip("\n\r\x00"))
    # a text ending in NUL/CR/LF (possible only before an enrichment 0x1D) loses that end in
    # log_line form, where the parser strips trailing NULs and newlines: not compared
    want = (rec.type, rec.sec, rec.msec, rec.serial, rec.node, rec.text.rstrip("\n\r\x00"))
    assert got == want, f"text -> Record -> text changed the record: {want!r} -> {got!r}"


def check_fields(rec: Record) -> None:
    try:
        items = rec.items()
    except RecordError:
        return
    fields = rec.fields()
    for key, raw in items:
        assert key in fields
        try:
            decode_field(rec.type, key, raw)
        except DecodeError:
            pass


def one_input(data: bytes) -> None:
    log = Pipeline(OPTS, lambda rows: None, uptime=None, exclude_pids=(1,))
    net = Pipeline(OPTS, lambda rows: None, uptime=None)
    lines = data.split(b"\n")
    netlink_fed = 0
    for raw_line in lines:
        log.feed_line(raw_line)
        try:
            rec = parse_log_line(raw_line)
        except RecordError:
            rec = None
        if rec is not None:
            check_round_trip(rec)
            check_fields(rec)
        head, sep, payload = raw_line.partition(b" msg=")
        rtype = rec.type if rec is not None else AUDIT_SYSCALL
        if not sep:
            payload = raw_line
        if 0 <= rtype <= 0xFFFF:  # the netlink header holds a u16
            net.feed_netlink(rtype, payload)
            netlink_fed += 1
            try:
                nrec = parse_record(rtype, payload)
            except RecordError:
                pass
            else:
                check_fields(nrec)
    for pipe, fed in ((log, None), (net, netlink_fed)):
        st = pipe.finish()
        assert st.ledger.balanced, f"ledger unbalanced: {st.ledger.as_dict()}"
        if fed is not None:
            assert st.ledger.received == fed, f"received {st.ledger.received}, fed {fed}"
    st = log.stats
    assert st.ledger.received + st.lines_skipped == len(lines), "a line was neither a record nor skipped"


def seeds() -> Iterator[bytes]:
    lines = _seeds.log_lines(400)
    for group in _seeds.events(lines):
        yield "\n".join(group).encode("utf-8", "surrogateescape")
    yield "\n".join(_seeds.LOG_LINES).encode()
