"""Scheduling, DaemonSets, Deployments and PDB-guarded eviction in the simulated cluster."""

from __future__ import annotations

import pytest

from tests.sim.kubesim import state as rules
from tests.sim.kubesim import workloads
from tests.sim.kubesim.host import SimError

NOW = 1000.0


def cluster(*workers: str, taints: dict[str, list] | None = None, cni: bool = True) -> dict:
    st = rules.new_state()
    st.update(initialized=True, clusterVersion="v1.34.2")
    for name in ("cp-1",) + workers:
        cp = name.startswith("cp")
        st["nodes"][name] = {"name": name, "controlPlane": cp, "kubeletVersion": "v1.34.2", "registered": True,
                             "lastHeartbeat": NOW, "labels": {}, "unschedulable": False,
                             "taints": (taints or {}).get(name, [{"key": "node-role.kubernetes.io/control-plane",
                                                                   "effect": "NoSchedule"}] if cp else [])}
    if cni:
        workloads.apply(st, [cni_daemonset()], NOW)
    return st


def workloads_in(st: dict, namespace: str) -> set:
    """The pods of one namespace (the CNI's own pods live in kube-system)."""
    return {k for k, p in st["pods"].items() if p["namespace"] == namespace}


def cni_daemonset(name: str = "calico-node", tolerations: list | None = None) -> dict:
    """A CNI's node agent; like calico's and flannel's, it tolerates every taint unless told otherwise."""
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"template": {"metadata": {"labels": {"k8s-app": name}},
                                  "spec": {"tolerations": [{"operator": "Exists"}] if tolerations is None
                                           else tolerations}}}}


def deployment(name: str, replicas: int, labels: dict, emptydir: bool = False) -> dict:
    spec = {"volumes": [{"name": "scratch", "emptyDir": {}}]} if emptydir else {}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": labels}, "spec": spec}}}


def pdb(name: str, labels: dict, **spec) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels}, **spec}}


def placement(st: dict, owner: str) -> list:
    return sorted((p["node"] for p in st["pods"].values() if p["ownerName"] == owner), key=str)


def test_deployment_pods_spread_over_schedulable_nodes_and_avoid_no_schedule_taints() -> None:
    st = cluster("w-1", "w-2")
    workloads.apply(st, [deployment("web", 4, {"app": "web"})], NOW)
    assert placement(st, "web") == ["w-1", "w-1", "w-2", "w-2"]


def test_deployment_pods_stay_pending_without_a_ready_node() -> None:
    st = cluster()
    workloads.apply(st, [deployment("web", 2, {"app": "web"})], NOW)
    assert placement(st, "web") == [None, None]


def test_a_toleration_lets_a_daemonset_onto_tainted_control_planes() -> None:
    st = cluster("w-1")
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "kube-system"},
          "spec": {"template": {"spec": {"tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                                          "operator": "Exists", "effect": "NoSchedule"}]}}}}
    workloads.apply(st, [ds], NOW)
    assert placement(st, "agent") == ["cp-1", "w-1"]


def test_apply_reports_created_then_unchanged_then_configured() -> None:
    st = cluster("w-1")
    assert workloads.apply(st, [deployment("web", 1, {"app": "web"})], NOW) == ["deployment.apps/web created"]
    assert workloads.apply(st, [deployment("web", 1, {"app": "web"})], NOW) == ["deployment.apps/web unchanged"]
    assert workloads.apply(st, [deployment("web", 2, {"app": "web"})], NOW) == ["deployment.apps/web configured"]
    assert len(placement(st, "web")) == 2


def test_a_node_turns_ready_once_a_pod_of_the_cni_daemonset_runs_on_it() -> None:
    st = cluster("w-1", cni=False)
    assert not any(workloads.node_ready(st, n, NOW) for n in st["nodes"].values())
    workloads.apply(st, [cni_daemonset("kube-flannel-ds")], NOW)
    assert {n for n in st["nodes"] if workloads.node_ready(st, st["nodes"][n], NOW)} == {"cp-1", "w-1"}


def test_a_cni_that_does_not_tolerate_a_nodes_taint_leaves_that_node_not_ready() -> None:
    st = cluster("w-1", "w-2", cni=False, taints={"w-2": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]})
    workloads.apply(st, [cni_daemonset(tolerations=[{"key": "node-role.kubernetes.io/control-plane",
                                                     "operator": "Exists", "effect": "NoSchedule"}])], NOW)
    ready = {n for n in st["nodes"] if workloads.node_ready(st, st["nodes"][n], NOW)}
    assert ready == {"cp-1", "w-1"}
    assert "w-2" not in placement(st, "calico-node")


def test_a_daemonset_without_tolerations_leaves_the_tainted_control_plane_not_ready() -> None:
    st = cluster("w-1", cni=False)
    workloads.apply(st, [cni_daemonset(tolerations=[])], NOW)
    assert [n for n in st["nodes"] if workloads.node_ready(st, st["nodes"][n], NOW)] == ["w-1"]


def test_a_daemonset_not_named_like_a_cni_makes_no_node_ready() -> None:
    st = cluster("w-1", cni=False)
    workloads.apply(st, [cni_daemonset("node-exporter")], NOW)
    assert placement(st, "node-exporter") == ["cp-1", "w-1"]
    assert not any(workloads.node_ready(st, n, NOW) for n in st["nodes"].values())


def test_a_noexecute_taint_the_cni_does_not_tolerate_evicts_its_pod_and_the_node_goes_not_ready() -> None:
    st = cluster("w-1", cni=False)
    workloads.apply(st, [cni_daemonset(tolerations=[{"key": "node-role.kubernetes.io/control-plane",
                                                     "operator": "Exists"}])], NOW)
    assert workloads.node_ready(st, st["nodes"]["w-1"], NOW)
    rules.op_taint(st, {"node": "w-1", "add": [{"key": "maintenance", "value": "x", "effect": "NoExecute"}]}, NOW)
    assert "w-1" not in placement(st, "calico-node")
    assert not workloads.node_ready(st, st["nodes"]["w-1"], NOW)


def test_eviction_that_would_break_min_available_is_refused_with_kubectls_message() -> None:
    st = cluster("w-1")
    workloads.apply(st, [deployment("web", 2, {"app": "web"}), pdb("web", {"app": "web"}, minAvailable=2)], NOW)
    pod = next(p for p in st["pods"].values() if p["ownerName"] == "web")
    with pytest.raises(SimError) as e:
        workloads.evict(st, "default", pod["name"], NOW)
    assert e.value.code == 429
    assert e.value.message == "Cannot evict pod as it would violate the pod's disruption budget."


def test_evicted_deployment_pods_are_rescheduled_on_other_ready_nodes() -> None:
    st = cluster("w-1", "w-2")
    workloads.apply(st, [deployment("web", 2, {"app": "web"}), pdb("web", {"app": "web"}, minAvailable=1)], NOW)
    st["nodes"]["w-1"]["unschedulable"] = True
    for p in [p for p in st["pods"].values() if p["node"] == "w-1" and p["ownerName"] == "web"]:
        workloads.evict(st, "default", p["name"], NOW)
    # the evicted pod terminates for its grace period while its replacement already runs on w-2
    assert placement(st, "web") == ["w-1", "w-2", "w-2"]
    workloads.reconcile(st, NOW + workloads.grace_cap())
    assert placement(st, "web") == ["w-2", "w-2"]


def test_an_evicted_pod_takes_its_grace_period_bounded_by_the_cap_or_the_override(monkeypatch) -> None:
    monkeypatch.setenv("KUBESIM_GRACE_CAP_SECONDS", "3")
    st = cluster("w-1")
    workloads.apply(st, [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{g}"},
                          "spec": {"nodeName": "w-1", "terminationGracePeriodSeconds": g}} for g in (1, 60)]
                    + [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "default-grace"},
                        "spec": {"nodeName": "w-1"}}], NOW)
    assert st["pods"]["default/default-grace"]["grace"] == 30  # the PodSpec default
    for name in ("p1", "p60"):
        workloads.evict(st, "default", name, NOW)
    workloads.evict(st, "default", "default-grace", NOW, grace=0)  # --grace-period=0
    assert st["pods"]["default/p1"]["deleteAt"] == NOW + 1 and st["pods"]["default/p60"]["deleteAt"] == NOW + 3
    assert workloads_in(rules.view(st, NOW + 0.5), "default") == {"default/p1", "default/p60"}
    assert workloads_in(rules.view(st, NOW + 1), "default") == {"default/p60"}
    workloads.reconcile(st, NOW + 3)
    assert workloads_in(st, "default") == set()


def test_a_bare_pod_is_bound_to_its_node_name_and_never_recreated() -> None:
    st = cluster("w-1", "w-2")
    assert workloads.apply(st, [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug"},
                                 "spec": {"nodeName": "w-2"}}], NOW) == ["pod/debug created"]
    pod = st["pods"]["default/debug"]
    assert pod["node"] == "w-2" and pod["ownerKind"] is None
    workloads.evict(st, "default", "debug", NOW, grace=0)
    workloads.reconcile(st, NOW)
    assert workloads_in(st, "default") == set()


def test_max_unavailable_budget_allows_one_disruption_at_a_time() -> None:
    st = cluster("w-1", "w-2")
    workloads.apply(st, [deployment("web", 2, {"app": "web"}), pdb("web", {"app": "web"}, maxUnavailable=1)], NOW)
    # nowhere to reschedule: both workers cordoned, so the first eviction leaves a pending replacement
    for n in ("w-1", "w-2"):
        st["nodes"][n]["unschedulable"] = True
    first, second = sorted(p["name"] for p in st["pods"].values() if p["ownerName"] == "web")
    workloads.evict(st, "default", first, NOW)
    with pytest.raises(SimError):
        workloads.evict(st, "default", second, NOW)


def test_pods_on_a_not_ready_node_do_not_count_as_healthy_for_a_budget() -> None:
    st = cluster("w-1", "w-2")
    workloads.apply(st, [deployment("web", 2, {"app": "web"}), pdb("web", {"app": "web"}, minAvailable=1)], NOW)
    st["nodes"]["w-2"]["lastHeartbeat"] = NOW - 60
    on_w1 = next(p["name"] for p in st["pods"].values() if p["node"] == "w-1")
    with pytest.raises(SimError):
        workloads.evict(st, "default", on_w1, NOW)


def test_evicting_a_missing_pod_is_not_found() -> None:
    st = cluster("w-1")
    with pytest.raises(SimError) as e:
        workloads.evict(st, "default", "nope", NOW)
    assert e.value.code == 404
