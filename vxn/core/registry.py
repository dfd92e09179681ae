"""The registry protocol's small print, as pure functions (distribution-spec, token.md).

Owns: WWW-Authenticate challenges, token responses and pull scopes, Retry-After,
Content-Range, the registry's JSON error bodies, and the retry delays (backoff with
full jitter; the random number is passed in). The registry adapter does the I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime

# token.md: "If unspecified, assume 60 seconds"; shorter values are raised to it too.
MIN_TOKEN_LIFETIME = 60
# Statuses worth another try: throttling and the registry's (or its proxy's) hiccups.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_RE = re.compile(rf"\s*,?\s*({_TOKEN})(?=\s|$|,)")
_PARAM_RE = re.compile(rf'\s*,?\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """One challenge of a WWW-Authenticate header: `Bearer realm="…",service="…"`."""

    scheme: str  # lowercase: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)  # lowercase keys

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenges(header: str) -> tuple[Challenge, ...]:
    """Every challenge in a WWW-Authenticate value (RFC 7235); junk ends the parse."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme = _SCHEME_RE.match(header, pos)
        if scheme is None:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while (param := _PARAM_RE.match(header, pos)) is not None:
            params[param.group(1).lower()] = _unquote(param.group(2))
            pos = param.end()
        out.append(Challenge(scheme=scheme.group(1).lower(), params=params))
    return tuple(out)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    value: str
    lifetime: float  # seconds from issue


def parse_token(data: bytes) -> Token:
    """A token endpoint's answer: `{"token"|"access_token": …, "expires_in": …}`."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise ValueError("the token endpoint's answer is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("the token endpoint's answer is not a JSON object")
    value = doc.get("token") or doc.get("access_token")
    if not isinstance(value, str) or not value:
        raise ValueError("the token endpoint's answer has no token")
    expires = doc.get("expires_in")
    lifetime = float(MIN_TOKEN_LIFETIME)
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        lifetime = float(expires)
    return Token(value=value, lifetime=max(lifetime, MIN_TOKEN_LIFETIME))


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())


def backoff(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Delay before retry number `attempt` (1, 2, …): full jitter over base·2^(n-1)."""
    return rand * min(cap, base * 2.0 ** (attempt - 1))


def content_range_start(value: str | None, size: int) -> int | None:
    """Where a 206 reply's body starts, if its Content-Range is `bytes N-(size-1)/size`."""
    match = _CONTENT_RANGE_RE.fullmatch((value or "").strip())
    if match is None:
        return None
    start, end, total = match.groups()
    if int(end) != size - 1 or total not in ("*", str(size)):
        return None
    return int(start)


def error_message(body: bytes, reason: str) -> str:
    """The registry's own words from `{"errors": [{"code", "message"}]}`, else the reason."""
    try:
        errors = json.loads(body).get("errors")
    except (ValueError, AttributeError, RecursionError):
        errors = None
    parts = []
    for e in errors if isinstance(errors, list) else []:
        if isinstance(e, dict):
            code, message = e.get("code"), e.get("message")
            text = ": ".join(str(x) for x in (code, message) if isinstance(x, str) and x)
            if text:
                parts.append(text)
    text = "; ".join(parts) or reason
    return " ".join(text.split())[:300]
