"""auditctl syntax against the real kernel and Debian's auditctl.

Each test loads rules with the real ``auditctl``, reads them back from the kernel as raw
``audit_rule_data`` (AUDIT_LIST_RULES), and checks three things against our codec:

- ``format_rules(decoded kernel rules)`` prints exactly what ``auditctl -l`` prints;
- ``parse_rule(text)`` gives exactly the bytes the kernel lists for the rule auditctl sent;
- the printed text parses back to the same bytes.

Kernel audit state is global: tests hold the flock on /tmp/kaudit-live.lock, run in one
xdist group, remember the rules they found and put them back in a ``finally``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.protocol import netlink as nl
from collector.protocol.auditctl import format_rule, format_rules, parse_rule
from collector.protocol.records import AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_GET, AUDIT_LIST_RULES
from collector.protocol.rules import AuditRuleData, RuleError
from collector.protocol.status import AuditStatus
from collector.protocol.syscalls import host_machine, machine_by_elf, resolve_arch, syscall_table

LOCK_PATH = "/tmp/kaudit-live.lock"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "go-libaudit" / "rules"

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("live")]


class KernelAuditError(OSError):
    pass


class AuditSocket:
    """The smallest audit netlink client: one request, its ACK, reply or dump.

    Deliberately independent of collector.transport so that the codec's live checks do not
    depend on the transport being finished or correct.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_AUDIT)
        self.sock.bind((0, 0))
        self.sock.settimeout(3.0)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, mtype: int, payload: bytes = b"", *, dump: bool = False) -> list[nl.NetlinkMessage]:
        self.seq += 1
        msg = nl.NetlinkMessage(mtype, nl.NLM_F_REQUEST | nl.NLM_F_ACK, self.seq, 0, payload)
        self.sock.send(nl.encode(msg))
        replies: list[nl.NetlinkMessage] = []
        acked = False
        while True:
            for m in nl.decode_datagram(self.sock.recv(1 << 16)):
                if m.seq != self.seq:
                    continue
                if m.type == nl.NLMSG_ERROR:
                    err = nl.parse_error(m.payload)
                    if err.error:
                        raise KernelAuditError(-err.error, os.strerror(-err.error))
                    acked = True
                    if not dump and mtype not in (AUDIT_GET,):
                        return replies
                    continue
                if m.type == nl.NLMSG_DONE:
                    return replies
                replies.append(m)
                if mtype == AUDIT_GET and acked:
                    return replies

    def list_rules(self) -> list[bytes]:
        return [m.payload for m in self.request(AUDIT_LIST_RULES, dump=True) if m.type == AUDIT_LIST_RULES]

    def status(self) -> AuditStatus:
        for m in self.request(AUDIT_GET):
            if m.type == AUDIT_GET:
                return AuditStatus.decode(m.payload)
        raise KernelAuditError(0, "no AUDIT_GET reply")

    def delete_all(self) -> None:
        for payload in self.list_rules():
            self.request(AUDIT_DEL_RULE, payload)


class LiveAudit:
    """A locked session on the real kernel's audit rules."""

    def __init__(self, sock: AuditSocket) -> None:
        self.sock = sock

    def auditctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["auditctl", *args], capture_output=True, text=True, timeout=30)

    def auditctl_list(self) -> list[str]:
        out = self.auditctl("-l")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        return [] if lines == ["No rules"] else lines

    def raw_rules(self) -> list[bytes]:
        return self.sock.list_rules()

    def clear(self) -> None:
        self.sock.delete_all()


@pytest.fixture
def live_audit() -> Iterator[LiveAudit]:
    if os.geteuid() != 0:
        pytest.skip("live audit tests need root (CAP_AUDIT_CONTROL)")
    if shutil.which("auditctl") is None:
        pytest.skip("auditctl is not installed (Debian package auditd)")
    with open(LOCK_PATH, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                sock = AuditSocket()
                status = sock.status()
                saved = sock.list_rules()
            except OSError as exc:
                pytest.skip(f"the kernel's audit is not reachable over NETLINK_AUDIT: {exc}")
            if status.enabled == 2:
                sock.close()
                pytest.skip("kernel audit is immutable (enabled=2): rules cannot be changed until reboot")
            try:
                yield LiveAudit(sock)
            finally:
                try:
                    sock.delete_all()
                finally:
                    for payload in saved:
                        sock.request(AUDIT_ADD_RULE, payload)
                    sock.close()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- helpers --------------------------------------------------------------------------------

_PATH_RE = re.compile(r"(-w |dir=|path=)/(\S+)")


def make_paths(root: Path, rule: str) -> str:
    """go-libaudit's makePaths: move every watched path under ``root`` and create it
    (a trailing slash makes a directory, otherwise a file), so watches can be added."""

    def repl(m: re.Match[str]) -> str:
        rel = m.group(2)
        real = root / rel
        if rel.endswith("/"):
            real.mkdir(parents=True, exist_ok=True)
        else:
            real.parent.mkdir(parents=True, exist_ok=True)
            real.touch()
        return f"{m.group(1)}{root}/{rel}"

    return _PATH_RE.sub(repl, rule)


def rule_lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def names_resolvable(rule: AuditRuleData) -> bool:
    """False when the rule's syscalls are in an ABI this build has no table for (b32)."""
    arch = rule.arch()
    if arch is None or rule.all_syscalls() or not rule.syscalls():
        return True
    return machine_by_elf(arch) is None or syscall_table(arch) is not None


def without_syscalls(line: str) -> str:
    return re.sub(r" -S \S+", " -S <syscalls>", line)


def expected_listing(rules: list[AuditRuleData]) -> list[AuditRuleData]:
    """The order the kernel lists rules in: by filter list, -A rules first within a list."""
    lists: dict[int, list[AuditRuleData]] = {}
    for r in rules:
        bucket = lists.setdefault(r.list_nr, [])
        if r.prepend:
            bucket.insert(0, r)
        else:
            bucket.append(r)
    return [r for nr in sorted(lists) for r in lists[nr]]


def check_loaded(live: LiveAudit, texts: list[str]) -> tuple[int, list[str]]:
    """Add ``texts`` with auditctl, then compare kernel bytes, our formatting and auditctl -l.

    Returns (rules compared, notes on what was skipped and why).
    """
    notes: list[str] = []
    accepted: list[str] = []
    for text in texts:
        done = live.auditctl(*shlex.split(text))
        if done.returncode != 0:
            notes.append(f"auditctl refused {text!r}: {done.stderr.strip()}")
            continue
        accepted.append(text)
    raw = live.raw_rules()
    listing = live.auditctl_list()
    assert len(raw) == len(accepted) == len(listing), (accepted, listing)
    decoded = [AuditRuleData.decode(b) for b in raw]

    # 1. our formatting of the kernel's bytes is auditctl -l, line for line
    ours = format_rules(decoded)
    for mine, theirs, rule in zip(ours, listing, decoded, strict=True):
        if names_resolvable(rule):
            assert mine == theirs
        else:
            notes.append(f"syscall names not compared (no table for arch 0x{rule.arch():x}): {theirs}")
            assert without_syscalls(mine) == without_syscalls(theirs)

    # 2. parse_rule gives the kernel's bytes for what auditctl sent
    parsed: list[AuditRuleData] = []
    for text in accepted:
        try:
            parsed.append(parse_rule(text, is_dir=os.path.isdir))
        except RuleError as exc:
            if "no i386 syscall table" in str(exc) or "no arm syscall table" in str(exc):
                parsed.append(None)  # type: ignore[arg-type]
                notes.append(f"not parsed: {exc}")
                continue
            raise
    want = expected_listing([p for p in parsed if p is not None])
    got = [AuditRuleData.decode(b) for b in raw if names_resolvable(AuditRuleData.decode(b))]
    assert [w.kernel_form().encode() for w in want] == [g.encode() for g in got]

    # 3. the printed text parses back to the kernel's bytes. Not for paths with spaces
    #    (auditctl -l does not quote them) nor for "-F dir=/x/ -F perm=.." (printed as the
    #    watch "-w /x/", which auditctl, and we, read as "/x" without the slash), nor for
    #    a foreign arch (arch=aarch64 on x86_64 prints as b64, which means x86_64).
    host = host_machine()
    own = {host.elf} | ({resolve_arch("b32", host)} if host.compat else set())
    for line, rule, payload in zip(ours, decoded, raw, strict=True):
        strings = [f.strbytes().decode() for f in rule.fields if f.strval is not None]
        if any(" " in s or s.endswith("/") for s in strings):
            continue
        if rule.arch() is not None and rule.arch() not in own:
            continue
        back = parse_rule(line, is_dir=os.path.isdir)
        assert back.kernel_form().encode() == payload, line
    return len(raw), notes


# -- tests ----------------------------------------------------------------------------------


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.rules")) if CORPUS.is_dir() else [])
def test_corpus_rules_file_matches_auditctl(live_audit: LiveAudit, tmp_path: Path, name: str) -> None:
    if host_machine().name != "x86_64":
        pytest.skip("the corpus rules name x86_64 syscalls")
    root = tmp_path / "audit-test"
    texts = [make_paths(root, line) for line in rule_lines(CORPUS / name)]
    live_audit.clear()
    count, notes = check_loaded(live_audit, texts)
    for note in notes:
        print(note)
    assert count >= 1


EXTRA_RULES = [
    "-a always,exit -F arch=b64 -S connect -k net",
    "-a always,exit -F arch=b64 -S rename -S renameat,truncate -F auid>=1000 -F auid!=4294967295 -k mods",
    "-a always,exit -F arch=b64 -S open -F auid!=unset -F exit=-EACCES",
    "-a always,exit -F arch=b64 -S open -F auid=-1 -F exit=-13",
    "-a always,exit -F arch=b64 -S clone -F a0&0x7C020000 -F a1=0 -F a2&=16",
    "-a always,exit -F arch=x86_64 -S all -F success=0 -k a -k b",
    "-a always,exit -S openat -F exit=5",
    "-w {root}/file -p rwxa -k wk",
    "-w {root}/dir -p wa",
    "-w {root}/dir2/ -p r",
    "-a always,exit -F dir={root}/dir -F perm=wa -F key=k2",
    "-a always,exit -F path={root}/file -F perm=x",
    "-a always,exit -F arch=b64 -S execve -C uid!=euid -F euid=0",
    "-a always,exit -F arch=b64 -S execve -C auid=obj_uid",
    "-a always,exclude -F msgtype=CRYPTO_KEY_USER",
    "-a always,exclude -F msgtype>=1300",
    "-a exclude,never -F exe=/bin/ls",
    "-a always,user -F uid=0",
    "-a never,task -F uid=5",
    "-a always,exit -F arch=b64 -S 1000 -F pid=5 -F ppid<3 -F inode=4294967295 -F devmajor>2 -F filetype=file"
    " -F saddr_fam=10 -F sessionid=7 -F pers=3",
    "-a always,exit -F arch=b64 -S write -F subj_type=foo_t -F obj_user=root",
    "-a always,exit -F arch=b64 -S read -F key=a,b",
    "-A always,exit -F arch=b64 -S write -F uid=2",
    "-a always,exit -F arch=b64 -S open -F exit!=0 -F success!=1 -F uid<=3 -F gid>4 -F egid<5",
    "-a always,exit -F arch=b64 -S open -F exe=/usr/bin/foo -F key=e",
    "-a always,exit -F arch=aarch64 -S openat",
    "-a always,filesystem -F fstype=debugfs",
    "-a always,exit -F arch=b64 -S pread,pwrite",
    "-a always,exit -F arch=b64 -S getdents -F a3!=0x10",
    "-a always,exit -F arch=b64 -S all -F sessionid=unset",
    "-a never,exit -F arch=b64 -S kill -F a1=9 -F auid>=1000",
    "-a always,exit -F arch=b64 -S openat -F filetype!=dir",
    "-a always,exit -F arch=b64 -S connect -F saddr_fam=2 -F exit=-EINPROGRESS -k sock",
    "-a always,exit -F arch=b64 -S 2000 -F a0<=0x10 -F a1>=0xFFFFFFFF",
]


def test_extra_rules_match_auditctl(live_audit: LiveAudit, tmp_path: Path) -> None:
    if host_machine().name != "x86_64":
        pytest.skip("these rules name x86_64 syscalls")
    root = tmp_path / "w"
    (root / "dir").mkdir(parents=True)
    (root / "dir2").mkdir()
    (root / "file").touch()
    texts = [t.format(root=root) for t in EXTRA_RULES]
    live_audit.clear()
    count, notes = check_loaded(live_audit, texts)
    for note in notes:
        print(note)
    assert count >= len(EXTRA_RULES) - 3, notes  # a kernel may lack a filter (fs) or feature


def test_rules_added_by_us_list_as_auditctl_prints_them(live_audit: LiveAudit) -> None:
    """Our bytes, sent by us, are listed by auditctl exactly as format_rule prints them."""
    if host_machine().name != "x86_64":
        pytest.skip("the rule names an x86_64 syscall")
    live_audit.clear()
    text = "-a always,exit -F arch=b64 -S connect -F a2=16 -F success=1 -k kaudit-test"
    rule = parse_rule(text, "x86_64")
    live_audit.sock.request(AUDIT_ADD_RULE, rule.encode())
    assert live_audit.auditctl_list() == [format_rule(rule, "x86_64")]
    assert live_audit.raw_rules() == [rule.encode()]
    with pytest.raises(KernelAuditError) as exc:
        live_audit.sock.request(AUDIT_ADD_RULE, rule.encode())
    assert exc.value.errno == 17  # EEXIST: the kernel refuses a duplicate
    live_audit.sock.request(AUDIT_DEL_RULE, rule.encode())
    assert live_audit.raw_rules() == []
