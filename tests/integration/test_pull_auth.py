"""Pull auth against real parts: docker-registry's htpasswd Basic auth, the proxy's
Bearer token flow (challenge, token endpoint, caching, refresh), and credentials that
must not leave the registry: across a redirect to another host, or to a foreign
layer's `urls`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from data import imagebuild as ib
from data.registries import PASSWORD, USER, Images

from vxn.adapters.statedir import StateDir
from vxn.config import PullSettings, RegistrySettings
from vxn.core.credentials import Credentials
from vxn.core.platform import Platform
from vxn.engine.images import ImageService
from vxn.engine.pull import PullConfig, PullOptions
from vxn.errors import FailedPrecondition
from vxn.testing.registry import LocalRegistry
from vxn.testing.registry_proxy import RegistryProxy

pytestmark = pytest.mark.integration
LIMITS = PullSettings(read_timeout=2, blob_timeout=5, attempts=2, retry_delay=0.01)
LOGIN = PullOptions(credentials=Credentials(username=USER, password=PASSWORD))


def service(tmp_path: Path, *hosts: str) -> ImageService:
    insecure = {h: RegistrySettings(insecure=True) for h in hosts}
    pull = PullConfig(settings=LIMITS, registries=insecure)
    return ImageService(StateDir(tmp_path / "state"), Platform.parse("linux/amd64"), pull=pull)


@pytest.fixture
def bearer(open_registry: LocalRegistry) -> Iterator[RegistryProxy]:
    with RegistryProxy(open_registry.host, bearer=True) as p:
        yield p


@pytest.fixture
def bearer_login(open_registry: LocalRegistry) -> Iterator[RegistryProxy]:
    with RegistryProxy(
        open_registry.host, bearer=True, users={USER: PASSWORD}, identity_token="id-t0ken"
    ) as p:
        yield p


# --- Basic ---------------------------------------------------------------------------


def test_basic_auth_needs_the_credentials(tmp_path: Path, basic_registry: LocalRegistry) -> None:
    host = basic_registry.host
    svc = service(tmp_path, host)
    ref = f"{host}/vxn/test:v1"
    with pytest.raises(FailedPrecondition) as info:
        svc.pull_sync(ref)
    assert str(info.value) == (
        f"pull {ref}: manifest v1: 401 UNAUTHORIZED: authentication required; "
        f"log in (docker login {host}) or pass --authfile"
    )
    wrong = PullOptions(credentials=Credentials(username=USER, password="wrong"))
    with pytest.raises(FailedPrecondition, match="401 UNAUTHORIZED"):
        svc.pull_sync(ref, options=wrong)
    assert not svc.list_sync()
    svc.pull_sync(ref, options=LOGIN)
    assert [r.repository for r in svc.list_sync()] == [f"{host}/vxn/test"]


# --- Bearer --------------------------------------------------------------------------


def test_bearer_token_is_fetched_once_and_sent_with_every_request(
    tmp_path: Path, bearer: RegistryProxy, images: Images
) -> None:
    svc = service(tmp_path, bearer.host)
    svc.pull_sync(f"{bearer.host}/vxn/test:multi")
    assert bearer.tokens_issued == 1
    (token_request,) = bearer.requests("/token")
    assert "scope=repository%3Avxn%2Ftest%3Apull" in token_request.path
    assert "service=vxn-proxy" in token_request.path
    blobs = bearer.requests("/blobs/")
    assert len(blobs) == 1 + len(images.amd.layers)
    assert all(s.headers.get("Authorization", "").startswith("Bearer ") for s in blobs)


def test_an_expired_token_is_refreshed(tmp_path: Path, open_registry: LocalRegistry) -> None:
    with RegistryProxy(open_registry.host, bearer=True, token_uses=2) as proxy:
        svc = service(tmp_path, proxy.host)
        svc.pull_sync(f"{proxy.host}/vxn/test:v1")
        assert proxy.tokens_issued >= 2


def test_the_token_endpoint_wants_the_login(tmp_path: Path, bearer_login: RegistryProxy) -> None:
    host = bearer_login.host
    svc = service(tmp_path, host)
    ref = f"{host}/vxn/test:v1"
    with pytest.raises(FailedPrecondition) as info:
        svc.pull_sync(ref)
    assert f"token from http://{host}/token: 401 UNAUTHORIZED: bad credentials" in str(info.value)
    assert "check the credentials (docker login" in str(info.value)
    svc.pull_sync(ref, options=LOGIN)


def test_an_identity_token_is_exchanged_by_oauth2_refresh(
    tmp_path: Path, bearer_login: RegistryProxy
) -> None:
    svc = service(tmp_path, bearer_login.host)
    options = PullOptions(credentials=Credentials(identity_token="id-t0ken"))
    svc.pull_sync(f"{bearer_login.host}/vxn/test:v1", options=options)
    assert [s.method for s in bearer_login.requests("/token")] == ["POST"]


def test_credentials_do_not_follow_a_redirect_to_another_host(
    tmp_path: Path, bearer_login: RegistryProxy, images: Images
) -> None:
    layer = images.v1.layers[0]["digest"]
    bearer_login.fault("redirect", f"/blobs/{layer}")
    svc = service(tmp_path, bearer_login.host)
    svc.pull_sync(f"{bearer_login.host}/vxn/test:v1", options=LOGIN)
    asked, redirected = bearer_login.requests(f"/blobs/{layer}")
    assert asked.headers["Authorization"].startswith("Bearer ")
    assert "redirected=1" in redirected.path
    assert "Authorization" not in redirected.headers


# --- foreign layers --------------------------------------------------------------------


class _Blobs(BaseHTTPRequestHandler):
    """Serves a layout's blobs by digest; records each request's headers."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]]
    root: Path

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        data = (self.root / "blobs/sha256" / self.path.rsplit(":", 1)[-1]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_foreign_layer_comes_from_its_urls_without_credentials(
    tmp_path: Path, open_registry: LocalRegistry, bearer_login: RegistryProxy
) -> None:
    layout = tmp_path / "foreign"
    ib.simple_layout(layout, ib.ImageSpec(marker="foreign"), name="v1")
    handler = type("Blobs", (_Blobs,), {"seen": [], "root": layout})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        port = server.server_address[1]

        def add_urls(doc: ib.Json) -> None:
            layer = doc["layers"][1]
            layer["urls"] = [f"http://127.0.0.1:{port}/foreign/{layer['digest']}"]

        foreign = ib.rewrite_manifest(layout, add_urls)["layers"][1]
        open_registry.push(layout, "v1", "vxn/foreign:v1")  # skopeo skips the foreign layer
        svc = service(tmp_path, bearer_login.host)
        result = svc.pull_sync(f"{bearer_login.host}/vxn/foreign:v1", options=LOGIN)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert len(bearer_login.requests(f"/blobs/{foreign['digest']}")) == 1  # 404 there
    assert len(handler.seen) == 1
    assert "Authorization" not in handler.seen[0]
    assert svc.inspect_sync(result.reference)["Layers"][1]["Digest"] == foreign["digest"]
