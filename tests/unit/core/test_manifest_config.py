"""Image config parsing: the fields vxn runs with, typed; everything else kept in `raw`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vxn.core.digest import Digest
from vxn.core.manifest import MAX_DOCUMENT_SIZE, ImageConfig, parse_config
from vxn.core.platform import Platform
from vxn.errors import InvalidArgument


def dig(n: int) -> str:
    return f"sha256:{n:064x}"


ROOTFS = {"type": "layers", "diff_ids": [dig(1), dig(2)]}
DIFF_IDS = (Digest.parse(dig(1)), Digest.parse(dig(2)))

# The shape `docker image inspect` shows for an nginx-like image.
DOCKER_CONFIG: dict[str, Any] = {
    "architecture": "arm64",
    "variant": "v8",
    "os": "linux",
    "created": "2024-05-01T12:00:00.123456789Z",
    "config": {
        "User": "101:101",
        "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=b=c"],
        "Entrypoint": ["/docker-entrypoint.sh"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Volumes": {"/var/cache/nginx": {}},
        "WorkingDir": "/srv",
        "Labels": {"maintainer": "NGINX <x@example.com>"},
        "StopSignal": "SIGQUIT",
        "ArgsEscaped": True,
        "OnBuild": None,
    },
    "rootfs": ROOTFS,
    "history": [{"created": "2024-05-01T12:00:00Z", "created_by": "ADD file:abc in /"}],
}
DOCKER_PARSED = ImageConfig(
    os="linux",
    architecture="arm64",
    variant="v8",
    created="2024-05-01T12:00:00.123456789Z",
    entrypoint=("/docker-entrypoint.sh",),
    cmd=("nginx", "-g", "daemon off;"),
    env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=b=c"),
    working_dir="/srv",
    user="101:101",
    exposed_ports=("80/tcp", "443/tcp"),
    volumes=("/var/cache/nginx",),
    labels={"maintainer": "NGINX <x@example.com>"},
    stop_signal="SIGQUIT",
    diff_ids=DIFF_IDS,
    raw=DOCKER_CONFIG,
)

MINIMAL: dict[str, Any] = {"os": "linux", "architecture": "amd64", "rootfs": ROOTFS}
MINIMAL_PARSED = ImageConfig(os="linux", architecture="amd64", diff_ids=DIFF_IDS, raw=MINIMAL)

NULLS: dict[str, Any] = {
    **MINIMAL,
    "variant": None,
    "created": None,
    "config": {
        "Entrypoint": None,
        "Cmd": None,
        "Env": None,
        "WorkingDir": None,
        "User": None,
        "ExposedPorts": None,
        "Volumes": None,
        "Labels": None,
        "StopSignal": None,
    },
}


def with_config(**fields: object) -> dict[str, Any]:
    return {**MINIMAL, "config": fields}


def parsed(doc: dict[str, Any], **fields: Any) -> ImageConfig:
    return ImageConfig(os="linux", architecture="amd64", diff_ids=DIFF_IDS, raw=doc, **fields)


EMPTY_CMD = with_config(Entrypoint=["/bin/sh"], Cmd=[])
STRING_CMD = with_config(Cmd="echo hi")
SCRATCH = {**MINIMAL, "config": None, "rootfs": {"type": "layers", "diff_ids": []}}

VALID: list[tuple[str, dict[str, Any], ImageConfig]] = [
    ("docker nginx-like", DOCKER_CONFIG, DOCKER_PARSED),
    ("minimal OCI", MINIMAL, MINIMAL_PARSED),
    ("nulls mean unset", NULLS, parsed(NULLS)),
    ("empty Cmd is not null", EMPTY_CMD, parsed(EMPTY_CMD, entrypoint=("/bin/sh",), cmd=())),
    ("string Cmd as Docker reads it", STRING_CMD, parsed(STRING_CMD, cmd=("echo hi",))),
    (
        "scratch, no layers",
        SCRATCH,
        ImageConfig(os="linux", architecture="amd64", diff_ids=(), raw=SCRATCH),
    ),
]


@pytest.mark.parametrize(("doc", "want"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_parse_config(doc: dict[str, Any], want: ImageConfig) -> None:
    got = parse_config(json.dumps(doc).encode())
    assert got == want
    assert got.raw == doc


def test_platform() -> None:
    assert parse_config(json.dumps(DOCKER_CONFIG).encode()).platform == Platform(
        os="linux", architecture="arm64", variant="v8"
    )


INVALID: list[tuple[str, bytes, str]] = [
    ("over the limit", b" " * (MAX_DOCUMENT_SIZE + 1),
     "4194305 bytes is over the 4194304-byte limit"),
    ("not JSON", b"{", "malformed JSON (Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1))"),
    ("a list", b"[]", "malformed JSON (want an object, got list)"),
]  # fmt: skip

BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("no os", {**MINIMAL, "os": None}, "os must be a non-empty string"),
    ("empty os", {**MINIMAL, "os": ""}, "os must be a non-empty string"),
    ("architecture number", {**MINIMAL, "architecture": 64},
     "architecture must be a non-empty string"),
    ("variant number", {**MINIMAL, "variant": 8}, "variant must be a string"),
    ("created number", {**MINIMAL, "created": 1}, "created must be a string"),
    ("config list", {**MINIMAL, "config": []}, "config must be an object"),
    ("Entrypoint number", with_config(Entrypoint=1),
     "config.Entrypoint must be a list"),
    ("Entrypoint of numbers", with_config(Entrypoint=[1]),
     "config.Entrypoint must be a list of strings"),
    ("Cmd object", with_config(Cmd={}), "config.Cmd must be a list"),
    ("Cmd with null", with_config(Cmd=["a", None]), "config.Cmd must be a list of strings"),
    ("Env string", with_config(Env="A=b"), "config.Env must be a list"),
    ("Env of objects", with_config(Env=[{"A": "b"}]), "config.Env must be a list of strings"),
    ("WorkingDir list", with_config(WorkingDir=["/"]), "config.WorkingDir must be a string"),
    ("User number", with_config(User=0), "config.User must be a string"),
    ("ExposedPorts list", with_config(ExposedPorts=["80/tcp"]),
     "config.ExposedPorts must be an object"),
    ("Volumes string", with_config(Volumes="/data"), "config.Volumes must be an object"),
    ("Labels of numbers", with_config(Labels={"a": 1}),
     "config.Labels must be an object of strings"),
    ("StopSignal number", with_config(StopSignal=15), "config.StopSignal must be a string"),
    ("no rootfs", {**MINIMAL, "rootfs": None}, 'rootfs must be an object with type "layers"'),
    ("rootfs type", {**MINIMAL, "rootfs": {**ROOTFS, "type": "diffs"}},
     'rootfs must be an object with type "layers"'),
    ("no diff_ids", {**MINIMAL, "rootfs": {"type": "layers"}},
     "rootfs.diff_ids must be a list"),
    ("diff_id number", {**MINIMAL, "rootfs": {**ROOTFS, "diff_ids": [dig(1), 2]}},
     "rootfs.diff_ids[1] must be a string"),
    ("diff_id bad", {**MINIMAL, "rootfs": {**ROOTFS, "diff_ids": ["sha256:x"]}},
     "rootfs.diff_ids[0]: invalid digest 'sha256:x': want sha256:<64 lowercase hex digits>"),
]  # fmt: skip

ALL_INVALID = INVALID + [(n, json.dumps(d).encode(), w) for n, d, w in BAD_FIELDS]


@pytest.mark.parametrize(
    ("data", "why"), [v[1:] for v in ALL_INVALID], ids=[v[0] for v in ALL_INVALID]
)
def test_parse_config_invalid(data: bytes, why: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_config(data)
    assert str(exc.value) == f"invalid image config: {why}"
