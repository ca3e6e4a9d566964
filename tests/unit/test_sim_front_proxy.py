"""The simulated kube-apiserver's request-header authenticator (tests/sim/README.md, "API: TLS, client
certificates, RBAC"): kubeadm's --requestheader-* flags in its manifest; a front proxy's client
certificate from --requestheader-client-ca-file with an allowed CN names the user in X-Remote-User;
anything else is refused where the real server refuses it."""

from __future__ import annotations

import base64
import http.client
import ssl
import time
from pathlib import Path

import pytest

from tests.sim.kubesim import client, files, host, tls, yamlish
from tests.unit.test_sim_api_auth import other_ca
from tests.unit.test_sim_cli import Lab, env, ready_lab, simlab  # noqa: F401 - the module's fixtures

STATE = "/kubesim/state?verb=list&resource=nodes"


def ask(simlab: Lab, pair: tuple[bytes, bytes], headers: dict[str, str] | None = None) -> int:
    """GET as a front proxy would: the given client pair, headers; the status (0: the handshake failed)."""
    doc = yamlish.load(Path(simlab.kc).read_text())
    host_port = f"127.0.0.1:{client.api_port()}"  # the simulator's port (kubectl's own override)
    ctx = ssl.create_default_context(cadata=base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).decode())
    ctx.check_hostname = False
    d = simlab.base / f"pair-{time.monotonic_ns()}"
    d.mkdir(mode=0o700)
    (d / "crt").write_bytes(pair[0])
    (d / "key").write_bytes(pair[1])
    ctx.load_cert_chain(str(d / "crt"), str(d / "key"))
    conn = http.client.HTTPSConnection(host_port, context=ctx, timeout=10)
    try:
        conn.request("GET", STATE, headers=headers or {})
        return conn.getresponse().status
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def front_proxy_pair(simlab: Lab, name: str = "front-proxy-client", ca: tuple[str, str] | None = None) -> tuple[bytes, bytes]:
    with host.use_root(simlab.cp):
        ca = ca or (host.path(f"{files.PKI}/front-proxy-ca.crt"), host.path(f"{files.PKI}/front-proxy-ca.key"))
        return tls.client_certificate_from(*ca, name, [], time.time() + 3600)


ADMIN = {"X-Remote-User": "alice", "X-Remote-Group": "system:masters"}


def test_the_api_server_manifest_carries_kubeadms_front_proxy_flags(ready_lab: Lab) -> None:
    with host.use_root(ready_lab.cp):
        flags = files.manifest_flags(files.read_manifest("kube-apiserver"))
    assert flags["requestheader-client-ca-file"] == f"{files.PKI}/front-proxy-ca.crt"
    assert flags["requestheader-allowed-names"] == "front-proxy-client"
    assert flags["proxy-client-cert-file"] == f"{files.PKI}/front-proxy-client.crt"


def test_a_front_proxy_names_the_user_in_its_headers(ready_lab: Lab) -> None:
    pair = front_proxy_pair(ready_lab)
    assert ask(ready_lab, pair, ADMIN) == 200
    # the user is the header's, not the certificate's: alice alone may not list nodes
    assert ask(ready_lab, pair, {"X-Remote-User": "alice"}) == 403


def test_a_front_proxy_certificate_without_the_user_header_is_unauthorized(ready_lab: Lab) -> None:
    assert ask(ready_lab, front_proxy_pair(ready_lab)) == 401


def test_a_front_proxy_certificate_with_a_name_not_allowed_is_unauthorized(ready_lab: Lab) -> None:
    assert ask(ready_lab, front_proxy_pair(ready_lab, name="not-the-front-proxy"), ADMIN) == 401


@pytest.mark.parametrize("trusted", [False, True])
def test_a_front_proxy_certificate_is_taken_only_from_a_ca_in_the_requestheader_file(ready_lab: Lab, trusted) -> None:
    other = other_ca(ready_lab.base)
    pair = front_proxy_pair(ready_lab, ca=other)
    if trusted:  # both CAs in the file, as in the middle of a rotation; read when the pod starts
        with host.use_root(ready_lab.cp):
            path = host.path(f"{files.PKI}/front-proxy-ca.crt")
        Path(path).write_bytes(Path(path).read_bytes() + Path(other[0]).read_bytes())
        restart_api_server(ready_lab)
    assert ask(ready_lab, pair, ADMIN) == (200 if trusted else 0)


def restart_api_server(simlab: Lab) -> None:
    """The static pod restarted as kubeforge does: manifest away until the API stops answering, back."""
    manifest = Path(simlab.cp) / "etc/kubernetes/manifests/kube-apiserver.yaml"
    aside = manifest.with_suffix(".aside")
    manifest.rename(aside)
    deadline = time.monotonic() + 30
    while simlab.kubectl("get", "--raw", "/readyz")[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    aside.rename(manifest)
    while simlab.kubectl("get", "--raw", "/readyz")[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert simlab.kubectl("get", "--raw", "/readyz")[0] == 0
