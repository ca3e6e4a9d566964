"""The archive install step's scripts run for real, as root, in a private mount namespace whose
/usr/local/bin and /var/cache/kubeforge are empty tmpfs mounts (this machine's own stay untouched):
the guard, the on-host checksum check, the unpack and the renames."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import tarfile

import pytest

from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd.source import archive_for
from tests.factories import make_cluster

VERSION = "3.5.16"

# Each fake tool prints its version line and then a lot more, as the real ones print several lines:
# a guard that stops reading early (grep -q) fails its pipeline by SIGPIPE under pipefail.
FAKE = """#!/bin/sh
case "$1" in --version) echo "etcd Version: {v}";; version) echo "$(basename "$0") version: {v}";; esac
i=0; while [ $i -lt 20000 ]; do echo "Go Version: go1.23 line $i"; i=$((i+1)); done
"""

SANDBOX = r"""
mount -t tmpfs tmpfs /usr/local/bin
mkdir -p /var/cache/kubeforge && mount -t tmpfs tmpfs /var/cache/kubeforge
install -d /var/cache/kubeforge/etcd && cp "$ARCHIVE" "$REMOTE"
if bash -euo pipefail -c "$GUARD"; then echo guard-before=yes; else echo guard-before=no; fi
bash -euo pipefail -c "$UNPACK" && echo unpack=ok || echo "unpack=$?"
if bash -euo pipefail -c "$GUARD"; then echo guard-after=yes; else echo guard-after=no; fi
echo "left: $(ls -A /usr/local/bin | tr '\n' ' ')"
for b in /usr/local/bin/*; do if [ -e "$b" ]; then stat -c 'mode %n %a %U' "$b"; fi; done
"""


def archive_bytes(version: str = VERSION, tools=("etcd", "etcdctl", "etcdutl")) -> bytes:
    top = f"etcd-v{version}-linux-amd64"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in (*tools, "README.md"):
            data = (FAKE.format(v=version) if name != "README.md" else "docs\n").encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.uid, info.gid = len(data), 0o700, 1234, 1234
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def sandbox():
    if os.geteuid() != 0 or not shutil.which("unshare") or os.uname().machine != "x86_64":
        pytest.fail("this test runs as root on an x86_64 machine with unshare (util-linux), as the project's machines are")

    def run(tmp_path, content: bytes, sha: str | None = None, tools=("etcd", "etcdctl", "etcdutl")) -> dict:
        c = make_cluster(tmp_path, etcd_version=VERSION)
        c = dataclasses.replace(c, etcd=dataclasses.replace(c.etcd, release_url="http://127.0.0.1:1/releases"))
        archive = archive_for(c)
        if tools != archive.binaries:
            archive = dataclasses.replace(archive, version="3.4.23")
        path = tmp_path / archive.name
        path.write_bytes(content)
        env = dict(os.environ, ARCHIVE=str(path), REMOTE=archive.remote_path,
                   GUARD=cmd.archive_installed_guard(archive).script,
                   UNPACK=cmd.unpack_archive(archive, sha or hashlib.sha256(content).hexdigest()).script)
        res = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", SANDBOX],
                             env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        out: dict = {"stderr": res.stderr, "modes": {}}
        for line in res.stdout.splitlines():
            if line.startswith("mode "):
                _, name, mode, owner = line.split()
                out["modes"][os.path.basename(name)] = (mode, owner)
            elif "=" in line:
                k, _, v = line.partition("=")
                out[k] = v
            elif line.startswith("left: "):
                out["left"] = sorted(line[6:].split())
        return out

    return run


def test_the_archive_is_unpacked_into_usr_local_bin_and_the_guard_then_holds(tmp_path, sandbox):
    out = sandbox(tmp_path, archive_bytes())
    assert out["guard-before"] == "no" and out["unpack"] == "ok", out["stderr"]
    assert out["guard-after"] == "yes"
    assert out["left"] == ["etcd", "etcdctl", "etcdutl"]  # no temp dir, no README
    assert out["modes"] == {b: ("755", "root") for b in ("etcd", "etcdctl", "etcdutl")}


def test_an_archive_changed_after_its_check_is_refused_on_the_host_with_nothing_installed(tmp_path, sandbox):
    content = archive_bytes()
    out = sandbox(tmp_path, content, sha="0" * 64)
    assert out["unpack"] == "3" and "does not have sha256" in out["stderr"]
    assert out["left"] == [] and out["guard-after"] == "no"


def test_an_archive_without_a_tool_its_version_needs_is_refused(tmp_path, sandbox):
    out = sandbox(tmp_path, archive_bytes(tools=("etcd", "etcdctl")))
    assert out["unpack"] == "3" and "has no etcd-v3.5.16-linux-amd64/etcdutl" in out["stderr"]
    assert out["guard-after"] == "no"
