"""osquery's audit flags, spelled and defaulted as osquery spells and defaults them.

Why osquery's names: users of kaudit usually run osquery too, and an osquery flags file must
mean the same thing here (``--flagfile /etc/osquery/osquery.flags``). The syntax follows gflags,
which osquery uses: a bare boolean flag means true, ``--flag=false`` (or ``--noflag``) turns it
off, a valued flag takes ``--flag=V`` or ``--flag V``. We also accept ``-`` for ``_`` in names
(``--audit-allow-sockets``) because that is how every other kaudit option is spelled.

A bare boolean never consumes the next word (``--audit_allow_unix false`` is the flag, then a
stray ``false``), exactly as in gflags; that is why these flags are parsed here and not by
argparse, whose optional-value options would swallow a following SOURCE file name.

Defaults (osquery 5, ``auditdnetlink.cpp``, ``events/linux/*``, ``flags.cpp``):
``audit_allow_config`` off, ``audit_allow_sockets`` off, ``audit_allow_process_events`` on,
``audit_allow_accept_socket_events`` on, the other table switches off, ``audit_backlog_limit``
4096, ``audit_backlog_wait_time`` 0, ``audit_force_reconfigure`` off, ``audit_persist`` on.
Commands change defaults where their purpose demands it (``kaudit collect`` configures the
kernel and enables both tables); explicit flags always win.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from collector.tables.options import TableOptions

__all__ = [
    "AuditFlags",
    "FlagError",
    "FLAG_SPECS",
    "add_flag_arguments",
    "parse_flags",
    "read_flagfile",
    "split_flags",
]

# gflags' accepted spellings of a boolean (case-insensitive)
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_U32_MAX = 0xFFFFFFFF
_MAX_FLAGFILE_DEPTH = 8

# osquery audit flags that kaudit does not implement. A flags file written for osquery may carry
# them; they are reported and ignored instead of failing, so the same file can be reused.
OSQUERY_AUDIT_FLAGS_NOT_IMPLEMENTED = frozenset(
    {
        "audit_allow_fim_events",
        "audit_allow_user_events",
        "audit_allow_selinux_events",
        "audit_allow_apparmor_events",
        "audit_allow_seccomp_events",
        "audit_debug",
        "audit_fim_debug",
        "audit_fim_show_accesses",
        "audit_show_partial_fim_events",
        "audit_show_untracked_res_warnings",
        "audit_force_unconfigure",
        "audit_queue_size",
    }
)


class FlagError(ValueError):
    """A flag that is unknown or has a bad value; the message names the flag and the input."""


@dataclass(slots=True, frozen=True)
class AuditFlags:
    """Every audit flag kaudit understands, defaults as osquery's.

    The table switches are mirrored one to one from ``TableOptions`` (so a new table flag needs
    one change, there); ``table_options()`` hands them to the subscribers.
    """

    allow_config: bool = False
    allow_sockets: bool = False
    allow_process_events: bool = True
    allow_failed_socket_events: bool = False
    allow_accept_socket_events: bool = True
    allow_null_accept_socket_events: bool = False
    allow_unix: bool = False
    allow_fork_process_events: bool = False
    allow_kill_process_events: bool = False
    backlog_limit: int = 4096
    backlog_wait_time: int = 0
    force_reconfigure: bool = False
    persist: bool = True

    def table_options(self) -> TableOptions:
        """The subset the table subscribers read."""
        return TableOptions(**{f.name: getattr(self, f.name) for f in fields(TableOptions)})

    def as_flags(self) -> list[str]:
        """Every flag as ``--audit_name=value``: a flags file that reproduces this object."""
        out = []
        for spec in FLAG_SPECS.values():
            value = getattr(self, spec.attr)
            text = ("true" if value else "false") if spec.kind is bool else str(value)
            out.append(f"--{spec.name}={text}")
        return out

    def changed(self, base: AuditFlags | None = None) -> dict[str, bool | int]:
        """Flags whose value differs from ``base`` (default: osquery's defaults), by osquery name."""
        ref = base or AuditFlags()
        return {
            spec.name: getattr(self, spec.attr)
            for spec in FLAG_SPECS.values()
            if getattr(self, spec.attr) != getattr(ref, spec.attr)
        }


@dataclass(slots=True, frozen=True)
class FlagSpec:
    name: str  # osquery's name, e.g. audit_allow_sockets
    attr: str  # AuditFlags field
    kind: type  # bool or int
    help: str


def _spec_table() -> dict[str, FlagSpec]:
    helps = {
        "allow_config": "configure the kernel: enable audit, backlog, daemon pid, rules (osquery default: off)",
        "allow_sockets": "socket_events rows and their rules (osquery default: off)",
        "allow_process_events": "process_events rows and their rules (osquery default: on)",
        "allow_failed_socket_events": "keep failed socket syscalls as status=failed rows (default: off)",
        "allow_accept_socket_events": "accept/accept4 rows (default: on)",
        "allow_null_accept_socket_events": "non-blocking accept with EAGAIN as status=no_client (default: off)",
        "allow_unix": "unix domain socket rows (default: off)",
        "allow_fork_process_events": "fork/vfork/clone rows and rules (default: off)",
        "allow_kill_process_events": "kill/tkill/tgkill rows and rules (default: off)",
        "backlog_limit": "kernel audit backlog limit to set (default: 4096)",
        "backlog_wait_time": "kernel backlog wait time to set, in jiffies as the kernel takes it (default: 0)",
        "force_reconfigure": "delete every existing rule first; they are re-added on exit (default: off)",
        "persist": "re-take the audit daemon pid if another process takes it (default: on)",
    }
    out: dict[str, FlagSpec] = {}
    for f in fields(AuditFlags):
        kind = int if f.type in ("int", int) else bool
        name = f"audit_{f.name}"
        out[name] = FlagSpec(name, f.name, kind, helps[f.name])
    return out


FLAG_SPECS: dict[str, FlagSpec] = _spec_table()


def _parse_bool(name: str, text: str, where: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise FlagError(f"{where}--{name}={text!r}: not a boolean (use true/false, yes/no, 1/0)")


def _parse_int(name: str, text: str, where: str) -> int:
    t = text.strip()
    try:
        value = int(t, 16) if t.lower().startswith("0x") else int(t, 10)
    except ValueError:
        raise FlagError(f"{where}--{name}={text!r}: not an integer") from None
    if not 0 <= value <= _U32_MAX:
        raise FlagError(f"{where}--{name}={value}: out of range 0..{_U32_MAX} (the kernel field is a u32)")
    return value


def _lookup(token: str) -> tuple[FlagSpec | None, bool, str | None, str]:
    """Split ``--name[=value]`` into (spec, negated, value, canonical name).

    The canonical name uses ``_``; a ``no`` prefix (gflags' ``--noflag``) sets negated.
    """
    body = token[2:]
    value: str | None = None
    if "=" in body:
        body, value = body.split("=", 1)
    name = body.replace("-", "_")
    spec = FLAG_SPECS.get(name)
    if spec is not None:
        return spec, False, value, name
    for prefix in ("no_", "no"):
        if name.startswith(prefix) and name[len(prefix) :] in FLAG_SPECS:
            return FLAG_SPECS[name[len(prefix) :]], True, value, name[len(prefix) :]
    return None, False, value, name


def _is_flagfile(token: str) -> bool:
    return token in ("--flagfile", "--flag-file", "--flag_file") or token.startswith(
        ("--flagfile=", "--flag-file=", "--flag_file=")
    )


def split_flags(
    argv: Sequence[str],
    base: AuditFlags | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    _depth: int = 0,
    _where: str = "",
) -> tuple[AuditFlags, list[str]]:
    """Take the audit flags (and ``--flagfile``) out of ``argv``; return them and the rest.

    Flags apply in order, so a later one wins (a flags file given first and a command-line
    flag after it: the command line wins, as in osquery). Words after ``--`` are left alone.
    Raises FlagError naming the flag for an unknown ``--audit_*`` flag or a bad value.
    """
    values: dict[str, bool | int] = {}
    current = base or AuditFlags()
    rest: list[str] = []
    i = 0
    n = len(argv)
    while i < n:
        tok = argv[i]
        if tok == "--":
            rest.extend(argv[i:])
            break
        if not tok.startswith("--"):
            rest.append(tok)
            i += 1
            continue
        if _is_flagfile(tok):
            if "=" in tok:
                path = tok.split("=", 1)[1]
            else:
                if i + 1 >= n:
                    raise FlagError(f"{_where}--flagfile needs a PATH")
                i += 1
                path = argv[i]
            current = replace(current, **values)
            values = {}
            current = read_flagfile(path, current, warn=warn, _depth=_depth + 1)
            i += 1
            continue
        spec, negated, value, name = _lookup(tok)
        if spec is None:
            if name.startswith(("audit_", "noaudit_", "no_audit_")):
                raise FlagError(
                    f"{_where}unknown flag --{name} (known: {', '.join('--' + s for s in FLAG_SPECS)})"
                )
            rest.append(tok)
            i += 1
            continue
        if spec.kind is bool:
            if negated:
                if value is not None:
                    raise FlagError(f"{_where}--no{spec.name} takes no value (got {value!r})")
                values[spec.attr] = False
            else:
                values[spec.attr] = True if value is None else _parse_bool(spec.name, value, _where)
        else:
            if negated:
                raise FlagError(f"{_where}--no{spec.name}: {spec.name} is not a boolean flag")
            if value is None:
                if i + 1 >= n or argv[i + 1].startswith("--"):
                    raise FlagError(f"{_where}--{spec.name} needs a value (an integer)")
                i += 1
                value = argv[i]
            values[spec.attr] = _parse_int(spec.name, value, _where)
        i += 1
    return replace(current, **values), rest


def parse_flags(
    argv: Iterable[str], base: AuditFlags | None = None, *, warn: Callable[[str], None] | None = None
) -> AuditFlags:
    """Parse a list made only of audit flags (a scenario's ``flags:``); anything else is an error."""
    flags, rest = split_flags(list(argv), base, warn=warn)
    if rest:
        raise FlagError(f"not an audit flag: {' '.join(rest)!r}")
    return flags


def read_flagfile(
    path: str | Path,
    base: AuditFlags | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    _depth: int = 1,
) -> AuditFlags:
    """Apply an osquery flags file: one ``--flag[=value]`` per line, ``#`` comments, blanks.

    osquery flags that are not audit flags (``--logger_plugin=...``, ``--disable_audit=false``)
    and osquery audit flags kaudit does not implement are ignored with one warning, so that an
    existing osquery flags file works unchanged; an unknown ``--audit_*`` flag is an error
    (most likely a typo that would silently change what is collected).
    """
    if _depth > _MAX_FLAGFILE_DEPTH:
        raise FlagError(f"flagfile {path}: flag files nest deeper than {_MAX_FLAGFILE_DEPTH} (a loop?)")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlagError(f"flagfile {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlagError(f"flagfile {path}: cannot read: {exc}") from None
    current = base or AuditFlags()
    ignored: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}: "
        if not line.startswith("--"):
            if line.startswith("-") and not line.startswith("--"):
                line = "-" + line  # gflags also takes a single dash
            else:
                raise FlagError(f"{where}{line!r} is not a flag (expected --name[=value])")
        # a line is one flag, even when its value holds spaces
        name = line[2:].split("=", 1)[0].replace("-", "_")
        if _is_flagfile(line):
            if "=" not in line:
                raise FlagError(f"{where}--flagfile in a flags file needs =PATH")
        else:
            bare = name[3:] if name.startswith("no_") else name[2:] if name.startswith("no") else name
            plain = name if name.startswith("audit_") else bare
            if plain in OSQUERY_AUDIT_FLAGS_NOT_IMPLEMENTED or not plain.startswith("audit_"):
                ignored.append(name)
                continue
            spec = FLAG_SPECS.get(name)
            if spec is not None and spec.kind is int and "=" not in line:
                raise FlagError(f"{where}--{name} needs =VALUE")
        current, rest = split_flags([line], current, warn=warn, _depth=_depth, _where=where)
        if rest:  # pragma: no cover - split_flags leaves only non-flags, filtered out above
            raise FlagError(f"{where}not an audit flag: {rest[0]!r}")
    if ignored and warn is not None:
        warn(f"flagfile {path}: ignoring {len(ignored)} flag(s) kaudit does not use: {', '.join(ignored)}")
    return current


def _stderr_warn(msg: str) -> None:
    print(f"kaudit: warning: {msg}", file=sys.stderr)


def add_flag_arguments(parser: argparse.ArgumentParser, defaults: AuditFlags | None = None) -> None:
    """Give ``parser`` the audit flags and ``--flagfile``; the result lands in ``args.audit_flags``.

    The flags are listed in ``--help`` through an argument group, but they are taken out of
    the command line before argparse sees it (``split_flags``): argparse cannot express gflags'
    "bare means true, ``=false`` turns off, never eat the next word". The parser's
    ``parse_known_args`` is wrapped for that; ``argparse``'s sub-command action calls it.
    """
    base = defaults or AuditFlags()
    group = parser.add_argument_group(
        "osquery audit flags",
        "osquery's flag names and syntax: bare = true, --flag=false or --noflag = off, '_' or '-'. "
        "Defaults here: " + (" ".join(base.as_flags())),
    )
    group.add_argument("--flagfile", metavar="PATH", help="read flags from an osquery flags file")
    for spec in FLAG_SPECS.values():
        metavar = "N" if spec.kind is int else "[=BOOL]"
        group.add_argument(f"--{spec.name}", metavar=metavar, help=spec.help, dest=f"_flag_{spec.attr}")
    parser.set_defaults(audit_flags=base)
    original = parser.parse_known_args

    def parse_known_args(args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        tokens = list(sys.argv[1:] if args is None else args)
        try:
            flags, rest = split_flags(tokens, base, warn=_stderr_warn)
        except FlagError as exc:
            parser.error(str(exc))
        ns, extras = original(rest, namespace)
        ns.audit_flags = flags
        for spec in FLAG_SPECS.values():
            if hasattr(ns, f"_flag_{spec.attr}"):
                delattr(ns, f"_flag_{spec.attr}")
        if hasattr(ns, "flagfile"):
            delattr(ns, "flagfile")
        return ns, extras

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
