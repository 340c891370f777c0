"""Seed inputs for the fuzz targets, built from the public captures in ../shared/corpus.

Seeds matter for a coverage-guided fuzzer: starting from real records, real rules and real
datagrams, mutations reach the deep paths (EXECVE argument joining, saddr decoding, rule
fields) in seconds instead of hours. The corpus is read in place (never copied into the
repository); without it the targets fall back to the few hand-written seeds below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

__all__ = ["CORPUS", "LOG_LINES", "RULES", "corpus_files", "events", "log_lines", "rule_texts"]

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"

# used when the corpus is absent: one connect and one execve event, as this machine's kernel writes them
LOG_LINES = (
    'type=SYSCALL msg=audit(1795601611.485:1327823): arch=c000003e syscall=42 success=no exit=-115 '
    'a0=5 a1=7ffd a2=10 a3=0 items=0 ppid=1 pid=14967 auid=4294967295 uid=0 gid=0 euid=0 suid=0 '
    'fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="curl" exe="/usr/bin/curl" key=(null)',
    "type=SOCKADDR msg=audit(1795601611.485:1327823): saddr=0200B3E37F0000010000000000000000",
    "type=PROCTITLE msg=audit(1795601611.485:1327823): proctitle=6375726C00",
    "type=EOE msg=audit(1795601611.485:1327823): ",
    'type=SYSCALL msg=audit(1795601612.001:1327824): arch=c000003e syscall=59 success=yes exit=0 '
    'a0=1 a1=2 a2=3 a3=4 items=2 ppid=1 pid=15000 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 '
    'sgid=0 fsgid=0 tty=pts0 ses=1 comm="ls" exe="/usr/bin/ls" key="kaudit"',
    'type=EXECVE msg=audit(1795601612.001:1327824): argc=2 a0="ls" a1=2D6C',
    'type=CWD msg=audit(1795601612.001:1327824): cwd="/root"',
    'type=PATH msg=audit(1795601612.001:1327824): item=0 name="/usr/bin/ls" inode=1 dev=08:01 '
    "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0",
    "type=EOE msg=audit(1795601612.001:1327824): ",
)

RULES = (
    "-a always,exit -F arch=b64 -S connect -S bind -S accept -S accept4 -k kaudit",
    "-a always,exit -F arch=b32 -S execve -F auid!=unset -F key=exec",
    "-A always,exit -S all -F exit=-EACCES -F success=0",
    "-w /etc/passwd -p wa -k identity",
    "-a never,exclude -F msgtype=CWD",
    "-a always,exit -F arch=b64 -S openat -F a2&0x40 -F dir=/tmp -F perm=w",
    "-a always,exit -F arch=b64 -S kill -C uid!=euid -F exe=/usr/bin/bash",
    "-d always,exit -F arch=b64 -S clone -F pid=1",
    "-a always,user -F uid=0 -F subj_type=unconfined_t",
)


def corpus_files(*patterns: str) -> list[Path]:
    """Corpus files matching any glob pattern (relative to the corpus), sorted; [] without it."""
    if not CORPUS.is_dir():
        return []
    found: set[Path] = set()
    for pat in patterns:
        found.update(p for p in CORPUS.glob(pat) if p.is_file())
    return sorted(found)


def log_lines(limit: int = 400) -> list[str]:
    """Distinct record lines of the corpus logs (types spread out), at most ``limit``."""
    out: list[str] = list(LOG_LINES)
    seen_types: dict[str, int] = {}
    for path in corpus_files("**/*.log", "laurel/*.txt"):
        try:
            text = path.read_text("utf-8", "surrogateescape")
        except OSError:
            continue
        for line in text.splitlines():
            if not line.startswith(("type=", "node=")):
                continue
            head = line.split(" msg=", 1)[0]
            if seen_types.get(head, 0) >= 6:
                continue
            seen_types[head] = seen_types.get(head, 0) + 1
            out.append(line)
            if len(out) >= limit:
                return out
    return out


def rule_texts(limit: int = 300) -> list[str]:
    """auditctl rule lines from the corpus rule files and a few of our own."""
    out = list(RULES)
    for path in corpus_files("go-libaudit/rules/*.rules"):
        for line in path.read_text("utf-8", "replace").splitlines():
            line = line.strip()
            if line.startswith(("-a", "-A", "-w", "-d", "-W")):
                out.append(line)
                if len(out) >= limit:
                    return out
    return out


def events(lines: list[str]) -> Iterator[list[str]]:
    """The lines grouped by audit id, in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for line in lines:
        try:
            stamp = line.split("msg=audit(", 1)[1].split(")", 1)[0]
        except IndexError:
            continue
        groups.setdefault(stamp, []).append(line)
    yield from groups.values()
