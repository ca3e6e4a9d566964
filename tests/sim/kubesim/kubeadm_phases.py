"""The mutating kubeadm commands: what they check, what they write, what they tell the API server."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

from . import client, etcdpod, files, host, images, preflight, staticpod, tls, upgrade_checks
from .host import SimError, parse_version, vstr
from .kconfig import extra_arg
from .kubeadm import (
    _local_ip,
    _node_checks,
    _preflight,
    _server_bases,
    duration,
    key_hash,
    new_token,
    restart_kubelet,
    token_parts,
    wait_healthy,
)
from .pki import ca_cert_hash

_DEFAULT_CP_TAINT = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]


def _taints(node_reg: dict, control_plane: bool) -> list[dict]:
    if "taints" in node_reg and node_reg["taints"] is not None:
        return [{k: v for k, v in t.items() if k in ("key", "value", "effect")} for t in node_reg["taints"]]
    return list(_DEFAULT_CP_TAINT) if control_plane else []


def init(a, version: str, cfg: dict) -> int:
    ic = cfg.get("InitConfiguration") or {}
    cc = cfg.get("ClusterConfiguration") or {}
    reg = ic.get("nodeRegistration") or {}
    target = a.kubernetes_version or cc.get("kubernetesVersion") or version
    t, k = parse_version(target), parse_version(version)
    if t > k or t[1] < k[1] - 1:
        raise SimError(f'this version of kubeadm only supports deploying clusters with the control plane version '
                       f'>= v{k[0]}.{k[1] - 1}.0 and <= {version}. Current version: {vstr(t)}')
    checks = _node_checks(version) + [
        ("FileAvailable--etc-kubernetes-admin.conf",
         "/etc/kubernetes/admin.conf already exists" if host.exists("/etc/kubernetes/admin.conf") else None),
        ("FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
         "/etc/kubernetes/manifests/kube-apiserver.yaml already exists"
         if host.exists(f"{files.MANIFESTS}/kube-apiserver.yaml") else None)]
    external = bool((cc.get("etcd") or {}).get("external"))
    checks += preflight.control_plane_checks(not external, _data_dir(cc), apiserver_manifest=False)
    ignored = a.ignore_preflight_errors + list(reg.get("ignorePreflightErrors") or [])
    _preflight(checks, ignored)
    _pull_images(images.kubeadm_images(vstr(t), _repository(cc), local_etcd=not external), ignored)
    name = a.node_name or reg.get("name") or host.hostname()
    advertise = a.apiserver_advertise_address or (ic.get("localAPIEndpoint") or {}).get("advertiseAddress") \
        or _local_ip("10.255.255.255")
    endpoint = a.control_plane_endpoint or cc.get("controlPlaneEndpoint") or f"{advertise}:6443"
    if ":" not in endpoint:
        endpoint += ":6443"
    local_etcd = not external and etcdpod.image_installed()
    print("[certs] Using certificateDir folder \"/etc/kubernetes/pki\"")
    for made in files.ensure_pki(cc, advertise, stacked=not external, node_name=name if local_etcd else None,
                                 node=name):
        print(f"[certs] Generating \"{made}\"")
    if not host.exists(f"{files.PKI}/ca.crt"):
        raise SimError("error execution phase certs/ca: failure loading ca certificate: /etc/kubernetes/pki/ca.crt missing")
    ca_pem = host.read(f"{files.PKI}/ca.crt")
    cluster_name = cc.get("clusterName", "kubernetes")
    files.write_kubeconfigs(f"https://{endpoint}", cluster_name, control_plane=True, super_admin=True, node_name=name)
    node_ip = extra_arg({"extraArgs": reg.get("kubeletExtraArgs")}, "node-ip") or advertise
    files.write_kubelet(name, node_ip, cfg.get("KubeletConfiguration"), target)
    if local_etcd:
        etcdpod.write_manifest(name, advertise, f"{name}=https://{advertise}:2380", existing=False,
                               data_dir=_data_dir(cc), image=images.etcd_image(vstr(t), _repository(cc)))
        print("[etcd] Creating static Pod manifest for local etcd in \"/etc/kubernetes/manifests\"")
    files.write_manifests(vstr(t), advertise, cc, files.store_annotation(cc, advertise, True, local_etcd))
    print("[control-plane] Creating static Pod manifests in \"/etc/kubernetes/manifests\"")
    restart_kubelet()
    print("[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods")
    wait_healthy([client.local_probe()], "wait-control-plane")
    local = [client.local(client.from_kubeconfig(host.path("/etc/kubernetes/admin.conf")))]
    tokens = [t.get("token") for t in ic.get("bootstrapTokens") or [] if t.get("token")]
    ttls = [duration(t.get("ttl")) for t in ic.get("bootstrapTokens") or [] if t.get("token")]
    if a.token:
        tokens, ttls = [a.token], [duration(None)]
    if not tokens:
        tokens, ttls = [new_token()], [duration(None)]
    cert_key = None
    if a.upload_certs:
        cert_key = a.certificate_key or ic.get("certificateKey") or secrets.token_hex(32)
    cluster_cfg = {k: v for k, v in cc.items() if k in ("etcd", "networking", "apiServer", "clusterName",
                                                         "controlPlaneEndpoint", "kubernetesVersion", "imageRepository",
                                                         "certificateValidityPeriod")}
    client.op(local, "init", {
        "version": vstr(t), "clusterName": cluster_name, "controlPlaneEndpoint": endpoint,
        "etcd": "external" if external else "stacked", "primary": advertise, "caCertHash": ca_cert_hash(ca_pem),
        "caCert": ca_pem, "clusterConfiguration": cluster_cfg,
        "tokens": [{"id": token_parts(tk)[0], "hash": token_parts(tk)[1], "ttl": ttl} for tk, ttl in zip(tokens, ttls, strict=False)],
        "certKeyHash": key_hash(cert_key) if cert_key else None,
        "node": {"name": name, "ip": node_ip, "kubeletVersion": host.installed_version("kubelet"),
                 "labels": {}, "taints": _taints(reg, True)}})
    if cert_key:
        print(f"[upload-certs] Using certificate key:\n{cert_key}")
    print("\nYour Kubernetes control-plane has initialized successfully!\n")
    print(f"kubeadm join {endpoint} --token {tokens[0]} \\\n\t--discovery-token-ca-cert-hash {ca_cert_hash(ca_pem)}")
    return 0


def join(a, version: str, cfg: dict) -> int:
    jc = cfg.get("JoinConfiguration") or {}
    reg = jc.get("nodeRegistration") or {}
    disc = (jc.get("discovery") or {}).get("bootstrapToken") or {}
    cp_cfg = jc.get("controlPlane")
    control_plane = a.control_plane or cp_cfg is not None
    endpoint = a.endpoint or disc.get("apiServerEndpoint")
    token = a.token or a.discovery_token or disc.get("token")
    if not endpoint or not token:
        raise SimError("discovery: Invalid value: \"\": bootstrapToken or file must be set")
    hashes = a.discovery_token_ca_cert_hash or list(disc.get("caCertHashes") or [])
    skip_ca = a.discovery_token_unsafe_skip_ca_verification or bool(disc.get("unsafeSkipCAVerification"))
    if not hashes and not skip_ca:
        raise SimError("discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without "
                       "caCertHashes can be unsafe. Set unsafeSkipCAVerification as true to continue")
    checks = _node_checks(version) + [
        ("FileAvailable--etc-kubernetes-kubelet.conf",
         "/etc/kubernetes/kubelet.conf already exists" if host.exists("/etc/kubernetes/kubelet.conf") else None)]
    checks += preflight.worker_checks()
    ignored = a.ignore_preflight_errors + list(reg.get("ignorePreflightErrors") or [])
    _preflight(checks, ignored)
    bases = [client.base_url("https://" + endpoint)]
    info = client.op(bases, "discover", {})
    if control_plane:  # kubeadm checks a joining control plane with the cluster's configuration in hand
        cc_joined = info.get("clusterConfiguration") or {}
        done = {n for n, _ in checks}
        _preflight([c for c in preflight.control_plane_checks(info.get("etcd") == "stacked", _data_dir(cc_joined))
                    if c[0] not in done], ignored)
    name = a.node_name or reg.get("name") or host.hostname()
    advertise = a.apiserver_advertise_address or ((cp_cfg or {}).get("localAPIEndpoint") or {}).get("advertiseAddress")
    node_ip = extra_arg({"extraArgs": reg.get("kubeletExtraArgs")}, "node-ip") or advertise \
        or _local_ip(endpoint.rsplit(":", 1)[0])
    cert_key = a.certificate_key or (cp_cfg or {}).get("certificateKey")
    tid, th = token_parts(token)
    cv = info["clusterVersion"]
    if parse_version(version)[:2] not in (parse_version(cv)[:2], (parse_version(cv)[0], parse_version(cv)[1] + 1)):
        raise SimError(f'kubeadm {version} cannot join a cluster at {cv}: the kubeadm minor must match the cluster')
    if control_plane:  # kubeadm's join preflight pulls images for control planes only
        _pull_images(images.kubeadm_images(cv, _repository(info.get("clusterConfiguration") or {}),
                                           local_etcd=info.get("etcd") == "stacked"),
                     a.ignore_preflight_errors + list(reg.get("ignorePreflightErrors") or []))
    # without the CA's key here, the kubelet's client certificate is signed by the cluster (TLS bootstrap)
    csr, kubelet_key = tls.new_request(*files.node_user(name)) if not host.exists(f"{files.PKI}/ca.key") else (None, None)
    joined = client.op(bases, "join", {
        "tokenId": tid, "tokenHash": th, "caCertHashes": hashes, "unsafeSkipCAVerification": skip_ca,
        "controlPlane": control_plane, "markLater": control_plane,
        "certKeyHash": key_hash(cert_key) if (control_plane and cert_key) else None,
        "node": {"name": name, "ip": node_ip, "kubeletVersion": host.installed_version("kubelet"),
                 "labels": {}, "taints": _taints(reg, control_plane)}, **({"csr": csr.decode()} if csr else {})})
    kubelet_pair = (joined["certificate"].encode(), kubelet_key) if csr and kubelet_key else None
    if not host.exists(f"{files.PKI}/ca.crt") and info.get("caCert"):
        host.write(f"{files.PKI}/ca.crt", info["caCert"], 0o644)
    cluster_name = info.get("clusterName") or "kubernetes"
    server = f"https://{info.get('controlPlaneEndpoint') or endpoint}"
    files.write_kubeconfigs(server, cluster_name, control_plane=control_plane, super_admin=False, node_name=name,
                            kubelet_pair=kubelet_pair)
    files.write_kubelet(name, node_ip, None, cv)
    if control_plane:
        cc = dict(info.get("clusterConfiguration") or {})
        local_etcd = info.get("etcd") == "stacked" and etcdpod.image_installed()
        if local_etcd and not host.exists(f"{files.PKI}/etcd/ca.key"):
            raise SimError("error execution phase control-plane-prepare/certs: failure loading etcd/ca certificate "
                           "authority: couldn't load the private key file /etc/kubernetes/pki/etcd/ca.key")
        files.ensure_pki(cc, advertise or node_ip, stacked=local_etcd, node_name=name if local_etcd else None,
                         node=name)
        if local_etcd:
            print("[etcd] Announced new etcd member joining to the existing etcd cluster")
            initial = etcdpod.add_member(info.get("etcdEndpoints") or [f"https://{info.get('primary')}:2379"],
                                         name, advertise or node_ip)
            etcdpod.write_manifest(name, advertise or node_ip, initial, existing=True, data_dir=_data_dir(cc),
                                   image=images.etcd_image(cv, _repository(cc)))
        files.write_manifests(cv, advertise or node_ip, cc,
                              files.store_annotation(cc, info.get("primary"), False, local_etcd))
    restart_kubelet()
    if control_plane:
        wait_healthy([client.local_probe()], "wait-control-plane")
        # kubeadm's last join phase (mark-control-plane), with the admin.conf it wrote: a join stopped
        # before here leaves its manifests, etcd member and data, and a Node that is no control plane
        client.op(_server_bases("/etc/kubernetes/admin.conf"), "mark_control_plane", {"node": name})
        print(f"[mark-control-plane] Marking the node {name} as control-plane by adding the labels: "
              "[node-role.kubernetes.io/control-plane]")
        print("\nThis node has joined the cluster and a new control plane instance was created")
    else:
        print("\nThis node has joined the cluster")
    return 0


def _repository(cc: dict) -> str:
    return cc.get("imageRepository") or images.DEFAULT_REPOSITORY


def _pull_images(refs: list[str], ignored: list[str]) -> None:
    """kubeadm's image pull preflight, after its other checks passed (phases/*/preflight.go)."""
    print("[preflight] Pulling images required for setting up a Kubernetes cluster")
    _preflight(images.pull_checks(refs), ignored)


def _data_dir(cc: dict) -> str:
    return ((cc.get("etcd") or {}).get("local") or {}).get("dataDir") or etcdpod.DATA_DIR


def upgrade(a, version: str, cfg: dict) -> int:
    uc = cfg.get("UpgradeConfiguration") or {}
    action = a.action
    if action not in ("plan", "apply", "node", "diff"):
        raise SimError(f'unknown command "{action}" for "kubeadm upgrade"')
    admin = "/etc/kubernetes/admin.conf"
    if action in ("plan", "apply", "diff") and not host.exists(admin):
        raise SimError(f'couldn\'t create a Kubernetes client from file "{admin}": failed to load admin kubeconfig: '
                       f'open {admin}: no such file or directory\nTo see the stack trace of this error execute with --v=5 or higher')
    conf = admin if host.exists(admin) else "/etc/kubernetes/kubelet.conf"
    if not host.exists(conf):
        raise SimError("this node is not part of a cluster: /etc/kubernetes/kubelet.conf is missing")
    bases = _server_bases(conf)
    name = files.node_name_from_flags() or host.hostname()
    phase_cfg = uc.get("node" if action == "node" else action) or {}
    if action in ("plan", "apply"):
        ignore = [i for f in a.ignore_preflight_errors + list(phase_cfg.get("ignorePreflightErrors") or [])
                  for i in f.split(",")]
        upgrade_checks.check_cluster_health(bases, ignore)
    # --etcd-upgrade (default true) or the UpgradeConfiguration's etcdUpgrade
    etcd_upgrade = str(a.etcd_upgrade).lower() != "false" if a.etcd_upgrade is not None \
        else phase_cfg.get("etcdUpgrade", True) is not False
    if action in ("plan", "diff"):
        plan = client.op(bases, "upgrade_plan", {})
        print(f"[upgrade/versions] Cluster version: {plan['clusterVersion']}")
        print(f"[upgrade/versions] kubeadm version: {version}")
        print("\nComponents that must be upgraded manually after you have upgraded the control plane with "
              "'kubeadm upgrade apply':\nCOMPONENT   NODE   CURRENT   TARGET")
        for node, (kv, _) in sorted(plan["nodes"].items()):
            print(f"kubelet     {node}   {kv}   {version}")
        if parse_version(version) > parse_version(plan["clusterVersion"]):
            print(f"\nYou can now apply the upgrade by executing the following command:\n\n"
                  f"\tkubeadm upgrade apply {version}\n")
        return 0
    if action == "apply":
        target = a.target or (uc.get("apply") or {}).get("kubernetesVersion")
        if not target:
            raise SimError("missing one or more required arguments. Required arguments: [version]")
        yes = a.yes or a.force
        if not yes:
            sys.stdout.write("[upgrade] Are you sure you want to proceed? [y/N]: ")
            sys.stdout.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                raise SimError("won't proceed; the user didn't answer (Y|y) in order to continue")
        api = files.read_manifest("kube-apiserver") or {}
        image = ((api.get("spec") or {}).get("containers") or [{}])[0].get("image", "")
        _pull_images(images.kubeadm_images(target, image.rsplit("/", 1)[0] if "/" in image else images.DEFAULT_REPOSITORY,
                                           local_etcd=files.read_manifest("etcd") is not None), a.ignore_preflight_errors)
        result = client.op(bases, "upgrade_apply", {"node": name, "version": target, "kubeadmVersion": version})
        if etcd_upgrade:
            upgrade_checks.upgrade_local_etcd(vstr(parse_version(target)))
        changed = files.set_manifest_versions(vstr(parse_version(target)))
        _wait_local_version(vstr(parse_version(target)))
        print(f"[upgrade/staticpods] Upgraded {', '.join(changed)} from {result['from']} to {result['to']}")
        print(f"[upgrade/successful] SUCCESS! Your cluster was upgraded to \"{vstr(parse_version(target))}\". Enjoy!")
        return 0
    result = client.op(bases, "upgrade_node", {"node": name, "kubeadmVersion": version})
    if result["controlPlane"]:
        if etcd_upgrade:
            upgrade_checks.upgrade_local_etcd(result["clusterVersion"])
        files.set_manifest_versions(result["clusterVersion"])
        _wait_local_version(result["clusterVersion"])
    if host.exists(files.KUBELET_CONFIG):
        text = host.read(files.KUBELET_CONFIG).split("\n", 1)[1]
        host.write(files.KUBELET_CONFIG, f"# written by kubeadm (kubesim) for {result['clusterVersion']}\n{text}")
    print("[upgrade] The configuration for this node was successfully upgraded!")
    print("[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.")
    return 0


def _wait_local_version(version: str) -> None:
    """Like kubeadm, wait until the kubelet has restarted the API server static pod at the new version."""
    import os
    import time

    local = [client.local_probe()]
    deadline = time.time() + float(os.environ.get("KUBESIM_WAIT_SECONDS", "60"))
    print("[upgrade/staticpods] Waiting for the kubelet to restart the component")
    while True:
        try:
            if client.get(local, "/version").get("gitVersion") == version:
                return
        except SimError:
            pass
        if time.time() > deadline:
            raise SimError(f"[upgrade/staticpods] timed out waiting for kube-apiserver {version} on this node")
        time.sleep(0.1)


def reset(a, version: str) -> int:
    if not a.force:
        sys.stdout.write("[reset] Are you sure you want to proceed? [y/N]: ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise SimError("aborted reset operation")
    name = files.node_name_from_flags() or host.hostname()
    conf = next((c for c in ("/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf") if host.exists(c)), None)
    if conf:
        try:
            client.op(_server_bases(conf), "reset", {"node": name}, timeout=5)
        except SimError as e:
            print(f"W [reset] Unable to remove node {name} from the cluster: {e.message}", file=sys.stderr)
    stacked = files.read_manifest("etcd") is not None
    if stacked and etcdpod.running_pid() is not None:
        # kubeadm's etcd client retries with backoff (50 ms, doubling, 9 steps), then only warns
        delay = 0.05
        for attempt in range(9):
            try:
                if etcdpod.remove_member(name, ["https://127.0.0.1:2379"]) is not None:
                    print(f"[reset] Removed etcd member {name} from the cluster")
                break
            except SimError as e:
                if attempt == 8:
                    print(f"W [reset] Failed to remove etcd member: {e.message}, please manually remove this "
                          "etcd member using etcdctl", file=sys.stderr)
                time.sleep(delay)
                delay *= 2
    if not host.in_test_root():
        subprocess.run(["systemctl", "stop", "kubelet.service"], capture_output=True)
    host.remove("/run/kubesim/kubelet.started")
    print("[reset] Stopping the kubelet service")
    dirs = [files.MANIFESTS, "/var/lib/kubelet", files.PKI] + (["/var/lib/etcd"] if stacked else [])
    etcdpod.kill_running()  # the etcd "container" goes before its data dir
    print(f"[reset] Deleting contents of directories: {dirs}")
    for d in dirs:
        host.wipe_dir_contents(d)
    staticpod.kill_running()  # "[reset] Removing containers": the API server static pod goes too
    host.remove(images.STARTED)  # no container left from any image (the images stay in containerd)
    for f in ("admin.conf", "super-admin.conf", "kubelet.conf", "bootstrap-kubelet.conf",
              "controller-manager.conf", "scheduler.conf"):
        host.remove(f"/etc/kubernetes/{f}")
    print("[reset] Deleting files: [/etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf "
          "/etc/kubernetes/kubelet.conf /etc/kubernetes/bootstrap-kubelet.conf "
          "/etc/kubernetes/controller-manager.conf /etc/kubernetes/scheduler.conf]")
    return 0
