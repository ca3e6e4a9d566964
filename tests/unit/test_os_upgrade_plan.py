"""`os upgrade` planning: the probe's output parsed (apt-get -s upgrade, reboot-required, kernels),
Kubernetes and etcd packages kept, who reboots and why, and the rolling order: etcd members and
control planes one at a time, workers in batches of maxUnavailable, each reboot window drained,
rebooted, gated and uncordoned."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kubeforge.facts.os_patch import KEPT, OsFacts, parse_probe, parse_simulation
from kubeforge.model import EndpointMode
from kubeforge.plan.os_upgrade import (
    OsUpgradeInput,
    plan_packages,
    plan_reboots,
    preview,
    upgrade_packages_step,
)
from tests.factories import make_cluster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "os_patch"


def probe(name: str, host: str = "h") -> OsFacts:
    return parse_probe(host, (FIXTURES / f"probe_{name}.txt").read_text())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = make_cluster(tmp_path_factory.mktemp("os"), n_etcd=3, n_cp=2, n_workers=5, n_lb=1,
                     endpoint_mode=EndpointMode.HAPROXY)
    return replace(c, upgrade=replace(c.upgrade, max_unavailable="40%"))


def test_the_simulated_upgrade_lists_every_package_with_both_versions():
    ups = parse_simulation("Inst libssl3 [3.0.11-1] (3.0.13-1 Debian-Security:12 [amd64])\n"
                           "Conf libssl3 (3.0.13-1 Debian-Security:12 [amd64])\nInst newdep (1.2-1 Debian:12 [all])\n")
    assert [(u.name, u.installed, u.candidate) for u in ups] == [("libssl3", "3.0.11-1", "3.0.13-1"), ("newdep", "", "1.2-1")]


def test_kubernetes_and_etcd_packages_are_kept_out_of_the_upgrade():
    f = probe("patched_worker")
    assert [u.name for u in f.upgrades] == ["kubeforge-lab-patch", "libssl3"]
    assert sorted(u.name for u in f.kept) == ["etcd-client", "kubelet"]
    assert not f.needs_reboot and f.boot_id.startswith("0f1e2d3c") and not f.update_failed


def test_a_newer_kernel_than_the_running_one_needs_a_reboot():
    f = probe("new_kernel")
    assert f.kernel_pending and f.needs_reboot
    assert f.reboot_reason == "kernel 6.1.0-28-amd64 installed, 6.1.0-25-amd64 running"  # 28 > 9, numerically


def test_reboot_required_names_the_packages_that_asked():
    f = probe("reboot_required")
    assert f.needs_reboot and f.reboot_reason == "/var/run/reboot-required (libc6, kubeforge-lab-patch)"


def test_garbage_reads_as_a_failed_update_and_no_reboot():
    f = probe("garbage")
    assert f.update_failed and not f.upgrades and not f.needs_reboot


def test_an_unfinished_earlier_reboot_is_planned_again():
    f = replace(probe("patched_worker"), marked="old-boot-id")
    assert f.needs_reboot and "earlier run" in f.reboot_reason


def facts_for(cluster, patched=(), rebooting=()):
    base = probe("patched_worker")
    return {h.name: replace(base, host=h.name, upgrades=base.upgrades if h.name in patched else (),
                            reboot_required=h.name in rebooting) for h in cluster.hosts}


def test_packages_go_one_at_a_time_on_etcd_and_control_planes_and_in_batches_on_workers(cluster):
    every = [h.name for h in cluster.hosts]
    plan = plan_packages(OsUpgradeInput(cluster, facts_for(cluster, patched=every)))
    first, workers = plan.phases
    assert [lane.host for lane in first.lanes] == ["etcd-1", "etcd-2", "etcd-3", "lb-1", "cp-1", "cp-2"]
    assert first.strategy.kind == "serial"
    assert [lane.host for lane in workers.lanes] == [f"worker-{i}" for i in range(1, 6)]
    assert workers.strategy.kind == "batched" and workers.strategy.batch_size(5) == 2  # 40% of 5


def test_hosts_with_nothing_to_upgrade_get_no_step(cluster):
    plan = plan_packages(OsUpgradeInput(cluster, facts_for(cluster, patched=("worker-3",))))
    assert plan.phases[0].is_noop and "nothing to upgrade" in plan.phases[0].reason
    assert [lane.host for lane in plan.phases[1].lanes] == ["worker-3"]


def test_the_upgrade_holds_kubernetes_and_etcd_for_its_duration_and_skips_when_nothing_is_left():
    step = upgrade_packages_step(make_cluster(None).hosts[0])
    script = step.command.script
    assert "apt-mark hold $kept" in script and "trap restore EXIT" in script and "apt-get upgrade -y" in script
    assert all(k in script for k in KEPT) and "--force-confold" in script
    assert "apt-get -s -q upgrade" in step.unless.script


def test_only_hosts_that_ask_reboot_and_a_control_planes_window_is_gated(cluster):
    plan = plan_reboots(OsUpgradeInput(cluster, facts_for(cluster, rebooting=("cp-2", "etcd-2", "worker-4"))))
    cps, workers = plan.phases
    assert [lane.host for lane in cps.lanes] == ["etcd-2", "cp-2"] and cps.strategy.kind == "serial"
    assert [lane.host for lane in workers.lanes] == ["worker-4"]
    cp = [(s.host, s.key) for s in cps.lanes[1].steps]
    assert cp == [("cp-2", "mark"), ("cp-1", "drain-cp-2"), ("cp-2", "reboot"), ("cp-2", "back"),
                  ("cp-1", "ready-cp-2"), ("cp-1", "readyz-cp-2"), ("cp-1", "uncordon-cp-2"), ("cp-2", "unmark")]
    etcd = [s.key for s in cps.lanes[0].steps]
    assert etcd == ["mark", "reboot", "back", "etcd-healthy-etcd-2", "unmark"]  # no node: nothing to drain
    reboot = cps.lanes[1].steps[2]
    assert "systemctl reboot" in reboot.command.script and "boot_id" in reboot.unless.script


def test_nobody_needing_a_reboot_is_a_plan_with_nothing_to_do(cluster):
    plan = plan_reboots(OsUpgradeInput(cluster, facts_for(cluster)))
    assert plan.is_noop


def test_the_dry_run_preview_says_per_host_what_would_change_and_reboot(cluster):
    rows = {r["host"]: r for r in preview(OsUpgradeInput(cluster, facts_for(cluster, patched=("worker-1",),
                                                                             rebooting=("cp-1",))))}
    assert [u["name"] for u in rows["worker-1"]["upgrades"]] == ["kubeforge-lab-patch", "libssl3"]
    assert rows["worker-1"]["would_reboot"].startswith("only if a package asks")
    assert rows["cp-1"]["would_reboot"].startswith("yes: /var/run/reboot-required")
    assert rows["worker-2"]["would_reboot"] == "no"
