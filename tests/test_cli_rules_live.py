"""``kaudit rules`` against the real kernel, cross-checked with Debian's auditctl.

Holds the live lock for the whole test, remembers the kernel's rules and puts them back in a
``finally``; skips with the reason when the kernel's audit cannot be reached.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from collector import cli
from collector.protocol.auditctl import format_rule, parse_rule
from collector.protocol.records import AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_GET, AUDIT_LIST_RULES
from collector.protocol.status import AuditStatus
from collector.protocol.syscalls import host_machine

transport = pytest.importorskip("collector.transport", reason="collector.transport is not in this build")

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("live")]

RULE = "-a always,exit -F arch=b64 -S connect -k net"


def _rules(t) -> list[bytes]:
    return [m.payload for m in t.request(AUDIT_LIST_RULES, dump=True) if m.type == AUDIT_LIST_RULES]


@pytest.fixture
def kernel_rules() -> Iterator[object]:
    """A locked kernel with no rules; the rules found are restored afterwards."""
    with transport.live_lock():
        reason = transport.kernel_unreachable_reason()
        if reason:
            pytest.skip(reason)
        t = transport.open_transport("kernel")
        try:
            status = AuditStatus.decode(next(m.payload for m in t.request(AUDIT_GET) if m.type == AUDIT_GET))
            if status.enabled == 2:
                pytest.skip("kernel audit is immutable (enabled=2): rules cannot be changed until reboot")
            saved = _rules(t)
            try:
                for payload in saved:
                    t.request(AUDIT_DEL_RULE, payload)
                yield t
            finally:
                for payload in _rules(t):
                    t.request(AUDIT_DEL_RULE, payload)
                for payload in saved:
                    t.request(AUDIT_ADD_RULE, payload)
        finally:
            t.close()


def auditctl_l() -> list[str] | None:
    if shutil.which("auditctl") is None:
        return None
    out = subprocess.run(["auditctl", "-l"], capture_output=True, text=True, timeout=30, check=True).stdout
    return out.splitlines()


def kaudit(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["rules", *argv])
    got = capsys.readouterr()
    return rc, got.out, got.err


def test_add_list_delete_on_the_kernel(kernel_rules, capsys):
    if host_machine().name != "x86_64":
        pytest.skip("the rule's b64 syscall name is checked against x86_64")
    assert kaudit(capsys, "list") == (0, "No rules\n", "")

    rc, out, err = kaudit(capsys, "add", RULE)
    assert (rc, out, err) == (0, "", "")
    assert _rules(kernel_rules) == [parse_rule(RULE).encode()]

    rc, out, _ = kaudit(capsys, "list")
    assert rc == 0
    assert out == "-a always,exit -F arch=b64 -S connect -F key=net\n"
    assert out.splitlines() == [format_rule(parse_rule(RULE))]
    listed = auditctl_l()
    if listed is not None:
        assert out.splitlines() == listed  # identical to auditctl -l

    rc, _, err = kaudit(capsys, "add", RULE)
    assert rc == 1 and err.startswith("EEXIST: rule already exists")

    assert kaudit(capsys, "delete", RULE)[0] == 0
    assert _rules(kernel_rules) == []
    assert kaudit(capsys, "list")[1] == "No rules\n"

    rc, _, err = kaudit(capsys, "delete", RULE)
    assert rc == 1 and err.startswith("ENOENT: no rule matches")


def test_watch_and_clear_on_the_kernel(kernel_rules, capsys, tmp_path):
    target = tmp_path / "watched"
    target.touch()
    texts = [f"-w {target} -p wa -k kaudit-w", f"-w {tmp_path} -p r", "-a never,exclude -F msgtype=CWD"]
    for text in texts:
        assert kaudit(capsys, "add", text)[0] == 0
    rc, out, _ = kaudit(capsys, "list")
    assert rc == 0
    assert out.splitlines() == [
        f"-w {target} -p wa -k kaudit-w",
        f"-w {tmp_path} -p r",
        "-a never,exclude -F msgtype=CWD",
    ]
    listed = auditctl_l()
    if listed is not None:
        assert out.splitlines() == listed
    assert kaudit(capsys, "delete", f"-W {target} -p wa -k kaudit-w")[0] == 0
    assert len(_rules(kernel_rules)) == 2
    rc, out, _ = kaudit(capsys, "clear")
    assert (rc, out) == (0, "deleted 2 rules\n")
    assert _rules(kernel_rules) == []


def test_kernel_refuses_an_invalid_rule(kernel_rules, capsys):
    # a watch on a relative path passes auditctl's syntax only through -F path=; the kernel says EINVAL
    rc, _, err = kaudit(capsys, "add", "-a always,exit -F path=relative/path -F perm=w")
    assert rc == 1
    assert err.startswith("EINVAL: ")
    assert _rules(kernel_rules) == []
