"""``kaudit rules list|add|delete|clear``: the kernel's (or the simulator's) audit rules in
auditctl syntax.

``list`` prints exactly what ``auditctl -l`` prints, so the two can be diffed; ``add`` and
``delete`` take the same text auditctl takes (``-a``/``-A``/``-d``/``-w``/``-W``). The
conversation goes through ``collector.transport`` so the same command works against the real
kernel (``--endpoint kernel``) and against ``kaudit simulate`` (``--endpoint unix:PATH``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

from collector.protocol._tables import ERRNO
from collector.protocol.auditctl import RuleCommand, format_rules, parse_rule_command
from collector.protocol.records import AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_LIST_RULES
from collector.protocol.rules import AuditRuleData, RuleError

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2

_ERRNO_NAME: dict[int, str] = {}
for _name, _num in ERRNO.items():
    _ERRNO_NAME.setdefault(_num, _name)

# What an errno means when the kernel answers a rule request (kernel/auditfilter.c).
_RULE_ERRNO_MEANING = {
    "EEXIST": "rule already exists",
    "ENOENT": "no rule matches",
    "EINVAL": "the kernel refused the rule as invalid",
    "EPERM": "not permitted (audit is locked with enabled=2, or this process lacks CAP_AUDIT_CONTROL)",
    "ENAMETOOLONG": "a path or key in the rule is too long",
    "ENOMEM": "the kernel is out of memory",
    "ESRCH": "no such rule list",
    "EOPNOTSUPP": "the kernel does not support this rule",
    "ECONNREFUSED": "the kernel's audit is not available",
}


def errno_text(code: int) -> str:
    """``EEXIST: rule already exists``: the errno's name and what it means for a rule."""
    code = abs(code)
    name = _ERRNO_NAME.get(code, f"errno {code}")
    meaning = _RULE_ERRNO_MEANING.get(name) or os.strerror(code)
    return f"{name}: {meaning}"


def _open_transport(endpoint: str):
    """The audit conversation for ``endpoint`` (kept a function so tests can replace it)."""
    from collector.transport import open_transport

    return open_transport(endpoint)


def _kernel_error_types() -> tuple[type[BaseException], ...]:
    """The exception a request raises when the kernel answers with an errno."""
    try:
        from collector.transport import KernelError
    except ImportError:
        return ()
    return (KernelError,)


def _errno_of(exc: BaseException) -> int:
    code = getattr(exc, "errno", None)
    if not isinstance(code, int) and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    return abs(code) if isinstance(code, int) else 0


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--endpoint",
        default="kernel",
        metavar="ENDPOINT",
        help="'kernel' (the real NETLINK_AUDIT socket, the default) or unix:PATH (a kaudit simulate endpoint)",
    )
    p = sub.add_parser(
        "rules",
        help="list, add, delete or clear audit rules in auditctl syntax",
        description=(
            "Read and change the audit rules of the kernel or of a simulator endpoint, in auditctl's syntax. "
            "'list' prints the rules exactly as 'auditctl -l' does. Exit status: 0 ok, 1 the kernel refused a "
            "request (its errno is printed), 2 a bad rule text or an unreachable endpoint."
        ),
    )
    acts = p.add_subparsers(dest="rules_action", metavar="ACTION")
    acts.required = True

    lst = acts.add_parser("list", parents=[common], help="print the rules as 'auditctl -l' does")
    lst.add_argument("-k", "--key", help="only rules whose key contains KEY (as 'auditctl -l -k KEY')")
    lst.set_defaults(func=run_list)

    rule_help = (
        "the rule in auditctl syntax, quoted as one argument ('-a always,exit -F arch=b64 -S connect -k net'); "
        "several quoted rules are applied in order; or the rule's words after '--'"
    )
    add = acts.add_parser("add", parents=[common], help="add a rule (-a, -A or -w)")
    add.add_argument("rule", nargs="*", help=rule_help)
    add.add_argument("-R", "--file", help="also add every rule in FILE (one per line, # comments)")
    add.set_defaults(func=run_add)

    delete = acts.add_parser("delete", parents=[common], help="delete a rule (given as -a/-A/-d or -w/-W)")
    delete.add_argument("rule", nargs="*", help=rule_help)
    delete.add_argument("-R", "--file", help="also delete every rule in FILE")
    delete.set_defaults(func=run_delete)

    clear = acts.add_parser("clear", parents=[common], help="delete every rule")
    clear.set_defaults(func=run_clear)


# -- rule texts -----------------------------------------------------------------------------


def rule_texts(args: argparse.Namespace) -> Iterator[tuple[str, str | list[str]]]:
    """(label, rule) pairs from the command line and --file, in order."""
    words: list[str] = list(args.rule or [])
    if words:
        if len(words) == 1 or all(any(c.isspace() for c in w) for w in words):
            for w in words:
                yield w, w
        else:
            yield " ".join(words), words
    if getattr(args, "file", None):
        with open(args.file, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                text = line.strip()
                if text and not text.startswith("#"):
                    yield f"{args.file}:{lineno}: {text}", text


def _parse_all(args: argparse.Namespace) -> list[tuple[str, RuleCommand]] | None:
    out = []
    label = ""
    try:
        for label, text in rule_texts(args):
            out.append((label, parse_rule_command(text, is_dir=os.path.isdir)))
    except RuleError as exc:
        where = label.split(": ", 1)[0] + ": " if args.file and label.startswith(f"{args.file}:") else ""
        print(f"kaudit rules {args.rules_action}: {where}{exc}", file=sys.stderr)
        return None
    except OSError as exc:
        print(
            f"kaudit rules {args.rules_action}: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr
        )
        return None
    if not out:
        print(f"kaudit rules {args.rules_action}: no rule given", file=sys.stderr)
        return None
    return out


# -- talking to the endpoint ------------------------------------------------------------------


class _Session:
    """One transport, with the command's error reporting."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.transport = None

    def __enter__(self) -> _Session | None:
        try:
            self.transport = _open_transport(self.args.endpoint)
        except ImportError as exc:
            print(f"kaudit rules: the transport is not available in this build: {exc}", file=sys.stderr)
            return None
        except Exception as exc:  # noqa: BLE001 - OSError, TransportError, a bad endpoint name: all exit 2
            print(f"kaudit rules: cannot reach audit at {self.args.endpoint!r}: {exc}", file=sys.stderr)
            return None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.transport is not None:
            close = getattr(self.transport, "close", None)
            if close:
                close()

    def request(self, mtype: int, payload: bytes = b"", *, dump: bool = False):
        return self.transport.request(mtype, payload, dump=dump)


def _fail(args: argparse.Namespace, exc: BaseException, what: str = "") -> int:
    """Report a failed request; 1 when the kernel refused it, 2 when it could not be made."""
    suffix = f" ({what})" if what else ""
    if isinstance(exc, _kernel_error_types()):
        print(f"{errno_text(_errno_of(exc))}{suffix}", file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"kaudit rules {args.rules_action}: request to {args.endpoint!r} failed: {exc}{suffix}",
        file=sys.stderr,
    )
    return EXIT_USAGE


def _list(session: _Session) -> tuple[list[bytes], list[AuditRuleData], int]:
    """Listed payloads, the decodable rules, and how many could not be decoded."""
    payloads, rules, bad = [], [], 0
    for msg in session.request(AUDIT_LIST_RULES, dump=True):
        if msg.type != AUDIT_LIST_RULES:
            continue
        payloads.append(msg.payload)
        try:
            rules.append(AuditRuleData.decode(msg.payload))
        except RuleError as exc:
            bad += 1
            print(f"kaudit rules: skipped a listed rule that does not decode: {exc}", file=sys.stderr)
    return payloads, rules, bad


def run_list(args: argparse.Namespace) -> int:
    with _Session(args) as session:
        if session is None:
            return EXIT_USAGE
        try:
            _, rules, bad = _list(session)
        except Exception as exc:  # noqa: BLE001 - reported with its errno, never a traceback
            return _fail(args, exc)
    if args.key:
        rules = [r for r in rules if any(args.key in k for k in r.keys())]
    lines = format_rules(rules)
    if not lines:
        print("No rules")
    for line in lines:
        print(line)
    return EXIT_REFUSED if bad else EXIT_OK


def _change(args: argparse.Namespace, mtype: int) -> int:
    parsed = _parse_all(args)
    if parsed is None:
        return EXIT_USAGE
    if mtype == AUDIT_ADD_RULE:
        for label, cmd in parsed:
            if cmd.op != "add":
                print(
                    f"kaudit rules add: {label}: this rule text deletes (-d/-W); use 'kaudit rules delete'",
                    file=sys.stderr,
                )
                return EXIT_USAGE
    with _Session(args) as session:
        if session is None:
            return EXIT_USAGE
        for label, cmd in parsed:
            try:
                session.request(mtype, cmd.rule.encode())
            except Exception as exc:  # noqa: BLE001 - reported with its errno, never a traceback
                return _fail(args, exc, label)
    return EXIT_OK


def run_add(args: argparse.Namespace) -> int:
    return _change(args, AUDIT_ADD_RULE)


def run_delete(args: argparse.Namespace) -> int:
    return _change(args, AUDIT_DEL_RULE)


def run_clear(args: argparse.Namespace) -> int:
    """Delete every listed rule by sending its listed bytes back, as ``auditctl -D`` does."""
    with _Session(args) as session:
        if session is None:
            return EXIT_USAGE
        try:
            payloads, _, _ = _list(session)
            for payload in payloads:
                session.request(AUDIT_DEL_RULE, payload)
        except Exception as exc:  # noqa: BLE001 - reported with its errno, never a traceback
            return _fail(args, exc)
    print(f"deleted {len(payloads)} rule{'s' if len(payloads) != 1 else ''}")
    return EXIT_OK
