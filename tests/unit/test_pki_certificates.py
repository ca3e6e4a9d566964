"""The generated certificates, checked by their properties and by the real `openssl verify`."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeforge.model import EtcdTopology, PkiSettings
from kubeforge.pki import ensure_pki
from tests.factories import make_cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


@pytest.fixture(scope="module", params=["ecdsa-p256", "rsa-2048"])
def generated(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    cluster = dataclasses.replace(make_cluster(tmp), pki=PkiSettings(key_type=request.param))
    return request.param, cluster, ensure_pki(cluster, now=NOW)


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def test_every_certificate_passes_openssl_verify_against_its_ca(generated):
    _, cluster, result = generated
    pki = cluster.pki_dir
    checks = [(pki / "etcd/ca.crt", p) for p in sorted((pki / "etcd").rglob("*.crt")) if p.name != "ca.crt"]
    checks.append((pki / "etcd/ca.crt", pki / "apiserver-etcd-client.crt"))
    checks += [(pki / "ca.crt", pki / "ca.crt"), (pki / "front-proxy-ca.crt", pki / "front-proxy-ca.crt")]
    assert len(checks) == 2 * 3 + 1 + 1 + 2  # server+peer per member, healthcheck, apiserver client, CAs
    for ca, leaf in checks:
        out = subprocess.run(
            ["openssl", "verify", "-CAfile", str(ca), str(leaf)], capture_output=True, text=True
        )
        assert out.returncode == 0 and out.stdout.strip().endswith("OK"), (leaf, out.stdout, out.stderr)


def test_a_leaf_fails_openssl_verify_against_another_ca(generated):
    _, cluster, _ = generated
    pki = cluster.pki_dir
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(pki / "apiserver-etcd-client.crt")],
        capture_output=True, text=True,
    )
    assert out.returncode != 0


def test_cas_are_critical_ca_true_with_cert_signing_usages_and_kubeadm_names(generated):
    _, _, result = generated
    b = result.bundle
    for pair, cn in ((b.etcd_ca, "etcd-ca"), (b.kube_ca, "kubernetes"), (b.front_proxy_ca, "front-proxy-ca")):
        cert = pair.cert
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
        assert cert.issuer == cert.subject
        bc = ext(cert, x509.BasicConstraints)
        assert bc.critical and bc.value.ca
        ku = ext(cert, x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
        ski = ext(cert, x509.SubjectKeyIdentifier).value
        assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest


def test_member_certificates_cover_name_addresses_and_loopback_for_server_and_client_use(generated):
    _, cluster, result = generated
    for host in cluster.etcd_members:
        for pair in (result.bundle.etcd_server(host.name), result.bundle.etcd_peer(host.name)):
            cert = pair.cert
            san = ext(cert, x509.SubjectAlternativeName).value
            assert set(san.get_values_for_type(x509.DNSName)) == {host.name, "localhost"}
            assert set(san.get_values_for_type(x509.IPAddress)) == {
                ipaddress.ip_address(host.address), ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
            }
            assert set(ext(cert, x509.ExtendedKeyUsage).value) == {SERVER, CLIENT}
            assert cert.issuer == result.bundle.etcd_ca.cert.subject


def test_client_certificates_are_client_auth_only_and_apiserver_is_in_system_masters(generated):
    _, _, result = generated
    api = result.bundle.apiserver_etcd_client.cert
    assert api.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kube-apiserver-etcd-client"
    assert api.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    for cert in (api, result.bundle.etcd_healthcheck_client.cert):
        assert list(ext(cert, x509.ExtendedKeyUsage).value) == [CLIENT]


def test_leaves_are_not_cas_and_key_usage_matches_the_key_type(generated):
    key_type, _, result = generated
    for name, pair in result.bundle.certificates():
        if name.endswith("-ca"):
            continue
        bc = ext(pair.cert, x509.BasicConstraints)
        assert bc.critical and not bc.value.ca
        ku = ext(pair.cert, x509.KeyUsage).value
        assert ku.digital_signature and not ku.key_cert_sign
        assert ku.key_encipherment is key_type.startswith("rsa")


def test_keys_are_of_the_configured_type(generated):
    key_type, _, result = generated
    expected = rsa.RSAPublicKey if key_type.startswith("rsa") else ec.EllipticCurvePublicKey
    for _, pair in result.bundle.certificates():
        assert isinstance(pair.cert.public_key(), expected)
    assert (b"RSA PRIVATE KEY" if key_type.startswith("rsa") else b"EC PRIVATE KEY") in result.bundle.sa.private_pem
    assert result.bundle.sa.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_validity_windows_follow_the_settings_and_start_slightly_before_now(generated):
    _, cluster, result = generated
    b = result.bundle
    assert b.kube_ca.cert.not_valid_after_utc == NOW + timedelta(days=cluster.pki.ca_days)
    leaf = b.etcd_server(cluster.etcd_members[0].name).cert
    assert leaf.not_valid_after_utc == NOW + timedelta(days=cluster.pki.leaf_days)
    assert NOW - timedelta(minutes=10) < leaf.not_valid_before_utc < NOW


def test_kube_ca_cert_hash_matches_openssl_pubkey_digest(generated):
    _, cluster, result = generated
    pub = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout", "-in", str(cluster.pki_dir / "ca.crt")],
        capture_output=True, check=True,
    ).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True, check=True).stdout
    assert result.bundle.kube_ca_cert_hash == "sha256:" + hashlib.sha256(der).hexdigest()


def test_stacked_topology_issues_member_certificates_for_the_control_planes(tmp_path: Path):
    cluster = make_cluster(tmp_path, topology=EtcdTopology.STACKED)
    result = ensure_pki(cluster, now=NOW)
    assert sorted(result.bundle.etcd_servers) == ["cp-1", "cp-2", "cp-3"]


def test_a_leaf_never_outlives_its_ca(tmp_path: Path):
    cluster = dataclasses.replace(make_cluster(tmp_path), pki=PkiSettings(ca_days=30, leaf_days=365))
    b = ensure_pki(cluster, now=NOW).bundle
    assert b.apiserver_etcd_client.cert.not_valid_after_utc == b.etcd_ca.cert.not_valid_after_utc
