"""The replay benchmark's corpus: real connect and execve events, repeated with fresh serials.

Why real records repeated rather than synthetic ones: a parser's speed depends on what the
text looks like (quoted strings, hex-encoded ``exe``, long SELinux contexts, PATH records with
capability fields), and the public captures in ``../shared/corpus`` are what kernels really
wrote. Each event is copied as it was captured except for three things:

* its stamp ``audit(SEC.MSEC:SERIAL)``: serials are renumbered consecutively (no gap, so a
  collector must report 0 lost) and the clock advances 1 ms per event;
* ``node=`` prefixes and auditd/laurel enrichment (after 0x1D) are dropped: the corpus is what
  a kernel sends, so that the same events can also be framed as netlink datagrams;
* every event ends in an EOE record, as the kernel writes it (the older captures lack it).

Events alternate connect and execve (a connect template, then an execve template, each list
cycled in order), which gives about 5 records per event: 200,000 records are about 40,000
events, the mix issue 6 measured the peers on.

Two files are written side by side: ``corpus.log`` (audit.log text, what auparse, ausearch,
laurel and ``kaudit replay`` read) and ``corpus.nl`` (the same records as the unicast netlink
datagrams the kernel sends the registered daemon, each preceded by its length as a 4-byte
little-endian integer). Both are streamed: building the 2,000,000-record version holds one
event in memory at a time.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "CORPUS_LOG",
    "CORPUS_NETLINK",
    "CorpusInfo",
    "Template",
    "build_corpus",
    "default_corpus_dir",
    "iter_netlink_datagrams",
    "load_templates",
]

CORPUS_LOG = "corpus.log"
CORPUS_NETLINK = "corpus.nl"
CORPUS_INFO = "corpus.json"

# the captures the events come from, relative to ../shared/corpus
SOURCE_FILES = (
    "go-libaudit/reassembler/normal.log",
    "laurel/record-connect.txt",
    "laurel/record-execve.txt",
    "laurel/shell-proc-trace.txt",
)

_KINDS = {"42": "connect", "59": "execve"}  # x86_64 syscall numbers
_X86_64 = "c000003e"
_EOE = 1320
_NLHDR = struct.Struct("=IHHII")
_LEN = struct.Struct("<I")


def default_corpus_dir() -> Path:
    """``../shared/corpus`` from the repository root (the captures are never copied in)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@dataclass(slots=True, frozen=True)
class Template:
    """One captured event: its kind and its records as (type number, type name, body text)."""

    name: str  # "file:serial" it came from
    kind: str  # "connect" | "execve"
    records: tuple[tuple[int, str, str], ...]  # EOE not included


@dataclass(slots=True)
class CorpusInfo:
    """What was written; ``expected_*`` let a run check that every event came out."""

    directory: str
    log_path: str
    netlink_path: str
    records: int = 0
    events: int = 0
    events_by_kind: dict[str, int] = field(default_factory=dict)
    records_by_type: dict[str, int] = field(default_factory=dict)
    log_bytes: int = 0
    netlink_bytes: int = 0
    templates: list[str] = field(default_factory=list)
    first_serial: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> CorpusInfo:
        with open(Path(directory) / CORPUS_INFO, encoding="utf-8") as f:
            return cls(**json.load(f))


def load_templates(corpus_dir: str | os.PathLike[str] | None = None) -> list[Template]:
    """Every x86_64 connect and execve event of the source captures, in file order.

    Raises FileNotFoundError naming the capture that is missing.
    """
    from collector.parser import RecordError, iter_log_records

    root = Path(corpus_dir) if corpus_dir is not None else default_corpus_dir()
    out: list[Template] = []
    for rel in SOURCE_FILES:
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"benchmark corpus source {path} is missing (see ../shared/corpus/SOURCES.md)")
        events: dict[tuple, list] = {}
        with open(path, "rb") as f:
            for lineno, rec in iter_log_records(f):
                if isinstance(rec, RecordError):
                    raise ValueError(f"{path}:{lineno}: not a record kaudit can read: {rec}")
                if rec.type == _EOE:
                    continue
                events.setdefault((rec.serial, rec.sec, rec.msec), []).append(rec)
        for (serial, _sec, _msec), recs in events.items():
            syscall = recs[0] if recs[0].type_name == "SYSCALL" else None
            if syscall is None or syscall.get("arch") != _X86_64:
                continue
            kind = _KINDS.get(syscall.get("syscall") or "")
            if kind is None:
                continue
            body = tuple((r.type, r.type_name, r.text) for r in recs)
            out.append(Template(f"{rel}:{serial}", kind, body))
    return out


def _events(templates: Sequence[Template]) -> Iterator[Template]:
    """Connect, execve, connect, ... each kind's templates cycled in order."""
    by_kind = {k: [t for t in templates if t.kind == k] for k in ("connect", "execve")}
    kinds = [k for k, ts in by_kind.items() if ts]
    if not kinds:
        raise ValueError("no connect or execve event among the benchmark templates")
    i = 0
    while True:
        kind = kinds[i % len(kinds)]
        ts = by_kind[kind]
        yield ts[(i // len(kinds)) % len(ts)]
        i += 1


def build_corpus(
    out_dir: str | os.PathLike[str],
    records: int = 200_000,
    *,
    templates: Sequence[Template] | None = None,
    corpus_dir: str | os.PathLike[str] | None = None,
    first_serial: int = 1000,
    start_ms: int = 1_700_000_000_000,
) -> CorpusInfo:
    """Write ``corpus.log`` and ``corpus.nl`` with at least ``records`` records (whole events).

    ``out_dir`` is created if needed; it should be a temporary directory, never the repository.
    """
    if records < 1:
        raise ValueError(f"records must be >= 1, got {records}")
    tpl = list(templates) if templates is not None else load_templates(corpus_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = CorpusInfo(str(out), str(out / CORPUS_LOG), str(out / CORPUS_NETLINK), first_serial=first_serial)
    info.templates = [t.name for t in tpl]
    by_kind: dict[str, int] = {}
    by_type: dict[str, int] = {}
    serial = first_serial
    t_ms = start_ms
    pack_hdr, pack_len = _NLHDR.pack, _LEN.pack
    with open(info.log_path, "w", encoding="utf-8", newline="\n") as log, open(info.netlink_path, "wb") as nl:
        for tmpl in _events(tpl):
            if info.records >= records:
                break
            stamp = f"audit({t_ms // 1000}.{t_ms % 1000:03d}:{serial})"
            lines = []
            frames = []
            for rtype, name, text in (*tmpl.records, (_EOE, "EOE", "")):
                lines.append(f"type={name} msg={stamp}: {text}\n")
                payload = f"{stamp}: {text}".encode()
                frames.append(pack_len(16 + len(payload)))
                frames.append(pack_hdr(len(payload), rtype, 0, 0, 0))  # unicast: len = payload only
                frames.append(payload)
                by_type[name] = by_type.get(name, 0) + 1
            text_block = "".join(lines)
            bin_block = b"".join(frames)
            log.write(text_block)
            nl.write(bin_block)
            info.log_bytes += len(text_block.encode())
            info.netlink_bytes += len(bin_block)
            info.records += len(lines)
            info.events += 1
            by_kind[tmpl.kind] = by_kind.get(tmpl.kind, 0) + 1
            serial += 1
            t_ms += 1
    info.events_by_kind = by_kind
    info.records_by_type = dict(sorted(by_type.items()))
    with open(out / CORPUS_INFO, "w", encoding="utf-8") as f:
        json.dump(info.as_dict(), f, indent=1)
        f.write("\n")
    return info


def iter_netlink_datagrams(path: str | os.PathLike[str], chunk: int = 1 << 20) -> Iterator[bytes]:
    """The datagrams of a ``corpus.nl`` file, in order, read in chunks (memory stays flat).

    Raises ValueError naming the file and offset if a length runs past the end.
    """
    unpack = _LEN.unpack_from
    with open(path, "rb") as f:
        buf = b""
        base = 0
        while True:
            more = f.read(chunk)
            if more:
                buf = buf[base:] + more if base else buf + more
                base = 0
            end = len(buf)
            off = base
            while end - off >= 4:
                (n,) = unpack(buf, off)
                if end - off - 4 < n:
                    break
                yield buf[off + 4 : off + 4 + n]
                off += 4 + n
            base = off
            if not more:
                if end - base:
                    raise ValueError(f"{path}: truncated datagram at the end ({end - base} bytes left)")
                return
