"""The offline bundle: its index read and checked on this machine (real .debs built with dpkg-deb and
indexed by dpkg-scanpackages), what it offers, and how `up` and `upgrade` plan its push."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from kubeforge.errors import InputError, SafetyRefusal
from kubeforge.model import PackageSource, PackageSourceKind
from kubeforge.model.versions import parse_kube
from kubeforge.plan.bundle import (
    INDEX,
    load_bundle,
    offered_kubernetes,
    parse_packages,
    require_packages,
)
from kubeforge.plan.steps import PutFileStep, RunStep
from kubeforge.plan.up import ClusterState, UpContext
from kubeforge.plan.up.install_packages import InstallPackages
from kubeforge.plan.upgrade import plan_hop
from kubeforge.render.packages import BUNDLE_APT_OPTIONS, BUNDLE_DIR
from kubeforge.workflows.upgrade import offered_versions
from tests.factories import make_cluster
from tests.unit.test_up_planner import converged_facts, fresh_facts, resolve
from tests.unit.test_upgrade_planner import facts_at, noop_backup

KUBE = ("kubeadm", "kubelet", "kubectl")


def build_deb(out: Path, package: str, version: str) -> None:
    root = out.parent / f".src-{package}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@invalid>\n"
        f"Description: {package} for the bundle tests\n")
    (root / "usr" / "share" / package).mkdir(parents=True)
    (root / "usr" / "share" / package / "data").write_bytes(package.encode() * 1000)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)], check=True,
                   capture_output=True)
    shutil.rmtree(root)


def index(d: Path) -> None:
    res = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=d, capture_output=True, check=True)
    (d / INDEX).write_bytes(res.stdout)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bundle")
    for v in ("1.34.2", "1.35.1"):
        for p in KUBE:
            build_deb(d / f"{p}_{v}-1.1_all.deb", p, f"{v}-1.1")
    build_deb(d / "containerd_1.6.20-1_all.deb", "containerd", "1.6.20-1")
    # only kubeadm of 1.36.0: not a version the bundle can install
    build_deb(d / "kubeadm_1.36.0-1.1_all.deb", "kubeadm", "1.36.0-1.1")
    index(d)
    (d / "etcd-v3.5.16-linux-amd64.tar.gz").write_bytes(b"not apt's business")
    return d


@pytest.fixture
def bundle(template, tmp_path) -> Path:
    d = tmp_path / "bundle"
    shutil.copytree(template, d)
    return d


def offline(bundle: Path, **kw):
    c = make_cluster(bundle.parent, **kw)
    return dataclasses.replace(c, packages=PackageSource(kind=PackageSourceKind.OFFLINE, bundle_dir=bundle))


# --- the index --------------------------------------------------------------------------------------

def test_the_index_dpkg_scanpackages_writes_lists_every_deb_with_size_and_sha256(template):
    debs = parse_packages((template / INDEX).read_text(), "Packages")
    assert len(debs) == 8
    d = next(d for d in debs if d.package == "kubeadm" and d.version == "1.35.1-1.1")
    assert d.filename == "kubeadm_1.35.1-1.1_all.deb"  # "./" dropped: the remote path keeps the layout
    assert d.size == (template / d.filename).stat().st_size
    assert d.upstream_is("1.35.1") and not d.upstream_is("1.35")


def test_an_epoch_is_not_part_of_the_upstream_version():
    (d,) = parse_packages("Package: keepalived\nVersion: 1:2.2.7-1+b2\nFilename: ./k.deb\nSize: 1\nSHA256: " + "a" * 64 + "\n", "P")
    assert d.upstream_is("2.2.7")


def test_a_filename_leaving_the_bundle_dir_is_refused_naming_the_line():
    text = "Package: a\nVersion: 1-1\nFilename: ./a.deb\nSize: 1\nSHA256: " + "a" * 64 + "\n\n" \
           "Package: evil\nVersion: 1-1\nFilename: ../../etc/passwd\nSize: 1\nSHA256: " + "b" * 64 + "\n"
    with pytest.raises(InputError) as e:
        parse_packages(text, "/b/Packages")
    assert e.value.exit_code == 3 and "/b/Packages:7" in e.value.message and "outside the bundle dir" in e.value.message


def test_a_stanza_without_a_checksum_is_refused():
    with pytest.raises(InputError, match=r"P:1: a has no SHA256"):
        parse_packages("Package: a\nVersion: 1-1\nFilename: a.deb\nSize: 3\n", "P")


def test_a_verified_bundle_pushes_its_debs_then_its_index_and_nothing_else(bundle):
    b = load_bundle(offline(bundle))
    files = b.files()
    assert files[-1].path == f"{BUNDLE_DIR}/{INDEX}" and files[-1].local == bundle / INDEX
    assert {f.path for f in files[:-1]} == {f"{BUNDLE_DIR}/{p.name}" for p in bundle.glob("*.deb")}
    assert not any("etcd-v" in f.path for f in files)
    assert all(f.size == f.local.stat().st_size for f in files)


def test_a_flipped_byte_in_a_deb_is_refused_with_exit_3_naming_the_file_and_both_checksums(bundle):
    deb = bundle / "kubeadm_1.34.2-1.1_all.deb"
    data = bytearray(deb.read_bytes())
    listed = next(d.sha256 for d in parse_packages((bundle / INDEX).read_text(), "P") if d.filename == deb.name)
    data[len(data) // 2] ^= 0x01
    deb.write_bytes(bytes(data))
    with pytest.raises(InputError) as e:
        load_bundle(offline(bundle))
    assert e.value.exit_code == 3
    assert str(deb) in e.value.message and listed in e.value.message
    assert subprocess.run(["sha256sum", str(deb)], capture_output=True, text=True, check=True).stdout.split()[0] in e.value.message


def test_a_missing_deb_and_a_truncated_one_are_both_named(bundle):
    (bundle / "kubelet_1.35.1-1.1_all.deb").unlink()
    with (bundle / "containerd_1.6.20-1_all.deb").open("r+b") as f:
        f.truncate(10)
    with pytest.raises(InputError) as e:
        load_bundle(offline(bundle))
    assert "kubelet_1.35.1-1.1_all.deb: no such file" in e.value.message
    assert "containerd_1.6.20-1_all.deb: 10 bytes" in e.value.message


def test_a_bundle_without_its_index_says_how_to_make_one(bundle):
    (bundle / INDEX).unlink()
    with pytest.raises(InputError) as e:
        load_bundle(offline(bundle))
    assert "dpkg-scanpackages --multiversion ." in (e.value.hint or "")


def test_other_package_sources_have_no_bundle(tmp_path):
    assert load_bundle(make_cluster(tmp_path)) is None


# --- what it offers ---------------------------------------------------------------------------------

def test_a_version_the_bundle_lacks_is_refused_with_exit_7_naming_package_hosts_and_what_it_has(bundle):
    b = load_bundle(offline(bundle))
    with pytest.raises(SafetyRefusal) as e:
        require_packages(b, {"cp-1": {"kubeadm": "1.34.3", "containerd": None}, "w-1": {"kubeadm": "1.34.3", "haproxy": None}})
    msg = e.value.message
    assert e.value.exit_code == 7
    assert "kubeadm 1.34.3 (needed on cp-1, w-1; the bundle has 1.34.2-1.1, 1.35.1-1.1, 1.36.0-1.1)" in msg
    assert "haproxy (needed on w-1; the bundle has none)" in msg and "containerd" not in msg


def test_the_kubernetes_versions_offered_are_those_with_all_three_packages(bundle):
    c = offline(bundle, version="1.34.2")
    assert offered_kubernetes(load_bundle(c)) == {"1.34.2", "1.35.1"}
    # upgrade reads it on this machine: no pool, no host asked
    assert offered_versions(c, None, [parse_kube("1.35.1")]) == {parse_kube("1.34.2"), parse_kube("1.35.1")}


# --- up ---------------------------------------------------------------------------------------------

@pytest.fixture
def up_cluster(bundle):
    return offline(bundle, version="1.34.2", n_etcd=3, n_cp=1, n_workers=1)


def test_up_pushes_the_bundle_before_the_sources_and_installs_from_it_alone(up_cluster):
    _, files = resolve(up_cluster)
    ctx = UpContext(up_cluster, {h.name: fresh_facts(h.name) for h in up_cluster.hosts}, files, ClusterState())
    lanes = {ln.host: ln.steps for ln in InstallPackages().plan(ctx).lanes}
    assert set(lanes) == {"cp-1", "worker-1"}  # etcd comes from the release archive: no apt on members
    steps = lanes["worker-1"]
    pushes = [s for s in steps if isinstance(s, PutFileStep) and s.file.path.startswith(BUNDLE_DIR)]
    first_source = next(i for i, s in enumerate(steps) if isinstance(s, PutFileStep) and s.file.path.startswith("/etc/apt/"))
    install = next(s for s in steps if isinstance(s, RunStep) and s.key == "install-packages")
    assert len(pushes) == 9 and steps.index(pushes[-1]) < first_source < steps.index(install)
    assert pushes[-1].file.path == f"{BUNDLE_DIR}/{INDEX}"
    assert install.command.script.count(BUNDLE_APT_OPTIONS) == 2  # update and install read the bundle only
    # the plan line gives the size from the index: describing a push reads nothing from disk
    assert f"sha256:{pushes[0].file.sha256[:12]} ({pushes[0].file.size} bytes)" in pushes[0].describe()


def test_a_converged_host_gets_no_push_at_all(up_cluster):
    _, files = resolve(up_cluster)
    facts = {h.name: converged_facts(up_cluster, files, h) for h in up_cluster.hosts}
    for f in facts.values():
        f.packages.packages["containerd"] = "1.6.20-1"
    plan = InstallPackages().plan(UpContext(up_cluster, facts, files, ClusterState()))
    assert not [s for s in plan.steps if isinstance(s, PutFileStep) and s.file.path.startswith(BUNDLE_DIR)]


def test_up_refuses_an_inventory_version_the_bundle_lacks_before_any_step(bundle):
    c = offline(bundle, version="1.33.5", n_cp=1, n_workers=1)
    _, files = resolve(c)
    with pytest.raises(SafetyRefusal, match="kubeadm 1.33.5"):
        InstallPackages().plan(UpContext(c, {h.name: fresh_facts(h.name) for h in c.hosts}, files, ClusterState()))


# --- upgrade ----------------------------------------------------------------------------------------

def test_an_upgrade_hop_pushes_the_bundle_before_apt_reads_it_and_installs_from_it_alone(bundle):
    c = offline(bundle, version="1.34.2", n_cp=1, n_workers=1)
    plan = plan_hop(c, facts_at(c, parse_kube("1.34.2")), parse_kube("1.35.1"), backup=noop_backup)
    switch = next(p for p in plan.phases if p.name == "SwitchPackageSource")
    lane = next(ln for ln in switch.lanes if ln.host == "worker-1").steps
    pushes = [i for i, s in enumerate(lane) if isinstance(s, PutFileStep) and s.file.path.startswith(BUNDLE_DIR)]
    update = next(i for i, s in enumerate(lane) if isinstance(s, RunStep) and "apt-get update" in s.command.script)
    assert len(pushes) == 9 and max(pushes) < update
    assert BUNDLE_APT_OPTIONS in lane[update].command.script
    installs = [s for s in plan.steps if isinstance(s, RunStep) and "apt-get install" in (s.command.script or "")]
    assert installs and all(BUNDLE_APT_OPTIONS in s.command.script for s in installs)
    # each hop journals its own pushes: keys carry the version, and no two steps share one
    ids = [s.id for s in plan.steps]
    assert len(ids) == len(set(ids)) and all("v1.35.1-bundle-" in lane[i].id for i in pushes)


def test_every_offline_script_is_valid_bash(up_cluster):
    from kubeforge.plan.up.install_packages import install_script
    from kubeforge.plan.upgrade.commands import apt_update, install_held

    scripts = [install_script({"kubeadm": "1.34.2", "containerd": None}, ["kubeadm"], offline=True),
               apt_update("cp-1", parse_kube("1.35.1"), key="k", offline=True).command.script,
               install_held("cp-1", KUBE, parse_kube("1.35.1"), key="k", offline=True).command.script]
    for script in scripts:
        res = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr + script
