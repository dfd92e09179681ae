from __future__ import annotations

import base64
import json

import pytest

from vxn.core.credentials import (
    Credentials,
    DockerConfig,
    Lookup,
    parse_helper_answer,
)
from vxn.errors import InvalidArgument


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def config(doc: object) -> DockerConfig:
    return DockerConfig.parse(json.dumps(doc).encode(), "auth.json")


def test_inline_auth_by_host_or_url() -> None:
    c = config({"auths": {"https://reg.example:5000/v2/": {"auth": b64("u:p:w")}}})
    assert c.lookup("reg.example:5000", "f") == Lookup(
        key="https://reg.example:5000/v2/", credentials=Credentials(username="u", password="p:w")
    )
    assert c.lookup("reg.example", "f") is None


def test_docker_hub_has_many_names() -> None:
    hub = config({"auths": {"https://index.docker.io/v1/": {"auth": b64("u:p")}}})
    found = hub.lookup("docker.io", "f")
    assert found is not None
    assert found.credentials == Credentials(username="u", password="p")
    assert config({"auths": {"docker.io": {"auth": b64("u:p")}}}).lookup("docker.io", "f")


def test_helpers_come_first_then_the_store_then_inline() -> None:
    doc = {
        "auths": {"a.example": {"auth": b64("u:p")}, "b.example": {"auth": b64("u:p")}},
        "credHelpers": {"a.example": "pass"},
        "credsStore": "secretservice",
    }
    c = config(doc)
    assert c.lookup("a.example", "f") == Lookup(key="a.example", helper="pass")
    assert c.lookup("b.example", "f") == Lookup(key="b.example", helper="secretservice")
    assert c.lookup("docker.io", "f") == Lookup(
        key="https://index.docker.io/v1/", helper="secretservice"
    )


def test_an_identity_token_and_an_empty_entry() -> None:
    c = config({"auths": {"a.example": {"identitytoken": "rt"}, "b.example": {}}})
    found = c.lookup("a.example", "f")
    assert found is not None
    assert found.credentials == Credentials(identity_token="rt")
    assert c.lookup("b.example", "f") == Lookup(key="b.example")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "malformed JSON"),
        (b"[]", "want a JSON object"),
        (b'{"auths": []}', "auths must map registries to objects"),
        (b'{"credHelpers": {"a": 1}}', "credsStore/credHelpers must be strings"),
    ],
)
def test_a_bad_file_is_one_line_naming_it(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"auth file /x/auth.json: {message}"):
        DockerConfig.parse(data, "/x/auth.json")


@pytest.mark.parametrize("auth", ["not base64!", b64("no-colon"), b64(":nouser")])
def test_bad_inline_auth(auth: str) -> None:
    why = r"auths\.a\.example\.auth is not base64 of user:password"
    with pytest.raises(InvalidArgument, match=why):
        config({"auths": {"a.example": {"auth": auth}}}).lookup("a.example", "f")


def test_helper_answers() -> None:
    assert parse_helper_answer(b'{"Username": "u", "Secret": "s"}', "pass") == Credentials(
        username="u", password="s"
    )
    assert parse_helper_answer(b'{"Username": "<token>", "Secret": "rt"}', "x") == Credentials(
        identity_token="rt"
    )
    with pytest.raises(InvalidArgument, match="docker-credential-pass: unreadable answer"):
        parse_helper_answer(b"nope", "pass")


def test_credentials_cross_the_api_and_hide_their_secrets() -> None:
    creds = Credentials(username="u", password="hunter2")
    assert Credentials.from_json(creds.to_json()) == creds
    assert "hunter2" not in repr(creds)
    with pytest.raises(InvalidArgument, match="need a username or an identity token"):
        Credentials.from_json({"password": "p"})
    with pytest.raises(InvalidArgument, match="object of strings"):
        Credentials.from_json({"username": 1})
