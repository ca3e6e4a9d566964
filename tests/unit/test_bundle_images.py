"""The offline bundle's images part: manifest checked locally before any host (exit 3 / exit 7), each
node pushed only its roles' archives, and the import script run against a real containerd."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kubeforge.errors import InputError, SafetyRefusal
from kubeforge.model import PackageSource, PackageSourceKind
from kubeforge.model.images import images_by_host, images_for_host
from kubeforge.model.versions import parse_kube
from kubeforge.plan.bundle_images import (
    IMAGES_DIR,
    MANIFEST,
    import_script,
    import_steps,
    load_image_part,
    present_guard,
    require_images,
)
from kubeforge.plan.steps import PutFileStep, RunStep
from tests.golden.cases import external_kube_vip
from tests.need import skip_or_fail
from tests.oci_archive import build_oci_archive


def write_bundle(root: Path, refs) -> Path:
    d = root / IMAGES_DIR
    d.mkdir(parents=True, exist_ok=True)
    entries = []
    for ref in sorted(refs):
        name = ref.rsplit("/", 1)[1].replace(":", "_") + ".tar"
        sha = build_oci_archive(d / name, ref)
        entries.append({"ref": ref, "file": name, "sha256": sha, "size": (d / name).stat().st_size})
    (d / MANIFEST).write_text(json.dumps({"schema": 1, "images": entries}, indent=1))
    return root


def offline(cluster, root: Path):
    return dataclasses.replace(cluster, packages=PackageSource(kind=PackageSourceKind.OFFLINE, bundle_dir=root))


@pytest.fixture
def cluster():
    return external_kube_vip()


@pytest.fixture
def every_image(cluster):
    return {i.ref for imgs in images_by_host(cluster).values() for i in imgs}


def test_a_bundle_without_images_dir_has_no_images_part(tmp_path, cluster):
    assert load_image_part(offline(cluster, tmp_path)) is None


def test_a_changed_archive_is_input_error_naming_it(tmp_path, cluster, every_image):
    write_bundle(tmp_path, every_image)
    victim = next((tmp_path / IMAGES_DIR).glob("pause_*.tar"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"x")
    with pytest.raises(InputError, match=rf"{victim}: sha256 [0-9a-f]{{64}}, {MANIFEST} for registry.k8s.io/pause:[0-9.]+ says") as exc:
        load_image_part(offline(cluster, tmp_path))
    assert exc.value.exit_code == 3


def test_a_missing_archive_and_a_broken_manifest_are_input_errors(tmp_path, cluster, every_image):
    write_bundle(tmp_path, every_image)
    gone = next((tmp_path / IMAGES_DIR).glob("kube-proxy_*.tar"))
    gone.unlink()
    with pytest.raises(InputError, match=rf"{gone}: no such file \({MANIFEST} for registry.k8s.io/kube-proxy:v[0-9.]+ lists it\)"):
        load_image_part(offline(cluster, tmp_path))
    (tmp_path / IMAGES_DIR / MANIFEST).write_text('{"schema": 1, "images": [{"ref": "x"}')
    with pytest.raises(InputError, match=rf"{MANIFEST}:1:\d+: not JSON"):
        load_image_part(offline(cluster, tmp_path))


def test_a_version_the_bundle_has_no_images_for_is_a_safety_refusal(tmp_path, cluster, every_image):
    part = load_image_part(offline(cluster, write_bundle(tmp_path, every_image)))
    require_images(part, images_by_host(cluster))  # the inventory's version: complete
    nxt = images_by_host(cluster, parse_kube("1.36.0"))
    with pytest.raises(SafetyRefusal, match=r"has no image archive for .*registry.k8s.io/kube-apiserver:v1.36.0 "
                                            r"\(needed on cp-1, cp-2, cp-3\)") as exc:
        require_images(part, nxt)
    assert exc.value.exit_code == 7


def test_each_node_is_pushed_only_the_archives_its_roles_need(tmp_path, cluster, every_image):
    part = load_image_part(offline(cluster, write_bundle(tmp_path, every_image)))
    cp, worker = cluster.control_planes[0], cluster.workers[0]
    cp_steps = import_steps(cp.name, part, images_for_host(cluster, cp))
    w_steps = import_steps(worker.name, part, images_for_host(cluster, worker))
    pushed = [s.file.path.rsplit("/", 1)[1] for s in w_steps if isinstance(s, PutFileStep)]
    assert sorted(p.split("_")[0] for p in pushed) == ["coredns", "kube-proxy", "pause"]
    assert len([s for s in cp_steps if isinstance(s, PutFileStep)]) == 7
    run = [s for s in w_steps if isinstance(s, RunStep)]
    assert len(run) == 1 and "ctr -n k8s.io images import /var/cache/kubeforge/images/" in run[0].command.script
    assert import_steps(cluster.etcd_members[0].name, part, images_for_host(cluster, cluster.etcd_members[0])) == []


@contextlib.contextmanager
def running_containerd(d: Path, config: str = 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'):
    """A real containerd on a private socket, root and state under ``d``; ``config``: the rest of
    its (version 2) config.toml."""
    if os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("ctr"):
        skip_or_fail("needs root, containerd and ctr")
    sock = d / "containerd.sock"
    (d / "config.toml").write_text(f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n{config}'
                                   f'\n[grpc]\n  address = "{sock}"\n')
    log = (d / "log").open("wb")
    proc = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["ctr", "--address", str(sock), "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"containerd did not start: {(d / 'log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield str(sock)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def containerd(tmp_path_factory):
    """A real containerd without CRI (no network): enough for `ctr images import`."""
    with running_containerd(Path(tmp_path_factory.mktemp("ctrd"))) as sock:
        yield sock


def test_real_containerd_loads_the_rendered_config_with_its_registry_config_path(tmp_path, monkeypatch):
    from kubeforge.inventory import load_cluster
    from kubeforge.render.registries import CERTS_DIR
    from tests.unit.test_render_golden import render_case
    monkeypatch.setenv("KUBEFORGE_REGISTRY_PASSWORD", "not-a-real-password")
    c = load_cluster(Path(__file__).resolve().parents[2] / "inventories" / "private-registry.yaml")
    config = next(f for f in render_case(c)["cp-1"] if f.path == "/etc/containerd/config.toml").content.decode()
    certs = tmp_path / "certs.d"
    body = config.replace("version = 2\n", "").replace(CERTS_DIR, str(certs))
    with running_containerd(tmp_path, body) as sock:
        plugins = subprocess.run(["ctr", "--address", sock, "plugins", "ls"], capture_output=True, text=True).stdout
    assert re.search(r"io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok", plugins), plugins
    assert f"ConfigPath:{certs}" in (tmp_path / "log").read_text()


def run(script: str, sock: str) -> subprocess.CompletedProcess:
    """As the transport runs it on a host: bash, set -euo pipefail (kubeforge.transport.script)."""
    from kubeforge.transport.base import Command
    from kubeforge.transport.script import script_for

    return subprocess.run(["bash", "-c", script_for(Command(script=script))], capture_output=True, text=True,
                          env={**os.environ, "CONTAINERD_ADDRESS": sock}, timeout=120)


def test_real_containerd_imports_the_archives_once_and_then_skips_them(tmp_path, cluster, containerd):
    worker = cluster.workers[0]
    refs = {i.ref for i in images_for_host(cluster, worker)}
    part = load_image_part(offline(cluster, write_bundle(tmp_path / "bundle", refs)))
    archives = sorted(part.archives, key=lambda a: a.ref)
    script = import_script(archives, directory=str(tmp_path / "bundle" / IMAGES_DIR))
    guard = present_guard(refs)
    assert run(guard, containerd).returncode != 0
    first = run(script, containerd)
    assert first.returncode == 0, first.stderr
    assert sorted(first.stdout.split("\n")[:-1]) == sorted(f"{r}: imported" for r in refs)
    listed = run("ctr -n k8s.io images ls -q", containerd).stdout.split()
    assert refs <= set(listed)
    assert run(guard, containerd).returncode == 0
    again = run(script, containerd)
    assert again.returncode == 0 and all(line.endswith(": already present") for line in again.stdout.splitlines())


def test_an_archive_holding_another_image_fails_the_import_naming_both(tmp_path, cluster, containerd):
    d = tmp_path / "bundle" / IMAGES_DIR
    d.mkdir(parents=True)
    sha = build_oci_archive(d / "pause.tar", "registry.k8s.io/pause:0.0.1")
    (d / MANIFEST).write_text(json.dumps({"schema": 1, "images": [
        {"ref": "registry.k8s.io/pause:3.10.1", "file": "pause.tar", "sha256": sha, "size": (d / "pause.tar").stat().st_size}]}))
    part = load_image_part(offline(cluster, tmp_path / "bundle"))
    result = run(import_script(part.archives, directory=str(d)), containerd)
    assert result.returncode == 1
    assert f"{d}/pause.tar did not hold registry.k8s.io/pause:3.10.1" in result.stderr


# --- the up phase -----------------------------------------------------------------------------------

def _ctx(c, converged=False):
    from kubeforge.plan.up import ClusterState, UpContext
    from tests.unit.test_up_planner import converged_facts, fresh_facts, resolve

    _, files = resolve(c)
    facts = {h.name: (converged_facts(c, files, h) if converged else fresh_facts(h.name)) for h in c.hosts}
    return UpContext(c, facts, files, ClusterState())


def test_up_imports_each_nodes_images_before_kubeadm_and_refuses_a_bundle_lacking_one(tmp_path, cluster, every_image):
    from kubeforge.plan.up import PHASES
    from kubeforge.plan.up.prepare_images import PrepareImages

    names = [p.name for p in PHASES]
    assert names.index("InstallPackages") < names.index("PrepareImages") < names.index("InitFirstControlPlane")
    c = offline(cluster, write_bundle(tmp_path, every_image))
    lanes = {lane.host: lane.steps for lane in PrepareImages().plan(_ctx(c)).lanes}
    assert set(lanes) == {h.name for h in c.nodes}  # etcd members run no images
    assert [s.title for s in lanes["worker-1"]][-1] == "Import 3 images into containerd (k8s.io)"
    next(tmp_path.joinpath(IMAGES_DIR).glob("kube-scheduler_*.tar")).unlink()
    with pytest.raises(InputError, match="kube-scheduler"):
        PrepareImages().plan(_ctx(c))
    write_bundle(tmp_path, every_image - {i.ref for i in images_for_host(c, c.workers[0]) if "coredns" in i.ref})
    (tmp_path / IMAGES_DIR / MANIFEST).write_text(json.dumps({"schema": 1, "images": [
        e for e in json.loads((tmp_path / IMAGES_DIR / MANIFEST).read_text())["images"] if "coredns" not in e["ref"]]}))
    with pytest.raises(SafetyRefusal, match=r"coredns/coredns:v[0-9.]+ \(needed on cp-1, cp-2, cp-3, worker-1, worker-2\)"):
        PrepareImages().plan(_ctx(c))


def test_registry_files_are_pushed_by_prepare_images_and_credentials_stay_out_of_the_plan(tmp_path, monkeypatch):
    from kubeforge.inventory import load_cluster
    from kubeforge.pki.registry import read_registry_access
    from kubeforge.plan.up import ClusterState, UpContext
    from kubeforge.plan.up.prepare_images import PrepareImages
    from kubeforge.render import render_cluster
    from tests.golden.cases import FAKE_CA_HASH, FakeSecrets
    from tests.unit.test_up_planner import fresh_facts

    monkeypatch.setenv("KUBEFORGE_REGISTRY_PASSWORD", "pw-that-must-not-show")
    c = load_cluster(Path(__file__).resolve().parents[2] / "inventories" / "private-registry.yaml")
    files = render_cluster(c, secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH, registry_access=read_registry_access(c))
    plan = PrepareImages().plan(UpContext(c, {h.name: fresh_facts(h.name) for h in c.hosts}, files, ClusterState()))
    puts = [s for s in plan.steps if isinstance(s, PutFileStep)]
    assert {s.file.path for s in puts if s.host == "worker-1"} == {
        "/etc/containerd/certs.d/docker.io/hosts.toml", "/etc/containerd/certs.d/docker.io/ca.crt",
        "/etc/containerd/certs.d/registry.site.example:5000/hosts.toml",
        "/etc/containerd/certs.d/registry.site.example:5000/ca.crt"}
    text = json.dumps([s.to_dict() for s in plan.steps]) + "\n".join(s.describe() for s in plan.steps)
    assert "pw-that-must-not-show" not in text and "Basic " not in text
    secret = next(s for s in puts if s.file.path.endswith("5000/hosts.toml"))
    assert secret.file.secret and secret.file.mode == 0o600 and "secret" in secret.describe()


def test_upgrade_refuses_a_hop_the_bundle_has_no_images_for_before_scanning_the_cluster(tmp_path, cluster, every_image,
                                                                                      monkeypatch):
    import kubeforge.workflows.upgrade as upgrade

    c = offline(cluster, write_bundle(tmp_path, every_image))
    monkeypatch.setattr(upgrade, "load_bundle", lambda cluster: None)  # the apt part is test_offline_bundle's
    monkeypatch.setattr(upgrade, "gather_upgrade_facts", lambda cluster, pool: object())
    monkeypatch.setattr(upgrade, "minors_to_read", lambda cluster, facts, target: [])
    monkeypatch.setattr(upgrade, "check_upgrade_safety", lambda cluster, facts, target, multi_hop: [parse_kube("1.35.1")])
    scanned = []
    monkeypatch.setattr(upgrade, "scan_removed_apis", lambda *a: scanned.append(a))
    with pytest.raises(SafetyRefusal, match=r"registry.k8s.io/kube-apiserver:v1.35.1 \(needed on cp-1, cp-2, cp-3\)"):
        upgrade.check(c, pool=None, target=parse_kube("1.35.1"), multi_hop=False)
    assert scanned == []
