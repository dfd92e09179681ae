"""Registry credentials and Docker's config.json, as data.

Owns the `auths` / `credsStore` / `credHelpers` rules Docker applies to pick what to
use for a registry, the Docker Hub aliases, and a credential helper's answer. Reading
the files and running the helpers is the credentials adapter's job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vxn.core.reference import DEFAULT_DOMAIN, DOCKER_HUB_REGISTRY, LEGACY_DEFAULT_DOMAIN
from vxn.errors import InvalidArgument

# Docker writes Docker Hub's entry under its v1 URL (and asks helpers for it); podman
# under docker.io. All of these name the same registry.
HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({LEGACY_DEFAULT_DOMAIN, DEFAULT_DOMAIN, DOCKER_HUB_REGISTRY})
# What a helper prints as Username when Secret is an identity (refresh) token.
TOKEN_USERNAME = "<token>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """A user and password, or an OAuth2 identity token (`docker login` with SSO)."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def to_json(self) -> dict[str, str]:
        return {
            "username": self.username,
            "password": self.password,
            "identitytoken": self.identity_token,
        }

    @classmethod
    def from_json(cls, doc: object) -> Credentials:
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise InvalidArgument("credentials must be an object of strings")
        creds = cls(
            username=doc.get("username", ""),
            password=doc.get("password", ""),
            identity_token=doc.get("identitytoken", ""),
        )
        if not creds.identity_token and not creds.username:
            raise InvalidArgument("credentials need a username or an identity token")
        return creds


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookup:
    """Where a registry's credentials are: inline, or a helper to ask, or nowhere."""

    key: str  # the config key (and what a helper is asked for)
    credentials: Credentials | None = None
    helper: str | None = None  # run docker-credential-<helper> get


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerConfig:
    auths: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    creds_store: str = ""
    cred_helpers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes, where: str) -> DockerConfig:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise InvalidArgument(f"auth file {where}: malformed JSON ({e})") from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"auth file {where}: want a JSON object")
        auths, store, helpers = (
            doc.get("auths", {}),
            doc.get("credsStore", ""),
            doc.get("credHelpers", {}),
        )
        if not isinstance(auths, dict) or not all(isinstance(v, dict) for v in auths.values()):
            raise InvalidArgument(f"auth file {where}: auths must map registries to objects")
        if not isinstance(store, str) or not _str_map(helpers):
            raise InvalidArgument(f"auth file {where}: credsStore/credHelpers must be strings")
        return cls(auths=auths, creds_store=store, cred_helpers=helpers)

    def lookup(self, domain: str, where: str) -> Lookup | None:
        """Docker's order: credHelpers[host], then credsStore, then auths[host].auth."""
        host = _host_of(domain)
        helper_key = _find(self.cred_helpers, host)
        if helper_key is not None:
            return Lookup(key=helper_key, helper=self.cred_helpers[helper_key])
        entry_key = _find(self.auths, host)
        if self.creds_store:
            default = HUB_KEY if host == DEFAULT_DOMAIN else domain
            return Lookup(key=entry_key or default, helper=self.creds_store)
        if entry_key is None:
            return None
        return Lookup(key=entry_key, credentials=_inline(self.auths[entry_key], entry_key, where))


def _str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _host_of(key: str) -> str:
    """`https://host:5000/v1/` -> `host:5000`; every Docker Hub alias -> docker.io."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return DEFAULT_DOMAIN if host in _HUB_HOSTS else host


def _find(table: Mapping[str, object], host: str) -> str | None:
    return host if host in table else next((k for k in table if _host_of(k) == host), None)


def _inline(entry: Mapping[str, Any], key: str, where: str) -> Credentials | None:
    token = entry.get("identitytoken")
    auth = entry.get("auth")
    if isinstance(token, str) and token:
        return Credentials(identity_token=token)
    if not isinstance(auth, str) or not auth:
        return None
    import base64  # here: the CLI imports this module, and few auth files hold passwords
    import binascii

    try:
        user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, sep, password = "", "", ""
    if not sep or not user:
        raise InvalidArgument(f"auth file {where}: auths.{key}.auth is not base64 of user:password")
    return Credentials(username=user, password=password)


def parse_helper_answer(data: bytes, helper: str) -> Credentials:
    """`{"Username": …, "Secret": …}` from `docker-credential-<helper> get`."""
    try:
        doc = json.loads(data)
        user, secret = doc["Username"], doc["Secret"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(
            f"credential helper docker-credential-{helper}: unreadable answer; check the helper"
        ) from None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise InvalidArgument(f"credential helper docker-credential-{helper}: non-string answer")
    if user == TOKEN_USERNAME:
        return Credentials(identity_token=secret)
    return Credentials(username=user, password=secret)
