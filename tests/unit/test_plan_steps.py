"""Steps, phases and plans are data: stable ids, masked descriptions, JSON round-trip."""

from __future__ import annotations

import json

import pytest

from kubeforge.model import RenderedFile, Secret
from kubeforge.plan import (
    GateStep,
    GetFileStep,
    HostLane,
    LocalStep,
    PhasePlan,
    Plan,
    PutFileStep,
    RunStep,
    batched,
    build_plan,
    parallel,
    rolling,
    serial,
    with_gates,
)
from kubeforge.transport.base import Command

TOKEN = "abcdef.0123456789abcdef"
KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def join_step(host: str = "worker-1") -> RunStep:
    return RunStep(
        host,
        Command(argv=["kubeadm", "join", "--config", "/etc/kubeforge/join.yaml"], env={"TOKEN": Secret(TOKEN)}, sudo=True),
        "Join the cluster",
    )


def key_file(host: str = "cp-1") -> PutFileStep:
    return PutFileStep(host, RenderedFile("/etc/kubernetes/pki/sa.key", KEY_PEM, mode=0o600, secret=True))


def sample_plan() -> Plan:
    init = PhasePlan(
        "InitCluster",
        "Initialize the first control plane",
        serial(),
        (HostLane("cp-1", (key_file(), RunStep("cp-1", Command(argv=["kubeadm", "init"]), "Run kubeadm init"))),),
    )
    workers = PhasePlan(
        "JoinWorkers",
        "Join workers",
        batched("50%"),
        tuple(HostLane(h, (join_step(h),)) for h in ("worker-1", "worker-2")),
    )
    etcd = PhasePlan("ConfigureEtcd", "Configure etcd", parallel(), (), "etcd already healthy on all 3 members")
    return Plan("up", (etcd, init, workers))


def test_step_id_does_not_shift_when_a_step_is_inserted_before_it():
    a = RunStep("cp-1", Command(argv=["true"]), "First")
    b = RunStep("cp-1", Command(argv=["systemctl", "restart", "kubelet"]), "Restart kubelet")
    before = PhasePlan("UpgradeKubelet", "Upgrade kubelet", serial(), (HostLane("cp-1", (b,)),))
    after = PhasePlan("UpgradeKubelet", "Upgrade kubelet", serial(), (HostLane("cp-1", (a, b)),))
    assert before.steps[0].id == after.steps[1].id
    assert before.steps[0].id.startswith("UpgradeKubelet/cp-1/restart-kubelet-")


def test_step_id_changes_when_the_command_changes():
    one = PhasePlan("P", "P", serial(), (HostLane("h", (RunStep("h", Command(argv=["apt-get", "install", "kubeadm=1.34.2-1.1"]), "Install kubeadm"),)),))
    two = PhasePlan("P", "P", serial(), (HostLane("h", (RunStep("h", Command(argv=["apt-get", "install", "kubeadm=1.35.0-1.1"]), "Install kubeadm"),)),))
    assert one.steps[0].id != two.steps[0].id


def test_step_id_does_not_depend_on_a_secret_value():
    def plan_with(token: str) -> str:
        step = RunStep("w", Command(argv=["kubeadm", "join"], env={"TOKEN": Secret(token)}), "Join")
        return PhasePlan("Join", "Join", serial(), (HostLane("w", (step,)),)).steps[0].id

    assert plan_with("secret-one-123") == plan_with("secret-two-456")


def test_an_explicit_key_names_the_step():
    step = LocalStep("Write admin.conf", fn=lambda: None, key="admin-conf")
    phase = PhasePlan("WriteKubeconfig", "Write kubeconfig", serial(), (HostLane("local", (step,)),))
    assert phase.steps[0].id == "WriteKubeconfig/local/admin-conf"


def test_a_plan_rejects_two_steps_with_the_same_id():
    s = RunStep("h", Command(argv=["true"]), "Same")
    with pytest.raises(ValueError, match="share the id"):
        Plan("x", (PhasePlan("P", "P", serial(), (HostLane("h", (s, s)),)),))


def test_describe_masks_secrets_and_never_shows_file_content():
    assert "TOKEN=***" in join_step().describe()
    assert TOKEN not in join_step().describe()
    line = key_file().describe()
    assert "/etc/kubernetes/pki/sa.key" in line and "0600" in line
    assert RenderedFile("/x", KEY_PEM).sha256[:12] in line
    assert "PRIVATE KEY" not in line and "MIIE" not in line


def test_plan_text_and_json_never_contain_secrets_or_file_content():
    plan = sample_plan()
    text = plan.render_text()
    blob = json.dumps(plan.to_dict())
    for shown in (text, blob):
        assert TOKEN not in shown
        assert "MIIE" not in shown and "PRIVATE KEY" not in shown
    assert "***" in text and "***" in blob


def test_plan_text_lists_phases_hosts_and_steps_with_no_op_reasons():
    text = sample_plan().render_text()
    assert "Configure etcd — nothing to do: etcd already healthy on all 3 members" in text
    assert "2. Initialize the first control plane (one host at a time)" in text
    assert "   [worker-2]" in text
    assert "     - Run kubeadm init: kubeadm init" in text
    assert text.splitlines()[0] == "Plan up: 4 steps on 3 hosts in 2 of 3 phases"


def test_plan_json_round_trips():
    plan = sample_plan()
    d = json.loads(json.dumps(plan.to_dict()))
    back = Plan.from_dict(d)
    assert back.to_dict() == d
    assert back.render_text() == plan.render_text()
    assert [s.id for s in back.steps] == [s.id for s in plan.steps]


def test_every_step_kind_serialises_to_json():
    steps = (
        join_step("h"),
        key_file("h"),
        GetFileStep("h", "/etc/kubernetes/admin.conf", "/tmp/admin.conf"),
        GateStep("h", Command(argv=["kubectl", "get", "node", "h"]), "Wait for node", what="node h Ready", timeout_s=60),
        LocalStep("Record", fn=lambda: None, key="record"),
    )
    plan = Plan("x", (PhasePlan("All", "All", serial(), (HostLane("h", steps),)),))
    d = json.loads(json.dumps(plan.to_dict()))
    assert [s["kind"] for s in d["phases"][0]["hosts"][0]["steps"]] == ["run", "put", "get", "gate", "local"]
    assert "wait up to 60s for node h Ready" in plan.render_text()


def test_a_phase_with_no_steps_needs_a_reason():
    with pytest.raises(ValueError, match="needs a reason"):
        PhasePlan("P", "P", serial(), ())


class _FakeInventoryPhase:
    """A phase as workflows write them: it reads ctx and returns a PhasePlan."""

    name = "InstallPackages"
    title = "Install packages"
    strategy = parallel(10)

    def plan(self, ctx):
        lanes = [(h, [RunStep(h, Command(argv=["apt-get", "install", "-y", "kubelet"]), "Install kubelet")]) for h, missing in ctx.items() if missing]
        return PhasePlan.of(self, lanes, reason_if_empty="kubelet installed on every host")


def test_build_plan_asks_each_phase_and_drops_converged_hosts():
    plan = build_plan("up", [_FakeInventoryPhase()], {"cp-1": True, "worker-1": False})
    assert plan.hosts == ["cp-1"]
    converged = build_plan("up", [_FakeInventoryPhase()], {"cp-1": False})
    assert converged.is_noop
    assert converged.phases[0].reason == "kubelet installed on every host"
    assert "Nothing to do" in converged.render_text()


def test_rolling_gates_are_steps_of_the_plan():
    def gate(h):
        return GateStep(h, Command(argv=["kubectl", "get", "node", h]), f"Wait for {h} Ready", what=f"node {h} Ready")
    lanes = with_gates([("cp-2", [RunStep("cp-2", Command(argv=["kubeadm", "upgrade", "node"]), "Upgrade node")])], gate)
    phase = PhasePlan("UpgradeControlPlanes", "Upgrade control planes", rolling(), tuple(HostLane(h, tuple(s)) for h, s in lanes))
    assert [s.kind for s in phase.steps] == ["run", "gate"]


def test_plan_hosts_keep_plan_order_not_name_order():
    def lane(h):
        return HostLane(h, (RunStep(h, Command(argv=["true"]), "T"),))

    plan = Plan("x", (PhasePlan("P", "P", serial(), (lane("worker-2"), lane("cp-1"))),))
    assert plan.hosts == ["worker-2", "cp-1"]


def test_a_rolling_phase_refuses_a_host_without_a_readiness_gate():
    lanes = [("cp-2", [RunStep("cp-2", Command(argv=["kubeadm", "upgrade", "node"]), "Upgrade node")])]
    with pytest.raises(ValueError, match="cp-2 end without a readiness gate"):
        PhasePlan("UpgradeControlPlanes", "Upgrade control planes", rolling(), tuple(HostLane(h, tuple(s)) for h, s in lanes))


def test_a_local_step_that_acts_on_hosts_says_where_in_the_plan():
    from kubeforge.plan.steps import LocalStep

    plain = LocalStep("Record state", lambda: None, key="record")
    reaching = LocalStep("Stop and disable etcd on etcd-3", lambda: None, key="retire", reaches="etcd-3")
    assert plain.describe() == "Record state (on this machine)"
    assert reaching.describe() == "Stop and disable etcd on etcd-3 (from this machine, on etcd-3)"
    assert reaching.to_dict()["line"] == reaching.describe()


def test_every_local_step_of_the_upgrade_and_etcd_plans_that_reaches_a_member_says_so():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "kubeforge"
    # (the local steps of `etcd members`' own phases moved from workflows/etcd/members.py to membership.py)
    for rel in ("plan/upgrade/backup_etcd.py", "plan/etcd/upgrade.py", "plan/etcd/membership.py"):
        tree = ast.parse((root / rel).read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "LocalStep"]
        acting = [c for c in calls if "Warning" not in ast.unparse(c.args[0]) and "Record" not in ast.unparse(c.args[0])]
        assert acting, rel
        for c in acting:
            assert any(k.arg == "reaches" for k in c.keywords), f"{rel}: {ast.unparse(c)[:80]}"
