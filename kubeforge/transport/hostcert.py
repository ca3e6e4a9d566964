"""OpenSSH host certificates (PROTOCOL.certkeys), checked against ``@cert-authority`` keys.

paramiko negotiates ``*-cert-v01@openssh.com`` host key algorithms and checks that the server holds
the certified key (the key exchange signature), but it does not look at the certificate itself:
its type, principals, validity and the CA's signature are checked here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import paramiko
from paramiko.message import Message

HOST_CERT = 2
CERT_SUFFIX = "-cert-v01@openssh.com"
# The public numbers of each key type, after the nonce (PROTOCOL.certkeys).
_KEY_FIELDS = {
    "ssh-rsa": ("mpint", "mpint"),
    "ssh-dss": ("mpint", "mpint", "mpint", "mpint"),
    "ecdsa-sha2-nistp256": ("string", "string"),
    "ecdsa-sha2-nistp384": ("string", "string"),
    "ecdsa-sha2-nistp521": ("string", "string"),
    "ssh-ed25519": ("string",),
}


class CertificateError(ValueError):
    """The certificate cannot be trusted; the message says why."""


@dataclass(frozen=True)
class HostCertificate:
    key_type: str  # the certified key's type, e.g. "ssh-ed25519"
    serial: int
    cert_type: int
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    ca_blob: bytes
    signed: bytes
    signature: bytes

    def ca_key(self) -> paramiko.PKey:
        m = Message(self.ca_blob)
        return paramiko.PKey.from_type_string(m.get_text(), self.ca_blob)


class _Reader:
    """SSH wire format, strictly: reading past the end is an error (paramiko's Message pads with
    zeros instead, which would make a truncated certificate look whole)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CertificateError("unreadable certificate (truncated)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def uint64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def string(self) -> bytes:
        return self.take(self.uint32())

    def text(self) -> str:
        return self.string().decode("utf-8", errors="replace")


def _strings(blob: bytes) -> tuple[str, ...]:
    r, out = _Reader(blob), []
    while r.pos < len(blob):
        out.append(r.text())
    return tuple(out)


def parse_certificate(blob: bytes) -> HostCertificate:
    """Read a certificate blob; raises CertificateError when it is not one."""
    r = _Reader(blob)
    cert_name = r.text()
    if not cert_name.endswith(CERT_SUFFIX):
        raise CertificateError(f"{cert_name[:60]!r} is not a certificate type")
    key_type = cert_name[: -len(CERT_SUFFIX)]
    fields = _KEY_FIELDS.get(key_type)
    if fields is None:
        raise CertificateError(f"unsupported certificate key type {key_type[:60]!r}")
    r.string()  # nonce
    for _ in fields:  # mpints and strings have the same framing
        r.string()
    serial = r.uint64()
    cert_type = r.uint32()
    key_id = r.text()
    principals = _strings(r.string())
    valid_after = r.uint64()
    valid_before = r.uint64()
    for _ in range(3):  # critical options, extensions, reserved
        r.string()
    ca_blob = r.string()
    signed = blob[: r.pos]
    signature = r.string()
    if not ca_blob or not signature or r.pos != len(blob):
        raise CertificateError("unreadable certificate (no CA key, no signature, or trailing bytes)")
    return HostCertificate(key_type, serial, cert_type, key_id, principals, valid_after, valid_before,
                           ca_blob, signed, signature)


def check_host_certificate(cert: HostCertificate, hostname: str, authorities: list[bytes], now: float | None = None) -> None:
    """Return when ``cert`` is a valid host certificate for ``hostname`` signed by one of
    ``authorities`` (CA public key blobs); raise CertificateError saying why not."""
    if cert.cert_type != HOST_CERT:
        raise CertificateError(f"certificate {cert.key_id[:60]!r} is a user certificate, not a host certificate")
    if cert.ca_blob not in authorities:
        raise CertificateError(f"certificate {cert.key_id[:60]!r} is signed by a CA that known_hosts does not "
                               "list as @cert-authority for this host")
    try:
        ok = cert.ca_key().verify_ssh_sig(cert.signed, Message(cert.signature))
    except Exception:  # noqa: BLE001 - a malformed signature is a bad signature
        ok = False
    if not ok:
        raise CertificateError(f"certificate {cert.key_id[:60]!r}: the CA's signature does not verify")
    t = int(time.time() if now is None else now)
    if not cert.valid_after <= t < cert.valid_before:
        raise CertificateError(f"certificate {cert.key_id[:60]!r} is not valid now (valid from "
                               f"{cert.valid_after} to {cert.valid_before}, unix time)")
    if cert.principals and hostname not in cert.principals:
        shown = ", ".join(p[:60] for p in cert.principals[:5])
        raise CertificateError(f"certificate {cert.key_id[:60]!r} does not name {hostname} (it names {shown})")


def certificate_of(key: paramiko.PKey) -> bytes | None:
    """The certificate blob paramiko kept for a server key presented as a certificate, or None."""
    blob = getattr(key, "public_blob", None)
    if blob is None or not str(blob.key_type).endswith(CERT_SUFFIX):
        return None
    return bytes(blob.key_blob)
