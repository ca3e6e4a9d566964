"""The rendered haproxy.cfg run by the real haproxy on loopback, in front of two TLS API stand-ins
answering /readyz: when one stops, no client request fails — not even in the seconds before the health
check takes it out (a refused connection is retried on the other server) — and a server that comes
back is taken in again within a few seconds."""

from __future__ import annotations

import datetime
import http.server
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubeforge.render import render_host
from tests.golden.cases import CASES

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    crt, pem = tmp / "api.crt", tmp / "api.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


class Readyz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.server.name.encode()
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class ApiStandIn:
    """An HTTPS server on loopback saying its name, like an API server's /readyz (TLS like 6443)."""

    def __init__(self, name: str, port: int, ctx: ssl.SSLContext):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Readyz)
        self.server.name = name
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()  # the port refuses from now on, as a stopped API server's does


def ask(port: int) -> str | None:
    """One HTTPS request through haproxy; the answering server's name, or None when it failed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except (OSError, ssl.SSLError):
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode() if head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")) else None


def server_states(sock: Path) -> dict[str, str]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(b"show stat\n")
        out = s.makefile().read()
    return {r[1]: r[17] for r in (line.split(",") for line in out.splitlines())
            if r[0] == "kube-apiserver" and r[1] not in ("FRONTEND", "BACKEND")}


def wait_for(what: str, probe, timeout: float) -> float:
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def balanced(tmp_path: Path):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy is not installed (apt-get install haproxy)")
    c = CASES["stacked-haproxy"]()
    cfg = {f.path: f.content for f in render_host(c, c.load_balancers[0])}["/etc/haproxy/haproxy.cfg"].decode()
    front, ports = free_port(), [free_port(), free_port()]
    sock = tmp_path / "admin.sock"
    # Only addresses change: the frontend and two of the servers onto loopback, the rest dropped.
    cfg = cfg.replace("bind *:6443", f"bind 127.0.0.1:{front}").replace("/run/haproxy/admin.sock", str(sock))
    cfg = cfg.replace("log /dev/log local0", "")
    servers = re.findall(r"^    server (\S+) (\S+) .*$", cfg, flags=re.MULTILINE)
    assert len(servers) >= 2, cfg
    lines = []
    for line in cfg.splitlines():
        m = re.match(r"^    server (\S+) (\S+)", line)
        if m:
            index = [s for s, _ in servers].index(m.group(1))
            if index >= 2:
                continue
            line = line.replace(m.group(2), f"127.0.0.1:{ports[index]}")
        lines.append(line)
    (tmp_path / "haproxy.cfg").write_text("\n".join(lines) + "\n")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*self_signed(tmp_path))
    names = [s for s, _ in servers[:2]]
    apis = {name: ApiStandIn(name, port, tls) for name, port in zip(names, ports, strict=False)}
    proc = subprocess.Popen([haproxy, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for("haproxy's admin socket", sock.exists, 10)
        wait_for("both servers UP", lambda: set(server_states(sock).values()) == {"UP"}, 15)
        yield front, sock, apis, ports, tls
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for api in apis.values():
            api.stop() if api.thread.is_alive() else None


def test_no_request_fails_when_an_api_server_stops_and_the_check_takes_it_out(balanced):
    front, sock, apis, _, _ = balanced
    first, second = list(apis)
    assert {ask(front) for _ in range(6)} == {first, second}, "round robin over both servers"
    apis[first].stop()
    answers: list[str | None] = []
    # requests from the moment it stops until haproxy marks it DOWN: round robin still picks it
    took = wait_for(f"{first} marked DOWN", lambda: answers.append(ask(front)) or server_states(sock)[first] == "DOWN", 20)
    assert answers.count(None) == 0, answers
    assert len(answers) >= 4, "the window before the check took it out was probed"
    assert set(answers) == {second}
    assert took < 10, "three failed checks 2 s apart"


def test_a_server_that_comes_back_is_taken_in_again_within_seconds(balanced):
    _, sock, apis, ports, tls = balanced
    first = next(iter(apis))
    apis[first].stop()
    wait_for(f"{first} marked DOWN", lambda: server_states(sock)[first] == "DOWN", 20)
    apis[first] = ApiStandIn(first, ports[0], tls)
    took = wait_for(f"{first} UP again", lambda: server_states(sock)[first] == "UP", 15)
    assert took < 5, "a down server is checked every second and needs two good checks"
