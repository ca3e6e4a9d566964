"""The images preflight: present in containerd, provided by the bundle, or the configured registry
answers from the host. Decisions from probe-output fixtures; the probe itself run for real (bash as
the transport runs it, curl, a TLS registry stand-in on loopback signed by an openssl-made CA)."""

from __future__ import annotations

import dataclasses
import http.server
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from kubeforge.errors import CheckFailed
from kubeforge.facts.preflight.images import (
    ImagesSeen,
    RegistrySource,
    check_images,
    parse_images_probe,
    registry_of,
    registry_sources,
)
from kubeforge.facts.preflight.report import Status
from kubeforge.model.cluster import ImageSettings
from kubeforge.model.images import images_by_host
from kubeforge.transport import LocalTransport
from kubeforge.transport.pool import TransportPool
from kubeforge.workflows.preflight_images import check_needed_images
from tests.factories import make_cluster
from tests.unit.test_bundle_images import offline, write_bundle

PAUSE = "registry.site.example:5000/k8s/pause:3.10.1"
PROXY = "registry.site.example:5000/k8s/kube-proxy:v1.34.2"
PRIVATE = {"registry.site.example:5000": RegistrySource("registry.site.example:5000",
                                                        ("https://registry.site.example:5000",))}


def test_registry_of_a_reference():
    assert registry_of(PAUSE) == "registry.site.example:5000"
    assert registry_of("registry.k8s.io/coredns/coredns:v1.12.1") == "registry.k8s.io"
    assert registry_of("library/busybox:1") == "docker.io" and registry_of("localhost/x:1") == "localhost"


def test_the_probe_output_gives_present_images_and_which_endpoints_answered():
    out = (f"{PAUSE}\nsha256:abc\n--kubeforge-registry\n"
           "https://registry.site.example:5000/v2/ 401 0\nhttps://mirror.example/v2/ 000 7\nhttps://m2/v2/ nocurl\n")
    seen = parse_images_probe(out)
    assert PAUSE in seen.present
    assert seen.answered == {"https://registry.site.example:5000"}
    assert seen.unanswered == {"https://mirror.example": "no HTTP answer (curl exit 7)",
                               "https://m2": "curl is not installed on the host"}
    with pytest.raises(ValueError):
        parse_images_probe("cut short")


def test_images_already_in_containerd_pass_without_asking_any_registry():
    res = check_images("w-1", [PAUSE, PROXY], ImagesSeen(frozenset({PAUSE, PROXY})), bundle=None, sources=PRIVATE)
    assert [r.status for r in res] == [Status.PASS]


def test_the_bundle_provides_what_containerd_lacks_and_what_both_lack_fails_naming_it():
    seen = ImagesSeen(frozenset({PAUSE}))
    assert check_images("w-1", [PAUSE, PROXY], seen, bundle=frozenset({PROXY}), sources={})[0].status is Status.PASS
    res = check_images("w-1", [PAUSE, PROXY], seen, bundle=frozenset(), sources={})[0]
    assert res.status is Status.FAIL and res.host == "w-1" and PROXY in res.message and PAUSE not in res.message


def test_a_private_registry_that_does_not_answer_fails_naming_registry_endpoint_and_images():
    seen = ImagesSeen(frozenset(), frozenset(), {"https://registry.site.example:5000": "no HTTP answer (curl exit 60)"})
    res = check_images("cp-1", [PAUSE, PROXY], seen, bundle=None, sources=PRIVATE)[0]
    assert res.status is Status.FAIL
    assert "registry registry.site.example:5000 unreachable (https://registry.site.example:5000: no HTTP answer " \
           "(curl exit 60))" in res.message and PAUSE in res.message and PROXY in res.message
    ok = ImagesSeen(frozenset(), frozenset({"https://registry.site.example:5000"}))
    assert check_images("cp-1", [PAUSE], ok, bundle=None, sources=PRIVATE)[0].status is Status.PASS


def test_upstream_without_a_mirror_is_only_a_warning_and_a_mirror_is_asked_first():
    c = make_cluster(Path("/tmp/kf-images-preflight"))
    refs = {i.ref for imgs in images_by_host(c).values() for i in imgs}
    sources = registry_sources(c, refs)
    assert all(s.endpoints == () for s in sources.values())
    res = check_images("w-1", sorted(refs), ImagesSeen(), bundle=None, sources=sources)[0]
    assert res.status is Status.WARN and "reachability not checked" in res.message
    mirrored = dataclasses.replace(c, images=ImageSettings(mirrors=(("registry.k8s.io", ("https://mirror.site/",)),)))
    assert registry_sources(mirrored, refs)["registry.k8s.io"].endpoints == ("https://mirror.site",)
    private = dataclasses.replace(c, images=ImageSettings(repository="registry.site.example:5000/k8s", mirrors=(
        ("registry.site.example:5000", ("https://cache.site",)),)))
    assert registry_sources(private, [PAUSE])["registry.site.example:5000"].endpoints == (
        "https://cache.site", "https://registry.site.example:5000")


# --- the probe for real: curl from "the host" (this machine, through LocalTransport) -------------------

def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", f"/CN={name}"], check=True, capture_output=True)
    return key, crt


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """An HTTPS server on loopback answering GET /v2/ with 401, as a registry asking for credentials."""
    d = tmp_path_factory.mktemp("registry")
    ca_key, ca = make_ca(d, "site-ca")
    key, csr, crt = d / "srv.key", d / "srv.csr", d / "srv.crt"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj",
                    "/CN=127.0.0.1"], check=True, capture_output=True)
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
                    "-days", "2", "-extfile", d / "ext"], check=True, capture_output=True)

    class V2(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(401 if self.path == "/v2/" else 404)
            self.send_header("WWW-Authenticate", 'Basic realm="registry"')
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), V2)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", ca, make_ca(d, "other-ca")[1]
    server.shutdown()


def private_cluster(tmp_path, repository: str, ca: Path):
    c = make_cluster(tmp_path, n_etcd=1, n_cp=1, n_workers=1)
    return dataclasses.replace(c, images=ImageSettings(repository=f"{repository}/k8s", ca=ca))


def local_pool(c):
    return TransportPool(c, factory=lambda h: LocalTransport(h.name))


def test_a_registry_answering_with_the_inventory_ca_passes(tmp_path, registry):
    address, ca, _ = registry
    c = private_cluster(tmp_path, address, ca)
    results = check_needed_images(c, local_pool(c), images_by_host(c))
    assert {r.host for r in results} == {h.name for h in c.nodes}
    assert all(r.status is Status.PASS and f"{address} answered" in r.message for r in results)


def test_a_registry_whose_certificate_the_ca_does_not_sign_fails_with_exit_4(tmp_path, registry):
    address, _, other_ca = registry
    c = private_cluster(tmp_path, address, other_ca)
    with pytest.raises(CheckFailed) as exc:
        check_needed_images(c, local_pool(c), images_by_host(c))
    assert exc.value.exit_code == 4
    msg = str(exc.value)
    assert "images preflight failed, nothing was changed" in msg and "[worker-1]" in msg
    assert f"registry {address} unreachable (https://{address}: no HTTP answer (curl exit 60))" in msg
    assert f"{address}/k8s/kube-proxy:v1.34.2" in msg


def test_a_registry_nobody_listens_on_fails_with_exit_4_naming_it(tmp_path, registry):
    _, ca, _ = registry
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a port just freed: nothing listens there
    c = private_cluster(tmp_path, f"127.0.0.1:{port}", ca)
    with pytest.raises(CheckFailed, match=rf"registry 127.0.0.1:{port} unreachable .*curl exit 7\)"):
        check_needed_images(c, local_pool(c), images_by_host(c))


def test_with_an_offline_bundle_no_registry_is_asked_and_a_missing_image_fails(tmp_path):
    c = offline(make_cluster(tmp_path, n_etcd=1, n_cp=1, n_workers=1), tmp_path / "bundle")
    refs = {i.ref for imgs in images_by_host(c).values() for i in imgs}
    worker_only = {i.ref for i in images_by_host(c)["worker-1"]}
    lacking = sorted(refs - worker_only)[0]
    write_bundle(tmp_path / "bundle", refs - {lacking})
    with pytest.raises(CheckFailed, match=rf"\[cp-1\] not in containerd and not in the offline bundle: {lacking}"):
        check_needed_images(c, local_pool(c), images_by_host(c))
