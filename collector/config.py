"""Configure the kernel's audit subsystem for the enabled tables, and put back what we found.

Kernel audit state is global to the machine, so a collector that changes it owes the machine
an exact restore: on a normal end, on SIGINT/SIGTERM and on an exception. Every change made
here is written to an undo journal *as it is made*; ``restore()`` replays the journal
backwards. That gives "restore exactly what we changed" by construction, also when
configuration stopped half way (a rule refused, EPERM on the third write).

What ``configure()`` does, in this order (``AuditFlags`` names in brackets):

1. read the status (AUDIT_GET) and the rule list; both are kept as ``found``;
2. delete rules carrying our key ``kaudit``: they can only be left by a run that was killed,
   so they are not part of the state to restore and are not re-added;
3. [force_reconfigure] delete every other rule, last first, journalled for re-adding in the
   original order;
4. register this process as the audit daemon (AUDIT_SET pid);
5. set backlog limit [backlog_limit], backlog wait time [backlog_wait_time] and failure mode
   (silent, as osquery sets it), each only when it differs, each journalled;
6. enable audit when it is disabled;
7. add one rule per ABI (``-F arch=b64``, and ``b32`` where the machine has a 32-bit ABI) with
   every syscall the enabled tables need, key ``kaudit``; then read the rules back and check
   they are in the kernel as sent.

Two values are refused whatever is asked, here and on restore: failure mode 2 (panic: the
kernel halts the machine when it cannot audit) and enabled 2 (locks the configuration until
reboot). If the kernel was found with failure 2 we leave the failure mode alone rather than
ever write 2 back.

A run killed with SIGKILL cannot restore anything. So before its first change a run writes
the state to put back into a small JSON file (``state_path``; ``kaudit collect`` uses
``/run/kaudit/collect-kernel.json`` for the real kernel) and keeps it current as it changes
things; a clean restore deletes it. The next run finds the file, sees its owner is dead, and
first puts that state back (status fields, rules force-reconfigure deleted, rules it added),
then starts from the recovered state. A live owner means another collector is configuring
this kernel: refused.

Fallback: a kernel that is immutable (enabled=2), or that refuses us (EPERM, EACCES, or
ECONNREFUSED outside the initial pid namespace), is read through the multicast group without
changing anything, as osquery falls back to "immutable". Anything already changed is undone
first. Another live daemon holding the pid (EEXIST) keeps it: we configure rules and read
the multicast copy.
"""

from __future__ import annotations

import base64
import errno as errno_mod
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from collector.flags import AuditFlags
from collector.protocol._tables import MISC, SYSCALLS
from collector.protocol.records import (
    AUDIT_ADD_RULE,
    AUDIT_DEL_RULE,
    AUDIT_GET,
    AUDIT_LIST_RULES,
    AUDIT_SET,
)
from collector.protocol.status import AuditStatus, status_set

__all__ = [
    "KAUDIT_KEY",
    "ConfigError",
    "ConfigOutcome",
    "Found",
    "KernelConfig",
    "RestoreReport",
    "UnsafeSetting",
    "abis_for",
    "default_state_path",
    "rule_key",
    "syscalls_for",
]

KAUDIT_KEY = "kaudit"
AUDIT_FAIL_SILENT = MISC["AUDIT_FAIL_SILENT"]
AUDIT_FAIL_PANIC = MISC["AUDIT_FAIL_PANIC"]
AUDIT_LOCKED = 2  # enabled=2: immutable until reboot
# errors that mean "you may not configure this kernel" rather than "this request is wrong"
_NO_PERMISSION = frozenset({errno_mod.EPERM, errno_mod.EACCES, errno_mod.ECONNREFUSED})

# the syscalls each table needs, as osquery installs them (getSocketEventsSyscalls,
# kExecProcessEventsSyscalls, kForkProcessEventsSyscalls, kKillProcessEventsSyscalls)
SOCKET_SYSCALLS = ("connect", "bind", "accept", "accept4")
EXEC_SYSCALLS = ("execve", "execveat")
FORK_SYSCALLS = ("fork", "vfork", "clone", "clone3")
KILL_SYSCALLS = ("kill", "tkill", "tgkill")

# machine -> (64-bit ABI table, 32-bit ABI table or None); auditctl's b64/b32 for that machine
_ABIS: dict[str, tuple[str, str | None]] = {
    "x86_64": ("x86_64", "i386"),
    "aarch64": ("aarch64", "arm"),
    "ppc64le": ("ppc64le", "ppc"),
    "ppc64": ("ppc64", "ppc"),
    "s390x": ("s390x", "s390"),
    "riscv64": ("riscv64", None),
    "loongarch64": ("loongarch64", None),
}


class ConfigError(RuntimeError):
    """The kernel refused a step for a reason other than permission; names the step and errno."""


class UnsafeSetting(ValueError):
    """A status write that could panic or lock the machine (failure=2, enabled=2). Never sent."""


@dataclass(slots=True)
class Found:
    """The kernel's audit state when we started, before any change."""

    status: AuditStatus
    rules: list  # list[AuditRuleData] in the kernel's list order


@dataclass(slots=True)
class ConfigOutcome:
    """What ``configure`` ended with.

    ``mode`` is ``"unicast"`` (we are the registered daemon and records come to our socket) or
    ``"multicast"`` (read the AUDIT_NLGRP_READLOG copy); ``read_only`` says whether we changed
    nothing; ``reason`` says why we are not unicast/configured.
    """

    mode: str = "unicast"
    read_only: bool = False
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    stale_removed: list[str] = field(default_factory=list)  # auditctl text of kaudit rules deleted
    reconfigure_deleted: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    skipped_abis: list[str] = field(default_factory=list)
    status_changed: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (found, set)
    registered_pid: int | None = None
    recovered: list[str] = field(default_factory=list)  # what a killed run's state file put back


@dataclass(slots=True)
class RestoreReport:
    """What ``restore`` did: steps done, and errors (a step that failed does not stop the rest)."""

    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(slots=True)
class _Undo:
    what: str  # human text, e.g. "delete rule -a always,exit ..."
    kind: str  # "status" | "delete_rule" | "add_rule" | "unregister"
    field_name: str = ""
    value: int = 0
    rule: object = None


_RESTORABLE = ("enabled", "failure", "backlog_limit", "backlog_wait_time")
STATE_VERSION = 1


def default_state_path(endpoint: str) -> Path | None:
    """Where ``kaudit collect`` keeps its restore state for ``endpoint`` (None: keep none).

    Only the real kernel outlives a run; a simulator endpoint's kernel is gone with it.
    """
    if endpoint != "kernel":
        return None
    base = Path("/run/kaudit")
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        base = Path("/tmp")
    return base / "collect-kernel.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def abis_for(machine: str | None = None) -> list[tuple[str, str]]:
    """``[("b64", table), ("b32", table)]`` for this machine (b32 only where the ABI exists)."""
    m = machine or platform.machine()
    if m not in _ABIS:
        raise ConfigError(f"machine {m!r}: no audit ABI known (known: {', '.join(sorted(_ABIS))})")
    b64, b32 = _ABIS[m]
    out = [("b64", b64)]
    if b32:
        out.append(("b32", b32))
    return out


def syscalls_for(flags: AuditFlags) -> list[str]:
    """Syscall names the enabled tables need (osquery's sets), in a stable order."""
    names: list[str] = []
    if flags.allow_sockets:
        names.extend(SOCKET_SYSCALLS)
    if flags.allow_process_events:
        names.extend(EXEC_SYSCALLS)
        if flags.allow_fork_process_events:
            names.extend(FORK_SYSCALLS)
        if flags.allow_kill_process_events:
            names.extend(KILL_SYSCALLS)
    return names


def rule_key(rule) -> list[str]:
    """The ``-k`` keys of a rule (a rule may carry several, joined by \\x01)."""
    return rule.keys()


def _errno_of(exc: BaseException) -> int | None:
    e = getattr(exc, "errno", None)
    if isinstance(e, int):
        return abs(e)
    return None


def _errname(e: int | None) -> str:
    if e is None:
        return "?"
    return errno_mod.errorcode.get(e, str(e))


def _guard(name: str, value: int) -> None:
    if name == "failure" and value == AUDIT_FAIL_PANIC:
        raise UnsafeSetting("refusing to set audit failure mode 2 (panic: the kernel halts the machine)")
    if name == "enabled" and value == AUDIT_LOCKED:
        raise UnsafeSetting("refusing to set audit enabled=2 (locks audit configuration until reboot)")


class KernelConfig:
    """Configures one audit netlink conversation and undoes it.

    ``transport`` needs only ``request(type, payload, dump=...)`` raising an exception with an
    ``errno`` attribute (``collector.transport.KernelError``); that keeps this class testable
    against the in-process simulator and any endpoint. ``pid`` is what we register (default
    our own: the kernel insists the pid be the sender's); ``machine`` picks the ABIs.
    """

    def __init__(
        self,
        transport,
        flags: AuditFlags,
        *,
        pid: int | None = None,
        machine: str | None = None,
        warn: Callable[[str], None] | None = None,
        state_path: str | Path | None = None,
    ) -> None:
        self.transport = transport
        self.state_path = Path(state_path) if state_path is not None else None
        self.flags = flags
        self.pid = os.getpid() if pid is None else pid
        self.machine = machine or platform.machine()
        self._warn = warn or (lambda msg: None)
        self.found: Found | None = None
        self.outcome = ConfigOutcome()
        self._journal: list[_Undo] = []
        self._added_rules: list = []
        self._owns_state = False

    # ---- kernel conversation -------------------------------------------------------------

    def get_status(self) -> AuditStatus:
        for msg in self.transport.request(AUDIT_GET):
            if msg.type == AUDIT_GET:
                return AuditStatus.decode(msg.payload)
        raise ConfigError("AUDIT_GET: the kernel sent no status reply")

    def list_rules(self) -> list:
        from collector.protocol.rules import AuditRuleData

        out = []
        for msg in self.transport.request(AUDIT_LIST_RULES, dump=True):
            if msg.type == AUDIT_LIST_RULES:
                out.append(AuditRuleData.decode(msg.payload))
        return out

    def set_status(self, name: str, value: int, *, nfields: int | None = None) -> None:
        """One AUDIT_SET of one field; failure=2 and enabled=2 raise UnsafeSetting, never sent."""
        _guard(name, value)
        if nfields is None:
            nfields = self.found.status.nfields if self.found else 11
        self.transport.request(AUDIT_SET, status_set(nfields, **{name: value}).encode())

    def _set(self, name: str, value: int, *, nfields: int) -> None:
        _guard(name, value)
        self.transport.request(AUDIT_SET, status_set(nfields, **{name: value}).encode())

    def _add_rule(self, rule) -> None:
        self.transport.request(AUDIT_ADD_RULE, rule.encode())

    def _del_rule(self, rule) -> None:
        self.transport.request(AUDIT_DEL_RULE, rule.encode())

    # ---- plan ------------------------------------------------------------------------------

    def planned_rules(self) -> list:
        """The rules the enabled tables need: one per ABI, key ``kaudit``, as AuditRuleData."""
        from collector.protocol.auditctl import parse_rule

        names = syscalls_for(self.flags)
        if not names:
            return []
        rules = []
        for abi, table in abis_for(self.machine):
            known = SYSCALLS.get(table)
            if known is None:
                self.outcome.skipped_abis.append(f"{abi} ({table}): no syscall table generated for {table}")
                continue
            present = [n for n in names if n in known]
            if not present:
                continue
            text = (
                f"-a always,exit -F arch={abi} " + " ".join(f"-S {n}" for n in present) + f" -k {KAUDIT_KEY}"
            )
            try:
                rules.append(parse_rule(text, self.machine))
            except ValueError as exc:  # RuleError is a ValueError
                self.outcome.skipped_abis.append(f"{abi} ({table}): {exc}")
        return rules

    # ---- configure --------------------------------------------------------------------------

    def read_found(self) -> Found:
        """Read status and rules once; later calls return the first reading."""
        if self.found is None:
            status = self.get_status()
            self.found = Found(status=status, rules=self.list_rules())
        return self.found

    def configure(self) -> ConfigOutcome:
        """Configure as the flags ask; on no permission or immutability fall back to read-only.

        Raises ConfigError (after undoing what was done) when the kernel refuses a step for
        another reason, and UnsafeSetting if asked for failure=2 or enabled=2.
        """
        out = self.outcome
        if not self.flags.allow_config:
            try:
                self.read_found()
            except Exception as exc:  # noqa: BLE001 - status is informative only here
                if _errno_of(exc) is None:
                    raise
            return self._read_only("--audit_allow_config is off: the kernel is read, not configured")
        try:
            found = self.read_found()
        except Exception as exc:
            e = _errno_of(exc)
            if e in _NO_PERMISSION:
                return self._read_only(f"no permission to read the audit configuration ({_errname(e)})")
            raise
        if found.status.enabled == AUDIT_LOCKED:
            return self._read_only("the kernel's audit configuration is immutable (enabled=2)")
        try:
            if self.state_path is not None and self.state_path.exists():
                if self._recover(self.state_path):
                    self.found = None
                    found = self.read_found()
            self._configure(found)
        except UnsafeSetting:
            self.restore()
            raise
        except Exception as exc:
            e = _errno_of(exc)
            report = self.restore()
            if e in _NO_PERMISSION:
                undone = "" if not report.done else f"; undid {len(report.done)} change(s)"
                return self._read_only(f"the kernel refused a configuration change ({_errname(e)}){undone}")
            if e is not None:
                raise ConfigError(f"configuring audit failed: {exc} ({_errname(e)})") from exc
            raise
        return out

    def _read_only(self, reason: str) -> ConfigOutcome:
        """Fall back to reading the multicast copy, changing nothing.

        Read-only is never the audit daemon: a registration made before the kernel refused a
        later step was undone by ``restore`` (or, if that failed, stays journalled for the
        next restore), and ``registered_pid`` must not say otherwise, or the reader would
        register again whenever it saw the pid "lost" (--audit_persist).
        """
        out = self.outcome
        out.mode = "multicast"
        out.read_only = True
        out.registered_pid = None
        out.reason = reason
        msg = f"{reason}; reading the multicast copy (AUDIT_NLGRP_READLOG) without changing anything"
        out.warnings.append(msg)
        self._warn(msg)
        return out

    def _configure(self, found: Found) -> None:
        from collector.protocol.auditctl import format_rule

        out = self.outcome
        flags = self.flags
        st = found.status
        nf = st.nfields
        self._save_state()
        # 2. stale kaudit rules from a killed run
        for rule in found.rules:
            if KAUDIT_KEY in rule_key(rule):
                self._del_rule(rule)
                out.stale_removed.append(format_rule(rule, self.machine))
        if out.stale_removed:
            self._warn(
                f"removed {len(out.stale_removed)} stale '{KAUDIT_KEY}' rule(s) left by an earlier run"
            )
        # 3. force-reconfigure: delete the rest, last first, so undo re-adds them in order
        if flags.force_reconfigure:
            others = [r for r in found.rules if KAUDIT_KEY not in rule_key(r)]
            for rule in reversed(others):
                text = format_rule(rule, self.machine)
                # journalled (and saved) before it is deleted: a kill between the two must not lose it
                self._push(_Undo(f"re-add rule {text}", "add_rule", rule=rule))
                self._del_rule(rule)
                out.reconfigure_deleted.insert(0, text)
        # 4. register as the audit daemon
        try:
            self._set("pid", self.pid, nfields=nf)
        except Exception as exc:
            if _errno_of(exc) != errno_mod.EEXIST:
                raise
            out.mode = "multicast"
            msg = (
                f"audit daemon pid {st.pid} holds the audit connection (EEXIST); configuring rules "
                "and reading the multicast copy"
            )
            out.reason = msg
            out.warnings.append(msg)
            self._warn(msg)
        else:
            out.registered_pid = self.pid
            self._push(_Undo(f"unregister pid {self.pid}", "unregister"))
        # 5. backlog limit, backlog wait time, failure mode
        wanted: list[tuple[str, int]] = [
            ("backlog_limit", flags.backlog_limit),
            ("backlog_wait_time", flags.backlog_wait_time),
        ]
        if st.failure == AUDIT_FAIL_PANIC:
            msg = "audit failure mode is 2 (panic); leaving it as found (it could never be written back)"
            out.warnings.append(msg)
            self._warn(msg)
        else:
            wanted.append(("failure", AUDIT_FAIL_SILENT))
        for name, value in wanted:
            if name == "backlog_wait_time" and nf < 10:
                continue  # kernel older than 3.14 has no such field
            before = getattr(st, name)
            if before == value:
                continue
            self._push(_Undo(f"set {name} back to {before}", "status", name, before))
            self._set(name, value, nfields=nf)
            out.status_changed[name] = (before, value)
        # 6. enable
        if st.enabled == 0:
            self._push(_Undo("set enabled back to 0", "status", "enabled", 0))
            self._set("enabled", 1, nfields=nf)
            out.status_changed["enabled"] = (0, 1)
        # 7. rules
        for rule in self.planned_rules():
            # journalled (and saved) before it is sent: a kill between the two must not leak it
            self._push(_Undo(f"delete rule {format_rule(rule, self.machine)}", "delete_rule", rule=rule))
            self._add_rule(rule)
            self._added_rules.append(rule)
            out.added.append(format_rule(rule, self.machine))
        for note in out.skipped_abis:
            msg = f"no {KAUDIT_KEY} rule for ABI {note}"
            out.warnings.append(msg)
            self._warn(msg)
        self.verify_rules()

    def verify_rules(self) -> None:
        """Read the rules back; every rule we added must be in the kernel byte for byte."""
        if not self._added_rules:
            return
        listed = {r.encode() for r in self.list_rules()}
        missing = [r for r in self._added_rules if r.kernel_form().encode() not in listed]
        if missing:
            from collector.protocol.auditctl import format_rule

            raise ConfigError(
                "rules read back differ from the rules added; missing: "
                + "; ".join(format_rule(r, self.machine) for r in missing)
            )

    # ---- restore ----------------------------------------------------------------------------

    @property
    def pending(self) -> list[str]:
        """Changes still to undo, in the order ``restore`` will undo them."""
        return [u.what for u in reversed(self._journal)]

    def remove_added_rules(self) -> RestoreReport:
        """Delete only the rules we added (no new records), leaving the rest for ``restore``.

        Called first on exit, so that records already queued can still be drained while the
        daemon registration is kept.
        """
        report = RestoreReport()
        keep: list[_Undo] = []
        for undo in reversed(self._journal):
            if undo.kind != "delete_rule" or not self._undo(undo, report):
                keep.insert(0, undo)
        self._journal = keep
        self._added_rules = [u.rule for u in keep if u.kind == "delete_rule"]
        self._save_state()
        return report

    def restore(self) -> RestoreReport:
        """Undo every journalled change, last first; each failure is reported, none stops it.

        Steps that failed stay in the journal (and in the state file), so a later call, or
        the next run, tries them again.
        """
        report = RestoreReport()
        failed: list[_Undo] = []
        while self._journal:
            undo = self._journal.pop()
            if not self._undo(undo, report):
                failed.insert(0, undo)
        self._journal = failed
        self._added_rules = [u.rule for u in failed if u.kind == "delete_rule"]
        if not failed:
            self._drop_state()
        else:
            self._save_state()
        return report

    def _push(self, undo: _Undo) -> None:
        self._journal.append(undo)
        self._save_state()

    def _undo(self, undo: _Undo, report: RestoreReport) -> bool:
        nf = self.found.status.nfields if self.found else 11
        try:
            if undo.kind == "delete_rule":
                self._del_rule(undo.rule)
            elif undo.kind == "add_rule":
                self._add_rule(undo.rule)
            elif undo.kind == "status":
                self._set(undo.field_name, undo.value, nfields=nf)
            elif undo.kind == "unregister":
                current = self.get_status().pid
                if current != self.pid:
                    report.notes.append(
                        f"pid {self.pid} no longer registered (kernel has {current}); left as is"
                    )
                    return True
                self._set("pid", 0, nfields=nf)
            report.done.append(undo.what)
            return True
        except UnsafeSetting as exc:
            report.errors.append(f"{undo.what}: {exc}")
            return True  # never retried: it can never be sent
        except Exception as exc:  # noqa: BLE001 - every step is attempted, failures reported
            e = _errno_of(exc)
            if undo.kind == "delete_rule" and e == errno_mod.ENOENT:
                report.notes.append(f"{undo.what}: already gone")
                return True
            if undo.kind == "add_rule" and e == errno_mod.EEXIST:
                report.notes.append(f"{undo.what}: already present")
                return True
            report.errors.append(f"{undo.what}: {exc} ({_errname(e)})")
            return False

    # ---- pid re-take (reader, --audit_persist) ---------------------------------------------

    def retake_pid(self) -> None:
        """Register our pid again after another process took it; raises the kernel's error.

        Refused (ConfigError) in read-only mode, which changes nothing in the kernel.
        """
        if self.outcome.read_only:
            raise ConfigError("read-only mode: not registering as the audit daemon")
        nf = self.found.status.nfields if self.found else 11
        self._set("pid", self.pid, nfields=nf)
        if not any(u.kind == "unregister" for u in self._journal):
            # registered now, so unregister on exit; first in the journal = undone last
            self._journal.insert(0, _Undo(f"unregister pid {self.pid}", "unregister"))
            self._save_state()
        self.outcome.registered_pid = self.pid

    # ---- state file: restore after a SIGKILL ------------------------------------------------

    def _state(self) -> dict:
        """What the next run must put back if this one dies now (from the journal)."""
        status: dict[str, int] = {}
        deleted: list[str] = []
        added: list[str] = []
        for u in self._journal:
            if u.kind == "status":
                status.setdefault(u.field_name, u.value)
            elif u.kind == "add_rule":
                deleted.insert(0, _b64(u.rule.encode()))  # journal holds them last-first
            elif u.kind == "delete_rule":
                added.append(_b64(u.rule.kernel_form().encode()))
        return {
            "version": STATE_VERSION,
            "pid": os.getpid(),
            "time": int(time.time()),
            "registered_pid": self.pid if any(u.kind == "unregister" for u in self._journal) else None,
            "status": status,
            "deleted_rules": deleted,
            "added_rules": added,
        }

    def _save_state(self) -> None:
        if self.state_path is None:
            return
        self._owns_state = True
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self._state(), indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, self.state_path)
        except OSError as exc:
            self._warn(f"cannot write the restore state file {self.state_path}: {exc}")

    def _drop_state(self, *, force: bool = False) -> None:
        """Delete the state file, if we wrote it (or, ``force``, after recovering from it)."""
        if self.state_path is None or not (self._owns_state or force):
            return
        self._owns_state = False
        try:
            self.state_path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._warn(f"cannot remove the restore state file {self.state_path}: {exc}")

    def _recover(self, path: Path) -> bool:
        """Put back what a killed run left in ``path``; True when something was changed.

        Refuses (ConfigError) when the run that wrote it is still alive.
        """
        from collector.protocol.auditctl import format_rule
        from collector.protocol.rules import AuditRuleData

        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            owner = int(state.get("pid", 0))
            status = {k: int(v) for k, v in dict(state.get("status", {})).items() if k in _RESTORABLE}
            deleted = [AuditRuleData.decode(base64.b64decode(b)) for b in state.get("deleted_rules", [])]
            added = [AuditRuleData.decode(base64.b64decode(b)) for b in state.get("added_rules", [])]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            self._warn(f"ignoring unreadable restore state file {path}: {exc}")
            self._drop_state(force=True)
            return False
        if owner and owner != os.getpid() and _pid_alive(owner):
            raise ConfigError(
                f"another collector (pid {owner}) is configuring this kernel's audit (state file {path}); "
                "stop it first, or remove the file if that pid is not a kaudit collector"
            )
        out = self.outcome
        found = self.found
        listed = {r.encode() for r in (found.rules if found else self.list_rules())}
        changed = False
        for rule in added:
            if rule.encode() in listed:
                self._del_rule(rule)
                out.recovered.append(f"deleted rule {format_rule(rule, self.machine)}")
                changed = True
        for rule in deleted:
            if rule.kernel_form().encode() not in listed:
                self._add_rule(rule)
                out.recovered.append(f"re-added rule {format_rule(rule, self.machine)}")
                changed = True
        st = found.status if found else self.get_status()
        for name, value in status.items():
            if name == "backlog_wait_time" and st.nfields < 10:
                continue
            if getattr(st, name) != value:
                if (name, value) in (("failure", AUDIT_FAIL_PANIC), ("enabled", AUDIT_LOCKED)):
                    continue  # never written, whatever a file says
                self._set(name, value, nfields=st.nfields)
                out.recovered.append(f"set {name} back to {value}")
                changed = True
        self._drop_state(force=True)
        if out.recovered:
            self._warn(f"restored what a killed run (pid {owner}) left changed: " + "; ".join(out.recovered))
        return changed
