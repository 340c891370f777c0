"""Scenario files: recorded kernel traffic, the faults to inject, and the rows it must produce.

A scenario is one YAML file (format in docs/scenarios.md, machine-checked by
``scenario_schema.json`` next to this module). The loader keeps the line of every YAML node
(through PyYAML's compose API, whose nodes carry ``start_mark``) so that every problem is
reported as ``file:line: problem``: a scenario that cannot be read is *that* scenario's failure,
and the person fixing it needs the place, not a traceback.

The loader only reads and validates. Serving a scenario through the simulator is
``simulator.replay``; comparing rows is ``simulator.check``.

Inputs other than scenario files (audit.log, ``ausearch --format raw``, pcap) load as a
scenario without expectations through :func:`load_any`, and as bare kernel messages through
:func:`load_messages` (what ``kaudit replay`` needs).
"""

from __future__ import annotations

import errno as errno_mod
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import yaml

from collector.protocol.netlink import NetlinkError, NetlinkMessage, decode_datagram, encode
from collector.protocol.records import is_record_type, record_type_name, record_type_number

__all__ = [
    "COUNTER_OPS",
    "FAULT_KINDS",
    "CounterExpect",
    "Expect",
    "ExpectedRow",
    "Fault",
    "KernelState",
    "Message",
    "Scenario",
    "ScenarioError",
    "Timing",
    "attach_scenario",
    "detect_format",
    "dump_scenario",
    "is_pcap",
    "load_any",
    "load_messages",
    "load_scenario",
    "messages_from_text",
    "parse_record_line",
    "parse_scenario_text",
    "schema",
]

SCHEMA_PATH = Path(__file__).with_name("scenario_schema.json")

# fault kind -> what it does (the vocabulary; docs/scenarios.md explains each one)
FAULT_KINDS: dict[str, str] = {
    "enobufs": "the client's next receive fails with ENOBUFS; optionally the next N messages are lost with it",
    "drop": "the next N messages are lost in the kernel (serial gaps; the kernel's lost counter grows)",
    "reorder": "the next len(list) messages are delivered in the listed order",
    "interleave": "the records of the next N events are delivered round-robin, one record per event",
    "duplicate": "the next message is delivered twice (or N+1 times)",
    "truncate": "the next datagram is cut to N bytes",
    "sender": "the next message arrives from netlink port N instead of the kernel (port 0)",
    "garbage": "a message whose text is not audit text",
    "delay": "nothing is sent for S seconds (long enough for an event to complete by timeout)",
    "steal_pid": "another process (pid N) registers itself as the audit daemon",
    "disable": "audit is disabled (enabled=0) mid-stream",
}
# faults that act on the messages that follow them
_NEXT_MESSAGE_FAULTS = {"drop", "reorder", "interleave", "duplicate", "truncate", "sender"}

# a capture carries no kernel state or flags: audit was on (it produced the records), and the
# collector configures the fake kernel and shows both tables, as `kaudit collect` does
CAPTURE_FLAGS = ("--audit_allow_config", "--audit_allow_sockets", "--audit_allow_process_events")

COUNTER_OPS = ("==", ">=", "<=", ">", "<", "!=")
_COUNTER_RE = re.compile(r"^\s*(==|>=|<=|>|<|!=)?\s*(\d+)\s*$")

# `type=NAME msg=audit(SEC.MSEC:SERIAL): body`, optionally prefixed by `node=HOST ` (auditd adds it)
_RECORD_RE = re.compile(
    r"^(?:node=(?P<node>\S+) )?type=(?P<type>\S+) msg=(?P<payload>audit\((?P<sec>\d+)\.(?P<msec>\d+):(?P<serial>\d+)\):?.*)$",
    re.S,
)
_GROUP_SEP = "\x1d"  # auditd's ENRICHED log format appends interpreted fields after this byte


class ScenarioError(ValueError):
    """A scenario (or capture) that cannot be used; ``str()`` is ``file:line: problem``."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------- dataclasses


@dataclass(slots=True)
class Message:
    """One netlink message as the kernel delivers it to the collector.

    ``payload`` is exactly the bytes after the netlink header. Records go to the registered
    daemon in the kernel's unicast form (``nlmsg_len`` = payload length, see
    collector/protocol/netlink.py); ``raw`` keeps a datagram the file gave byte for byte.
    """

    type: int
    payload: bytes
    line: int = 0
    at: float | None = None  # seconds since the capture started (recorded timing)
    flags: int = 0
    seq: int = 0
    pid: int = 0
    raw: bytes | None = None  # the exact datagram, when the scenario gave raw bytes
    kind: str = "record"  # "record" | "raw" | "message" | "garbage"

    @property
    def is_record(self) -> bool:
        return self.kind in ("record", "garbage") or (is_record_type(self.type) and self.kind != "message")

    def netlink(self) -> NetlinkMessage:
        return NetlinkMessage(self.type, self.flags, self.seq, self.pid, self.payload, short_len=self.is_record)

    def datagram(self) -> bytes:
        """The bytes of the datagram the collector receives."""
        if self.raw is not None:
            return self.raw
        return encode(self.netlink())

    def serial(self) -> int | None:
        """The audit serial of a record (for interleaving and diffs), else None."""
        m = _PAYLOAD_RE.match(self.payload.decode("utf-8", "replace"))
        return int(m.group(3)) if m else None

    def text(self) -> str | None:
        """The audit.log line for a record (``type=NAME msg=audit(...): ...``), else None."""
        if not self.is_record:
            return None
        try:
            body = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not _PAYLOAD_RE.match(body):
            return None
        return f"type={record_type_name(self.type)} msg={body}"


_PAYLOAD_RE = re.compile(r"^audit\((\d+)\.(\d+):(\d+)\):")


@dataclass(slots=True)
class Fault:
    """One injected fault (see FAULT_KINDS); only the fields of its kind are meaningful."""

    kind: str
    line: int = 0
    count: int = 1  # drop N, duplicate N, interleave N events, enobufs: messages lost with it
    order: tuple[int, ...] = ()  # reorder
    nbytes: int = 0  # truncate
    sender: int = 0  # sender port id
    seconds: float = 0.0  # delay
    pid: int = 0  # steal_pid
    message: Message | None = None  # garbage
    at: float | None = None


Step = Message | Fault


@dataclass(slots=True)
class KernelState:
    """The simulated kernel before the collector connects.

    ``status`` sets audit_status fields by name (others keep the model's defaults);
    ``rules`` are loaded first, in auditctl syntax; ``immutable`` is ``auditctl -e 2`` (every
    change refused with EPERM); ``refuse`` maps a request type name (``ADD_RULE``) to the
    errno the kernel answers it with, for a rule add refused by policy.
    """

    status: dict[str, int] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)
    immutable: bool = False
    refuse: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Timing:
    """How messages are paced: ``asap`` sends as fast as the collector reads; ``recorded``
    keeps each message's ``at`` offset, divided by ``speed``. ``settle`` is how long the
    collector may keep running after the last message; ``timeout`` bounds the whole run."""

    mode: str = "asap"
    speed: float = 1.0
    settle: float = 0.3
    timeout: float = 60.0
    fault_wait: float = 10.0  # how long to wait for the collector to recover from steal_pid/disable


@dataclass(slots=True)
class ExpectedRow:
    """A row the collector must produce; it matches any row with these column values."""

    columns: dict[str, Any]
    line: int = 0

    @property
    def table(self) -> str:
        return str(self.columns.get("table", ""))


@dataclass(slots=True)
class CounterExpect:
    op: str
    value: int
    line: int = 0

    def holds(self, got: int) -> bool:
        return {
            "==": got == self.value,
            ">=": got >= self.value,
            "<=": got <= self.value,
            ">": got > self.value,
            "<": got < self.value,
            "!=": got != self.value,
        }[self.op]

    def __str__(self) -> str:
        return str(self.value) if self.op == "==" else f"{self.op}{self.value}"


@dataclass(slots=True)
class Expect:
    """What the run must produce. ``rows`` is None when the scenario states no expectation
    (an imported capture); ``extra_rows`` allows rows the scenario does not list."""

    rows: list[ExpectedRow] | None = None
    extra_rows: bool = False
    counters: dict[str, CounterExpect] = field(default_factory=dict)
    kernel: dict[str, Any] = field(default_factory=dict)  # final status fields / rules after exit
    line: int = 0


@dataclass(slots=True)
class Scenario:
    name: str
    path: str = ""
    description: str = ""
    kernel: KernelState = field(default_factory=KernelState)
    flags: list[str] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)
    steps: list[Step] = field(default_factory=list)
    expect: Expect = field(default_factory=Expect)
    origin: dict[str, Any] = field(default_factory=dict)

    def messages(self) -> list[Message]:
        """The kernel messages in file order, faults left out (what plain replay sends)."""
        return [s for s in self.steps if isinstance(s, Message)]

    def faults(self) -> list[Fault]:
        return [s for s in self.steps if isinstance(s, Fault)]


# --------------------------------------------------------------------------- YAML with lines


@dataclass(slots=True)
class _Located:
    """Plain data from YAML plus the line of every node, keyed by its path."""

    data: Any
    lines: dict[tuple, int]  # path -> line of the value node
    key_lines: dict[tuple, int]  # path -> line of the key that introduced it


def _yaml_problem(exc: yaml.YAMLError, text: str, path: str) -> ScenarioError:
    """A PyYAML error as ``file:line: YAML error: ...``.

    Marked errors (scanner, parser, constructor) carry their place; the reader's error
    (a character YAML forbids, such as NUL or BEL) carries an offset into the text instead.
    """
    last = max(1, len(text.rstrip("\n").split("\n")))
    if isinstance(exc, yaml.reader.ReaderError):
        line = min(text[: max(0, exc.position)].count("\n") + 1, last)
        what = f"character {chr(exc.character)!r}" if isinstance(exc.character, int) else repr(exc.character)
        return ScenarioError(path, line, f"YAML error: {what} is not allowed in YAML text ({exc.reason})")
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        # an error found at the end of the stream belongs to the last line that exists
        line = min(mark.line + 1, last) if mark else None
        problem = exc.problem or exc.context or "malformed"
        if exc.context and exc.context_mark and exc.problem:
            problem += f" ({exc.context}, line {exc.context_mark.line + 1})"
        return ScenarioError(path, line, f"YAML error: {problem}")
    return ScenarioError(path, None, f"YAML error: {exc}")


def _compose(text: str, path: str) -> _Located:
    try:
        loader = yaml.SafeLoader(text)  # the reader checks every character here, at once
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc, text, path) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _yaml_problem(exc, text, path) from None
        except RecursionError:
            raise ScenarioError(path, None, "YAML error: nested too deeply") from None
        lines: dict[tuple, int] = {}
        key_lines: dict[tuple, int] = {}
        # aliases make a graph of the node tree: refuse a cycle (`&a [*a]`) and an expansion far
        # beyond the text (an alias bomb), either of which would never finish or fill memory
        active: set[int] = set()
        budget = [2 * len(text) + 10_000]

        def construct(n: yaml.Node) -> Any:
            try:
                return loader.construct_object(n, deep=True)
            except yaml.YAMLError as exc:  # an unknown tag (!a), a bad !!binary ...
                err = _yaml_problem(exc, text, path)
                raise ScenarioError(path, err.line or n.start_mark.line + 1, err.problem) from None
            except (ValueError, TypeError, OverflowError) as exc:  # `!!int abc`, `!!timestamp 2024-99-99`
                raise ScenarioError(path, n.start_mark.line + 1, f"YAML error: {n.tag} value: {exc}") from None

        def walk(n: yaml.Node, at: tuple) -> Any:
            lines[at] = n.start_mark.line + 1
            budget[0] -= 1
            if budget[0] < 0:
                raise ScenarioError(path, n.start_mark.line + 1, "YAML aliases expand to far more nodes than the text has")
            if id(n) in active:
                raise ScenarioError(path, n.start_mark.line + 1, "a YAML alias refers to a node that contains it")
            if not isinstance(n, (yaml.MappingNode, yaml.SequenceNode)):
                return construct(n)
            active.add(id(n))
            try:
                return walk_collection(n, at)
            finally:
                active.discard(id(n))

        def walk_collection(n: yaml.Node, at: tuple) -> Any:
            if isinstance(n, yaml.MappingNode):
                out: dict[Any, Any] = {}
                for k, v in n.value:
                    if k.tag == "tag:yaml.org,2002:merge":
                        raise ScenarioError(path, k.start_mark.line + 1, "YAML merge keys (<<) are not supported")
                    key = construct(k)
                    if not isinstance(key, (str, int)):
                        raise ScenarioError(path, k.start_mark.line + 1, f"mapping key {key!r} is not a string")
                    if key in out:
                        raise ScenarioError(path, k.start_mark.line + 1, f"duplicate key {key!r}")
                    key_lines[at + (key,)] = k.start_mark.line + 1
                    out[key] = walk(v, at + (key,))
                return out
            return [walk(v, at + (i,)) for i, v in enumerate(n.value)]

        try:
            data = walk(node, ()) if node is not None else None
        except RecursionError:
            raise ScenarioError(path, None, "YAML error: nested too deeply") from None
        return _Located(data, lines, key_lines)
    finally:
        loader.dispose()


def _line_of(loc: _Located, at: tuple, *, key: bool = False) -> int | None:
    at = tuple(at)
    while True:
        if key and at in loc.key_lines:
            return loc.key_lines[at]
        if at in loc.lines:
            return loc.lines[at]
        if not at:
            return None
        at = at[:-1]


# --------------------------------------------------------------------------- schema


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (simulator/scenario_schema.json)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema())
    return cls(schema())


def _where(at: tuple) -> str:
    out = ""
    for p in at:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "the top level"


def _schema_problem(err: Any) -> tuple[tuple, str, bool]:
    """(path, readable problem, whether the key's line is the better place)."""
    at = tuple(err.absolute_path)
    v = err.validator
    where = _where(at)
    if v == "additionalProperties":
        props = err.schema.get("properties", {})
        extra = [k for k in err.instance if k not in props]
        key = extra[0] if extra else None
        msg = f"unknown key {key!r} in {where}"
        if props:
            msg += f" (allowed: {', '.join(props)})"
        return (at + (key,) if key is not None else at), msg, True
    if v == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        return at, f"{where} is missing {', '.join(map(repr, missing))}", False
    if v == "oneOf" and isinstance(err.instance, dict) and all(
        set(b) == {"required"} for b in err.validator_value
    ):
        choices = [b["required"][0] for b in err.validator_value]
        present = [k for k in choices if k in err.instance]
        has = f" (has {', '.join(present)})" if present else ""
        return at, f"{where} needs exactly one of {', '.join(choices)}{has}", False
    if v == "enum" and at and at[-1] == "fault":
        return at, (
            f"{where}: unknown fault {err.instance!r} (alone: {', '.join(err.validator_value)}; "
            f"with an argument: {', '.join(k for k in FAULT_KINDS if k not in err.validator_value)})"
        ), False
    if v == "enum":
        return at, f"{where}: {err.instance!r} is not one of {', '.join(map(repr, err.validator_value))}", False
    if v == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return at, f"{where}: expected {want}, got {type(err.instance).__name__} {err.instance!r}", False
    if v in ("minProperties", "maxProperties") and err.schema.get("description", "").startswith("one of"):
        return at, f"{where}: {err.schema['description']}", False
    return at, f"{where}: {err.message}", False


def _validate_schema(loc: _Located, path: str) -> None:
    """Report the schema error that comes first in the file (what a reader fixes first)."""
    errors = list(_validator().iter_errors(loc.data))
    if not errors:
        return
    found = []
    for err in errors:
        at, problem, key = _schema_problem(err)
        found.append((_line_of(loc, at, key=key) or 0, len(at), problem))
    line, _, problem = min(found)
    raise ScenarioError(path, line or None, problem)


# --------------------------------------------------------------------------- records


def parse_record_line(line: str) -> tuple[int, bytes]:
    """(type number, netlink payload) of one audit.log / ``ausearch --format raw`` line.

    The payload is everything after ``msg=``: auditd writes the kernel's text verbatim there
    (``type=%s msg=%.*s``), so the line round-trips to the bytes the kernel sent. A
    ``node=`` prefix (added by auditd, never by the kernel) and auditd's ENRICHED suffix
    after 0x1D are dropped. Raises ValueError naming the problem.
    """
    text = line.rstrip("\r\n")
    if _GROUP_SEP in text:
        text = text.split(_GROUP_SEP, 1)[0]
    m = _RECORD_RE.match(text)
    if not m:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ValueError(f"not an audit record (want 'type=NAME msg=audit(SEC.MSEC:SERIAL): ...'): {shown!r}")
    try:
        number = record_type_number(m.group("type"))
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return number, m.group("payload").encode("utf-8", "surrogateescape")


def messages_from_text(text: str, path: str = "<text>") -> list[Message]:
    """Kernel record messages from audit.log or ``ausearch --format raw`` text.

    Blank lines, ``#`` comments and ausearch's ``----`` / ``time->`` lines are skipped; any
    other line that is not an audit record is an error naming the file and line. Lines are
    split on newlines only: ``str.splitlines`` would also split at auditd's 0x1D separator.
    """
    out: list[Message] = []
    for n, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped == "----" or stripped.startswith(("time->", "#")):
            continue
        try:
            number, payload = parse_record_line(line)
        except ValueError as exc:
            raise ScenarioError(path, n, str(exc)) from None
        out.append(Message(number, payload, line=n))
    return out


# --------------------------------------------------------------------------- conversion


def _errno_value(v: Any) -> int:
    if isinstance(v, int):
        return abs(v)
    name = str(v).lstrip("-")
    num = getattr(errno_mod, name, None)
    if not isinstance(num, int):
        raise ValueError(f"unknown errno name {v!r}")
    return num


def _type_value(v: Any) -> int:
    if isinstance(v, int):
        return v
    return record_type_number(str(v))


def _hex_bytes(v: str) -> bytes:
    return bytes.fromhex("".join(str(v).split()))


class _Builder:
    """Turns validated plain data into a Scenario, with file:line for semantic problems."""

    def __init__(self, loc: _Located, path: str) -> None:
        self.loc = loc
        self.path = path

    def fail(self, at: tuple, problem: str, *, key: bool = False) -> ScenarioError:
        return ScenarioError(self.path, _line_of(self.loc, at, key=key), problem)

    def build(self) -> Scenario:
        d = self.loc.data
        sc = Scenario(name=d["name"], path=self.path, description=d.get("description", "") or "")
        sc.kernel = self.kernel(d.get("kernel") or {})
        sc.flags = list(d.get("flags") or [])
        self.check_flags(sc.flags)
        t = d.get("timing") or {}
        sc.timing = Timing(
            mode=t.get("mode", "asap"),
            speed=float(t.get("speed", 1.0)),
            settle=float(t.get("settle", 0.3)),
            timeout=float(t.get("timeout", 60.0)),
            fault_wait=float(t.get("fault_wait", 10.0)),
        )
        sc.steps = [self.step(i, s) for i, s in enumerate(d.get("messages") or [])]
        self.check_steps(sc.steps)
        sc.expect = self.expect(d.get("expect"))
        sc.origin = dict(d.get("origin") or {})
        return sc

    def kernel(self, k: dict[str, Any]) -> KernelState:
        ks = KernelState(
            status=dict(k.get("status") or {}),
            rules=list(k.get("rules") or []),
            immutable=bool(k.get("immutable", False)),
        )
        if ks.status.get("enabled") == 2:
            ks.immutable = True
        for name, v in (k.get("refuse") or {}).items():
            try:
                _type_value(name)
                ks.refuse[str(name)] = _errno_value(v)
            except ValueError as exc:
                raise self.fail(("kernel", "refuse", name), str(exc)) from None
        parse_rule = _optional("collector.protocol.auditctl", "parse_rule")
        if parse_rule is not None:
            for i, rule in enumerate(ks.rules):
                try:
                    parse_rule(rule)
                except Exception as exc:  # noqa: BLE001 - any rule error is this file's problem
                    raise self.fail(("kernel", "rules", i), f"bad rule {rule!r}: {exc}") from None
        return ks

    def check_flags(self, flags: list[str]) -> None:
        parse = _optional("collector.flags", "parse_flags")
        if parse is None:
            return
        try:
            parse(list(flags), warn=lambda _m: None)
        except SystemExit:
            raise self.fail(("flags",), f"bad collector flags {' '.join(flags)}") from None
        except Exception as exc:  # noqa: BLE001
            raise self.fail(("flags",), f"bad collector flags: {exc}") from None

    def step(self, i: int, s: dict[str, Any]) -> Step:
        at = ("messages", i)
        line = _line_of(self.loc, at) or 0
        when = s.get("at")
        if "record" in s:
            try:
                number, payload = parse_record_line(s["record"])
            except ValueError as exc:
                raise self.fail(at + ("record",), str(exc)) from None
            return Message(number, payload, line=line, at=when)
        if "raw" in s:
            try:
                data = _hex_bytes(s["raw"])
            except ValueError:
                raise self.fail(at + ("raw",), "raw is not hex bytes") from None
            try:
                msgs = decode_datagram(data)
            except NetlinkError as exc:
                raise self.fail(
                    at + ("raw",), f"raw is not a netlink datagram ({exc}); use a truncate fault for that"
                ) from None
            first = msgs[0]
            return Message(first.type, first.payload, line=line, at=when, flags=first.flags, seq=first.seq,
                           pid=first.pid, raw=data, kind="raw")
        if "message" in s:
            m = s["message"]
            try:
                number = _type_value(m["type"])
            except ValueError as exc:
                raise self.fail(at + ("message", "type"), str(exc)) from None
            if "hex" in m:
                try:
                    payload = _hex_bytes(m["hex"])
                except ValueError:
                    raise self.fail(at + ("message", "hex"), "hex is not hex bytes") from None
            else:
                payload = str(m.get("text", "")).encode("utf-8", "surrogateescape")
            return Message(number, payload, line=line, at=when, flags=int(m.get("flags", 0)),
                           seq=int(m.get("seq", 0)), pid=int(m.get("pid", 0)), kind="message")
        return self.fault(at, line, s["fault"], when)

    def fault(self, at: tuple, line: int, f: Any, when: float | None) -> Fault:
        if isinstance(f, str):
            kind, arg = f, None
        else:
            ((kind, arg),) = f.items()
        fa = Fault(kind, line=line, at=when)
        here = at + ("fault", kind) if not isinstance(f, str) else at + ("fault",)
        if kind == "enobufs":
            fa.count = int((arg or {}).get("drop", 0)) if isinstance(arg, dict) else 0
        elif kind in ("drop", "duplicate"):
            fa.count = 1 if arg is None else int(arg)
        elif kind == "interleave":
            fa.count = 2 if arg is None else int(arg)
        elif kind == "reorder":
            order = tuple(int(x) for x in arg)
            if sorted(order) != list(range(len(order))):
                raise self.fail(here, f"reorder {list(order)} is not a permutation of 0..{len(order) - 1}")
            fa.order = order
            fa.count = len(order)
        elif kind == "truncate":
            fa.nbytes = int(arg)
        elif kind == "sender":
            fa.sender = int(arg)
        elif kind == "delay":
            fa.seconds = float(arg)
        elif kind == "steal_pid":
            fa.pid = int(arg)
        elif kind == "garbage":
            g = arg if isinstance(arg, dict) else {"text": arg}
            try:
                number = _type_value(g.get("type", "SYSCALL"))
            except ValueError as exc:
                raise self.fail(here, str(exc)) from None
            if "hex" in g:
                payload = _hex_bytes(g["hex"])
            else:
                payload = str(g.get("text", "")).encode("utf-8", "surrogateescape")
            fa.message = Message(number, payload, line=line, kind="garbage")
        elif kind == "disable":
            pass
        else:  # the schema lists the kinds; this guards a schema/code mismatch
            raise self.fail(here, f"unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
        return fa

    def check_steps(self, steps: list[Step]) -> None:
        """A fault that acts on following messages must have enough of them."""
        for i, s in enumerate(steps):
            if not isinstance(s, Fault) or s.kind not in _NEXT_MESSAGE_FAULTS:
                continue
            following = [m for m in steps[i + 1 :] if isinstance(m, Message)]
            if s.kind == "interleave":
                serials = {m.serial() for m in following if m.serial() is not None}
                need, have, what = s.count, len(serials), "events"
            else:
                need = s.count if s.kind in ("drop", "reorder") else 1
                have, what = len(following), "messages"
            if have < need:
                raise ScenarioError(
                    self.path, s.line, f"fault {s.kind} needs {need} following {what}, the scenario has {have}"
                )

    def expect(self, e: dict[str, Any] | None) -> Expect:
        if e is None:
            return Expect()
        ex = Expect(extra_rows=bool(e.get("extra_rows", False)), line=_line_of(self.loc, ("expect",)) or 0)
        if "rows" in e:
            ex.rows = [self.row(i, r) for i, r in enumerate(e["rows"] or [])]
        for name, v in (e.get("counters") or {}).items():
            at = ("expect", "counters", name)
            if isinstance(v, bool):
                raise self.fail(at, f"counter {name}: expected a number or a comparison like '>=1', got {v!r}")
            m = _COUNTER_RE.match(str(v))
            if not m:
                raise self.fail(at, f"counter {name}: expected a number or a comparison like '>=1', got {v!r}")
            ex.counters[str(name)] = CounterExpect(m.group(1) or "==", int(m.group(2)), _line_of(self.loc, at) or 0)
        ex.kernel = dict(e.get("kernel") or {})
        return ex

    def row(self, i: int, r: dict[str, Any]) -> ExpectedRow:
        at = ("expect", "rows", i)
        cols = dict(r)
        try:
            from collector.rows import row_class
        except ImportError:  # pragma: no cover - collector always ships rows.py
            return ExpectedRow(cols, _line_of(self.loc, at) or 0)
        try:
            cls = row_class(str(cols.get("table")))
        except KeyError as exc:
            raise self.fail(at + ("table",), str(exc).strip("'\"")) from None
        types = cls.COLUMN_TYPES
        for col, v in list(cols.items()):
            if col == "table":
                continue
            if col not in types:
                raise self.fail(at + (col,), f"unknown column {col!r} in {cls.table}", key=True)
            if types[col] == "TEXT":
                if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                    raise self.fail(at + (col,), f"{cls.table}.{col} is TEXT: got {v!r}")
                cols[col] = v if isinstance(v, str) else str(v)
            else:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise self.fail(at + (col,), f"{cls.table}.{col} is {types[col]}: got {v!r}")
        return ExpectedRow(cols, _line_of(self.loc, at) or 0)


def _optional(module: str, attr: str) -> Any:
    """A helper from a module another engineer owns, or None while it does not exist yet."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(mod, attr, None)


# --------------------------------------------------------------------------- entry points


def parse_scenario_text(text: str, path: str = "<scenario>") -> Scenario:
    """A Scenario from YAML text; raises ScenarioError(file:line: problem)."""
    loc = _compose(text, path)
    if not isinstance(loc.data, dict):
        raise ScenarioError(path, _line_of(loc, ()) or 1, "a scenario file must be a YAML mapping (name:, messages:, ...)")
    _validate_schema(loc, path)
    return _Builder(loc, path).build()


def load_scenario(path: str | Path) -> Scenario:
    """Read one scenario file; raises ScenarioError(file:line: problem)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ScenarioError(p, None, f"cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ScenarioError(p, line, "not UTF-8 text") from None
    return parse_scenario_text(text, str(p))


_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")


def is_pcap(path: str | Path) -> bool:
    try:
        with open(path, "rb") as fp:
            return fp.read(4) in _PCAP_MAGICS
    except OSError:
        return False


def _is_scenario_path(p: Path) -> bool:
    return p.suffix.lower() in (".yaml", ".yml")


def load_any(path: str | Path) -> Scenario:
    """A scenario from a scenario file, a pcap, or audit.log / ausearch raw text.

    A capture has no expectations (``expect.rows`` is None): checking it runs it through the
    collector and reports the rows it produced.
    """
    p = Path(path)
    if _is_scenario_path(p):
        return load_scenario(p)
    if is_pcap(p):
        from .pcap import read_pcap

        msgs = [m for m in read_pcap(p) if m.is_record]
    else:
        try:
            text = p.read_bytes().decode("utf-8", "surrogateescape")
        except OSError as exc:
            raise ScenarioError(p, None, f"cannot read: {exc.strerror}") from None
        msgs = messages_from_text(text, str(p))
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", p.name).strip("-") or "capture"
    return Scenario(name=name, path=str(p), description=f"imported from {p.name}", steps=list(msgs),
                    kernel=KernelState(status={"enabled": 1}), flags=list(CAPTURE_FLAGS))


def attach_scenario(server: Any, path: str | Path | Scenario, **kw: Any) -> Any:
    """Serve a scenario on a running simulator endpoint (``kaudit simulate ... SCENARIO``).

    Loads it (ScenarioError on a bad file), puts its kernel state into ``server.kernel`` and
    replays its messages once a client registers or joins the multicast group; the serving is
    ``simulator.replay.attach_scenario``, which returns the running ``ScenarioFeed``.
    """
    from .replay import attach_scenario as attach

    return attach(server, path, **kw)


def detect_format(name: str, head: bytes) -> str | None:
    """``"pcap"``, ``"scenario"`` or None (audit.log text, or not ours) from a source's name and
    first bytes: pcap by magic number, scenario by ``.yaml``/``.yml`` suffix or a top-level
    ``messages:`` key near the start."""
    if head[:4] in _PCAP_MAGICS:
        return "pcap"
    if str(name).lower().endswith((".yaml", ".yml")):
        return "scenario"
    if re.search(rb"(?m)^messages\s*:", head) and re.search(rb"(?m)^name\s*:", head):
        return "scenario"
    return None


def load_messages(source: str | Path | IO[bytes], name: str | None = None) -> list[NetlinkMessage]:
    """The kernel messages of a scenario file, pcap, or audit.log / ausearch raw file, in order.

    ``source`` is a path or a binary stream (then ``name`` names it in errors and helps
    detection). What ``kaudit replay`` feeds the pipeline: records in the unicast form the
    daemon gets (``short_len=True``), other kernel messages as they were. Faults, timing and
    expectations of a scenario are not applied (that is ``kaudit check``). Raises
    ScenarioError naming the file and line (or packet) on bad input.
    """
    if hasattr(source, "read"):
        data = source.read()  # type: ignore[union-attr]
        label = name or getattr(source, "name", "<stream>")
        sc = _load_bytes(data, str(label))
    else:
        sc = load_any(source)
    out: list[NetlinkMessage] = []
    for m in sc.messages():
        if m.raw is not None:
            try:
                out.extend(decode_datagram(m.raw))
            except NetlinkError as exc:  # the loader checked this already; keep the contract
                raise ScenarioError(sc.path, m.line, str(exc)) from None
        else:
            out.append(m.netlink())
    return out


def _load_bytes(data: bytes, label: str) -> Scenario:
    kind = detect_format(label, data[:4096])
    if kind == "pcap":
        import tempfile

        from .pcap import read_pcap

        with tempfile.NamedTemporaryFile(suffix=".pcap") as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                msgs = [m for m in read_pcap(tmp.name) if m.is_record]
            except ScenarioError as exc:
                raise ScenarioError(label, exc.line, exc.problem) from None
        return Scenario(name="capture", path=label, steps=list(msgs))
    if kind == "scenario":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScenarioError(label, data[: exc.start].count(b"\n") + 1, "not UTF-8 text") from None
        return parse_scenario_text(text, label)
    return Scenario(name="capture", path=label,
                    steps=list(messages_from_text(data.decode("utf-8", "surrogateescape"), label)))


# --------------------------------------------------------------------------- writing


class _Flow(dict):
    """A mapping written on one line (a row), so scenario diffs are one line per row."""


class _Dumper(yaml.SafeDumper):
    """Indents list items under their key, as people write YAML by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str_rep(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    style = None
    if any(c in s for c in ":#'\"{}[],&*!|>%@`") or s != s.strip() or s == "":
        style = "'"
    if any((ord(c) < 32 and c != "\t") or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) <= 0xDFFF for c in s):
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Dumper.add_representer(str, _str_rep)
_Dumper.add_representer(_Flow, lambda d, m: d.represent_mapping("tag:yaml.org,2002:map", m.items(), flow_style=True))


def _dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 30,
                     default_flow_style=False)


def _record_line(m: Message) -> str | None:
    """``m`` as a ``record:`` line that loads back to the same type and payload, else None.

    Not only well-formed records: a payload with a malformed header (``audit(1.1:25)``
    without ``): ``) is still a record the kernel model sends, and must stay one; as a
    ``raw:`` datagram it would replay past the model (even with audit off).
    """
    line = f"type={record_type_name(m.type)} msg={m.payload.decode('utf-8', 'surrogateescape')}"
    try:
        ok = parse_record_line(line) == (m.type, m.payload)
    except ValueError:
        return None
    return line if ok else None


def _message_entry(m: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    text = _record_line(m) if m.kind == "record" and m.raw is None else None
    if text is not None:
        entry["record"] = text
    elif m.kind == "message" or not m.is_record:
        msg: dict[str, Any] = {"type": record_type_name(m.type) if m.type >= 1000 else m.type}
        for k in ("flags", "seq", "pid"):
            if getattr(m, k):
                msg[k] = getattr(m, k)
        try:
            msg["text"] = m.payload.decode("utf-8")
            if any(ord(c) < 32 for c in msg["text"]):
                raise UnicodeDecodeError("utf-8", b"", 0, 1, "control")
        except UnicodeDecodeError:
            msg.pop("text", None)
            msg["hex"] = m.payload.hex()
        entry["message"] = _Flow(msg)
    else:
        entry["raw"] = m.datagram().hex()
    if m.at is not None:
        entry["at"] = round(m.at, 6)
    return entry


def _fault_entry(f: Fault) -> dict[str, Any]:
    arg: Any
    if f.kind == "enobufs":
        arg = {"drop": f.count} if f.count else None
    elif f.kind in ("drop", "duplicate", "interleave"):
        arg = f.count
    elif f.kind == "reorder":
        arg = list(f.order)
    elif f.kind == "truncate":
        arg = f.nbytes
    elif f.kind == "sender":
        arg = f.sender
    elif f.kind == "delay":
        arg = f.seconds
    elif f.kind == "steal_pid":
        arg = f.pid
    elif f.kind == "garbage":
        assert f.message is not None
        arg = {"type": record_type_name(f.message.type) if f.message.type >= 1000 else f.message.type}
        try:  # the same bytes back: text when it is plain UTF-8, else hex
            text = f.message.payload.decode("utf-8")
            if any(ord(c) < 32 and c != "\t" for c in text):
                raise ValueError(text)
            arg["text"] = text
        except ValueError:  # UnicodeDecodeError included
            arg["hex"] = f.message.payload.hex()
    else:
        arg = None
    entry: dict[str, Any] = {"fault": f.kind if arg is None else _Flow({f.kind: arg})}
    if f.at is not None:
        entry["at"] = f.at
    return entry


def dump_scenario(sc: Scenario) -> str:
    """YAML text of a scenario: one line per message and per expected row, so that diffs
    between two recordings read as diffs of records and rows."""
    head: dict[str, Any] = {"name": sc.name}
    if sc.description:
        head["description"] = sc.description
    if sc.origin:
        head["origin"] = dict(sc.origin)
    k: dict[str, Any] = {}
    if sc.kernel.status:
        k["status"] = _Flow(sc.kernel.status)
    if sc.kernel.rules:
        k["rules"] = list(sc.kernel.rules)
    if sc.kernel.immutable:
        k["immutable"] = True
    if sc.kernel.refuse:
        k["refuse"] = _Flow({n: errno_mod.errorcode.get(v, v) for n, v in sc.kernel.refuse.items()})
    if k:
        head["kernel"] = k
    if sc.flags:
        head["flags"] = list(sc.flags)
    t = sc.timing
    if t != Timing():
        tim: dict[str, Any] = {"mode": t.mode}
        defaults = Timing()
        for name in ("speed", "settle", "timeout", "fault_wait"):
            if getattr(t, name) != getattr(defaults, name):
                tim[name] = getattr(t, name)
        head["timing"] = tim
    parts = [_dump(head)]
    steps = [(_message_entry(s) if isinstance(s, Message) else _fault_entry(s)) for s in sc.steps]
    parts.append("messages:\n" if steps else "messages: []\n")
    for e in steps:
        parts.append(_indent_item(_dump(e)))
    ex = sc.expect
    exp: dict[str, Any] = {}
    if ex.rows is not None:
        exp["rows"] = [_Flow(r.columns) for r in ex.rows]
    if ex.extra_rows:
        exp["extra_rows"] = True
    if ex.counters:
        exp["counters"] = _Flow({n: (c.value if c.op == "==" else str(c)) for n, c in ex.counters.items()})
    if ex.kernel:
        exp["kernel"] = ex.kernel
    if exp:
        text = _dump({"expect": exp})
        parts.append(text)
    return "".join(parts)


def _indent_item(text: str) -> str:
    lines = text.rstrip("\n").split("\n")
    out = ["  - " + lines[0]] + ["    " + ln for ln in lines[1:]]
    return "\n".join(out) + "\n"
