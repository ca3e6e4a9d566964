"""Certificates on real machines: etcd 3-member TLS cluster installed by kubeforge with leaves issued
to expire within the warning window; `certs check` finds them on the hosts (exit 9), `certs renew`
renews them one member at a time while a watcher counts health reads that saw no quorum, `certs
check` then passes and every renewed leaf verifies against the etcd CA with the members' openssl."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.integration.test_etcd_lab import ETCD_PKI, etcdctl, inventory_with

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
