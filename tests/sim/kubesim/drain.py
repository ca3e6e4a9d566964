"""`kubectl drain`: cordon, refuse what may not be deleted, evict through the API honouring PDBs, retry."""

from __future__ import annotations

import os
import re
import sys
import time

from . import client
from .host import SimError

PODS = {"verb": "list", "resource": "pods"}  # drain lists the pods of every namespace


def _seconds(text: str) -> float:
    total = 0.0
    for n, unit in re.findall(r"(\d+(?:\.\d+)?)(h|m|s)?", text or "0"):
        total += float(n) * {"h": 3600, "m": 60, "s": 1, "": 1}[unit]
    return total


def _fail(node: str, errors: list[str]) -> SimError:
    joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return SimError(f'error: unable to drain node "{node}" due to error: {joined}, continuing command...\n'
                    f'There are pending nodes to be drained:\n {node}\n' + "\n".join(errors))


def _wait_deleted(bases: list[str], node: str, evicted: list[dict], deadline: float | None, timeout: str) -> None:
    """kubectl waits for each evicted pod to be gone (its grace period) before calling it evicted."""
    waiting = {f"{p['namespace']}/{p['name']}": p for p in evicted}
    while waiting:
        present = client.get(bases, "/kubesim/state", PODS)["pods"]
        for key in [k for k in waiting if k not in present]:
            print(f"pod/{waiting.pop(key)['name']} evicted", flush=True)
        if not waiting:
            return
        if deadline is not None and time.time() > deadline:
            errs = [f'error when waiting for pod "{p["name"]}" in namespace "{p["namespace"]}" to terminate: '
                    f"global timeout reached: {timeout}" for p in waiting.values()]
            raise _fail(node, errs)
        time.sleep(0.2)


def drain(bases: list[str], a) -> int:
    node = a.node
    out = client.op(bases, "cordon", {"node": node, "unschedulable": True})
    print(f"node/{node} {'' if out['changed'] else 'already '}cordoned", flush=True)
    st = client.get(bases, "/kubesim/state", PODS)
    pods = sorted((p for p in st["pods"].values() if p["node"] == node), key=lambda p: (p["namespace"], p["name"]))
    ds = [p for p in pods if p["ownerKind"] == "DaemonSet"]
    rest = [p for p in pods if p["ownerKind"] != "DaemonSet"]
    ref = lambda ps: ", ".join(f"{p['namespace']}/{p['name']}" for p in ps)  # noqa: E731
    problems = []
    unmanaged = [p for p in rest if p["ownerKind"] in (None, "", "none")]
    if unmanaged and not a.force:
        problems.append(f"cannot delete Pods that declare no controller (use --force to override): {ref(unmanaged)}")
    if ds and not a.ignore_daemonsets:
        problems.append(f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {ref(ds)}")
    local = [p for p in rest if p["emptyDir"]]
    if local and not a.delete_emptydir_data:
        problems.append(f"cannot delete Pods with local storage (use --delete-emptydir-data to override): {ref(local)}")
    if problems:
        raise _fail(node, problems)
    if ds:
        print(f"Warning: ignoring DaemonSet-managed Pods: {ref(ds)}", file=sys.stderr, flush=True)
    for p in rest:
        print(f"evicting pod {p['namespace']}/{p['name']}", flush=True)
    timeout = _seconds(a.timeout)
    deadline = time.time() + timeout if timeout > 0 else None
    retry = float(os.environ.get("KUBESIM_EVICT_RETRY_SECONDS", "5"))
    pending = list(rest)
    grace = int(a.grace_period)
    evicted: list[dict] = []
    while pending:
        still = []
        for p in pending:
            try:
                client.op(bases, "evict", {"namespace": p["namespace"], "name": p["name"], "gracePeriod": grace})
                evicted.append(p)
            except SimError as e:
                if e.code == 404:
                    evicted.append(p)
                elif e.code == 429:
                    print(f'error when evicting pods/"{p["name"]}" -n "{p["namespace"]}" (will retry after 5s): '
                          f"{e.message}", file=sys.stderr, flush=True)
                    still.append(p)
                else:
                    raise
        pending = still
        if not pending:
            break
        if deadline is not None and time.time() + min(retry, 5) > deadline:
            if deadline > time.time():
                time.sleep(max(0.0, deadline - time.time()))
            errs = [f'error when evicting pods/"{p["name"]}" -n "{p["namespace"]}": global timeout reached: '
                    f'{a.timeout}' for p in pending]
            print(f'There are pending pods in node "{node}" when an error occurred: {errs[0]}', file=sys.stderr)
            for p in pending:
                print(f"{p['namespace']}/{p['name']}", file=sys.stderr)
            raise _fail(node, errs)
        time.sleep(retry)
    _wait_deleted(bases, node, evicted, deadline, a.timeout)
    print(f"node/{node} drained", flush=True)
    return 0
