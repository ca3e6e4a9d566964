"""`certs rotate-ca --ca etcd`: the store's rotation state (the new CA written once, never again;
phases recorded; the new set handed to the store at the end; nothing else may issue meanwhile),
what each phase puts on the hosts (checked with the real `openssl verify`), and the phase plan as
data."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeforge.errors import SafetyRefusal, UsageError
from kubeforge.model import EtcdTopology
from kubeforge.pki import ca_rotation, ensure_pki, load_pki
from kubeforge.pki.layout import host_files
from kubeforge.pki.store import PkiStoreError
from kubeforge.plan.certs.rotate import APISERVER_ETCD_CA, is_apiserver_file, rotation_plan
from kubeforge.plan.steps import GateStep, LocalStep, PutFileStep, RunStep
from kubeforge.workflows.certs_rotate import NotSupportedYet, check_ca
from kubeforge.workflows.etcd.common import etcd_pki_files
from tests.factories import make_cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def cluster(tmp_path: Path):
    c = make_cluster(tmp_path)
    ensure_pki(c, now=NOW)
    return c


def store_bytes(cluster) -> dict[str, bytes]:
    return {str(p.relative_to(cluster.pki_dir)): p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()}


def verify(tmp_path: Path, ca_pem: bytes, leaf_pem: bytes) -> bool:
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf_pem)
    res = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")],
                         capture_output=True, text=True)
    return res.returncode == 0


def file_of(files, path: str) -> bytes:
    return next(f.content for f in files if f.path == path)


def test_the_new_ca_is_written_before_planning_and_never_generated_again(cluster):
    first = ca_rotation.start(cluster, now=NOW)
    assert first.state.phases_done == 0
    assert first.new.etcd_ca.cert_pem != first.old.etcd_ca.cert_pem
    root = ca_rotation.rotation_dir(cluster)
    assert (root / "etcd/ca.key").stat().st_mode & 0o777 == 0o600
    assert root.stat().st_mode & 0o777 == 0o700
    kept = store_bytes(cluster)
    again = ca_rotation.start(cluster, now=NOW)
    assert again.new.etcd_ca.cert_pem == first.new.etcd_ca.cert_pem
    assert again.new.etcd_server("etcd-2").cert_pem == first.new.etcd_server("etcd-2").cert_pem
    assert store_bytes(cluster) == kept  # a second start writes nothing


def test_a_rotation_planned_in_a_scratch_directory_leaves_the_store_as_it_was(cluster, tmp_path):
    kept = store_bytes(cluster)
    scratch = tmp_path / "scratch"
    r = ca_rotation.start(cluster, root=scratch, now=NOW)
    assert r.new.etcd_ca.cert_pem != r.old.etcd_ca.cert_pem and (scratch / "etcd/ca.key").is_file()
    assert store_bytes(cluster) == kept and not ca_rotation.rotation_dir(cluster).exists()
    ensure_pki(cluster, now=NOW)  # no rotation under way


def test_a_rotation_refuses_a_new_ca_file_it_did_not_record(cluster):
    ca_rotation.start(cluster, now=NOW)
    root = ca_rotation.rotation_dir(cluster)
    (root / "etcd/ca.crt").unlink()
    with pytest.raises(PkiStoreError, match="never generates a rotation's new CA twice"):
        ca_rotation.start(cluster, now=NOW)


def test_every_phase_leaves_each_leaf_trusted_by_whoever_checks_it(cluster, tmp_path):
    r = ca_rotation.start(cluster, now=NOW)
    m = cluster.host("etcd-1")
    old_ca, new_ca = r.old.etcd_ca.cert_pem, r.new.etcd_ca.cert_pem
    for phase, leaves_from, trusts in ((1, old_ca, "both"), (2, new_ca, "both"), (3, new_ca, "new")):
        files = etcd_pki_files(cluster, r.bundle_for_phase(phase), m)
        ca_file = file_of(files, "/etc/etcd/pki/ca.crt")
        assert ca_file == (old_ca + new_ca if trusts == "both" else new_ca), phase
        for leaf in ("server", "peer", "healthcheck-client"):
            pem = file_of(files, f"/etc/etcd/pki/{leaf}.crt")
            assert verify(tmp_path, leaves_from, pem), (phase, leaf)
            assert verify(tmp_path, ca_file, pem), (phase, leaf)  # the phase's own trust accepts it
        cp_files = [f for f in host_files(cluster, r.bundle_for_phase(phase), cluster.host("cp-1"))
                    if is_apiserver_file(f.path)]
        assert sorted(f.path for f in cp_files) == [
            "/etc/kubernetes/pki/apiserver-etcd-client.crt", "/etc/kubernetes/pki/apiserver-etcd-client.key",
            APISERVER_ETCD_CA]
        assert file_of(cp_files, APISERVER_ETCD_CA) == ca_file
    # once the old CA is dropped, nothing the old CA signed is trusted
    assert not verify(tmp_path, new_ca, r.old.etcd_server("etcd-1").cert_pem)


def test_nothing_else_may_issue_from_the_store_until_the_rotation_is_committed(cluster):
    ca_rotation.start(cluster, now=NOW)
    with pytest.raises(SafetyRefusal, match=r"rotation of the etcd CA is in progress \(0 of 3"):
        ensure_pki(cluster, now=NOW)
    assert ca_rotation.record(cluster, 1) is True
    assert ca_rotation.record(cluster, 1) is False
    with pytest.raises(SafetyRefusal, match=r"\(1 of 3 phases done: both CAs trusted everywhere\)"):
        ensure_pki(cluster, now=NOW)
    load_pki(cluster)  # reading (certs check) is still allowed
    with pytest.raises(PkiStoreError, match="still trusted on the hosts"):
        ca_rotation.commit(cluster)


def test_the_commit_hands_the_store_the_new_set_and_is_idempotent(cluster, tmp_path):
    r = ca_rotation.start(cluster, now=NOW)
    sa_before = (cluster.pki_dir / "sa.key").read_bytes()
    kube_ca_before = (cluster.pki_dir / "ca.crt").read_bytes()
    for n in (1, 2, 3):
        ca_rotation.record(cluster, n)
    state = json.loads((ca_rotation.rotation_dir(cluster) / "state.json").read_text())
    assert state["phasesDone"] == 3
    assert ca_rotation.commit(cluster) is True
    assert not ca_rotation.rotation_dir(cluster).exists()
    assert ca_rotation.commit(cluster) is False
    after = ensure_pki(cluster, now=NOW)  # allowed again, and nothing needs re-issuing
    assert [c for c in after.changes if c.action != "unchanged"] == []
    b = after.bundle
    assert b.etcd_ca.cert_pem == r.new.etcd_ca.cert_pem
    assert b.apiserver_etcd_client.cert_pem == r.new.apiserver_etcd_client.cert_pem
    assert verify(tmp_path, b.etcd_ca.cert_pem, b.etcd_peer("etcd-3").cert_pem)
    # service-account keys and the other CAs are left alone
    assert (cluster.pki_dir / "sa.key").read_bytes() == sa_before
    assert (cluster.pki_dir / "ca.crt").read_bytes() == kube_ca_before


def test_a_store_changed_under_a_rotation_is_refused(cluster):
    ca_rotation.start(cluster, now=NOW)
    other = make_cluster(cluster.source.parent / "other")
    ensure_pki(other, now=NOW)
    for name in ("ca.crt", "ca.key"):
        (cluster.pki_dir / "etcd" / name).write_bytes((other.pki_dir / "etcd" / name).read_bytes())
    with pytest.raises(PkiStoreError, match="not the CA this rotation started from"):
        ca_rotation.start(cluster, now=NOW)


def test_the_etcd_ca_of_external_etcd_the_front_proxy_and_the_kubernetes_ca_are_rotated_stacked_etcds_is_refused(
        tmp_path):
    external = make_cluster(tmp_path)
    stacked = make_cluster(tmp_path, topology=EtcdTopology.STACKED)
    check_ca(external, "etcd")
    check_ca(external, "front-proxy")
    check_ca(stacked, "front-proxy")  # etcd is not touched: its topology does not matter
    for cluster in (external, stacked):
        check_ca(cluster, "kubernetes")
    with pytest.raises(NotSupportedYet, match="stacked etcd") as exc:
        check_ca(stacked, "etcd")
    assert exc.value.exit_code == 7
    with pytest.raises(UsageError, match="--ca 'vault' is not one of etcd, kubernetes, front-proxy"):
        check_ca(external, "vault")


def plan_for(cluster, rotation, phases_done: int, apiservers=("cp-1", "cp-2")):
    members = [m.name for m in cluster.etcd_members]
    mf = {n: {m: etcd_pki_files(cluster, rotation.bundle_for_phase(n), cluster.host(m)) for m in members}
          for n in (1, 2, 3)}
    af = {n: {cp: [f for f in host_files(cluster, rotation.bundle_for_phase(n), cluster.host(cp))
                   if is_apiserver_file(f.path)] for cp in apiservers} for n in (1, 2, 3)}
    recorded: list[int] = []
    plan = rotation_plan(cluster, phases_done=phases_done, members=members, apiservers=list(apiservers),
                         member_files=mf, apiserver_files=af, config_files={m: [] for m in members},
                         record=lambda n: lambda: recorded.append(n), not_set_up=["cp-3"])
    return plan, recorded


def test_the_plan_rolls_members_then_api_servers_in_each_phase_and_records_it(cluster):
    r = ca_rotation.start(cluster, now=NOW)
    plan, recorded = plan_for(cluster, r, 0)
    assert [p.name for p in plan.phases] == [
        "ControlPlanesNotSetUp",
        "TrustBothCAsOnMembers", "TrustBothCAsOnApiServers", "RecordTrustBothCAs",
        "ReissueLeavesOnMembers", "ReissueLeavesOnApiServers", "RecordReissueLeaves",
        "DropOldCAOnMembers", "DropOldCAOnApiServers", "RecordDropOldCA",
    ]
    assert "cp-3" in plan.phases[0].title
    by_name = {p.name: p for p in plan.phases}
    for stem in ("TrustBothCAs", "ReissueLeaves", "DropOldCA"):
        members = by_name[f"{stem}OnMembers"]
        assert members.strategy.kind == "rolling"
        assert [lane.host for lane in members.lanes] == ["etcd-1", "etcd-2", "etcd-3"]
        for lane in members.lanes:
            kinds = [type(s) for s in lane.steps]
            restart = next(i for i, s in enumerate(lane.steps) if isinstance(s, RunStep) and s.key == "restart-etcd")
            # files first (each certificate with its key swapped in by one step, then recorded in
            # applied.json), then one restart
            assert all(k is PutFileStep or s.title == "Swap in each new certificate with its key"
                       or s.key == "record-applied-certs"
                       for k, s in zip(kinds[:restart], lane.steps[:restart], strict=True))
            assert isinstance(lane.steps[-1], GateStep)
        api = by_name[f"{stem}OnApiServers"]
        assert [lane.host for lane in api.lanes] == ["cp-1", "cp-2"]
        assert all(isinstance(lane.steps[-1], GateStep) for lane in api.lanes)
        record = by_name[f"Record{stem}"].lanes[0].steps[0]
        assert isinstance(record, LocalStep)
        record.fn()
    assert recorded == [1, 2, 3]
    # what the members trust in each phase: both, both, the new CA alone
    ca_puts = [next(s.file.content for s in by_name[f"{stem}OnMembers"].lanes[0].steps
                    if isinstance(s, PutFileStep) and s.file.path == "/etc/etcd/pki/ca.crt")
               for stem in ("TrustBothCAs", "ReissueLeaves", "DropOldCA")]
    assert ca_puts == [r.trust_both, r.trust_both, r.new.etcd_ca.cert_pem]
    ids = [s.id for p in plan.phases for lane in p.lanes for s in lane.steps]
    assert len(ids) == len(set(ids))  # the journal tells every step apart
    assert "PRIVATE KEY" not in json.dumps(plan.to_dict())


def test_phases_the_store_records_as_done_are_planned_as_done(cluster):
    r = ca_rotation.start(cluster, now=NOW)
    plan, _ = plan_for(cluster, r, 2)
    names = [p.name for p in plan.phases if not p.is_noop]
    assert names == ["ControlPlanesNotSetUp", "DropOldCAOnMembers", "DropOldCAOnApiServers", "RecordDropOldCA"]
    done = [p for p in plan.phases if p.is_noop]
    assert [p.name for p in done] == ["TrustBothCAs", "ReissueLeaves"]
    assert all("store records phase" in p.reason for p in done)
    # all three recorded but the store not yet handed the new set: only that (idempotent) step is left
    plan, recorded = plan_for(cluster, r, 3)
    assert [p.name for p in plan.phases if not p.is_noop] == ["ControlPlanesNotSetUp", "RecordDropOldCA"]


@pytest.mark.parametrize(("inventory", "ca", "says"), [
    ("ha-stacked-haproxy.yaml", "etcd", "not supported yet: rotating the etcd CA of stacked etcd"),
])
def test_the_command_refuses_what_it_does_not_rotate_before_any_host_or_file(capsys, inventory, ca, says):
    from kubeforge.cli.app import run

    inv = Path(__file__).parents[2] / "inventories" / inventory
    state = inv.parent / ".kubeforge"
    existed = state.exists()
    code = run(["certs", "rotate-ca", "--ca", ca, "-i", str(inv)])
    err = capsys.readouterr().err
    assert code == 7 and says in err, err
    assert state.exists() == existed  # no run log, no store: nothing was written


def test_resume_after_the_rotation_was_committed_finds_nothing_to_resume_and_never_begins_the_next_one(
        capsys, tmp_path):
    # a signal during the last step (the store's commit) ends the run with exit 8 although the
    # rotation is done; --resume must not plan a new rotation under that run's journal (the fault
    # matrix's rotate-ca SIGTERM after step 93: it re-put every leaf from a third CA and skipped the
    # restarts as done earlier, leaving members serving certificates no client trusted)
    import shutil

    from kubeforge.cli.app import run

    inv = tmp_path / "ha-external-etcd.yaml"
    shutil.copy(Path(__file__).parents[2] / "inventories" / "ha-external-etcd.yaml", inv)
    code = run(["certs", "rotate-ca", "--ca", "etcd", "-i", str(inv), "--resume", "--yes"])
    out = capsys.readouterr()
    assert code == 0 and "nothing to resume" in out.out, out.out + out.err
    assert not list(tmp_path.glob(".kubeforge/*/pki/rotation/etcd-ca"))  # no new CA begun
