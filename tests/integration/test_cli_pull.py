"""`vxn pull` end to end: real vxn and vxnd processes, real registries, the proxy.

Output as Docker prints it, credentials from the user's auth file, TLS flags, a
progress display only on a terminal, and a vxnd killed with SIGKILL mid-blob: no
partial blob becomes visible and the next pull finishes the job."""

from __future__ import annotations

import base64
import json
import os
import pty
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from data.registries import PASSWORD, USER, Images

from vxn.testing.daemon import VxnDirs, vxn_argv, wait_exit
from vxn.testing.registry import LocalRegistry
from vxn.testing.registry_proxy import RegistryProxy

pytestmark = pytest.mark.integration
TIMEOUT = 60.0
# Where auth files may be named: unset, so that only $HOME (a temp dir) is searched.
AUTH_ENV = ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG")


@pytest.fixture
def dirs() -> Iterator[VxnDirs]:
    with VxnDirs() as d:
        yield d


def configure(dirs: VxnDirs, *insecure: str, blob_timeout: float = 10) -> None:
    lines = [f"[pull]\nread_timeout = 5\nblob_timeout = {blob_timeout}\nretry_delay = 0.01\n"]
    lines += [f'[registries."{host}"]\ninsecure = true\n' for host in insecure]
    dirs.config.write_text("".join(lines))


def vxn(dirs: VxnDirs, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        vxn_argv(*args), env=dirs.env(**env), capture_output=True, text=True, timeout=TIMEOUT
    )


def ok(dirs: VxnDirs, *args: str, **env: str) -> str:
    result = vxn(dirs, *args, **env)
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def test_pull_prints_the_digest_the_status_and_the_name(
    dirs: VxnDirs, open_registry: LocalRegistry, images: Images
) -> None:
    host = open_registry.host
    configure(dirs, host)
    ref = f"{host}/vxn/test:v1"
    assert ok(dirs, "pull", ref) == (
        f"Digest: {images.v1.digest}\nStatus: Downloaded newer image for {ref}\n{ref}\n"
    )
    assert ok(dirs, "pull", ref) == (
        f"Digest: {images.v1.digest}\nStatus: Image is up to date for {ref}\n{ref}\n"
    )
    assert ok(dirs, "pull", "-q", f"{host}/vxn/test:multi") == f"{host}/vxn/test:multi\n"
    rows = [json.loads(line) for line in ok(dirs, "images", "--format", "json").splitlines()]
    assert sorted(f"{r['Repository']}:{r['Tag']}" for r in rows) == [
        f"{host}/vxn/test:multi",
        f"{host}/vxn/test:v1",
    ]


def test_pull_reads_the_users_auth_file(
    dirs: VxnDirs, basic_registry: LocalRegistry, tmp_path: Path
) -> None:
    host = basic_registry.host
    configure(dirs, host)
    ref = f"{host}/vxn/test:v1"
    denied = vxn(dirs, "pull", ref, HOME=str(tmp_path))
    assert denied.returncode == 125
    assert denied.stderr == (
        f"vxn: pull {ref}: manifest v1: 401 UNAUTHORIZED: authentication required; "
        f"log in (docker login {host}) or pass --authfile\n"
    )
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    assert ok(dirs, "pull", "-q", "--authfile", str(authfile), ref) == f"{ref}\n"
    docker = tmp_path / ".docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"auths": {f"https://{host}": {"auth": auth}}}))
    assert ok(dirs, "pull", "-q", ref, HOME=str(tmp_path)) == f"{ref}\n"


def test_tls_flags_reach_vxnd(dirs: VxnDirs, tls_registry: LocalRegistry) -> None:
    configure(dirs)
    ref = f"{tls_registry.host}/vxn/test:v1"
    refused = vxn(dirs, "pull", ref)
    assert refused.returncode == 125
    assert "failed: self-signed certificate; pass --cert-dir" in refused.stderr
    assert tls_registry.cert is not None
    assert ok(dirs, "pull", "-q", "--cert-dir", str(tls_registry.cert.parent), ref) == f"{ref}\n"
    ok(dirs, "rmi", ref)
    assert ok(dirs, "pull", "-q", "--tls-verify=false", ref) == f"{ref}\n"


def test_progress_shows_on_a_terminal_only(dirs: VxnDirs, open_registry: LocalRegistry) -> None:
    host = open_registry.host
    configure(dirs, host)
    ref = f"{host}/vxn/test:multi"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        vxn_argv("pull", ref), env=dirs.env(), stdout=slave, stderr=slave, stdin=subprocess.DEVNULL
    )
    os.close(slave)
    out = _read_all(master)
    assert proc.wait(TIMEOUT) == 0, out
    assert "multi: Pulling from vxn/test" in out
    assert "Download complete" in out
    assert "\x1b[" in out  # lines redrawn in place
    assert out.endswith(f"{ref}\r\n")
    assert "Download" not in ok(dirs, "pull", ref)


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode()


def test_kill_9_mid_pull_shows_no_partial_blob_and_the_next_pull_finishes(
    dirs: VxnDirs, proxy: RegistryProxy, images: Images
) -> None:
    configure(dirs, proxy.host, blob_timeout=120)
    layer = images.v1.layers[0]["digest"]
    proxy.fault("trickle", f"/blobs/{layer}")
    ref = f"{proxy.host}/vxn/test:v1"
    pulling = subprocess.Popen(
        vxn_argv("pull", ref), env=dirs.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    staged = _wait_for_staged_bytes(dirs, images.v1.layers[0]["size"])
    (pid,) = dirs.daemons()
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid, TIMEOUT)
    _, err = pulling.communicate(timeout=TIMEOUT)
    assert pulling.returncode == 125
    assert "connection lost" in err.decode()
    content = dirs.state / "content"
    assert not (content / "blobs/sha256" / layer.removeprefix("sha256:")).exists()
    assert not (content / "images.json").exists()
    assert staged.exists()  # the dead vxnd's staging: invisible, pruned later

    assert ok(dirs, "pull", "-q", ref) == f"{ref}\n"
    data = (content / "blobs/sha256" / layer.removeprefix("sha256:")).read_bytes()
    assert data == (images.single / "blobs/sha256" / layer.removeprefix("sha256:")).read_bytes()
    ok(dirs, "image", "prune", "-f")
    assert not staged.exists()


def _wait_for_staged_bytes(dirs: VxnDirs, size: int) -> Path:
    """A staged file bigger than any small blob, not whole yet: the trickled layer."""
    deadline = time.monotonic() + TIMEOUT
    ingest = dirs.state / "content" / "ingest"
    while time.monotonic() < deadline:
        for path in ingest.glob("*/*") if ingest.exists() else []:
            if 2048 < path.stat().st_size < size:
                return path
        time.sleep(0.05)
    raise AssertionError("the pull never started the trickled layer")


def test_the_pull_path_imports_no_http_stack_and_no_engine(
    dirs: VxnDirs, open_registry: LocalRegistry, tmp_path: Path
) -> None:
    configure(dirs, open_registry.host)
    env = {k: v for k, v in dirs.env(HOME=str(tmp_path)).items() if k not in AUTH_ENV}
    ref = f"{open_registry.host}/vxn/test:v1"
    result = subprocess.run(
        [vxn_argv()[0], "-X", "importtime", *vxn_argv()[1:], "pull", "-q", ref],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines()}
    assert {"vxn.adapters.credentials", "vxn.core.reference", "tomllib"} <= imported
    heavy = ("aiohttp", "vxn.engine", "vxn.daemon", "oras", "requests", "http.client", "base64")
    assert not {m for m in imported if m.startswith(heavy)}
