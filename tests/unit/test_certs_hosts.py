"""`certs check` reading the hosts: the probe script (run for real with bash and sed on a copy of a
host's files), its parser, the owner of each certificate and the comparison with the local store;
`certs renew`'s store re-issue and plan."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubeforge.facts.host_certs import probe_command
from kubeforge.model import EtcdTopology
from kubeforge.pki import ensure_pki, host_files, leaf_items
from kubeforge.pki.crypto import CLIENT_AUTH, LeafSpec, generate_key, issue_leaf
from kubeforge.pki.hostcerts import describe, parse_probe
from kubeforge.plan.certs.compare import compare, store_leaves_expiring
from kubeforge.plan.certs.renew import renew_plan, select
from kubeforge.workflows.etcd.common import etcd_pki_files
from tests.factories import make_cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def cluster(tmp_path: Path):
    c = make_cluster(tmp_path)
    ensure_pki(c, now=NOW)
    return c


def lay_out(root: Path, files) -> None:
    for f in files:
        p = root / f.path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f.content)


def run_probe(root: Path) -> str:
    """The probe's own script, run by bash with every absolute path moved under ``root``."""
    script = probe_command().script.replace(" /etc/", f" {root}/etc/").replace(" /var/", f" {root}/var/")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                          check=True).stdout


def test_the_probe_reads_certificates_and_kubeconfig_client_certs_but_never_a_key(cluster, tmp_path):
    bundle = ensure_pki(cluster, now=NOW).bundle
    cp = cluster.host("cp-1")
    root = tmp_path / "host"
    lay_out(root, host_files(cluster, bundle, cp))
    # kubeadm's files: a kubeconfig with an embedded client cert and key, the kubelet's cert+key pem
    client = bundle.apiserver_etcd_client
    (root / "etc/kubernetes/admin.conf").write_text(
        "users:\n- name: kubernetes-admin\n  user:\n"
        f"    client-certificate-data: {base64.b64encode(client.cert_pem).decode()}\n"
        f"    client-key-data: {base64.b64encode(client.key_pem).decode()}\n")
    (root / "var/lib/kubelet/pki").mkdir(parents=True)
    (root / "var/lib/kubelet/pki/kubelet-client-current.pem").write_bytes(client.cert_pem + client.key_pem)
    out = run_probe(root)
    assert "PRIVATE KEY" not in out and base64.b64encode(client.key_pem).decode()[:40] not in out
    found = {c.path.removeprefix(str(root)): c for c in parse_probe("cp-1", out)}
    assert set(found) == {"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/front-proxy-ca.crt",
                          "/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                          "/etc/kubernetes/admin.conf", "/var/lib/kubelet/pki/kubelet-client-current.pem"}
    admin = found["/etc/kubernetes/admin.conf"]
    assert admin.subject == "CN=kube-apiserver-etcd-client,O=system:masters" and admin.issuer == "CN=etcd-ca"
    assert admin.not_after == client.cert.not_valid_after_utc


def test_a_member_certificate_lists_its_sans_and_issuer(cluster):
    bundle = ensure_pki(cluster, now=NOW).bundle
    c = describe("etcd-1", "/etc/etcd/pki/server.crt", bundle.etcd_server("etcd-1").cert)
    assert {"etcd-1", "127.0.0.1", "localhost", *cluster.host("etcd-1").addresses} <= set(c.sans)
    assert c.issuer == "CN=etcd-ca" and c.days_left(NOW) == 365


def test_a_cut_short_or_garbled_answer_is_an_error_not_an_empty_host():
    with pytest.raises(ValueError, match="cut short"):
        parse_probe("etcd-1", "==> /etc/etcd/pki/server.crt\n-----BEGIN CERTIFICATE-----\nMII")
    bad = parse_probe("etcd-1", "==> /etc/etcd/pki/server.crt\nnot a pem\n@@end\n")
    assert len(bad) == 1 and bad[0].error.startswith("no readable certificate")


def host_view(cluster, bundle, host_name, replace=None):
    """What the probe would read on a host where kubeforge put the store's files (``replace``:
    path -> certificate found there instead)."""
    out = []
    for f in host_files(cluster, bundle, cluster.host(host_name)):
        if not f.path.endswith(".crt"):
            continue
        from cryptography import x509

        cert = (replace or {}).get(f.path) or x509.load_pem_x509_certificate(f.content)
        out.append(describe(host_name, f.path, cert))
    return out


def test_host_and_store_are_compared_file_by_file(cluster):
    bundle = ensure_pki(cluster, now=NOW).bundle
    other_key = generate_key("ecdsa-p256")
    stale = issue_leaf(LeafSpec(cn="etcd-1", usages=(CLIENT_AUTH,)), other_key, bundle.etcd_ca.cert,
                       generate_key("ecdsa-p256"), days=5, now=NOW)
    found = {"etcd-1": host_view(cluster, bundle, "etcd-1", {"/etc/etcd/pki/peer.crt": stale}),
             "etcd-2": [c for c in host_view(cluster, bundle, "etcd-2") if not c.path.endswith("server.crt")],
             "cp-1": host_view(cluster, bundle, "cp-1")}
    report = compare(cluster, bundle, found, within_days=30, now=NOW, unreachable=["etcd-3"])
    by = {(f.cert.host, f.cert.path): f for f in report.findings}
    peer = by[("etcd-1", "/etc/etcd/pki/peer.crt")]
    assert peer.store == "differs" and peer.expiring and str(peer.owner) == "store:etcd-peer/etcd-1"
    assert peer.store_not_after == bundle.etcd_peer("etcd-1").cert.not_valid_after_utc
    assert by[("etcd-1", "/etc/etcd/pki/server.crt")].store == "same"
    assert str(by[("etcd-1", "/etc/etcd/pki/ca.crt")].owner) == "ca:etcd-ca"
    assert str(by[("cp-1", "/etc/kubernetes/pki/apiserver-etcd-client.crt")].owner) == "store:apiserver-etcd-client"
    assert report.missing == (("etcd-2", "/etc/etcd/pki/server.crt"),)
    assert report.unreachable == ("etcd-3",)
    assert [f.cert.path for f in report.expiring] == ["/etc/etcd/pki/peer.crt"]
    assert any("etcd-2: /etc/etcd/pki/server.crt is missing" in d for d in report.differences)
    assert any("etcd-1: /etc/etcd/pki/peer.crt is not the certificate" in d for d in report.differences)


def test_renew_reissues_only_the_named_leaves_with_a_new_key_from_the_same_ca(cluster, tmp_path):
    before = ensure_pki(cluster, now=NOW).bundle
    later = NOW + timedelta(days=340)
    result = ensure_pki(cluster, now=later, renew=frozenset({"etcd-server/etcd-2", "etcd-peer/etcd-2"}))
    after = result.bundle
    assert sorted(c.item for c in result.changed) == ["etcd-peer/etcd-2", "etcd-server/etcd-2"]
    assert all(c.reason.startswith("renewed") for c in result.changed)
    assert after.etcd_server("etcd-2").key_pem != before.etcd_server("etcd-2").key_pem
    assert after.etcd_server("etcd-2").cert.not_valid_after_utc == later + timedelta(days=365)
    assert after.etcd_server("etcd-1").cert_pem == before.etcd_server("etcd-1").cert_pem
    assert after.etcd_ca.cert_pem == before.etcd_ca.cert_pem
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(after.etcd_server("etcd-2").cert_pem)
    at = str(int((later + timedelta(days=1)).timestamp()))
    ok = subprocess.run(["openssl", "verify", "-attime", at, "-CAfile", str(after.etcd_ca.path), str(leaf)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    with pytest.raises(ValueError, match="not leaf items"):
        ensure_pki(cluster, renew=frozenset({"etcd-ca"}))


def test_leaves_can_be_issued_with_a_validity_other_than_the_inventorys(cluster):
    items = frozenset(leaf_items(cluster))
    bundle = ensure_pki(cluster, now=NOW, renew=items, leaf_days=10).bundle
    assert sorted(store_leaves_expiring(bundle, within_days=30, now=NOW)) == sorted(items)
    assert bundle.etcd_ca.cert.not_valid_after_utc > NOW + timedelta(days=3000)  # CAs untouched


def test_renew_plans_only_members_with_expiring_leaves_one_at_a_time_each_gated(cluster):
    bundle = ensure_pki(cluster, now=NOW).bundle
    short = ensure_pki(cluster, now=NOW, renew=frozenset({"etcd-server/etcd-2", "etcd-peer/etcd-2"}),
                       leaf_days=10).bundle
    found = {h.name: host_view(cluster, short, h.name) for h in cluster.hosts}
    report = compare(cluster, short, found, within_days=30, now=NOW)
    sel = select(cluster, report)
    assert sel.members == ("etcd-2",) and sel.not_renewed == ()
    pki = {"etcd-2": etcd_pki_files(cluster, bundle, cluster.host("etcd-2"))}
    plan = renew_plan(cluster, sel, pki, {"etcd-2": []})
    phase, apiservers = plan.phases
    assert apiservers.name == "RenewControlPlanes" and apiservers.is_noop
    assert phase.strategy.kind == "rolling" and [lane.host for lane in phase.lanes] == ["etcd-2"]
    steps = phase.lanes[0].steps
    assert [s.kind for s in steps][-3:] == ["run", "put", "gate"]
    assert "systemctl restart etcd" in steps[-3].describe()
    staged = {s.file.path for s in steps if s.kind == "put"}
    assert staged >= {"/etc/etcd/pki/server.crt.kubeforge-next", "/etc/etcd/pki/peer.key.kubeforge-next"}
    swap = next(s for s in steps if s.title == "Swap in each new certificate with its key")
    assert steps.index(swap) < steps.index(steps[-3])  # every pair in place before the restart
    assert "etcd healthy on 3 members" in steps[-1].what
    assert "PRIVATE KEY" not in plan.render_text()
    every = select(cluster, report, renew_all=True)
    assert every.members == ("etcd-1", "etcd-2", "etcd-3")
    assert select(cluster, report, renew_all=True, hosts=["etcd-3"]).members == ("etcd-3",)


def test_what_renew_does_not_handle_is_named_in_the_plan(cluster):
    bundle = ensure_pki(cluster, now=NOW).bundle
    found = {"cp-1": host_view(cluster, bundle, "cp-1")}
    kubeadm_leaf = issue_leaf(LeafSpec(cn="kube-apiserver", usages=(CLIENT_AUTH,)), generate_key("ecdsa-p256"),
                              bundle.kube_ca.cert, generate_key("ecdsa-p256"), days=3, now=NOW)
    found["cp-1"].append(describe("cp-1", "/etc/kubernetes/pki/etcd/server.crt", kubeadm_leaf))
    report = compare(cluster, bundle, found, within_days=30, now=NOW)
    sel = select(cluster, report)
    assert sel.members == () and sel.kubeadm == ()
    assert len(sel.not_renewed) == 1 and "etcd/server.crt" in sel.not_renewed[0] and "kubeadm" in sel.not_renewed[0]
    plan = renew_plan(cluster, sel, {}, {})
    assert [p.name for p in plan.phases] == ["NotRenewed", "RenewEtcdMembers", "RenewControlPlanes"]
    assert plan.phases[1].is_noop and plan.phases[2].is_noop


def test_stacked_clusters_have_no_store_files_on_members_to_compare(tmp_path):
    c = make_cluster(tmp_path, topology=EtcdTopology.STACKED)
    bundle = ensure_pki(c, now=NOW).bundle
    found = {"cp-1": host_view(c, bundle, "cp-1")}
    report = compare(c, bundle, found, within_days=30, now=NOW)
    owners = {f.cert.path: str(f.owner) for f in report.findings}
    assert owners["/etc/kubernetes/pki/etcd/ca.crt"] == "ca:etcd-ca" and report.missing == ()



def local_pool(cluster, root: Path, reachable: set[str], monkeypatch):
    """Hosts in ``reachable`` are this machine (real bash and sed) reading the files under ``root``;
    the others refuse the connection."""
    import kubeforge.facts.host_certs as wf
    from kubeforge.errors import TransportError
    from kubeforge.transport.base import Command
    from kubeforge.transport.local import LocalTransport
    from kubeforge.transport.pool import TransportPool

    script = probe_command().script.replace(" /etc/", f" {root}/etc/").replace(" /var/", f" {root}/var/")
    monkeypatch.setattr(wf, "probe_command", lambda: Command(script=script, timeout=60))

    def factory(h):
        if h.name not in reachable:
            raise TransportError(h.name, "connection refused")
        return LocalTransport(host=h.name)

    return TransportPool(cluster, factory=factory)


def test_check_reads_the_hosts_it_reaches_and_names_the_others(cluster, tmp_path, monkeypatch):
    from kubeforge.workflows.certs import check

    bundle = ensure_pki(cluster, now=NOW).bundle
    root = tmp_path / "etcd-1"
    lay_out(root, host_files(cluster, bundle, cluster.host("etcd-1")))
    with local_pool(cluster, root, {"etcd-1"}, monkeypatch) as pool:
        result = check(cluster, pool, within_days=400, now=NOW)
    assert result.hosts.unreachable == tuple(sorted(h.name for h in cluster.hosts if h.name != "etcd-1"))
    paths = sorted(f.cert.path.removeprefix(str(root)) for f in result.hosts.findings)
    assert paths == ["/etc/etcd/pki/ca.crt", "/etc/etcd/pki/healthcheck-client.crt", "/etc/etcd/pki/peer.crt",
                     "/etc/etcd/pki/server.crt"]
    doc = result.to_json(cluster.name)
    assert doc["unreachable"] and all(h["host"] == "etcd-1" for h in doc["hosts"])
    assert {h["path"].rsplit("/", 1)[1] for h in doc["hosts"] if h["expiring"]} == {
        "healthcheck-client.crt", "peer.crt", "server.crt"}  # 365 days <= 400; the CA has 3650


def test_renew_changes_nothing_when_a_host_cannot_be_read(cluster, tmp_path, monkeypatch):
    from kubeforge.errors import CheckFailed
    from kubeforge.workflows.certs import plan_renew

    before = {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()}
    with local_pool(cluster, tmp_path / "empty", {"etcd-1"}, monkeypatch) as pool:
        with pytest.raises(CheckFailed) as err:
            plan_renew(cluster, pool, within_days=400, now=NOW)
    assert set(err.value.unreachable) == {h.name for h in cluster.hosts if h.name != "etcd-1"}
    assert {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()} == before


def test_renew_refuses_an_unknown_host_name_before_contacting_any_host(cluster, monkeypatch, tmp_path):
    from kubeforge.errors import UsageError
    from kubeforge.workflows.certs import plan_renew

    with local_pool(cluster, tmp_path / "empty", set(), monkeypatch) as pool:
        with pytest.raises(UsageError, match="--hosts: etcd-9 is not in the inventory"):
            plan_renew(cluster, pool, within_days=30, hosts=["etcd-1", "etcd-9"], now=NOW)


def test_renew_during_an_etcd_ca_rotation_is_refused_before_contacting_any_host(cluster, monkeypatch, tmp_path):
    """Mid-rotation a member may still be restarting on its new leaves: the refusal is the rotation's
    (exit 7), never a health gate's misreading of that restart, and no host is asked."""
    from kubeforge.errors import SafetyRefusal
    from kubeforge.pki import ca_rotation
    from kubeforge.workflows.certs import plan_renew

    ca_rotation.start(cluster, now=NOW)
    ca_rotation.record(cluster, 1)
    before = {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()}
    with local_pool(cluster, tmp_path / "empty", set(), monkeypatch) as pool:
        with pytest.raises(SafetyRefusal, match=r"rotation of the etcd CA is in progress \(1 of 3"):
            plan_renew(cluster, pool, within_days=30, renew_all=True, now=NOW)
    assert {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()} == before


def test_an_expiring_apiserver_etcd_client_is_pushed_one_control_plane_at_a_time_each_api_gated(cluster):
    from kubeforge.plan.certs.renew import APISERVER_ASIDE, APISERVER_MANIFEST

    short = ensure_pki(cluster, now=NOW, renew=frozenset({"apiserver-etcd-client"}), leaf_days=10).bundle
    found = {h.name: host_view(cluster, short, h.name) for h in cluster.hosts}
    report = compare(cluster, short, found, within_days=30, now=NOW)
    sel = select(cluster, report)
    assert sel.members == () and sel.not_renewed == ()
    assert sel.apiservers == ("cp-1", "cp-2", "cp-3")
    assert select(cluster, report, hosts=["cp-2"]).apiservers == ("cp-2",)
    fresh = ensure_pki(cluster, now=NOW, renew=frozenset({"apiserver-etcd-client"})).bundle
    files = {cp: [f for f in host_files(cluster, fresh, cluster.host(cp))
                  if f.path.startswith("/etc/kubernetes/pki/apiserver-etcd-client")] for cp in sel.apiservers}
    plan = renew_plan(cluster, sel, {}, {}, files)
    assert [p.name for p in plan.phases] == ["RenewEtcdMembers", "RenewControlPlanes"]
    assert plan.phases[0].is_noop
    phase = plan.phases[1]
    assert phase.strategy.kind == "rolling" and [lane.host for lane in phase.lanes] == ["cp-1", "cp-2", "cp-3"]
    for lane in phase.lanes:
        kinds = [s.kind for s in lane.steps]
        # the pair staged, swapped in by one step, recorded in applied.json, then the restart
        assert kinds == ["put", "put", "run", "run", "run", "gate"]
        assert {s.file.path for s in lane.steps[:2]} == {"/etc/kubernetes/pki/apiserver-etcd-client.crt.kubeforge-next",
                                                        "/etc/kubernetes/pki/apiserver-etcd-client.key.kubeforge-next"}
        assert lane.steps[2].title == "Swap in each new certificate with its key"
        assert lane.steps[3].key == "record-applied-certs"
        restart, gate = lane.steps[4].command.script, lane.steps[5].probe.script
        assert restart.index(f"mv -f {APISERVER_MANIFEST} {APISERVER_ASIDE}") < restart.index(
            f"mv -f {APISERVER_ASIDE} {APISERVER_MANIFEST}")
        address = cluster.host(lane.host).internal_address
        assert f"--server https://{address}:6443 get --raw /readyz" in gate
    assert "PRIVATE KEY" not in plan.render_text()
    # a resumed run: the store already holds the new certificate, the hosts still the old one
    assert select(cluster, compare(cluster, fresh, found, within_days=0, now=NOW)).apiservers == ("cp-1", "cp-2", "cp-3")
    pushed = {h.name: host_view(cluster, fresh, h.name) for h in cluster.hosts}
    assert select(cluster, compare(cluster, fresh, pushed, within_days=30, now=NOW)).apiservers == ()


def test_a_member_on_a_control_plane_is_not_restarted_for_the_api_servers_client_cert(tmp_path):
    """Only /etc/etcd/pki leaves select an etcd member; the API server's client cert selects its control plane."""
    c = make_cluster(tmp_path, n_etcd=1, n_cp=1)
    ensure_pki(c, now=NOW)
    short = ensure_pki(c, now=NOW, renew=frozenset({"apiserver-etcd-client"}), leaf_days=10).bundle
    found = {h.name: host_view(c, short, h.name) for h in c.hosts}
    sel = select(c, compare(c, short, found, within_days=30, now=NOW))
    assert (sel.members, sel.apiservers) == ((), ("cp-1",))


def kubeadm_leaf(bundle, days: int):
    return issue_leaf(LeafSpec(cn="kube-apiserver", usages=(CLIENT_AUTH,)), generate_key("ecdsa-p256"),
                      bundle.kube_ca.cert, generate_key("ecdsa-p256"), days=days, now=NOW)


def test_kubeadms_expiring_certificates_are_renewed_by_kubeadm_one_control_plane_at_a_time(cluster):
    from kubeforge.plan.certs.renew import renews_admin_conf

    bundle = ensure_pki(cluster, now=NOW).bundle
    found = {h.name: host_view(cluster, bundle, h.name) for h in cluster.hosts}
    for cp, days in (("cp-1", 5), ("cp-2", 200), ("cp-3", 5)):
        found[cp] += [describe(cp, "/etc/kubernetes/pki/apiserver.crt", kubeadm_leaf(bundle, days)),
                      describe(cp, "/etc/kubernetes/admin.conf", kubeadm_leaf(bundle, days)),
                      describe(cp, "/etc/kubernetes/scheduler.conf", kubeadm_leaf(bundle, days))]
    report = compare(cluster, bundle, found, within_days=30, now=NOW)
    sel = select(cluster, report)
    both = ("apiserver", "admin.conf", "scheduler.conf")
    assert sel.kubeadm == (("cp-1", both), ("cp-3", both)) and sel.not_renewed == ()
    plan = renew_plan(cluster, sel, {}, {})
    phase = plan.phases[-1]
    assert phase.strategy.kind == "rolling" and [lane.host for lane in phase.lanes] == ["cp-1", "cp-3"]
    steps = phase.lanes[0].steps
    assert [(s.kind, s.key) for s in steps] == [
        ("run", "kubeadm-renew"), ("run", "restart-apiserver"), ("gate", "gate-api-cp-1"),
        ("run", "restart-kube-scheduler"), ("gate", "gate-kube-scheduler-cp-1")]
    assert "kubeadm certs renew apiserver" in steps[0].command.script
    assert "Detected external" in steps[0].command.script  # kubeadm's exit 0 without a CA key is a failure here
    assert "mv -f /etc/kubernetes/manifests/kube-apiserver.yaml" in steps[1].command.script
    assert "mv -f /etc/kubernetes/manifests/kube-scheduler.yaml" in steps[3].command.script
    assert "https://127.0.0.1:10259/healthz" in steps[3].command.script and steps[4].probe.script.endswith("/healthz >/dev/null")
    assert renews_admin_conf(plan)
    every = select(cluster, report, renew_all=True, hosts=["cp-2"])
    assert every.kubeadm == (("cp-2", both),)


def test_renewing_only_kubeconfigs_restarts_nothing_but_still_gates_on_the_api(cluster):
    from kubeforge.plan.certs.renew import renews_admin_conf

    bundle = ensure_pki(cluster, now=NOW).bundle
    found = {"cp-2": host_view(cluster, bundle, "cp-2")
             + [describe("cp-2", "/etc/kubernetes/super-admin.conf", kubeadm_leaf(bundle, 3))]}
    sel = select(cluster, compare(cluster, bundle, found, within_days=30, now=NOW))
    assert sel.kubeadm == (("cp-2", ("super-admin.conf",)),)
    plan = renew_plan(cluster, sel, {}, {})
    assert [s.kind for s in plan.phases[-1].lanes[0].steps] == ["run", "gate"]
    assert not renews_admin_conf(plan)


def test_the_local_admin_kubeconfig_is_refetched_only_after_admin_conf_was_renewed_and_only_if_kept(cluster):
    from kubeforge.workflows.certs import refresh_local_admin

    bundle = ensure_pki(cluster, now=NOW).bundle
    found = {"cp-1": host_view(cluster, bundle, "cp-1")
             + [describe("cp-1", "/etc/kubernetes/admin.conf", kubeadm_leaf(bundle, 3))]}
    plan = renew_plan(cluster, select(cluster, compare(cluster, bundle, found, within_days=30, now=NOW)), {}, {})
    assert not (cluster.state_dir / "admin.conf").exists()
    assert refresh_local_admin(cluster, None, plan) is False  # no local copy: nothing fetched, no host asked
    assert not (cluster.state_dir / "admin.conf").exists()


def test_the_kubelet_configuration_kubeforge_renders_turns_client_certificate_rotation_on(tmp_path):
    import yaml

    from tests.factories import make_cluster
    from tests.unit.test_up_planner import resolve

    cluster = make_cluster(tmp_path, n_cp=1, n_workers=0)
    _, files = resolve(cluster)
    init = next(f for f in files["cp-1"] if f.path.endswith("kubeadm-init.yaml"))
    kubelet = next(d for d in yaml.safe_load_all(init.content) if d and d.get("kind") == "KubeletConfiguration")
    assert kubelet["rotateCertificates"] is True


def test_renewing_the_control_planes_alone_reissues_no_leaf_an_etcd_member_holds(tmp_path):
    """`certs renew --all --hosts cp-1`: the API server's etcd client is re-issued (pushed by this run);
    the members' server, peer and health-check leaves are on hosts this run does not touch, so they
    stay; a store leaf no host holds yet is re-issued freely (nothing can differ from it)."""
    from datetime import UTC, datetime

    from kubeforge.pki import ensure_pki
    from kubeforge.pki.hostcerts import describe
    from kubeforge.plan.certs.compare import compare, store_files
    from kubeforge.plan.certs.renew import RenewSelection
    from kubeforge.workflows.certs import _to_reissue
    from tests.factories import make_cluster

    cluster = make_cluster(tmp_path, n_cp=1, n_workers=0)
    bundle = ensure_pki(cluster).bundle
    certs = dict(bundle.certificates())
    now = datetime.now(UTC)
    found = {h.name: [describe(h.name, path, certs[item].cert) for path, (item, _) in store_files(cluster, bundle, h).items()]
             for h in cluster.hosts if h.name != "etcd-3"}  # etcd-3's files not deployed yet
    report = compare(cluster, bundle, found, within_days=30, now=now)
    only_cp = RenewSelection(members=(), not_renewed=(), apiservers=("cp-1",))
    items = _to_reissue(cluster, bundle, only_cp, report, within_days=30, renew_all=True, now=now)
    assert items == {"apiserver-etcd-client", "etcd-server/etcd-3", "etcd-peer/etcd-3"}
    one_member = RenewSelection(members=("etcd-1",), not_renewed=())
    items = _to_reissue(cluster, bundle, one_member, report, within_days=30, renew_all=True, now=now)
    assert items == {"etcd-server/etcd-1", "etcd-peer/etcd-1", "etcd-healthcheck-client", "etcd-server/etcd-3",
                     "etcd-peer/etcd-3"}


def test_a_certificate_and_its_key_are_swapped_in_by_one_step_so_no_stop_can_split_them(tmp_path):
    """etcd reads its certificate files for every handshake: a run stopped between putting server.crt
    and server.key would leave a pair that matches nothing. The pairs are staged beside their place
    and renamed by one step (real bash on this machine), which a resume runs again while a staged
    file is left; a file without its pair is put directly."""
    import subprocess

    from kubeforge.model import RenderedFile
    from kubeforge.plan.certs.renew import STAGED, put_pairs_together

    d = tmp_path / "pki"
    d.mkdir()
    files = [RenderedFile(f"{d}/server.crt", b"new cert"), RenderedFile(f"{d}/server.key", b"new key", mode=0o600, secret=True),
             RenderedFile(f"{d}/ca.crt", b"ca")]
    steps = put_pairs_together("etcd-1", files)
    puts = [s for s in steps if s.kind == "put"]
    assert sorted(s.file.path for s in puts) == sorted([f"{d}/ca.crt", f"{d}/server.crt{STAGED}", f"{d}/server.key{STAGED}"])
    assert next(s for s in puts if s.file.path.endswith("key" + STAGED)).file.mode == 0o600
    (swap,) = [s for s in steps if s.kind == "run"]

    def sh(cmd) -> int:
        return subprocess.run(["bash", "-c", cmd.script], capture_output=True).returncode

    (d / "server.crt").write_bytes(b"old cert")
    (d / "server.key").write_bytes(b"old key")
    assert sh(swap.unless) == 0  # nothing staged: the swap has nothing to do
    # stopped after staging the certificate only: nothing in place changed, the pair still matches
    (d / f"server.crt{STAGED}").write_bytes(b"new cert")
    assert (d / "server.crt").read_bytes() == b"old cert" and (d / "server.key").read_bytes() == b"old key"
    # the resume stages the key and swaps both in one command
    (d / f"server.key{STAGED}").write_bytes(b"new key")
    assert sh(swap.unless) != 0
    assert sh(swap.command) == 0
    assert (d / "server.crt").read_bytes() == b"new cert" and (d / "server.key").read_bytes() == b"new key"
    assert not list(d.glob(f"*{STAGED}")) and sh(swap.unless) == 0
    assert sh(swap.command) == 0  # run again (in flight when a machine lost power): still fine
