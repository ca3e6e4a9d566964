"""Judges for the smoke script's stages: each reads kubectl/kubeforge JSON on stdin, prints one line
saying what it saw, and exits non-zero when the cluster is not what the stage expects.

    kubectl get nodes -o json | python -m tests.smoke.check nodes --count 2 [--version 1.34.2]
    kubectl get pods -o json | python -m tests.smoke.check pods --app smoke-web --replicas 2
    kubectl get services smoke-web -o json | python -m tests.smoke.check service --name smoke-web
    kubeforge etcd backup -o json | python -m tests.smoke.check backup      (prints the backup's name)
    kubeforge etcd status -o json | python -m tests.smoke.check etcd
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


class Fail(Exception):
    """The cluster is not in the state the stage waits for; the message says how."""


def _ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in node.get("status", {}).get("conditions", []))


def nodes(doc: dict, count: int, version: str | None) -> str:
    items = doc.get("items", [])
    names = sorted(n["metadata"]["name"] for n in items)
    if len(items) != count:
        raise Fail(f"{len(items)} nodes registered ({', '.join(names) or 'none'}), expected {count}")
    not_ready = sorted(n["metadata"]["name"] for n in items if not _ready(n))
    if not_ready:
        raise Fail(f"not Ready: {', '.join(not_ready)}")
    if version:
        want = "v" + version.lstrip("v")
        behind = {n["metadata"]["name"]: n.get("status", {}).get("nodeInfo", {}).get("kubeletVersion") for n in items}
        behind = {k: v for k, v in behind.items() if v != want}
        if behind:
            raise Fail("kubelet not at " + want + ": " + ", ".join(f"{k}={v}" for k, v in sorted(behind.items())))
    return f"{count} nodes Ready" + (f" at v{version.lstrip('v')}" if version else "") + f": {', '.join(names)}"


def pods(doc: dict, app: str, replicas: int) -> str:
    """The workload's pods (label app=APP) Running on a node: what both a real cluster and the
    simulator report the same way."""
    mine = [p for p in doc.get("items", []) if p.get("metadata", {}).get("labels", {}).get("app") == app]
    running = sorted(f"{p['metadata']['name']}@{p['spec'].get('nodeName')}" for p in mine
                     if p.get("status", {}).get("phase") == "Running" and p.get("spec", {}).get("nodeName"))
    if len(running) < replicas:
        raise Fail(f"app={app}: {len(running)}/{replicas} pods Running ({len(mine)} pods in all)")
    return f"app={app}: {len(running)}/{replicas} pods Running: {', '.join(running)}"


def service(doc: dict, name: str) -> str:
    """A Service named NAME exists: kubectl prints one object, the simulator a List of its stored objects."""
    items = doc.get("items", [doc] if doc.get("kind") == "Service" else [])
    found = [o for o in items if o.get("kind") == "Service" and (o.get("metadata", {}).get("name") or o.get("name")) == name]
    if not found:
        raise Fail(f"service {name} does not exist")
    return f"service {name} exists"


def backup(doc: dict) -> str:
    """kubeforge said it verified the backup; check the file it names independently (sha256 as stored).
    Prints the backup's name (what ``etcd restore --from`` takes) on stdout."""
    manifest = doc["manifest"]
    snapshot = Path(doc["path"]).parent / manifest["file"]
    if not manifest.get("verified"):
        raise Fail(f"backup {manifest['name']}: kubeforge did not mark it verified")
    if not snapshot.is_file():
        raise Fail(f"backup {manifest['name']}: {snapshot} does not exist")
    got = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    if got != manifest["file_sha256"]:
        raise Fail(f"{snapshot}: sha256 {got} differs from the manifest's {manifest['file_sha256']}")
    print(manifest["name"])
    return (f"backup {manifest['name']}: {snapshot.stat().st_size} bytes, revision {manifest['revision']}, "
            f"{manifest['total_keys']} keys, verified, sha256 matches its manifest")


def etcd(doc: dict) -> str:
    members = doc.get("members", [])
    healthy = doc.get("healthy", 0)
    if not doc.get("hasQuorum") or healthy != len(members) or not members:
        raise Fail(f"etcd: {healthy}/{len(members)} members healthy, quorum {'kept' if doc.get('hasQuorum') else 'LOST'}")
    return f"etcd: {healthy}/{len(members)} members healthy, leader {doc.get('leader')}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.smoke.check")
    sub = ap.add_subparsers(dest="what", required=True)
    n = sub.add_parser("nodes")
    n.add_argument("--count", type=int, required=True)
    n.add_argument("--version")
    d = sub.add_parser("pods")
    d.add_argument("--app", required=True)
    d.add_argument("--replicas", type=int, required=True)
    sv = sub.add_parser("service")
    sv.add_argument("--name", required=True)
    sub.add_parser("backup")
    sub.add_parser("etcd")
    args = ap.parse_args(argv)
    try:
        doc = json.loads(sys.stdin.read())
        if args.what == "nodes":
            msg = nodes(doc, args.count, args.version)
        elif args.what == "pods":
            msg = pods(doc, args.app, args.replicas)
        elif args.what == "service":
            msg = service(doc, args.name)
        elif args.what == "backup":
            msg = backup(doc)
        else:
            msg = etcd(doc)
    except (Fail, ValueError, KeyError) as e:
        print(f"check {args.what}: {e}", file=sys.stderr)
        return 1
    print(msg, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
