"""The etcd PKI on a machine, described by what must hold rather than by bytes: keys and
certificates are new in every run that creates them, so two converged runs never share their bytes.
Each certificate must be issued by the machine's CA and match its key; the CA must be the one the
cluster's other machines have."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

PKI = "/etc/etcd/pki"
APISERVER_ETCD_CA = "/etc/kubernetes/pki/etcd/ca.crt"  # where an API server set up for external etcd trusts it


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


# --- a client of the new CA while `certs rotate-ca --ca etcd` runs ----------------------------------
ROTATION_CA = Path("rotation/etcd-ca/etcd")  # under the store's pki/: the new CA, written before any step


def issue_client(ca_dir: Path, trust: bytes, into: Path):
    """A client certificate of the CA in ``ca_dir`` (its ca.crt and ca.key), trusting ``trust``
    (PEM), written 0600 in a 0700 ``into``. None when that CA is not (yet wholly) there."""
    from datetime import UTC, datetime

    from kubeforge.pki import crypto
    from tests.faults.etcdwire import ClientCerts

    try:
        ca_cert = crypto.load_cert((ca_dir / "ca.crt").read_bytes())
        ca_key = crypto.load_key((ca_dir / "ca.key").read_bytes())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return None
    key = crypto.generate_key("ecdsa-p256")
    leaf = crypto.issue_leaf(crypto.LeafSpec(cn="faults-client", usages=(crypto.CLIENT_AUTH,)), key,
                             ca_cert, ca_key, days=1, now=datetime.now(UTC))
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    into.chmod(0o700)
    (into / "ca.crt").write_bytes(trust)
    (into / "client.key").touch(mode=0o600)
    (into / "client.key").write_bytes(crypto.key_to_pem(key))
    (into / "client.crt").write_bytes(crypto.cert_to_pem(leaf))
    return ClientCerts(into / "ca.crt", into / "client.crt", into / "client.key")


def new_ca_client(store_pki: Path, into: Path):
    """What an operator hands a client once the rotation has written the new CA to the store: trust
    in both CAs (a member shows a leaf of either until phase 2 ends) and a client certificate of the
    new CA alone (members trust it from their phase-1 restart on). None until the new CA exists."""
    try:
        trust = (store_pki / "etcd" / "ca.crt").read_bytes() + (store_pki / ROTATION_CA / "ca.crt").read_bytes()
    except OSError:
        return None
    return issue_client(store_pki / ROTATION_CA, trust, into)


def store_ca_sha256(store_pki: Path) -> str | None:
    try:
        return hashlib.sha256((store_pki / "etcd" / "ca.crt").read_bytes()).hexdigest()
    except OSError:
        return None
