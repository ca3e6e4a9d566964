"""`kubeforge bundle verify DIR`: the checks `up` makes on the bundle (exit 3 for a bad one), then
what it holds per Kubernetes version and role, with sizes; -o json carries the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kubeforge.model.images import images_by_host
from kubeforge.model.versions import parse_kube
from tests.factories import make_cluster
from tests.unit.test_bundle_images import write_bundle
from tests.unit.test_offline_bundle import bundle, template  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def kf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", "bundle", "verify", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=False)


def images_of(version: str, stacked: bool = True) -> set[str]:
    c = make_cluster(Path("/tmp/kf-bundle-verify"), version=version, n_etcd=1, n_cp=1, n_workers=1)
    return {i.ref for imgs in images_by_host(c, parse_kube(version)).values() for i in imgs}


def test_a_good_bundle_is_listed_per_version_and_role_with_sizes(bundle):
    refs = images_of("1.34.2")  # external etcd, no kube-vip: no etcd or kube-vip image
    write_bundle(bundle, refs)
    res = kf(str(bundle), "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] and set(doc["kubernetes"]) == {"1.34.2", "1.35.1"}  # 1.36.0 has kubeadm only
    v134 = doc["kubernetes"]["1.34.2"]
    assert [p["package"] for p in v134["packages"]] == ["kubeadm", "kubectl", "kubelet"]
    cp, node = v134["images"]["control-plane"], v134["images"]["every node"]
    assert {i["ref"].rsplit("/", 1)[1] for i in cp["images"]} == {
        "kube-apiserver:v1.34.2", "kube-controller-manager:v1.34.2", "kube-scheduler:v1.34.2"}
    assert [m.split(":")[0] for m in cp["missing"]] == ["etcd", "kube-vip"]
    assert "stacked etcd only" in cp["missing"][0]
    assert node["missing"] == [] and len(node["images"]) == 3
    assert cp["size"] == sum(i["size"] for i in cp["images"]) > 0
    assert v134["size"] == sum(p["size"] for p in v134["packages"]) + cp["size"] + node["size"]
    # 1.35.1's packages are there, none of its images
    assert len(doc["kubernetes"]["1.35.1"]["images"]["control-plane"]["missing"]) == 5
    assert {p["package"] for p in doc["otherPackages"]} == {"containerd", "kubeadm"}
    assert doc["images"]["archives"] == len(refs) and doc["size"] == doc["index"]["size"] + doc["images"]["size"]
    table = kf(str(bundle))
    assert table.returncode == 0 and "images: control-plane" in table.stdout and "1.34.2" in table.stdout


def test_a_changed_archive_or_deb_is_exit_3_naming_it(bundle):
    write_bundle(bundle, images_of("1.34.2"))
    archive = next((bundle / "images").glob("kube-proxy_*.tar"))
    archive.write_bytes(archive.read_bytes()[:-1] + b"x")
    res = kf(str(bundle), "-o", "json")
    assert res.returncode == 3
    assert str(archive) in res.stderr and "sha256" in res.stderr
    assert json.loads(res.stdout)["error"]["exit_code"] == 3
    (bundle / "images" / "manifest.json").unlink()
    deb = next(bundle.glob("kubelet_1.35.1-*.deb"))
    deb.write_bytes(b"truncated")
    res = kf(str(bundle))
    assert res.returncode == 3 and str(deb) in res.stderr


def test_a_bundle_without_images_lists_packages_only_and_a_missing_dir_is_a_usage_error(bundle, tmp_path):
    res = kf(str(bundle), "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["images"] is None and "images" not in doc["kubernetes"]["1.34.2"]
    res = kf(str(tmp_path / "nope"))
    assert res.returncode == 2 and "not a directory" in res.stderr
    res = kf(str(tmp_path))  # a directory without an index
    assert res.returncode == 3 and "Packages: no such file" in res.stderr


# --- bundle create --from-dir ---------------------------------------------------------------------------

def create(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", "bundle", "create", "--from-dir", str(src), "--out",
                           str(out), *extra], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def downloads(template, tmp_path, refs) -> Path:
    """What an operator downloaded: .debs and `ctr images export` archives, under any names."""
    from tests.oci_archive import build_oci_archive

    src = tmp_path / "downloads"
    src.mkdir()
    for deb in template.glob("*.deb"):
        (src / deb.name).write_bytes(deb.read_bytes())
    for i, ref in enumerate(sorted(refs)):
        build_oci_archive(src / f"export-{i}.tar", ref)
    return src


def test_create_from_a_download_dir_writes_a_bundle_up_accepts(template, tmp_path):
    from kubeforge.plan.bundle import read_bundle
    from kubeforge.plan.bundle_images import read_image_part

    refs = images_of("1.34.2")
    res = create(downloads(template, tmp_path, refs), tmp_path / "bundle", "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["images"]["archives"] == len(refs) and set(doc["kubernetes"]) == {"1.34.2", "1.35.1"}
    out = tmp_path / "bundle"
    # the same readers `up` uses accept it: the index lists every .deb, the manifest every archive
    assert len(read_bundle(out).debs) == len(list(template.glob("*.deb")))
    part = read_image_part(out)
    assert {a.ref for a in part.archives} == refs
    assert all(a.file == a.ref.rsplit("/", 1)[1].replace(":", "_") + ".tar" for a in part.archives)


def test_create_refuses_a_non_empty_out_dir_and_a_tar_that_is_not_an_oci_archive(template, tmp_path):
    src = downloads(template, tmp_path, images_of("1.34.2"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    res = create(src, tmp_path / "used")
    assert res.returncode == 3 and "exists and is not an empty directory" in res.stderr
    (src / "junk.tar").write_bytes(b"not a tar")
    res = create(src, tmp_path / "new")
    assert res.returncode == 3 and f"{src / 'junk.tar'}: not an OCI archive" in res.stderr
    assert not (tmp_path / "new").exists()  # refused before anything was written
