"""Encrypted etcd backups stay secret when interrupted, on real machines: a real etcd 3.4 from the
lab mirror, kubeforge killed mid-download and the member powered off mid-download. After each,
every file kubeforge left on the operator's side is scanned for a canary value written to etcd
beforehand (and for PEM headers of the PKI bundle), gzip'd files unpacked first."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.integration.test_etcd_lab import kf
from tests.terminal import foreground_sigint

pytestmark = pytest.mark.lab

CANARY = b"kf-canary-" + os.urandom(8).hex().encode()
BIG_VALUES = 60  # ~1 MiB each: a download long enough to be caught halfway


@pytest.fixture(scope="module")
def slab(lab_factory):
    # external etcd: one member on its own machine (the control plane is only what the inventory needs)
    return lab_factory([("cp-1", ("control-plane",)), ("etcd-1", ("etcd",))], persistent=("etcd-1",))


@pytest.fixture(scope="module")
def encrypted(slab, tmp_path_factory) -> Path:
    """One etcd member installed by kubeforge, full of canary values, backups encrypted by key file."""
    d = tmp_path_factory.mktemp("inv")
    (d / "keys").mkdir(mode=0o700)
    (d / "keys" / "backup.key").write_bytes(os.urandom(32))
    yaml = YAML()
    doc = yaml.load(slab.inventory_path.read_text())
    doc["spec"]["etcd"]["backup"] = {"keep": 3, "encryption": "keyfile", "keyFile": "keys/backup.key"}
    inv = d / "etcd.yaml"
    with inv.open("w") as f:
        yaml.dump(doc, f)
    res = kf("etcd", "install", "-i", str(inv), "--yes", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    value = (CANARY + b"." * 1000) * 1000
    argv = ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints=https://{slab.address('etcd-1')}:2379",
            "--cacert=/etc/etcd/pki/ca.crt", "--cert=/etc/etcd/pki/healthcheck-client.crt",
            "--key=/etc/etcd/pki/healthcheck-client.key", "--command-timeout=30s"]
    for i in range(BIG_VALUES):  # the value on stdin: argv caps one argument at 128 KiB
        res = slab.exec("etcd-1", [*argv, "put", f"/kf/big/{i:03d}"], input=value.decode())
        assert res.returncode == 0, res.stderr
    return inv


def operator_files(inv: Path) -> list[Path]:
    """Every file under the inventory's directory that kubeforge may write: .kubeforge (state,
    backups, runs, logs) and anything beside it."""
    return [p for p in inv.parent.rglob("*") if p.is_file()]


def readable_views(path: Path) -> list[bytes]:
    """The file's bytes and, when it is gzip'd (a tarball, say), its unpacked bytes too."""
    data = path.read_bytes()
    views = [data]
    if data[:2] == b"\x1f\x8b":
        try:
            views.append(gzip.decompress(data))
        except (OSError, EOFError, zlib.error):  # a gzip stream cut short: what there is of it
            views.append(zlib.decompressobj(31).decompress(data))
    return views


def plaintext_leaks(inv: Path) -> list[str]:
    pki = next(inv.parent.glob(".kubeforge/*")) / "pki"
    leaks = []
    for p in operator_files(inv):
        for view in readable_views(p):
            if CANARY in view:
                leaks.append(f"{p}: snapshot plaintext (canary)")
            if b"-----BEGIN" in view and pki not in p.parents:  # the local PKI itself is plain by design
                leaks.append(f"{p}: PEM outside the local PKI")
    return sorted(set(leaks))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # the run removed it between glob and stat
        return 0


def backup_interrupted(inv: Path, interrupt, exit_within: float = 600) -> tuple[int, str, bool]:
    """Run `etcd backup` and call ``interrupt(proc)`` once its download file has bytes in it; the
    exit status, the output, and whether a download was in flight when it was interrupted. A run
    still there ``exit_within`` seconds later is killed and the test fails: it hung."""
    backups = next(inv.parent.glob(".kubeforge/*")) / "backups"
    earlier = set(backups.glob(".*.part"))  # left by a SIGKILL'd run before this one
    proc = subprocess.Popen([sys.executable, "-m", "kubeforge", "etcd", "backup", "-i", str(inv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=foreground_sigint)
    caught = False
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        parts = [p for p in set(backups.glob(".*.part")) - earlier if _size(p) > 0]
        if parts:
            interrupt(proc)
            caught = True
            break
        time.sleep(0.005)
    try:
        out, err = proc.communicate(timeout=exit_within)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"kubeforge was still running {exit_within:.0f} s after it was interrupted: {out}{err}")
    return proc.returncode, out + err, caught


def test_an_encrypted_backup_holds_the_canary_only_as_ciphertext(slab, encrypted):
    from kubeforge.backups.store import read_verified_snapshot
    from kubeforge.pki import backup_crypto as crypto

    res = kf("etcd", "backup", "-i", str(encrypted), "-o", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    m = json.loads(res.stdout)["manifest"]
    assert m["encrypted"] and m["file"].endswith(".db.enc") and m["pki_bundle"].endswith(".pki.tar.gz.enc")
    assert plaintext_leaks(encrypted) == []
    backups = next(encrypted.parent.glob(".kubeforge/*")) / "backups"
    key = crypto.load_key_file(encrypted.parent / "keys" / "backup.key")
    _, plain = read_verified_snapshot(backups / f"{m['name']}.manifest.json", key=key)
    assert plain.count(CANARY) >= BIG_VALUES * 1000  # the scan would have seen a plaintext copy
    assert b"-----BEGIN" in gzip.decompress(crypto.decrypt_bytes(backups / m["pki_bundle"], key=key))


def test_restore_from_the_encrypted_backup_brings_the_data_back_and_writes_no_plaintext(slab, encrypted):
    res = kf("etcd", "backup", "-i", str(encrypted), "-o", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    name = json.loads(res.stdout)["manifest"]["name"]
    argv = ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints=https://{slab.address('etcd-1')}:2379",
            "--cacert=/etc/etcd/pki/ca.crt", "--cert=/etc/etcd/pki/healthcheck-client.crt",
            "--key=/etc/etcd/pki/healthcheck-client.key", "--command-timeout=30s"]
    assert slab.exec("etcd-1", [*argv, "del", "/kf/big/000"]).stdout.strip() == "1"
    res = kf("etcd", "restore", "-i", str(encrypted), "--from", name, "--yes", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    got = slab.exec("etcd-1", [*argv, "get", "/kf/big/000", "--print-value-only"])
    assert got.returncode == 0 and CANARY.decode() in got.stdout
    assert plaintext_leaks(encrypted) == []


def test_kubeforge_killed_mid_download_leaves_no_plaintext_anywhere(slab, encrypted):
    code, out, caught = backup_interrupted(encrypted, lambda p: p.send_signal(signal.SIGKILL))
    assert caught, f"the backup finished before it could be interrupted ({code}): {out}"
    assert code == -signal.SIGKILL
    left = [p.name for p in (next(encrypted.parent.glob(".kubeforge/*")) / "backups").glob(".*.part")]
    assert left, "a SIGKILL'd download leaves its (encrypted) .part file"
    assert plaintext_leaks(encrypted) == []


def test_kubeforge_interrupted_mid_download_removes_its_partial_file(slab, encrypted):
    before = {p.name for p in (next(encrypted.parent.glob(".kubeforge/*")) / "backups").glob(".*.part")}
    # Ctrl-C stops the download on the member (never a KeyboardInterrupt inside paramiko, which once
    # left a channel's lock held and the run hanging forever) and exits 8 at once
    code, out, caught = backup_interrupted(encrypted, lambda p: p.send_signal(signal.SIGINT), exit_within=120)
    assert caught, f"the backup finished before it could be interrupted ({code}): {out}"
    assert code == 8 and "interrupted" in out and "Traceback" not in out
    after = {p.name for p in (next(encrypted.parent.glob(".kubeforge/*")) / "backups").glob(".*.part")}
    assert after <= before
    assert plaintext_leaks(encrypted) == []


def test_the_member_powered_off_mid_download_leaves_no_plaintext_anywhere(slab, encrypted):
    code, out, caught = backup_interrupted(encrypted, lambda p: slab.stop_machine("etcd-1"))
    try:
        assert caught, f"the backup finished before the member could be powered off ({code}): {out}"
        assert code in (5, 6), out
        assert "Traceback" not in out
        assert plaintext_leaks(encrypted) == []
        backups = next(encrypted.parent.glob(".kubeforge/*")) / "backups"
        failed = backups / "failed"
        assert not failed.exists() or all(not p.name.endswith(".db") for p in failed.iterdir())
    finally:
        slab.start_machine("etcd-1")
