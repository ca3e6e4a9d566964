"""Preflight against the lab's real machines (systemd-nspawn, real sshd, real SSH from kubeforge).

What the lab cannot break on purpose, and where it is tested instead:
- swap: swap is not namespaced; `swapon` inside a container would enable swap on the runner itself
  (and overlay filesystems refuse swap files anyway). Covered by recorded /proc/swaps fixtures in
  tests/unit/test_preflight_checks.py.
- kernel modules: the machines share the runner's kernel, so br_netfilter cannot be absent on one
  machine only. Covered by recorded module fixtures in the same unit tests.
- clock skew: CLOCK_REALTIME is not namespaced either; covered by fixture facts.
- CPU/RAM minimums: a container sees the runner's CPUs and memory; the checks run here, and are
  asserted not to fail (the runner has 2 CPUs, so the 4-CPU control-plane recommendation warns).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest

from kubeforge.facts import FactsError
from kubeforge.facts.preflight import Status
from kubeforge.inventory import load_cluster
from kubeforge.model import Role
from kubeforge.transport.pool import TransportPool
from kubeforge.workflows.preflight import preflight
from tests.factories import make_host

pytestmark = pytest.mark.lab

ALWAYS_PASS = ("reachable", "os", "swap", "modules", "ports", "hostname", "product-uuid", "mac", "clock-skew",
               "os-consistency", "connectivity")


def _preflight(cluster, **kw):
    with TransportPool(cluster) as pool:
        report, facts = preflight(cluster, pool, **kw)
    return report, facts


def test_preflight_cli_passes_on_the_fresh_lab_machines(lab):
    proc = subprocess.run(
        [sys.executable, "-m", "kubeforge", "preflight", "-i", str(lab.inventory_path), "-o", "json"],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    data = json.loads(proc.stdout)
    assert data["passed"] is True
    for name in lab.machines:
        checks = {c["check"]: c for c in data["hosts"][name]["checks"]}
        for check in ALWAYS_PASS:
            assert checks[check]["status"] == "pass", (name, checks[check])
        for check in ("cpu", "memory", "disk", "etcd-fsync"):
            assert checks[check]["status"] != "fail", (name, checks[check])


def test_a_port_taken_by_a_foreign_process_fails_with_port_and_program(lab):
    cluster = load_cluster(lab.inventory_path)
    cp = cluster.control_planes[0].name
    pid = lab.exec(cp, ["bash", "-c", "setsid python3 -m http.server 6443 >/dev/null 2>&1 & echo $!"], check=True).stdout.strip()
    try:
        for _ in range(50):  # until it listens
            if ":6443 " in lab.exec(cp, ["ss", "-Htln"]).stdout:
                break
            time.sleep(0.1)
        report, _ = _preflight(cluster, probes=False)
        cli = subprocess.run(
            [sys.executable, "-m", "kubeforge", "preflight", "-i", str(lab.inventory_path), "--no-probes"],
            capture_output=True, text=True, timeout=180,
        )
    finally:
        lab.exec(cp, ["kill", pid])
    assert cli.returncode == 4, cli.stderr
    assert f"[{cp}] ports: 6443 (kube-apiserver) is in use by python3" in cli.stdout
    assert "error: preflight failed on 1 of" in cli.stderr
    r = report.get(cp, "ports")
    assert r.status is Status.FAIL
    assert "6443 (kube-apiserver) is in use by python3" in r.message
    assert report.failed
    others = [h.name for h in cluster.hosts if h.name != cp]
    assert all(report.get(h, "ports").status is Status.PASS for h in others)


def test_two_machines_with_the_same_product_uuid_fail_naming_each_other(lab):
    cluster = load_cluster(lab.inventory_path)
    a, b = [h.name for h in cluster.hosts][-2:]
    original = lab.machines[b].product_uuid
    lab.set_product_uuid(b, lab.machines[a].product_uuid)
    try:
        report, facts = _preflight(cluster, probes=False)
    finally:
        lab.set_product_uuid(b, original)
    assert facts[a].product_uuid == facts[b].product_uuid
    ra, rb = report.get(a, "product-uuid"), report.get(b, "product-uuid")
    assert ra.status is Status.FAIL and b in ra.message
    assert rb.status is Status.FAIL and a in rb.message
    first = cluster.hosts[0].name
    assert report.get(first, "product-uuid").status is Status.PASS


def test_a_host_that_cannot_be_reached_fails_and_the_others_are_still_checked(lab):
    cluster = load_cluster(lab.inventory_path)
    subnet = cluster.hosts[0].address.rsplit(".", 1)[0]
    # an address on the lab's own bridge where no machine lives
    ssh = dataclasses.replace(cluster.ssh, connect_timeout=2.0, connect_retries=0)
    ghost = make_host("ghost", f"{subnet}.250", Role.WORKER, ssh=ssh)
    cluster = dataclasses.replace(cluster, hosts=cluster.hosts + (ghost,))
    report, facts = _preflight(cluster)
    assert isinstance(facts["ghost"], FactsError)
    r = report.get("ghost", "reachable")
    assert r.status is Status.FAIL and "not reached" in r.message
    for h in cluster.hosts[:-1]:
        assert report.get(h.name, "reachable").status is Status.PASS
        assert report.get(h.name, "swap").status is Status.PASS
        assert report.get(h.name, "connectivity").status is Status.PASS


def test_a_login_without_sudo_still_gathers_facts_and_says_what_is_missing(lab):
    cluster = load_cluster(lab.inventory_path)
    name = cluster.hosts[-1].name
    setup = (
        "useradd -m -s /bin/bash kfnosudo && install -d -m 700 -o kfnosudo -g kfnosudo /home/kfnosudo/.ssh && "
        "install -m 600 -o kfnosudo -g kfnosudo /home/kube/.ssh/authorized_keys /home/kfnosudo/.ssh/authorized_keys"
    )
    lab.exec(name, ["bash", "-c", setup], check=True)
    try:
        host = cluster.host(name)
        host = dataclasses.replace(host, ssh=dataclasses.replace(host.ssh, user="kfnosudo"))
        cluster = dataclasses.replace(cluster, hosts=(host,))
        with TransportPool(cluster) as pool:
            from kubeforge.facts import gather_facts

            facts = gather_facts(pool, [host], limit=1)[name]
    finally:
        lab.exec(name, ["userdel", "-r", "kfnosudo"])
    assert not isinstance(facts, FactsError), facts
    assert "gathered without root" in facts.problems["sudo"]
    assert facts.os.family == "debian" and facts.swap.enabled is False
    assert facts.product_uuid is None  # root-only (0400) on the lab machines, as on real ones


@pytest.mark.slow  # its own three machines and a real etcd install: about a minute
def test_etcd_ports_held_by_the_etcd_kubeforge_installed_are_already_ours(lab_factory):
    elab = lab_factory([("etcd-1", ("control-plane", "etcd")), ("etcd-2", ("etcd",)), ("etcd-3", ("etcd",))])
    install = subprocess.run(
        [sys.executable, "-m", "kubeforge", "etcd", "install", "-i", str(elab.inventory_path), "--yes"],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    cluster = load_cluster(elab.inventory_path)
    report, facts = _preflight(cluster)
    for h in cluster.etcd_members:
        assert facts[h.name].units.is_active("etcd")
        r = report.get(h.name, "ports")
        assert r.status is Status.PASS and "already ours: 2379 (etcd client), 2380 (etcd peer)" in r.message, r
        assert report.get(h.name, "connectivity").status is Status.PASS
