"""The error kinds every layer speaks.

Adapters translate foreign exceptions into these once, at their boundary; callers
branch on the kind, never on message text. Only the CLI's main() maps kinds to
exit codes.
"""

from __future__ import annotations


class VxnError(Exception):
    """Base of every error vxn raises on purpose. The message is one line."""

    kind = "internal"


class NotFound(VxnError):
    kind = "not_found"


class AlreadyExists(VxnError):
    kind = "already_exists"


class InvalidArgument(VxnError):
    """Bad input from a user or from untrusted content (images, archives, configs)."""

    kind = "invalid_argument"


class FailedPrecondition(VxnError):
    """The request is valid but the system is not in a state that allows it."""

    kind = "failed_precondition"


class Unavailable(VxnError):
    """An outside system (the daemon, a registry, the disk) cannot serve us now."""

    kind = "unavailable"


class Internal(VxnError):
    kind = "internal"


KINDS: dict[str, type[VxnError]] = {
    cls.kind: cls
    for cls in (NotFound, AlreadyExists, InvalidArgument, FailedPrecondition, Unavailable, Internal)
}


def from_kind(kind: str, message: str) -> VxnError:
    """Rebuild an error that crossed the API, keeping its kind."""
    return KINDS.get(kind, Internal)(message)
