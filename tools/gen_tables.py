#!/usr/bin/env python3
"""Generate collector/protocol/_tables.py from the kernel's own headers.

Why generated: record types, rule field ids, operators, syscall numbers and errno values are the
kernel's, not ours. Copying them by hand drifts; go-libaudit solved the same problem with its
`z*.go` files. This script asks the C preprocessor (``gcc -dM -E``) for every macro of Debian's
linux-libc-dev headers (plus libaudit.h from libaudit-dev for the user-space record types that
audit.log files also carry), evaluates the integer ones and writes a plain Python module.

Usage: ``python tools/gen_tables.py [--output PATH] [--check]``; ``--check`` exits 1 when the
committed module differs from what the headers on this machine give.
"""

from __future__ import annotations

import argparse
import ast
import operator
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "collector" / "protocol" / "_tables.py"
INCLUDE = Path("/usr/include")
HEADERS = {
    "audit": INCLUDE / "linux" / "audit.h",
    "libaudit": INCLUDE / "libaudit.h",
    "errno": INCLUDE / "asm-generic" / "errno.h",
}
# x86_64 has its own table; aarch64 (like riscv64 and loongarch64) uses the generic one with the
# __ARCH_WANT_* switches that arch/arm64/include/uapi/asm/unistd.h sets.
AARCH64_DEFINES = [
    "-D__BITS_PER_LONG=64",
    "-D__ARCH_WANT_RENAMEAT",
    "-D__ARCH_WANT_NEW_STAT",
    "-D__ARCH_WANT_SET_GET_RLIMIT",
    "-D__ARCH_WANT_TIME32_SYSCALLS",
    "-D__ARCH_WANT_MEMFD_SECRET",
    "-D__ARCH_WANT_SYS_CLONE3",
]
# powerpc's table comes from Debian's linux-libc-dev-ppc64el-cross (ppc64 and ppc64le share it)
PPC64_UNISTD = Path("/usr/powerpc64le-linux-gnu/include/asm/unistd_64.h")

_DEFINE = re.compile(r"^#define\s+([A-Za-z_][A-Za-z0-9_]*)\s+(.*)$")
_OPS = {
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}


def _find_multiarch_asm(name: str) -> Path:
    for cand in sorted(INCLUDE.glob(f"x86_64-linux-gnu/asm/{name}")):
        return cand
    raise SystemExit(f"gen_tables: no x86_64-linux-gnu/asm/{name} under /usr/include (install linux-libc-dev)")


def macros(header: Path, extra: list[str] | None = None) -> dict[str, str]:
    """Every object-like macro the preprocessor sees after including `header`."""
    src = f"#include <{header}>\n"
    proc = subprocess.run(
        ["gcc", "-dM", "-E", *(extra or []), "-x", "c", "-"],
        input=src, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"gen_tables: preprocessing {header} failed:\n{proc.stderr}")
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = _DEFINE.match(line)
        if m and "(" not in m.group(1):
            out[m.group(1)] = m.group(2).strip()
    return out


def evaluate(name: str, defs: dict[str, str], seen: frozenset[str] = frozenset()) -> int | None:
    """Integer value of a macro made of literals, other macros and | & << >> + - *."""
    if name in seen or name not in defs:
        return None
    text = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\b", r"\1", defs[name])
    text = re.sub(r"\(\s*__u32\s*\)", "", text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> int | None:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return evaluate(node.id, defs, seen | {name})
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            a, b = ev(node.left), ev(node.right)
            return None if a is None or b is None else _OPS[type(node.op)](a, b)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = ev(node.operand)
            return None if v is None else -v
        return None

    return ev(tree)


def header_order(path: Path) -> list[str]:
    """Macro names in the order the header file defines them (sections are ordered)."""
    names = []
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)\s", line)
        if m:
            names.append(m.group(1))
    return names


def section(order: list[str], first: str, last: str) -> list[str]:
    i, j = order.index(first), order.index(last)
    return order[i : j + 1]


def build() -> str:
    audit_h = HEADERS["audit"]
    if not audit_h.exists():
        raise SystemExit(f"gen_tables: {audit_h} is missing (install linux-libc-dev)")
    defs = macros(audit_h)
    order = header_order(audit_h)
    values = {n: evaluate(n, defs) for n in defs if n.startswith("AUDIT_")}

    def is_type_name(n: str) -> bool:
        v = values.get(n)
        return (
            v is not None and 1000 <= v <= 2999
            and "FIRST_" not in n and "LAST_" not in n and not n.startswith("AUDIT_ARCH")
        )

    record_types: dict[str, int] = {}
    for n in order:
        if n.startswith("AUDIT_") and n in values and is_type_name(n) and n[6:] not in record_types:
            record_types[n[6:]] = values[n]  # type: ignore[assignment]
    kernel_type_names = set(record_types)
    lib = HEADERS["libaudit"]
    if lib.exists():
        ldefs = macros(lib)
        for n in header_order(lib):
            if n.startswith("AUDIT_") and n[6:] not in record_types and n in ldefs:
                v = evaluate(n, ldefs)
                if v is not None and 1000 <= v <= 2999 and "FIRST_" not in n and "LAST_" not in n:
                    record_types[n[6:]] = v

    fields = {n[6:]: values[n] for n in section(order, "AUDIT_PID", "AUDIT_FILTERKEY") if values.get(n) is not None}
    operators = {
        n[6:]: values[n] for n in section(order, "AUDIT_NEGATE", "AUDIT_OPERATORS") if values.get(n) is not None
    }
    compare = {n[6:]: values[n] for n in order if n.startswith("AUDIT_COMPARE_") and values.get(n) is not None}
    filters = {
        n[13:]: values[n]
        for n in order
        if n.startswith("AUDIT_FILTER_") and n != "AUDIT_FILTER_TYPE" and values.get(n) is not None
    }
    arches = {n[11:]: values[n] for n in order if n.startswith("AUDIT_ARCH_") and values.get(n) is not None}
    perms = {n[11:]: values[n] for n in order if n.startswith("AUDIT_PERM_") and values.get(n) is not None}
    status_bits = {n[13:]: values[n] for n in order if n.startswith("AUDIT_STATUS_") and values.get(n) is not None}
    feature_bits = {
        n[21:]: values[n] for n in order if n.startswith("AUDIT_FEATURE_BITMAP_") and values.get(n) is not None
    }
    misc_names = [
        "AUDIT_NEVER", "AUDIT_POSSIBLE", "AUDIT_ALWAYS", "AUDIT_MAX_FIELDS", "AUDIT_MAX_KEY_LEN",
        "AUDIT_BITMASK_SIZE", "AUDIT_FAIL_SILENT", "AUDIT_FAIL_PRINTK", "AUDIT_FAIL_PANIC",
        "AUDIT_FILTER_PREPEND", "AUDIT_FEATURE_VERSION", "AUDIT_FEATURE_ONLY_UNSET_LOGINUID",
        "AUDIT_FEATURE_LOGINUID_IMMUTABLE", "AUDIT_UNUSED_BITS", "AUDIT_SYSCALL_CLASSES",
        "AUDIT_VERSION_LATEST",
    ]
    misc = {n: values[n] for n in misc_names if values.get(n) is not None}

    errdefs = macros(HEADERS["errno"])
    errno = {n: evaluate(n, errdefs) for n in header_order(HEADERS["errno"]) + header_order(
        INCLUDE / "asm-generic" / "errno-base.h") if n.startswith("E") and n in errdefs}
    errno = {k: v for k, v in sorted(errno.items(), key=lambda kv: (kv[1] or 0, kv[0])) if v is not None}

    def syscalls(header: Path, extra: list[str] | None = None) -> dict[str, int]:
        d = macros(header, extra)
        out = {}
        for n in d:
            if n.startswith("__NR_") and not n.startswith("__NR3264"):
                v = evaluate(n, d)
                if v is not None and n != "__NR_syscalls" and n != "__NR_arch_specific_syscall":
                    out[n[5:]] = v
        return dict(sorted(out.items(), key=lambda kv: (kv[1], kv[0])))

    tables = {
        "x86_64": syscalls(_find_multiarch_asm("unistd_64.h")),
        "i386": syscalls(_find_multiarch_asm("unistd_32.h")),
        "aarch64": syscalls(INCLUDE / "asm-generic" / "unistd.h", AARCH64_DEFINES),
    }
    if not PPC64_UNISTD.exists():
        raise SystemExit(f"gen_tables: {PPC64_UNISTD} is missing (install linux-libc-dev-ppc64el-cross)")
    tables["ppc64"] = syscalls(PPC64_UNISTD, ["-D__powerpc64__"])

    def fmt(name: str, d: dict, doc: str) -> str:
        body = "".join(f"    {k!r}: {v},\n" if not isinstance(v, int) or v < 4096 else f"    {k!r}: {v:#x},\n"
                       for k, v in d.items())
        return f"# {doc}\n{name}: dict[str, int] = {{\n{body}}}\n\n"

    parts = [
        '"""GENERATED by tools/gen_tables.py from linux-libc-dev (and libaudit-dev) headers. Do not edit."""\n\n',
        fmt("RECORD_TYPES", record_types, "AUDIT_* message and record types (name without prefix -> number)"),
        f"KERNEL_RECORD_TYPE_NAMES: frozenset[str] = frozenset({sorted(kernel_type_names)!r})\n\n",
        fmt("RULE_FIELDS", fields, "audit_rule_data field ids"),
        fmt("OPERATORS", operators, "audit_rule_data field operators"),
        fmt("FIELD_COMPARE", compare, "AUDIT_FIELD_COMPARE values"),
        fmt("FILTERS", filters, "rule lists (AUDIT_FILTER_*)"),
        fmt("ARCHES", arches, "AUDIT_ARCH_* values"),
        fmt("PERMS", perms, "AUDIT_PERM_* bits"),
        fmt("STATUS_MASK", status_bits, "audit_status.mask bits"),
        fmt("FEATURE_BITMAP", feature_bits, "audit_status.feature_bitmap bits"),
        fmt("MISC", misc, "other audit.h constants"),
        fmt("ERRNO", errno, "errno names (asm-generic)"),
        "# syscall numbers per arch\nSYSCALLS: dict[str, dict[str, int]] = {\n",
        *(
            f"    {arch!r}: {{\n" + "".join(f"        {k!r}: {v},\n" for k, v in table.items()) + "    },\n"
            for arch, table in tables.items()
        ),
        "}\n",
    ]
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    ap.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = ap.parse_args(argv)
    text = build()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"gen_tables: {args.output} is stale; run tools/gen_tables.py", file=sys.stderr)
            return 1
        print(f"gen_tables: {args.output} is up to date")
        return 0
    args.output.write_text(text)
    print(f"gen_tables: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
