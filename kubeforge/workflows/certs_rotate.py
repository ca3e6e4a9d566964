"""``kubeforge certs rotate-ca --ca etcd|front-proxy``: a new CA, rolled in without downtime.

Before planning: every host is read (as `certs check` does: exit 5 when one cannot be), every
member must be healthy (exit 4), and the store's rotation state is loaded or begun
(kubeforge.pki.ca_rotation: the new CA is written before anything is planned, never generated
twice). The plan (kubeforge.plan.certs.rotate) goes through the one run engine: journaled,
interruptible, resumable, one member or control plane at a time behind a health gate.

``--ca front-proxy`` (kubernetes.io's "Manual Rotation of CA Certificates" lists the front-proxy CA
beside the cluster CA; it is trusted only by the API servers, as ``--requestheader-client-ca-file``,
and by the aggregated API servers they publish it to) rolls over the control planes alone, with
stacked or external etcd. The etcd CA of external etcd is rotated; the Kubernetes CA (embedded in
every kubeconfig and trusted by every kubelet) and stacked etcd's CA (whose leaves kubeadm issues on
each control plane) are refused before anything is touched.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from kubeforge.errors import SafetyRefusal, UsageError
from kubeforge.model import Cluster, EtcdTopology
from kubeforge.pki import ca_rotation
from kubeforge.pki.layout import front_proxy_files, host_files
from kubeforge.plan.certs.rotate import APISERVER_ETCD_CA, is_apiserver_file, rotation_plan
from kubeforge.plan.certs.rotate_front_proxy import FRONT_PROXY_CA, front_proxy_rotation_plan
from kubeforge.plan.phase import Plan

log = logging.getLogger("kubeforge.certs")

CAS = ("etcd", "kubernetes", "front-proxy")


class NotSupportedYet(SafetyRefusal):
    """A rotation this version of kubeforge does not do; nothing was touched."""


def check_ca(cluster: Cluster, ca: str) -> None:
    if ca not in CAS:
        raise UsageError(f"--ca {ca!r} is not one of {', '.join(CAS)}")
    if ca == "kubernetes":
        raise NotSupportedYet(
            "not supported yet: rotating the kubernetes CA (every kubeconfig embeds it, every kubelet trusts it "
            "and the controller manager signs kubelets' certificates with it, so its rotation follows "
            "kubernetes.io's manual procedure across every node, which this version does not automate); "
            "nothing was touched",
            hint="`--ca etcd` (external etcd) and `--ca front-proxy` are rotated by this version")
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


def _with_rotation(cluster: Cluster, ca: str, plan_with, *, write_store: bool, now: datetime) -> Plan:
    """``plan_with`` the store's rotation of ``ca`` (begun here, new CA first, unless ``write_store``
    is False: then one under way is only loaded, else a new CA is made in a scratch directory that is
    removed afterwards)."""
    if write_store:
        rotation = ca_rotation.start(cluster, ca=ca, now=now)
        log.info("%s CA rotation: %d of 3 phases done (%s); new CA sha256 %s", ca, rotation.state.phases_done,
                 ca_rotation.PHASE_DONE[rotation.state.phases_done], rotation.state.new_sha256[:16])
        return plan_with(rotation)
    if ca_rotation.read_state(cluster, ca) is not None:
        return plan_with(ca_rotation.start(cluster, ca=ca, now=now))  # loads only: the new CA exists already
    ca_rotation.refuse_while_rotating(cluster, but=ca)
    with tempfile.TemporaryDirectory(dir=cluster.state_dir, prefix=".rotate-ca-dry-run-") as scratch:
        log.warning("dry run: the new %s CA is not written to the store; a real run creates it first, "
                    "so its files' sha256 differ from this plan's", ca)
        return plan_with(ca_rotation.start(cluster, ca=ca, root=Path(scratch), now=now))


def _recorder(cluster: Cluster, phase: int, ca: str = "etcd"):
    def run() -> bool:
        changed = ca_rotation.record(cluster, phase, ca)
        if phase == ca_rotation.PHASES:
            changed = ca_rotation.commit(cluster, ca) or changed
        return changed
    return run
