"""python -m tests.lab up|down|status|ssh NAME|mirror — the lab by hand (as root)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from tests.lab.layout import ROLES, layout
from tests.lab.paths import LabError


def _roles(text: str | None):
    """'etcd=3,control-plane=2,worker=2', a plain count '5', or nothing for the default three."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    out = {}
    for part in text.split(","):
        role, _, n = part.partition("=")
        if role.strip() not in ROLES or not n.strip().isdigit():
            raise LabError(f"--roles: {part!r} is not ROLE=COUNT (roles: {', '.join(ROLES)})")
        out[role.strip()] = int(n)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    ap.add_argument("--index", type=int, default=0, help="lab number N: bridge kfnbrN, subnet 10.77.(4+N).0/24")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build (once) and boot the machines, write inventory + known_hosts")
    up.add_argument("--roles", help="e.g. etcd=3,control-plane=2,worker=2 or a machine count (default: 3 machines)")
    up.add_argument("--kubernetes-version", default=None)
    up.add_argument("--endpoint-mode", default="auto", choices=["auto", "none", "haproxy", "external"])
    up.add_argument("--no-mirror", action="store_true")
    up.add_argument("--no-egress", action="store_true",
                    help="no way out: no default route, no DNS, no connection to the runner (the mirror included)")
    up.add_argument("--persistent", default="", help="comma-separated machines whose disk survives stop/start")
    up.add_argument("--inventory-out", help="also copy the inventory here")
    down = sub.add_parser("down", help="stop the lab and remove its bridge and state")
    down.add_argument("--all", action="store_true", help="remove leftovers of every lab, also after crashes")
    down.add_argument("--force", action="store_true", help="with --all: also labs locked by a running session")
    down.add_argument("--only", action="append", help="with --all: sweep only this lab (e.g. lab3); repeatable")
    sub.add_parser("status", help="machines, addresses, whether they run and answer SSH")
    ssh = sub.add_parser("ssh", help="ssh into a machine as kube (strict host-key checking)")
    ssh.add_argument("name")
    ssh.add_argument("command", nargs="*")
    sub.add_parser("mirror", help="build the package mirror's .deb cache and print the closure")
    sub.add_parser("prepare", help="build the image, the .deb cache and the simulator packages once, up front")
    args = ap.parse_args(argv)

    if os.geteuid() != 0 and args.cmd != "status":
        print("python -m tests.lab: needs root (systemd-nspawn, bridges, mounts)", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1


def _run(args) -> int:
    from tests.lab.lab import DEFAULT_KUBERNETES_VERSION, Lab

    if args.cmd == "up":
        lab = Lab(
            layout(_roles(args.roles), persistent=[p for p in args.persistent.split(",") if p]),
            index=args.index,
            kubernetes_version=args.kubernetes_version or DEFAULT_KUBERNETES_VERSION,
            endpoint_mode=args.endpoint_mode,
            with_mirror=not args.no_mirror,
            egress=not args.no_egress,
        ).up()
        if args.inventory_out:
            lab.write_inventory(__import__("pathlib").Path(args.inventory_out))
        print(f"inventory:   {lab.inventory_path}\nknown_hosts: {lab.known_hosts}\nkey:         {lab.key_path}")
        if lab.with_mirror:
            print(f"mirror:      {lab.mirror_url}/")
        for m in lab.machines.values():
            print(f"  {m.name:<10} {m.address:<13} {','.join(m.spec.roles)}")
        return 0
    if args.cmd == "down":
        if args.all:
            from tests.lab.cleanup import down_all

            started = time.monotonic()
            removed = down_all(force=args.force, only=set(args.only) if args.only else None)
            print(f"removed: {', '.join(removed) or 'nothing left over'} ({time.monotonic() - started:.1f}s)")
        else:
            Lab.attach(args.index).down()
        return 0
    if args.cmd == "status":
        from tests.lab.network import ssh_banner

        lab = Lab.attach(args.index)
        rows = [
            {"name": m.name, "address": m.address, "roles": list(m.spec.roles), "running": lab.running(m.name),
             "ssh": bool(lab.running(m.name) and ssh_banner(m.address))}
            for m in lab.machines.values()
        ]
        print(json.dumps({"lab": lab.id.name, "inventory": str(lab.inventory_path), "machines": rows}, indent=2))
        return 0
    if args.cmd == "ssh":
        lab = Lab.attach(args.index)
        argv = lab.ssh_argv(args.name, *args.command)
        os.execvp(argv[0], argv)
    if args.cmd == "prepare":
        from tests.lab import mirror, rootfs

        started = time.monotonic()
        image = rootfs.ensure_rootfs()
        debs = mirror.fetch_debs(image)
        sim = mirror.build_sim_debs()
        print(f"image {image}; {len(debs)} .debs in {mirror.DEB_CACHE}; simulator packages {sim or 'not in this tree'}"
              f" ({time.monotonic() - started:.1f}s)")
        return 0
    if args.cmd == "mirror":
        from tests.lab import mirror, rootfs

        debs = mirror.fetch_debs(rootfs.ensure_rootfs())
        print("\n".join(str(d) for d in debs))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
