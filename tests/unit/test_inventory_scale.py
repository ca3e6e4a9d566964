"""A 1,000-host inventory loads completely (speed is measured in bench/, never asserted here)."""

from __future__ import annotations

from pathlib import Path

from kubeforge.inventory import load


def big_inventory(n_workers: int = 994) -> str:
    """3 etcd + 3 control planes + ``n_workers`` workers, with labels, taints and per-host SSH."""
    lines = [
        "apiVersion: kubeforge.io/v1alpha1", "kind: Cluster", "metadata:", "  name: big", "spec:",
        "  kubernetesVersion: 1.35.1",
        "  network:", "    podCIDR: 10.128.0.0/12", "    serviceCIDR: 10.96.0.0/16",
        "  controlPlaneEndpoint:", "    host: 172.16.0.100", "    mode: kube-vip", "    interface: eth0",
        "  etcd:", "    topology: external", "  upgrade:", "    maxUnavailable: 10%", "  hosts:",
    ]
    for i in range(3):
        lines += [f"    - name: etcd-{i}", f"      address: 172.16.1.{i + 1}", "      roles: [etcd]"]
    for i in range(3):
        lines += [f"    - name: cp-{i}", f"      address: 172.16.2.{i + 1}", "      roles: [control-plane]"]
    for i in range(n_workers):
        lines += [
            f"    - name: worker-{i}", f"      address: 172.17.{i // 250}.{i % 250 + 1}",
            f"      internalAddress: 172.18.{i // 250}.{i % 250 + 1}", "      roles: [worker]",
            "      labels:", f"        node.kubernetes.io/pool: pool-{i % 8}", f"        example.com/rack: r{i % 40}",
        ]
        if i % 10 == 0:
            lines += ["      taints:", "        - {key: dedicated, value: batch, effect: NoSchedule}",
                      "      ssh: {port: 2222}"]
    return "\n".join(lines) + "\n"


def test_a_thousand_host_inventory_loads_every_host(tmp_path):
    inv = tmp_path / "big.yaml"
    inv.write_text(big_inventory())
    result = load(inv)
    c = result.cluster
    assert len(c.hosts) == 1000 and len(c.workers) == 994
    assert c.host("worker-10").ssh.port == 2222 and c.host("worker-11").ssh.port == 22
    assert c.upgrade.batch_size(len(c.workers)) == 99
    assert result.warnings == []


if __name__ == "__main__":  # python tests/unit/test_inventory_scale.py: a quick timing of load()
    import sys
    import time
    import tracemalloc

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/kubeforge-big.yaml")
    path.write_text(big_inventory())
    load(path)  # warm imports and pydantic's validators
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        load(path)
        runs.append(time.perf_counter() - t)
    tracemalloc.start()
    load(path)
    peak = tracemalloc.get_traced_memory()[1]
    print(f"load 1,000 hosts: best {min(runs) * 1000:.0f} ms, median {sorted(runs)[2] * 1000:.0f} ms, "
          f"peak traced memory {peak / 2**20:.1f} MiB")
