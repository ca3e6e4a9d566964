"""``kubeforge certs rotate-ca --ca etcd|front-proxy|kubernetes``: a new CA, rolled in without downtime.

Before planning: every host is read (as `certs check` does: exit 5 when one cannot be), every
member must be healthy (exit 4, etcd), and the store's rotation state is loaded or begun
(kubeforge.pki.ca_rotation: the new CA is written before anything is planned, never generated
twice). The plan (kubeforge.plan.certs.rotate*) goes through the one run engine: journaled,
interruptible, resumable, one member or node at a time behind a health gate.

``--ca front-proxy`` (kubernetes.io's "Manual Rotation of CA Certificates" lists the front-proxy CA
beside the cluster CA; it is trusted only by the API servers, as ``--requestheader-client-ca-file``,
and by the aggregated API servers they publish it to) rolls over the control planes alone, with
stacked or external etcd. ``--ca kubernetes`` (the cluster CA: every kubeconfig embeds it, every
kubelet trusts it, the controller manager signs kubelets' certificates with it) rolls over the
control planes and then the workers, reading each node's kubeconfigs' names first
(kubeforge.facts.kubeconfigs; kubeforge.plan.certs.rotate_kubernetes). The etcd CA of external etcd
is rotated; stacked etcd's CA (whose leaves kubeadm issues on each control plane) is refused before
anything is touched.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from kubeforge.errors import CheckFailed, SafetyRefusal, UsageError
from kubeforge.model import Cluster, EtcdTopology
from kubeforge.model.kubeadm_paths import ADMIN_CONF
from kubeforge.pki import ca_rotation
from kubeforge.pki.layout import front_proxy_files, host_files
from kubeforge.plan.certs.rotate import APISERVER_ETCD_CA, is_apiserver_file, rotation_plan
from kubeforge.plan.certs.rotate_front_proxy import FRONT_PROXY_CA, front_proxy_rotation_plan
from kubeforge.plan.certs.sans import APISERVER_CRT
from kubeforge.plan.phase import Plan

CLUSTER_CA = "/etc/kubernetes/pki/ca.crt"

log = logging.getLogger("kubeforge.certs")

CAS = ("etcd", "kubernetes", "front-proxy")


class NotSupportedYet(SafetyRefusal):
    """A rotation this version of kubeforge does not do; nothing was touched."""


def check_ca(cluster: Cluster, ca: str) -> None:
    if ca not in CAS:
        raise UsageError(f"--ca {ca!r} is not one of {', '.join(CAS)}")
    if ca == "etcd" and cluster.etcd.topology is EtcdTopology.STACKED:
        raise NotSupportedYet(
            f"not supported yet: rotating the etcd CA of stacked etcd (cluster {cluster.name}: kubeadm issues "
            "each member's certificates on its control plane); nothing was touched",
            hint="only external etcd's CA is rotated by this version")


def plan_rotate_ca(cluster: Cluster, pool, *, ca: str, write_store: bool = True,
                   now: datetime | None = None) -> Plan:
    """The rotation plan from the store's rotation state (begun here, new CA first, unless
    ``write_store`` is False: a dry run plans with a new CA made in a scratch directory that is
    removed afterwards, and the store is left as it was)."""
    from kubeforge.facts.haproxy_drains import read_drained
    from kubeforge.workflows.certs import _require_all_read, read_hosts, require_healthy_etcd
    from kubeforge.workflows.etcd.common import context, etcd_pki_files, gather_member_facts, member_etcd_files

    check_ca(cluster, ca)
    now = now or datetime.now(UTC)
    found, down = read_hosts(cluster, pool)
    _require_all_read(down)
    if ca == "front-proxy":
        return _plan_front_proxy(cluster, pool, found, write_store=write_store, now=now)
    if ca == "kubernetes":
        return _plan_kubernetes(cluster, pool, found, write_store=write_store, now=now)
    require_healthy_etcd(cluster, pool, "a CA rotation")
    members = cluster.etcd_members
    facts = gather_member_facts(cluster, pool, members)
    drained = read_drained(cluster, pool)
    ctx = context(cluster)
    config = {m.name: member_etcd_files(ctx, m, facts[m.name]) for m in members}
    # an API server restart is planned only where one is set up to talk to etcd
    apiservers = [cp.name for cp in cluster.control_planes
                  if any(c.path == APISERVER_ETCD_CA for c in found.get(cp.name, ()))]
    not_set_up = [cp.name for cp in cluster.control_planes if cp.name not in apiservers]

    def plan_with(rotation: ca_rotation.EtcdRotation) -> Plan:
        bundles = {n: rotation.bundle_for_phase(n) for n in (1, 2, 3)}
        member_files = {n: {m.name: etcd_pki_files(cluster, b, m) for m in members} for n, b in bundles.items()}
        api_files = {n: {cp: [f for f in host_files(cluster, b, cluster.host(cp)) if is_apiserver_file(f.path)]
                         for cp in apiservers} for n, b in bundles.items()}
        return rotation_plan(cluster, phases_done=rotation.state.phases_done, members=[m.name for m in members],
                             apiservers=apiservers, member_files=member_files, apiserver_files=api_files,
                             config_files=config, record=lambda n: _recorder(cluster, n), not_set_up=not_set_up,
                             drained=drained)

    return _with_rotation(cluster, "etcd", plan_with, write_store=write_store, now=now)


def _plan_front_proxy(cluster: Cluster, pool, found, *, write_store: bool, now: datetime) -> Plan:
    """Every control plane whose API server has a front-proxy CA file, one at a time per phase."""
    from kubeforge.facts.haproxy_drains import read_drained

    drained = read_drained(cluster, pool)
    apiservers = [cp.name for cp in cluster.control_planes
                  if any(c.path == FRONT_PROXY_CA for c in found.get(cp.name, ()))]
    not_set_up = [cp.name for cp in cluster.control_planes if cp.name not in apiservers]

    def plan_with(rotation: ca_rotation.FrontProxyRotation) -> Plan:
        files = {n: {cp: front_proxy_files(rotation.ca_for_phase(n), rotation.client_for_phase(n, cp))
                     for cp in apiservers} for n in (1, 2, 3)}
        return front_proxy_rotation_plan(cluster, phases_done=rotation.state.phases_done, apiservers=apiservers,
                                         files=files, record=lambda n: _recorder(cluster, n, "front-proxy"),
                                         not_set_up=not_set_up, drained=drained)

    return _with_rotation(cluster, "front-proxy", plan_with, write_store=write_store, now=now)


def _plan_kubernetes(cluster: Cluster, pool, found, *, write_store: bool, now: datetime) -> Plan:
    """Every node set up: control planes with an API server certificate, the cluster CA and kubeadm's
    kubeconfigs (admin.conf, kubelet.conf), workers with a kubelet.conf; one at a time per phase."""
    from kubeforge.facts.haproxy_drains import read_drained
    from kubeforge.facts.kubeconfigs import read_kubeconfigs
    from kubeforge.workflows.certs import _require_all_read

    kubeconfigs, down = read_kubeconfigs(cluster, pool, cluster.nodes)
    _require_all_read(down)
    drained = read_drained(cluster, pool)
    sans = {cp.name: c.sans for cp in cluster.control_planes for c in found.get(cp.name, ())
            if c.path == APISERVER_CRT and not c.error}
    cps = [cp.name for cp in cluster.control_planes if cp.name in sans and kubeconfigs[cp.name].has_ca
           and {"admin.conf", "kubelet.conf"} <= set(kubeconfigs[cp.name].confs)]
    workers = [w.name for w in cluster.workers if "kubelet.conf" in kubeconfigs[w.name].confs]
    not_set_up = [n.name for n in cluster.nodes if n.name not in cps and n.name not in workers]
    if not cps:
        raise CheckFailed(f"no control plane of cluster {cluster.name} is set up (an API server certificate, "
                          f"{CLUSTER_CA} and kubeadm's admin.conf and kubelet.conf): there is no cluster CA in use "
                          "to rotate; nothing was touched", hint=f"bring the cluster up first: kubeforge up -i {cluster.source}")

    def plan_with(rotation: ca_rotation.ClusterRotation) -> Plan:
        joins = join_configs(cluster, [n for n in [*cps, *workers] if n != cluster.first_control_plane.name],
                             rotation.new_ca)
        return kubernetes_plan(cluster, rotation, kubeconfigs, cps, workers, not_set_up, drained, joins)

    return _with_rotation(cluster, "kubernetes", plan_with, write_store=write_store, now=now,
                          apiserver_sans={cp: sans[cp] for cp in cps}, kubelets=[*cps, *workers],
                          subjects=kubeadm_subjects(found, cps))


# where the certificate of each client kubeadm issues on a control plane is read (`certs check`'s probe)
CLIENT_PATHS = {"apiserver-kubelet-client": "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
                **{n: f"/etc/kubernetes/{n}" for n in ("admin.conf", "super-admin.conf", "controller-manager.conf",
                                                      "scheduler.conf")}}


def kubeadm_subjects(found, cps) -> dict[str, tuple[str, str | None]]:
    """Per ``<item>/<control plane>``, the (CN, O) of the client certificate kubeadm issued there, as
    read (a subject of one CN and at most one O; anything else keeps this version's default)."""
    out: dict[str, tuple[str, str | None]] = {}
    for cp in cps:
        by_path = {c.path: c.subject for c in found.get(cp, ()) if not c.error}
        for item, path in CLIENT_PATHS.items():
            parts = [p.split("=", 1) for p in by_path.get(path, "").split(",") if "=" in p]
            cns, orgs = [v for k, v in parts if k == "CN"], [v for k, v in parts if k == "O"]
            if len(cns) == 1 and len(orgs) <= 1 and len(parts) == len(cns) + len(orgs) and "\\" not in by_path[path]:
                out[f"{item}/{cp}"] = (cns[0], orgs[0] if orgs else None)
    return out


def join_configs(cluster: Cluster, nodes, new_ca) -> dict:
    """Per joined node, kubeforge's kubeadm join configuration as `up` renders it once the store holds
    the new CA: its discovery-token-ca-cert-hash pins the new CA. Placed (and recorded in applied.json)
    in the last phase, so `up` afterwards finds it applied. None without the store's secrets."""
    from kubeforge.pki.crypto import spki_sha256
    from kubeforge.pki.registry import read_registry_access
    from kubeforge.pki.secrets import SECRETS_FILE, ensure_secrets
    from kubeforge.pki.store import Store
    from kubeforge.render.host import render_host
    from kubeforge.render.kubeadm import JOIN_PATH

    if not nodes or not Store(cluster.pki_dir).exists(SECRETS_FILE):
        return {}
    secrets, access, pin = ensure_secrets(cluster), read_registry_access(cluster), spki_sha256(new_ca.cert)
    out = {}
    for name in nodes:
        files = render_host(cluster, cluster.host(name), secrets=secrets, ca_cert_hash=pin, registry_access=access)
        join = next((f for f in files if f.path == JOIN_PATH), None)
        if join is not None:
            out[name] = join
    return out


def kubernetes_plan(cluster: Cluster, rotation: ca_rotation.ClusterRotation, kubeconfigs, cps, workers,
                    not_set_up=(), drained=None, joins=None) -> Plan:
    """The plan from the rotation and what was read on the nodes (kubeconfigs: facts.kubeconfigs);
    ``joins``: per node, its join configuration pinning the new CA (join_configs), placed in phase 3."""
    from dataclasses import replace

    from kubeforge.plan.certs.rotate_kubernetes import cluster_ca_rotation_plan, node_work

    first = cps[0]
    try:
        work = {n: {h: node_work(n, h, h in cps, kubeconfigs[h], rotation.ca_for_phase(n),
                                 functools.partial(_leaf_of, rotation, h), rotation.state.started)
                    for h in [*cps, *workers]} for n in (1, 2, 3)}
    except ValueError as exc:
        raise CheckFailed(f"{exc}; nothing was touched") from None
    for h, join in (joins or {}).items():
        work[3][h] = replace(work[3][h], files=(*work[3][h].files, join))
    server = kubeconfigs[first].confs["admin.conf"].server
    info = {n: cluster_info_configmap(server, rotation.ca_for_phase(n).cert_pem) for n in (1, 2, 3)}
    admin = {n: next((f.content for f in work[n][first].files if f.path == ADMIN_CONF), None) for n in (1, 2, 3)}
    return cluster_ca_rotation_plan(
        cluster, phases_done=rotation.state.phases_done, control_planes=cps, workers=workers, work=work,
        cluster_info=info, record=lambda n: _recorder(cluster, n, "kubernetes"), not_set_up=not_set_up,
        local_admin=lambda n: lambda: update_local_admin(cluster, rotation.ca_for_phase(n).cert_pem, admin[n]),
        drained=drained)


def _leaf_of(rotation: ca_rotation.ClusterRotation, host_name: str, item: str):
    return rotation.leaf(item, host_name)


def cluster_info_configmap(server: str, ca_bundle: bytes) -> bytes:
    """kube-public/cluster-info as kubeadm writes it (a kubeconfig with the cluster's CA and server and
    no user), for ``kubectl apply``; the controller manager's bootstrap signer signs it again for
    each token (its jws-kubeconfig-<id> keys, which apply leaves in place)."""
    import base64
    import json

    kubeconfig = "\n".join([
        "apiVersion: v1", "clusters:", "- cluster:",
        f"    certificate-authority-data: {base64.b64encode(ca_bundle).decode()}", f"    server: {server}",
        '  name: ""', "contexts: null", 'current-context: ""', "kind: Config", "preferences: {}", "users: null", ""])
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                       "data": {"kubeconfig": kubeconfig}}, indent=2).encode() + b"\n"


def update_local_admin(cluster: Cluster, ca_bundle: bytes, admin_conf: bytes | None) -> bool:
    """The operator's local admin kubeconfig (only when one was fetched: nothing is created): the first
    control plane's admin.conf as this phase writes it there, or (phase 1, where the client certificate
    kubeadm issued stays) its certificate-authority-data set to ``ca_bundle``. False: already so."""
    import base64
    import os
    import re

    from kubeforge.workflows.kubeconfig import ADMIN_LOCAL

    path = cluster.state_dir / ADMIN_LOCAL
    if not path.is_file():
        return False
    old = path.read_bytes()
    if admin_conf is not None:
        new = admin_conf
    else:
        line = "certificate-authority-data: " + base64.b64encode(ca_bundle).decode()
        new = re.sub(rb"(?m)^(\s*)certificate-authority-data:.*$", lambda m: m.group(1) + line.encode(), old)
    if new == old:
        return False
    tmp = path.with_name(f".{path.name}.kubeforge-next")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return True


def _with_rotation(cluster: Cluster, ca: str, plan_with, *, write_store: bool, now: datetime, **extra) -> Plan:
    """``plan_with`` the store's rotation of ``ca`` (begun here, new CA first, unless ``write_store``
    is False: then one under way is only loaded, else a new CA is made in a scratch directory that is
    removed afterwards). ``extra``: what ``ca_rotation.start`` needs besides (the kubernetes CA's)."""
    if write_store:
        rotation = ca_rotation.start(cluster, ca=ca, now=now, **extra)
        log.info("%s CA rotation: %d of 3 phases done (%s); new CA sha256 %s", ca, rotation.state.phases_done,
                 ca_rotation.PHASE_DONE[rotation.state.phases_done], rotation.state.new_sha256[:16])
        return plan_with(rotation)
    if ca_rotation.read_state(cluster, ca) is not None:
        return plan_with(ca_rotation.start(cluster, ca=ca, now=now, **extra))  # loads only: the new CA exists already
    ca_rotation.refuse_while_rotating(cluster, but=ca)
    with tempfile.TemporaryDirectory(dir=cluster.state_dir, prefix=".rotate-ca-dry-run-") as scratch:
        log.warning("dry run: the new %s CA is not written to the store; a real run creates it first, "
                    "so its files' sha256 differ from this plan's", ca)
        return plan_with(ca_rotation.start(cluster, ca=ca, root=Path(scratch), now=now, **extra))


def _recorder(cluster: Cluster, phase: int, ca: str = "etcd"):
    def run() -> bool:
        changed = ca_rotation.record(cluster, phase, ca)
        if phase == ca_rotation.PHASES:
            changed = ca_rotation.commit(cluster, ca) or changed
        return changed
    return run
