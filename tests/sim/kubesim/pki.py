"""The CA public key hash kubeadm prints as --discovery-token-ca-cert-hash (sha256 of the DER SPKI)."""

from __future__ import annotations

import base64
import hashlib
import re


def _tlv(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at i."""
    tag = data[i]
    length = data[i + 1]
    j = i + 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[j : j + n], "big")
        j += n
    return tag, j, j + length


def pem_to_der(pem: str) -> bytes:
    m = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem, re.S)
    if not m:
        raise ValueError("no PEM certificate found")
    return base64.b64decode("".join(m.group(1).split()))


def spki_der(cert_der: bytes) -> bytes:
    _, c0, _ = _tlv(cert_der, 0)  # Certificate
    _, i, _ = _tlv(cert_der, c0)  # tbsCertificate content start
    tag, _, end = _tlv(cert_der, i)
    if tag == 0xA0:  # explicit [0] version
        i = end
    for _ in range(5):  # serial, signature, issuer, validity, subject
        _, _, end = _tlv(cert_der, i)
        i = end
    _, _, end = _tlv(cert_der, i)
    return cert_der[i:end]


def ca_cert_hash(pem: str) -> str:
    return "sha256:" + hashlib.sha256(spki_der(pem_to_der(pem))).hexdigest()
