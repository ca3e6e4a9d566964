"""Keys and certificates with ``cryptography``: generation, PEM encoding, parsing, extensions.

Pure functions of their inputs (plus the randomness of key generation); the store decides when to
call them. Encodings follow kubeadm so that kubeadm treats our files as its own: private keys in the
traditional OpenSSL PEM form ("RSA PRIVATE KEY" / "EC PRIVATE KEY"), public keys as PKIX
"PUBLIC KEY", certificates as PEM.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")

# Certificates start a little in the past so a host whose clock lags the operator's machine by a
# few minutes does not reject a freshly issued certificate as "not yet valid" (kubeadm does the same).
BACKDATE = timedelta(minutes=5)

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_key(key_type: str) -> PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ("rsa-2048", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise ValueError(f"unknown key type {key_type!r} (expected one of {', '.join(KEY_TYPES)})")


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_to_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(pem: bytes, *, validate: bool = True) -> PrivateKey:
    """Parse a private key; raises ValueError for anything that is not an unencrypted RSA/EC key.

    ``validate=False`` skips the RSA consistency check, which costs ~70 ms per 2048-bit key and ~400 ms
    per 4096-bit key; callers that skip it compare the key with its certificate instead, and keys that
    are about to sign are loaded with the check.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=not validate)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a readable unencrypted PEM private key ({exc.__class__.__name__})") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError("only RSA and ECDSA keys are supported")
    return key


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ValueError("not a readable PEM certificate") from None


def same_public_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def spki_sha256(cert: x509.Certificate) -> str:
    """kubeadm's discovery-token-ca-cert-hash: sha256 over the DER SubjectPublicKeyInfo."""
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def issue_ca(key: PrivateKey, cn: str, *, days: int, now: datetime) -> x509.Certificate:
    subject = _name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    return builder.sign(key, hashes.SHA256())


@dataclass(frozen=True)
class LeafSpec:
    """What a leaf certificate must say. ``sans`` holds DNS names and IP addresses as strings."""

    cn: str
    usages: tuple[x509.ObjectIdentifier, ...]
    org: str | None = None
    sans: tuple[str, ...] = ()


def _san_entries(sans: tuple[str, ...]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for s in sans:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            out.append(x509.DNSName(s))
    return out


def issue_leaf(
    spec: LeafSpec,
    key: PrivateKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    *,
    days: int,
    now: datetime,
) -> x509.Certificate:
    # A leaf never outlives the CA that signed it: clients would reject the chain anyway.
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.cn, spec.org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA key exchange encrypts the session key with the certificate's key; ECDSA never does.
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(spec.usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if spec.sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_san_entries(spec.sans)), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def cert_sans(cert: x509.Certificate) -> set[str]:
    """DNS names and IP addresses (normalised text) a certificate covers."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = set(ext.get_values_for_type(x509.DNSName))
    names |= {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return names


def normalise_san(s: str) -> str:
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        return s.lower()


def signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):  # wrong signature, issuer name or key type
        return False
    return True


def key_type_of(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"rsa-{key.key_size}"
    return "ecdsa-p256" if isinstance(key.curve, ec.SECP256R1) else f"ecdsa-{key.curve.name}"
