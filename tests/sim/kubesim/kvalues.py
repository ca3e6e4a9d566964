"""kubeadm's checks of config *values* (kconfig.py checks the field names), as `kubeadm config validate`,
`init` and `join` make them.

Sources: kubeadm's cmd/kubeadm/app/apis/kubeadm/validation/validation.go (ValidateNetworking,
ValidateServiceSubnetSize, ValidatePodSubnetNodeMask, ValidateBootstrapTokens, ValidateCertificateKey,
ValidateImagePullPolicy, ValidateEncryptionAlgorithm, ValidateAbsolutePath, ValidateAPIEndpoint,
ValidateMixedArguments), its constants (MinimumAddressesInServiceSubnet 10, MaximumBitsForServiceSubnet
20, MinimumAddressesInPodSubnet 14, PodSubnetNodeMaskMaxDiff 16, CertificateKeySize 32), Go's
time.ParseDuration for every metav1.Duration, and kube-proxy's own validation of `mode` (kubeadm
validates the component config it is handed). Errors read like kubeadm's field errors
(`networking.serviceSubnet: Invalid value: "…": …`), several joined as an aggregate `[a, b]`.
"""

from __future__ import annotations

import ipaddress
import re

from .host import SimError

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DURATION = re.compile(r"[-+]?(([0-9]*(\.[0-9]*)?)(ns|us|µs|ms|s|m|h))+")
_UNIT = re.compile(r"[0-9.]+([a-zµ]*)")
_MAX_DURATION_H = 2562047  # Go's time.Duration is int64 nanoseconds: 2562047h47m16.854775807s at most
_TOKEN = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")
_TOKEN_USAGES = {"signing", "authentication"}
_TOKEN_GROUP = re.compile(r"\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\Z")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
ENCRYPTION_ALGORITHMS = ("ECDSA-P256", "RSA-2048", "RSA-3072", "RSA-4096")
PROXY_MODES = ("", "iptables", "ipvs", "nftables")

# kubeadm init/join: the flags that may accompany --config (isAllowedFlag); any other is refused
MIXABLE_FLAGS = {"config", "ignore-preflight-errors", "dry-run", "kubeconfig", "node-name", "kubeconfig-dir",
                 "upload-certs", "print-join-command", "rootfs", "v", "log-file"}


def _invalid(path: str, value, detail: str) -> str:
    return f'{path}: Invalid value: "{value}": {detail}'


def go_duration(text) -> float | None:
    """Seconds, or None when Go's time.ParseDuration refuses the text."""
    s = str(text)
    if s in ("0", "+0", "-0"):
        return 0.0
    if not _DURATION.fullmatch(s):
        return None
    total = 0.0
    for n, _, _, unit in re.findall(r"(([0-9]*(\.[0-9]*)?))(ns|us|µs|ms|s|m|h)", s):
        total += float(n or 0) * {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    if abs(total) > _MAX_DURATION_H * 3600 + 2836:
        return None
    return -total if s.startswith("-") else total


def duration_error(text) -> str:
    s = str(text)
    if re.fullmatch(r"[-+]?[0-9.]+", s):
        return f'time: missing unit in duration "{s}"'
    unit = next((m for m in _UNIT.findall(s) if m and m not in ("ns", "us", "µs", "ms", "s", "m", "h")), None)
    if unit and _DURATION.fullmatch(s.replace(unit, "s")):
        return f'time: unknown unit "{unit}" in duration "{s}"'
    return f'time: invalid duration "{s}"'


def _subnets(path: str, text, min_addresses: int, errs: list[str]) -> list:
    parts = str(text).split(",")
    try:
        nets = [ipaddress.ip_network(p.strip(), strict=False) for p in parts]
    except ValueError:
        errs.append(_invalid(path, text, "couldn't parse subnet"))
        return []
    if len(nets) > 2 or (len(nets) == 2 and nets[0].version == nets[1].version):
        errs.append(_invalid(path, text, "expected one (IPv4 or IPv6) CIDR or two CIDRs from each family for "
                                         "dual-stack networking"))
    for n in nets:
        if n.num_addresses < min_addresses:
            errs.append(_invalid(path, n, f"subnet with {n.num_addresses} address(es) is too small, the minimum is "
                                          f"{min_addresses}"))
    return nets


def _extra_arg(component: dict | None, name: str):
    from .kconfig import extra_arg

    return extra_arg(component, name)


def _networking(cc: dict, errs: list[str]) -> None:
    net = cc.get("networking") or {}
    domain = net.get("dnsDomain")
    if domain is not None and not _DNS1123_SUBDOMAIN.fullmatch(str(domain)):
        errs.append(_invalid("networking.dnsDomain", domain, "a lowercase RFC 1123 subdomain must consist of lower "
                             "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                             "character"))
    if net.get("serviceSubnet"):
        for n in _subnets("networking.serviceSubnet", net["serviceSubnet"], 10, errs):
            if n.max_prefixlen - n.prefixlen > 20:
                errs.append(_invalid("networking.serviceSubnet", n, f"specified service subnet is too large; for "
                                     f"{n.max_prefixlen}-bit addresses, the mask must be >= {n.max_prefixlen - 20}"))
    if net.get("podSubnet"):
        nets = _subnets("networking.podSubnet", net["podSubnet"], 14, errs)
        cm = cc.get("controllerManager")
        if _extra_arg(cm, "allocate-node-cidrs") != "false":
            for n in nets:
                flag = "node-cidr-mask-size-ipv6" if n.version == 6 else "node-cidr-mask-size-ipv4"
                given = _extra_arg(cm, flag)
                try:
                    node_mask = int(given) if given is not None else (64 if n.version == 6 else 24)
                except ValueError:
                    errs.append(_invalid("networking.podSubnet", n, f"could not parse the value of the "
                                         f"kube-controller-manager flag {flag} as an integer"))
                    continue
                if n.prefixlen > node_mask:
                    errs.append(_invalid("networking.podSubnet", n, f"the size of pod subnet with mask {n.prefixlen} "
                                         f"is smaller than the size of node subnet with mask {node_mask}"))
                elif node_mask - n.prefixlen > 16:
                    errs.append(_invalid("networking.podSubnet", n, f"pod subnet mask ({n.prefixlen}) and node-mask "
                                         f"({node_mask}) difference is greater than 16"))


def _absolute(path: str, value, errs: list[str]) -> None:
    if value is not None and not str(value).startswith("/"):
        errs.append(_invalid(path, value, "path is not absolute"))


def _cluster(cc: dict, v4: bool, errs: list[str]) -> None:
    _networking(cc, errs)
    _absolute("certificatesDir", cc.get("certificatesDir"), errs)
    _absolute("etcd.local.dataDir", ((cc.get("etcd") or {}).get("local") or {}).get("dataDir"), errs)
    etcd = cc.get("etcd") or {}
    if etcd.get("local") is not None and etcd.get("external") is not None:
        errs.append(_invalid("etcd", "", ".Etcd.Local and .Etcd.External are mutually exclusive"))
    if v4:
        algo = cc.get("encryptionAlgorithm")
        if algo is not None and algo not in ENCRYPTION_ALGORITHMS:
            errs.append(_invalid("encryptionAlgorithm", algo, f'Invalid encryption algorithm "{algo}". Must be one of '
                                 f"[{' '.join(ENCRYPTION_ALGORITHMS)}]"))


def _node_registration(reg: dict, errs: list[str]) -> None:
    name = reg.get("name")
    if name is not None and not _DNS1123_SUBDOMAIN.fullmatch(str(name)):
        errs.append(_invalid("nodeRegistration.name", name, "a lowercase RFC 1123 subdomain must consist of lower "
                             "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                             "character"))
    policy = reg.get("imagePullPolicy")
    if policy is not None and policy not in PULL_POLICIES:
        errs.append(_invalid("nodeRegistration.imagePullPolicy", policy, "invalid pull policy"))


def _certificate_key(path: str, key, errs: list[str]) -> None:
    if not key:
        return
    try:
        size = len(bytes.fromhex(str(key)))
    except ValueError:
        errs.append(_invalid(path, key, "certificate key decoding error: encoding/hex: invalid byte"))
        return
    if size != 32:
        errs.append(_invalid(path, key, f"invalid certificate key size {size}, the key must be an AES key of size 32"))


def _endpoint(path: str, ep: dict | None, errs: list[str]) -> None:
    if not ep:
        return
    addr = ep.get("advertiseAddress")
    if addr:
        try:
            ipaddress.ip_address(str(addr))
        except ValueError:
            errs.append(_invalid(f"{path}.advertiseAddress", addr, "ip address is not valid"))
    port = ep.get("bindPort")
    if port is not None and not (isinstance(port, int) and 0 < port < 65536):
        errs.append(_invalid(f"{path}.bindPort", port, "port number is not valid"))


def _tokens(tokens: list, errs: list[str]) -> None:
    for i, t in enumerate(tokens or []):
        path = f"bootstrapTokens.{i}"
        if t.get("token") is not None and not _TOKEN.fullmatch(str(t["token"])):
            errs.append(_invalid(f"{path}.token", t["token"], "the bootstrap token is invalid"))
        usages = t.get("usages") or []
        bad = [u for u in usages if u not in _TOKEN_USAGES]
        if bad:
            errs.append(_invalid(f"{path}.usages", usages, f'invalid bootstrap token usage string: {bad[0]}, valid '
                                 f'usage options: {", ".join(sorted(_TOKEN_USAGES))}'))
        groups = t.get("groups") or []
        if groups and "authentication" not in usages:
            errs.append(_invalid(f"{path}.groups", groups, 'token groups cannot be specified unless --usages includes '
                                 '"authentication"'))
        for g in groups:
            if not _TOKEN_GROUP.match(str(g)):
                errs.append(_invalid(f"{path}.groups", groups, f'bootstrap group "{g}" is invalid (must match '
                                     f'\\Asystem:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]\\z)'))
        if t.get("ttl") is not None and t.get("expires") is not None:
            errs.append(_invalid(path, "", "the BootstrapToken .TTL and .Expires fields are mutually exclusive"))


def _component_configs(docs: dict, errs: list[str]) -> None:
    proxy = docs.get("KubeProxyConfiguration")
    if proxy is not None and str(proxy.get("mode") or "") not in PROXY_MODES:
        errs.append(_invalid("KubeProxyConfiguration.mode", proxy.get("mode"), "must be iptables, ipvs, nftables or "
                             "blank (blank means the best-available proxy [currently iptables])"))


# Every metav1.Duration kubeadm reads, per kind: a value Go's time.ParseDuration refuses fails decoding.
_DURATIONS = {
    "InitConfiguration": ("bootstrapTokens[].ttl", "timeouts.*"),
    "JoinConfiguration": ("discovery.timeout", "timeouts.*"),
    "ClusterConfiguration": ("certificateValidityPeriod", "caCertificateValidityPeriod",
                             "apiServer.timeoutForControlPlane"),
    "ResetConfiguration": ("timeouts.*",),
    "UpgradeConfiguration": ("timeouts.*",),
}


def _duration_values(doc: dict, spec: str):
    head, _, rest = spec.partition(".")
    if head.endswith("[]"):
        for i, item in enumerate(doc.get(head[:-2]) or []):
            for p, v in _duration_values(item or {}, rest):
                yield f"{head[:-2]}[{i}].{p}", v
        return
    value = doc.get(head)
    if not rest:
        if value is not None:
            yield head, value
        return
    if rest == "*":
        for k, v in (value or {}).items():
            yield f"{head}.{k}", v
        return
    yield from ((f"{head}.{p}", v) for p, v in _duration_values(value or {}, rest))


def check(docs: dict[str, dict], api: str | None) -> None:
    """Raise SimError with every value kubeadm would refuse in these documents (by kind)."""
    v4 = api == "kubeadm.k8s.io/v1beta4"
    for kind, specs in _DURATIONS.items():
        doc = docs.get(kind)
        for spec in specs if doc else ():
            for path, value in _duration_values(doc, spec):
                if go_duration(value) is None:
                    raise SimError(f"error unmarshaling configuration {api}, Kind={kind}: while decoding JSON: "
                                   f"{path}: {duration_error(value)}")
    errs: list[str] = []
    if "ClusterConfiguration" in docs:
        _cluster(docs["ClusterConfiguration"], v4, errs)
    ic = docs.get("InitConfiguration")
    if ic is not None:
        _node_registration(ic.get("nodeRegistration") or {}, errs)
        _tokens(ic.get("bootstrapTokens") or [], errs)
        _endpoint("localAPIEndpoint", ic.get("localAPIEndpoint"), errs)
        _certificate_key("certificateKey", ic.get("certificateKey"), errs)
    jc = docs.get("JoinConfiguration")
    if jc is not None:
        _node_registration(jc.get("nodeRegistration") or {}, errs)
        cp = jc.get("controlPlane") or {}
        _endpoint("controlPlane.localAPIEndpoint", cp.get("localAPIEndpoint"), errs)
        _certificate_key("controlPlane.certificateKey", cp.get("certificateKey"), errs)
    _component_configs(docs, errs)
    if errs:
        raise SimError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")


def refuse_mixed_flags(set_flags: list[str]) -> None:
    """kubeadm init/join with --config refuse any other flag but the few it allows (ValidateMixedArguments)."""
    if "config" not in set_flags:
        return
    mixed = [f for f in set_flags if f not in MIXABLE_FLAGS and not f.startswith("skip-")]
    if mixed:
        raise SimError(f"can not mix '--config' with arguments [{' '.join(mixed)}]")
