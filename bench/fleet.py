"""A fleet on the lab: 3 etcd + 3 control planes + N-6 workers from bare machines, at several sizes.

    sudo flock /tmp/kf-lab.lock python bench/fleet.py                  # 10, 30 and 100 machines
    sudo flock /tmp/kf-lab.lock python bench/fleet.py --sizes 10 --json /tmp/fleet.json

Per size, one lab of light machines (tests/lab: ``Lab(light=True)``) runs three phases, each a fresh
`kubeforge` process against the lab's inventory:

- ``up``       from bare machines;
- ``rerun``    `up` again on the converged cluster (goal: zero steps; <= 15 s at 100 machines);
- ``upgrade``  one minor (the mirror's next one) with ``maxUnavailable: 10%``.

Printed per phase, sizes side by side so the growth is visible:

- wall      the kubeforge process's wall time;
- steps     steps that did work / all steps the run's journal records (none: no journal, nothing planned);
- ssh peak  TCP connections from the runner to the lab's port 22 open at once (sampled every 0.1 s);
- rss       kubeforge's peak RSS (its VmHWM, sampled every 0.1 s; goal <= 300 MB);
- kf cpu    kubeforge's own CPU seconds (user + system, from wait4);
- hosts cpu the machines' CPU seconds in the phase (their cgroups' usage_usec: systemd, sshd, apt/dpkg,
            the facts script, the simulator, etcd); ``bound`` = hosts cpu / cores, the wall time the
            machines' own work needs on this runner's cores when nothing else runs;
- wall/bound how far the phase is from that bound (goal 1.2x; kubeforge's own CPU shares the cores too);
- others    CPU seconds the runner spent on anything else meanwhile (other labs and sessions): when it
            is large, the wall time waited for them, not for the fleet;
- top       the run's two longest phases (first step start to last step end, from the journal).
The upgrade row adds the workers phase against its ideal (per-node time x batches, as bench/upgrade.py).

The etcd members and control planes run at nice SERVER_NICE (below; ``--server-nice 0``: as the workers),
standing in for the cores of their own a real fleet gives them.

Numbers only, no pass/fail. The machines share 2 cores with whatever else runs (other labs, other
sessions): the load average is printed at each phase's start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upgrade import analyse  # noqa: E402 - after the path insert

PHASES = ("up", "rerun", "upgrade")
MAX_UNAVAILABLE = "10%"
# The nice value of the fleet's servers (etcd members and control planes), set right after boot. On a
# real fleet they have cores of their own; here they share the runner's 2 cores thread for thread with
# the workers' dpkg and facts scripts and with whatever else the runner does, and at 100 machines the
# one API server every kubelet and join talks to (cp-1, the lab's endpoint) then went unanswered for
# more than 10 s at a time (run 3 in docs/fleet.md). -10 weighs each of their threads ~9x an ordinary one.
SERVER_NICE = -10


# --- what is measured on the runner -------------------------------------------------------------
def ssh_connections(prefix: str) -> int:
    """ESTABLISHED TCP connections to port 22 of addresses in the lab's /24 (``prefix`` = its first
    three octets as little-endian hex, as /proc/net/tcp writes them)."""
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                remote, state = parts[2], parts[3]
                if state == "01" and remote.endswith(":0016") and remote[2:8] == prefix:
                    n += 1
    except OSError:
        return 0
    return n


def subnet_prefix(network_address: str) -> str:
    """'10.77.5.0' -> the hex of 5, 77, 10 as the low three bytes of /proc/net/tcp's address."""
    a, b, c, _ = (int(x) for x in network_address.split("."))
    return f"{c:02X}{b:02X}{a:02X}"


def cgroup_cpu_seconds(units: list[str]) -> float:
    from tests.lab.machine import machine_cgroups

    total = 0
    for unit in units:
        for d in machine_cgroups(unit):
            try:
                for line in (d / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        total += int(line.split()[1])
                break
            except OSError:
                continue
    return total / 1e6


def processes_by_machine(leaders: dict[str, int]) -> dict[str, list[Path]]:
    """/proc/PID of every process in each machine's PID namespace (one /proc walk)."""
    ns_of = {}
    for name, pid in leaders.items():
        try:
            ns_of[os.readlink(f"/proc/{pid}/ns/pid")] = name
        except OSError:
            continue
    out: dict[str, list[Path]] = {name: [] for name in leaders}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            name = ns_of.get(os.readlink(p / "ns/pid"))
        except OSError:
            continue
        if name is not None:
            out[name].append(p)
    return out


def pss_by_machine(leaders: dict[str, int]) -> dict[str, float]:
    """MiB of proportional memory of every process in each machine's PID namespace."""
    out = dict.fromkeys(leaders, 0.0)
    for name, procs in processes_by_machine(leaders).items():
        for p in procs:
            try:
                for line in (p / "smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        out[name] += int(line.split()[1]) / 1024
                        break
            except OSError:
                continue
    return out


def prioritise(leaders: dict[str, int], nice: int) -> int:
    """Give every thread of these machines (their init, sshd, journald: whatever they start later inherits
    it) the nice value ``nice``; returns how many threads were set. Linux's setpriority(PRIO_PROCESS)
    acts on one thread, so each task of each process is set."""
    done = 0
    for procs in processes_by_machine(leaders).values():
        for p in procs:
            try:
                tids = [int(t.name) for t in (p / "task").iterdir()]
            except OSError:
                continue
            for tid in tids:
                try:
                    os.setpriority(os.PRIO_PROCESS, tid, nice)
                    done += 1
                except OSError:
                    continue
    return done


def runner_busy_seconds() -> float:
    """CPU seconds the whole runner spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_kib(pid: int) -> int:
    """The process's own peak RSS (VmHWM: of its memory map since exec). Not wait4's ru_maxrss, which
    for a child started by vfork (as subprocess does) carries the parent's peak across the exec."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Every 0.1 s: SSH connections open to the lab, and the kubeforge process's peak RSS so far."""

    def __init__(self, prefix: str) -> None:
        super().__init__(daemon=True)
        self.prefix, self.peak, self.rss_kib, self.pid = prefix, 0, 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, ssh_connections(self.prefix))
            if self.pid:
                self.rss_kib = max(self.rss_kib, peak_rss_kib(self.pid))
            self._done.wait(0.1)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


# --- one kubeforge run ---------------------------------------------------------------------------
def run_kubeforge(workdir: Path, inventory: Path, args: list[str], prefix: str, units: list[str]) -> dict:
    before = set(_run_dirs(workdir))
    cpu0, busy0 = cgroup_cpu_seconds(units), runner_busy_seconds()
    load = os.getloadavg()[0]
    sampler = Sampler(prefix)
    sampler.start()
    log = workdir / f"kubeforge-{args[0]}-{int(time.time())}.out"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kubeforge", *args, "-i", str(inventory), "--yes"],
                                cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))  # this checkout's kubeforge
        sampler.pid = proc.pid
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = sampler.stop()
    hosts_cpu = cgroup_cpu_seconds(units) - cpu0
    busy = runner_busy_seconds() - busy0
    new = sorted(set(_run_dirs(workdir)) - before)
    records = []
    for d in new:
        records += [json.loads(line) for line in (d / "journal.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if r.get("type") == "step"]
    res = {
        "command": " ".join(args), "exit": proc.returncode, "wall": wall, "load": load,
        "steps_done": sum(1 for r in steps if r["status"] == "done"), "steps": len(steps),
        "ssh_peak": peak, "rss_mib": sampler.rss_kib / 1024, "kf_cpu": usage.ru_utime + usage.ru_stime,
        "hosts_cpu": hosts_cpu, "bound": hosts_cpu / (os.cpu_count() or 1),
        # what else the runner's cores did meanwhile (other labs, other sessions, the mirror)
        "others_cpu": busy - hosts_cpu - (usage.ru_utime + usage.ru_stime),
        "top": top_phases(steps), "run_dirs": [str(d) for d in new], "output": str(log),
    }
    if proc.returncode != 0:
        res["tail"] = log.read_text(errors="replace")[-3000:]
    return res


def _run_dirs(workdir: Path) -> list[Path]:
    return [p for p in (workdir / ".kubeforge").glob("*/runs/*") if (p / "journal.jsonl").exists()]


def _t(rec: dict) -> float:
    return datetime.fromisoformat(rec["time"]).timestamp()


def top_phases(steps: list[dict], n: int = 2) -> list[tuple[str, float]]:
    spans: dict[str, list[float]] = {}
    for r in steps:
        if "time" not in r:
            continue
        s = spans.setdefault(r["phase"], [math.inf, -math.inf])
        s[0], s[1] = min(s[0], _t(r) - r["duration"]), max(s[1], _t(r))
    return sorted(((p, b - a) for p, (a, b) in spans.items()), key=lambda x: -x[1])[:n]


# --- one size ------------------------------------------------------------------------------------
def fleet_layout(n: int) -> dict[str, int]:
    if n < 7:
        raise SystemExit(f"a fleet is 3 etcd + 3 control planes + at least one worker: {n} machines is too few")
    return {"etcd": 3, "control-plane": 3, "worker": n - 6}


def next_minor(versions: list[str], current: str) -> str:
    minor = tuple(int(x) for x in current.split(".")[:2])
    later = [v for v in versions if tuple(int(x) for x in v.split(".")[:2]) == (minor[0], minor[1] + 1)]
    if not later:
        raise SystemExit(f"the lab mirror offers no {minor[0]}.{minor[1] + 1} to upgrade {current} to ({versions})")
    return later[-1]


def bench_size(n: int, phases: list[str], light: bool, say, server_nice: int = SERVER_NICE) -> dict:
    from ruamel.yaml import YAML

    from tests.lab import claims, mirror
    from tests.lab.lab import Lab
    from tests.lab.layout import layout
    from tests.lab.paths import CACHE_DIR

    out: dict = {"machines": n, "phases": {}}
    index, fd = claims.claim()
    lab = Lab(layout(fleet_layout(n)), index=index, log=lambda *_: None, light=light)
    try:
        mem0 = mem_available_mib()
        t0 = time.monotonic()
        lab.up(timeout=600)
        out["boot"] = time.monotonic() - t0
        units = [m.unit for m in lab.machines.values()]
        if server_nice:
            servers = {m.name: lab.leader_pid(m.name) for m in lab.machines.values() if m.spec.roles != ("worker",)}
            out["server_nice"] = {"nice": server_nice, "machines": len(servers),
                                  "threads": prioritise(servers, server_nice)}
        prefix = subnet_prefix(str(lab.id.network.network_address))
        # kept after the lab is gone: each run's journal and debug log (kubeforge.log) say where time went
        # (the inventory's PKI and secrets too: root's, 0700)
        workdir = CACHE_DIR / "fleet-runs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{n}"
        workdir.mkdir(parents=True, mode=0o700)
        out["workdir"] = str(workdir)
        inventory = workdir / "fleet.yaml"
        yaml = YAML()
        doc = yaml.load(lab.write_inventory(inventory).read_text())
        doc["spec"]["upgrade"] = {"maxUnavailable": MAX_UNAVAILABLE}
        with inventory.open("w") as f:
            yaml.dump(doc, f)
        current = lab.kubernetes_version or ""
        target = next_minor(mirror.kube_versions(lab.run_dir / "mirror"), current) if "upgrade" in phases else ""
        say(f"{n} machines booted in {out['boot']:.0f}s (lab {lab.id.name}); kubernetes {current}"
            + (f" -> {target}" if target else ""))
        out["idle_pss"] = _pss_summary(lab)
        for phase in phases:
            args = {"up": ["up"], "rerun": ["up"], "upgrade": ["upgrade", "--to", target]}[phase]
            r = run_kubeforge(workdir, inventory, args, prefix, units)
            if phase == "upgrade" and r["exit"] == 0 and r["run_dirs"]:
                workers = sorted(m.name for m in lab.machines.values() if m.spec.roles == ("worker",))
                size = max(1, int(len(workers) * int(MAX_UNAVAILABLE[:-1]) / 100))
                try:
                    r["workers"] = analyse(Path(r["run_dirs"][-1]), workers, size)
                except (ValueError, KeyError, ZeroDivisionError) as e:
                    r["workers_error"] = str(e)
            r["pss"] = _pss_summary(lab)
            out["phases"][phase] = r
            say(row(n, phase, r))
            if r["exit"] != 0:
                say(f"kubeforge {r['command']} exited {r['exit']}; output {r['output']}:\n{r.get('tail', '')}")
                _keep_evidence(lab, workdir)
                break
        out["mem_used_mib"] = mem0 - mem_available_mib()
    finally:
        t0 = time.monotonic()
        lab.down()
        claims.release(fd)
        out["teardown"] = time.monotonic() - t0
    return out


def _keep_evidence(lab, workdir: Path) -> None:
    """The first control plane's kubelet journal and simulator logs, before teardown deletes its disk."""
    res = lab.exec("cp-1", ["sh", "-c", "journalctl -u kubelet --no-pager | tail -n 300; tail -n 300 /var/log/kubesim/* "
                                        "2>/dev/null; ss -tn state established '( sport = :6443 )' | wc -l"], timeout=60)
    (workdir / "cp-1-evidence.txt").write_text(res.stdout + res.stderr)


def _pss_summary(lab) -> dict[str, float]:
    """Median MiB per machine, by role."""
    pss = pss_by_machine({name: lab.leader_pid(name) for name in lab.machines})
    by_role: dict[str, list[float]] = {}
    for name, mib in pss.items():
        by_role.setdefault(lab.machines[name].spec.roles[0], []).append(mib)
    out = {role: sorted(v)[len(v) // 2] for role, v in by_role.items()}
    out["total"] = sum(pss.values())
    return out


# --- printing ------------------------------------------------------------------------------------
HEADER = (f"{'machines':>8} {'phase':<8} {'wall':>7} {'steps':>9} {'ssh peak':>8} {'rss':>7} {'kf cpu':>7} "
          f"{'hosts cpu':>9} {'bound':>7} {'wall/bound':>10} {'others':>7} {'load':>5}  top phases")


def row(n: int, phase: str, r: dict) -> str:
    top = ", ".join(f"{p} {s:.1f}s" for p, s in r["top"]) or "-"
    steps = f"{r['steps_done']}/{r['steps']}" if r["steps"] else "0/0"
    line = (f"{n:>8} {phase:<8} {r['wall']:>6.1f}s {steps:>9} {r['ssh_peak']:>8} {r['rss_mib']:>5.0f}MB "
            f"{r['kf_cpu']:>6.1f}s {r['hosts_cpu']:>8.1f}s {r['bound']:>6.1f}s {r['wall'] / max(r['bound'], 0.01):>9.2f}x "
            f"{r.get('others_cpu', 0):>6.1f}s {r['load']:>5.1f}  {top}")
    if "workers" in r:
        w = r["workers"]
        line += (f"; workers {w['actual']:.1f}s vs ideal {w['ideal']:.1f}s ({w['batches']} batches x {w['per_node']:.1f}s)"
                 f" = {w['actual'] / w['ideal']:.2f}x")
    if r["exit"] != 0:
        line += f"  [exit {r['exit']}]"
    return line


def table(results: list[dict]) -> str:
    lines = [HEADER]
    for phase in PHASES:
        for res in results:
            if phase in res["phases"]:
                lines.append(row(res["machines"], phase, res["phases"][phase]))
    lines.append("")
    lines.append(f"{'machines':>8} {'boot':>6} {'teardown':>8} {'mem used':>9}  median PSS per machine after each phase (MiB)")
    for res in results:
        pss = "; ".join(f"{ph}: " + " ".join(f"{k} {v:.0f}" for k, v in res["phases"][ph]["pss"].items() if k != "total")
                        for ph in res["phases"])
        lines.append(f"{res['machines']:>8} {res.get('boot', 0):>5.0f}s {res.get('teardown', 0):>7.0f}s "
                     f"{res.get('mem_used_mib', 0) / 1024:>7.1f}GB  idle: "
                     + " ".join(f"{k} {v:.0f}" for k, v in res.get("idle_pss", {}).items() if k != "total") + f"; {pss}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,30,100")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--heavy", action="store_true", help="the lab's ordinary machines instead of light ones")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    ap.add_argument("--server-nice", type=int, default=SERVER_NICE,
                    help=f"nice value of the etcd and control-plane machines (default {SERVER_NICE}; 0: as the workers)")
    args = ap.parse_args()
    from tests.lab.fixtures import lab_unavailable

    reason = lab_unavailable()
    if reason:
        print(f"bench/fleet.py needs the lab: {reason}", file=sys.stderr)
        return 2
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        print(f"--phases: unknown {unknown}; choose from {', '.join(PHASES)}", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"bench/fleet.py at {commit or '?'}, {started}; {os.cpu_count()} CPUs; "
          f"{'light' if not args.heavy else 'ordinary'} machines; maxUnavailable {MAX_UNAVAILABLE}; "
          f"etcd and control planes at nice {args.server_nice}", flush=True)

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    results = []
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        try:
            results.append(bench_size(n, phases, not args.heavy, say, args.server_nice))
        except Exception as e:  # noqa: BLE001 - say how far this size got, then go on with the next
            say(f"{n} machines: stopped: {type(e).__name__}: {str(e)[:2000]}")
            results.append({"machines": n, "phases": {}, "error": str(e)})
        if args.json:
            args.json.write_text(json.dumps({"commit": commit, "date": started, "results": results}, indent=1,
                                            default=str))
        failed = results[-1].get("error") or any(r["exit"] != 0 for r in results[-1]["phases"].values())
        if failed:
            say(f"{n} machines did not finish every phase: larger sizes are not tried")
            break
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
