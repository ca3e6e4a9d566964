"""`kubeforge bundle create -i INVENTORY`: every image each role needs, pulled over the registry v2 API
from a real docker-registry on loopback (TLS from a test CA, htpasswd credentials) holding the test
tree's small images under their real names and tags; a CNI image through its configured mirror; the
.debs each role installs, with their dependencies, by apt-get from a loopback HTTP apt mirror of real
.debs (dpkg-deb, dpkg-scanpackages) laid out as packages.source: mirror expects; the result assembled
as `--from-dir` does and checked by `bundle verify`. A registry that refuses the password, a CA that
does not sign it, an image or a package the source lacks: one message naming it, and no --out."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kubeforge.inventory import load_cluster
from kubeforge.model.cluster import Role
from kubeforge.model.images import Image
from kubeforge.model.versions import parse_kube
from kubeforge.workflows.bundle_fetch import wanted_images
from tests import registry as R
from tests.unit.test_offline_bundle import build_deb

ROOT = Path(__file__).resolve().parents[2]
USER = "kubeforge-pull"
PASSWORD = "bundle-pull-9c2f"  # noqa: S105 (a test registry's password)
TO = "1.35.2"
CNI = "quay.io/cni/agent:v1.2.0"
ETCD_ARCHIVE = "etcd-v3.6.6-linux-amd64.tar.gz"  # comes through the quay.io mirror (the loopback registry)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """(URL, host:port, CA, the registry's directory: its storage is under data/)."""
    d = tmp_path_factory.mktemp("registry")
    with R.serving_registry(d, USER, PASSWORD) as served:
        yield (*served, d)


def deb(out: Path, package: str, version: str, depends: str = "") -> None:
    root = out.parent / f".src-{package}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: amd64\nMaintainer: t <t@invalid>\n"
        + (f"Depends: {depends}\n" if depends else "") + f"Description: {package} for the bundle create tests\n")
    (root / "usr" / "share" / package).mkdir(parents=True)
    (root / "usr" / "share" / package / "data").write_bytes(package.encode() * 500)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)], check=True,
                   capture_output=True)
    shutil.rmtree(root)


# What the mirror holds: kubeadm needs cri-tools (same repository), containerd needs runc (Debian's).
KUBE_REPO = {**{(p, f"{v}-1.1"): ("cri-tools" if p == "kubeadm" else "")
                for v in ("1.35.1", TO) for p in ("kubeadm", "kubelet", "kubectl")},
             ("cri-tools", "1.35.0-1.1"): ""}
DEBIAN_REPO = {("containerd", "1.7.24~ds1-6"): "runc (>= 1.1)", ("runc", "1.1.15+ds1-2"): "",
               ("etcd-client", "3.6.6-1"): "", ("haproxy", "2.6.12-1"): ""}


@pytest.fixture(scope="module")
def apt_mirror(tmp_path_factory):
    """A flat apt mirror over HTTP on loopback: {url}/kubernetes/v1.35/deb/ and {url}/debian/."""
    if not (shutil.which("dpkg-deb") and shutil.which("dpkg-scanpackages") and shutil.which("apt-get")):
        from tests.need import skip_or_fail
        skip_or_fail("needs dpkg-deb, dpkg-scanpackages and apt-get")
    d = tmp_path_factory.mktemp("mirror")
    for sub, repo in (("kubernetes/v1.35/deb", KUBE_REPO), ("debian", DEBIAN_REPO)):
        (d / sub).mkdir(parents=True)
        for (p, v), dep in repo.items():
            deb(d / sub / f"{p}_{v}_amd64.deb", p, v, dep)
        res = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=d / sub, capture_output=True, check=True)
        (d / sub / "Packages").write_bytes(res.stdout)
    (d / "etcd" / "v3.6.6").mkdir(parents=True)  # etcd.releaseURL's layout, a stand-in archive
    (d / "etcd" / "v3.6.6" / ETCD_ARCHIVE).write_bytes(b"etcd release archive stand-in\n" * 100)
    (d / "etcd" / "v3.6.6" / "SHA256SUMS").write_text(
        f"{hashlib.sha256((d / 'etcd' / 'v3.6.6' / ETCD_ARCHIVE).read_bytes()).hexdigest()}  {ETCD_ARCHIVE}\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(d)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_inventory(d: Path, reg_host: str, ca: Path, mirror: str = "http://127.0.0.1:9/none", **images_over) -> Path:
    doc = YAML(typ="safe").load((ROOT / "inventories" / "private-registry.yaml").read_text())
    doc["spec"]["packages"] = {"source": "mirror", "mirrorURL": mirror}
    (d / "cni.yaml").write_text("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  template:\n"
                                f"    spec:\n      containers:\n        - name: agent\n          image: {CNI}\n")
    doc["spec"]["network"]["cni"] = {"name": "custom", "manifest": "cni.yaml"}
    doc["spec"]["images"] = {"repository": f"{reg_host}/k8s", "ca": str(ca),
                             "mirrors": {"quay.io": [f"https://{reg_host}"]},
                             "credentials": {reg_host: {"username": USER, "passwordEnv": "KUBEFORGE_REGISTRY_PASSWORD"}},
                             **images_over}
    with (d / "inv.yaml").open("w") as f:
        YAML().dump(doc, f)
    return d / "inv.yaml"


def wanted(inv: Path, roles=(Role.CONTROL_PLANE, Role.WORKER)) -> dict[Image, set[str]]:
    os.environ.setdefault("KUBEFORGE_REGISTRY_PASSWORD", PASSWORD)  # load_cluster reads no password; be safe
    c = load_cluster(inv)
    return wanted_images(c, [c.kubernetes_version, parse_kube(TO)], roles)


def push_all(url: str, reg_host: str, refs, ca: Path) -> None:
    for ref in refs:
        path = ref.removeprefix(f"{reg_host}/").removeprefix("quay.io/")
        R.push(url, path, ref, auth=R.basic(USER, PASSWORD), ca=ca)


def push_index(url: str, repo_tag: str, ref: str, ca: Path) -> dict:
    """``ref`` as a multi-platform image: an OCI index of its linux/amd64 manifest (the test tree's
    image) and a linux/arm64 one (another config, same layer). Returns the index."""
    from tests.sim.kubesim.images import digest, image_parts

    repo, tag = repo_tag.rsplit(":", 1)
    h = {"Authorization": R.basic(USER, PASSWORD)}
    amd64, (layer, config), _ = image_parts(ref)
    arm_config = json.dumps({**json.loads(config), "architecture": "arm64"}, sort_keys=True).encode()
    arm64 = json.dumps({**json.loads(amd64), "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                        "digest": digest(arm_config), "size": len(arm_config)}},
                       sort_keys=True).encode()
    for blob in (layer, config, arm_config):
        _, headers = R._request("POST", f"{url}/v2/{repo}/blobs/uploads/", b"", h, ca)
        loc = headers["Location"] if headers["Location"].startswith("http") else url + headers["Location"]
        R._request("PUT", f"{loc}{'&' if '?' in loc else '?'}digest={digest(blob)}", blob,
                   {**h, "Content-Type": "application/octet-stream"}, ca)
    manifests = []
    for body, arch in ((amd64, "amd64"), (arm64, "arm64")):
        R._request("PUT", f"{url}/v2/{repo}/manifests/{digest(body)}", body,
                   {**h, "Content-Type": "application/vnd.oci.image.manifest.v1+json"}, ca)
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(body),
                          "size": len(body), "platform": {"os": "linux", "architecture": arch}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    R._request("PUT", f"{url}/v2/{repo}/manifests/{tag}", json.dumps(index).encode(),
               {**h, "Content-Type": "application/vnd.oci.image.index.v1+json"}, ca)
    return index


@pytest.fixture(scope="module")
def site(registry, apt_mirror, tmp_path_factory):
    """The registry holding every image the inventory's roles need at 1.35.1 and 1.35.2, the apt
    mirror, and a directory of kubeadm/kubelet/kubectl .debs for both (the --from-dir way)."""
    url, reg_host, ca, _ = registry
    d = tmp_path_factory.mktemp("site")
    inv = write_inventory(d, reg_host, ca, apt_mirror)
    push_all(url, reg_host, [i.ref for i in wanted(inv) if i.ref != CNI], ca)
    push_index(url, CNI.removeprefix("quay.io/"), CNI, ca)  # a multi-platform image, as CNI images are
    debs = d / "debs"
    debs.mkdir()
    for v in ("1.35.1", TO):
        for p in ("kubeadm", "kubelet", "kubectl"):
            build_deb(debs / f"{p}_{v}-1.1_all.deb", p, f"{v}-1.1")
    return inv, debs


def kf(*args: str, password: str = PASSWORD) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBEFORGE_REGISTRY_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "kubeforge", "bundle", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env, check=False)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".b.partial", "b")))


def test_create_fetches_every_image_each_role_needs_and_verify_lists_exactly_those(site, tmp_path):
    inv, debs = site
    res = kf("create", "-i", str(inv), "--to", TO, "--from-dir", str(debs), "--out", str(tmp_path / "b"), "-o", "json")
    assert res.returncode == 0, res.stderr
    assert PASSWORD not in res.stdout + res.stderr
    created = json.loads(res.stdout)
    want = wanted(inv)
    assert {f["ref"]: set(f["roles"]) for f in created["fetched"]["images"]} == {i.ref: r for i, r in want.items()}
    assert {f["from"] for f in created["fetched"]["images"] if f["ref"] == CNI} == {f"https://{inv_host(inv)}"}
    res = kf("verify", str(tmp_path / "b"), "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    manifest = json.loads((tmp_path / "b" / "images" / "manifest.json").read_text())
    assert sorted(e["ref"] for e in manifest["images"]) == sorted(i.ref for i in want)
    c = load_cluster(inv)
    cp = next(h for h in c.hosts if h.is_control_plane)
    for v in ("1.35.1", TO):
        entry = doc["kubernetes"][v]
        assert [p["package"] for p in entry["packages"]] == ["kubeadm", "kubectl", "kubelet"]
        listed = {i["ref"] for r in entry["images"].values() for i in r["images"]}
        from kubeforge.model.images import images_for_host
        model = {i.ref for i in images_for_host(c, cp, parse_kube(v)) if i.component != "cni"}
        assert listed == model  # stacked etcd and kube-vip included: nothing missing, nothing more
        assert all(r["missing"] == [] for r in entry["images"].values())
    assert [i["ref"] for i in doc["otherImages"]] == [CNI]  # every node's, whatever the version
    assert doc["size"] == created["size"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.partial")]
    table = kf("verify", str(tmp_path / "b"))
    assert table.returncode == 0 and "images: control-plane" in table.stdout


def mirror_of(inv: Path) -> str:
    return YAML(typ="safe").load(inv.read_text())["spec"]["packages"]["mirrorURL"]


def inv_host(inv: Path) -> str:
    return YAML(typ="safe").load(inv.read_text())["spec"]["images"]["repository"].split("/", 1)[0]


def test_the_archives_written_are_what_ctr_images_import_reads(site, tmp_path):
    from tests.unit.test_bundle_images import running_containerd

    inv, debs = site
    res = kf("create", "-i", str(inv), "--roles", "worker", "--from-dir", str(debs), "--out", str(tmp_path / "b"),
             "-o", "json")
    assert res.returncode == 0, res.stderr
    refs = sorted(f["ref"] for f in json.loads(res.stdout)["fetched"]["images"])
    assert refs == sorted(i.ref for i in wanted(inv, (Role.WORKER,)) if i.tag != f"v{TO}")
    assert not any("kube-apiserver" in r for r in refs)
    entries = json.loads((tmp_path / "b" / "images" / "manifest.json").read_text())["images"]
    [cni] = [e for e in entries if e["ref"] == CNI]
    with tarfile.open(tmp_path / "b" / "images" / cni["file"]) as t:
        index = json.loads(t.extractfile("index.json").read())  # type: ignore[union-attr]
        blobs = {m.name for m in t.getmembers() if m.name.startswith("blobs/")}
    [target] = index["manifests"]  # the image is the index, as a pull records it: amd64's content only
    assert target["mediaType"] == "application/vnd.oci.image.index.v1+json"
    listed = json.loads(t_read(tmp_path / "b" / "images" / cni["file"], f"blobs/sha256/{target['digest'][7:]}"))
    amd64, arm64 = (m["digest"][7:] for m in listed["manifests"])
    assert f"blobs/sha256/{amd64}" in blobs and f"blobs/sha256/{arm64}" not in blobs and len(blobs) == 4
    (tmp_path / "ctrd").mkdir()
    with running_containerd(tmp_path / "ctrd") as sock:
        for e in entries:
            imp = subprocess.run(["ctr", "--address", sock, "-n", "k8s.io", "images", "import",
                                  str(tmp_path / "b" / "images" / e["file"])], capture_output=True, text=True)
            assert imp.returncode == 0, imp.stderr
        listed = subprocess.run(["ctr", "--address", sock, "-n", "k8s.io", "images", "ls", "-q"], capture_output=True,
                                text=True, check=True).stdout.split()
    assert sorted(listed) == refs


def t_read(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as t:
        return t.extractfile(name).read()  # type: ignore[union-attr]


def test_a_wrong_password_is_exit_4_naming_the_registry_and_leaves_no_out(site, tmp_path):
    inv, debs = site
    res = kf("create", "-i", str(inv), "--from-dir", str(debs), "--out", str(tmp_path / "b"), password="wrong-pw-1")
    assert res.returncode == 4, res.stderr
    assert f"registry https://{inv_host(inv)}" in res.stderr and "credentials were refused" in res.stderr
    assert "wrong-pw-1" not in res.stdout + res.stderr and "Traceback" not in res.stderr
    assert leftovers(tmp_path) == []


def test_a_ca_that_does_not_sign_the_registry_is_exit_5_and_leaves_no_out(site, tmp_path):
    inv, debs = site
    other = R.make_ca(tmp_path / "other-ca", "not the registry's CA")
    bad = write_inventory(tmp_path, inv_host(inv), other, mirror_of(inv))
    res = kf("create", "-i", str(bad), "--from-dir", str(debs), "--out", str(tmp_path / "b"))
    assert res.returncode == 5, res.stderr
    assert f"[https://{inv_host(inv)}] registry unreachable" in res.stderr and "CERTIFICATE_VERIFY_FAILED" in res.stderr
    assert "Traceback" not in res.stderr and leftovers(tmp_path) == []


def test_an_image_the_registry_lacks_is_exit_4_naming_it_and_leaves_no_out(site, tmp_path):
    inv, debs = site
    res = kf("create", "-i", str(inv), "--to", "1.35.0", "--from-dir", str(debs), "--out", str(tmp_path / "b"))
    assert res.returncode == 4, res.stderr
    assert f"image {inv_host(inv)}/k8s/kube-apiserver:v1.35.0 not found" in res.stderr
    assert "MANIFEST_UNKNOWN" in res.stderr and leftovers(tmp_path) == []


def test_an_empty_out_dir_is_filled_and_a_used_one_refused_before_any_download(site, tmp_path):
    inv, debs = site
    (tmp_path / "b").mkdir()
    res = kf("create", "-i", str(inv), "--roles", "worker", "--from-dir", str(debs), "--out", str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "b" / "images" / "manifest.json").is_file()
    res = kf("create", "-i", str(inv), "--roles", "worker", "--from-dir", str(debs), "--out", str(tmp_path / "b"))
    assert res.returncode == 3 and "exists and is not an empty directory" in res.stderr
    res = kf("create", "-i", str(inv), "--roles", "gpu", "--out", str(tmp_path / "c"))
    assert res.returncode == 2 and "--roles: unknown role 'gpu'" in res.stderr


# --- the .debs from the inventory's apt mirror -------------------------------------------------------------

def test_create_downloads_each_roles_packages_with_their_dependencies_from_the_apt_mirror(site, tmp_path):
    inv, _ = site
    res = kf("create", "-i", str(inv), "--to", TO, "--out", str(tmp_path / "b"), "-o", "json")
    assert res.returncode == 0, res.stderr
    created = json.loads(res.stdout)
    assert created["fetched"]["packages"]["from"] == mirror_of(inv)
    res = kf("verify", str(tmp_path / "b"), "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    for v in ("1.35.1", TO):
        assert [(p["package"], p["version"]) for p in doc["kubernetes"][v]["packages"]] == [
            ("kubeadm", f"{v}-1.1"), ("kubectl", f"{v}-1.1"), ("kubelet", f"{v}-1.1")]
        assert all(r["missing"] == [] for r in doc["kubernetes"][v]["images"].values())
    # the nodes' containerd and the control planes' etcd-client (stacked etcd), and what they need;
    # haproxy is on the mirror but no host of a kube-vip cluster installs it
    assert {(p["package"], p["version"]) for p in doc["otherPackages"]} == {
        ("containerd", "1.7.24~ds1-6"), ("runc", "1.1.15+ds1-2"), ("etcd-client", "3.6.6-1"), ("cri-tools", "1.35.0-1.1")}
    assert sorted(f.name for f in (tmp_path / "b").glob("*.deb")) == sorted(created["fetched"]["packages"]["debs"])
    table = kf("create", "-i", str(inv), "--roles", "worker", "--out", str(tmp_path / "t"))
    assert table.returncode == 0, table.stderr
    assert f"fetched 4 images from https://{inv_host(inv)}; 6 .debs from {mirror_of(inv)}" in " ".join(table.stdout.split())


def test_what_a_hosts_dpkg_status_already_has_is_not_fetched(site, tmp_path):
    inv, _ = site
    (tmp_path / "status").write_text("Package: runc\nStatus: install ok installed\nArchitecture: amd64\n"
                                     "Version: 1.1.15+ds1-2\nDescription: already there\n")
    res = kf("create", "-i", str(inv), "--roles", "worker", "--dpkg-status", str(tmp_path / "status"),
             "--out", str(tmp_path / "b"), "-o", "json")
    assert res.returncode == 0, res.stderr
    debs = json.loads(res.stdout)["fetched"]["packages"]["debs"]
    assert sorted(d.split("_")[0] for d in debs) == ["containerd", "cri-tools", "kubeadm", "kubectl", "kubelet"]


def test_a_version_the_mirror_lacks_is_exit_4_naming_the_mirror_and_leaves_no_out(site, registry, tmp_path):
    inv, _ = site
    url, reg_host, ca, _ = registry
    push_all(url, reg_host, [f"{reg_host}/k8s/kube-proxy:v1.35.3"], ca)  # the images are there, not the .debs
    res = kf("create", "-i", str(inv), "--roles", "worker", "--to", "1.35.3", "--out", str(tmp_path / "b"))
    assert res.returncode == 4, res.stderr
    assert f"apt mirror {mirror_of(inv)}: cannot download kubeadm=1.35.3-*" in res.stderr
    assert "Version '1.35.3-*' for 'kubeadm' was not found" in res.stderr and "Traceback" not in res.stderr
    assert leftovers(tmp_path) == []


def test_roles_that_install_nothing_make_no_bundle(site, tmp_path):
    inv, _ = site
    res = kf("create", "-i", str(inv), "--roles", "etcd", "--out", str(tmp_path / "b"))
    assert res.returncode == 2, res.stderr  # stacked etcd: an etcd-only host would install nothing
    assert "hosts of roles etcd run no images and install no packages" in res.stderr
    assert leftovers(tmp_path) == []


def test_an_apt_mirror_that_is_not_there_is_exit_5_naming_it(site, tmp_path):
    inv, _ = site
    reg = YAML(typ="safe").load(inv.read_text())["spec"]["images"]
    bad = write_inventory(tmp_path, inv_host(inv), Path(reg["ca"]), "http://127.0.0.1:9/kubeforge")
    res = kf("create", "-i", str(bad), "--roles", "worker", "--out", str(tmp_path / "b"))
    assert res.returncode == 5, res.stderr
    assert "[http://127.0.0.1:9/kubeforge] apt mirror unreachable" in res.stderr and "Traceback" not in res.stderr
    assert leftovers(tmp_path) == []


def test_etcd_from_release_archives_brings_the_archive_and_its_sha256sums(site, tmp_path):
    inv, _ = site
    doc = YAML(typ="safe").load(inv.read_text())
    doc["spec"]["etcd"]["releaseURL"] = mirror_of(inv) + "/etcd"
    doc["spec"]["network"]["cni"]["manifest"] = str(inv.parent / "cni.yaml")
    with (tmp_path / "inv.yaml").open("w") as f:
        YAML().dump(doc, f)
    res = kf("create", "-i", str(tmp_path / "inv.yaml"), "--out", str(tmp_path / "b"), "-o", "json")
    assert res.returncode == 0, res.stderr
    created = json.loads(res.stdout)
    assert created["fetched"]["etcd"] == [ETCD_ARCHIVE]
    # etcdctl comes with the archive now: no etcd-client .deb
    assert "etcd-client" not in {p["package"] for p in created["otherPackages"]}
    sums = (tmp_path / "b" / "SHA256SUMS").read_text().split()
    assert sums == [hashlib.sha256((tmp_path / "b" / ETCD_ARCHIVE).read_bytes()).hexdigest(), ETCD_ARCHIVE]
    res = kf("create", "-i", str(tmp_path / "inv.yaml"), "--roles", "worker", "--out", str(tmp_path / "w"), "-o", "json")
    assert res.returncode == 0 and json.loads(res.stdout)["fetched"]["etcd"] == []  # workers run no etcd


def test_the_sites_own_offline_inventory_takes_its_debs_from_the_mirror_named_on_the_command_line(site, tmp_path):
    inv, _ = site
    doc = YAML(typ="safe").load(inv.read_text())
    doc["spec"]["packages"] = {"source": "offline", "bundleDir": str(tmp_path / "b")}  # what the site will run
    doc["spec"]["etcd"]["releaseURL"] = mirror_of(inv) + "/etcd"
    doc["spec"]["network"]["cni"]["manifest"] = str(inv.parent / "cni.yaml")
    with (tmp_path / "site.yaml").open("w") as f:
        YAML().dump(doc, f)
    res = kf("create", "-i", str(tmp_path / "site.yaml"), "--out", str(tmp_path / "b"))
    assert res.returncode == 2 and "packages.source is offline" in res.stderr and "--mirror URL" in res.stderr
    res = kf("create", "-i", str(tmp_path / "site.yaml"), "--mirror", mirror_of(inv), "--out", str(tmp_path / "b"),
             "-o", "json")
    assert res.returncode == 0, res.stderr
    created = json.loads(res.stdout)
    assert created["fetched"]["packages"]["from"] == mirror_of(inv) and created["fetched"]["etcd"] == [ETCD_ARCHIVE]
    assert {p["package"] for p in created["otherPackages"]} == {"containerd", "runc", "cri-tools"}  # etcdctl: archive
    assert kf("verify", str(tmp_path / "b")).returncode == 0


def test_a_redirect_to_another_host_never_carries_the_registry_credentials(site, tmp_path):
    """Registries send blob downloads to their storage with a redirect: the password stays home."""
    import urllib.request

    from kubeforge.workflows.bundle_fetch import RegistryClient

    seen: dict[str, str | None] = {}

    class Storage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen[self.path] = self.headers.get("Authorization")
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"blob")

        def log_message(self, *args) -> None:
            pass

    class Registry(Storage):
        def do_GET(self) -> None:
            seen[self.path] = self.headers.get("Authorization")
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{storage.server_address[1]}/store{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    storage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    registry = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    for s in (storage, registry):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        client = RegistryClient(load_cluster(site[0]), None)
        req = urllib.request.Request(f"http://127.0.0.1:{registry.server_address[1]}/v2/k8s/pause/blobs/sha256:0",
                                     headers={"Authorization": "Basic c2VjcmV0"})
        with client.opener.open(req, timeout=10) as r:
            assert r.read() == b"blob"
    finally:
        for s in (storage, registry):
            s.shutdown()
            s.server_close()
    assert seen == {"/v2/k8s/pause/blobs/sha256:0": "Basic c2VjcmV0", "/store/v2/k8s/pause/blobs/sha256:0": None}


def test_a_layer_that_differs_from_its_digest_is_refused_exit_4(site, registry, tmp_path):
    """The registry's own storage changed under it: it serves the bytes, kubeforge checks them."""
    from tests.sim.kubesim.images import digest, image_parts

    inv, debs = site
    url, reg_host, ca, d = registry
    ref = f"{reg_host}/k8s/kube-proxy:v1.35.4"
    push_all(url, reg_host, [ref], ca)
    layer = digest(image_parts(ref)[1][0])[7:]
    [stored] = (d / "data").rglob(f"blobs/sha256/{layer[:2]}/{layer}/data")
    data = stored.read_bytes()
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, one bit pattern off
    res = kf("create", "-i", str(inv), "--roles", "worker", "--to", "1.35.4", "--from-dir", str(debs),
             "--out", str(tmp_path / "b"))
    assert res.returncode == 4, res.stderr
    assert f"registry https://{reg_host}: image {ref}: blob sha256:{layer} arrived as sha256:" in res.stderr
    assert "refused" in res.stderr and leftovers(tmp_path) == []
