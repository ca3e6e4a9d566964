"""The etcd PKI on a machine, described by what must hold rather than by bytes: keys and
certificates are new in every run that creates them, so two converged runs never share their bytes.
Each certificate must be issued by the machine's CA and match its key; the CA must be the one the
cluster's other machines have."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

PKI = "/etc/etcd/pki"


def _public(obj) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def describe(lab, host: str) -> tuple[list[str], str | None]:
    """Sorted lines (name, mode, owner, and whether it verifies), and the CA's sha256 (None: no CA)."""
    listing = lab.exec(host, ["bash", "-c", f"cd {PKI} 2>/dev/null && stat -c '%n %a %U:%G' * 2>/dev/null"]).stdout.split("\n")
    lines, files = [], [line for line in listing if line.strip()]
    ca_pem = lab.exec(host, ["cat", f"{PKI}/ca.crt"]).stdout if files else ""
    ca = x509.load_pem_x509_certificate(ca_pem.encode()) if ca_pem else None
    for entry in files:
        name = entry.split()[0]
        verdict = ""
        if name.endswith(".crt") and name != "ca.crt" and ca is not None:
            cert = x509.load_pem_x509_certificate(lab.exec(host, ["cat", f"{PKI}/{name}"]).stdout.encode())
            try:
                cert.verify_directly_issued_by(ca)
                verdict = "issued by the CA"
            except (InvalidSignature, ValueError, TypeError) as e:
                verdict = f"NOT issued by the CA ({type(e).__name__})"
            key_name = name[:-4] + ".key"
            if any(f.split()[0] == key_name for f in files):
                key = serialization.load_pem_private_key(lab.exec(host, ["cat", f"{PKI}/{key_name}"]).stdout.encode(), None)
                verdict += ", matches its key" if _public(key) == _public(cert) else ", does NOT match its key"
        lines.append(f"{entry} {verdict}".rstrip())
    return sorted(lines), (hashlib.sha256(ca_pem.encode()).hexdigest() if ca_pem else None)
