"""Certificates on real machines: etcd 3-member TLS cluster installed by kubeforge with leaves issued
to expire within the warning window; `certs check` finds them on the hosts (exit 9), `certs renew`
renews them one member at a time while a watcher counts health reads that saw no quorum, `certs
check` then passes and every renewed leaf verifies against the etcd CA with the members' openssl."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.faults import journals
from tests.faults.etcdwire import Client, ClientCerts, Writer
from tests.faults.etcdwire import QuorumWatcher as FaultWatcher
from tests.integration.test_etcd_lab import ETCD_PKI, etcdctl, inventory_with
from tests.terminal import foreground_sigint

pytestmark = pytest.mark.lab
MEMBERS = ("etcd-1", "etcd-2", "etcd-3")


def kf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True, timeout=600)


def set_leaf_days(inv: Path, days: int) -> None:
    yaml = YAML()
    doc = yaml.load(inv.read_text())
    doc["spec"].setdefault("pki", {})["leafDays"] = days
    with inv.open("w") as f:
        yaml.dump(doc, f)


@pytest.fixture(scope="module")
def short_lived(lab_factory, tmp_path_factory) -> tuple[object, Path]:
    """A 3-member cluster whose etcd leaves were issued for 20 days (the inventory's pki.leafDays)."""
    lab = lab_factory([("etcd-1", ("control-plane", "etcd")), ("etcd-2", ("etcd",)), ("etcd-3", ("etcd",))])
    inv = inventory_with(lab, tmp_path_factory.mktemp("certs") / "etcd3.yaml", list(MEMBERS))
    set_leaf_days(inv, 20)
    res = kf("etcd", "install", "-i", str(inv), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    return lab, inv


WATCH = "/root/watcher"


class QuorumWatcher(threading.Thread):
    """Asks the cluster for every member's health until stopped; counts the answers with fewer
    healthy members than a quorum (2 of 3). An outside client: it holds its own copy of a client
    certificate (the renewal replaces the files under /etc/etcd/pki it would otherwise read)."""

    def __init__(self, lab) -> None:
        super().__init__(daemon=True)
        self.lab, self.stop, self.reads, self.lost = lab, threading.Event(), 0, []
        self.endpoints = ",".join(f"https://{lab.address(m)}:2379" for m in MEMBERS)
        copy = f"mkdir -p {WATCH} && cp {ETCD_PKI}/ca.crt {ETCD_PKI}/healthcheck-client.crt {ETCD_PKI}/healthcheck-client.key {WATCH}/"
        assert lab.exec("etcd-1", ["sh", "-c", copy]).returncode == 0

    def run(self) -> None:
        tls = [f"--cacert={WATCH}/ca.crt", f"--cert={WATCH}/healthcheck-client.crt",
               f"--key={WATCH}/healthcheck-client.key"]
        while not self.stop.is_set():
            res = self.lab.exec("etcd-1", ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints={self.endpoints}",
                                           "--dial-timeout=3s", "--command-timeout=10s", *tls,
                                           "endpoint", "health", "-w", "json"])
            try:
                healthy = sum(1 for e in json.loads(res.stdout) if e.get("health"))
            except ValueError:
                healthy = 0
            self.reads += 1
            if healthy < 2:
                self.lost.append(res.stdout + res.stderr)


def etcd_writer(lab):
    """tests/faults' writer: a key every 100 ms from the runner, to each member in turn until one
    acknowledges it; afterwards ``lost`` names the acknowledged keys no member has."""
    import tempfile

    from tests.faults.etcdwire import ClientCerts, Writer

    certs = ClientCerts.fetch(lab, "etcd-1", Path(tempfile.mkdtemp(prefix="kf-certs-writer-")))
    w = Writer([lab.address(m) for m in MEMBERS], certs, tag=f"certs-{time.time_ns()}")
    w.certs = certs
    return w


def host_certs(doc: dict, path: str) -> dict[str, dict]:
    return {c["host"]: c for c in doc["hosts"] if c["path"] == path}


def only_the_unbuilt_control_plane(differences: list[str]) -> bool:
    """etcd-1 is the inventory's control plane, but only etcd was installed: the store's control
    plane files are (rightly) reported missing there, and nothing else differs."""
    return bool(differences) and all(d.startswith("etcd-1: /etc/kubernetes/pki/") and "is missing" in d
                                     for d in differences)


def new_ca_client(store: Path, into: Path) -> ClientCerts:
    """A client an operator hands the new CA's trust and a certificate from it, once the rotation
    has written that CA to the store: the CA file holds both CAs (servers show either during the
    rotation), the client certificate is signed by the new CA alone."""
    from datetime import UTC, datetime

    from kubeforge.pki import crypto

    rot = store / "rotation" / "etcd-ca" / "etcd"
    ca_cert = crypto.load_cert((rot / "ca.crt").read_bytes())
    ca_key = crypto.load_key((rot / "ca.key").read_bytes())
    key = crypto.generate_key("ecdsa-p256")
    leaf = crypto.issue_leaf(crypto.LeafSpec(cn="rotation-test-writer", usages=(crypto.CLIENT_AUTH,)), key,
                             ca_cert, ca_key, days=1, now=datetime.now(UTC))
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    (into / "ca.crt").write_bytes((store / "etcd" / "ca.crt").read_bytes() + (rot / "ca.crt").read_bytes())
    (into / "client.crt").write_bytes(crypto.cert_to_pem(leaf))
    (into / "client.key").touch(mode=0o600)
    (into / "client.key").write_bytes(crypto.key_to_pem(key))
    return ClientCerts(into / "ca.crt", into / "client.crt", into / "client.key")


def observers(addresses: list[str], certs: list[ClientCerts], tag: str) -> tuple[Writer, FaultWatcher]:
    """The fault matrix's writer and quorum watcher, each trying every member with each client."""
    writer, watcher = Writer(addresses, certs[0], tag), FaultWatcher(addresses, certs[0])
    for extra in certs[1:]:
        writer.also_with(extra)
        watcher.also_with(extra)
    writer.start()
    watcher.start()
    return writer, watcher


def interrupt_once_done(runs: Path, step_prefix: str, *args: str) -> subprocess.CompletedProcess:
    """Run kubeforge as a terminal's foreground job; Ctrl-C as soon as its journal has a step whose
    id starts with ``step_prefix`` done (a phase boundary: the local step recording the phase)."""
    proc = subprocess.Popen([sys.executable, "-m", "kubeforge", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=foreground_sigint, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        _, recs = journals.attempt(runs, proc.pid)
        if any(s["step"].startswith(step_prefix) and s.get("status") == "done" for s in journals.steps(recs)):
            os.killpg(proc.pid, signal.SIGINT)
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_rotate_ca_etcd_interrupted_at_phase_boundaries_converges_on_the_new_ca_alone_without_losing_a_write(
        short_lived, tmp_path):
    lab, inv = short_lived
    store = sorted(inv.parent.glob(".kubeforge/*/pki"))[0]
    runs = store.parent / "runs"
    state_file = store / "rotation" / "etcd-ca" / "state.json"
    addresses = [lab.address(m) for m in MEMBERS]
    old = ClientCerts.fetch(lab, "etcd-1", tmp_path / "old")
    old_ca = (store / "etcd" / "ca.crt").read_bytes()
    rotate = ("certs", "rotate-ca", "--ca", "etcd", "-i", str(inv), "--yes")

    # phase 1 under a writer and a quorum watcher holding the old CA's client; Ctrl-C once it is recorded
    writer1, watcher1 = observers(addresses, [old], "rotate1")
    try:
        first = interrupt_once_done(runs, "RecordTrustBothCAs/", *rotate)
    finally:
        writer1.stop()
        watcher1.stop()
    assert first.returncode == 8, first.stdout + first.stderr
    assert json.loads(state_file.read_text())["phasesDone"] == 1
    blocked = kf("certs", "renew", "-i", str(inv), "--all", "--yes")
    assert blocked.returncode == 7 and "rotation of the etcd CA is in progress" in blocked.stderr, blocked.stderr

    # the rest under clients holding both: the old CA's (refused by the end) and the new CA's.
    # --resume, Ctrl-C again once phase 2 is recorded; then a fresh run planned from the store's record
    new = new_ca_client(store, tmp_path / "new")
    writer2, watcher2 = observers(addresses, [new, old], "rotate2")
    try:
        second = interrupt_once_done(runs, "RecordReissueLeaves/", *rotate, "--resume")
        assert second.returncode == 8, second.stdout + second.stderr
        assert json.loads(state_file.read_text())["phasesDone"] == 2
        third = kf(*rotate)
    finally:
        writer2.stop()
        watcher2.stop()
    assert third.returncode == 0, third.stdout + third.stderr
    # planned from the store's record: only phase 3 ran (the progress lines name each restart)
    restarts = [line for line in third.stderr.splitlines() if line.startswith("[etcd-") and "Restart etcd" in line]
    assert len(restarts) == 3 and all("trusting the new etcd CA alone" in r for r in restarts), third.stderr
    for w, name in ((writer1, "phase 1"), (writer2, "phases 2-3")):
        assert len(w.acked) > 10 and w.lost(addresses, new) == [], (name, w.lost(addresses, new))
    assert watcher1.losses() == [] and watcher2.losses() == [], (watcher1.gaps(), watcher2.gaps())
    assert watcher1.samples and watcher2.samples

    assert not (store / "rotation" / "etcd-ca").exists()
    new_ca = (store / "etcd" / "ca.crt").read_bytes()
    assert new_ca != old_ca
    for m in MEMBERS:
        assert lab.exec(m, ["cat", f"{ETCD_PKI}/ca.crt"]).stdout == new_ca.decode()  # the new CA alone
        leaves = [f"{ETCD_PKI}/{n}.crt" for n in ("server", "peer", "healthcheck-client")]
        ok = lab.exec(m, ["openssl", "verify", "-CAfile", f"{ETCD_PKI}/ca.crt", *leaves])
        assert ok.returncode == 0 and ok.stdout.count(": OK") == 3, ok.stdout + ok.stderr
    # real etcd refuses a client certificate from the old CA and takes one from the new CA
    refused = ClientCerts(new.ca, old.cert, old.key)
    with pytest.raises((OSError, http.client.HTTPException)):
        Client(addresses[1], refused, timeout=5.0).put("/kf/rotate/old-client", "x")
    Client(addresses[1], new, timeout=5.0).put("/kf/rotate/new-client", "x")
    # the store and the hosts agree: etcd install sees nothing to change
    install = kf("etcd", "install", "-i", str(inv), "--yes")
    assert install.returncode == 0 and "nothing changed" in install.stdout, install.stdout + install.stderr


def test_expiring_etcd_leaves_are_found_on_the_hosts_renewed_one_member_at_a_time_and_verify(short_lived):
    lab, inv = short_lived
    before = kf("certs", "check", "-i", str(inv), "--within-days", "30", "-o", "json")
    assert before.returncode == 9, before.stdout + before.stderr
    doc = json.loads(before.stdout)
    servers = host_certs(doc, f"{ETCD_PKI}/server.crt")
    assert sorted(servers) == list(MEMBERS)
    assert all(c["expiring"] and c["daysLeft"] <= 20 and c["store"] == "same" for c in servers.values())
    assert servers["etcd-2"]["issuer"] == "CN=etcd-ca" and lab.address("etcd-2") in servers["etcd-2"]["sans"]
    assert doc["error"]["exit_code"] == 9
    assert only_the_unbuilt_control_plane(doc["differences"]), doc["differences"]

    set_leaf_days(inv, 365)  # the operator gives the renewed leaves a year
    store = sorted(inv.parent.glob(".kubeforge/*/pki"))[0]
    kept = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    dry = kf("certs", "renew", "-i", str(inv), "--within-days", "30", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Restart etcd on its renewed certificates" in dry.stdout and "PRIVATE KEY" not in dry.stdout
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == kept  # a dry run re-issues nothing
    assert etcdctl(lab, "etcd-1", "put", "/kf/certs", "kept").returncode == 0
    watcher = QuorumWatcher(lab)
    watcher.start()
    writer = etcd_writer(lab)
    writer.start()
    try:
        renew = kf("certs", "renew", "-i", str(inv), "--within-days", "30", "--yes")
    finally:
        watcher.stop.set()
        watcher.join(timeout=60)
        writer.stop()
    assert renew.returncode == 0, renew.stdout + renew.stderr
    assert watcher.reads > 0 and watcher.lost == [], watcher.lost[:3]
    lost = writer.lost([lab.address(m) for m in MEMBERS], writer.certs)
    print(f"\nduring certs renew: {len(writer.acked)} writes acknowledged, {writer.failed} refused, "
          f"{len(lost or [])} lost; {watcher.reads} health reads, {len(watcher.lost)} without a quorum")
    assert writer.acked and lost == []
    # progress lines ("[host] title … done"): one restart per member, each after the previous gate
    progress = [line for line in renew.stderr.splitlines() if line.startswith("[")]
    restarts = [i for i, line in enumerate(progress) if "Restart etcd on its renewed certificates" in line]
    gates = [i for i, line in enumerate(progress) if "Wait for etcd healthy" in line]
    assert len(restarts) == 3 and len(gates) == 3, progress
    assert restarts[0] < gates[0] < restarts[1] < gates[1] < restarts[2] < gates[2], progress
    assert etcdctl(lab, "etcd-3", "get", "/kf/certs", "--print-value-only").stdout.strip() == "kept"

    after = kf("certs", "check", "-i", str(inv), "--within-days", "30", "-o", "json")
    assert after.returncode == 0, after.stdout + after.stderr
    doc = json.loads(after.stdout)
    for path in ("server.crt", "peer.crt", "healthcheck-client.crt"):
        found = host_certs(doc, f"{ETCD_PKI}/{path}")
        assert sorted(found) == list(MEMBERS) and all(c["daysLeft"] >= 364 for c in found.values()), found
        assert {c["sha256"] for c in found.values()} != {c["sha256"] for c in servers.values()}
    assert only_the_unbuilt_control_plane(doc["differences"]), doc["differences"]
    for m in MEMBERS:
        leaves = [f"{ETCD_PKI}/{n}.crt" for n in ("server", "peer", "healthcheck-client")]
        ok = lab.exec(m, ["openssl", "verify", "-CAfile", f"{ETCD_PKI}/ca.crt", *leaves])
        assert ok.returncode == 0 and ok.stdout.count(": OK") == 3, ok.stdout + ok.stderr
    again = kf("certs", "renew", "-i", str(inv), "--within-days", "30", "--yes")
    assert again.returncode == 0 and "nothing to renew" in again.stdout, again.stdout + again.stderr
    # the applied-config stamp was recorded: etcd install sees the renewed members as converged
    install = kf("etcd", "install", "-i", str(inv), "--yes")
    assert install.returncode == 0 and "nothing changed" in install.stdout, install.stdout + install.stderr


def renew_runs(inv: Path) -> list[Path]:
    runs = [p for p in inv.parent.glob(".kubeforge/*/runs/*") if (p / "journal.jsonl").exists()]
    return sorted((p for p in runs if '"certs renew' in (p / "journal.jsonl").read_text().splitlines()[0]),
                  key=lambda p: p.name)


def test_a_renewal_interrupted_between_members_resumes_to_every_member_renewed_with_quorum_held(short_lived):
    """Ctrl-C once the first member has restarted on its new certificates: the run stops after that
    member's health gate (exit 8), the others still serve their old ones; `--resume` renews the rest,
    one at a time, and the quorum watcher sees no read without a quorum throughout."""
    import signal

    from tests.terminal import foreground_sigint

    lab, inv = short_lived
    set_leaf_days(inv, 20)
    res = kf("certs", "renew", "-i", str(inv), "--all", "--yes")  # every member on a 20-day leaf again
    assert res.returncode == 0, res.stdout + res.stderr
    set_leaf_days(inv, 365)
    watcher = QuorumWatcher(lab)
    watcher.start()
    try:
        before = set(renew_runs(inv))
        proc = subprocess.Popen([sys.executable, "-m", "kubeforge", "certs", "renew", "-i", str(inv), "--within-days", "30",
                                 "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=foreground_sigint)
        first, run, deadline = None, None, time.monotonic() + 300
        while first is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"the renewal ended before a member restarted: {proc.returncode}\n{out}\n{err}")
            run = run or next(iter(set(renew_runs(inv)) - before), None)
            for line in (run / "journal.jsonl").read_text().splitlines() if run else []:
                r = json.loads(line)
                if r.get("type") == "step" and r.get("status") == "done" and r["step"].endswith("/restart-etcd"):
                    first = r["host"]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 8 and "--resume" in err, out + err
        mid = json.loads(kf("certs", "check", "-i", str(inv), "--within-days", "30", "-o", "json").stdout)
        days = {c["host"]: c["daysLeft"] for c in host_certs(mid, f"{ETCD_PKI}/server.crt").values()}
        assert days[first] >= 364 and any(d <= 20 for d in days.values()), days  # stopped between members
        resumed = kf("certs", "renew", "-i", str(inv), "--within-days", "30", "--resume", "--yes")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    finally:
        watcher.stop.set()
        watcher.join(timeout=60)
    print(f"\ninterrupted after {first}; {watcher.reads} health reads, {len(watcher.lost)} without a quorum")
    assert watcher.reads > 0 and watcher.lost == [], watcher.lost[:3]
    after = kf("certs", "check", "-i", str(inv), "--within-days", "30", "-o", "json")
    assert after.returncode == 0, after.stdout + after.stderr
    for m in MEMBERS:
        ok = lab.exec(m, ["openssl", "verify", "-CAfile", f"{ETCD_PKI}/ca.crt", f"{ETCD_PKI}/server.crt", f"{ETCD_PKI}/peer.crt"])
        assert ok.returncode == 0 and ok.stdout.count(": OK") == 2, ok.stdout + ok.stderr
    install = kf("etcd", "install", "-i", str(inv), "--yes")
    assert install.returncode == 0 and "nothing changed" in install.stdout, install.stdout + install.stderr
