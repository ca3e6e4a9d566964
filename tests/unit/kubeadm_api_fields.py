"""Field paths each kubeadm configuration kind accepts, per API version.

Sources: ``kubeadm config print *-defaults`` of the 1.35 line (shared/reference/kubeadm-v1beta4-defaults)
and the kubeadm configuration API reference for v1beta3 and v1beta4. Paths are dotted; ``[]`` marks
the items of a list. Only what a kubeforge config may legitimately contain is listed: a path missing
here fails the test, so adding a field to a template means adding it here after checking the API.
"""

from __future__ import annotations

_NODE_REGISTRATION_COMMON = {
    "nodeRegistration",
    "nodeRegistration.name",
    "nodeRegistration.criSocket",
    "nodeRegistration.taints",
    "nodeRegistration.taints[]",
    "nodeRegistration.taints[].key",
    "nodeRegistration.taints[].value",
    "nodeRegistration.taints[].effect",
    "nodeRegistration.kubeletExtraArgs",
    "nodeRegistration.ignorePreflightErrors",
    "nodeRegistration.ignorePreflightErrors[]",
    "nodeRegistration.imagePullPolicy",
}
_EXTRA_ARGS_V1BETA4 = {"", "[]", "[].name", "[].value"}  # a list of {name, value}
_BOOTSTRAP_TOKENS = {
    "bootstrapTokens",
    "bootstrapTokens[]",
    "bootstrapTokens[].token",
    "bootstrapTokens[].description",
    "bootstrapTokens[].ttl",
    "bootstrapTokens[].expires",
    "bootstrapTokens[].usages",
    "bootstrapTokens[].usages[]",
    "bootstrapTokens[].groups",
    "bootstrapTokens[].groups[]",
}
_LOCAL_API = {"localAPIEndpoint", "localAPIEndpoint.advertiseAddress", "localAPIEndpoint.bindPort"}
_TIMEOUTS = {
    "timeouts",
    "timeouts.controlPlaneComponentHealthCheck",
    "timeouts.kubeletHealthCheck",
    "timeouts.kubernetesAPICall",
    "timeouts.etcdAPICall",
    "timeouts.tlsBootstrap",
    "timeouts.discovery",
    "timeouts.upgradeManifests",
}
_COMMON_TOP = {"apiVersion", "kind"}

_CLUSTER_COMMON = _COMMON_TOP | {
    "clusterName",
    "kubernetesVersion",
    "controlPlaneEndpoint",
    "certificatesDir",
    "imageRepository",
    "featureGates",
    "networking",
    "networking.podSubnet",
    "networking.serviceSubnet",
    "networking.dnsDomain",
    "apiServer",
    "apiServer.certSANs",
    "apiServer.certSANs[]",
    "apiServer.extraArgs",
    "controllerManager",
    "controllerManager.extraArgs",
    "scheduler",
    "scheduler.extraArgs",
    "dns",
    "dns.imageRepository",
    "dns.imageTag",
    "etcd",
    "etcd.local",
    "etcd.local.dataDir",
    "etcd.local.imageRepository",
    "etcd.local.imageTag",
    "etcd.local.extraArgs",
    "etcd.local.serverCertSANs",
    "etcd.local.serverCertSANs[]",
    "etcd.local.peerCertSANs",
    "etcd.local.peerCertSANs[]",
    "etcd.external",
    "etcd.external.endpoints",
    "etcd.external.endpoints[]",
    "etcd.external.caFile",
    "etcd.external.certFile",
    "etcd.external.keyFile",
}


def _with_extra_args_list(paths: set[str]) -> set[str]:
    """v1beta4: every *extraArgs map becomes a list of {name, value}."""
    out = set(paths)
    for p in paths:
        if p.endswith("xtraArgs"):
            out |= {p + suffix for suffix in _EXTRA_ARGS_V1BETA4}
    return out


V1BETA3 = "kubeadm.k8s.io/v1beta3"
V1BETA4 = "kubeadm.k8s.io/v1beta4"

ALLOWED: dict[tuple[str, str], set[str]] = {
    (V1BETA3, "InitConfiguration"): _COMMON_TOP
    | _BOOTSTRAP_TOKENS
    | _LOCAL_API
    | _NODE_REGISTRATION_COMMON
    | {"certificateKey", "skipPhases", "skipPhases[]", "patches", "patches.directory"},
    (V1BETA4, "InitConfiguration"): _with_extra_args_list(
        _COMMON_TOP
        | _BOOTSTRAP_TOKENS
        | _LOCAL_API
        | _NODE_REGISTRATION_COMMON
        | _TIMEOUTS
        | {"certificateKey", "skipPhases", "skipPhases[]", "patches", "patches.directory", "dryRun"}
        | {"nodeRegistration.imagePullSerial"}
    ),
    (V1BETA3, "ClusterConfiguration"): _CLUSTER_COMMON | {"apiServer.timeoutForControlPlane"},
    (V1BETA4, "ClusterConfiguration"): _with_extra_args_list(
        _CLUSTER_COMMON
        | {
            "encryptionAlgorithm",
            "certificateValidityPeriod",
            "caCertificateValidityPeriod",
            "proxy",
            "proxy.disabled",
            "dns.disabled",
            "apiServer.extraEnvs",
            "etcd.local.extraEnvs",
        }
    ),
    (V1BETA3, "JoinConfiguration"): _COMMON_TOP
    | _NODE_REGISTRATION_COMMON
    | {
        "caCertPath",
        "discovery",
        "discovery.bootstrapToken",
        "discovery.bootstrapToken.token",
        "discovery.bootstrapToken.apiServerEndpoint",
        "discovery.bootstrapToken.caCertHashes",
        "discovery.bootstrapToken.caCertHashes[]",
        "discovery.bootstrapToken.unsafeSkipCAVerification",
        "discovery.tlsBootstrapToken",
        "discovery.timeout",
        "controlPlane",
        "controlPlane.localAPIEndpoint",
        "controlPlane.localAPIEndpoint.advertiseAddress",
        "controlPlane.localAPIEndpoint.bindPort",
        "controlPlane.certificateKey",
        "skipPhases",
        "skipPhases[]",
    },
    (V1BETA4, "JoinConfiguration"): _with_extra_args_list(
        _COMMON_TOP
        | _NODE_REGISTRATION_COMMON
        | _TIMEOUTS
        | {
            "nodeRegistration.imagePullSerial",
            "dryRun",
            "caCertPath",
            "discovery",
            "discovery.bootstrapToken",
            "discovery.bootstrapToken.token",
            "discovery.bootstrapToken.apiServerEndpoint",
            "discovery.bootstrapToken.caCertHashes",
            "discovery.bootstrapToken.caCertHashes[]",
            "discovery.bootstrapToken.unsafeSkipCAVerification",
            "discovery.tlsBootstrapToken",
            "controlPlane",
            "controlPlane.localAPIEndpoint",
            "controlPlane.localAPIEndpoint.advertiseAddress",
            "controlPlane.localAPIEndpoint.bindPort",
            "controlPlane.certificateKey",
            "skipPhases",
            "skipPhases[]",
        }
    ),
    (V1BETA4, "UpgradeConfiguration"): _COMMON_TOP
    | _TIMEOUTS
    | {
        "apply",
        "apply.kubernetesVersion",
        "apply.allowExperimentalUpgrades",
        "apply.allowRCUpgrades",
        "apply.certificateRenewal",
        "apply.dryRun",
        "apply.etcdUpgrade",
        "apply.forceUpgrade",
        "apply.ignorePreflightErrors",
        "apply.imagePullPolicy",
        "apply.imagePullSerial",
        "apply.printConfig",
        "apply.skipPhases",
        "node",
        "node.certificateRenewal",
        "node.dryRun",
        "node.etcdUpgrade",
        "node.ignorePreflightErrors",
        "node.imagePullPolicy",
        "node.imagePullSerial",
        "node.skipPhases",
        "plan",
        "plan.kubernetesVersion",
        "plan.allowExperimentalUpgrades",
        "plan.allowRCUpgrades",
        "plan.dryRun",
        "plan.etcdUpgrade",
        "plan.ignorePreflightErrors",
        "plan.printConfig",
        "diff",
        "diff.kubernetesVersion",
        "diff.contextLines",
    },
    # Component configs kubeadm passes through (same in both kubeadm API versions).
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"): _COMMON_TOP
    | {
        "cgroupDriver",
        "containerRuntimeEndpoint",
        "maxPods",
        "clusterDNS",
        "clusterDNS[]",
        "clusterDomain",
        "rotateCertificates",
        "serverTLSBootstrap",
        "failSwapOn",
        "staticPodPath",
        "healthzBindAddress",
        "healthzPort",
    },
    ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"): _COMMON_TOP
    | {"mode", "clusterCIDR", "bindAddress", "metricsBindAddress"},
}

# In v1beta3 the *ExtraArgs fields are maps of flag -> value: their keys are free-form.
MAP_FIELDS_V1BETA3 = {"nodeRegistration.kubeletExtraArgs", "apiServer.extraArgs", "controllerManager.extraArgs",
                      "scheduler.extraArgs", "etcd.local.extraArgs", "featureGates"}
MAP_FIELDS_V1BETA4 = {"featureGates"}


def field_paths(doc: object, prefix: str = "", free_maps: frozenset[str] = frozenset()) -> set[str]:
    """Every dotted path in a parsed document (``[]`` for list items); below a free-form map only
    the map itself is reported."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.add(path)
            if path not in free_maps:
                out |= field_paths(value, path, free_maps)
    elif isinstance(doc, list):
        for item in doc:
            out.add(f"{prefix}[]")
            out |= field_paths(item, f"{prefix}[]", free_maps)
    return out


def unknown_fields(doc: dict) -> set[str]:
    """Paths in ``doc`` its (apiVersion, kind) does not accept; KeyError for an unknown kind."""
    key = (doc["apiVersion"], doc["kind"])
    free = MAP_FIELDS_V1BETA3 if doc["apiVersion"] == V1BETA3 else MAP_FIELDS_V1BETA4
    return field_paths(doc, free_maps=frozenset(free)) - ALLOWED[key]
