"""The fault matrix's own logic, without a lab: which points run, how journals are split into
attempts, what counts as a repeated step, and when a watcher's gap is a lost quorum."""

from __future__ import annotations

import json
from pathlib import Path

from tests.faults import journals
from tests.faults.__main__ import needed, summary_line
from tests.faults.etcdwire import QuorumWatcher
from tests.faults.harness import Outcome
from tests.faults.points import MIXED_VERSION, Point, matrix, select


def test_the_full_matrix_has_sigint_at_every_upgrade_boundary_every_second_elsewhere_and_the_mixed_version_case():
    full = matrix({"etcd-install": 10, "etcd-upgrade": 6}, seed=7)
    assert sorted(p.after for p in full if p.workflow == "etcd-upgrade" and p.kind == "sigint" and not p.label) == [1, 2, 3, 4, 5]
    assert [p.label for p in full if p.label] == [MIXED_VERSION]
    assert all(0 < p.after < 10 for p in full if p.workflow == "etcd-install")
    install_sigint = [p.after for p in full if p.workflow == "etcd-install" and p.kind == "sigint"]
    assert len(install_sigint) in (4, 5) and all(b - a == 2 for a, b in zip(install_sigint, install_sigint[1:], strict=False))
    assert {p.kind for p in full} == {"sigint", "sigterm", "sigkill", "ssh-cut", "power"}


def test_rotate_ca_is_interrupted_with_sigint_at_every_phase_end_beside_every_second_boundary():
    ends = [1, 31, 32, 62, 63, 93]
    full = matrix({"etcd-rotate-ca": 94}, seed=5, phase_ends={"etcd-rotate-ca": ends + [94]})
    sigint = [p.after for p in full if p.kind == "sigint"]
    assert set(ends) <= set(sigint) and 94 not in sigint and len(sigint) == len(set(sigint))
    assert len(set(sigint) - set(ends)) >= 43  # every second of the 93 boundaries besides


def test_a_sample_has_one_point_per_workflow_and_always_the_mixed_version_case():
    full = matrix({"etcd-install": 40, "etcd-upgrade": 18, "etcd-members-add": 30}, seed=1)
    for seed in range(20):
        chosen = select(full, workflows=None, kind=None, sample=4, seed=seed)
        assert len(chosen) == 4
        assert any(p.label == MIXED_VERSION for p in chosen)
        assert {p.workflow for p in chosen} == {"etcd-install", "etcd-upgrade", "etcd-members-add"}
    assert select(full, workflows=None, kind=None, sample=4, seed=3) == select(full, workflows=None, kind=None, sample=4, seed=3)


def test_the_draw_of_the_first_four_etcd_workflows_is_the_same_with_later_workflows_in_the_matrix():
    from tests.faults.workflows import CI_WORKFLOWS, ORDER
    first = ORDER[:4]
    steps = {"etcd-install": 49, "etcd-upgrade": 18, "etcd-members-add": 40, "etcd-members-remove": 7}
    later = {w: 20 + i for i, w in enumerate(ORDER) if w not in steps}
    assert later and list(steps) == first == CI_WORKFLOWS["etcd"][:4]
    for seed in (958594, 1, 2):
        before = select(matrix(steps, seed), workflows=first, kind=None, sample=4, seed=seed)
        after = select(matrix(steps | later, seed), workflows=first, kind=None, sample=4, seed=seed)
        assert after == before and len(before) == 4
        grown = select(matrix(steps | later, seed), workflows=CI_WORKFLOWS["etcd"], kind=None, sample=6, seed=seed)
        assert grown[:4] == before and len(grown) == 6


def test_ci_s_sample_names_every_workflow_once_across_its_two_labs():
    from tests.faults.workflows import CI_WORKFLOWS, ORDER
    assert sorted(w for ws in CI_WORKFLOWS.values() for w in ws) == sorted(ORDER)
    assert CI_WORKFLOWS["k8s"] == ["up", "upgrade", "reset", "up-add"]


def test_a_workflow_needs_the_references_that_save_its_start_state():
    assert needed(["etcd-members-remove"]) == ["etcd-install", "etcd-members-add", "etcd-members-remove"]
    assert needed(["etcd-install"]) == ["etcd-install"]
    assert needed(["etcd-rotate-ca", "etcd-install"]) == ["etcd-install", "etcd-rotate-ca"]
    assert needed(["etcd-restore"]) == ["etcd-install", "etcd-restore"]  # its backup is taken from etcd34


def _journal(tmp_path: Path, records: list[dict]) -> Path:
    run = tmp_path / "runs" / "20261206T000000Z-etcd-upgrade"
    run.mkdir(parents=True)
    (run / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"torn')
    return tmp_path / "runs"


def test_a_resumed_journal_splits_into_the_attempts_of_each_process(tmp_path):
    runs = _journal(tmp_path, [
        {"type": "start", "pid": 100, "workflow": "etcd upgrade"},
        {"type": "step", "step": "A/etcd-1/install-1", "status": "done"},
        {"type": "end", "outcome": "interrupted"},
        {"type": "resume", "pid": 200},
        {"type": "step", "step": "A/etcd-2/install-2", "status": "done"},
    ])
    _, first = journals.attempt(runs, 100)
    _, second = journals.attempt(runs, 200)
    assert journals.done_ids(first) == {"A/etcd-1/install-1"} and journals.ended(first) == "interrupted"
    assert journals.done_ids(second) == {"A/etcd-2/install-2"} and journals.ended(second) is None
    assert journals.attempt(runs, 300) == (None, [])


def test_only_unguarded_steps_done_by_both_attempts_count_as_repeated(tmp_path):
    ids = ["P/etcd-1/restart-etcd-1a2b", "P/etcd-1/gate-healthy-9f", "P/etcd-1/check-x", "P/etcd-2/put-x",
           "P/etcd-2/reload-systemd-aa", "P/local/snapshot"]
    first = [{"type": "step", "step": s, "status": "done"} for s in ids]
    second = [{"type": "step", "step": s, "status": "done"} for s in ids]
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "kubeforge.log").write_text(
        "2026-12-06 DEBUG [etcd-2] P/etcd-2/reload-systemd-aa: start Reload systemd: sudo systemctl daemon-reload  (unless: sudo test x)\n"
        "2026-12-06 DEBUG [etcd-1] P/etcd-1/restart-etcd-1a2b: start Restart etcd: sudo systemctl restart etcd\n")
    guarded = journals.guarded_steps(tmp_path / "runs")
    assert guarded == {"P/etcd-2/reload-systemd-aa"}
    assert journals.repeated(first, second, always_run={"P/etcd-1/check-x"}, guarded=guarded) == [
        "P/etcd-1/restart-etcd-1a2b", "P/local/snapshot"]


def test_only_a_gap_longer_than_five_seconds_after_the_first_answer_is_a_lost_quorum():
    w = QuorumWatcher.__new__(QuorumWatcher)
    w.samples = [(0.0, False), (9.0, False), (10.0, True), (11.0, False), (12.5, True), (20.0, False), (26.0, False)]
    assert w.gaps() == [1.5, 6.0]
    assert w.losses() == [6.0]


def test_the_last_line_adds_up_every_point():
    a, b = Outcome(Point("etcd-upgrade", "sigint", 3)), Outcome(Point("etcd-install", "power", 2))
    a.converged, b.quorum_losses, b.lost_writes, b.repeated = True, [7.0, 9.0], 3, ["x"]
    assert summary_line([a, b]) == "faults: 2 points, 1 converged, 2 quorum losses, 3 lost writes, 1 repeated steps"


def test_a_case_line_says_where_its_seconds_went_stage_by_stage(monkeypatch):
    from tests.faults import harness

    clock = iter([100.0, 108.0, 120.0, 120.5])
    monkeypatch.setattr(harness.time, "monotonic", lambda: next(clock))
    o = Outcome(Point("upgrade", "sigint", 8))
    stage = harness.StageClock(o.stages)
    stage("restore")
    stage("faulted")
    stage("restore")  # a stage met twice adds up
    assert o.stages == {"restore": 8.5, "faulted": 12.0}
    assert o.line().splitlines()[-1] == "    seconds: restore 8, faulted 12"


# A stand-in for kubeforge in the checks' commands (a real process each): a second's work, a journal
# of its own under the operator's runs dir naming its first argument, and what it finds to say
_NOOP_STANDIN = """
import json, os, sys, time
time.sleep(1.5)
run = os.path.join(sys.argv[1], str(os.getpid()))
os.makedirs(run)
with open(os.path.join(run, "journal.jsonl"), "w") as f:
    f.write(json.dumps({"type": "start", "pid": os.getpid()}) + "\\n")
    f.write(json.dumps({"type": "step", "step": "P/cp-1/check-" + sys.argv[2], "status": "done"}) + "\\n")
print({"upgrade": "nothing to do: every node already runs 1.34.2", "plan": "Plan up: 3 steps"}[sys.argv[2]])
"""


def test_the_nothing_to_do_commands_run_side_by_side_each_judged_and_logged_as_its_own(tmp_path, monkeypatch):
    import sys
    import time

    from tests.faults import harness
    from tests.faults.workflows import WORKFLOWS

    flab = harness.FaultLab.__new__(harness.FaultLab)
    flab.work = tmp_path / "operator"
    runs = flab.work / ".kubeforge" / "lab0" / "runs"
    runs.mkdir(parents=True)
    monkeypatch.setattr(harness, "kubeforge_argv", lambda *a: [sys.executable, "-c", _NOOP_STANDIN, str(runs), *a])
    wf = WORKFLOWS["upgrade"]  # `upgrade --to 1.34.2`, then `plan up` with the inventory at 1.34.2
    t = time.monotonic()
    failing, always = flab.noops_failing(wf, tmp_path / "case")
    assert time.monotonic() - t < 2.6  # 1.5 s each: side by side, not 3 s one after the other
    assert always == {"P/cp-1/check-upgrade"}  # from the workflow's own command, not from `plan up`
    assert len(failing) == 1 and failing[0].startswith("`plan up` (inventory k8s-1.34.2) did not find nothing to do")
    assert (tmp_path / "case/noop-1.log").read_text().startswith("$ kubeforge upgrade --to 1.34.2\n")
    assert (tmp_path / "case/noop-2.log").read_text() == "$ kubeforge plan up\nPlan up: 3 steps\n"


def _k8s_inventories(tmp_path: Path) -> dict:
    """Each inventory of the Kubernetes lab as the harness writes it, loaded by kubeforge."""
    from ruamel.yaml import YAML

    from kubeforge.inventory import load_cluster
    from tests.faults.harness import shaped_inventory
    from tests.faults.workflows import SHAPES
    from tests.lab.inventory import render_inventory
    from tests.lab.layout import layout

    shape = SHAPES["k8s"]
    specs = layout(list(shape.machines), persistent=shape.names)
    assert all(s.persistent for s in specs)  # every state is a saved disk
    (tmp_path / "key").write_text("k")
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "cni.yaml").write_text("c")
    text = render_inventory(cluster_name="faults", machines=[(s, f"10.9.0.{10 + i}") for i, s in enumerate(specs, 1)],
                            key_file=tmp_path / "key", known_hosts=tmp_path / "known_hosts",
                            mirror_url="http://10.9.0.1:8080", kubernetes_version=shape.kubernetes_version,
                            endpoint_mode=shape.endpoint_mode, vip="10.9.0.250")
    out = {}
    for name, hosts, kube, without in shape.inventories:
        yaml = YAML()
        path = tmp_path / f"{name}.yaml"
        with path.open("w") as f:
            yaml.dump(shaped_inventory(yaml.load(text), list(hosts), kube, without), f)
        out[name] = load_cluster(path)
    return out


def test_the_kubernetes_lab_is_two_control_planes_two_workers_external_etcd_and_an_ha_endpoint(tmp_path):
    from tests.faults.workflows import KUBE_FROM, KUBE_TO, SHAPES

    clusters = _k8s_inventories(tmp_path)
    for name in ("k8s", f"k8s-{KUBE_TO}"):
        c = clusters[name]
        assert str(c.endpoint.mode) == "haproxy" and [h.name for h in c.load_balancers] == ["lb-1"]
        assert [h.name for h in c.control_planes] == ["cp-1", "cp-2"] and c.first_control_plane.name == SHAPES["k8s"].first
        assert [h.name for h in c.workers] == ["worker-1", "worker-2"]
        assert sorted(h.name for h in c.etcd_members) == sorted(SHAPES["k8s"].etcd)
    assert (str(clusters["k8s"].kubernetes_version), str(clusters[f"k8s-{KUBE_TO}"].kubernetes_version)) == (KUBE_FROM, KUBE_TO)
    # `up` adding nodes: the same cluster with a control plane and a worker more
    added = clusters["k8s-add"]
    assert [h.name for h in added.control_planes] == ["cp-1", "cp-2", "cp-3"]
    assert [h.name for h in added.workers] == ["worker-1", "worker-2", "worker-3"]
    assert sorted(h.name for h in added.etcd_members) == sorted(SHAPES["k8s"].etcd)


def test_upgrade_needs_the_reference_up_that_saves_its_converged_cluster_and_is_interrupted_at_every_boundary():
    from tests.faults.workflows import WORKFLOWS

    assert needed(["upgrade"]) == ["up", "upgrade"]
    assert needed(["reset", "up-add"]) == ["up", "reset", "up-add"]
    assert WORKFLOWS["upgrade"].baseline == WORKFLOWS["up"].saves == "k8s133"
    full = matrix({"upgrade": 12}, seed=3)
    assert sorted(p.after for p in full if p.kind == "sigint") == list(range(1, 12))
    assert all(0 < p.after < 12 for p in full) and not any(p.label for p in full)


def test_a_converged_kubernetes_workflow_must_leave_nothing_for_up_or_the_same_upgrade():
    from tests.faults.workflows import KUBE_TO, SHAPES, WORKFLOWS

    inventories = {name: kube for name, _, kube, _ in SHAPES["k8s"].inventories}
    up, upgrade = WORKFLOWS["up"], WORKFLOWS["upgrade"]
    assert [(n.args, n.yes) for n in up.noops] == [(("up",), True), (("plan", "up"), False)]
    assert [n.args for n in upgrade.noops] == [("upgrade", "--to", KUBE_TO), ("plan", "up")]
    # `plan up` after the upgrade reads an inventory already at the new version, which the lab writes
    assert inventories[upgrade.noops[1].inventory] == KUBE_TO == upgrade.kube_version
    assert inventories[upgrade.inventory] == up.kube_version != KUBE_TO


def test_the_end_of_a_kubernetes_workflow_is_every_node_ready_at_its_version_none_cordoned_no_violation():
    from tests.faults.harness import kube_end_wanted, victim
    from tests.faults.workflows import SHAPES, WORKFLOWS

    want = kube_end_wanted(WORKFLOWS["upgrade"])
    assert set(want["nodes"]) == {"cp-1", "cp-2", "worker-1", "worker-2"} and want["simulator violations"] == []
    assert {tuple(v.values()) for v in want["nodes"].values()} == {(True, "v1.34.2", False)}
    added = kube_end_wanted(WORKFLOWS["up-add"])
    assert set(added["nodes"]) == {"cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"}
    assert {tuple(v.values()) for v in added["nodes"].values()} == {(True, "v1.33.5", False)}
    # a step on the operator's machine: ssh-cut and power hit the first control plane (it holds the lock)
    assert victim("local", SHAPES["k8s"].first) == "cp-1" and victim("worker-2", "cp-1") == "worker-2"
    assert victim("local") == "etcd-1"


def test_a_sample_over_both_labs_is_split_by_workflows_and_one_lab_gets_the_whole_sample():
    from tests.faults.__main__ import share
    etcd4 = ["etcd-install", "etcd-upgrade", "etcd-members-add", "etcd-members-remove"]

    assert share(4, etcd4, "etcd") == 4  # one lab selected: the whole sample is its own
    assert share(4, ["upgrade"], "k8s") == 4 and share(None, ["upgrade"], "k8s") is None
    assert share(8, [*etcd4, "up", "upgrade"], "etcd") == 5
    assert share(8, [*etcd4, "up", "upgrade"], "k8s") == 3
    assert share(1, ["etcd-install", "upgrade"], "k8s") == 1


def _bar(steps: dict[str, int], seed: int) -> list[Point]:
    """The bar as ``--bar`` draws it: the etcd lab's part, then the Kubernetes lab's, which is given
    what the bar still lacks of BAR_POINTS."""
    from tests.faults.points import BAR_POINTS, bar
    from tests.faults.workflows import WORKFLOWS

    etcd = bar(matrix({w: n for w, n in steps.items() if WORKFLOWS[w].shape == "etcd"}, seed), seed)
    k8s = bar(matrix({w: n for w, n in steps.items() if WORKFLOWS[w].shape == "k8s"}, seed), seed, BAR_POINTS - len(etcd))
    return etcd + k8s


def _bar_holds(chosen: list[Point], steps: dict[str, int]) -> list[Point]:
    """What the bar must hold whatever the step counts; the points beside the upgrades' SIGINT ones."""
    for wf in ("upgrade", "etcd-upgrade"):
        assert sorted(p.after for p in chosen if p.workflow == wf and p.kind == "sigint" and not p.label) == list(range(1, steps[wf]))
    assert sum(p.label == MIXED_VERSION for p in chosen) == 1
    assert len(chosen) >= 100 and len(set(chosen)) == len(chosen)
    others = [p for p in chosen if p.workflow not in ("upgrade", "etcd-upgrade") or p.kind != "sigint"]
    assert {p.workflow for p in others} == set(steps)  # every workflow, the upgrades' other kinds too
    return others


def test_the_bar_is_every_upgrade_sigint_boundary_and_one_point_of_every_workflow_and_at_least_100():
    from tests.faults.workflows import ORDER

    # the step counts of session 9's references
    steps = {"etcd-install": 49, "etcd-upgrade": 18, "etcd-members-add": 40, "etcd-members-remove": 7,
             "etcd-rotate-ca": 112, "etcd-restore": 19, "up": 171, "upgrade": 80, "reset": 13, "up-add": 53}
    assert set(steps) == set(ORDER)
    chosen = _bar(steps, 11)
    others = _bar_holds(chosen, steps)
    assert len(others) == len(ORDER)  # 79 + 17 + 1 upgrade points and one of each workflow's others: 107
    assert _bar(steps, 11) == chosen and _bar(steps, 12) != chosen  # seeded


def test_the_bar_draws_more_points_only_while_it_has_fewer_than_100():
    steps = {"etcd-install": 49, "etcd-upgrade": 18, "etcd-members-add": 40, "etcd-members-remove": 7,
             "etcd-rotate-ca": 103, "etcd-restore": 19, "up": 90, "upgrade": 50, "reset": 13, "up-add": 40}
    chosen = _bar(steps, 11)
    _bar_holds(chosen, steps)
    assert len(chosen) == 100  # 49 + 17 + 1 and one of each workflow's others: 77, topped up by the last lab
