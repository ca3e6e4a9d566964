"""build_debs: Debian packages laid out like pkgs.k8s.io, installable, self-contained and stdlib-only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim import build_debs

SIM = Path(build_debs.SIM_SRC)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mirror")
    build_debs.build(str(out), list(build_debs.DEFAULT_VERSIONS))
    return out


def info(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), field], check=True, capture_output=True,
                          text=True).stdout.strip()


def contents(deb: Path) -> list[str]:
    return subprocess.run(["dpkg-deb", "--contents", str(deb)], check=True, capture_output=True,
                          text=True).stdout.splitlines()


def test_default_versions_offer_every_minor_kubeforge_knows() -> None:
    from kubeforge.model.versions import known_kube_minors

    offered = {v.rsplit(".", 1)[0] for v in build_debs.DEFAULT_VERSIONS}
    assert set(known_kube_minors()) <= offered


def test_packages_land_in_one_flat_repository_per_minor(repo: Path) -> None:
    names = {p.relative_to(repo).as_posix() for p in repo.rglob("*.deb")}
    assert "kubernetes/v1.33/deb/kubeadm_1.33.5-1.1_all.deb" in names
    assert "kubernetes/v1.33/deb/kubelet_1.33.6-1.1_all.deb" in names
    assert "kubernetes/v1.34/deb/kubectl_1.34.2-1.1_all.deb" in names
    assert "kubernetes/v1.35/deb/cri-tools_1.35.0-1.1_all.deb" in names
    assert {n.split("/")[1] for n in names} == {"v1.33", "v1.34", "v1.35", "v1.36", "v1.37"}
    for minor in ("v1.33", "v1.34", "v1.35"):
        assert any(n.startswith(f"kubernetes/{minor}/deb/kubernetes-cni_") for n in names)
        assert any(n.startswith(f"kubernetes/{minor}/deb/cri-tools_") for n in names)


def test_control_fields_look_like_upstream(repo: Path) -> None:
    deb = repo / "kubernetes/v1.34/deb/kubeadm_1.34.2-1.1_all.deb"
    assert info(deb, "Package") == "kubeadm"
    assert info(deb, "Version") == "1.34.2-1.1"
    assert info(deb, "Architecture") == "all"
    assert "cri-tools (>= 1.34.0)" in info(deb, "Depends")
    assert "kubernetes-cni" in info(repo / "kubernetes/v1.34/deb/kubelet_1.34.2-1.1_all.deb", "Depends")


def test_files_are_root_owned_and_entry_points_executable(repo: Path) -> None:
    lines = contents(repo / "kubernetes/v1.35/deb/kubelet_1.35.1-1.1_all.deb")
    assert all(" root/root " in ln for ln in lines)
    by_path = {ln.split()[-1]: ln.split()[0] for ln in lines}
    assert by_path["./usr/bin/kubelet"] == "-rwxr-xr-x"
    assert by_path["./lib/systemd/system/kubelet.service"] == "-rw-r--r--"
    assert "./usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf" in by_path
    assert "./usr/lib/kubesim/1.35.1/kubelet/kubesim/kubelet.py" in by_path


def test_the_kubelet_unit_restarts_quickly_and_reads_kubeadms_flags(repo: Path, tmp_path: Path) -> None:
    deb = repo / "kubernetes/v1.34/deb/kubelet_1.34.2-1.1_all.deb"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    unit = (tmp_path / "lib/systemd/system/kubelet.service").read_text()
    assert "Restart=always" in unit and "RestartSec=1" in unit
    dropin = (tmp_path / "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    assert "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env" in dropin


@pytest.mark.parametrize("component,argv,expected", [
    ("kubeadm", ["version", "-o", "short"], "v1.34.2"),
    ("kubelet", ["--version"], "Kubernetes v1.34.2"),
    ("kubectl", ["version", "--client", "-o", "json"], '"gitVersion": "v1.34.2"'),
])
def test_extracted_package_runs_on_its_own(repo: Path, tmp_path: Path, component: str, argv: list[str],
                                           expected: str) -> None:
    deb = repo / f"kubernetes/v1.34/deb/{component}_1.34.2-1.1_all.deb"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    entry = (tmp_path / f"usr/bin/{component}").read_text()
    assert entry.startswith("#!/usr/bin/python3 -I\n")
    # run the entry point with its library path moved under the extraction directory
    script = entry.replace('"/usr/lib/kubesim/', f'"{tmp_path}/usr/lib/kubesim/')
    out = subprocess.run([sys.executable, "-I", "-c", script, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout


def test_simulator_modules_import_only_the_standard_library() -> None:
    for path in sorted(SIM.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            else:
                continue
            for m in mods:
                top = m.split(".")[0]
                assert top == "__future__" or top in sys.stdlib_module_names, f"{path.name} imports {m}"


def test_bad_version_is_refused(tmp_path: Path) -> None:
    assert build_debs.main(["--out", str(tmp_path), "--versions", "1.34"]) == 1


def _dpkg(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-not-root", *args],
                          capture_output=True, text=True)


def test_real_dpkg_installs_then_upgrades_one_minor_in_a_sandbox_root(repo: Path, tmp_path: Path) -> None:
    admin = tmp_path / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    (admin / "available").touch()
    # the lab machines have python3; this sandbox only needs dpkg to believe it
    (admin / "status").write_text("Package: python3\nStatus: install ok installed\nVersion: 3.11.2-1+b1\n"
                                  "Architecture: amd64\nMaintainer: Debian Python Team\nDescription: stand-in\n\n")
    v33 = repo / "kubernetes/v1.33/deb"
    first = _dpkg(tmp_path, "-i", *map(str, sorted(v33.glob("cri-tools_*"))), *map(str, sorted(v33.glob("kubernetes-cni_*"))),
                  *(str(v33 / f"{c}_1.33.6-1.1_all.deb") for c in ("kubeadm", "kubelet", "kubectl")))
    assert first.returncode == 0, first.stderr
    v34 = repo / "kubernetes/v1.34/deb"
    second = _dpkg(tmp_path, "-i", *map(str, sorted(v34.glob("cri-tools_*"))), str(v34 / "kubeadm_1.34.2-1.1_all.deb"))
    assert second.returncode == 0, second.stderr
    status = _dpkg(tmp_path, "-l", "kubeadm", "kubelet").stdout
    assert "ii  kubeadm        1.34.2-1.1" in status and "ii  kubelet        1.33.6-1.1" in status
    assert (tmp_path / "usr/lib/kubesim/1.34.2/kubeadm/kubesim/kubeadm.py").exists()
    assert not (tmp_path / "usr/lib/kubesim/1.33.6/kubeadm").exists()


VERSION_QUERIES = (("kubeadm", ["version", "-o", "short"]), ("kubelet", ["--version"]),
                   ("kubectl", ["version", "--client"]))


@pytest.mark.parametrize(("component", "argv"), VERSION_QUERIES)
def test_a_version_query_is_answered_before_the_simulator_loads_and_prints_what_the_full_command_prints(
        repo: Path, tmp_path: Path, component: str, argv: list[str]) -> None:
    # the facts script asks these of every machine on every run (kubesim/quick.py)
    deb = repo / f"kubernetes/v1.34/deb/{component}_1.34.2-1.1_all.deb"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    entry = (tmp_path / "usr/bin" / component).read_text().replace("/usr/lib/", f"{tmp_path}/usr/lib/")
    script = tmp_path / "entry.py"
    script.write_text(entry)
    quick = subprocess.run([sys.executable, "-I", "-X", "importtime", str(script), *argv], capture_output=True, text=True)
    assert quick.returncode == 0, quick.stderr[-2000:]
    assert "kubesim.quick" in quick.stderr and f"kubesim.{component}" not in quick.stderr
    lib = tmp_path / f"usr/lib/kubesim/1.34.2/{component}"
    full = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(lib)!r}); "
                           f"from kubesim import {component}; sys.exit({component}.main(sys.argv[1:], 'v1.34.2'))", *argv],
                          capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]
    assert quick.stdout == full.stdout and "1.34.2" in quick.stdout
