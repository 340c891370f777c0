"""Dump every record of audit log files as auparse (audit-userspace) sees them, as JSON.

Run under the *system* interpreter, which has Debian's python3-audit bindings::

    /usr/bin/python3 tests/auparse_dump.py FILE [FILE ...] > dump.json

This script is the reference side of tests/test_auparse_differential.py: it must not import
kaudit (the system interpreter may be a different Python than the project's), and it keeps
auparse's answers raw so that the comparison, with its documented exceptions, lives in one
place (the test), not here.

Output: ``{"files": {path: [record, ...]}}`` where each record is::

    {"line": 3, "type": 1300, "type_name": "SYSCALL", "sec": 1, "milli": 2, "serial": 3,
     "text": "<auparse's record text>",
     "fields": [[name, raw, interpretation, auparse_field_type], ...],
     "sock": {"family": ..., "address": ..., "port": ...} or absent}

Interpretations are taken with AUPARSE_ESC_RAW so that decoded strings are compared
byte-for-byte rather than through auparse's terminal escaping. ``interpret_field`` raising is
recorded as ``null``. The script exits 3 when ``import auparse`` fails so that the caller can
skip with that reason.
"""

from __future__ import annotations

import json
import sys

try:
    import auparse
except ImportError as exc:  # pragma: no cover - depends on the system interpreter
    sys.stderr.write(f"cannot import auparse: {exc}\n")
    sys.exit(3)


def _call(fn):
    """auparse's bindings raise on 'no value'; a dump records that as null."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - any binding error means "no answer"
        return None


def dump_file(path: str) -> list[dict]:
    au = auparse.AuParser(auparse.AUSOURCE_FILE, path)
    au.set_escape_mode(auparse.AUPARSE_ESC_RAW)
    out: list[dict] = []
    while au.parse_next_event():
        while True:
            ts = au.get_timestamp()
            rec: dict = {
                "line": _call(au.get_line_number),
                "type": _call(au.get_type),
                "type_name": _call(au.get_type_name),
                # auparse reports no timestamp (None) for lines it took as a record
                # without a parsable audit(...) stamp.
                "sec": ts.sec if ts is not None else None,
                "milli": ts.milli if ts is not None else None,
                "serial": ts.serial if ts is not None else None,
                "text": _call(au.get_record_text),
                "fields": [],
            }
            if au.first_field():
                while True:
                    name = _call(au.get_field_name)
                    raw = _call(au.get_field_str)
                    interp = _call(au.interpret_field)
                    ftype = _call(au.get_field_type)
                    rec["fields"].append([name, raw, interp, ftype])
                    if name == "saddr":
                        rec["sock"] = {
                            "family": _call(au.interpret_sock_family),
                            "address": _call(au.interpret_sock_address),
                            "port": _call(au.interpret_sock_port),
                        }
                    if not au.next_field():
                        break
            out.append(rec)
            if not au.next_record():
                break
    return out


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: auparse_dump.py FILE [FILE ...]\n")
        return 2
    result = {"files": {path: dump_file(path) for path in argv}}
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
