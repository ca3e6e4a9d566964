"""Node and etcd files as the real programs read them: systemd-analyze on the etcd unit, and
containerd's own view of the rendered config (``containerd config dump``)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from kubeforge.render import render_host
from tests.golden.cases import CASES


def tool(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if Path(p).exists()), None)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install systemd containerd etcd-server)")
    return path


def rendered(case: str, host: str) -> dict[str, bytes]:
    c = CASES[case]()
    return {f.path: f.content for f in render_host(c, c.host(host))}


def test_etcd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / "etcd.service"
    unit.write_bytes(rendered("external-kube-vip", "etcd-1")["/etc/systemd/system/etcd.service"])
    result = subprocess.run([tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on mere parse warnings, so any line about our unit counts as a failure too
    complaints = [line for line in result.stderr.splitlines() if "etcd.service" in line]
    assert result.returncode == 0 and not complaints, result.stderr


def test_containerd_reads_systemd_cgroups_and_the_sandbox_image_from_the_rendered_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(rendered("external-kube-vip", "worker-1")["/etc/containerd/config.toml"])
    result = subprocess.run([tool("containerd"), "--config", str(cfg), "config", "dump"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    effective = tomllib.loads(result.stdout)
    cri = effective["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["containerd"]["runtimes"]["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.1"
