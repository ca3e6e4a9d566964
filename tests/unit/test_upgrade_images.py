"""upgrade with an offline bundle carrying images: each node gets the hop version's images for its
roles pushed and imported in a phase of its own, all nodes at once, before any node is drained or
upgraded; nodes already at the version get nothing; the steps are journalled per hop."""

from __future__ import annotations

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.model.images import images_for_host
from kubeforge.model.versions import parse_kube
from kubeforge.plan.steps import PutFileStep, RunStep
from kubeforge.plan.upgrade import plan_hop, plan_path
from tests.unit.test_bundle_images import write_bundle
from tests.unit.test_offline_bundle import bundle, offline, template  # noqa: F401 (fixtures)
from tests.unit.test_upgrade_planner import facts_at, noop_backup

V134, V135 = parse_kube("1.34.2"), parse_kube("1.35.1")


def with_images(bundle, versions=(V134, V135)):
    c = offline(bundle, version="1.34.2", n_cp=2, n_workers=2)
    write_bundle(bundle, {i.ref for v in versions for h in c.nodes for i in images_for_host(c, h, v)})
    return c


def drains(phase) -> bool:
    return any(s.title.startswith("Drain ") for s in phase.steps)


def test_the_hops_images_are_imported_on_every_node_at_once_before_any_drain_or_upgrade(bundle):
    c = with_images(bundle)
    plan = plan_hop(c, facts_at(c, version=V134), V135, backup=noop_backup)
    names = [p.name for p in plan.phases]
    images = names.index("PrepareImages")
    assert names[:images + 1] == ["BackupEtcd", "PrepareImages"]
    first_drain = min(i for i, p in enumerate(plan.phases) if drains(p))
    first_kubeadm = min(i for i, p in enumerate(plan.phases)
                        if any(isinstance(s, RunStep) and "kubeadm upgrade" in s.command.script for s in p.steps))
    assert images < first_drain and images < first_kubeadm
    phase = plan.phases[images]
    assert phase.strategy.kind == "parallel" and phase.strategy.batch_size(len(phase.lanes)) == len(c.nodes)
    assert sorted(lane.host for lane in phase.lanes) == sorted(h.name for h in c.nodes)
    for host in c.nodes:
        lane = next(ln for ln in phase.lanes if ln.host == host.name)
        pushed = {s.file.source.removeprefix("bundle image ") for s in lane.steps if isinstance(s, PutFileStep)}
        assert pushed == {i.ref for i in images_for_host(c, host, V135)}
        run = [s for s in lane.steps if isinstance(s, RunStep)]
        assert len(run) == 1 and run[0].unless is not None  # skipped when containerd has every image
        assert "ctr -n k8s.io images import" in run[0].command.script
        assert run[0].key == "v1.35.1-images-import-images"


def test_a_worker_gets_only_kube_proxy_pause_and_coredns_of_the_new_version(bundle):
    c = with_images(bundle)
    phase = next(p for p in plan_hop(c, facts_at(c, version=V134), V135, backup=noop_backup).phases
                 if p.name == "PrepareImages")
    lane = next(ln for ln in phase.lanes if ln.host == c.workers[0].name)
    refs = sorted(s.file.source.removeprefix("bundle image ") for s in lane.steps if isinstance(s, PutFileStep))
    assert [r.rsplit("/", 1)[1].split(":")[0] for r in refs] == ["coredns", "kube-proxy", "pause"]
    assert "registry.k8s.io/kube-proxy:v1.35.1" in refs


def test_a_node_already_at_the_hop_version_gets_no_images(bundle):
    c = with_images(bundle)
    facts = facts_at(c, version=V134, cp_1=V135, worker_1=V135)
    phase = next(p for p in plan_hop(c, facts, V135, backup=noop_backup).phases if p.name == "PrepareImages")
    assert sorted(ln.host for ln in phase.lanes) == ["cp-2", "worker-2"]
    done = next(p for p in plan_hop(c, facts_at(c, version=V135), V135, backup=noop_backup).phases
                if p.name == "PrepareImages")
    assert done.is_noop and done.reason == "every node already runs 1.35.1"


def test_each_hop_of_a_multi_hop_plan_imports_its_own_versions_images_under_its_own_keys(bundle):
    c = with_images(bundle)
    plan = plan_path(c, facts_at(c, version=V134), [V135], V135, backup=noop_backup)
    keys = [s.key for p in plan.phases if p.name == "PrepareImages" for s in p.steps]
    assert keys and all(k.startswith("v1.35.1-images-") for k in keys)


def test_a_bundle_without_the_hops_images_is_refused_while_planning(bundle):
    c = with_images(bundle, versions=(V134,))
    with pytest.raises(SafetyRefusal, match=r"has no image archive for .*kube-apiserver:v1.35.1 \(needed on cp-1, cp-2\)"):
        plan_hop(c, facts_at(c, version=V134), V135, backup=noop_backup)
