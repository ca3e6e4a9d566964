"""Benchmark: validate + render a generated 1,000-host inventory (and the PKI once).

Goals: under 2 s and under 200 MB peak RSS on the project machines. Printed next to a reference
measured in the same run (a bare ruamel.yaml parse of the same file, and rendering with template
compilation repeated per host, i.e. what kubeforge avoids). Not a test; run: python bench/render.py
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_SECONDS = 2.0
GOAL_RSS_MB = 200.0


def inventory_text(n_hosts: int) -> str:
    lines = [
        "apiVersion: kubeforge.io/v1alpha1",
        "kind: Cluster",
        "metadata:",
        "  name: bench",
        "spec:",
        "  kubernetesVersion: 1.34.2",
        "  network:",
        "    podCIDR: 172.16.0.0/12",
        "    serviceCIDR: 10.96.0.0/12",
        "  controlPlaneEndpoint:",
        "    host: 10.77.0.5",
        "    port: 6443",
        "    mode: kube-vip",
        "    interface: eth0",
        "  etcd:",
        "    topology: external",
        "    version: 3.5.21",
        "  packages:",
        "    source: mirror",
        "    mirrorURL: http://10.77.0.1:8080",
        "  ssh:",
        "    user: ops",
        "  hosts:",
    ]
    roles = ["etcd"] * 3 + ["control-plane"] * 3 + ["worker"] * (n_hosts - 6)
    for i, role in enumerate(roles):
        a, b = divmod(i + 10, 250)
        name = {"etcd": "etcd", "control-plane": "cp", "worker": "worker"}[role]
        lines += [f"    - name: {name}-{i}", f"      address: 10.77.{a + 1}.{b + 1}", f"      roles: [{role}]"]
    return "\n".join(lines) + "\n"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    args = parser.parse_args()

    import jinja2
    from ruamel.yaml import YAML

    from kubeforge.inventory import load
    from kubeforge.pki import ensure_pki, ensure_secrets, host_files
    from kubeforge.render import env as render_env
    from kubeforge.render import render_cluster

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(inventory_text(args.hosts))

        t0 = time.perf_counter()
        YAML(typ="safe", pure=True).load(path.read_text())
        t_parse_ref = time.perf_counter() - t0

        t0 = time.perf_counter()
        cluster = load(path).cluster
        t_load = time.perf_counter() - t0

        t0 = time.perf_counter()
        pki = ensure_pki(cluster)
        secrets = ensure_secrets(cluster)
        t_pki = time.perf_counter() - t0

        t0 = time.perf_counter()
        extra = {h.name: host_files(cluster, pki.bundle, h) for h in cluster.hosts}
        rendered = render_cluster(cluster, secrets=secrets, ca_cert_hash=pki.bundle.kube_ca_cert_hash, extra_files=extra)
        t_render = time.perf_counter() - t0
        n_files = sum(len(fs) for fs in rendered.values())
        n_bytes = sum(len(f.content) for fs in rendered.values() for f in fs)
        rss = peak_rss_mb()

        # Reference: the same render with every template compiled afresh per host (no shared
        # Environment cache), on a sample of hosts scaled to the whole inventory.
        sample = cluster.hosts[:50]
        real_env = render_env.environment
        filters = dict(real_env().filters)

        def fresh_environment() -> jinja2.Environment:
            env = jinja2.Environment(
                loader=render_env._TraversableLoader(render_env.template_root()),
                undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                lstrip_blocks=True, cache_size=0,
            )
            env.filters.update(filters)
            return env

        from kubeforge.render import render_host

        render_env.environment = fresh_environment  # type: ignore[assignment]
        try:
            t0 = time.perf_counter()
            for h in sample:
                render_host(cluster, h, secrets=secrets, ca_cert_hash=pki.bundle.kube_ca_cert_hash, extra_files=extra[h.name])
            t_uncached = (time.perf_counter() - t0) * len(cluster.hosts) / len(sample)
        finally:
            render_env.environment = real_env

    total = t_load + t_pki + t_render
    print(f"inventory: {args.hosts} hosts, {n_files} files, {n_bytes / 1e6:.1f} MB rendered")
    print(f"{'measure':44} {'value':>10} {'goal/ref':>12}")
    print(f"{'validate (inventory.load)':44} {t_load:>9.3f}s")
    print(f"{'PKI + secrets (once, fresh store)':44} {t_pki:>9.3f}s")
    print(f"{'render every host (with its PKI files)':44} {t_render:>9.3f}s")
    print(f"{'total: validate + PKI + render':44} {total:>9.3f}s {f'< {GOAL_SECONDS:.1f} s':>12}  {'OK' if total < GOAL_SECONDS else 'OVER GOAL'}")
    print(f"{'peak RSS':44} {rss:>8.1f}MB {f'< {GOAL_RSS_MB:.0f} MB':>12}  {'OK' if rss < GOAL_RSS_MB else 'OVER GOAL'}")
    print(f"{'ref: bare ruamel.yaml parse of the file':44} {t_parse_ref:>9.3f}s")
    print(f"{'ref: render recompiling templates per host':44} {t_uncached:>9.3f}s  (scaled from {len(sample)} hosts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
