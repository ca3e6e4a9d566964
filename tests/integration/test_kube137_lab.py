"""Today's minors on the lab: `kubeforge up` at Kubernetes 1.36 (stacked etcd), then `upgrade --to 1.37.1`
to Ready nodes, with the path's patches read from the lab mirror's per-minor Packages indexes; and the
1.37 simulator's kubeadm on a lab machine refusing a kubeadm.k8s.io/v1beta3 config like kubeadm 1.37.

Every image comes from a private registry: Debian's docker-registry on the runner's side of the lab
bridge, with TLS from a test CA and htpasswd credentials (`spec.images` with `ca` and a 0600
`passwordFile`); the simulator's kubeadm pulls through containerd's hosts.toml that kubeforge writes.
No credential may show anywhere but in that 0600 file on the hosts and the operator's password file."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from tests import registry as R
from tests.integration.test_upgrade_lab import CNI, Env
from tests.need import skip_or_fail
from tests.sim.kubesim import images

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

LAYOUT = [("cp-1", ("control-plane", "etcd")), ("worker-1", ("worker",))]
FROM, TO = "1.36.5", "1.37.1"  # what the lab mirror offers (tests/sim/build_debs.py DEFAULT_VERSIONS)
V1BETA3 = """apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.37.1
"""


USER, PASSWORD = "kubeforge-pull", "lab-registry-pw-3b9c41"  # noqa: S105 (the test registry's)
REGISTRY_PORT = 5443


@pytest.fixture(scope="module")
def registry(lab_factory, tmp_path_factory):
    """(lab, host:port of the registry, its CA): docker-registry on the lab bridge's gateway address,
    holding kubeadm's images of both versions under <registry>/k8s, pushed with the credentials."""
    import shutil

    if not shutil.which(R.REGISTRY_BIN):
        skip_or_fail("needs Debian's docker-registry on the runner (apt-get install docker-registry)")
    lab = lab_factory(LAYOUT, kubernetes_version=FROM)
    d = tmp_path_factory.mktemp("kube137-registry")
    gw = lab.id.gateway
    ca = R.make_ca(d)
    cert, key = R.server_cert(d, ca, [gw])
    R.write_htpasswd(d / "htpasswd", USER, PASSWORD)
    with R.running_registry(d, gw, REGISTRY_PORT, cert, key, d / "htpasswd") as url:
        where = f"{gw}:{REGISTRY_PORT}"
        for v in (FROM, TO):
            for ref in images.kubeadm_images(f"v{v}", f"{where}/k8s"):
                R.push(url, ref.split("/", 1)[1], ref, auth=R.basic(USER, PASSWORD), ca=ca)
        yield lab, where, ca, d / "registry.log"


@pytest.fixture(scope="module")
def env(registry, tmp_path_factory) -> Env:
    lab, where, ca, _ = registry
    d = tmp_path_factory.mktemp("kube137-lab")
    doc = YAML(typ="safe").load(lab.write_inventory(d / "lab.yaml").read_text())
    doc["spec"]["network"]["cni"] = {"name": "kubesim-cni", "manifest": "cni.yaml"}
    (d / "cni.yaml").write_text(CNI)
    (d / "registry-password").write_text(PASSWORD + "\n")
    (d / "registry-password").chmod(0o600)
    doc["spec"]["images"] = {"repository": f"{where}/k8s", "ca": str(ca),
                             "credentials": {where: {"username": USER, "passwordFile": str(d / "registry-password")}}}
    e = Env(lab, d, d / "inventory.yaml", doc)
    e.write_inventory()
    return e


def kubelets(env: Env) -> dict[str, tuple[str, bool]]:
    return {n: (v["kubeletVersion"], bool(v.get("ready"))) for n, v in env.sim("state")["nodes"].items()}


def test_validate_and_plan_up_report_the_etcd_kubeadm_1_36_runs_for_stacked_etcd(env):
    res = env.kf("validate")
    assert res.returncode == 0, res.stderr
    assert "etcd stacked, 3.6.9 from kubeadm 1.36" in res.stdout
    res = env.kf("plan", "up")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "kubeadm 1.36 runs etcd 3.6.9 as a static pod" in res.stdout


def test_up_at_1_36_brings_every_node_ready_at_1_36(env):
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (env.dir / "up-output.txt").write_text(res.stdout + res.stderr)
    assert kubelets(env) == {"cp-1": (f"v{FROM}", True), "worker-1": (f"v{FROM}", True)}


def test_up_pulled_every_control_plane_image_through_the_private_registry_with_its_credentials(env, registry):
    _, where, _, log = registry
    held = env.lab.exec("cp-1", ["ctr", "-n", "k8s.io", "images", "ls", "-q"], check=True).stdout.split()
    assert set(images.kubeadm_images(f"v{FROM}", f"{where}/k8s")) <= set(held)
    # nothing from anywhere else (containerd's CRI also lists each image by its ID, sha256:...)
    assert not [r for r in held if not r.startswith((where, "sha256:"))], held
    # the registry answers nothing without the htpasswd credentials (401): a 200 to cp-1 is an authenticated pull
    cp1 = next(h["address"] for h in env.doc["spec"]["hosts"] if h["name"] == "cp-1")
    served = [line for line in log.read_text().splitlines() if 'msg="response completed"' in line
              and "method=GET" in line and f"uri=/v2/k8s/kube-apiserver/manifests/v{FROM}" in line]
    assert served and all(f'remoteaddr="{cp1}:' in line and "status=200" in line for line in served), served
    toml = f"/etc/containerd/certs.d/{where}/hosts.toml"
    mode = env.lab.exec("cp-1", ["stat", "-c", "%a", toml], check=True).stdout.strip()
    assert mode == "600"


# Files under the places kubeforge and the tools write, then every live process's argv.
SEARCH = r"""IFS= read -r a; IFS= read -r b
pat() { printf '%s\n' "$a" "$b"; }
grep -rlsF -f <(pat) /etc /root /home /tmp /var/log /var/lib/kubelet /var/cache/kubeforge /var/lib/kubesim /run /usr/local
for c in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$c" 2>/dev/null; echo; done | grep -cF -f <(pat)
"""


def test_no_registry_credential_shows_in_logs_plan_output_run_dirs_argv_or_host_files(env):
    import base64

    secrets = [PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
    plan = env.kf("plan", "up")
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    texts = {"plan output": plan.stdout + plan.stderr, "up output": (env.dir / "up-output.txt").read_text()}
    for p in env.dir.rglob("*"):  # the state dir: run logs, journals, reports, PKI
        if p.is_file() and p.name != "registry-password":
            texts[str(p)] = p.read_text(errors="replace")
    leaks = [where for where, text in texts.items() if any(s in text for s in secrets)]
    assert leaks == []
    where = next(iter(env.doc["spec"]["images"]["credentials"]))
    allowed = f"/etc/containerd/certs.d/{where}/hosts.toml"
    for name in ("cp-1", "worker-1"):  # the secrets reach the machine on stdin, never in an argv
        found = env.lab.exec(name, ["bash", "-c", SEARCH], input="\n".join(secrets) + "\n", check=False).stdout.split()
        assert found == [allowed, "0"], (name, found)


def test_plan_upgrade_to_1_37_names_the_mirror_that_offers_it(env):
    res = env.kf("plan", "upgrade", "--to", TO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Switch the package source to Kubernetes 1.37; {TO} offered by the mirror http://" in res.stdout


def test_upgrade_to_1_37_ends_with_every_node_ready_at_1_37(env):
    res = env.kf("upgrade", "--to", TO, "--yes", timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert kubelets(env) == {"cp-1": (f"v{TO}", True), "worker-1": (f"v{TO}", True)}
    held = env.lab.exec("cp-1", ["ctr", "-n", "k8s.io", "images", "ls", "-q"], check=True).stdout.split()
    where = env.doc["spec"]["images"]["repository"]
    assert set(images.kubeadm_images(f"v{TO}", where)) <= set(held), held  # upgrade apply's preflight pulled them
    cfg = env.lab.exec("cp-1", ["cat", "/etc/kubeforge/kubeadm-upgrade.yaml"], check=True).stdout
    assert "kubeadm.k8s.io/v1beta4" in cfg and "v1beta3" not in cfg
    assert env.sim("violations") == []


def test_the_1_37_kubeadm_on_the_machine_refuses_a_v1beta3_config(env):
    env.lab.exec("cp-1", ["bash", "-c", "cat > /tmp/old.yaml"], input=V1BETA3, check=True)
    res = env.lab.exec("cp-1", ["kubeadm", "config", "validate", "--config", "/tmp/old.yaml"], check=False)
    assert res.returncode != 0
    assert 'uses an old API spec: "kubeadm.k8s.io/v1beta3"' in res.stdout + res.stderr
    assert env.lab.exec("cp-1", ["kubeadm", "version", "-o", "short"], check=True).stdout.strip() == f"v{TO}"
