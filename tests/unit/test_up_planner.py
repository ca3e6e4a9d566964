"""The `up` planner decides from the model, the facts and the live cluster state: fresh hosts get
the whole plan, a converged cluster gets no-ops with reasons, a new worker gets only its join."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kubeforge.facts import parse_host_facts
from kubeforge.facts.cluster import Node
from kubeforge.facts.parse_system import parse_modules, parse_swaps, parse_sysctls
from kubeforge.facts.types import Applied, Held, Membership, Packages, Units, UnitState
from kubeforge.model import CniSpec, Network, Role
from kubeforge.model.versions import parse_kube
from kubeforge.pki import ensure_pki, host_files
from kubeforge.pki.secrets import ensure_secrets
from kubeforge.plan.steps import GetFileStep, PutFileStep, RunStep
from kubeforge.plan.up import ClusterState, CniSource, UpContext, plan_up
from kubeforge.plan.up.context import CONTROL_PLANE_LABEL
from kubeforge.plan.up.label_and_taint_nodes import missing
from kubeforge.render.host import render_cluster
from kubeforge.render.kubeadm import node_view
from kubeforge.render.record import RECORD_PATH
from tests.factories import make_cluster, make_host

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"
RUNNER = parse_host_facts("runner", (FIXTURES / "script" / "debian12-runner.txt").read_text())
VERSION = "1.34.2"
CNI = CniSource("kubesim-cni", content=b"kind: DaemonSet\nmetadata:\n  name: kubesim-cni\n")


def fx(fact: str, name: str) -> str:
    return (FIXTURES / fact / f"{name}.txt").read_text()


def fresh_facts(name: str):
    """A bare Debian machine: nothing installed, nothing applied, swap on."""
    return dataclasses.replace(
        RUNNER, host=name, hostname=name,
        swap=parse_swaps("Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n"),
        packages=Packages(), held=Held(), units=Units(), applied=Applied(), membership=Membership(), problems={},
    )


def converged_facts(cluster, files, host):
    """What a host looks like after a successful `up`: applied.json matches, packages held, units up."""
    record = json.loads(next(f for f in files[host.name] if f.path == RECORD_PATH).content)
    pkgs, held, units = {}, set(), {}
    if host.is_control_plane or host.is_worker:
        pkgs.update({p: f"{VERSION}-1.1" for p in ("kubeadm", "kubelet", "kubectl")}, containerd="1.6.20~ds1-1")
        held.update({"kubeadm", "kubelet", "kubectl"})
        units.update(containerd=UnitState("active", "enabled", True), kubelet=UnitState("active", "enabled", True))
    if host.is_etcd:
        pkgs.update({"etcd-server": "3.4.23-4", "etcd-client": "3.4.23-4"})
        units["etcd"] = UnitState("active", "enabled", True)
    return dataclasses.replace(
        RUNNER, host=host.name, hostname=host.name,
        swap=parse_swaps("Filename\tType\tSize\tUsed\tPriority\n"),
        modules=parse_modules(fx("modules", "loaded"), fx("modules_wanted", "loaded")),
        sysctls=parse_sysctls(fx("sysctls", "set")),
        packages=Packages(packages=pkgs), held=Held(frozenset(held)), units=Units(units),
        applied=Applied(record=record),
        membership=Membership(kubelet_conf=host.is_control_plane or host.is_worker, etcd_data=host.is_etcd),
        problems={},
    )


def ready_state(cluster, names=None) -> ClusterState:
    nodes = {}
    for h in cluster.nodes:
        if names is not None and h.name not in names:
            continue
        labels = {**h.labels, **({CONTROL_PLANE_LABEL: ""} if h.is_control_plane else {})}  # kubeadm's mark
        nodes[h.name] = Node(h.name, True, labels, tuple(str(t) for t in node_view(cluster, h).taints),
                             kubelet=parse_kube(VERSION))
    return ClusterState(initialized=True, nodes=nodes, admin_conf_sha256="ab" * 32, cni_marker=CNI.fingerprint)


def resolve(cluster):
    pki = ensure_pki(cluster)
    secrets = ensure_secrets(cluster)
    files = render_cluster(cluster, secrets=secrets, ca_cert_hash=pki.bundle.kube_ca_cert_hash,
                           extra_files={h.name: host_files(cluster, pki.bundle, h) for h in cluster.hosts})
    return secrets, files


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = make_cluster(tmp_path_factory.mktemp("up"), version=VERSION, etcd_version="3.4.23", n_cp=2, n_workers=2)
    return dataclasses.replace(c, network=Network(cni=CniSpec(manifest="cni.yaml", name="kubesim-cni")))


@pytest.fixture(scope="module")
def resolved(cluster):
    return resolve(cluster)


def fresh_ctx(cluster, files) -> UpContext:
    return UpContext(cluster, {h.name: fresh_facts(h.name) for h in cluster.hosts}, files, ClusterState(), cni=CNI)


def converged_ctx(cluster, files) -> UpContext:
    facts = {h.name: converged_facts(cluster, files, h) for h in cluster.hosts}
    return UpContext(cluster, facts, files, ready_state(cluster), cni=CNI, local_admin_sha256="ab" * 32)


def phase(plan, name):
    return next(p for p in plan.phases if p.name == name)


def test_fresh_hosts_get_every_phase_in_the_order_that_is_the_product(cluster, resolved):
    plan = plan_up(fresh_ctx(cluster, resolved[1]))
    assert [p.name for p in plan.phases] == [
        "PrepareHosts", "InstallPackages", "PrepareImages", "WritePki", "InstallEtcd", "ReadyDrainedApiServers", "ReissueApiserverCerts",
        "ConfigureEndpoint",
        "InitFirstControlPlane",
        "WaitEndpoint", "JoinControlPlanes", "JoinWorkers", "ApplyCni", "WaitNodesReady", "RestartControlPlaneRuntimes",
        "RestartWorkerRuntimes", "LabelAndTaintNodes", "FetchAdminKubeconfig", "RecordApplied",
    ]
    rolling = {"RestartControlPlaneRuntimes", "RestartWorkerRuntimes"}  # only for nodes already in a cluster
    # only with registry settings or a bundle with images; only for a running API server's new names;
    # only after an interrupted run left an API server drained on haproxy
    idle = rolling | {"PrepareImages", "ReissueApiserverCerts", "ReadyDrainedApiServers"}
    assert all(not p.is_noop for p in plan.phases if p.name not in idle)
    assert all(p.is_noop for p in plan.phases if p.name in idle)
    init = [s for s in phase(plan, "InitFirstControlPlane").steps if isinstance(s, RunStep)]
    assert [s.host for s in init] == ["cp-1"]
    assert "kubeadm init --config /etc/kubeforge/kubeadm-init.yaml --upload-certs" in init[0].command.script
    assert [lane.host for lane in phase(plan, "JoinControlPlanes").lanes] == ["cp-2"]
    assert phase(plan, "JoinControlPlanes").strategy.kind == "rolling"
    assert [lane.host for lane in phase(plan, "JoinWorkers").lanes] == ["worker-1", "worker-2"]
    assert isinstance(phase(plan, "FetchAdminKubeconfig").steps[0], GetFileStep)


def test_fresh_nodes_install_the_exact_version_and_hold_it(cluster, resolved):
    plan = plan_up(fresh_ctx(cluster, resolved[1]))
    lane = next(ln for ln in phase(plan, "InstallPackages").lanes if ln.host == "worker-1")
    install = next(s for s in lane.steps if s.key == "install-packages")
    assert f"kubeadm={VERSION}-*" in install.command.script
    assert f"kubelet={VERSION}-*" in install.command.script
    assert "apt-mark hold kubeadm kubelet kubectl" in install.command.script
    etcd_lane = next(ln for ln in phase(plan, "InstallPackages").lanes if ln.host == "etcd-1")
    assert "kubeadm" not in next(s for s in etcd_lane.steps if s.key == "install-packages").command.script


def test_swap_is_turned_off_and_kept_off_on_fresh_nodes(cluster, resolved):
    plan = plan_up(fresh_ctx(cluster, resolved[1]))
    swap = [s for s in phase(plan, "PrepareHosts").steps if s.key == "swap-off"]
    assert {s.host for s in swap} == {h.name for h in cluster.nodes}
    assert "swapoff -a" in swap[0].command.script and "/etc/fstab" in swap[0].command.script
    assert "systemctl mask" in swap[0].command.script


def test_a_converged_cluster_plans_nothing_and_every_phase_says_why(cluster, resolved):
    plan = plan_up(converged_ctx(cluster, resolved[1]))
    assert plan.is_noop, plan.render_text()
    assert all(p.reason for p in plan.phases)
    assert "Nothing to do" in plan.render_text()


def test_a_new_worker_in_the_inventory_is_the_only_host_that_joins(cluster, resolved, tmp_path):
    bigger = dataclasses.replace(cluster, hosts=cluster.hosts + (make_host("worker-3", "10.77.4.30", Role.WORKER),),
                                 source=cluster.source)
    _, files = resolve(bigger)
    # The other hosts converged with the files of the smaller inventory.
    ctx = converged_ctx(cluster, resolved[1])
    facts = dict(ctx.facts)
    facts["worker-3"] = fresh_facts("worker-3")
    ctx = dataclasses.replace(ctx, cluster=bigger, facts=facts, files=files)
    plan = plan_up(ctx)
    touched = {s.host for s in plan.steps}
    assert touched == {"worker-3", "cp-1"}, plan.render_text()
    assert [ln.host for ln in phase(plan, "JoinWorkers").lanes] == ["worker-3"]
    assert phase(plan, "JoinControlPlanes").is_noop
    assert phase(plan, "InitFirstControlPlane").is_noop  # no control plane waits, the token is fresh
    cp1 = [s for s in plan.steps if s.host == "cp-1"]
    assert {s.phase for s in cp1} <= {"WaitNodesReady", "LabelAndTaintNodes"}


def test_an_expired_token_is_created_in_the_cluster_from_the_config_file_before_joins(cluster, resolved):
    bigger = dataclasses.replace(cluster, hosts=cluster.hosts + (make_host("worker-3", "10.77.4.30", Role.WORKER),))
    _, files = resolve(bigger)
    ctx = converged_ctx(cluster, files)
    ctx = dataclasses.replace(ctx, cluster=bigger, facts={**ctx.facts, "worker-3": fresh_facts("worker-3")}, token_to_create=True)
    steps = phase(plan_up(ctx), "InitFirstControlPlane").steps
    create = next(s for s in steps if s.key == "token-create")
    assert "kubeadm token create --config /etc/kubeforge/kubeadm-init.yaml" in create.command.script
    assert create.command.argv is None


def test_a_control_plane_joining_a_running_cluster_gets_the_certificates_uploaded_first(cluster, resolved):
    ctx = converged_ctx(cluster, resolved[1])
    facts = {**ctx.facts, "cp-2": fresh_facts("cp-2")}
    ctx = dataclasses.replace(ctx, facts=facts, state=ready_state(cluster, names={"cp-1", "worker-1", "worker-2"}))
    plan = plan_up(ctx)
    upload = [s for s in phase(plan, "InitFirstControlPlane").steps if s.key == "upload-certs"]
    assert upload and "--config /etc/kubeforge/kubeadm-init.yaml" in upload[0].command.script
    assert [ln.host for ln in phase(plan, "JoinControlPlanes").lanes] == ["cp-2"]


def test_secrets_never_appear_in_the_plan_text_or_json(cluster, resolved):
    secrets, files = resolved
    plan = plan_up(fresh_ctx(cluster, files))
    text = plan.render_text()
    doc = json.dumps(plan.to_dict())
    for value in (secrets.bootstrap_token.reveal(), secrets.certificate_key.reveal(), secrets.bootstrap_token.reveal().split(".")[1]):
        assert value not in text and value not in doc
    keys = [s for s in plan.steps if isinstance(s, PutFileStep) and s.file.secret]
    assert keys and all(s.file.content.decode(errors="replace") not in text for s in keys)


def test_labels_and_taints_the_api_already_shows_are_not_applied_again(cluster):
    labelled = make_host("worker-9", "10.77.4.99", Role.WORKER, labels={"tier": "gold"})
    c = dataclasses.replace(cluster, hosts=cluster.hosts + (labelled,))
    ctx = UpContext(c, {}, {}, ClusterState(initialized=True, nodes={"worker-9": Node("worker-9", True, {"tier": "gold"})}))
    assert missing(ctx, labelled) == ([], [])
    ctx = UpContext(c, {}, {}, ClusterState(initialized=True, nodes={"worker-9": Node("worker-9", True, {"tier": "silver"})}))
    assert missing(ctx, labelled) == (["tier=gold"], [])


def test_no_cni_manifest_is_a_no_op_with_the_inventory_key_named(cluster, resolved):
    ctx = dataclasses.replace(fresh_ctx(cluster, resolved[1]), cni=None)
    assert "network.cni.manifest" in phase(plan_up(ctx), "ApplyCni").reason


def test_an_expired_local_token_is_rotated_before_planning_and_members_only_get_their_new_files(tmp_path):
    from kubeforge.workflows.up import resolve_context

    c = make_cluster(tmp_path, version=VERSION, etcd_version="3.4.23", n_cp=2, n_workers=2)
    ensure_secrets(c)
    path = c.pki_dir / "secrets.json"
    doc = json.loads(path.read_text())
    old = doc["bootstrapToken"]
    doc["bootstrapTokenCreated"] = "2000-01-01T00:00:00+00:00"
    path.write_text(json.dumps(doc))
    _, files = resolve(c)  # the files the cluster converged with, still with the old token
    facts = {h.name: converged_facts(c, files, h) for h in c.hosts}
    facts["worker-2"] = fresh_facts("worker-2")
    ctx = resolve_context(c, facts, ready_state(c, names={"cp-1", "cp-2", "worker-1"}))
    assert ctx.token_to_create and json.loads(path.read_text())["bootstrapToken"] != old
    plan = plan_up(ctx)
    assert [s.key for s in phase(plan, "InitFirstControlPlane").steps if isinstance(s, RunStep)] == ["token-create"]
    cp2 = next(ln for ln in phase(plan, "JoinControlPlanes").lanes if ln.host == "cp-2")
    assert cp2.steps[-1].kind == "gate" and not any(s.key == "kubeadm-join" for s in cp2.steps)


def test_a_fresh_local_token_the_cluster_does_not_hold_is_created_before_a_join(tmp_path):
    """A token rotated by an earlier plan, dry run or interrupted attempt that never reached the
    cluster: the local store says it is fresh, the cluster's live token ids say otherwise."""
    from kubeforge.workflows.up import resolve_context

    c = make_cluster(tmp_path, version=VERSION, etcd_version="3.4.23", n_cp=2, n_workers=2)
    secrets, files = resolve(c)
    facts = {h.name: converged_facts(c, files, h) for h in c.hosts}
    facts["worker-2"] = fresh_facts("worker-2")
    state = ready_state(c, names={"cp-1", "cp-2", "worker-1"})
    held = resolve_context(c, facts, dataclasses.replace(state, bootstrap_token_ids=frozenset({secrets.bootstrap_token_id})))
    assert not held.token_to_create and phase(plan_up(held), "InitFirstControlPlane").is_noop
    unknown = resolve_context(c, facts, state)  # a probe that could not list the tokens: the local expiry decides
    assert not unknown.token_to_create
    lacking = resolve_context(c, facts, dataclasses.replace(state, bootstrap_token_ids=frozenset({"zzzzzz"})))
    assert lacking.token_to_create
    create = [s for s in phase(plan_up(lacking), "InitFirstControlPlane").steps if isinstance(s, RunStep)]
    assert [s.key for s in create] == ["token-create"] and create[0].repeat_on_resume


def test_the_certificate_upload_and_token_creation_run_again_on_every_resume(cluster, resolved):
    ctx = converged_ctx(cluster, resolved[1])
    facts = {**ctx.facts, "cp-2": fresh_facts("cp-2"), "worker-2": fresh_facts("worker-2")}
    ctx = dataclasses.replace(ctx, facts=facts, state=ready_state(cluster, names={"cp-1", "worker-1"}), token_to_create=True)
    steps = [s for s in phase(plan_up(ctx), "InitFirstControlPlane").steps if isinstance(s, RunStep)]
    assert [(s.key, s.repeat_on_resume) for s in steps] == [("token-create", True), ("upload-certs", True)]


def test_an_init_that_stopped_half_way_is_reset_before_kubeadm_init_runs_again(cluster, resolved):
    """kubeadm init wrote its kubeconfigs, kubelet.conf and manifests, then stopped (the run was killed): the
    API answers, kubeadm-config does not exist. A rerun of init alone fails kubeadm's preflight."""
    ctx = fresh_ctx(cluster, resolved[1])
    first = cluster.first_control_plane.name
    facts = {**ctx.facts, first: converged_facts(cluster, resolved[1], cluster.first_control_plane)}
    assert facts[first].membership.kubelet_conf
    ctx = dataclasses.replace(ctx, facts=facts, state=ClusterState(admin_conf_sha256="ab" * 32, init_incomplete=True))
    steps = [s for s in phase(plan_up(ctx), "InitFirstControlPlane").steps if isinstance(s, RunStep)]
    assert [s.key for s in steps] == ["kubeadm-reset-incomplete-init", "kubeadm-init"]
    assert "kubeadm reset -f" in steps[0].command.script and steps[0].repeat_on_resume
    # an API that did not answer proves nothing: no reset, init's own preflight decides
    ctx = dataclasses.replace(ctx, facts=fresh_ctx(cluster, resolved[1]).facts,
                              state=ClusterState(admin_conf_sha256="ab" * 32, problem="no answer"))
    assert [s.key for s in phase(plan_up(ctx), "InitFirstControlPlane").steps if isinstance(s, RunStep)] == ["kubeadm-init"]


def test_a_node_with_containerd_stopped_is_restarted_drained_and_not_waited_for_before_its_restart(cluster, resolved):
    # the kubelet reports NotReady without a live runtime; WaitNodesReady (phase 11) must not wait for
    # a node only RestartWorkerRuntimes (phase 13) brings back
    ctx = converged_ctx(cluster, resolved[1])
    stopped = dataclasses.replace(ctx.facts["worker-1"], units=Units({
        "containerd": UnitState("inactive", "enabled", True), "kubelet": UnitState("active", "enabled", True)}))
    state = ready_state(cluster)
    nodes = dict(state.nodes)
    nodes["worker-1"] = dataclasses.replace(nodes["worker-1"], ready=False)
    ctx = dataclasses.replace(ctx, facts={**ctx.facts, "worker-1": stopped},
                              state=dataclasses.replace(state, nodes=nodes))
    plan = plan_up(ctx)
    wait = phase(plan, "WaitNodesReady")
    assert wait.is_noop and "worker-1 after its runtime restart" in wait.reason
    restart = phase(plan, "RestartWorkerRuntimes")
    assert [s.title.split(" (")[0] for s in restart.steps][:1] == ["Drain worker-1"]
    assert any("restart containerd" in (s.command.description or "") for s in restart.steps)


def test_a_reset_worker_whose_node_object_was_left_behind_joins_again(cluster, resolved):
    # kubeadm reset keeps the Node (NotReady); reset could not delete it (API down at the time)
    ctx = converged_ctx(cluster, resolved[1])
    wiped = dataclasses.replace(fresh_facts("worker-1"), swap=ctx.facts["worker-1"].swap)
    state = ready_state(cluster)
    nodes = dict(state.nodes)
    nodes["worker-1"] = dataclasses.replace(nodes["worker-1"], ready=False)
    ctx = dataclasses.replace(ctx, facts={**ctx.facts, "worker-1": wiped}, state=dataclasses.replace(state, nodes=nodes))
    assert not ctx.joined(cluster.select(["worker-1"])[0])
    assert [ln.host for ln in phase(plan_up(ctx), "JoinWorkers").lanes] == ["worker-1"]
