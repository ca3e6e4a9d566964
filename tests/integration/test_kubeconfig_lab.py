"""`kubeforge kubeconfig` on the lab: after a real `up` of one control plane (stacked etcd; kubeadm is
the simulator, whose `kubeconfig user` signs a real client certificate with the cluster CA), the admin
kubeconfig is fetched 0600 into a 0700 directory and refreshed when it changed here, and a named
user's kubeconfig expires when asked and leaves nothing behind on the control plane.

The tests run in order on one lab: up -> admin kubeconfig -> refresh -> user kubeconfig."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.integration.test_etcd_stacked_lab import Env as StackedEnv

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]



@dataclass
class Env(StackedEnv):
    """The stacked-etcd lab test's environment (kf runs this checkout), plus what this module reads."""

    @property
    def state_dir(self) -> Path:
        name = YAML(typ="safe").load(self.inventory.read_text())["metadata"]["name"]
        return self.dir / ".kubeforge" / name

    def remote_sha256(self, path: str) -> str:
        return self.lab.exec("cp-1", ["sudo", "sha256sum", path], check=True).stdout.split()[0]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(scope="module")
def env(lab_factory, tmp_path_factory) -> Env:
    lab = lab_factory([("cp-1", ("control-plane", "etcd"))])
    d = tmp_path_factory.mktemp("kubeconfig-lab")
    return Env(lab, d, lab.write_inventory(d / "inventory.yaml"))


def test_up_brings_the_one_control_plane_up(env):
    res = env.kf("up", "--yes", timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_kubeconfig_fetches_the_admin_kubeconfig_0600_in_a_0700_directory(env):
    target = env.state_dir / "admin.conf"
    target.unlink(missing_ok=True)
    res = env.kf("kubeconfig", "-o", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["path"] == str(target) and doc["user"] == "kubernetes-admin"
    assert mode(target) == 0o600 and mode(target.parent) == 0o700
    assert hashlib.sha256(target.read_bytes()).hexdigest() == env.remote_sha256("/etc/kubernetes/admin.conf")
    assert doc["server"] == YAML(typ="safe").load(target.read_text())["clusters"][0]["cluster"]["server"]


def test_kubeconfig_refreshes_a_local_copy_that_no_longer_matches(env):
    target = env.state_dir / "admin.conf"
    target.write_text("stale\n")
    res = env.kf("kubeconfig")
    assert res.returncode == 0, res.stdout + res.stderr
    assert str(target) in res.stdout and mode(target) == 0o600
    assert hashlib.sha256(target.read_bytes()).hexdigest() == env.remote_sha256("/etc/kubernetes/admin.conf")


def test_kubeconfig_for_a_user_expires_when_asked_and_leaves_nothing_on_the_control_plane(env):
    out = env.dir / "private" / "alice.conf"
    before = datetime.now(UTC)
    res = env.kf("kubeconfig", "--user", "alice", "--org", "dev", "--expires", "2h", "--out", str(out), "-o", "yaml")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = YAML(typ="safe").load(res.stdout)
    assert doc["path"] == str(out) and doc["user"] == "alice"
    assert mode(out) == 0o600 and mode(out.parent) == 0o700
    expires = datetime.fromisoformat(doc["expires"])
    assert before + timedelta(hours=2) - timedelta(minutes=2) < expires <= datetime.now(UTC) + timedelta(hours=2)

    conf = YAML(typ="safe").load(out.read_text())
    assert conf["users"][0]["name"] == "alice" and conf["current-context"].startswith("alice@")
    pem = base64.b64decode(conf["users"][0]["user"]["client-certificate-data"])
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253"], input=pem,
                             capture_output=True, check=True).stdout.decode()
    assert "CN=alice" in subject and "O=dev" in subject
    ca = env.state_dir / "pki" / "ca.crt"  # kubeforge's cluster CA, the one the control plane signs with
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca), "/dev/stdin"], input=pem, capture_output=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    left = env.lab.exec("cp-1", ["bash", "-c", "ls -d /run/kubeforge-kubeconfig-* 2>/dev/null || true"], check=True)
    assert left.stdout.strip() == ""


def kubectl_as(env: Env, conf: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """kubectl on the control plane with the kubeconfig ``conf`` (the API server checks its certificate)."""
    return env.lab.exec("cp-1", ["kubectl", "--kubeconfig", conf, *argv], input=stdin)


def test_a_named_users_kubeconfig_is_forbidden_until_a_binding_exists_and_unauthorized_once_expired(env):
    # the API checks the client certificate against the cluster CA and authorises with RBAC
    # (tests/sim/README.md, "API: TLS, client certificates, RBAC")
    alice = (env.dir / "private" / "alice.conf").read_text()  # from the test above: CN=alice, O=dev
    env.lab.exec("cp-1", ["bash", "-c", "umask 077 && cat > /tmp/alice.conf"], input=alice, check=True)
    res = kubectl_as(env, "/tmp/alice.conf", "get", "nodes")
    assert res.returncode == 1 and res.stderr.strip() == (
        'Error from server (Forbidden): nodes is forbidden: User "alice" cannot list resource "nodes" in API group '
        '"" at the cluster scope'), res
    binding = ("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: node-reader}\n"
               "rules: [{apiGroups: [''], resources: [nodes], verbs: [get, list, watch]}]\n---\n"
               "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: dev-reads-nodes}\n"
               "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}\n"
               "subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: dev}]\n")
    res = env.lab.exec("cp-1", ["sudo", "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "apply", "-f", "-"],
                       input=binding)
    assert res.returncode == 0, res
    res = kubectl_as(env, "/tmp/alice.conf", "get", "nodes")
    assert res.returncode == 0 and "cp-1" in res.stdout, res
    # a certificate past its NotAfter (kubeadm's own shortest period; kubeforge asks for 1 minute or more)
    made = env.lab.exec("cp-1", ["bash", "-c", "umask 077 && sudo kubeadm kubeconfig user --client-name eve --org dev "
                                 "--validity-period 1s --config /etc/kubeforge/kubeadm-init.yaml > /tmp/eve.conf"])
    assert made.returncode == 0, made
    import time

    time.sleep(2)  # let the certificate's second pass; nothing is timed
    res = kubectl_as(env, "/tmp/eve.conf", "get", "nodes")
    assert res.returncode == 1 and res.stderr.strip() == "error: You must be logged in to the server (Unauthorized)", res
    env.lab.exec("cp-1", ["rm", "-f", "/tmp/alice.conf", "/tmp/eve.conf"], check=True)


def test_an_expiry_kubeadm_cannot_express_is_refused_before_any_host_is_touched(env):
    res = env.kf("kubeconfig", "--user", "bob", "--expires", "soon", "-o", "json")
    assert res.returncode == 2
    assert json.loads(res.stdout)["error"]["category"] == "usage" and "--expires 'soon'" in res.stderr


# The README's "On your own servers" walk, run as written on this module's lab. Substituted: the
# inventory file (the lab's) and the upgrade's target (the next minor the lab mirror offers).
README = Path(__file__).resolve().parents[2] / "README.md"
LAB_NEXT_MINOR = "1.34.2"


def readme_walk() -> list[list[str]]:
    import re
    import shlex

    text = README.read_text()
    block = text.split("<!-- readme-walk:start -->", 1)[1].split("<!-- readme-walk:end -->", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    commands = [shlex.split(line) for line in lines if line and not line.startswith("```")]
    assert commands and all(c[0] == "kubeforge" for c in commands), commands
    targets = {c[c.index("--to") + 1] for c in commands if "--to" in c}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", t) for t in targets), targets
    return commands


def test_the_readme_walk_for_your_own_servers_runs_as_written(env):
    import os
    import sys

    from tests.integration.test_etcd_stacked_lab import REPO

    name = YAML(typ="safe").load(env.inventory.read_text())["metadata"]["name"]
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    for command in readme_walk():
        argv = [str(env.inventory) if a == "inventory.yaml" else a for a in command[1:]]
        if "--to" in argv:
            argv[argv.index("--to") + 1] = LAB_NEXT_MINOR
        res = subprocess.run([sys.executable, "-m", "kubeforge", *argv], capture_output=True, text=True,
                             timeout=900, cwd=env.dir, env=environ, check=False)
        assert res.returncode == 0, f"{' '.join(command)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    # what the comments promise
    admin = env.dir / ".kubeforge" / name / "admin.conf"
    assert mode(admin) == 0o600
    assert list((env.dir / ".kubeforge" / name / "backups").glob("*.json")), "no verified backup manifest"
    versions = env.lab.exec("cp-1", ["dpkg-query", "-W", "-f=${Version}", "kubeadm"], check=True).stdout
    assert versions.startswith(LAB_NEXT_MINOR + "-")
