"""An air-gapped site on real machines: `packages.source: offline` with a bundle built from the lab
mirror's files (its Debian and Kubernetes .debs in one flat directory indexed by dpkg-scanpackages,
etcd's release archive, and an OCI archive of every image two consecutive minors need), an inventory
that names no mirror, and `kubeforge up` on one control plane (stacked etcd) and one worker.

The lab has no way out (``egress=False``, tests/lab/lab.py): no default route, an empty resolv.conf,
and no connection from a machine to the runner, the lab mirror included; the machines only answer
SSH from the operator's side. The first test proves that from inside. So Ready nodes prove every
package and image came from the pushed bundle (apt has no other source, containerd no registry it
could reach). A bundle with a flipped byte is refused before any host is touched, and one missing an
image at the images preflight (exit 4), each host's files byte for byte as before; a second `up`
pushes nothing; `upgrade --to` the next minor reads the same bundle, its images pushed and imported
on every node before the first drain; `etcd backup` is verified on the operator's side."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.lab.inventory import SIM_CNI_MANIFEST

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

KUBE = "1.33.5"
NEXT = "1.34.2"
ETCD = "3.5.16"
NODES = ("cp-1", "w-1")
BUNDLE_DIR = "/var/cache/kubeforge/bundle"
KUBECTL = ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]


def kf(inv: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args, "-i", str(inv)], capture_output=True,
                          text=True, timeout=timeout, cwd=inv.parent, check=False)


def build_bundle(lab, into: Path, *, flip: str | None = None, without: str | None = None) -> Path:
    """Every .deb the lab mirror serves in one directory, ``Packages`` by dpkg-scanpackages, and
    etcd's release archive with its SHA256SUMS. ``flip``: a package whose .deb gets one byte flipped
    after indexing (what a corrupted copy to an air-gapped site looks like); ``without``: a
    Kubernetes version whose packages are left out."""
    mirror = lab.run_dir / "mirror"
    into.mkdir(parents=True)
    for deb in [*(mirror / "debian").glob("*.deb"), *mirror.glob("kubernetes/v*/deb/*.deb")]:
        if without and f"_{without}-" in deb.name:
            continue
        if not (into / deb.name).exists():  # the same file can sit in several minors' repos
            shutil.copyfile(deb, into / deb.name)
    index = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=into, capture_output=True, check=True)
    (into / "Packages").write_bytes(index.stdout)
    for f in (mirror / "etcd-releases" / f"v{ETCD}").iterdir():
        shutil.copyfile(f, into / f.name)
    if flip:
        deb = next(into.glob(f"{flip}_{KUBE}-*.deb"))
        data = bytearray(deb.read_bytes())
        data[len(data) // 2] ^= 0x01
        deb.write_bytes(bytes(data))
    return into


def add_images(bundle: Path, inv: Path, versions: tuple[str, ...]) -> dict[str, set[str]]:
    """The images every node needs at each of ``versions``, as tiny OCI archives with their real
    names and tags in ``bundle/images`` with the manifest; returns node -> refs at the first version."""
    from kubeforge.inventory import load_cluster
    from kubeforge.model.images import images_by_host
    from kubeforge.model.versions import parse_kube
    from tests.oci_archive import build_oci_archive

    cluster = load_cluster(inv)
    d = bundle / "images"
    d.mkdir()
    refs = sorted({i.ref for v in versions for imgs in images_by_host(cluster, parse_kube(v)).values() for i in imgs})
    entries = []
    for ref in refs:
        name = ref.rsplit("/", 1)[1].replace(":", "_") + ".tar"
        entries.append({"ref": ref, "file": name, "sha256": build_oci_archive(d / name, ref), "size": 0})
        entries[-1]["size"] = (d / name).stat().st_size
    (d / "manifest.json").write_text(json.dumps({"schema": 1, "images": entries}, indent=1))
    return {h: {i.ref for i in imgs} for h, imgs in images_by_host(cluster, parse_kube(versions[0])).items()}


def inventory(lab, d: Path, bundle: Path) -> Path:
    doc = YAML(typ="safe").load(lab.write_inventory(d / "lab.yaml").read_text())
    doc["spec"]["packages"] = {"source": "offline", "bundleDir": str(bundle)}
    doc["spec"]["etcd"]["version"] = ETCD
    doc["spec"]["network"]["cni"] = {"name": "kubesim-cni", "manifest": "cni.yaml"}
    (d / "cni.yaml").write_text(SIM_CNI_MANIFEST)
    inv = d / "inventory.yaml"
    with inv.open("w") as f:
        YAML().dump(doc, f)
    return inv


def report(inv: Path, workflow: str) -> dict:
    # run dirs are <UTC time>Z-<command>[-n]: "up" must not pick an upgrade's
    runs = sorted((p for p in inv.parent.glob(".kubeforge/*/runs/*/report.json")
                   if p.parent.name.split("Z-", 1)[-1].split("-")[0] == workflow), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())


def sources(lab, node: str) -> list[str]:
    """Every apt source line the machine has."""
    script = "cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v '^#' | grep . || true"
    out = lab.exec(node, ["sh", "-c", script]).stdout
    return out.splitlines()


@pytest.fixture(scope="module")
def olab(lab_factory):
    return lab_factory([("cp-1", ("control-plane", "etcd")), ("w-1", ("worker",))], kubernetes_version=KUBE,
                       egress=False)


@pytest.fixture(scope="module")
def good(olab, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("offline")
    inv = inventory(olab, d, build_bundle(olab, d / "bundle"))
    add_images(d / "bundle", inv, (KUBE, NEXT))
    return inv


def node_images(lab, node: str) -> set[str]:
    return set(lab.exec(node, ["ctr", "-n", "k8s.io", "images", "ls", "-q"], check=True).stdout.split())


# Everything a run could change on a host: every file (path, type, size, mode, mtime) and directory
# (path, mode) where packages, configuration, caches and state live, and the package database.
# systemd's own state aside, and directories' mtimes: preflight's fsync probe writes a file beside
# etcd's data dir (/var/lib) and removes it (kubeforge/facts/preflight/probes.py), documented.
FINGERPRINT = r"""
dirs="/etc /opt /usr/local /usr/bin /usr/sbin /var/lib /var/cache /root /home"
{ find $dirs -xdev -path /var/lib/systemd -prune -o -type d -printf '%p %y %m\n'
  find $dirs -xdev -path /var/lib/systemd -prune -o ! -type d -printf '%p %y %s %m %T@\n'; } | sort
dpkg-query -W -f '${Package} ${Version} ${Status}\n'
"""


def fingerprint(lab, node: str) -> list[str]:
    res = lab.exec(node, ["sh", "-c", FINGERPRINT], check=True)
    return res.stdout.splitlines()


def changed(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, list[str]]:
    """node -> the lines only one of the two fingerprints has (empty when nothing changed)."""
    return {n: sorted(set(before[n]) ^ set(after[n])) for n in before if before[n] != after[n]}


# Run inside a machine: try each (address, port) and print what happened, by errno name.
CONNECT = r"""
import errno, json, socket, sys
out = {}
for addr, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((addr, port), timeout=5).close()
        out[f"{addr}:{port}"] = "connected"
    except OSError as e:
        out[f"{addr}:{port}"] = errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
print(json.dumps(out))
"""


def runner_outside_address() -> str | None:
    """The runner's own source address towards the world (a route lookup: no packet is sent)."""
    res = subprocess.run(["ip", "-o", "-4", "route", "get", "192.0.2.1"], capture_output=True, text=True, check=False)
    words = res.stdout.split()
    return words[words.index("src") + 1] if "src" in words else None


def test_the_lab_machines_have_no_way_out_and_answer_ssh_from_the_operator_side(olab):
    """No default route, no name server, no connection to the runner (whose mirror is up: the runner
    itself reads it), and SSH from the runner works."""
    with urllib.request.urlopen(olab.mirror_url + "/", timeout=10) as r:  # the mirror serves the runner
        assert r.status == 200
    port = int(olab.mirror_url.rsplit(":", 1)[1])
    targets = [(olab.id.gateway, port), (olab.id.gateway, 22), ("192.0.2.1", 443)]
    outside = runner_outside_address()
    if outside:
        targets.append((outside, 22))
    for n in NODES:
        for family in ("-4", "-6"):
            assert olab.exec(n, ["ip", family, "route", "show", "default"], check=True).stdout.strip() == "", n
        assert "nameserver" not in olab.exec(n, ["cat", "/etc/resolv.conf"], check=True).stdout, n
        assert olab.exec(n, ["getent", "hosts", "deb.debian.org"]).returncode != 0, n
        tried = json.loads(olab.exec(n, ["python3", "-c", CONNECT, json.dumps(targets)], check=True).stdout)
        # the runner (mirror, sshd) refuses the machine at once; anything beyond the bridge has no route
        assert tried[f"{olab.id.gateway}:{port}"] == "ECONNREFUSED", tried
        assert tried[f"{olab.id.gateway}:22"] == "ECONNREFUSED", tried
        assert tried["192.0.2.1:443"] == "ENETUNREACH", tried
        if outside:
            assert tried[f"{outside}:22"] == "ENETUNREACH", tried
        # the other machine is on the same bridge: reachable (refused: nothing listens there yet)
        other = next(m for m in NODES if m != n)
        peer = json.loads(olab.exec(n, ["python3", "-c", CONNECT, json.dumps([(olab.address(other), 6443)])],
                                    check=True).stdout)
        assert peer == {f"{olab.address(other)}:6443": "ECONNREFUSED"}, peer
        res = subprocess.run(olab.ssh_argv(n, "true"), capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, res.stderr


def test_a_bundle_with_a_flipped_byte_in_kubeadm_is_refused_with_exit_3_before_any_host_is_touched(olab, tmp_path_factory):
    d = tmp_path_factory.mktemp("flipped")
    bundle = build_bundle(olab, d / "bundle", flip="kubeadm")
    inv = inventory(olab, d, bundle)
    res = kf(inv, "up", "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    deb = next(bundle.glob(f"kubeadm_{KUBE}-*.deb"))
    assert str(deb) in res.stderr and "sha256" in res.stderr
    for n in NODES:
        assert olab.exec(n, ["test", "-e", BUNDLE_DIR]).returncode != 0, n
        assert sources(olab, n) == [], n
        assert olab.exec(n, ["dpkg-query", "-W", "kubeadm"]).returncode != 0, n
    assert not list(d.glob(".kubeforge/*/runs/*/journal.jsonl"))  # no run started


def test_a_bundle_missing_an_image_stops_up_at_the_images_preflight_with_exit_4_changing_nothing(olab, tmp_path_factory):
    d = tmp_path_factory.mktemp("no-proxy-image")
    bundle = build_bundle(olab, d / "bundle")
    inv = inventory(olab, d, bundle)
    add_images(bundle, inv, (KUBE,))
    manifest = bundle / "images" / "manifest.json"
    doc = json.loads(manifest.read_text())
    gone = f"registry.k8s.io/kube-proxy:v{KUBE}"
    doc["images"] = [e for e in doc["images"] if e["ref"] != gone]
    manifest.write_text(json.dumps(doc))
    (bundle / "images" / f"kube-proxy_v{KUBE}.tar").unlink()
    before = {n: fingerprint(olab, n) for n in NODES}
    res = kf(inv, "up", "--yes")
    assert res.returncode == 4, res.stdout + res.stderr
    assert changed(before, {n: fingerprint(olab, n) for n in NODES}) == {}
    for n in NODES:  # every node runs kube-proxy: both named, with the image
        assert f"[{n}] not in containerd and not in the offline bundle: {gone}" in res.stderr, res.stderr
        assert olab.exec(n, ["test", "-e", BUNDLE_DIR]).returncode != 0, n
        assert olab.exec(n, ["test", "-e", "/var/cache/kubeforge/images"]).returncode != 0, n
        assert sources(olab, n) == [], n
    assert not list(d.glob(".kubeforge/*/runs/*/journal.jsonl"))  # no run started


def test_up_from_the_bundle_alone_reaches_ready_nodes(olab, good):
    res = kf(good, "up", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for n in NODES:  # no name server on a node: CoreDNS's forward plugin would not start there (a warning)
        assert f"[{n}] dns: /etc/resolv.conf names no name server" in res.stdout + res.stderr, res.stdout + res.stderr
    nodes = json.loads(olab.exec("cp-1", [*KUBECTL, "sim", "state"], check=True).stdout)["nodes"]
    assert {n for n, v in nodes.items() if v.get("ready")} == set(NODES)
    bundle = good.parent / "bundle"
    pushed = {s["title"] for s in report(good, "up")["steps"]
              if s["phase"] == "InstallPackages" and s["status"] == "done" and s["title"].startswith("Push ")}
    for n in NODES:
        # the one source apt has is the pushed bundle; the packages came from it at the exact version
        assert sources(olab, n) == [f"deb [trusted=yes] file:{BUNDLE_DIR} ./"], n
        assert olab.exec(n, ["dpkg-query", "-W", "-f", "${Version}", "kubeadm"]).stdout.startswith(f"{KUBE}-"), n
        policy = olab.exec(n, ["apt-cache", "policy", "kubeadm"]).stdout
        assert f"file:{BUNDLE_DIR} ./ Packages" in policy, policy
        # every pushed file is the operator's, byte for byte (containerd's .deb went in two pieces)
        there = olab.exec(n, ["sh", "-c", f"cd {BUNDLE_DIR} && sha256sum *.deb Packages"]).stdout
        here = subprocess.run(["sh", "-c", "sha256sum *.deb Packages"], cwd=bundle, capture_output=True, text=True,
                              check=True).stdout
        assert there == here and "containerd_" in here
    # the etcd release archive is not apt's business: the bundle push is the indexed .debs and the index
    assert pushed == {f"Push {p.name}" for p in bundle.glob("*.deb")} | {"Push Packages"}
    # each node got its roles' images at this version from the bundle, imported into containerd
    from kubeforge.inventory import load_cluster
    from kubeforge.model.images import images_by_host
    wanted = {h: {i.ref for i in imgs} for h, imgs in images_by_host(load_cluster(good)).items()}
    # the CNI manifest's images too: kubeforge read them from the manifest, the bundle carried them
    from kubeforge.inventory.cni_images import manifest_images
    cni = set(manifest_images(SIM_CNI_MANIFEST))
    assert cni and all(cni <= wanted[n] for n in NODES)
    for n in NODES:
        assert wanted[n] <= node_images(olab, n), n
    assert any("/etcd:" in r for r in wanted["cp-1"]) and not any("/etcd:" in r for r in wanted["w-1"])
    assert olab.exec("cp-1", ["test", "-e", f"{BUNDLE_DIR}/etcd-v{ETCD}-linux-amd64.tar.gz"]).returncode != 0


def test_a_second_up_pushes_nothing_and_changes_nothing(olab, good):
    res = kf(good, "up", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rep = report(good, "up")
    assert [s for s in rep["steps"] if s["status"] not in ("unchanged",)] == []
    # the bundle is not even planned on converged hosts (the etcd tools phase re-checks its archive: unchanged)
    assert not [s for s in rep["steps"] if s["phase"] == "InstallPackages"]
    assert "no changes" in res.stdout


def test_upgrade_to_the_next_minor_reads_the_same_bundle(olab, good):
    res = kf(good, "upgrade", "--to", NEXT, "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    nodes = json.loads(olab.exec("cp-1", [*KUBECTL, "sim", "state"], check=True).stdout)["nodes"]
    assert {n: v["kubeletVersion"] for n, v in nodes.items()} == {n: f"v{NEXT}" for n in NODES}
    for n in NODES:
        assert olab.exec(n, ["dpkg-query", "-W", "-f", "${Version}", "kubelet"]).stdout.startswith(f"{NEXT}-"), n
        assert sources(olab, n) == [f"deb [trusted=yes] file:{BUNDLE_DIR} ./"], n
    # the bundle's .debs were already on the machines: the upgrade pushed none of them again
    rep = report(good, "upgrade")
    pushed = [s for s in rep["steps"] if s["title"].startswith("Push ") and s["status"] == "done"]
    assert pushed and all(s["phase"] == "PrepareImages" and s["title"].startswith("Push image ") for s in pushed)
    # the new minor's images: pushed and imported on every node before the first drain began
    from kubeforge.inventory import load_cluster
    from kubeforge.model.images import images_by_host
    from kubeforge.model.versions import parse_kube
    wanted = {h: {i.ref for i in imgs} for h, imgs in images_by_host(load_cluster(good), parse_kube(NEXT)).items()}
    phases = [s["phase"] for s in rep["steps"]]
    imported = [s["host"] for s in rep["steps"] if s["phase"] == "PrepareImages" and s["title"].startswith("Import ")]
    assert sorted(imported) == sorted(NODES)
    first_drain = next(i for i, s in enumerate(rep["steps"]) if s["title"].startswith("Drain "))
    assert max(i for i, p in enumerate(phases) if p == "PrepareImages") < first_drain
    assert {s["host"] for s in pushed} == set(NODES)
    # a worker gets its roles' images only (pause or CoreDNS the old minor shares are there already)
    w1 = {s["title"].removeprefix("Push image ") for s in pushed if s["host"] == "w-1"}
    assert f"registry.k8s.io/kube-proxy:v{NEXT}" in w1 and w1 <= wanted["w-1"]
    for n in NODES:
        assert wanted[n] <= node_images(olab, n), n


def test_an_upgrade_to_a_version_the_bundle_lacks_is_refused_with_exit_7_changing_nothing(olab, good, tmp_path_factory):
    d = tmp_path_factory.mktemp("lacking")
    inv = inventory(olab, d, build_bundle(olab, d / "bundle", without="1.35.1"))
    before = {n: olab.exec(n, ["sh", "-c", f"ls -l --time-style=+%s {BUNDLE_DIR}; dpkg -l 'kube*'"]).stdout for n in NODES}
    res = kf(inv, "upgrade", "--to", "1.35.1", "--yes")
    assert res.returncode == 7, res.stdout + res.stderr
    assert "does not offer kubeadm 1.35.1" in res.stderr and "1.34.2" in res.stderr
    assert {n: olab.exec(n, ["sh", "-c", f"ls -l --time-style=+%s {BUNDLE_DIR}; dpkg -l 'kube*'"]).stdout for n in NODES} == before
    assert not list(d.glob(".kubeforge/*/runs/*/journal.jsonl"))


def test_etcd_backup_of_the_air_gapped_cluster_is_verified_on_the_operator_side(olab, good):
    """Stacked etcd on cp-1 with etcdctl from the bundle's release archive: the snapshot streamed
    home over SSH, checked (sha256, etcd's integrity trailer) as it arrived and again from disk."""
    from kubeforge.backups.store import read_verified_snapshot

    res = kf(good, "etcd", "backup", "-o", "json", timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = json.loads(res.stdout)["manifest"]
    assert m["verified"] and m["member"] == "cp-1" and m["total_keys"] > 0, m
    manifest = next(good.parent.glob(f".kubeforge/*/backups/{m['name']}.manifest.json"))
    read_verified_snapshot(manifest)  # raises on any mismatch
    assert olab.exec("cp-1", ["sh", "-c", "command -v etcdctl"], check=True).stdout.strip() == "/usr/local/bin/etcdctl"
    # after up, upgrade and backup, still no way out: nothing kubeforge did added a route or a name server
    for n in NODES:
        assert olab.exec(n, ["ip", "route", "show", "default"], check=True).stdout.strip() == "", n
        assert "nameserver" not in olab.exec(n, ["cat", "/etc/resolv.conf"], check=True).stdout, n
