"""`kubectl` stand-in: version, get, cordon/uncordon, drain, label, taint, apply, delete node, wait."""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import sys
import time

from . import apis, client, host, quick, views, yamlish
from .host import SimError, parse_version
from .rbac import plural


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise SimError(message.replace("unrecognized arguments:", "unknown flag:"))


def _kubeconfig(a) -> str | None:
    if a.kubeconfig:
        return a.kubeconfig
    env = os.environ.get("KUBECONFIG")
    if env:
        return env.split(":")[0]
    home = os.path.expanduser("~/.kube/config")
    return home if os.path.exists(home) else None


def bases(a) -> list[str]:
    cfg = _kubeconfig(a)
    server = getattr(a, "server", None)
    if cfg and not os.path.exists(cfg):
        raise SimError(f'stat {cfg}: no such file or directory')
    if server:
        # like kubectl: --server replaces the kubeconfig's server (its credentials stay); no falling
        # back to the local one. Without a kubeconfig there is no CA to trust the server with.
        return [client.from_kubeconfig(cfg, server=server) if cfg else client.base_url(server, ssl.create_default_context())]
    if not cfg:
        raise SimError("The connection to the server localhost:8080 was refused - did you specify the right host or port?")
    out = [client.from_kubeconfig(cfg)]
    local = client.local(out[0])
    if host.exists("/etc/kubernetes/manifests/kube-apiserver.yaml") and local not in out:
        out.append(local)
    return out


def state(a, access: dict | None = None) -> dict:
    """The cluster's state, read as ``access`` (verb, resource, group, namespace) says, which the
    API server authorises; by default a read of the nodes."""
    return client.get(bases(a), "/kubesim/state", access)


def _access(a, what: str | None, kind: str, names: list[str]) -> dict:
    resource, _, group = (what or kind).lower().partition(".")
    if what not in ("nodes", "pods", None):
        resource, group = plural(what), _GROUPS.get(what, "")
    elif what is None and not resource.endswith("s"):
        resource = plural(resource)
    namespaced = what != "nodes" and not a.all_namespaces
    return {"verb": "get" if names else "list", "resource": resource, "group": group,
            "namespace": (a.namespace or "default") if namespaced else ""}


def cmd_version(a, version: str) -> int:
    major, minor, _ = parse_version(version)
    out = {"clientVersion": {"major": str(major), "minor": str(minor), "gitVersion": version, "platform": "linux/amd64"},
           "kustomizeVersion": quick.KUSTOMIZE}
    if not a.client:
        out["serverVersion"] = client.get(bases(a), "/version")
    if a.output == "json":
        print(json.dumps(out, indent=2))
    elif a.output == "yaml":
        print(yamlish.dump(out), end="")
    else:
        print(quick.kubectl_client_version(version))
        if "serverVersion" in out:
            print(f"Server Version: {out['serverVersion']['gitVersion']}")
    return 0


_KINDS = {"nodes": "nodes", "node": "nodes", "no": "nodes", "pods": "pods", "pod": "pods", "po": "pods",
          "deployments": "Deployment", "deployment": "Deployment", "deploy": "Deployment",
          "daemonsets": "DaemonSet", "ds": "DaemonSet", "services": "Service", "svc": "Service",
          "poddisruptionbudgets": "PodDisruptionBudget", "pdb": "PodDisruptionBudget"}


_GROUPS = {"Deployment": "apps", "DaemonSet": "apps", "PodDisruptionBudget": "policy"}


def cmd_get(a, version: str) -> int:
    if a.raw:
        body = client.get(bases(a), a.raw)
        print(body if isinstance(body, str) else json.dumps(body, indent=2))
        return 0
    if not a.kind:
        raise SimError("You must specify the type of resource to get.")
    kind, _, name = a.kind.partition("/")
    names = [n for n in ([name] if name else []) + a.names if n]
    what = _KINDS.get(kind.lower())
    st = state(a, _access(a, what, kind, names))
    if kind.lower() in ("secrets", "secret"):
        return _get_secrets(a, st, names)
    if what is None:
        return _get_stored(a, st, kind, names)
    if what == "nodes":
        items = views.node_list(st, names)
        missing = [n for n in names if n not in st["nodes"]]
        if missing:
            raise SimError(f'Error from server (NotFound): nodes "{missing[0]}" not found', 404)
        if a.output in ("json", "yaml", "name"):
            sys.stdout.write(views.dump(items, a.output, "node", single=len(names) == 1))
        else:
            sys.stdout.write(views.nodes_table(st, items, a.output == "wide"))
        return 0
    if what == "pods":
        pods = [views.pod_object(st, p) for _, p in sorted(st["pods"].items())
                if (a.all_namespaces or p["namespace"] == (a.namespace or "default")) and (not names or p["name"] in names)]
        m = re.fullmatch(r"spec\.nodeName=(.+)", a.field_selector or "")
        if m:
            pods = [p for p in pods if p["spec"]["nodeName"] == m.group(1)]
        if a.output in ("json", "yaml", "name"):
            sys.stdout.write(views.dump(pods, a.output, "pod"))
        else:
            sys.stdout.write(views.pods_table(st, pods, a.all_namespaces, a.output == "wide"))
        return 0
    objs = [o for o in st["objects"].values() if o["kind"] == what and (not names or o["name"] in names)
            and (a.all_namespaces or o["namespace"] == (a.namespace or "default"))]
    missing = [n for n in names if n not in {o["name"] for o in objs}]
    if missing:  # as the real kubectl: a named object that is not there is an error (exit 1)
        plural = f"{what.lower()}s" + (f".{_GROUPS[what]}" if what in _GROUPS else "")
        raise SimError(f'Error from server (NotFound): {plural} "{missing[0]}" not found', 404)
    if a.output == "json":
        print(json.dumps({"kind": "List", "items": objs}, indent=2))
    else:
        sys.stdout.write(views.table([["NAMESPACE", "NAME"]] + [[o["namespace"], o["name"]] for o in objs]))
    return 0


def _get_secrets(a, st: dict, names: list[str]) -> int:
    """The Secrets kubeadm keeps in kube-system: `bootstrap-token-<id>` per live token and `kubeadm-certs`
    while the uploaded certificates last (metadata and expiration only: the simulator keeps no secret)."""
    items = []
    if (a.namespace or "default") == "kube-system" or a.all_namespaces:
        for tid, expires in sorted((st.get("bootstrapTokens") or {}).items()):
            items.append(views.secret_object(f"bootstrap-token-{tid}", "bootstrap.kubernetes.io/token",
                                             {"token-id": tid, "expiration": views.rfc3339(expires)}))
        if st.get("kubeadmCertsExpires"):
            items.append(views.secret_object("kubeadm-certs", "Opaque", {}))
    if names:
        missing = [n for n in names if n not in {i["metadata"]["name"] for i in items}]
        if missing:
            raise SimError(f'Error from server (NotFound): secrets "{missing[0]}" not found', 404)
        items = [i for i in items if i["metadata"]["name"] in names]
    if a.output in ("json", "yaml", "name"):
        sys.stdout.write(views.dump(items, a.output, "secret", single=len(names) == 1))
    else:
        sys.stdout.write(views.table([["NAME", "TYPE"]] + [[i["metadata"]["name"], i["type"]] for i in items]))
    return 0


def _get_stored(a, st: dict, resource: str, names: list[str]) -> int:
    """`kubectl get` of any other resource type the API server of this minor serves: objects in its
    preferred version, with the managedFields and annotations they were written with."""
    minor = parse_version(st.get("serverVersion") or st.get("clusterVersion") or "v1.0.0")[1]
    found = apis.resolve(st, resource, minor)
    if found is None:
        raise SimError(f"the server doesn't have a resource type \"{resource.partition('.')[0]}\"")
    group, kind = found
    ns = None if a.all_namespaces else (a.namespace or "default")
    objs = [o for o in views.stored_objects(st, group, kind)
            if (ns is None or not o["namespace"] or o["namespace"] == ns) and (not names or o["name"] in names)]
    missing = [n for n in names if n not in {o["name"] for o in objs}]
    if missing:
        plural = f"{kind.lower()}s" + (f".{group}" if group else "")
        raise SimError(f'Error from server (NotFound): {plural} "{missing[0]}" not found', 404)
    items = [views.api_object(st, o, apis.preferred(st, o.get("apiVersion") or "v1", kind, minor)) for o in objs]
    if a.output in ("json", "yaml", "name"):
        sys.stdout.write(views.dump(items, a.output, kind.lower(), single=len(names) == 1))
    elif not items:
        print(f"No resources found{'' if ns is None else f' in {ns} namespace'}.", file=sys.stderr)
    else:
        sys.stdout.write(views.table([["NAMESPACE", "NAME"]] + [[o["namespace"], o["name"]] for o in objs]))
    return 0


def cmd_cordon(a, version: str) -> int:
    unsched = a.cmd == "cordon"
    out = client.op(bases(a), "cordon", {"node": a.node, "unschedulable": unsched})
    print(f"node/{a.node} {'' if out['changed'] else 'already '}{'cordoned' if unsched else 'uncordoned'}")
    return 0


def cmd_drain(a, version: str) -> int:
    from .drain import drain

    return drain(bases(a), a)


def cmd_label(a, version: str) -> int:
    if a.kind not in ("node", "nodes", "no"):
        raise SimError("the simulator labels nodes only")
    setl, remove = {}, []
    for item in a.items:
        if item.endswith("-") and "=" not in item:
            remove.append(item[:-1])
        elif "=" in item:
            k, v = item.split("=", 1)
            setl[k] = v
        else:
            raise SimError(f"invalid label spec: {item}")
    client.op(bases(a), "label", {"node": a.name, "set": setl, "remove": remove, "overwrite": a.overwrite})
    print(f"node/{a.name} {'labeled' if setl or not remove else 'unlabeled'}")
    return 0


def cmd_taint(a, version: str) -> int:
    if a.kind not in ("node", "nodes", "no"):
        raise SimError("the simulator taints nodes only")
    add, remove = [], []
    for item in a.items:
        m = re.fullmatch(r"([^=:]+)(?:=([^:]*))?(?::(NoSchedule|PreferNoSchedule|NoExecute))?(-)?", item)
        if not m or (not m.group(4) and not m.group(3)):
            raise SimError(f'invalid taint spec: {item}, unknown taint effect or missing effect')
        t = {"key": m.group(1), "effect": m.group(3)}
        if m.group(2) is not None:
            t["value"] = m.group(2)
        (remove if m.group(4) else add).append({k: v for k, v in t.items() if v is not None})
    client.op(bases(a), "taint", {"node": a.name, "add": add, "remove": remove, "overwrite": a.overwrite})
    print(f"node/{a.name} {'tainted' if add else 'untainted'}")
    return 0


def _documents(text: str) -> list[dict]:
    out = []
    for chunk in re.split(r"(?m)^---[ \t]*$", text):
        try:
            docs = yamlish.load_all(chunk)
        except yamlish.YamlError:
            # a construct the small reader does not know: keep the object's identity, which is all the
            # simulator stores for kinds it does not model
            kind = re.search(r"(?m)^kind:\s*(\S+)", chunk)
            name = re.search(r"(?m)^  name:\s*(\S+)", chunk)
            ns = re.search(r"(?m)^  namespace:\s*(\S+)", chunk)
            if not kind or not name:
                raise
            docs = [{"kind": kind.group(1), "metadata": {"name": name.group(1).strip("\"'"),
                                                         **({"namespace": ns.group(1)} if ns else {})}}]
        for d in docs:
            out.extend(d.get("items", []) if isinstance(d, dict) and d.get("kind", "").endswith("List") else [d])
    return [d for d in out if d]


def cmd_apply(a, version: str) -> int:
    objects = []
    for f in a.filename:
        if f == "-":
            text = sys.stdin.read()
        elif re.match(r"https?://", f):
            import urllib.request

            try:
                with urllib.request.urlopen(f, timeout=30) as r:
                    text = r.read().decode()
            except OSError as e:
                raise SimError(f'unable to read URL "{f}": {e}') from None
        elif os.path.isdir(f):
            text = "\n---\n".join(open(os.path.join(f, n), encoding="utf-8").read() for n in sorted(os.listdir(f))
                                  if n.endswith((".yaml", ".yml", ".json")))
        else:
            try:
                text = open(f, encoding="utf-8").read()
            except OSError:
                raise SimError(f'the path "{f}" does not exist') from None
        try:
            objects += _documents(text)
        except yamlish.YamlError as e:
            raise SimError(f"error parsing {f}: {e}") from None
    for o in objects:
        if a.namespace and isinstance(o, dict):
            o.setdefault("metadata", {}).setdefault("namespace", a.namespace)
    source = a.filename[0] if len(a.filename) == 1 else "STDIN"
    out = client.op(bases(a), "apply", {"objects": objects, "serverSide": a.server_side,
                                        "source": "STDIN" if source == "-" else source})
    applied = [ln for ln in out["lines"] if not ln.startswith("error:")]
    failed = [ln for ln in out["lines"] if ln.startswith("error:")]
    if applied:
        print("\n".join(applied))
    if failed:
        print("\n".join(failed), file=sys.stderr)
        return 1
    return 0


def cmd_delete(a, version: str) -> int:
    if a.kind not in ("node", "nodes", "no"):
        raise SimError("the simulator deletes nodes only")
    try:
        client.op(bases(a), "delete_node", {"node": a.name})
    except SimError as e:
        if not (a.ignore_not_found and e.code == 404):
            raise
        return 0
    print(f'node "{a.name}" deleted')
    return 0


def cmd_wait(a, version: str) -> int:
    if a.for_ != "condition=Ready":
        raise SimError("the simulator waits for condition=Ready only")
    deadline = time.time() + _seconds(a.timeout or "30s")
    while True:
        st = state(a)
        names = list(st["nodes"]) if a.all else [t.split("/", 1)[1] for t in a.targets if "/" in t]
        waiting = [n for n in names if not st["nodes"].get(n, {}).get("ready")]
        if not waiting and names:
            for n in names:
                print(f"node/{n} condition met")
            return 0
        if time.time() > deadline:
            raise SimError(f"timed out waiting for the condition on nodes/{(waiting or ['<none>'])[0]}")
        time.sleep(0.2)


def _seconds(text: str) -> float:
    total = 0.0
    for n, unit in re.findall(r"(\d+(?:\.\d+)?)(h|m|s)?", text):
        total += float(n) * {"h": 3600, "m": 60, "s": 1, "": 1}[unit]
    return total


def cmd_sim(a, version: str) -> int:
    if a.what == "advance-clock":
        # the simulator's test clock (tests/sim/README.md "Environment knobs"): every API server
        # sharing this cluster's state sees the time moved forward
        seconds = _seconds(a.duration or "")
        print(json.dumps(client.op(bases(a), "clock_advance", {"seconds": seconds}), indent=2))
        return 0
    if a.what == "reset-clock":
        # undo advance-clock (a test restores the cluster's time for the tests after it)
        print(json.dumps(client.op(bases(a), "clock_reset", {}), indent=2))
        return 0
    path = {"violations": "/kubesim/violations", "state": "/kubesim/state"}[a.what]
    print(json.dumps(client.get(bases(a), path), indent=2))
    return 0


def parser() -> _Parser:
    p = _Parser(prog="kubectl")
    g = argparse.ArgumentParser(add_help=False)
    g.add_argument("--kubeconfig")
    g.add_argument("-s", "--server")
    g.add_argument("-n", "--namespace")
    g.add_argument("-A", "--all-namespaces", action="store_true")
    g.add_argument("-o", "--output", default="")
    g.add_argument("-v", "--v")
    g.add_argument("--request-timeout")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("version", parents=[g])
    s.add_argument("--client", action="store_true")
    s.set_defaults(fn=cmd_version)
    s = sub.add_parser("get", parents=[g])
    s.add_argument("kind", nargs="?")
    s.add_argument("names", nargs="*")
    s.add_argument("--raw")
    s.add_argument("--field-selector")
    s.set_defaults(fn=cmd_get)
    for name in ("cordon", "uncordon"):
        s = sub.add_parser(name, parents=[g])
        s.add_argument("node")
        s.set_defaults(fn=cmd_cordon)
    s = sub.add_parser("drain", parents=[g])
    s.add_argument("node")
    s.add_argument("--ignore-daemonsets", action="store_true")
    s.add_argument("--delete-emptydir-data", "--delete-local-data", action="store_true", dest="delete_emptydir_data")
    s.add_argument("--force", action="store_true")
    s.add_argument("--timeout", default="0s")
    s.add_argument("--grace-period", default="-1")
    s.add_argument("--disable-eviction", action="store_true")
    s.set_defaults(fn=cmd_drain)
    for name, fn in (("label", cmd_label), ("taint", cmd_taint)):
        s = sub.add_parser(name, parents=[g])
        s.add_argument("kind")
        s.add_argument("name")
        s.add_argument("items", nargs="+")
        s.add_argument("--overwrite", action="store_true")
        s.set_defaults(fn=fn)
    s = sub.add_parser("apply", parents=[g])
    s.add_argument("-f", "--filename", action="append", required=True)
    s.add_argument("--server-side", action="store_true")
    s.add_argument("--force-conflicts", action="store_true")
    s.set_defaults(fn=cmd_apply)
    s = sub.add_parser("delete", parents=[g])
    s.add_argument("kind")
    s.add_argument("name")
    s.add_argument("--ignore-not-found", action="store_true")
    s.set_defaults(fn=cmd_delete)
    s = sub.add_parser("wait", parents=[g])
    s.add_argument("targets", nargs="*")
    s.add_argument("--for", dest="for_", required=True)
    s.add_argument("--all", action="store_true")
    s.add_argument("--timeout")
    s.set_defaults(fn=cmd_wait)
    s = sub.add_parser("sim", parents=[g])
    s.add_argument("what", choices=["violations", "state", "advance-clock", "reset-clock"])
    s.add_argument("duration", nargs="?")
    s.set_defaults(fn=cmd_sim)
    return p


_GLOBAL_WITH_VALUE = {"--kubeconfig", "-s", "--server", "-n", "--namespace", "-o", "--output", "-v", "--v", "--request-timeout"}


def _globals_last(argv: list[str]) -> list[str]:
    """kubectl takes global flags before the command too; argparse wants them after it."""
    moved, i = [], 0
    while i < len(argv) and argv[i].startswith("-"):
        flag = argv[i]
        moved.append(flag)
        if flag in _GLOBAL_WITH_VALUE and i + 1 < len(argv):
            moved.append(argv[i + 1])
            i += 1
        i += 1
    return argv[i:i + 1] + moved + argv[i + 1:]


def main(argv: list[str], version: str) -> int:
    try:
        a = parser().parse_args(_globals_last(argv))
        return a.fn(a, version)
    except SimError as e:
        msg = e.message
        print(msg if msg.startswith(("error", "Error from server", "The connection", "Unable to connect")) else f"error: {msg}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
