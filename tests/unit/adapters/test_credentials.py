"""Auth files and credential helpers, with real files and a real helper script."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from vxn.adapters.credentials import auth_files, find_credentials
from vxn.core.credentials import Credentials
from vxn.errors import InvalidArgument, Unavailable

USER_PASS = Credentials(username="u", password="p")


def write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def inline(host: str, user: str = "u") -> dict[str, object]:
    return {"auths": {host: {"auth": base64.b64encode(f"{user}:p".encode()).decode()}}}


def helper(tmp_path: Path, name: str, script: str) -> dict[str, str]:
    """A docker-credential-<name> on PATH; returns the env that finds it."""
    path = tmp_path / "bin" / f"docker-credential-{name}"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return {"PATH": f"{path.parent}:{os.environ['PATH']}", "HOME": str(tmp_path)}


def test_the_search_order() -> None:
    env = {
        "REGISTRY_AUTH_FILE": "/a/auth.json",
        "XDG_RUNTIME_DIR": "/run/user/1",
        "DOCKER_CONFIG": "/d",
        "HOME": "/h",
    }
    assert auth_files(env) == [
        Path("/a/auth.json"),
        Path("/run/user/1/containers/auth.json"),
        Path("/d/config.json"),
        Path("/h/.docker/config.json"),
    ]
    assert auth_files(env, Path("/only.json")) == [Path("/only.json")]


def test_the_first_file_naming_the_registry_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "first.json", inline("other.example"))
    write(tmp_path / "d" / "config.json", inline("reg.example", "from-docker-config"))
    write(tmp_path / ".docker" / "config.json", inline("reg.example", "from-home"))
    env = {"REGISTRY_AUTH_FILE": str(first), "DOCKER_CONFIG": str(tmp_path / "d")}
    env["HOME"] = str(tmp_path)
    found = find_credentials("reg.example", env=env)
    assert found == Credentials(username="from-docker-config", password="p")
    assert find_credentials("nowhere.example", env=env) is None


def test_an_authfile_is_the_only_one_and_must_exist(tmp_path: Path) -> None:
    write(tmp_path / ".docker" / "config.json", inline("reg.example"))
    env = {"HOME": str(tmp_path)}
    only = write(tmp_path / "only.json", {})
    assert find_credentials("reg.example", authfile=only, env=env) is None
    missing = tmp_path / "missing.json"
    with pytest.raises(InvalidArgument, match=f"auth file {missing}: no such file; fix --authfile"):
        find_credentials("reg.example", authfile=missing, env=env)


def test_a_credential_helper_is_asked_for_the_registry(tmp_path: Path) -> None:
    env = helper(
        tmp_path,
        "test",
        'read host; [ "$1" = get ] && printf \'{"Username":"u","Secret":"p-%s"}\' "$host"',
    )
    write(tmp_path / ".docker" / "config.json", {"credHelpers": {"reg.example": "test"}})
    assert find_credentials("reg.example", env=env) == Credentials(
        username="u", password="p-reg.example"
    )


def test_a_helper_without_credentials_means_anonymous(tmp_path: Path) -> None:
    env = helper(tmp_path, "empty", "echo 'credentials not found in native keychain'; exit 1")
    write(tmp_path / ".docker" / "config.json", {"credsStore": "empty"})
    assert find_credentials("reg.example", env=env) is None


def test_helper_failures_are_one_line(tmp_path: Path) -> None:
    env = helper(tmp_path, "broken", "echo 'keyring locked' >&2; exit 3")
    write(tmp_path / ".docker" / "config.json", {"credsStore": "broken"})
    with pytest.raises(Unavailable, match="docker-credential-broken: exit 3: keyring locked"):
        find_credentials("reg.example", env=env)
    write(tmp_path / ".docker" / "config.json", {"credsStore": "absent"})
    with pytest.raises(InvalidArgument, match="docker-credential-absent: not found on PATH"):
        find_credentials("reg.example", env=env)
