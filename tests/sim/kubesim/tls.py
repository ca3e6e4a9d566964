"""TLS between the simulator's clients and its API server, as with the real ones.

Clients (kubectl, kubeadm, the kubelet) take the server's CA and their client certificate from a
kubeconfig (``certificate-authority-data`` / ``certificate-authority``, ``client-certificate-data`` /
``client-certificate``, ``client-key-data`` / ``client-key``, ``insecure-skip-tls-verify``) and verify
the server's certificate and name. The API server asks for a client certificate, trusts the cluster
CA (``--client-ca-file``) and takes the user from its CN and the groups from its O entries.

A front proxy (kubeadm's ``--requestheader-*`` flags: the aggregation layer's client, which is each API
server itself with ``--proxy-client-cert-file``) shows a certificate from the front-proxy CA
(``--requestheader-client-ca-file``) whose CN is one of ``--requestheader-allowed-names``, and names
the user in ``X-Remote-User`` (groups in ``X-Remote-Group``). The handshake trusts both CA files, as
the real server's does; a certificate from neither is refused there, one from the front-proxy CA
without the header, or with a CN not allowed, is Unauthorized.

Client certificates are real ones signed with ``openssl ca`` by the cluster CA (kubeadm's kubeconfig
phase on a control plane; the API server signing a joining kubelet's request, as the CSR signer does).
"""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass

from . import host
from .host import SimError

PKI = "/etc/kubernetes/pki"
CERT_TIME = "%b %d %H:%M:%S %Y %Z"
_NO_CHECK_TIME = 0x200000  # OpenSSL's X509_V_FLAG_NO_CHECK_TIME: the API server judges expiry itself
ANONYMOUS = ("system:anonymous", ("system:unauthenticated",))
CERTIFICATE_VALIDITY = 8760 * 3600.0  # kubeadm's CertificateValidity: one year
UNAUTHORIZED = "error: You must be logged in to the server (Unauthorized)"


def _utc(t: float) -> str:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))


def _ca_config(d: str) -> str:
    open(f"{d}/index.txt", "w").close()
    with open(f"{d}/ca.cnf", "w", encoding="utf-8") as f:
        f.write(f"[ca]\ndefault_ca = sim\n[sim]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}\ndefault_md = sha256\n"
                "policy = any\nunique_subject = no\npreserve = yes\nrand_serial = yes\nx509_extensions = client\n"
                "[any]\norganizationName = optional\ncommonName = supplied\n[client]\n"
                "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage = clientAuth\n")
    return f"{d}/ca.cnf"


def new_request(name: str, orgs: list[str]) -> tuple[bytes, bytes]:
    """(CSR, key) for a client named ``name`` in groups ``orgs`` (an ECDSA P-256 key)."""
    subject = "".join(f"/O={o}" for o in orgs) + f"/CN={name}"
    with tempfile.TemporaryDirectory(prefix="kubesim-csr-") as d:
        old = os.umask(0o077)
        try:
            subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                            "-subj", subject, "-keyout", f"{d}/key.pem", "-out", f"{d}/req.csr"],
                           check=True, capture_output=True)
        except subprocess.CalledProcessError as e:
            raise SimError(f"failure while creating the client certificate: {e.stderr.decode(errors='replace').strip()}") from None
        finally:
            os.umask(old)
        with open(f"{d}/req.csr", "rb") as c, open(f"{d}/key.pem", "rb") as k:
            return c.read(), k.read()


def sign(csr: bytes, not_after: float, ca_crt: str, ca_key: str) -> bytes:
    """A clientAuth certificate for ``csr`` (subject kept) signed by the CA files (full paths)."""
    with tempfile.TemporaryDirectory(prefix="kubesim-sign-") as d:
        with open(f"{d}/req.csr", "wb") as f:
            f.write(csr)
        try:
            # kubeadm back-dates NotBefore a little against clock skew; the end is exactly not_after
            subprocess.run(["openssl", "ca", "-batch", "-config", _ca_config(d), "-cert", ca_crt, "-keyfile", ca_key,
                            "-in", f"{d}/req.csr", "-out", f"{d}/crt.pem", "-notext",
                            "-startdate", _utc(min(time.time(), not_after) - 300), "-enddate", _utc(not_after)],
                           check=True, capture_output=True)
        except subprocess.CalledProcessError as e:
            raise SimError(f"failure while signing the client certificate: {e.stderr.decode(errors='replace').strip()}") from None
        with open(f"{d}/crt.pem", "rb") as c:
            return c.read()


def local_ca() -> tuple[str, str]:
    """The cluster CA's files on this machine (a control plane), or kubeadm's error."""
    for file in ("ca.crt", "ca.key"):
        if not host.exists(f"{PKI}/{file}"):
            raise SimError(f"couldn't create a kubeconfig; the CA files couldn't be loaded: open {PKI}/{file}: "
                           "no such file or directory")
    return host.path(f"{PKI}/ca.crt"), host.path(f"{PKI}/ca.key")


def client_certificate(name: str, orgs: list[str], not_after: float) -> tuple[bytes, bytes]:
    """(certificate, key) signed by this machine's cluster CA."""
    return client_certificate_from(*local_ca(), name, orgs, not_after)


def client_certificate_from(ca_crt: str, ca_key: str, name: str, orgs: list[str], not_after: float) -> tuple[bytes, bytes]:
    csr, key = new_request(name, orgs)
    return sign(csr, not_after, ca_crt, ca_key), key


# --- clients ----------------------------------------------------------------------------------------


def _data(user_or_cluster: dict, field: str, base_dir: str) -> bytes | None:
    if user_or_cluster.get(f"{field}-data"):
        return base64.b64decode(user_or_cluster[f"{field}-data"])
    if user_or_cluster.get(field):
        p = user_or_cluster[field]
        with open(p if os.path.isabs(p) else os.path.join(base_dir, p), "rb") as f:
            return f.read()
    return None


def _current(cfg: dict, section: str) -> dict:
    contexts = {c.get("name"): c.get("context") or {} for c in cfg.get("contexts") or []}
    ctx = contexts.get(cfg.get("current-context")) or next(iter(contexts.values()), {})
    key = "cluster" if section == "clusters" else "user"
    entries = {e.get("name"): e.get(key) or {} for e in cfg.get(section) or []}
    return entries.get(ctx.get(key)) or next(iter(entries.values()), {})


def client_context(cfg: dict, base_dir: str) -> tuple[ssl.SSLContext, str | None]:
    """(TLS context, bearer token) for a kubeconfig's current context."""
    cluster, user = _current(cfg, "clusters"), _current(cfg, "users")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ca = _data(cluster, "certificate-authority", base_dir)
        if ca:
            ctx.load_verify_locations(cadata=ca.decode(errors="replace"))
        else:
            ctx.load_default_certs()
    crt, key = _data(user, "client-certificate", base_dir), _data(user, "client-key", base_dir)
    if crt and key:
        with tempfile.TemporaryDirectory(prefix="kubesim-tls-") as d:  # 0700; ssl loads only from files
            with open(os.open(f"{d}/pair.pem", os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(crt + b"\n" + key)
            try:
                ctx.load_cert_chain(f"{d}/pair.pem")
            except ssl.SSLError as e:
                raise SimError(f"error: tls: failed to find any PEM data in certificate input ({e.reason})") from None
    return ctx, user.get("token")


def anonymous_context() -> ssl.SSLContext:
    """A probe's TLS (the kubelet's HTTPS probes and kubeadm's health waits skip verification)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- the API server ---------------------------------------------------------------------------------


def server_context(pair: tuple[str, str], client_ca: str | None, proxy_ca: str | None = None) -> ssl.SSLContext:
    """The API server's TLS: its serving pair; a client certificate is asked for and checked against
    ``--client-ca-file`` and ``--requestheader-client-ca-file`` (no certificate: anonymous). The chain
    is checked in the handshake, the dates by ``identity`` so that an expired certificate is answered
    401 like the real server does."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pair)
    cas = [f for f in (client_ca, proxy_ca) if f and os.path.exists(f)]
    if cas:
        for f in cas:
            ctx.load_verify_locations(f)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_flags = ssl.VerifyFlags(int(ctx.verify_flags) | _NO_CHECK_TIME)
        # TLS 1.2: a refused client certificate fails the handshake itself (in 1.3 it would surface
        # only on the client's first read), so clients can tell "Unauthorized" from a lost server
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def identity(peer: dict | None, now: float) -> tuple[str, tuple[str, ...]] | None:
    """(user, groups) of a verified client certificate; None when it is outside its validity period;
    the anonymous user when there is none."""
    if not peer:
        return ANONYMOUS
    try:
        not_before = ssl.cert_time_to_seconds(peer["notBefore"])
        not_after = ssl.cert_time_to_seconds(peer["notAfter"])
    except (KeyError, ValueError):
        return None
    if not not_before <= now <= not_after:
        return None
    names = [(k, v) for rdn in peer.get("subject") or () for k, v in rdn]
    user = next((v for k, v in names if k == "commonName"), "")
    groups = tuple(v for k, v in names if k == "organizationName")
    return (user, groups + ("system:authenticated",)) if user else None


@dataclass(frozen=True)
class RequestHeader:
    """kube-apiserver's request-header authenticator: the subjects of the CAs in
    ``--requestheader-client-ca-file`` and the other ``--requestheader-*`` flags."""

    issuers: tuple[tuple, ...]
    allowed_names: tuple[str, ...]
    username_headers: tuple[str, ...]
    group_headers: tuple[str, ...]

    @classmethod
    def from_flags(cls, flags: dict[str, str], ca_file: str) -> RequestHeader | None:
        if not flags.get("requestheader-client-ca-file") or not os.path.exists(ca_file):
            return None
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        probe.load_verify_locations(ca_file)

        def listed(flag: str) -> tuple[str, ...]:
            return tuple(v for v in flags.get(flag, "").split(",") if v)

        return cls(tuple(c["subject"] for c in probe.get_ca_certs()), listed("requestheader-allowed-names"),
                   listed("requestheader-username-headers"), listed("requestheader-group-headers"))

    def issued(self, peer: dict) -> bool:
        """The handshake verified ``peer`` against the union of both CA files: one whose issuer is a
        front-proxy CA came through this authenticator's trust."""
        return bool(peer) and peer.get("issuer") in self.issuers

    def identity(self, peer: dict, headers, now: float) -> tuple[str, tuple[str, ...]] | None:
        """(user, groups) a front proxy asserts; None (Unauthorized) when its certificate is outside
        its validity period or not an allowed name, or when it names no user."""
        proxy = identity(peer, now)
        if proxy is None or self.allowed_names and proxy[0] not in self.allowed_names:
            return None
        user = next((v for h in self.username_headers for v in headers.get_all(h) or () if v), "")
        if not user:
            return None
        groups = tuple(v for h in self.group_headers for v in headers.get_all(h) or ())
        return user, groups + ("system:authenticated",)
