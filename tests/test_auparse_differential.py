"""kaudit's parser and decoders against Debian's auparse (audit-userspace), record by record.

``tests/auparse_dump.py`` runs under ``/usr/bin/python3`` (which has python3-audit's
``import auparse``) and dumps every record auparse reads from each corpus log; this test
parses the same files with kaudit and compares, for every record: type, serial, timestamp,
node, the raw value of every field, and the interpretation of ``saddr``, ``syscall``, ``exit``
and the hex-encoded strings (EXECVE arguments, ``proctitle``, ``comm``, ``exe``, ``cwd``,
``name``, ``key``...).

Where auparse and kaudit legitimately differ, the difference is pinned below, each narrowly
(by record type, field, or the exact file and line) and with its reason; anything else fails:

``COMMENT_LINES``
    auparse takes a ``#`` comment line of laurel's fork-sleep-exec.txt as a record (with no
    timestamp); kaudit's log reader skips comments.
``EOE after PROCTITLE``
    auparse ends an event at PROCTITLE and does not report the EOE that follows it; kaudit
    keeps every record (the publisher, not the parser, consumes EOE).
``HEADERLESS``
    ``type=UNKNOWN[1329] msg=?`` has no stamp: auparse skips it silently, kaudit counts it
    (``no_header``); go-libaudit rejects it too.
``split keys``
    auparse turns a ``key=`` holding several 0x01-separated keys into several ``key`` fields
    at parse time; kaudit keeps the one raw token and ``decode_keys`` splits it. They are
    compared after that split. audit-ubuntu17.log's ``key=65786563013634626974"`` carries a
    stray quote: auparse decodes it anyway, kaudit rejects it as not hex (``BAD_KEY_TOKENS``).
``quoted value with spaces``
    AppArmor's kernel code writes ``info="same as current profile, skipping"``; auparse cuts
    the value at the first space, kaudit keeps the quoted string whole (AVC records only).
``big-endian saddr``
    laurel's record-bind-ipv4-bigendian.txt comes from a ppc64 host: ``sa_family`` is in that
    host's byte order. kaudit decodes it with the event's arch (``arch_byteorder``) and finds
    AF_INET; auparse on x86 reads it little-endian (``unknown-family(512)``).
``syscall tables``
    an arch for which the build has no generated syscall table gets no kaudit syscall name.
``syscall outside SYSCALL``
    auparse takes ``syscall=`` as a syscall number only at SYSCALL's field position (after
    ``arch=``); in the SECCOMP record of go-libaudit's test3.log it prints
    ``unknown-syscall(-1)``, kaudit names it (``getpgid`` on i386).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from collector.decode import (
    DecodeError,
    arch_byteorder,
    decode_errno,
    decode_field,
    decode_keys,
    decode_proctitle,
    decode_saddr,
    decode_syscall,
)
from collector.parser import Record, RecordError, iter_log_records
from collector.protocol.records import record_type_number
from collector.protocol.syscalls import syscall_table

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[0].parent / "shared" / "corpus"
SYSTEM_PYTHON = Path("/usr/bin/python3")

EOE = record_type_number("EOE")
PROCTITLE = record_type_number("PROCTITLE")
AVC = record_type_number("AVC")
SYSCALL = record_type_number("SYSCALL")

# auparse field types (auparse.h AUPARSE_TYPE_*)
T_SYSCALL, T_EXIT, T_ESCAPED, T_SOCKADDR, T_PROCTITLE, T_ESCAPED_KEY, T_ESCAPED_FILE = 3, 5, 6, 9, 33, 38, 39

COMMENT_LINES = {("laurel/fork-sleep-exec.txt", 10)}
HEADERLESS = {("go-libaudit/auparse/audit-rhel7.log", 31)}
BAD_KEY_TOKENS = {("go-libaudit/auparse/audit-ubuntu17.log", 1)}
BIG_ENDIAN_SADDR = {("laurel/record-bind-ipv4-bigendian.txt", 2)}
SYSCALL_OUTSIDE_SYSCALL = {("go-libaudit/auparse/test3.log", 17)}  # a SECCOMP record

FAMILY_NAMES = {"inet": 2, "inet6": 10, "local": 1, "netlink": 16}


def corpus_logs() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(set(CORPUS.rglob("*.log")) | set((CORPUS / "laurel").glob("*.txt")))


def rel(path: Path) -> str:
    return str(path.relative_to(CORPUS))


@pytest.fixture(scope="module")
def auparse_dump() -> dict[str, list[dict]]:
    if not CORPUS.is_dir():
        pytest.skip(f"public corpus not found at {CORPUS}")
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"{SYSTEM_PYTHON} not found: no system interpreter with python3-audit")
    paths = corpus_logs()
    proc = subprocess.run(
        [str(SYSTEM_PYTHON), str(HERE / "auparse_dump.py"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode == 3:
        pytest.skip(f"{SYSTEM_PYTHON} cannot import auparse (install python3-audit): {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)["files"]
    return {rel(Path(p)): recs for p, recs in files.items()}


def kaudit_records(path: Path) -> dict[int, Record | RecordError]:
    with open(path, "rb") as fh:
        return dict(iter_log_records(fh))


def parse_interp(text: str) -> dict[str, str]:
    """auparse's ``{ saddr_fam=inet laddr=1.2.3.4 lport=80 }`` (or laurel's ``fam=``) as a dict."""
    return dict(re.findall(r"([\w-]+)=(\S+)", text or ""))


def check_saddr(where, raw, interp, sock, byteorder, big_endian_pinned):
    sa = decode_saddr(raw, byteorder)
    parts = parse_interp(interp)
    fam = parts.get("saddr_fam") or parts.get("fam")
    if big_endian_pinned:
        assert byteorder == "big" and interp.startswith("unknown-family("), where
        assert sa.family == 2, where
        return
    if fam is None:
        m = re.fullmatch(r"unknown-family\((\d+)\)", interp)
        assert m and sa.family == int(m.group(1)), f"{where}: {interp} vs {sa}"
        return
    assert sa.family == FAMILY_NAMES[fam], f"{where}: {interp} vs {sa}"
    if fam in ("inet", "inet6"):
        assert (sa.address, str(sa.port)) == (parts["laddr"], parts["lport"]), where
        assert (sock["address"], sock["port"]) == (sa.address, str(sa.port)), where
    elif fam == "local":
        assert sa.path == parts["path"], where
    elif fam == "netlink":
        assert str(sa.netlink_pid) == parts["nlnk-pid"], where


def test_the_differential_covers_the_whole_corpus(auparse_dump):
    assert set(auparse_dump) == {rel(p) for p in corpus_logs()}
    assert sum(len(v) for v in auparse_dump.values()) > 500


@pytest.mark.parametrize("path", corpus_logs(), ids=rel)
def test_kaudit_agrees_with_auparse(path, auparse_dump):
    name = rel(path)
    theirs = {r["line"]: r for r in auparse_dump[name]}
    ours = kaudit_records(path)
    arch_of = {}
    for r in ours.values():
        if isinstance(r, Record) and r.get("arch") is not None:
            arch_of.setdefault((r.node, r.serial), r.get("arch"))
    previous_type: dict[tuple, int] = {}
    counts = {"fields": 0, "escaped": 0, "saddr": 0, "syscall": 0, "exit": 0}

    for line in sorted(set(ours) | set(theirs)):
        where = f"{name}:{line}"
        mine, ref = ours.get(line), theirs.get(line)
        if mine is None:
            assert (name, line) in COMMENT_LINES and ref["sec"] is None and ref["text"].startswith("#"), where
            continue
        if isinstance(mine, RecordError):
            assert (name, line) in HEADERLESS and ref is None, f"{where}: {mine}"
            continue
        event_id = (mine.node, mine.serial, mine.sec, mine.msec)
        if ref is None:
            assert mine.type == EOE and previous_type.get(event_id) == PROCTITLE, f"{where}: auparse lacks it"
            continue
        previous_type[event_id] = mine.type

        assert (mine.type, mine.serial, mine.sec, mine.msec) == (
            ref["type"],
            ref["serial"],
            ref["sec"],
            ref["milli"],
        ), where
        ref_fields = ref["fields"]
        if ref_fields and ref_fields[0][0] == "node":
            assert mine.node == ref_fields[0][1], where
            ref_fields = ref_fields[1:]
        else:
            assert mine.node is None, where
        if ref_fields and ref_fields[0][0] == "type":
            ref_fields = ref_fields[1:]

        # raw values, keys compared after kaudit's split
        ref_plain = [(n, raw) for n, raw, _, _ in ref_fields if n != "key"]
        mine_plain = [(k, v) for k, v in mine.items() if k != "key"]
        if mine.type == AVC and ref_plain != mine_plain:
            # quoted value with spaces, cut by auparse at the first space
            assert len(ref_plain) == len(mine_plain), where
            for (rn, rv), (mn, mv) in zip(ref_plain, mine_plain, strict=True):
                assert rn == mn, where
                assert rv == mv or (mv[:1] == '"' and mv.startswith(rv + " ")), f"{where} {mn}"
        else:
            assert mine_plain == ref_plain, where
        counts["fields"] += len(mine_plain)
        ref_keys = [interp for n, _, interp, _ in ref_fields if n == "key"]
        if "key" in mine.fields():
            if (name, line) in BAD_KEY_TOKENS:
                with pytest.raises(DecodeError):
                    decode_keys(mine.get("key"))
            else:
                want = [] if ref_keys == ["(null)"] else ref_keys
                assert decode_keys(mine.get("key")) == want, where
        else:
            assert ref_keys == [], where

        # interpretations
        arch = arch_of.get((mine.node, mine.serial))
        for fname, raw, interp, ftype in ref_fields:
            if fname == "key":
                continue
            if fname == "saddr" and ftype == T_SOCKADDR:
                check_saddr(
                    f"{where} saddr",
                    raw,
                    interp,
                    ref.get("sock") or {},
                    arch_byteorder(arch),
                    (name, line) in BIG_ENDIAN_SADDR,
                )
                counts["saddr"] += 1
            elif ftype == T_SYSCALL:
                ours_name = decode_syscall(mine.get("arch"), raw)
                if ours_name is None:
                    assert syscall_table(int(mine.get("arch"), 16)) is None, where
                elif (name, line) in SYSCALL_OUTSIDE_SYSCALL:
                    assert mine.type != SYSCALL and interp == "unknown-syscall(-1)", where
                else:
                    assert ours_name == interp, where
                    counts["syscall"] += 1
            elif ftype == T_EXIT:
                if raw.startswith("-"):
                    assert decode_errno(raw) == interp.split("(")[0], f"{where} exit={raw}"
                else:
                    assert interp == raw, where
                counts["exit"] += 1
            elif ftype in (T_ESCAPED, T_ESCAPED_FILE):
                if mine.type == AVC and raw != mine.get(fname):
                    continue  # the quoted value auparse cut, pinned above
                assert decode_field(mine.type, fname, raw) == interp, f"{where} {fname}={raw[:40]}"
                counts["escaped"] += 1
            elif ftype == T_PROCTITLE:
                assert decode_proctitle(raw) == interp, where
                counts["escaped"] += 1

    if any(isinstance(r, Record) for r in ours.values()):
        assert counts["fields"] > 0, name


def test_the_comparison_is_not_vacuous(auparse_dump):
    escaped = saddr = syscall = 0
    for recs in auparse_dump.values():
        for r in recs:
            for _, _, _, ftype in r["fields"]:
                escaped += ftype in (T_ESCAPED, T_ESCAPED_FILE, T_PROCTITLE)
                saddr += ftype == T_SOCKADDR
                syscall += ftype == T_SYSCALL
    assert escaped > 500 and saddr >= 15 and syscall >= 150
