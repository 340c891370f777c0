"""Fuzz target ``rule_data``: ``struct audit_rule_data`` bytes, as AUDIT_LIST_RULES delivers them.

``AuditRuleData.decode`` must give a rule or one ``RuleError``; a decoded rule must encode
and decode to itself, and ``auditctl -l`` must be able to print any rule a kernel lists. The
same bytes are also sent as AUDIT_ADD_RULE to a fresh simulated kernel: whatever it accepts
it must list back as bytes the collector decodes, equal to our ``kernel_form()`` of the rule
(``collector.config.verify_rules`` compares exactly that).
"""

from __future__ import annotations

from collections.abc import Iterator

from collector.protocol import netlink as nl
from collector.protocol.auditctl import format_rule, parse_rule
from collector.protocol.records import AUDIT_ADD_RULE, AUDIT_LIST_RULES
from collector.protocol.rules import AuditRuleData, RuleError, is_string_field

from . import seeds as _seeds
from .auditctl_target import ARCH, _is_dir


def _kernel():
    from simulator.kernel import AuditKernel

    return AuditKernel(enabled=1, path_exists=lambda p: True, parent_exists=lambda p: True)


def _send(kernel, client, mtype: int, payload: bytes) -> list[nl.NetlinkMessage]:
    kernel.receive(client, nl.encode(nl.NetlinkMessage(mtype, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 1, 0, payload)))
    out: list[nl.NetlinkMessage] = []
    for d in kernel.take_outputs():
        out.extend(nl.decode_datagram(d.data))
    return out


def one_input(data: bytes) -> None:
    try:
        rule = AuditRuleData.decode(data)
    except RuleError:
        rule = None
    if rule is not None:
        assert AuditRuleData.decode(rule.encode()) == rule, "decode/encode/decode changed the rule"
        format_rule(rule, ARCH)
    kernel = _kernel()
    client = kernel.connect(4242, comm=b"auditctl")
    answer = _send(kernel, client, AUDIT_ADD_RULE, data)
    errs = [nl.parse_error(m.payload).error for m in answer if m.type == nl.NLMSG_ERROR]
    assert errs, "the kernel model did not answer AUDIT_ADD_RULE"
    if errs[0] != 0:
        return
    listed = [m.payload for m in _send(kernel, client, AUDIT_LIST_RULES, b"") if m.type == AUDIT_LIST_RULES]
    assert len(listed) == 1, f"one rule added, {len(listed)} listed"
    back = AuditRuleData.decode(listed[0])
    format_rule(back, ARCH)
    if rule is None:
        return  # the kernel reads strings up to the payload's end and ignores buflen; we do not
    if any(b"\0" in f.strbytes() for f in rule.fields if is_string_field(f.field)):
        return  # the kernel lists a string up to its first NUL (strlen); kernel_form() does not
    assert listed[0] == rule.kernel_form().encode(), "the kernel lists the rule differently from kernel_form()"


def seeds() -> Iterator[bytes]:
    for text in _seeds.rule_texts(120):
        try:
            yield parse_rule(text, ARCH, is_dir=_is_dir).encode()
        except RuleError:
            continue
