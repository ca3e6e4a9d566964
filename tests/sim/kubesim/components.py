"""kube-controller-manager and kube-scheduler static pods: each serves its /healthz over HTTPS on
127.0.0.1 at kubeadm's port (10257, 10259; the port the kubelet's liveness probe and kubeadm's
wait-control-plane ask) while its manifest exists.

What they model is the one thing kubeforge relies on: a component reads the client certificate of
its kubeconfig (controller-manager.conf, scheduler.conf) when it starts and keeps it until it is
restarted, as the real binaries do; likewise the CA it trusts the API server with (the kubeconfig's
certificate-authority-data). /healthz answers ``ok`` while that certificate verifies against
the cluster CA and has not expired (a real component whose client certificate expired loses its
leader lease and exits), and while the API server's serving certificate (this machine's
apiserver.crt: kubeadm's component kubeconfigs name the local API server, which reloads its serving
pair from disk) verifies against the CA read at start (a component that cannot verify its API
server likewise loses its lease); otherwise 500 naming why. A certificate renewed on disk changes nothing
until the pod restarts: its manifest moved out of the kubelet's sight and back, or changed.

Run only by the lab machines' kubelet (its own process); the unit tests' in-process machines share
one network, where two control planes could not both listen on 127.0.0.1:10257.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time

from . import files, host, yamlish

COMPONENTS = {"kube-controller-manager": (10257, "/etc/kubernetes/controller-manager.conf"),
              "kube-scheduler": (10259, "/etc/kubernetes/scheduler.conf")}


def _embedded(kubeconfig: str, section: str, key: str) -> bytes | None:
    """A ``*-data`` field of the kubeconfig's first cluster or user, decoded (None when absent)."""
    try:
        doc = yamlish.load(host.read(kubeconfig)) or {}
        data = (doc.get(section + "s") or [{}])[0].get(section, {}).get(key, "")
        return base64.b64decode(data) if data else None
    except (OSError, ValueError, KeyError, IndexError, AttributeError):
        return None


def _client_cert(kubeconfig: str) -> bytes | None:
    return _embedded(kubeconfig, "user", "client-certificate-data")


def _ca_data(kubeconfig: str) -> bytes | None:
    return _embedded(kubeconfig, "cluster", "certificate-authority-data")


def server_untrusted(kubeconfig: str, ca: bytes | None, serving: str) -> str:
    """Why the API server's serving certificate (the file ``serving``) does not verify against ``ca``
    (the kubeconfig's certificate-authority-data as read at start); "" when it does or there is no API
    server here."""
    if not os.path.exists(serving):
        return ""
    if not ca:
        return f"no certificate-authority-data in {kubeconfig}"
    with tempfile.NamedTemporaryFile(suffix=".crt") as f:
        f.write(ca)
        f.flush()
        check = subprocess.run(["openssl", "verify", "-CAfile", f.name, serving], capture_output=True, text=True)
    if check.returncode != 0:
        return (f"the API server's certificate does not verify against the CA of {kubeconfig}: "
                "tls: failed to verify certificate: x509: certificate signed by unknown authority")
    return ""


def credential_state(kubeconfig: str) -> tuple[float, str]:
    """(valid until, why not) of the kubeconfig's client certificate as read now: until 0 when it
    does not verify against the cluster CA (openssl verify, which checks the dates too)."""
    pem = _client_cert(kubeconfig)
    if pem is None:
        return 0.0, f"no client certificate in {kubeconfig}"
    with tempfile.NamedTemporaryFile(suffix=".crt") as f:
        f.write(pem)
        f.flush()
        check = subprocess.run(["openssl", "verify", "-CAfile", host.path(f"{files.PKI}/ca.crt"), f.name],
                               capture_output=True, text=True)
        if check.returncode != 0:
            return 0.0, f"client certificate of {kubeconfig}: {check.stdout.strip() or check.stderr.strip()}"
        end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", f.name], capture_output=True, text=True)
    return ssl.cert_time_to_seconds(end.stdout.strip().split("=", 1)[1]), ""


def signer_problem(pod: dict) -> str:
    """Why the controller manager's CSR signer cannot load ``--cluster-signing-cert-file`` and
    ``--cluster-signing-key-file`` ("" when it can): the file must hold exactly one certificate (a CA
    bundle there is refused: kubernetes/kubeadm#1350, and the note in kubernetes.io's "Manual Rotation
    of CA Certificates"), and the key must be that certificate's. The real controller manager then
    fails to start its controllers and exits; here /healthz answers 500 with the real message."""
    flags = files.manifest_flags(pod)
    crt, key = flags.get("cluster-signing-cert-file"), flags.get("cluster-signing-key-file")
    if not crt or not key:
        return ""
    try:
        pem = host.read(crt)
    except OSError as e:
        return f'error reading CA cert file "{crt}": {e.strerror or e}'
    n = pem.count("-----BEGIN CERTIFICATE-----")
    if n != 1:
        return f'error reading CA cert file "{crt}": expected 1 certificate, found {n}'
    pub = subprocess.run(["openssl", "x509", "-noout", "-pubkey", "-in", host.path(crt)], capture_output=True, text=True)
    mine = subprocess.run(["openssl", "pkey", "-pubout", "-in", host.path(key)], capture_output=True, text=True)
    if pub.returncode != 0 or mine.returncode != 0 or pub.stdout != mine.stdout:
        return f'error reading CA cert file "{crt}": tls: private key does not match public key'
    return ""


def _serving_pair(name: str) -> tuple[str, str]:
    """The component's self-signed serving certificate (kubeadm gives these two no serving pair)."""
    crt, key = host.path(f"/var/lib/kubesim/{name}-serving.crt"), host.path(f"/var/lib/kubesim/{name}-serving.key")
    if not os.path.exists(crt):
        os.makedirs(os.path.dirname(crt), exist_ok=True)
        old = os.umask(0o077)
        try:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                            "-days", "3650", "-subj", f"/CN={name}@kubesim", "-keyout", key, "-out", crt],
                           check=True, capture_output=True)
        finally:
            os.umask(old)
    return crt, key


class ComponentPod:
    """One component: started when its manifest appears, restarted when it changes, stopped when it goes."""

    def __init__(self, name: str, log) -> None:
        self.name, self.log = name, log
        self.port, self.kubeconfig = COMPONENTS[name]
        # a unit test's machines share the runner's network: it may move the port (as KUBESIM_API_PORT
        # moves 6443), so two runs on one box never meet on 10257
        self.port = int(os.environ.get(f"KUBESIM_{name.upper().replace('-', '_')}_PORT", self.port))
        self.server: http.server.ThreadingHTTPServer | None = None
        self.spec = ""

    def sync(self, pod: dict | None) -> None:
        spec = hashlib.sha256(json.dumps(pod, sort_keys=True).encode()).hexdigest() if pod is not None else ""
        if spec == self.spec:
            return
        self.stop()
        if pod is not None:
            self.start(pod)
        self.spec = spec if pod is None or self.server is not None else ""  # a failed start is tried again

    def start(self, pod: dict | None = None) -> None:
        until, why = credential_state(self.kubeconfig)
        signer = signer_problem(pod) if self.name == "kube-controller-manager" and pod is not None else ""
        if signer:
            until, why = 0.0, signer
        name, kubeconfig, ca = self.name, self.kubeconfig, _ca_data(self.kubeconfig)
        serving = host.path(f"{files.PKI}/apiserver.crt")  # resolved here: the handler runs in its own thread

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] not in ("/healthz", "/livez", "/readyz"):
                    self._send(404, "404 page not found\n")
                elif time.time() < until and not (untrusted := server_untrusted(kubeconfig, ca, serving)):
                    self._send(200, "ok")
                elif time.time() < until:
                    self._send(500, f"[-]{name}: {untrusted}\nhealthz check failed\n")
                else:
                    self._send(500, f"[-]{name}: {why or 'its client certificate has expired'}\nhealthz check failed\n")

            def _send(self, code: int, text: str) -> None:
                body = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a) -> None:
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*_serving_pair(self.name))
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        except OSError as e:
            self.log(f"{self.name}: cannot listen on 127.0.0.1:{self.port}: {e}")
            return
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True, name=self.name).start()
        self.server = server
        host.write(f"/run/kubesim/{self.name}.started", f"{time.time()}\n")  # the "container"'s start, for tests
        self.log(f"{self.name} started on 127.0.0.1:{self.port}" + (f" ({why})" if why else ""))

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            self.log(f"{self.name} stopped")
