"""Rules about cluster-wide settings: names, versions, networks, etcd, SSH, packages, upgrades, PKI."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlparse

from kubeforge.inventory import paths
from kubeforge.inventory.cni_images import manifest_images
from kubeforge.inventory.context import DNS1123_LABEL, Context, as_ip, is_dns_subdomain, resolve_path
from kubeforge.inventory.paths import missing, path_problem
from kubeforge.model.upgrade_path import etcd_step_to
from kubeforge.model.versions import (
    VersionError,
    end_of_life_note,
    etcd_end_of_life_note,
    is_supported_etcd,
    is_supported_kube,
    known_etcd_minors,
    known_kube_minors,
    kube_minor,
    parse_etcd,
    parse_kube,
)

_PERCENT = re.compile(r"^\s*(\d+)\s*%\s*$")
_COUNT = re.compile(r"^\s*(\d+)\s*$")
_HOST_KEY = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+=*( .*)?$")
# kubeadm (and kube-apiserver) refuse service ranges with more than 20 host bits: a /12 for IPv4, a /108
# for IPv6 (kubeadm's MaximumBitsForServiceSubnet, ValidateServiceSubnetSize)
_SERVICE_HOST_BITS = 20
_NODE_MASK = {4: 24, 6: 64}  # kube-controller-manager's default node-cidr-mask-size
# kubeadm refuses a pod range more than 16 bits shorter than the node mask (PodSubnetNodeMaskMaxDiff)
_POD_NODE_MASK_MAX_DIFF = 16
# kubeadm reads certificate validity periods as Go durations (int64 nanoseconds): at most 2562047h
_MAX_VALIDITY_DAYS = 2562047 // 24


def check_metadata(ctx: Context) -> None:
    if ctx.name is not None and not DNS1123_LABEL.match(ctx.name):
        ctx.error(("metadata", "name"), f"'{ctx.name}' is not a valid cluster name (a DNS-1123 label: at most 63 "
                  "lowercase letters, digits and '-', starting and ending with a letter or digit)")


def check_versions(ctx: Context) -> None:
    if ctx.ok("kubernetes_version"):
        text = ctx.spec.kubernetes_version
        if not _FULL_VERSION.match(text):
            ctx.error(ctx.spec_path("kubernetesVersion"), f"'{text}' is not a full Kubernetes version: "
                      "write X.Y.Z (e.g. 1.34.2); kubeforge never guesses the patch release")
            return
        try:
            v = parse_kube(text)
        except VersionError as exc:
            ctx.error(ctx.spec_path("kubernetesVersion"), str(exc))
        else:
            if not is_supported_kube(v):
                ctx.error(ctx.spec_path("kubernetesVersion"), f"Kubernetes {v.minor_str} is not supported "
                          f"(known minors: {', '.join(known_kube_minors())}; source: kubeforge/model/versions.yaml)")
            elif (note := end_of_life_note(v)) is not None:
                ctx.warn(ctx.spec_path("kubernetesVersion"), note)
    if ctx.ok("etcd") and ctx.spec.etcd.version is not None:
        try:
            ev = parse_etcd(ctx.spec.etcd.version)
        except VersionError as exc:
            ctx.error(ctx.spec_path("etcd", "version"), str(exc))
        else:
            if not is_supported_etcd(ev):
                ctx.error(ctx.spec_path("etcd", "version"), f"etcd {ev.minor_str} is not supported (known minors: "
                          f"{', '.join(known_etcd_minors())}; source: kubeforge/model/versions.yaml)")
            elif (note := etcd_end_of_life_note(ev)) is not None:
                ctx.warn(ctx.spec_path("etcd", "version"), note)
            _check_etcd_for_kubernetes(ctx, ev)


def _check_etcd_for_kubernetes(ctx: Context, ev) -> None:
    """Stacked: kubeadm picks etcd (etcd.version only chooses the client tools). External: kubeadm
    refuses an etcd below its MinExternalEtcdVersion, so `up` would fail at `kubeadm init`."""
    if not ctx.ok("kubernetes_version"):
        return
    try:
        kube = parse_kube(ctx.spec.kubernetes_version)
    except VersionError:
        return
    minor = kube_minor(kube)
    if minor is None:
        return
    path = ctx.spec_path("etcd", "version")
    if ctx.topology == "stacked":
        if ev != minor.kubeadm_etcd:
            ctx.warn(path, f"stacked etcd runs kubeadm {minor.name}'s etcd {minor.kubeadm_etcd} "
                     f"({minor.source('kubeadmEtcd')}); etcd.version {ev} only chooses the etcd client tools")
    elif minor.min_external_etcd is not None and ev < minor.min_external_etcd:
        ctx.error(path, f"etcd {ev} is below {minor.min_external_etcd}, the oldest external etcd kubeadm {minor.name} "
                  f"accepts (MinExternalEtcdVersion; {minor.source('minExternalEtcd')}); run `kubeforge etcd upgrade "
                  f"-i <inventory> --to {etcd_step_to(ev, minor.min_external_etcd)}` first, or keep kubernetesVersion "
                  f"below {minor.name}")


def _network(ctx: Context, key: str, text: str):
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            ctx.error(ctx.spec_path("network", key), f"'{text}' is not a CIDR (e.g. 10.244.0.0/16)")
            return None
        ctx.error(ctx.spec_path("network", key), f"'{text}' has host bits set; did you mean {net}?")
        return None


def check_network(ctx: Context) -> None:
    if not ctx.ok("network"):
        return
    net = ctx.spec.network
    pod = _network(ctx, "podCIDR", net.pod_cidr)
    svc = _network(ctx, "serviceCIDR", net.service_cidr)
    if not is_dns_subdomain(net.cluster_domain):
        ctx.error(ctx.spec_path("network", "clusterDomain"), f"'{net.cluster_domain}' is not a DNS domain")
    _check_manifest(ctx, net.cni.manifest)
    if pod and svc:
        if pod.version != svc.version:
            ctx.error(ctx.spec_path("network", "serviceCIDR"), "podCIDR and serviceCIDR must be the same IP family")
        elif pod.overlaps(svc):
            ctx.error(ctx.spec_path("network", "serviceCIDR"), f"{svc} overlaps podCIDR {pod}")
    if svc and svc.max_prefixlen - svc.prefixlen > _SERVICE_HOST_BITS:
        ctx.error(ctx.spec_path("network", "serviceCIDR"), f"{svc} is too large: kubeadm and the API server accept at "
                  f"most a /{svc.max_prefixlen - _SERVICE_HOST_BITS} for IPv{svc.version}")
    if pod and svc and svc.num_addresses < 16:
        ctx.error(ctx.spec_path("network", "serviceCIDR"), f"{svc} is too small (the DNS service takes the 10th address)")
    if ctx.ok("hosts"):
        _check_hosts_outside(ctx, pod, svc)
    if pod and ctx.ok("hosts"):
        nodes = sum(1 for _, h in ctx.hosts if "control-plane" in h.roles or "worker" in h.roles)
        mask = _NODE_MASK[pod.version]
        if mask - pod.prefixlen > _POD_NODE_MASK_MAX_DIFF:
            ctx.error(ctx.spec_path("network", "podCIDR"), f"{pod} is too large: kubeadm refuses a pod range more than "
                      f"{_POD_NODE_MASK_MAX_DIFF} bits shorter than the /{mask} node ranges (use at most a "
                      f"/{mask - _POD_NODE_MASK_MAX_DIFF})")
        capacity = 2 ** (mask - pod.prefixlen) if pod.prefixlen <= mask else 0
        if capacity < nodes:
            ctx.error(ctx.spec_path("network", "podCIDR"), f"{pod} holds {capacity} node ranges of /{mask} but the "
                      f"inventory has {nodes} nodes")


def _check_hosts_outside(ctx: Context, pod, svc) -> None:
    for i, h in ctx.hosts:
        ip = ctx.internal_ip(h)
        if ip and pod and ip.version != pod.version:
            key = "internalAddress" if h.internal_address else "address"
            ctx.error(ctx.host_path(i, key), f"{ip} is IPv{ip.version} but podCIDR {pod} is IPv{pod.version}: "
                      "a single-stack cluster's nodes and ranges share one IP family (change the ranges, or set "
                      f"an IPv{pod.version} internalAddress)")
        for key, text in (("address", h.address), ("internalAddress", h.internal_address)):
            ip = as_ip(text)
            for label, net in (("podCIDR", pod), ("serviceCIDR", svc)):
                if ip and net and ip.version == net.version and ip in net:
                    ctx.error(ctx.host_path(i, key), f"{ip} is inside {label} {net}; host addresses must not overlap "
                              "the pod or service ranges")
    ep = ctx.spec.control_plane_endpoint if ctx.ok("control_plane_endpoint") else None
    vip = as_ip(ep.host) if ep else None
    for label, net in (("podCIDR", pod), ("serviceCIDR", svc)):
        if vip and net and vip.version == net.version and vip in net:
            ctx.error(ctx.spec_path("controlPlaneEndpoint", "host"), f"{vip} is inside {label} {net}")


def _check_manifest(ctx: Context, manifest: str | None) -> None:
    if not manifest:
        return
    path = ctx.spec_path("network", "cni", "manifest")
    url = urlparse(manifest)
    if url.scheme == "https":
        if not url.netloc:
            ctx.error(path, f"'{manifest}' is not a URL")
        elif ctx.ok("packages") and ctx.spec.packages.source == "offline":
            ctx.warn(path, "kubectl on the first control plane fetches this URL, and kubeforge cannot list or push "
                           "the images it runs: on a site with no way out, name a local copy of the manifest")
    elif url.scheme == "http":
        ctx.error(path, "the CNI manifest is applied with cluster-admin rights; fetch it over https")
    elif url.scheme and len(url.scheme) > 1:
        ctx.error(path, f"'{manifest}' is neither an https URL nor a local path")
    elif (problem := path_problem(manifest)) is not None:
        ctx.error(path, f"'{manifest}' {problem}")
    elif missing(ctx.base_dir, manifest, paths.is_file):
        ctx.warn(path, f"'{manifest}' does not exist (relative paths are relative to the inventory)")
    else:
        try:
            manifest_images(resolve_path(ctx.base_dir, manifest).read_text(errors="replace"))
        except OSError as exc:
            ctx.warn(path, f"'{manifest}' cannot be read: {exc.strerror}")
        except ValueError as exc:
            ctx.warn(path, f"'{manifest}' is {exc}: kubeforge cannot list the images it runs")


def check_etcd(ctx: Context) -> None:
    if not ctx.ok("etcd"):
        return
    etcd = ctx.spec.etcd
    if etcd.election_timeout_ms < 5 * etcd.heartbeat_interval_ms:
        ctx.error(ctx.spec_path("etcd", "electionTimeoutMs"), f"must be at least 5 x heartbeatIntervalMs "
                  f"({5 * etcd.heartbeat_interval_ms}); etcd refuses to start otherwise")
    if etcd.client_port == etcd.peer_port:
        ctx.error(ctx.spec_path("etcd", "peerPort"), "clientPort and peerPort must differ")
    if etcd.quota_backend_bytes > 8 * 1024**3:
        ctx.warn(ctx.spec_path("etcd", "quotaBackendBytes"), "etcd suggests at most 8 GiB")
    if not etcd.data_dir.startswith("/"):
        ctx.error(ctx.spec_path("etcd", "dataDir"), "must be an absolute path on the etcd hosts")
    b = etcd.backup
    bpath = ctx.spec_path("etcd", "backup")
    if b.encryption == "keyfile":
        if not b.key_file:
            ctx.error(bpath + ("encryption",), "keyfile encryption needs backup.keyFile")
        else:
            key = paths.real(resolve_path(ctx.base_dir, b.key_file))
            backups = paths.real(backup_directory(ctx))
            if key == backups or backups in key.parents:
                ctx.error(bpath + ("keyFile",), "the key must not live inside the backup directory (a copied backup "
                          "directory would carry its own key)")
            elif missing(ctx.base_dir, b.key_file):
                ctx.warn(bpath + ("keyFile",), f"'{b.key_file}' does not exist")
    elif b.key_file:
        ctx.warn(bpath + ("keyFile",), f"keyFile is ignored with encryption {b.encryption}")
    _check_etcd_sources(ctx)


_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# a pin names one archive, so a bare minor ("3.5") is not enough
_FULL_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


def _check_etcd_sources(ctx: Context) -> None:
    etcd = ctx.spec.etcd
    url = etcd.release_url
    if url is not None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            ctx.error(ctx.spec_path("etcd", "releaseURL"), f"'{url}' is not an http(s) URL")
    for key, value in etcd.checksums.items():
        path = ctx.spec_path("etcd", "checksums", key)
        if not _FULL_VERSION.match(key):
            ctx.error(path, f"'{key}' is not an etcd version (X.Y.Z, e.g. 3.5.16)", at_key=True)
        if not _SHA256.match(value):
            ctx.error(path, "a sha256 is 64 hex digits")


def backup_directory(ctx: Context):
    b = ctx.spec.etcd.backup
    if b.directory:
        return resolve_path(ctx.base_dir, b.directory)
    return ctx.base_dir / ".kubeforge" / (ctx.name or "cluster") / "backups"


def check_ssh(ctx: Context) -> None:
    if not ctx.ok("ssh"):
        return
    ssh = ctx.spec.ssh
    for key, value in (("identityFile", ssh.identity_file), ("knownHosts", ssh.known_hosts)):
        if value and missing(ctx.base_dir, value):
            if key == "knownHosts" and ssh.host_key_policy == "accept-new":
                continue  # accept-new creates it
            ctx.warn(ctx.spec_path("ssh", key), f"'{value}' does not exist")
    if ssh.bastion and ssh.bastion.host_key and not _HOST_KEY.match(ssh.bastion.host_key.strip()):
        ctx.error(ctx.spec_path("ssh", "bastion", "hostKey"), "not an SSH public key (expected 'ssh-ed25519 AAAA...')")


def check_packages(ctx: Context) -> None:
    if not ctx.ok("packages"):
        return
    p = ctx.spec.packages
    base = ctx.spec_path("packages")
    src = base + ("source",) if ctx.given(base + ("source",)) else base
    if p.source == "mirror" and not p.mirror_url:
        ctx.error(src, "source mirror needs mirrorURL")
    if p.source == "offline" and not p.bundle_dir:
        ctx.error(src, "source offline needs bundleDir (a directory of .deb files)")
    for key, url in (("mirrorURL", p.mirror_url), ("gpgKeyURL", p.gpg_key_url), ("upstreamURL", p.upstream_url)):
        if url and (urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc):
            ctx.error(base + (key,), f"'{url}' is not an http(s) URL")
    if p.mirror_url and p.source != "mirror":
        ctx.warn(base + ("mirrorURL",), f"mirrorURL is ignored with source {p.source}")
    if p.bundle_dir:
        if p.source != "offline":
            ctx.warn(base + ("bundleDir",), f"bundleDir is ignored with source {p.source}")
        elif missing(ctx.base_dir, p.bundle_dir, paths.is_dir):
            ctx.warn(base + ("bundleDir",), f"'{p.bundle_dir}' is not a directory (yet)")
    if not p.etcd_packages and ctx.topology == "external":
        ctx.error(base + ("etcdPackages",), "external etcd needs the etcd package names")


def check_upgrade(ctx: Context) -> None:
    if not ctx.ok("upgrade"):
        return
    value = ctx.spec.upgrade.max_unavailable
    path = ctx.spec_path("upgrade", "maxUnavailable")
    text = str(value)
    pct, count = _PERCENT.match(text), _COUNT.match(text)
    if isinstance(value, int) and not isinstance(value, bool):
        count = _COUNT.match(str(value)) if value >= 0 else None
    if pct:
        n = int(pct.group(1))
        if not 1 <= n <= 100:
            ctx.error(path, f"'{text}' must be between 1% and 100%")
    elif count:
        if int(count.group(1)) < 1:
            ctx.error(path, "must be at least 1 (0 would never upgrade a worker)")
    else:
        ctx.error(path, f"'{text}' is neither a count (2) nor a percentage ('25%')")


def check_pki_kubelet(ctx: Context) -> None:
    if ctx.ok("pki") and ctx.spec.pki.leaf_days > ctx.spec.pki.ca_days:
        ctx.error(ctx.spec_path("pki", "leafDays"), "leaf certificates cannot outlive their CA (caDays)")
    if ctx.ok("pki"):
        for key, days in (("caDays", ctx.spec.pki.ca_days), ("leafDays", ctx.spec.pki.leaf_days)):
            if days > _MAX_VALIDITY_DAYS:
                ctx.error(ctx.spec_path("pki", key), f"{days} days is longer than kubeadm can read: its validity "
                          f"periods are Go durations, at most 2562047h ({_MAX_VALIDITY_DAYS} days)")
    if ctx.ok("kubelet"):
        for j, arg in enumerate(ctx.spec.kubelet.extra_args):
            path = ctx.spec_path("kubelet", "extraArgs", j, "name")
            if arg.name.startswith("-"):
                ctx.error(path, f"write the flag name without dashes ('{arg.name.lstrip('-')}')")
            elif arg.name == "max-pods":
                ctx.error(path, "set kubelet.maxPods instead of a max-pods extra argument")
            elif not arg.name:
                ctx.error(path, "must not be empty")
