"""Property tests of the parser and the value decoder: any input, a result or a counted error.

The collector's promise is that a record it cannot read is counted by reason and skipped, never
a crash: ``parse_record`` gives a Record or raises RecordError with a known reason, field
splitting raises only RecordError(field_without_equals), and every decoder raises only
DecodeError (a ValueError with a reason). Decoding round trips: hex and quoted values give back
their bytes, sockaddr hex gives back its address and port.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.decode import (
    DecodeError,
    decode_bytes,
    decode_field,
    decode_int,
    decode_keys,
    decode_proctitle,
    decode_saddr,
    decode_str,
    decode_text,
)
from collector.parser import RecordError, iter_log_records, parse_log_line, parse_record
from collector.pipeline import Pipeline
from collector.tables.options import TableOptions

SETTINGS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
REASONS = {"too_long", "bad_utf8", "no_header", "bad_header", "unknown_type", "field_without_equals"}
DECODE_REASONS = {"odd_hex", "bad_hex", "bad_quote", "saddr_too_short", "execve_incomplete"}

# bytes that look like audit text often enough to reach the deep paths
_AUDITISH = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.tuples(
        st.sampled_from([b"audit(", b"type=SYSCALL msg=audit(", b"node=a type=EXECVE msg=audit(", b""]),
        st.from_regex(rb"\A[0-9]{0,11}\.?[0-9]{0,4}:?[0-9]{0,11}\)?:? ?\Z"),
        st.lists(st.sampled_from([b"a0=", b"x", b"=", b'"', b"'", b" ", b"msg='", b"\x1d", b"\x00", b"(null)",
                                  b"saddr=0200", b"avc:", b"{", b"}", b"ff", b"\xc3", b"\n"]), max_size=20),
    ).map(lambda t: t[0] + t[1] + b"".join(t[2])),
)


@SETTINGS
@given(st.none() | st.integers(0, 0xFFFF), _AUDITISH)
def test_any_bytes_give_a_record_or_a_counted_error(rtype, data: bytes) -> None:
    try:
        rec = parse_record(rtype, data)
    except RecordError as exc:
        assert exc.reason in REASONS, exc.reason
        return
    try:
        items = rec.items()
    except RecordError as exc:
        assert exc.reason == "field_without_equals"
        return
    fields = rec.fields()
    assert set(fields) == {k for k, _ in items}
    for key, raw in items:
        assert rec.get(key) == fields[key]
        try:
            decode_field(rec.type, key, raw)
        except DecodeError as exc:
            assert exc.reason in DECODE_REASONS


@SETTINGS
@given(st.lists(_AUDITISH, max_size=8))
def test_log_iteration_never_raises_and_counts_every_line(lines: list[bytes]) -> None:
    flat = [part for line in lines for part in line.split(b"\n")]
    got = list(iter_log_records(flat))
    skipped = 0
    for line in flat:
        try:
            if parse_log_line(line) is None:
                skipped += 1
        except RecordError:
            pass
    assert len(got) + skipped == len(flat)
    pipe = Pipeline(TableOptions(allow_sockets=True, allow_unix=True), uptime=None)
    pipe.feed_lines(flat)
    st_ = pipe.finish()
    assert st_.ledger.balanced, st_.ledger.as_dict()
    assert st_.ledger.received + st_.lines_skipped == len(flat)


@SETTINGS
@given(st.text(max_size=60))
def test_decoders_raise_only_decode_error(raw: str) -> None:
    for fn in (decode_bytes, decode_str, decode_text, decode_keys, decode_proctitle, decode_saddr, decode_int):
        try:
            fn(raw)
        except DecodeError as exc:
            assert exc.reason in DECODE_REASONS


@SETTINGS
@given(st.binary(min_size=1, max_size=100))
def test_hex_values_decode_to_their_bytes(data: bytes) -> None:
    assert decode_bytes(data.hex().upper()) == data
    assert decode_bytes(data.hex()) == data


@SETTINGS
@given(st.text(st.characters(blacklist_characters='" \t\n\r', blacklist_categories=("Cs", "Cc")), max_size=40))
def test_quoted_values_decode_to_their_text(text: str) -> None:
    assert decode_str(f'"{text}"') == text
    assert decode_bytes(f'"{text}"') == text.encode()


@SETTINGS
@given(st.integers(0, 0xFFFF), st.ip_addresses(v=4))
def test_saddr_ipv4(port: int, addr: ipaddress.IPv4Address) -> None:
    raw = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + addr.packed + b"\0" * 8
    sa = decode_saddr(raw.hex().upper())
    assert (sa.family, sa.address, sa.port) == (socket.AF_INET, str(addr), port)


@SETTINGS
@given(st.integers(0, 0xFFFF), st.ip_addresses(v=6))
def test_saddr_ipv6(port: int, addr: ipaddress.IPv6Address) -> None:
    raw = struct.pack("<H", socket.AF_INET6) + struct.pack(">H", port) + b"\0" * 4 + addr.packed + b"\0" * 4
    sa = decode_saddr(raw.hex().upper())
    assert (sa.family, sa.port) == (socket.AF_INET6, port)
    assert ipaddress.ip_address(sa.address) == addr


@SETTINGS
@given(st.binary(max_size=40))
def test_saddr_any_bytes_decode_or_decode_error(data: bytes) -> None:
    try:
        sa = decode_saddr(data.hex())
    except DecodeError as exc:
        assert exc.reason in DECODE_REASONS
        return
    if data:
        assert sa is not None and sa.raw == data
