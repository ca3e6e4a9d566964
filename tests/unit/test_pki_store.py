"""The local PKI store: reuse, targeted re-issue, file modes, clean errors for damaged files."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kubeforge.errors import InputError
from kubeforge.model import PkiSettings
from kubeforge.pki import PkiStoreError, ensure_pki, load_pki
from tests.factories import make_cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def move_host(cluster, name: str, address: str):
    hosts = tuple(
        dataclasses.replace(h, address=address, internal_address=address) if h.name == name else h
        for h in cluster.hosts
    )
    return dataclasses.replace(cluster, hosts=hosts)


def test_running_twice_leaves_every_file_byte_identical_and_reports_unchanged(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    first = ensure_pki(cluster, now=NOW)
    before = snapshot(cluster.pki_dir)
    second = ensure_pki(cluster)
    assert snapshot(cluster.pki_dir) == before
    assert {c.action for c in first.changes} == {"created"}
    assert second.changed == [] and len(second.changes) == len(first.changes)
    assert second.bundle.etcd_ca.cert_pem == first.bundle.etcd_ca.cert_pem


def test_changing_a_member_address_reissues_only_that_members_server_and_peer(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    before = snapshot(cluster.pki_dir)
    moved = move_host(cluster, "etcd-2", "10.77.4.50")
    result = ensure_pki(moved, now=NOW)
    assert [(c.item, c.action) for c in result.changed] == [
        ("etcd-server/etcd-2", "reissued"),
        ("etcd-peer/etcd-2", "reissued"),
    ]
    assert "10.77.4.50" in result.changed[0].reason
    after = snapshot(cluster.pki_dir)
    differing = sorted(k for k in before if before[k] != after[k])
    assert differing == [
        "etcd/members/etcd-2/peer.crt", "etcd/members/etcd-2/peer.key",
        "etcd/members/etcd-2/server.crt", "etcd/members/etcd-2/server.key",
    ]


def test_a_new_member_gets_created_certificates_and_nothing_else_changes(tmp_path: Path):
    ensure_pki(make_cluster(tmp_path, n_etcd=3), now=NOW)
    result = ensure_pki(make_cluster(tmp_path, n_etcd=5), now=NOW)
    assert [(c.item, c.action) for c in result.changed] == [
        ("etcd-server/etcd-4", "created"), ("etcd-peer/etcd-4", "created"),
        ("etcd-server/etcd-5", "created"), ("etcd-peer/etcd-5", "created"),
    ]


def test_store_directories_are_0700_keys_0600_and_certificates_0644(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    old = os.umask(0o022)
    try:
        ensure_pki(cluster, now=NOW)
    finally:
        os.umask(old)
    modes = {p.relative_to(cluster.pki_dir): stat.S_IMODE(p.stat().st_mode) for p in cluster.pki_dir.rglob("*")}
    modes[Path(".")] = stat.S_IMODE(cluster.pki_dir.stat().st_mode)
    for rel, mode in modes.items():
        if (cluster.pki_dir / rel).is_dir():
            assert mode == 0o700, rel
        elif rel.suffix == ".key":
            assert mode == 0o600, rel
        else:
            assert mode == 0o644, rel
    assert Path("sa.key") in modes and Path("etcd/members/etcd-1") in modes


def test_a_key_left_readable_by_others_is_tightened_on_the_next_run(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    os.chmod(cluster.pki_dir / "ca.key", 0o644)
    ensure_pki(cluster, now=NOW)
    assert stat.S_IMODE((cluster.pki_dir / "ca.key").stat().st_mode) == 0o600


def test_no_key_bytes_appear_in_repr_or_str_of_the_bundle(tmp_path: Path):
    result = ensure_pki(make_cluster(tmp_path), now=NOW)
    b = result.bundle
    text = " ".join([repr(b), str(b), repr(result), repr(b.sa), str(b.etcd_ca), repr(b.etcd_server("etcd-1"))])
    for _, pair in b.certificates():
        body = pair.key_pem.decode().splitlines()[1]
        assert body not in text
    assert b.sa.private_pem.decode().splitlines()[1] not in text
    assert "PRIVATE KEY" not in text and "key=***" in text


def test_a_corrupted_ca_certificate_is_a_clean_error_naming_the_file(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    (cluster.pki_dir / "etcd/ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
    with pytest.raises(PkiStoreError) as err:
        ensure_pki(cluster, now=NOW)
    assert str(cluster.pki_dir / "etcd/ca.crt") in str(err.value)
    assert isinstance(err.value, InputError) and err.value.exit_code == 3


def test_a_corrupted_leaf_key_is_an_error_not_a_silent_reissue(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    (cluster.pki_dir / "etcd/members/etcd-1/server.key").write_bytes(b"not a key")
    with pytest.raises(PkiStoreError, match="etcd-1/server.key"):
        ensure_pki(cluster, now=NOW)


def test_a_missing_ca_key_beside_its_certificate_is_refused_not_regenerated(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    cert_before = (cluster.pki_dir / "ca.crt").read_bytes()
    (cluster.pki_dir / "ca.key").unlink()
    with pytest.raises(PkiStoreError) as err:
        ensure_pki(cluster, now=NOW)
    assert f"{cluster.pki_dir / 'ca.key'}: missing" in str(err.value) and "never regenerates" in str(err.value)
    assert (cluster.pki_dir / "ca.crt").read_bytes() == cert_before
    assert not (cluster.pki_dir / "ca.key").exists()


def test_a_ca_key_that_belongs_to_another_certificate_is_an_error(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    (cluster.pki_dir / "ca.key").write_bytes((cluster.pki_dir / "front-proxy-ca.key").read_bytes())
    with pytest.raises(PkiStoreError, match="does not belong to"):
        ensure_pki(cluster, now=NOW)


def test_a_new_etcd_ca_made_on_purpose_reissues_every_leaf_it_signs(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    (cluster.pki_dir / "etcd/ca.crt").unlink()
    (cluster.pki_dir / "etcd/ca.key").unlink()
    result = ensure_pki(cluster, now=NOW)
    reissued = {c.item for c in result.changes if c.action == "reissued"}
    assert reissued == {
        *(f"etcd-{kind}/etcd-{i}" for kind in ("server", "peer") for i in (1, 2, 3)),
        "etcd-healthcheck-client", "apiserver-etcd-client",
    }
    assert all("not signed by the current etcd-ca" in c.reason for c in result.changes if c.action == "reissued")


def test_a_lost_leaf_key_reissues_that_leaf_with_the_reason(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    (cluster.pki_dir / "etcd/healthcheck-client.key").unlink()
    result = ensure_pki(cluster, now=NOW)
    assert [str(c) for c in result.changed] == ["reissued etcd-healthcheck-client: healthcheck-client.key was missing"]


def test_a_missing_sa_key_beside_sa_pub_is_refused(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    (cluster.pki_dir / "sa.key").unlink()
    with pytest.raises(PkiStoreError, match="service-account"):
        ensure_pki(cluster, now=NOW)


def test_load_pki_never_writes_and_says_to_render_when_the_store_is_missing(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    with pytest.raises(PkiStoreError) as err:
        load_pki(cluster)
    assert "no PKI store" in str(err.value) and "kubeforge render" in (err.value.hint or "")
    assert not cluster.pki_dir.exists()


def test_load_pki_names_a_missing_member_certificate(tmp_path: Path):
    ensure_pki(make_cluster(tmp_path, n_etcd=3), now=NOW)
    with pytest.raises(PkiStoreError, match="etcd/members/etcd-4/server.crt: missing"):
        load_pki(make_cluster(tmp_path, n_etcd=5))


def test_an_unknown_key_type_is_a_clear_error(tmp_path: Path):
    cluster = dataclasses.replace(make_cluster(tmp_path), pki=PkiSettings(key_type="dsa-1024"))
    with pytest.raises(PkiStoreError, match="dsa-1024"):
        ensure_pki(cluster, now=NOW)


def test_a_damaged_rsa_ca_key_is_refused_before_it_signs_anything(tmp_path: Path):
    cluster = dataclasses.replace(make_cluster(tmp_path, n_etcd=1), pki=PkiSettings(key_type="rsa-2048"))
    ensure_pki(cluster, now=NOW)
    path = cluster.pki_dir / "etcd/ca.key"
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    n = key.private_numbers()
    # Same public half (so it still "belongs" to ca.crt), broken private exponent.
    broken = rsa.RSAPrivateNumbers(n.p, n.q, n.d + 2, n.dmp1, n.dmq1, n.iqmp, n.public_numbers)
    path.write_bytes(
        broken.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    assert ensure_pki(cluster, now=NOW).changed == []  # nothing to sign: the key is only compared
    (cluster.pki_dir / "etcd/healthcheck-client.crt").unlink()
    with pytest.raises(PkiStoreError, match="etcd/ca.key"):
        ensure_pki(cluster, now=NOW)
    assert not (cluster.pki_dir / "etcd/healthcheck-client.crt").exists()
