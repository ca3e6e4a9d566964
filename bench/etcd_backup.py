"""kubeforge etcd backup (verification included) vs `etcdctl snapshot save` on the member + OpenSSH scp.

    python bench/etcd_backup.py [--mb 200] [--rounds 3]

Boots 3 lab machines (systemd-nspawn, needs root), installs a 3-member TLS etcd with kubeforge,
fills it to ~--mb MB with 100 KB values (through the v3 JSON gateway on the member, one keep-alive
connection), then, in the same run and against the same member, times:
  kubeforge: take_backup() = status of every member, snapshot save + sha256 + snapshot status on
             the member, streaming download, checksum compare, integrity-hash check, manifest
  reference: `ssh member etcdctl snapshot save` + `scp member:file .`
and prints both medians and the ratio (goal: kubeforge <= 1.3x the reference).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILL = r"""
import base64, http.client, json, os, ssl, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(cafile="/etc/etcd/pki/ca.crt")
ctx.load_cert_chain("/etc/etcd/pki/healthcheck-client.crt", "/etc/etcd/pki/healthcheck-client.key")
ctx.check_hostname = False
c = http.client.HTTPSConnection(sys.argv[3], 2379, context=ctx)
for i in range(n):
    body = json.dumps({"key": base64.b64encode(b"/bench/%06d" % i).decode(),
                       "value": base64.b64encode(os.urandom(size)).decode()})
    c.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit("put failed: %s" % r.status)
"""


TLS = ["--cacert=/etc/etcd/pki/ca.crt", "--cert=/etc/etcd/pki/healthcheck-client.crt",
       "--key=/etc/etcd/pki/healthcheck-client.key"]


def save(lab, member: str) -> list[str]:
    return ["sudo", "env", "ETCDCTL_API=3", "etcdctl", f"--endpoints=https://{lab.address(member)}:2379",
            "--command-timeout=30m", *TLS, "snapshot", "save", "/tmp/ref.db"]  # noqa: S108 - on the lab machine


def scp(lab, member: str, work: Path) -> list[str]:
    return ["scp", "-q", "-i", str(lab.key_path), "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            f"kube@{lab.address(member)}:/tmp/ref.db", str(work / "ref.db")]  # noqa: S108 - on the lab machine


def boot():
    from tests.lab import claims
    from tests.lab.lab import Lab
    from tests.lab.layout import layout

    for _attempt in range(3):
        index, fd = claims.claim()
        lab = Lab(layout([("etcd-1", ("control-plane", "etcd")), ("etcd-2", ("etcd",)), ("etcd-3", ("etcd",))]),
                  index=index, log=lambda *_: None)
        try:
            lab.up()
            return lab, fd
        except Exception as exc:  # noqa: BLE001 - a busy runner sometimes loses a boot; a second one works
            claims.release(fd)
            print(f"lab boot failed ({str(exc).splitlines()[0]}); again", file=sys.stderr)
    raise SystemExit("the lab did not boot")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from ruamel.yaml import YAML

    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.workflows.etcd.backup import options_from_cluster, take_backup

    lab, fd = boot()
    try:
        work = Path(tempfile.mkdtemp(prefix="kf-etcd-bench-"))
        yaml = YAML()
        doc = yaml.load(lab.inventory_path.read_text())
        doc["spec"]["etcd"]["quotaBackendBytes"] = 8 * 1024**3
        doc["spec"]["etcd"]["backup"] = {"keep": 2, "includePKI": False}
        inv = work / "inventory.yaml"
        with inv.open("w") as f:
            yaml.dump(doc, f)
        t = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "kubeforge", "etcd", "install", "-i", str(inv), "--yes"],
                             capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stdout + res.stderr)
        print(f"install of a 3-member TLS etcd: {time.monotonic() - t:.1f}s")
        n = args.mb * 1024 // 100
        t = time.monotonic()
        fill = lab.exec("etcd-1", ["python3", "-c", FILL, str(n), str(100 * 1024), lab.address("etcd-1")], timeout=3600)
        if fill.returncode:
            raise SystemExit(fill.stderr)
        print(f"filled {n} keys of 100 KB in {time.monotonic() - t:.1f}s")

        cluster = load_cluster(inv)
        opts = options_from_cluster(cluster, directory=work / "backups")
        kube, ref = [], []
        with TransportPool(cluster) as pool:
            for r in range(args.rounds):
                # alternate which goes first: the runner is shared, and the page cache and the
                # member's load should favour neither side
                order = ("kubeforge", "reference") if r % 2 == 0 else ("reference", "kubeforge")
                for which in order:
                    if which == "kubeforge":
                        t = time.monotonic()
                        result = take_backup(cluster, pool, opts)
                        kube.append(time.monotonic() - t)
                        member = result.member
                        size = result.manifest.size
                        continue
                    member = member if kube else "etcd-2"
                    t = time.monotonic()
                    subprocess.run(lab.ssh_argv(member, *save(lab, member), ">/dev/null", "&&", "sudo", "chmod", "644",
                                                "/tmp/ref.db"), check=True, capture_output=True)  # noqa: S108 - on the lab machine
                    subprocess.run(scp(lab, member, work), check=True)
                    ref.append(time.monotonic() - t)
                print(f"round {r + 1} ({' first, '.join(order)} second): kubeforge {kube[-1]:.2f}s "
                      f"({size / 1e6:.0f} MB from {member}; "
                      f"{', '.join(f'{k} {v:.2f}s' for k, v in result.timings.items())}) | reference {ref[-1]:.2f}s "
                      f"| ratio {kube[-1] / ref[-1]:.2f}x")
        k, rr = statistics.median(kube), statistics.median(ref)
        print(f"\nsnapshot {size / 1e6:.0f} MB, median of {args.rounds}:")
        print(f"  kubeforge etcd backup (verified):       {k:6.2f}s")
        print(f"  etcdctl snapshot save + OpenSSH scp:    {rr:6.2f}s")
        print(f"  ratio of medians: {k / rr:.2f}x; median of per-round ratios: "
              f"{statistics.median(a / b for a, b in zip(kube, ref, strict=True)):.2f}x (goal <= 1.30x)")
    finally:
        lab.down()
        from tests.lab import claims

        claims.release(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
