"""The certificates on one host, read in one sudo script (kubeforge.facts.host_certs) and parsed
here with ``cryptography``.

The script prints only certificate blocks: files that also hold a private key (the kubelet's
``kubelet-client-current.pem``) are filtered to their ``CERTIFICATE`` blocks on the host, and from
kubeconfigs only the ``client-certificate-data`` line is read, never ``client-key-data``, so no key
travels (stdout goes to the run log).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubeforge.model.kubeadm_paths import (
    ADMIN_CONF,
    CONTROLLER_MANAGER_CONF,
    KUBELET_CONF,
    SCHEDULER_CONF,
    SUPER_ADMIN_CONF,
)
from kubeforge.pki import crypto
from kubeforge.pki.layout import ETCD_PKI, KUBE_PKI

KUBELET_PKI = "/var/lib/kubelet/pki"
CERT_GLOBS = (f"{KUBE_PKI}/*.crt", f"{KUBE_PKI}/etcd/*.crt", f"{ETCD_PKI}/*.crt",
              f"{KUBELET_PKI}/kubelet-client-current.pem", f"{KUBELET_PKI}/kubelet.crt")
KUBECONFIGS = (ADMIN_CONF, SUPER_ADMIN_CONF, CONTROLLER_MANAGER_CONF, SCHEDULER_CONF, KUBELET_CONF)
MARK = "==> "


@dataclass(frozen=True)
class HostCert:
    host: str
    path: str
    subject: str
    issuer: str
    not_after: datetime
    sans: tuple[str, ...]
    sha256: str  # of the DER certificate: equal on host and in the store means the same certificate
    error: str = ""  # set when the file held no readable certificate (the other fields are empty)

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days  # floor: 3 hours past expiry is -1

    def to_json(self, now: datetime) -> dict[str, object]:
        if self.error:
            return {"host": self.host, "path": self.path, "error": self.error}
        return {"host": self.host, "path": self.path, "subject": self.subject, "issuer": self.issuer,
                "notAfter": self.not_after.isoformat(), "daysLeft": self.days_left(now),
                "sans": list(self.sans), "sha256": self.sha256}


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def describe(host: str, path: str, cert: x509.Certificate) -> HostCert:
    return HostCert(host=host, path=path, subject=cert.subject.rfc4514_string(),
                    issuer=cert.issuer.rfc4514_string(), not_after=cert.not_valid_after_utc,
                    sans=tuple(sorted(crypto.cert_sans(cert))), sha256=fingerprint(cert))


def _first_cert(path: str, body: str) -> x509.Certificate:
    text = body.strip()
    if path.endswith(".conf"):
        if not text:
            # kubelet.conf names a file instead (the rotated client cert, read from its own path)
            raise LookupError("no embedded client certificate")
        text = base64.b64decode(text.splitlines()[0], validate=True).decode()
    certs = x509.load_pem_x509_certificates(text.encode())
    return certs[0]  # a chain file's first certificate is the leaf


def parse_probe(host: str, stdout: str) -> list[HostCert]:
    """The probe's output as HostCerts, in the order read. A truncated answer (no end mark) is an
    error: a missing certificate must not look like one that is absent."""
    if "@@end" not in stdout:
        raise ValueError(f"{host}: the certificate probe's answer was cut short")
    out: list[HostCert] = []
    path: str | None = None
    body: list[str] = []

    def flush() -> None:
        if path is None:
            return
        try:
            out.append(describe(host, path, _first_cert(path, "\n".join(body))))
        except LookupError:
            return
        except (ValueError, UnicodeDecodeError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            out.append(HostCert(host, path, "", "", datetime.min.replace(tzinfo=UTC), (), "",
                                error=f"no readable certificate ({why})"))

    for line in stdout.splitlines():
        if line.startswith(MARK) or line == "@@end":
            flush()
            path, body = (line[len(MARK):], []) if line.startswith(MARK) else (None, [])
        elif path is not None:
            body.append(line)
    return out
