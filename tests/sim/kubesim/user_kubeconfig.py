"""`kubeadm kubeconfig user`: a kubeconfig for another user, with a client certificate signed by the
cluster CA (CN = --client-name, O = each --org) that expires --validity-period from now.

The real command's rules, enforced: --client-name and --config are required flags (cobra's
"required flag(s) ... not set"); --validity-period is a Go duration (pflag's "invalid argument" for
anything else, e.g. "1d"); a period longer than a year (8760h) is a warning; the CA's certificate and
key must be in /etc/kubernetes/pki; the server is the config's controlPlaneEndpoint, else the
InitConfiguration's advertise address and bind port. The kubeconfig goes to stdout.
"""

from __future__ import annotations

import base64
import re
import sys
import time

from . import files, host, yamlish
from .host import SimError
from .tls import CERTIFICATE_VALIDITY, client_certificate

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([^\d.]*)")


def go_duration(text: str) -> float:
    """Seconds of a Go duration string (time.ParseDuration), with Go's error messages."""
    s = text
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f'time: invalid duration "{text}"')
        number, unit = m.groups()
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += float(number) * _UNITS[unit]
        pos = m.end()
    return sign * total


def go_string(seconds: float) -> str:
    """How Go prints a time.Duration of whole seconds (8760h0m0s)."""
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60}m{s % 60}s"


def _server(cfg: dict[str, dict]) -> str:
    cluster = cfg.get("ClusterConfiguration") or {}
    endpoint = cluster.get("controlPlaneEndpoint")
    if endpoint:
        return f"https://{endpoint}" if ":" in endpoint.rsplit("]", 1)[-1] else f"https://{endpoint}:6443"
    local = (cfg.get("InitConfiguration") or {}).get("localAPIEndpoint") or {}
    address = local.get("advertiseAddress")
    if not address:
        raise SimError("unable to select an IP from default routes.")
    return f"https://{address}:{local.get('bindPort', 6443)}"


def user(a, load_config) -> int:
    missing = [flag for flag, value in (("client-name", a.client_name), ("config", a.config)) if value is None]
    if missing:
        raise SimError("required flag(s) " + ", ".join(f'"{m}"' for m in missing) + " not set")
    if not a.config:
        raise SimError("the kubeadm configuration path cannot be empty")
    try:
        period = go_duration(a.validity_period)
    except ValueError as e:
        raise SimError(f'invalid argument "{a.validity_period}" for "--validity-period" flag: {e}') from None
    cfg = load_config(a.config)
    if period > CERTIFICATE_VALIDITY:
        print(f"WARNING: the specified certificate validity period {go_string(period)} is longer than the default "
              f"duration {go_string(CERTIFICATE_VALIDITY)}, this may increase security risks.", file=sys.stderr)
    cluster_name = (cfg.get("ClusterConfiguration") or {}).get("clusterName") or "kubernetes"
    ca = host.read(f"{files.PKI}/ca.crt") if host.exists(f"{files.PKI}/ca.crt") else ""
    if a.token:
        creds = {"token": a.token}
    else:
        crt, key = client_certificate(a.client_name, list(a.org or []), time.time() + period)
        creds = {"client-certificate-data": base64.b64encode(crt).decode(), "client-key-data": base64.b64encode(key).decode()}
    context = f"{a.client_name}@{cluster_name}"
    sys.stdout.write(yamlish.dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": _server(cfg),
                                                        "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": a.client_name}}],
        "current-context": context,
        "preferences": {},
        "users": [{"name": a.client_name, "user": creds}],
    }))
    return 0
