"""go-libaudit's rule corpus: text -> exactly the recorded bytes, bytes -> auditctl -l text.

Each ``.golden.yml`` holds, per rule, the rule text go-libaudit gave auditctl and the
``audit_rule_data`` the kernel then listed (base64, with its netlink alignment padding),
recorded on x86_64. Paths were moved under /tmp/audit-test and created first, a trailing slash
making a directory (go-libaudit's makePaths), so that is what ``is_dir`` answers here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collector.protocol._tables import ARCHES
from collector.protocol.auditctl import format_rule, parse_rule
from collector.protocol.rules import AuditRuleData
from collector.protocol.syscalls import syscall_table

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "go-libaudit" / "rules"
HAVE_I386 = syscall_table(ARCHES["I386"]) is not None
NO_I386 = (
    "no i386 syscall table is generated yet (tools/gen_tables.py), so b32 syscall names cannot be resolved"
)


def load_cases() -> list[tuple[str, str, bytes]]:
    cases = []
    for path in sorted(CORPUS.glob("*.golden.yml")):
        doc = yaml.safe_load(path.read_text())
        for i, rule in enumerate(doc["rules"]):
            cases.append((f"{path.name.removesuffix('.rules.golden.yml')}:{i}", rule["flags"], rule["bytes"]))
    return cases


CASES = load_cases() if CORPUS.is_dir() else []
pytestmark = pytest.mark.skipif(not CASES, reason=f"go-libaudit rule corpus not found at {CORPUS}")


def made_as_dir(text: str):
    """makePaths created a directory exactly where the rule text had a trailing slash."""
    return lambda path: f"{path}/" in text


def padded(raw: bytes) -> bytes:
    return raw + b"\0" * (-len(raw) % 4)


def needs_i386(text: str) -> bool:
    return "arch=b32" in text and " -S " in text


def test_corpus_is_all_there():
    assert len(CASES) == 123
    assert len({c[0].split(":")[0] for c in CASES}) == 12


@pytest.mark.parametrize(("case", "text", "golden"), CASES, ids=[c[0] for c in CASES])
def test_text_encodes_to_recorded_bytes(case, text, golden):
    if needs_i386(text) and not HAVE_I386:
        pytest.skip(NO_I386)
    rule = parse_rule(text, "x86_64", is_dir=made_as_dir(text))
    raw = rule.encode()
    assert golden[len(raw) :] == b"\0" * (len(golden) - len(raw))  # only alignment padding follows
    assert padded(raw) == golden


@pytest.mark.parametrize(("case", "text", "golden"), CASES, ids=[c[0] for c in CASES])
def test_recorded_bytes_decode_and_reencode(case, text, golden):
    rule = AuditRuleData.decode(golden)
    assert padded(rule.encode()) == golden
    assert rule.kernel_form() == rule  # the kernel's listing is already in kernel form


@pytest.mark.parametrize(("case", "text", "golden"), CASES, ids=[c[0] for c in CASES])
def test_printed_text_parses_back_to_the_bytes(case, text, golden):
    """bytes -> auditctl -l text -> bytes. b32 syscalls print as numbers without an i386
    table, and numbers parse back, so this runs for every rule."""
    rule = AuditRuleData.decode(golden)
    line = format_rule(rule, "x86_64")
    strings = [f.strbytes().decode() for f in rule.fields if f.strval is not None]
    if any(" " in s for s in strings):
        pytest.skip("auditctl -l prints paths with spaces unquoted; such a line cannot be read back")
    if any(s.endswith("/") for s in strings) and line.startswith("-w "):
        pytest.skip('"-F dir=/x/ -F perm=" prints as the watch "-w /x/", which reads back without the slash')
    again = parse_rule(line, "x86_64", is_dir=lambda p: f"{p}/" in text)
    assert padded(again.encode()) == golden
    assert format_rule(again, "x86_64") == line  # the printed form is a fixed point


# What Debian's auditctl 3.0.9 -l printed on this machine after loading each rule text (the
# live test checks the rest against the real auditctl). Keys are the corpus rule texts.
AUDITCTL_L = {
    "-w '/tmp/audit-test/folder with space' -p wa -k path-double-quoted": (
        "-w /tmp/audit-test/folder with space -p wa -k path-double-quoted"
    ),
    "-a never,user -F subj_type=crond_t": "-a never,user -F subj_type=crond_t",
    "-a never,exit -F arch=x86_64 -S adjtimex -F auid=unset -F uid=20 -F subj_type=chronyd_t": (
        "-a never,exit -F arch=b64 -S adjtimex -F auid=-1 -F uid=20 -F subj_type=chronyd_t"
    ),
    "-a always,exclude -F msgtype=CRYPTO_KEY_USER": "-a always,exclude -F msgtype=CRYPTO_KEY_USER",
    "-a exclude,always -F exe=/bin/ls": "-a always,exclude -F exe=/bin/ls",
    "-a never,exit -F arch=b32 -S adjtimex -F auid=unset -F uid=20 -F subj_type=chronyd_t": (
        "-a never,exit -F arch=b32 -S adjtimex -F auid=-1 -F uid=20 -F subj_type=chronyd_t"
    ),
    "-a always,exit -F arch=b32 -S adjtimex,settimeofday,stime -F key=time-change": (
        "-a always,exit -F arch=b32 -S stime,settimeofday,adjtimex -F key=time-change"
    ),
    "-a always,exit -F arch=b64 -S clock_settime -F a0=0x0 -F key=time-change": (
        "-a always,exit -F arch=b64 -S clock_settime -F a0=0x0 -F key=time-change"
    ),
    "-w /tmp/audit-test/etc/localtime -p wa -k time-change": "-w /tmp/audit-test/etc/localtime -p wa -k time-change",
    "-a always,exit -F arch=b64 -S mkdir,creat,link,symlink,mknod,mknodat,linkat,symlinkat -F exit=-EACCES -F key=creation": (
        "-a always,exit -F arch=b64 -S mkdir,creat,link,symlink,mknod,mknodat,linkat,symlinkat -F exit=-EACCES -F key=creation"
    ),
    "-a always,exit -F arch=b64 -S rename -S renameat -S truncate -S chmod -S setxattr -S lsetxattr -S removexattr "
    "-S lremovexattr -F exit=-EPERM -F key=mods": (
        "-a always,exit -F arch=b64 -S truncate,rename,chmod,setxattr,lsetxattr,removexattr,lremovexattr,renameat "
        "-F exit=-EPERM -F key=mods"
    ),
    "-a always,exit -F arch=b32 -S rename -S renameat -S truncate -S chmod -S setxattr -S lsetxattr -S removexattr "
    "-S lremovexattr -F exit=-EACCES -F key=mods": (
        "-a always,exit -F arch=b32 -S chmod,rename,truncate,setxattr,lsetxattr,removexattr,lremovexattr,renameat "
        "-F exit=-EACCES -F key=mods"
    ),
    "-a always,exit -F arch=b64 -S close -F exit=-EIO -F key=close": (
        "-a always,exit -F arch=b64 -S close -F exit=-EIO -F key=close"
    ),
    "-w /tmp/audit-test/var/log/audit/ -k audit-logs": "-w /tmp/audit-test/var/log/audit -p rwxa -k audit-logs",
    "-a always,exit -F dir=/tmp/audit-test/var/log/audit/ -F perm=r -F auid>=1000 -F auid!=unset "
    "-F key=10.2.3-access-audit-trail": (
        "-a always,exit -S all -F dir=/tmp/audit-test/var/log/audit/ -F perm=r -F auid>=1000 -F auid!=-1 "
        "-F key=10.2.3-access-audit-trail"
    ),
    "-a always,exit -F path=/tmp/audit-test/usr/sbin/ausearch -F perm=x -F key=10.2.3-access-audit-trail": (
        "-w /tmp/audit-test/usr/sbin/ausearch -p x -k 10.2.3-access-audit-trail"
    ),
    "-a always,exit -F arch=b64 -S setuid -F a0=0 -F exe=/usr/bin/su -F key=10.2.5.b-elevated-privs-session": (
        "-a always,exit -F arch=b64 -S setuid -F a0=0x0 -F exe=/usr/bin/su -F key=10.2.5.b-elevated-privs-session"
    ),
    "-a always,exit -F arch=b64 -S execve -C uid!=euid -F euid=0 -F key=10.2.5.b-elevated-privs-setuid": (
        "-a always,exit -F arch=b64 -S execve -C uid!=euid -F euid=0 -F key=10.2.5.b-elevated-privs-setuid"
    ),
    "-a always,exit -F dir=/tmp/audit-test/var/log/audit/ -F perm=wa -F key=10.5.5-modification-audit": (
        "-w /tmp/audit-test/var/log/audit/ -p wa -k 10.5.5-modification-audit"
    ),
    "-a always,exit -F arch=b64 -S chown,fchown,lchown,fchownat -F auid>=1000 -F auid!=4294967295 -F key=perm_mod": (
        "-a always,exit -F arch=b64 -S chown,fchown,lchown,fchownat -F auid>=1000 -F auid!=-1 -F key=perm_mod"
    ),
    "-a always,exit -F arch=b64 -S unlink,unlinkat,rename,renameat -F auid>=1000 -F auid!=4294967295 -F key=delete": (
        "-a always,exit -F arch=b64 -S rename,unlink,unlinkat,renameat -F auid>=1000 -F auid!=-1 -F key=delete"
    ),
    "-a always,exit -F arch=b32 -S unlink,unlinkat,rename,renameat -F auid>=1000 -F auid!=4294967295 -F key=delete": (
        "-a always,exit -F arch=b32 -S unlink,rename,unlinkat,renameat -F auid>=1000 -F auid!=-1 -F key=delete"
    ),
    "-w /tmp/audit-test/etc/sudoers.d/ -p wa -k actions": "-w /tmp/audit-test/etc/sudoers.d -p wa -k actions",
    "-a always,exit -F dir=/tmp/audit-test/home -F uid=0 -F auid>=1000 -F auid!=4294967295 -C auid!=obj_uid "
    "-F key=power-abuse": (
        "-a always,exit -S all -F dir=/tmp/audit-test/home -F uid=0 -F auid>=1000 -F auid!=-1 -C auid!=obj_uid "
        "-F key=power-abuse"
    ),
    "-a always,exit -F arch=b64 -S clone -F a0&0x7C020000 -F key=container-create": (
        "-a always,exit -F arch=b64 -S clone -F a0&0x7C020000 -F key=container-create"
    ),
    "-w /tmp/audit-test/sbin/insmod -p x -k modules": "-w /tmp/audit-test/sbin/insmod -p x -k modules",
    "-a never,exit -F arch=b64 -S rt_sigreturn": "-a never,exit -F arch=b64 -S rt_sigreturn",
    "-a always,exit -S all -F exit=-EINVAL -F key=einval-retcode": (
        "-a always,exit -S all -F exit=-EINVAL -F key=einval-retcode"
    ),
    "-a always,exit -F arch=b64 -S accept,connect -F key=external-access": (
        "-a always,exit -F arch=b64 -S connect,accept -F key=external-access"
    ),
    "-a always,exit -F arch=b64 -S connect,accept,listen,bind -F a2=16 -F saddr_fam=2 -F success=1 -F key=network-v4": (
        "-a always,exit -F arch=b64 -S connect,accept,bind,listen -F a2=0x10 -F saddr_fam=2 -F success=1 -F key=network-v4"
    ),
}
_BY_TEXT = {text: golden for _, text, golden in CASES}


@pytest.mark.parametrize(("text", "printed"), sorted(AUDITCTL_L.items()))
def test_recorded_bytes_print_as_auditctl_does(text, printed):
    golden = _BY_TEXT[text]  # every key is a corpus rule
    if needs_i386(text) and not HAVE_I386:
        pytest.skip(NO_I386)
    assert format_rule(AuditRuleData.decode(golden), "x86_64") == printed
    assert format_rule(parse_rule(text, "x86_64", is_dir=made_as_dir(text)), "x86_64") == printed
