"""Answering a registry's challenge, plugged into oras-py's auth hook.

oras's own backends break on Basic-auth registries (the token backend takes a Basic
realm for a token URL) and keep one token for all scopes. This one reads the
WWW-Authenticate challenge: Bearer gets a token from the realm (with the user's
password, or their identity token as an OAuth2 refresh token), cached until shortly
before it expires and fetched again when the registry rejects it; Basic gets the
credentials. One lock, so parallel downloads share one token request.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from typing import Any

import oras.auth.token
import requests

from vxn.adapters.registry_http import HttpClient
from vxn.core.credentials import Credentials
from vxn.core.registry import (
    RETRY_STATUSES,
    Challenge,
    Token,
    error_message,
    parse_challenges,
    parse_token,
)
from vxn.errors import FailedPrecondition, InvalidArgument, Unavailable

# Renew a token this share of its lifetime early, so it does not expire mid-request.
_EARLY = 0.1


class Auth(oras.auth.token.TokenAuth):  # type: ignore[misc]
    def __init__(self, http: HttpClient, credentials: Credentials | None, scope: str) -> None:
        super().__init__()
        self.session = http.session
        self._http = http
        self._credentials = credentials
        self._scope = scope
        self._lock = threading.Lock()
        self._header: str | None = None
        self._expires = math.inf
        self.token: str | None = None  # oras sends get_auth_header() once this is set

    def get_auth_header(self) -> dict[str, str]:
        with self._lock:
            if self._header is None or time.monotonic() >= self._expires:
                return {}
            return {"Authorization": self._header}

    def authenticate_request(
        self, original: Any, headers: dict[str, str], refresh: bool = False
    ) -> tuple[dict[str, str], bool]:
        """oras calls this on a 401 (and on a 403, with refresh): what to send next.

        Always "try again": when nothing helps, the repeated request fails with the
        registry's own message, which is what the user needs to see.
        """
        challenges = parse_challenges(original.headers.get("WWW-Authenticate", ""))
        with self._lock:
            renewed = self._header is not None and headers.get("Authorization") != self._header
            if refresh or not renewed or time.monotonic() >= self._expires:
                self._answer(challenges)
            out = dict(headers)
            if self._header is not None:
                out["Authorization"] = self._header
        return out, True

    def _answer(self, challenges: tuple[Challenge, ...]) -> None:
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        creds = self._credentials
        if bearer is not None:
            token = self._fetch_token(bearer)
            self._header = f"Bearer {token.value}"
            self._expires = time.monotonic() + token.lifetime * (1 - _EARLY)
        elif basic is not None and creds is not None and creds.username:
            pair = f"{creds.username}:{creds.password}".encode()
            self._header = "Basic " + base64.b64encode(pair).decode()
            self._expires = math.inf
        self.token = self._header

    def _fetch_token(self, challenge: Challenge) -> Token:
        realm, http = challenge.realm, self._http
        if not realm.startswith(("https://", "http://")):
            raise InvalidArgument(f"{http.op}: the registry's token realm {realm!r} is not a URL")
        params = {"scope": challenge.params.get("scope") or self._scope}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        creds = self._credentials
        try:
            if creds is not None and creds.identity_token:
                form = params | {"grant_type": "refresh_token", "client_id": "vxn"}
                form["refresh_token"] = creds.identity_token
                response = self.session.post(realm, data=form)
            else:
                login = (creds.username, creds.password) if creds and creds.username else None
                response = self.session.get(realm, params=params, auth=login)
        except requests.RequestException as e:
            raise http.translate(e, f"token from {realm}") from None
        with response:
            if response.status_code != 200:
                raise self._refused(response, realm)
            try:
                return parse_token(response.content)
            except ValueError as e:
                raise Unavailable(f"{http.op}: token from {realm}: {e}") from None

    def _refused(self, response: Any, realm: str) -> Exception:
        http = self._http
        if response.status_code in RETRY_STATUSES:
            return http.status_error(response, f"token from {realm}")
        said = error_message(response.content[:65536], response.reason or "")
        return FailedPrecondition(
            f"{http.op}: token from {realm}: {response.status_code} {said}; check the "
            f"credentials (docker login {http.host}) or pass --authfile"
        )
