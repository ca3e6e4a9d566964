"""kubeadm config files: strict field checking like `kubeadm config validate` (the field lists live here).

A schema maps each known field to None (any value), a nested schema (dict) or a one-element list holding
the schema of list items. Component configs (kubelet, kube-proxy) are accepted without field checks.
"""

from __future__ import annotations

from . import kvalues, yamlish
from .host import SimError

ANY = None

_ARGS_V4 = [{"name": ANY, "value": ANY}]
_VOLUMES = [{"name": ANY, "hostPath": ANY, "mountPath": ANY, "readOnly": ANY, "pathType": ANY}]
_ENV = [{"name": ANY, "value": ANY, "valueFrom": ANY}]
_TIMEOUTS = {k: ANY for k in ("controlPlaneComponentHealthCheck", "kubeletHealthCheck", "kubernetesAPICall",
                              "etcdAPICall", "tlsBootstrap", "discovery", "upgradeManifests")}
_TOKEN = [{"token": ANY, "description": ANY, "ttl": ANY, "expires": ANY, "usages": ANY, "groups": ANY}]
_TAINTS = [{"key": ANY, "value": ANY, "effect": ANY, "timeAdded": ANY}]


def _node_registration(v4: bool) -> dict:
    d = {"name": ANY, "criSocket": ANY, "taints": _TAINTS, "ignorePreflightErrors": ANY, "imagePullPolicy": ANY,
         "kubeletExtraArgs": _ARGS_V4 if v4 else ANY}
    if v4:
        d["imagePullSerial"] = ANY
    return d


def _component(v4: bool, apiserver: bool = False) -> dict:
    d = {"extraArgs": _ARGS_V4 if v4 else ANY, "extraVolumes": _VOLUMES}
    if v4:
        d["extraEnvs"] = _ENV
    if apiserver:
        d["certSANs"] = ANY
        if not v4:
            d["timeoutForControlPlane"] = ANY
    return d


def _schemas(v4: bool) -> dict[str, dict]:
    common = {"apiVersion": ANY, "kind": ANY}
    endpoint = {"advertiseAddress": ANY, "bindPort": ANY}
    extra = {"dryRun": ANY, "timeouts": _TIMEOUTS} if v4 else {}
    init = {**common, **extra, "bootstrapTokens": _TOKEN, "nodeRegistration": _node_registration(v4),
            "localAPIEndpoint": endpoint, "certificateKey": ANY, "skipPhases": ANY, "patches": {"directory": ANY}}
    local_etcd = {"imageRepository": ANY, "imageTag": ANY, "dataDir": ANY, "extraArgs": _ARGS_V4 if v4 else ANY,
                  "serverCertSANs": ANY, "peerCertSANs": ANY}
    if v4:
        local_etcd["extraEnvs"] = _ENV
    cluster = {**common, "etcd": {"local": local_etcd,
                                  "external": {"endpoints": ANY, "caFile": ANY, "certFile": ANY, "keyFile": ANY}},
               "networking": {"serviceSubnet": ANY, "podSubnet": ANY, "dnsDomain": ANY},
               "kubernetesVersion": ANY, "controlPlaneEndpoint": ANY, "apiServer": _component(v4, apiserver=True),
               "controllerManager": _component(v4), "scheduler": _component(v4),
               "dns": {"imageRepository": ANY, "imageTag": ANY, **({"disabled": ANY} if v4 else {})},
               "certificatesDir": ANY, "imageRepository": ANY, "featureGates": ANY, "clusterName": ANY}
    if v4:
        cluster.update({"proxy": {"disabled": ANY}, "encryptionAlgorithm": ANY,
                        "certificateValidityPeriod": ANY, "caCertificateValidityPeriod": ANY})
    discovery = {"bootstrapToken": {"token": ANY, "apiServerEndpoint": ANY, "caCertHashes": ANY,
                                    "unsafeSkipCAVerification": ANY},
                 "file": {"kubeConfigPath": ANY}, "tlsBootstrapToken": ANY}
    if not v4:
        discovery["timeout"] = ANY
    join = {**common, **extra, "nodeRegistration": _node_registration(v4), "caCertPath": ANY,
            "discovery": discovery, "controlPlane": {"localAPIEndpoint": endpoint, "certificateKey": ANY},
            "skipPhases": ANY, "patches": {"directory": ANY}}
    out = {"InitConfiguration": init, "ClusterConfiguration": cluster, "JoinConfiguration": join}
    if v4:
        phase = {"certificateRenewal": ANY, "dryRun": ANY, "etcdUpgrade": ANY, "ignorePreflightErrors": ANY,
                 "skipPhases": ANY, "patches": {"directory": ANY}, "imagePullPolicy": ANY, "imagePullSerial": ANY}
        out["ResetConfiguration"] = {**common, "cleanupTmpDir": ANY, "certificatesDir": ANY, "criSocket": ANY,
                                     "dryRun": ANY, "force": ANY, "ignorePreflightErrors": ANY, "skipPhases": ANY,
                                     "unmountFlags": ANY, "timeouts": _TIMEOUTS}
        out["UpgradeConfiguration"] = {
            **common, "timeouts": _TIMEOUTS,
            "apply": {**phase, "kubernetesVersion": ANY, "allowExperimentalUpgrades": ANY, "allowRCUpgrades": ANY,
                      "forceUpgrade": ANY, "printConfig": ANY},
            "node": phase,
            "plan": {"kubernetesVersion": ANY, "allowExperimentalUpgrades": ANY, "allowRCUpgrades": ANY,
                     "dryRun": ANY, "ignorePreflightErrors": ANY, "printConfig": ANY, "etcdUpgrade": ANY},
            "diff": {"kubernetesVersion": ANY, "contextLines": ANY}}
    return out


SCHEMAS = {"kubeadm.k8s.io/v1beta4": _schemas(True), "kubeadm.k8s.io/v1beta3": _schemas(False)}
# Config APIs a kubeadm minor no longer reads: kubeadm 1.37 removed v1beta3 (kubernetes/kubernetes#136016).
REMOVED_IN = {"kubeadm.k8s.io/v1beta3": (1, 37)}
# ... and those it does not read yet: v1beta4 came with kubeadm 1.31 (kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta4)
ADDED_IN = {"kubeadm.k8s.io/v1beta4": (1, 31)}
COMPONENT_CONFIGS = {("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"),
                     ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration")}


def _check(value, schema, where: str, gvk: str) -> None:
    if schema is ANY or value is None:
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise SimError(f"{gvk}: json: cannot unmarshal {type(value).__name__} into field {where} of type list")
        for i, item in enumerate(value):
            _check(item, schema[0], f"{where}[{i}]", gvk)
        return
    if not isinstance(value, dict):
        raise SimError(f"{gvk}: json: cannot unmarshal {type(value).__name__} into field {where} of type object")
    for key, sub in value.items():
        if key not in schema:
            name = f"{where}.{key}" if where else key
            raise SimError(f"error unmarshaling configuration {gvk}: strict decoding error: unknown field \"{name}\"")
        _check(sub, schema[key], f"{where}.{key}" if where else key, gvk)


def _minor(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    parts = version.lstrip("v").split(".")
    return int(parts[0]), int(parts[1])


def parse(text: str, source: str = "config", *, kubeadm_version: str | None = None) -> dict[str, dict]:
    """Documents by kind, each checked strictly; raises SimError like `kubeadm config validate`.
    ``kubeadm_version``: the kubeadm reading it, which refuses config APIs its minor removed."""
    try:
        docs = yamlish.load_all(text)
    except yamlish.YamlError as e:
        raise SimError(f"unable to read config from {source}: {e}") from None
    out: dict[str, dict] = {}
    api = None
    for doc in docs:
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            raise SimError(f"{source}: invalid configuration: every document needs apiVersion and kind")
        av, kind = doc["apiVersion"], doc["kind"]
        gvk = f"{av}, Kind={kind}"
        if (av, kind) in COMPONENT_CONFIGS:
            out[kind] = doc
            continue
        removed, mine = REMOVED_IN.get(av), _minor(kubeadm_version)
        if removed is not None and mine is not None and mine >= removed:
            # kubeadm's validateSupportedVersion wording for a removed API version
            raise SimError(f"your configuration file uses an old API spec: \"{av}\" (kind: \"{kind}\"). Please use "
                           f"kubeadm v{removed[0]}.{removed[1] - 1} instead and run 'kubeadm config migrate --old-config "
                           f"old.yaml --new-config new.yaml', which will write the new, similar spec using a newer API "
                           f"version.")
        added = ADDED_IN.get(av)
        if av not in SCHEMAS or (added is not None and mine is not None and mine < added):
            raise SimError(f"{source}: no kind \"{kind}\" is registered for version \"{av}\"")
        if kind not in SCHEMAS[av]:
            raise SimError(f"{source}: no kind \"{kind}\" is registered for version \"{av}\"")
        if api and api != av:
            raise SimError(f"{source}: mixed kubeadm API versions {api} and {av}")
        api = av
        if kind in out:
            raise SimError(f"{source}: duplicate {kind}")
        _check(doc, SCHEMAS[av][kind], "", gvk)
        out[kind] = doc
    if not out:
        raise SimError(f"{source}: no configuration documents found")
    kvalues.check(out, api)  # the values, as kubeadm's validation checks them
    out.setdefault("_apiVersion", {"value": api})
    return out


def extra_arg(component: dict | None, name: str):
    """An extraArgs value from either shape (v1beta4 list of name/value, v1beta3 map)."""
    args = (component or {}).get("extraArgs") or []
    if isinstance(args, dict):
        return args.get(name)
    for a in args:
        if a.get("name") == name:
            return a.get("value")
    return None
