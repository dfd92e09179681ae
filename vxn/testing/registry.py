"""A real registry for tests and benchmarks: Debian's `docker-registry` (distribution).

`LocalRegistry` runs one on a free 127.0.0.1 port with its own config (never the
packaged one, which binds every interface), optionally behind htpasswd Basic auth or
TLS, and stops it with SIGTERM (SIGKILL after a grace period), reaping it. `push`
copies an OCI layout into it with skopeo, as OCI or as Docker schema 2.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
PUSH_TIMEOUT = 120.0

_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: vxn-test-secret
{tls}health:
  storagedriver:
    enabled: false
validation:
  manifests:
    urls:
      allow: ['^https?://127\\.0\\.0\\.1:']
{auth}"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def self_signed(root: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate and key for `host` (an IP SAN); the certificate is its own CA, alone
    in `root/certs` so that dir works as a --cert-dir."""
    (root / "certs").mkdir(exist_ok=True)
    cert, key = root / "certs" / "ca.crt", root / "server.key"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    argv += ["-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}"]
    subprocess.run(
        [*argv, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class LocalRegistry:
    def __init__(
        self, root: Path, *, users: dict[str, str] | None = None, tls: bool = False
    ) -> None:
        self.root = root
        self.port = free_port()
        self.users = users or {}
        self.cert: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yml").write_text(
            _CONFIG.format(root=root, port=self.port, tls=self._tls(tls), auth=self._auth())
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _tls(self, tls: bool) -> str:
        if not tls:
            return ""
        self.cert, key = self_signed(self.root)
        return f"  tls:\n    certificate: {self.cert}\n    key: {key}\n"

    def _auth(self) -> str:
        if not self.users:
            return ""
        lines = []
        for user, password in self.users.items():
            out = subprocess.run(
                ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, timeout=30
            )
            lines.append(out.stdout.decode().strip())
        (self.root / "htpasswd").write_text("\n".join(lines) + "\n")
        return f"auth:\n  htpasswd:\n    realm: vxn-test\n    path: {self.root}/htpasswd\n"

    def start(self) -> LocalRegistry:
        log = (self.root / "registry.log").open("wb")
        with log:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(self.root / "config.yml")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"docker-registry not ready on {self.host}: {self.log()}")

    def log(self) -> str:
        return (self.root / "registry.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, layout: Path, ref_name: str, target: str, *, v2s2: bool = False) -> None:
        """skopeo copy oci:<layout>:<ref_name> docker://<host>/<target> (every platform)."""
        argv = ["skopeo", "copy", "-q", "--all", "--dest-tls-verify=false"]
        if v2s2:
            argv += ["--format", "v2s2"]
        if self.users:
            user, password = next(iter(self.users.items()))
            argv += ["--dest-creds", f"{user}:{password}"]
        if self.cert:
            argv += ["--dest-cert-dir", str(self.cert.parent)]
        argv += [f"oci:{layout}:{ref_name}", f"docker://{self.host}/{target}"]
        env = os.environ | {"HOME": str(self.root)}  # keep skopeo off the user's auth
        subprocess.run(argv, check=True, capture_output=True, timeout=PUSH_TIMEOUT, env=env)
