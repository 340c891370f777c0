"""The native socket drain (``_drain.c``): loaded once, or None with the reason kept.

Why a module of its own: the drainer (collector.receiver) only needs one small C function,
and must not depend on the fast lane's row classes or its build succeeding; and the process
drainer must have it loaded *before* it forks (a child must not dlopen after fork), so the
receiver calls :func:`drain_module` in the parent and the child finds it cached.

``KAUDIT_FASTLANE=0`` turns it off (the Python loop drains), ``KAUDIT_FASTLANE=1`` makes a
failed build an error instead of a quiet fallback, as for the fast lane.
"""

from __future__ import annotations

from types import ModuleType

from collector.fastlane.build import ENV, NativeModule

__all__ = ["ENV", "drain_module", "drain_status"]

_DRAIN = NativeModule("_drain")


def drain_module() -> ModuleType | None:
    """The loaded ``_drain`` extension, or None (``drain_status()`` says why). Built once per process."""
    return _DRAIN.get()


def drain_status() -> str:
    """``on`` or why the native drain is off."""
    return _DRAIN.status()
