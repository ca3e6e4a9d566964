"""Backup files on the operator's machine: integrity trailer, encryption, manifests, retention.

Snapshots come from a real etcd started on loopback for this module.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubeforge.backups.retention import BackupManifest, list_backups, plan_retention, write_manifest
from kubeforge.backups.snapshot import IntegrityCheck, SnapshotInvalid, parse_status, verify_integrity
from kubeforge.backups.store import BackupOptions, pki_bundle, read_verified_snapshot
from kubeforge.errors import InputError
from kubeforge.model.files import file_sha256 as sha256_file
from kubeforge.model.secret import Secret
from kubeforge.pki import backup_crypto as crypto
from tests.need import skip_or_fail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def real_snapshot(tmp_path_factory) -> Path:
    if not shutil.which("etcd") or not shutil.which("etcdctl"):
        skip_or_fail("etcd/etcdctl are not installed (apt-get install etcd-server etcd-client)")
    d = tmp_path_factory.mktemp("etcd")
    cport, pport = _free_port(), _free_port()
    client = f"http://127.0.0.1:{cport}"
    proc = subprocess.Popen(
        ["etcd", "--name", "t", "--data-dir", str(d / "data"), "--listen-client-urls", client,
         "--advertise-client-urls", client, "--listen-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-cluster", f"t=http://127.0.0.1:{pport}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "ETCDCTL_API": "3"}
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["etcdctl", f"--endpoints={client}", "endpoint", "health"], env=env,
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "etcd did not become healthy"
            time.sleep(0.2)
        for i in range(50):
            subprocess.run(["etcdctl", f"--endpoints={client}", "put", f"/k/{i}", "v" * 100], env=env,
                           check=True, capture_output=True)
        snap = d / "snap.db"
        subprocess.run(["etcdctl", f"--endpoints={client}", "snapshot", "save", str(snap)], env=env,
                       check=True, capture_output=True)
        return snap
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_real_snapshot_passes_the_integrity_check(real_snapshot):
    verify_integrity(real_snapshot)


def test_a_snapshot_with_flipped_bytes_fails_the_integrity_check(real_snapshot, tmp_path):
    bad = tmp_path / "bad.db"
    data = bytearray(real_snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(SnapshotInvalid, match="does not match"):
        verify_integrity(bad)


def test_a_truncated_snapshot_fails_the_integrity_check(real_snapshot, tmp_path):
    bad = tmp_path / "short.db"
    bad.write_bytes(real_snapshot.read_bytes()[:-100])
    with pytest.raises(SnapshotInvalid):
        verify_integrity(bad)


def test_snapshot_status_json_from_etcdctl_is_parsed(real_snapshot):
    out = subprocess.run(["etcdctl", "snapshot", "status", str(real_snapshot), "-w", "json"],
                         env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True, text=True, check=True)
    st = parse_status(out.stdout)
    assert st.revision >= 51 and st.total_keys >= 50 and st.total_size > 0


def test_encryption_with_a_key_round_trips_and_hides_the_content(real_snapshot, tmp_path):
    key = os.urandom(32)
    enc = tmp_path / "s.enc"
    crypto.encrypt_file(real_snapshot, enc, key=key)
    assert crypto.is_encrypted(enc)
    assert b"vvvvvvvvvvvvvvvv" not in enc.read_bytes()
    assert enc.stat().st_mode & 0o777 == 0o600
    assert crypto.decrypt_bytes(enc, key=key) == real_snapshot.read_bytes()


def test_decryption_with_the_wrong_passphrase_is_refused_cleanly(real_snapshot, tmp_path):
    enc = tmp_path / "s.enc"
    crypto.encrypt_file(real_snapshot, enc, passphrase=Secret("correct horse battery"))
    with pytest.raises(crypto.DecryptionFailed, match="wrong key or passphrase"):
        crypto.decrypt_bytes(enc, passphrase=Secret("wrong passphrase!"))
    assert [p.name for p in tmp_path.iterdir()] == ["s.enc"]


def test_a_key_file_must_hold_32_bytes(tmp_path):
    (tmp_path / "k").write_text("too short")
    with pytest.raises(InputError, match="32 bytes"):
        crypto.load_key_file(tmp_path / "k")
    (tmp_path / "hex").write_text(os.urandom(32).hex() + "\n")
    assert len(crypto.load_key_file(tmp_path / "hex")) == 32


def _manifest(name: str, created: datetime, verified: bool = True) -> BackupManifest:
    return BackupManifest(name=name, cluster="c", created=created.isoformat(), member="etcd-1", etcd_version="3.4.23",
                          revision=1, total_keys=1, snapshot_hash=1, size=1, sha256="0", file=name + ".db",
                          file_sha256="0", encrypted=False, verified=verified)


def test_retention_keeps_exactly_the_newest_n_verified_backups():
    now = datetime(2026, 11, 22, tzinfo=UTC)
    backups = [_manifest(f"b{i}", now - timedelta(hours=i)) for i in range(6)]
    doomed = plan_retention(backups, keep=3, max_age_days=None, now=now)
    assert sorted(b.name for b in doomed) == ["b3", "b4", "b5"]


def test_retention_by_age_never_deletes_the_newest_verified_backup():
    now = datetime(2026, 11, 22, tzinfo=UTC)
    backups = [_manifest("old", now - timedelta(days=90)), _manifest("older", now - timedelta(days=95)),
               _manifest("unverified", now, verified=False)]
    doomed = plan_retention(backups, keep=10, max_age_days=30, now=now)
    assert [b.name for b in doomed] == ["older"]


def test_a_stored_backup_is_rechecked_before_use(real_snapshot, tmp_path):
    shutil.copy(real_snapshot, tmp_path / "c-1.db")
    sha = sha256_file(tmp_path / "c-1.db")
    m = replace(_manifest("c-1", datetime.now(UTC)), sha256=sha, file_sha256=sha)
    path = write_manifest(tmp_path, m)
    assert read_verified_snapshot(path)[1] == real_snapshot.read_bytes()
    assert [b.name for b in list_backups(tmp_path)] == ["c-1"]
    with open(tmp_path / "c-1.db", "r+b") as f:
        f.seek(5000)
        f.write(b"\x00garbage")
    with pytest.raises(InputError, match="does not match the manifest"):
        read_verified_snapshot(path)


def test_an_unverified_backup_is_never_used(tmp_path):
    path = write_manifest(tmp_path, _manifest("c-2", datetime.now(UTC), verified=False))
    with pytest.raises(InputError, match="never passed verification"):
        read_verified_snapshot(path)


def test_an_encrypted_stream_cut_short_holds_no_plaintext_and_never_decrypts(real_snapshot, tmp_path):
    key = os.urandom(32)
    data = real_snapshot.read_bytes()
    cut = tmp_path / "cut.enc"
    with crypto.open_private(cut) as out:
        enc = crypto.Encryptor(out, key=key)
        enc.write(data[: len(data) // 2])  # the run dies here: no close(), no tag
    assert b"vvvvvvvvvvvvvvvv" not in cut.read_bytes() and cut.stat().st_mode & 0o777 == 0o600
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt_bytes(cut, key=key)


def test_the_integrity_trailer_is_checked_on_the_stream_whatever_the_chunk_sizes(real_snapshot):
    data = real_snapshot.read_bytes()
    for size in (1, 7, 31, 32, 33, 4096, len(data)):
        check = IntegrityCheck("s")
        for i in range(0, len(data), size if size > 1 else 997):
            check.feed(data[i:i + (size if size > 1 else 997)])
        check.check()
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x01
    check = IntegrityCheck("s")
    for i in range(0, len(flipped), 1000):
        check.feed(bytes(flipped[i:i + 1000]))
    with pytest.raises(SnapshotInvalid, match="does not match"):
        check.check()
    short = IntegrityCheck("s")
    short.feed(data[:-1])
    with pytest.raises(SnapshotInvalid):
        short.check()


def test_the_pki_bundle_is_packed_straight_into_ciphertext(tmp_path):
    import io
    import tarfile

    pki = tmp_path / "pki"
    (pki / "etcd").mkdir(parents=True)
    pem = b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 64 + b"\n-----END PRIVATE KEY-----\n"
    (pki / "etcd" / "ca.key").write_bytes(pem)
    (pki / "ca.crt").write_bytes(pem.replace(b"PRIVATE KEY", b"CERTIFICATE"))
    key = os.urandom(32)
    out = tmp_path / "backups"
    out.mkdir()
    dst = out / "b.pki.tar.gz.enc"
    pki_bundle(pki, dst, BackupOptions(directory=out, keep=1, max_age_days=None, encryption="keyfile", key=key))
    assert [p.name for p in out.iterdir()] == [dst.name] and dst.stat().st_mode & 0o777 == 0o600
    stored = dst.read_bytes()  # neither the PEM nor the gzip'd tarball around it is readable
    assert b"-----BEGIN" not in stored and not stored.startswith(b"\x1f\x8b") and crypto.is_encrypted(dst)
    with tarfile.open(fileobj=io.BytesIO(crypto.decrypt_bytes(dst, key=key)), mode="r:gz") as tar:
        assert tar.extractfile("pki/etcd/ca.key").read() == pem


def _encrypted_opts(tmp_path, key):
    from kubeforge.backups.store import BackupOptions

    return BackupOptions(directory=tmp_path / "backups", keep=1, max_age_days=None, encryption="keyfile", key=key)


def test_a_download_is_verified_and_encrypted_on_the_stream(real_snapshot, tmp_path):
    from kubeforge.transport.local import LocalTransport
    from kubeforge.workflows.etcd.backup import download

    key = os.urandom(32)
    (tmp_path / "backups").mkdir()
    part = tmp_path / "backups" / ".c-1.db.enc.part"
    got = download(LocalTransport(), str(real_snapshot), part, _encrypted_opts(tmp_path, key))
    assert got.problem is None and got.sha256 == sha256_file(real_snapshot) and got.stored_sha256 == sha256_file(part)
    assert b"vvvvvvvvvvvvvvvv" not in part.read_bytes() and part.stat().st_mode & 0o777 == 0o600
    assert crypto.decrypt_bytes(part, key=key) == real_snapshot.read_bytes()


def test_a_snapshot_failing_its_trailer_is_kept_only_as_ciphertext(real_snapshot, tmp_path):
    from kubeforge.transport.local import LocalTransport
    from kubeforge.workflows.etcd.backup import download

    bad = tmp_path / "bad.db"
    data = bytearray(real_snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    (tmp_path / "backups").mkdir()
    part = tmp_path / "backups" / ".c-1.db.enc.part"
    got = download(LocalTransport(), str(bad), part, _encrypted_opts(tmp_path, os.urandom(32)))
    assert got.problem and "does not match" in got.problem
    assert b"vvvvvvvvvvvvvvvv" not in part.read_bytes()  # what failed/ receives


def test_a_download_cut_off_midway_leaves_no_file(real_snapshot, tmp_path, monkeypatch):
    from kubeforge.transport import local as local_mod
    from kubeforge.transport.local import LocalTransport
    from kubeforge.workflows.etcd.backup import download

    monkeypatch.setattr(local_mod, "CHUNK", 4096)
    transport = LocalTransport()
    real_fetch = transport._fetch

    def dies_halfway(remote_path, sink, sudo):
        sent = [0]

        def counting(chunk):
            sent[0] += 1
            if sent[0] == 3:
                raise KeyboardInterrupt  # Ctrl-C arrives mid-stream
            sink(chunk)
        return real_fetch(remote_path, counting, sudo)

    monkeypatch.setattr(transport, "_fetch", dies_halfway)
    (tmp_path / "backups").mkdir()
    part = tmp_path / "backups" / ".c-1.db.enc.part"
    with pytest.raises(KeyboardInterrupt):
        download(transport, str(real_snapshot), part, _encrypted_opts(tmp_path, os.urandom(32)))
    assert list((tmp_path / "backups").iterdir()) == []
