"""`certs rotate-ca --ca front-proxy`: the store's rotation (the new CA and each control plane's
front-proxy client written once; one CA's rotation at a time; only the CA handed to the store at the
end), what each phase puts on each control plane (checked with the real `openssl verify`), and the
phase plan as data (order, rolling, restarts behind haproxy, resume from the store's record)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.model import EtcdTopology
from kubeforge.model.cluster import EndpointMode
from kubeforge.pki import ca_rotation, crypto, ensure_pki
from kubeforge.pki.layout import front_proxy_files
from kubeforge.plan.certs.rotate_front_proxy import front_proxy_rotation_plan
from kubeforge.plan.steps import GateStep, LocalStep, PutFileStep, RunStep
from tests.factories import make_cluster
from tests.unit.test_certs_rotate_ca import verify as openssl_verifies

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PKI = "/etc/kubernetes/pki"
STEMS = ("TrustBothFrontProxyCAs", "ReissueFrontProxyClients", "DropOldFrontProxyCA")


@pytest.fixture(params=[EtcdTopology.EXTERNAL, EtcdTopology.STACKED], ids=["external-etcd", "stacked-etcd"])
def cluster(request, tmp_path: Path):
    c = make_cluster(tmp_path, topology=request.param)
    ensure_pki(c, now=NOW)
    return c


def kubeadms_client(old_ca) -> bytes:
    """What kubeadm issued on a control plane at init/join: front-proxy-client from the old CA."""
    key = crypto.generate_key("ecdsa-p256")
    cert = crypto.issue_leaf(crypto.LeafSpec(cn="front-proxy-client", usages=(crypto.CLIENT_AUTH,)), key, old_ca.cert,
                             crypto.load_key(old_ca.key_pem), days=3650, now=NOW)
    return crypto.cert_to_pem(cert)


def test_the_new_ca_and_each_control_planes_client_are_written_once_and_the_etcd_ca_is_left_alone(cluster):
    etcd_before = (cluster.pki_dir / "etcd" / "ca.crt").read_bytes()
    first = ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    assert isinstance(first, ca_rotation.FrontProxyRotation) and first.state.ca == "front-proxy"
    root = ca_rotation.rotation_dir(cluster, "front-proxy")
    assert root.name == "front-proxy-ca" and (root / "front-proxy-ca.key").stat().st_mode & 0o777 == 0o600
    assert sorted(first.clients) == ["cp-1", "cp-2", "cp-3"]
    again = ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    assert again.new_ca.cert_pem == first.new_ca.cert_pem
    assert {h: c.cert_pem for h, c in again.clients.items()} == {h: c.cert_pem for h, c in first.clients.items()}
    assert (cluster.pki_dir / "etcd" / "ca.crt").read_bytes() == etcd_before
    assert first.new_ca.cert.subject == first.old.front_proxy_ca.cert.subject  # kubeadm's CN, front-proxy-ca


def test_one_cas_rotation_at_a_time_and_nothing_else_issues_from_the_store_meanwhile(tmp_path):
    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    with pytest.raises(SafetyRefusal, match=r"rotation of the front-proxy CA is in progress \(0 of 3") as exc:
        ensure_pki(cluster, now=NOW)
    assert "--ca front-proxy" in exc.value.hint
    with pytest.raises(SafetyRefusal, match="rotation of the front-proxy CA is in progress"):
        ca_rotation.start(cluster, ca="etcd", now=NOW)
    assert not ca_rotation.rotation_dir(cluster, "etcd").exists()
    for n in (1, 2, 3):
        ca_rotation.record(cluster, n, "front-proxy")
    assert ca_rotation.commit(cluster, "front-proxy") is True
    ca_rotation.start(cluster, ca="etcd", now=NOW)  # the store is free again
    with pytest.raises(SafetyRefusal, match="rotation of the etcd CA is in progress"):
        ca_rotation.start(cluster, ca="front-proxy", now=NOW)


def test_every_phase_leaves_every_front_proxy_client_trusted_by_every_api_server(cluster, tmp_path):
    r = ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    old_client = kubeadms_client(r.old.front_proxy_ca)
    for phase in (1, 2, 3):
        files = {cp: {f.path: f.content for f in front_proxy_files(r.ca_for_phase(phase), r.client_for_phase(phase, cp))}
                 for cp in ("cp-1", "cp-2")}
        for cp, held in files.items():
            ca_file = held[f"{PKI}/front-proxy-ca.crt"]
            # the key beside the file is the first CA's: what kubeadm signs a renewed client with
            first = crypto.load_cert(ca_file)
            assert crypto.same_public_key(first, crypto.load_key(held[f"{PKI}/front-proxy-ca.key"]))
            # what either API server may show at this point: its own client, or the other's
            shown = [held.get(f"{PKI}/front-proxy-client.crt", old_client) for held in files.values()]
            if phase < 3:
                shown.append(old_client)  # a control plane not yet at this phase still shows kubeadm's
            assert all(openssl_verifies(tmp_path, ca_file, leaf) for leaf in shown), (phase, cp)
        assert (f"{PKI}/front-proxy-client.crt" in files["cp-1"]) == (phase > 1)
    # once the old CA is dropped, the client kubeadm issued from it is no longer trusted
    assert not openssl_verifies(tmp_path, r.ca_for_phase(3).cert_pem, old_client)
    assert openssl_verifies(tmp_path, r.ca_for_phase(3).cert_pem, r.clients["cp-2"].cert_pem)


def test_the_commit_hands_the_store_the_new_front_proxy_ca_alone(cluster):
    r = ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    before = {p: p.read_bytes() for p in cluster.pki_dir.rglob("*")
              if p.is_file() and "rotation" not in p.parts and not p.name.startswith("front-proxy-ca")}
    with pytest.raises(Exception, match="still trusted on the hosts"):
        ca_rotation.commit(cluster, "front-proxy")
    for n in (1, 2, 3):
        ca_rotation.record(cluster, n, "front-proxy")
    assert ca_rotation.commit(cluster, "front-proxy") is True
    assert ca_rotation.commit(cluster, "front-proxy") is False
    assert (cluster.pki_dir / "front-proxy-ca.crt").read_bytes() == r.new_ca.cert_pem
    assert (cluster.pki_dir / "front-proxy-ca.key").read_bytes() == r.new_ca.key_pem
    assert not (cluster.pki_dir / "front-proxy-client").exists()  # kubeadm's on the hosts, not the store's
    assert {p: p.read_bytes() for p in before} == before  # etcd and cluster CAs, sa keys: untouched
    again = ensure_pki(cluster, now=NOW)
    assert [c for c in again.changes if c.action != "unchanged"] == []


def plan_for(cluster, r, phases_done: int, apiservers=("cp-1", "cp-2"), not_set_up=("cp-3",)):
    files = {n: {cp: front_proxy_files(r.ca_for_phase(n), r.client_for_phase(n, cp)) for cp in apiservers}
             for n in (1, 2, 3)}
    recorded: list[int] = []
    plan = front_proxy_rotation_plan(cluster, phases_done=phases_done, apiservers=list(apiservers), files=files,
                                     record=lambda n: lambda: recorded.append(n), not_set_up=list(not_set_up))
    return plan, recorded


def test_the_plan_rolls_the_control_planes_one_at_a_time_in_each_phase_and_records_it(cluster):
    r = ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    plan, recorded = plan_for(cluster, r, 0)
    assert [p.name for p in plan.phases] == ["FrontProxyNotSetUp", *(
        name for stem in STEMS for name in (f"{stem}OnApiServers", f"Record{stem}"))]
    assert "cp-3" in plan.phases[0].title
    by_name = {p.name: p for p in plan.phases}
    puts = {}
    for stem in STEMS:
        api = by_name[f"{stem}OnApiServers"]
        assert api.strategy.kind == "rolling" and [lane.host for lane in api.lanes] == ["cp-1", "cp-2"]
        for lane in api.lanes:
            restart = next(i for i, s in enumerate(lane.steps) if isinstance(s, RunStep) and s.key == "restart-apiserver")
            # every file before the one restart; the node's API ready after it
            assert all(isinstance(s, PutFileStep) or s.title == "Swap in each new certificate with its key"
                       or s.key == "record-applied-certs" for s in lane.steps[:restart])
            # what each phase places is recorded in applied.json before the restart
            assert sum(s.key == "record-applied-certs" for s in lane.steps) == 1
            assert isinstance(lane.steps[-1], GateStep) and "ready" in lane.steps[-1].title
            puts[(stem, lane.host)] = {s.file.path.removesuffix(".kubeforge-next") for s in lane.steps
                                       if isinstance(s, PutFileStep)}
        by_name[f"Record{stem}"].lanes[0].steps[0].fn()
    assert recorded == [1, 2, 3]
    assert puts[(STEMS[0], "cp-1")] == {f"{PKI}/front-proxy-ca.crt", f"{PKI}/front-proxy-ca.key"}
    assert puts[(STEMS[1], "cp-2")] == {f"{PKI}/front-proxy-ca.crt", f"{PKI}/front-proxy-ca.key",
                                        f"{PKI}/front-proxy-client.crt", f"{PKI}/front-proxy-client.key"}
    # nothing of etcd, nothing of the cluster CA
    assert all(p.startswith(f"{PKI}/front-proxy-") for paths in puts.values() for p in paths)
    ids = [s.id for p in plan.phases for lane in p.lanes for s in lane.steps]
    assert len(ids) == len(set(ids))  # the journal tells every step apart
    assert "PRIVATE KEY" not in json.dumps(plan.to_dict())


def test_behind_haproxy_each_restart_is_drained_and_the_endpoint_answers_before_the_next(tmp_path):
    cluster = make_cluster(tmp_path, n_lb=2, endpoint_mode=EndpointMode.HAPROXY)
    ensure_pki(cluster, now=NOW)
    r = ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    plan, _ = plan_for(cluster, r, 0, apiservers=("cp-1", "cp-2", "cp-3"), not_set_up=())
    lane = next(p for p in plan.phases if p.name == "TrustBothFrontProxyCAsOnApiServers").lanes[0]
    titles = [s.title for s in lane.steps]
    restart = next(i for i, s in enumerate(lane.steps) if isinstance(s, RunStep) and s.key == "restart-apiserver")
    assert sum(t.startswith("Drain") for t in titles[:restart]) == 2
    assert sum(t.startswith("Re-enable") for t in titles[restart:]) == 2
    assert titles[-1].startswith("Wait for the API at"), titles


def test_phases_the_store_records_as_done_are_planned_as_done(cluster):
    r = ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    plan, _ = plan_for(cluster, r, 2)
    assert [p.name for p in plan.phases if not p.is_noop] == [
        "FrontProxyNotSetUp", "DropOldFrontProxyCAOnApiServers", "RecordDropOldFrontProxyCA"]
    done = [p for p in plan.phases if p.is_noop]
    assert [p.name for p in done] == ["TrustBothFrontProxyCAs", "ReissueFrontProxyClients"]
    assert all("store records phase" in p.reason for p in done)
    plan, _ = plan_for(cluster, r, 3)
    assert [p.name for p in plan.phases if not p.is_noop] == ["FrontProxyNotSetUp", "RecordDropOldFrontProxyCA"]
    # the store's record says which phase: the record step of a done phase is the commit alone
    assert isinstance(plan.phases[-1].lanes[0].steps[0], LocalStep)


def test_the_last_phase_records_the_new_ca_pair_in_applied_json_as_up_would_render_it(tmp_path):
    """Run with the real bash and sed on a record kubeforge rendered: afterwards it is the record `up`
    renders from the committed store (so `up` rewrites nothing), and the step's guard says so."""
    from kubeforge.model.versions import Version
    from kubeforge.pki.layout import host_files
    from kubeforge.render.record import RECORD_PATH, render_record

    cluster = make_cluster(tmp_path)
    ensure_pki(cluster, now=NOW)
    r = ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    plan, _ = plan_for(cluster, r, 2)
    lane = next(p for p in plan.phases if p.name == "DropOldFrontProxyCAOnApiServers").lanes[0]
    step = next(s for s in lane.steps if s.key == "record-applied-certs")
    assert isinstance(step, RunStep)
    host = cluster.host(lane.host)
    version = Version.parse("1.34.2")
    before = render_record(cluster.name, version, host, host_files(cluster, r.old, host))
    after_commit = host_files(cluster, r.old.__class__(**{**r.old.__dict__, "front_proxy_ca": r.new_ca}), host)
    wanted = json.loads(render_record(cluster.name, version, host, after_commit).content)
    record = tmp_path / "applied.json"
    record.write_bytes(before.content)

    def run(cmd) -> int:
        script = cmd.script.replace(RECORD_PATH, str(record))
        return subprocess.run(["bash", "-c", script], capture_output=True).returncode

    assert run(step.unless) != 0  # not recorded yet
    assert run(step.command) == 0
    assert json.loads(record.read_text()) == wanted
    assert run(step.unless) == 0 and run(step.command) == 0  # idempotent
    assert json.loads(record.read_text()) == wanted
    record.unlink()
    assert run(step.unless) == 0 and run(step.command) == 0 and not record.exists()  # no record: left so


def found_on(cluster, *names: str) -> dict:
    """What `certs check`'s read finds: the front-proxy CA file on the named control planes only."""
    from kubeforge.pki.hostcerts import HostCert

    return {h.name: [HostCert(h.name, f"{PKI}/front-proxy-ca.crt", "CN=front-proxy-ca", "CN=front-proxy-ca", NOW, (), "x")]
                    if h.name in names else [] for h in cluster.hosts}


def test_the_workflow_rotates_the_control_planes_set_up_and_a_dry_run_writes_nothing(tmp_path, monkeypatch):
    from kubeforge.workflows import certs as certs_workflow
    from kubeforge.workflows.certs_rotate import plan_rotate_ca

    cluster = make_cluster(tmp_path, topology=EtcdTopology.STACKED)
    ensure_pki(cluster, now=NOW)
    monkeypatch.setattr(certs_workflow, "read_hosts", lambda c, pool: (found_on(c, "cp-1", "cp-2"), []))
    monkeypatch.setattr("kubeforge.facts.haproxy_drains.read_drained", lambda c, pool: {})
    kept = {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()}
    dry = plan_rotate_ca(cluster, None, ca="front-proxy", write_store=False, now=NOW)
    assert {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()} == kept  # nothing written
    assert not list(cluster.state_dir.glob(".rotate-ca-dry-run-*"))  # the scratch CA is gone
    live = plan_rotate_ca(cluster, None, ca="front-proxy", now=NOW)
    for plan in (dry, live):
        warn = plan.phases[0]
        assert warn.name == "FrontProxyNotSetUp" and "cp-3" in warn.title
        rolled = next(p for p in plan.phases if p.name == "TrustBothFrontProxyCAsOnApiServers")
        assert [lane.host for lane in rolled.lanes] == ["cp-1", "cp-2"]
    assert ca_rotation.read_state(cluster, "front-proxy").phases_done == 0
    # a second run plans from the store's record: the same new CA, so the same files (step ids)
    again = plan_rotate_ca(cluster, None, ca="front-proxy", now=NOW)
    assert [s.id for p in again.phases for lane in p.lanes for s in lane.steps] == \
           [s.id for p in live.phases for lane in p.lanes for s in lane.steps]
