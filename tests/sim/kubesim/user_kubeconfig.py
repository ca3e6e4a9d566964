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
import os
import re
import subprocess
import sys
import tempfile
import time

from . import files, host, yamlish
from .host import SimError

CERTIFICATE_VALIDITY = 8760 * 3600.0  # kubeadm's CertificateValidity: one year
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


def _utc(t: float) -> str:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))


def _client_certificate(name: str, orgs: list[str], not_after: float) -> tuple[bytes, bytes]:
    ca_crt, ca_key = host.path(f"{files.PKI}/ca.crt"), host.path(f"{files.PKI}/ca.key")
    for file in ("ca.crt", "ca.key"):
        if not host.exists(f"{files.PKI}/{file}"):
            raise SimError(f"couldn't create a kubeconfig; the CA files couldn't be loaded: open {files.PKI}/{file}: "
                           "no such file or directory")
    subject = "".join(f"/O={o}" for o in orgs) + f"/CN={name}"
    with tempfile.TemporaryDirectory(prefix="kubesim-user-") as d:
        open(f"{d}/index.txt", "w").close()
        with open(f"{d}/ca.cnf", "w", encoding="utf-8") as f:
            f.write(f"[ca]\ndefault_ca = sim\n[sim]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}\ndefault_md = sha256\n"
                    "policy = any\nunique_subject = no\npreserve = yes\nrand_serial = yes\nx509_extensions = client\n"
                    "[any]\norganizationName = optional\ncommonName = supplied\n[client]\n"
                    "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage = clientAuth\n")
        old = os.umask(0o077)
        try:
            subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                            "-subj", subject, "-keyout", f"{d}/key.pem", "-out", f"{d}/req.csr"], check=True, capture_output=True)
            # kubeadm back-dates NotBefore a little against clock skew; the end is exactly now + period
            subprocess.run(["openssl", "ca", "-batch", "-config", f"{d}/ca.cnf", "-cert", ca_crt, "-keyfile", ca_key,
                            "-in", f"{d}/req.csr", "-out", f"{d}/crt.pem", "-notext",
                            "-startdate", _utc(time.time() - 300), "-enddate", _utc(not_after)],
                           check=True, capture_output=True)
        except subprocess.CalledProcessError as e:
            raise SimError(f"failure while creating the client certificate: {e.stderr.decode(errors='replace').strip()}") from None
        finally:
            os.umask(old)
        with open(f"{d}/crt.pem", "rb") as c, open(f"{d}/key.pem", "rb") as k:
            return c.read(), k.read()


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
        crt, key = _client_certificate(a.client_name, list(a.org or []), time.time() + period)
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
