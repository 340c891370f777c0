"""Which rows the table subscribers emit: osquery's audit table flags as one value.

The names are osquery's flag names without the ``audit_`` prefix, and the defaults are
osquery's own defaults (``audit_allow_process_events`` is on, ``audit_allow_sockets`` is off,
``audit_allow_accept_socket_events`` is on), so that an osquery configuration means the same
thing here. ``collector.flags`` maps the command line onto this object; the subscribers read it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["TableOptions"]


@dataclass(slots=True, frozen=True)
class TableOptions:
    """The table-side audit flags, defaults as in osquery.

    - ``allow_sockets``: emit ``socket_events`` rows (osquery: off).
    - ``allow_process_events``: emit ``process_events`` rows (osquery: on).
    - ``allow_failed_socket_events``: keep socket syscalls that failed, with
      ``status=failed`` and ``success=0`` (osquery: off). A connect that returned
      -EINPROGRESS is not a failure and is kept regardless.
    - ``allow_accept_socket_events``: accept/accept4 rows (osquery: on).
    - ``allow_null_accept_socket_events``: a non-blocking accept that returned -EAGAIN
      becomes ``status=no_client`` (osquery: off; without it such an accept is a failure).
    - ``allow_unix``: unix domain sockets, path and abstract (osquery: off).
    - ``allow_fork_process_events``: fork, vfork, clone, clone3 rows (osquery: off).
    - ``allow_kill_process_events``: kill, tkill, tgkill rows (osquery: off).
    """

    allow_sockets: bool = False
    allow_process_events: bool = True
    allow_failed_socket_events: bool = False
    allow_accept_socket_events: bool = True
    allow_null_accept_socket_events: bool = False
    allow_unix: bool = False
    allow_fork_process_events: bool = False
    allow_kill_process_events: bool = False

    @classmethod
    def flag_names(cls) -> dict[str, str]:
        """osquery flag name (``audit_allow_unix``) -> field name (``allow_unix``)."""
        return {f"audit_{f.name}": f.name for f in fields(cls)}
