"""Turn a validated inventory into the frozen model. Every default is decided here, once."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kubeforge.inventory.cni_images import manifest_images
from kubeforge.inventory.context import Context, resolve_path
from kubeforge.inventory.rules_hosts import CONTROL_PLANE_TAINT
from kubeforge.inventory.rules_spec import backup_directory
from kubeforge.inventory.schema import HostDoc, SshDoc
from kubeforge.model import (
    BackupSettings,
    Bastion,
    Cluster,
    CniSpec,
    Endpoint,
    EndpointMode,
    EtcdSpec,
    EtcdTopology,
    Host,
    HostKeyPolicy,
    ImageSettings,
    KubeletSettings,
    Network,
    PackageSource,
    PackageSourceKind,
    PkiSettings,
    RegistryCredential,
    Role,
    SshSettings,
    Taint,
    UpgradePolicy,
)
from kubeforge.model.versions import kubeadm_etcd, parse_etcd, parse_kube


def _path(ctx: Context, text: str | None) -> Path | None:
    return resolve_path(ctx.base_dir, text) if text else None


def _manifest(ctx: Context, manifest: str | None) -> str | None:
    if not manifest or manifest.startswith("https://"):
        return manifest
    return str(resolve_path(ctx.base_dir, manifest))


def _cni(ctx: Context, name: str, manifest: str | None) -> CniSpec:
    local = _manifest(ctx, manifest)
    images: tuple[str, ...] = ()
    if local and not local.startswith("https://"):
        try:
            images = manifest_images(Path(local).read_text(errors="replace"))
        except (OSError, ValueError):
            pass  # validation warned already (check_network); `up` reports an unreadable file
    return CniSpec(manifest=local, name=name, images=images)


def _ssh(ctx: Context, doc: SshDoc) -> SshSettings:
    bastion = None
    if doc.bastion:
        b = doc.bastion
        bastion = Bastion(address=b.address, port=b.port, user=b.user or doc.user,
                          identity_file=_path(ctx, b.identity_file) or _path(ctx, doc.identity_file),
                          host_key=b.host_key.strip() if b.host_key else None)
    return SshSettings(
        user=doc.user, port=doc.port, identity_file=_path(ctx, doc.identity_file),
        known_hosts=_path(ctx, doc.known_hosts), host_key_policy=HostKeyPolicy(doc.host_key_policy),
        bastion=bastion, connect_timeout=float(doc.connect_timeout_seconds), connect_retries=doc.connect_retries,
        use_agent=doc.use_agent, sudo=doc.sudo,
        ssh_config=Path("none") if doc.ssh_config == "none" else _path(ctx, doc.ssh_config),
        given=frozenset(f for f in ("user", "port", "identity_file", "bastion") if f in doc.model_fields_set),
    )


def _host(ctx: Context, index: int, h: HostDoc, ssh: SshSettings) -> Host:
    if h.ssh:
        overrides: dict[str, Any] = {}
        if h.ssh.user is not None:
            overrides["user"] = h.ssh.user
        if h.ssh.port is not None:
            overrides["port"] = h.ssh.port
        if h.ssh.identity_file is not None:
            overrides["identity_file"] = _path(ctx, h.ssh.identity_file)
        if overrides:
            ssh = dataclasses.replace(ssh, **overrides, given=ssh.given | overrides.keys())
    roles = frozenset(Role(r) for r in h.roles)
    taints = [Taint(key=t.key, value=t.value or None, effect=t.effect) for t in h.taints]
    # kubeadm taints control planes by default; recording it here keeps render and plan honest
    if Role.CONTROL_PLANE in roles and not ctx.spec.allow_workloads_on_control_planes:
        if not any(t.key == CONTROL_PLANE_TAINT and t.effect == "NoSchedule" for t in taints):
            taints.append(Taint(key=CONTROL_PLANE_TAINT, value=None, effect="NoSchedule"))
    line, col = ctx.positions.value(("spec", "hosts", index))
    return Host(
        name=h.name, address=h.address, internal_address=h.internal_address or h.address, roles=roles, ssh=ssh,
        labels=dict(h.labels), taints=tuple(taints), host_key=h.host_key.strip() if h.host_key else None,
        origin=f"{ctx.file}:{line}:{col}",
    )


def build(ctx: Context, source: Path) -> Cluster:
    """The complete model; call only when the rules found no errors."""
    s = ctx.spec
    ssh = _ssh(ctx, s.ssh)
    hosts = tuple(_host(ctx, i, h, ssh) for i, h in ctx.hosts)
    cps = [h for h in hosts if h.is_control_plane]

    ep = s.control_plane_endpoint
    endpoint = Endpoint(
        host=ep.host or cps[0].internal_address, port=ep.port, mode=EndpointMode(ep.mode), interface=ep.interface,
        virtual_router_id=ep.virtual_router_id, extra_sans=tuple(ep.extra_sans),
    )
    e = s.etcd
    # No etcd.version: kubeadm's own choice for the Kubernetes minor (versions.yaml, kubeadmEtcd), so a
    # new external cluster runs what a stacked one would.
    version = e.version or str(kubeadm_etcd(parse_kube(s.kubernetes_version)))
    b = e.backup
    etcd = EtcdSpec(
        topology=EtcdTopology(ctx.topology), version=parse_etcd(version), data_dir=e.data_dir,
        heartbeat_interval_ms=e.heartbeat_interval_ms, election_timeout_ms=e.election_timeout_ms,
        quota_backend_bytes=e.quota_backend_bytes, snapshot_count=e.snapshot_count, client_port=e.client_port,
        peer_port=e.peer_port,
        release_url=e.release_url.rstrip("/") if e.release_url else None,
        checksums=tuple(sorted((str(parse_etcd(k)), v.lower()) for k, v in e.checksums.items())),
        backup=BackupSettings(directory=backup_directory(ctx), keep=b.keep, max_age_days=b.max_age_days,
                              encryption=b.encryption, key_file=_path(ctx, b.key_file), include_pki=b.include_pki),
    )
    n = s.network
    p = s.packages
    u = s.upgrade
    return Cluster(
        name=ctx.name or "",
        kubernetes_version=parse_kube(s.kubernetes_version),
        network=Network(pod_cidr=n.pod_cidr, service_cidr=n.service_cidr, cluster_domain=n.cluster_domain,
                        cni=_cni(ctx, n.cni.name, n.cni.manifest)),
        endpoint=endpoint,
        etcd=etcd,
        ssh=ssh,
        packages=PackageSource(
            kind=PackageSourceKind(p.source), mirror_url=p.mirror_url.rstrip("/") if p.mirror_url else None,
            debian_suite=p.debian_suite, bundle_dir=_path(ctx, p.bundle_dir), upstream_url=p.upstream_url,
            containerd_package=p.containerd_package, etcd_packages=tuple(p.etcd_packages), gpg_key_url=p.gpg_key_url,
        ),
        upgrade=UpgradePolicy(
            max_unavailable=str(u.max_unavailable).replace(" ", ""), drain_timeout_s=u.drain_timeout_seconds,
            drain_grace_period_s=u.drain_grace_period_seconds, delete_emptydir_data=u.delete_empty_dir_data,
            ignore_daemonsets=u.ignore_daemon_sets, leave_cordoned_on_failure=u.leave_cordoned_on_failure,
            node_ready_timeout_s=u.node_ready_timeout_seconds,
        ),
        pki=PkiSettings(key_type=s.pki.key_type, ca_days=s.pki.ca_days, leaf_days=s.pki.leaf_days),
        kubelet=KubeletSettings(max_pods=s.kubelet.max_pods,
                                extra_args=tuple((a.name, a.value) for a in s.kubelet.extra_args)),
        hosts=hosts,
        allow_workloads_on_control_planes=s.allow_workloads_on_control_planes,
        source=source,
        parallelism=s.parallelism,
        images=ImageSettings(
            repository=s.images.repository.rstrip("/"),
            mirrors=tuple((r, tuple(u.rstrip("/") for u in urls)) for r, urls in s.images.mirrors.items()),
            credentials=tuple(RegistryCredential(registry=r, username=cr.username,
                                                 password_file=_path(ctx, cr.password_file), password_env=cr.password_env)
                              for r, cr in s.images.credentials.items()),
            ca=_path(ctx, s.images.ca),
        ),
    )
