"""``kaudit rules`` against a small in-memory endpoint (no kernel needed).

The fake endpoint keeps rules as the kernel does for what matters here: in kernel form,
listed by filter list, EEXIST for a duplicate, ENOENT for a missing rule.
"""

from __future__ import annotations

import pytest

from collector import cli
from collector.commands import rules as rules_cmd
from collector.protocol.auditctl import parse_rule
from collector.protocol.netlink import NetlinkMessage
from collector.protocol.records import AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_LIST_RULES
from collector.protocol.rules import AuditRuleData


class FakeKernelError(Exception):
    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


class FakeEndpoint:
    def __init__(self) -> None:
        self.rules: list[AuditRuleData] = []
        self.requests: list[tuple[int, bytes]] = []
        self.closed = False
        self.extra_payloads: list[bytes] = []

    def request(self, mtype: int, payload: bytes = b"", *, dump: bool = False, timeout: float = 2.0):
        self.requests.append((mtype, payload))
        if mtype == AUDIT_LIST_RULES:
            ordered = sorted(self.rules, key=lambda r: r.list_nr)
            return [NetlinkMessage(AUDIT_LIST_RULES, payload=r.encode()) for r in ordered] + [
                NetlinkMessage(AUDIT_LIST_RULES, payload=p) for p in self.extra_payloads
            ]
        rule = AuditRuleData.decode(payload).kernel_form()
        if mtype == AUDIT_ADD_RULE:
            if rule in self.rules:
                raise FakeKernelError(17)
            if AuditRuleData.decode(payload).prepend:
                self.rules.insert(0, rule)
            else:
                self.rules.append(rule)
            return []
        if mtype == AUDIT_DEL_RULE:
            if rule not in self.rules:
                raise FakeKernelError(2)
            self.rules.remove(rule)
            return []
        raise FakeKernelError(22)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> FakeEndpoint:
    ep = FakeEndpoint()
    seen: list[str] = []

    def fake_open(name: str) -> FakeEndpoint:
        seen.append(name)
        return ep

    monkeypatch.setattr(rules_cmd, "_open_transport", fake_open)
    monkeypatch.setattr(rules_cmd, "_kernel_error_types", lambda: (FakeKernelError,))
    ep.seen = seen  # type: ignore[attr-defined]
    return ep


def run(*argv: str) -> int:
    return cli.main(["rules", *argv])


def test_list_empty_prints_no_rules(endpoint, capsys):
    assert run("list") == 0
    assert capsys.readouterr().out == "No rules\n"
    assert endpoint.seen == ["kernel"] and endpoint.closed


def test_add_list_delete(endpoint, capsys):
    text = "-a always,exit -F arch=b64 -S connect -k net"
    assert run("add", text) == 0
    assert endpoint.requests[-1] == (AUDIT_ADD_RULE, parse_rule(text).encode())
    assert run("list") == 0
    assert capsys.readouterr().out == "-a always,exit -F arch=b64 -S connect -F key=net\n"
    assert run("delete", text) == 0
    assert endpoint.rules == []
    assert run("add", text) == 0
    assert run("delete", text.replace("-a ", "-d ")) == 0
    assert endpoint.rules == []


def test_endpoint_option_is_passed_on(endpoint):
    assert run("list", "--endpoint", "unix:/tmp/x.sock") == 0
    assert endpoint.seen == ["unix:/tmp/x.sock"]


def test_list_prints_auditctl_l(endpoint, capsys):
    for text in (
        "-w /etc/passwd -p wa -k identity",
        "-a always,exclude -F msgtype=CRYPTO_KEY_USER",
        "-a never,user -F uid=0",
        "-a always,exit -F arch=b64 -S open -F auid!=unset -F exit=-EACCES",
    ):
        assert run("add", text) == 0
    assert run("list") == 0
    assert capsys.readouterr().out.splitlines() == [
        "-a never,user -F uid=0",
        "-w /etc/passwd -p wa -k identity",
        "-a always,exit -F arch=b64 -S open -F auid!=-1 -F exit=-EACCES",
        "-a always,exclude -F msgtype=CRYPTO_KEY_USER",
    ]
    assert run("list", "-k", "ident") == 0
    assert capsys.readouterr().out.splitlines() == ["-w /etc/passwd -p wa -k identity"]


def test_duplicate_add_reports_eexist(endpoint, capsys):
    text = "-a always,exit -F arch=b64 -S connect -k net"
    assert run("add", text) == 0
    assert run("add", text) == 1
    err = capsys.readouterr().err
    assert err.startswith("EEXIST: rule already exists")
    assert text in err


def test_delete_missing_reports_enoent(endpoint, capsys):
    assert run("delete", "-a always,exit -F arch=b64 -S connect") == 1
    assert capsys.readouterr().err.startswith("ENOENT: no rule matches")


def test_bad_rule_text_is_a_usage_error(endpoint, capsys):
    assert run("add", "-a always,exit -S nosuchcall") == 2
    err = capsys.readouterr().err
    assert "unknown syscall 'nosuchcall'" in err and "-a always,exit -S nosuchcall" in err
    assert endpoint.requests == []  # nothing was sent


def test_add_refuses_a_delete_text(endpoint, capsys):
    assert run("add", "-d always,exit -S open") == 2
    assert "use 'kaudit rules delete'" in capsys.readouterr().err


def test_rule_as_separate_words_and_several_rules(endpoint, capsys):
    assert run("add", "--", "-a", "always,exit", "-S", "open", "-k", "w") == 0
    assert run("add", "-a always,exit -S close", "-a always,exit -S read") == 0
    assert len(endpoint.rules) == 3
    assert run("list") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("-S open -F key=w")
    assert len(out) == 3


def test_rules_file(endpoint, tmp_path, capsys):
    path = tmp_path / "x.rules"
    path.write_text("# comment\n\n-a always,exit -S open -k a\n-w /etc/shadow -p r\n")
    assert run("add", "-R", str(path)) == 0
    assert len(endpoint.rules) == 2
    assert run("delete", "--file", str(path)) == 0
    assert endpoint.rules == []
    path.write_text("-a always,exit -S open\n-a always,exit -F nosuchfield=1\n")
    assert run("add", "-R", str(path)) == 2
    assert f"{path}:2" in capsys.readouterr().err
    assert endpoint.rules == []  # a bad line stops the file before anything is sent


def test_clear_sends_the_listed_bytes_back(endpoint, capsys):
    for text in ("-a always,exit -S open", "-w /etc/passwd -p wa"):
        run("add", text)
    listed = [r.encode() for r in endpoint.rules]
    assert run("clear") == 0
    assert "deleted 2 rules" in capsys.readouterr().out
    assert [p for t, p in endpoint.requests if t == AUDIT_DEL_RULE] == listed
    assert endpoint.rules == []


def test_list_skips_a_rule_that_does_not_decode(endpoint, capsys):
    run("add", "-a always,exit -S open")
    endpoint.extra_payloads.append(b"\0" * 100)
    assert run("list") == 1
    captured = capsys.readouterr()
    assert captured.out == "-a always,exit -S open\n"
    assert "does not decode" in captured.err and "truncated" in captured.err


def test_unreachable_endpoint(monkeypatch, capsys):
    def refuse(name):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(rules_cmd, "_open_transport", refuse)
    assert run("list", "--endpoint", "unix:/nonexistent") == 2
    assert "cannot reach audit at 'unix:/nonexistent'" in capsys.readouterr().err


def test_no_rule_given(endpoint, capsys):
    assert run("add") == 2
    assert "no rule given" in capsys.readouterr().err


def test_errno_text():
    assert rules_cmd.errno_text(17) == "EEXIST: rule already exists"
    assert rules_cmd.errno_text(-2) == "ENOENT: no rule matches"
    assert rules_cmd.errno_text(22).startswith("EINVAL: ")
    assert rules_cmd.errno_text(5) == "EIO: Input/output error"


def test_prepend_puts_the_rule_first(endpoint, capsys):
    run("add", "-a always,exit -S open")
    run("add", "-A always,exit -S close")
    run("list")
    assert capsys.readouterr().out.splitlines() == ["-a always,exit -S close", "-a always,exit -S open"]
    assert endpoint.rules[0].fields == []
    assert endpoint.rules[0].flags == 4  # the kernel form carries no PREPEND flag
