"""Registry credentials from Docker-style auth files and credential helpers.

The CLI runs this as the user who typed the command: their `docker login` lives in
their home, and their helpers talk to their keyring. Only the credentials for the one
registry being pulled from are sent to vxnd. Files are searched in this order, the
first that names the registry wins: `--authfile` (alone, when given),
`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` (podman),
`$DOCKER_CONFIG/config.json`, `~/.docker/config.json`. Stdlib only: the CLI imports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vxn.core.credentials import Credentials, DockerConfig, Lookup, parse_helper_answer
from vxn.errors import InvalidArgument, Unavailable

HELPER_TIMEOUT = 30.0  # a helper may prompt a keyring to unlock
_NOT_FOUND = b"credentials not found"


def auth_files(env: Mapping[str, str], authfile: Path | None = None) -> list[Path]:
    if authfile is not None:
        return [authfile]
    found = []
    if env.get("REGISTRY_AUTH_FILE"):
        found.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        found.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    if env.get("DOCKER_CONFIG"):
        found.append(Path(env["DOCKER_CONFIG"]) / "config.json")
    if env.get("HOME"):
        found.append(Path(env["HOME"]) / ".docker" / "config.json")
    return found


def find_credentials(
    domain: str, *, authfile: Path | None = None, env: Mapping[str, str] | None = None
) -> Credentials | None:
    """What to log in to `domain` with, or None for an anonymous pull."""
    env = os.environ if env is None else env
    for path in auth_files(env, authfile):
        config = _read(path, required=authfile is not None)
        lookup = config.lookup(domain, str(path)) if config else None
        if lookup is not None:
            return lookup.credentials if lookup.helper is None else run_helper(lookup, env)
    return None


def _read(path: Path, *, required: bool) -> DockerConfig | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise InvalidArgument(f"auth file {path}: no such file; fix --authfile") from None
        return None
    except OSError as e:
        raise InvalidArgument(f"auth file {path}: cannot read: {e.strerror}") from None
    return DockerConfig.parse(data, str(path))


def run_helper(lookup: Lookup, env: Mapping[str, str]) -> Credentials | None:
    """`docker-credential-<helper> get`, the registry on stdin; None when it has nothing."""
    import subprocess  # here: most pulls run no helper, and the CLI must start fast

    binary = f"docker-credential-{lookup.helper}"
    try:
        proc = subprocess.run(
            [binary, "get"],
            input=lookup.key.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT,
            env=dict(env),
            check=False,
        )
    except FileNotFoundError:
        raise InvalidArgument(
            f"credential helper {binary}: not found on PATH; install it or fix the auth file"
        ) from None
    except subprocess.TimeoutExpired:
        raise Unavailable(
            f"credential helper {binary}: no answer in {HELPER_TIMEOUT:.0f} s"
        ) from None
    if proc.returncode != 0:
        said = (proc.stdout + proc.stderr).strip()
        if _NOT_FOUND in said.lower():
            return None
        text = said.decode(errors="replace").splitlines()[0][:200] if said else "no output"
        raise Unavailable(f"credential helper {binary}: exit {proc.returncode}: {text}")
    return parse_helper_answer(proc.stdout, str(lookup.helper))
