from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vxn.core.registry import (
    Challenge,
    backoff,
    content_range_start,
    error_message,
    parse_challenges,
    parse_token,
    pull_scope,
    retry_after,
)


def test_a_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    (c,) = parse_challenges(header)
    assert c == Challenge(
        scheme="bearer",
        params={
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/alpine:pull",
        },
    )
    assert c.realm == "https://auth.docker.io/token"


def test_several_challenges_unquoted_values_and_escapes() -> None:
    header = 'Basic realm="vxn \\"test\\"", Bearer realm=https://t/x, error="insufficient_scope"'
    basic, bearer = parse_challenges(header)
    assert (basic.scheme, basic.params) == ("basic", {"realm": 'vxn "test"'})
    assert bearer.params == {"realm": "https://t/x", "error": "insufficient_scope"}


@pytest.mark.parametrize("header", ["", "   ", '="x"'])
def test_no_challenge(header: str) -> None:
    assert parse_challenges(header) == ()


def test_pull_scope() -> None:
    assert pull_scope("vxn/test") == "repository:vxn/test:pull"


def test_a_token_answer() -> None:
    token = parse_token(b'{"token": "t1", "access_token": "t1", "expires_in": 300}')
    assert (token.value, token.lifetime) == ("t1", 300.0)
    assert parse_token(b'{"access_token": "t2"}').lifetime == 60.0  # the spec's default
    assert parse_token(b'{"token": "t3", "expires_in": 5}').lifetime == 60.0  # and minimum
    assert parse_token(b'{"token": "t4", "expires_in": true}').lifetime == 60.0


@pytest.mark.parametrize(
    ("data", "why"),
    [(b"<html>", "not JSON"), (b"[]", "not a JSON object"), (b'{"token": ""}', "no token")],
)
def test_a_bad_token_answer(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_token(data)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert retry_after("7", now) == 7.0
    assert retry_after("Fri, 02 Jan 2026 03:04:15 GMT", now) == 10.0
    assert retry_after("Fri, 02 Jan 2026 03:00:00 GMT", now) == 0.0
    assert retry_after(None, now) is None
    assert retry_after("soon", now) is None


def test_backoff_doubles_under_the_cap_with_full_jitter() -> None:
    assert [backoff(n, base=0.5, cap=3, rand=1.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff(3, base=0.5, cap=3, rand=0.5) == 1.0
    assert backoff(1, base=0.5, cap=3, rand=0.0) == 0.0


def test_content_range_of_a_resumed_blob() -> None:
    assert content_range_start("bytes 100-999/1000", 1000) == 100
    assert content_range_start("bytes 100-999/*", 1000) == 100
    assert content_range_start("bytes 100-998/1000", 1000) is None  # not to the end
    assert content_range_start("bytes 100-999/2000", 1000) is None  # another size
    assert content_range_start(None, 1000) is None


def test_the_registrys_own_error_words() -> None:
    body = (
        b'{"errors": [{"code": "DENIED", "message": "access denied"},'
        b' {"code": "X", "message": "and\\nmore"}]}'
    )
    assert error_message(body, "Forbidden") == "DENIED: access denied; X: and more"
    assert error_message(b"<html>oops</html>", "Bad Gateway") == "Bad Gateway"
    assert error_message(b'{"errors": "no"}', "Not Found") == "Not Found"
    assert len(error_message(b'{"errors": [{"message": "' + b"x" * 999 + b'"}]}', "")) == 300
