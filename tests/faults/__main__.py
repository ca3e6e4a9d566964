"""python -m tests.faults [--workflow W] [--kind K] [--sample N] [--seed S] — see docs/faults.md.

Boots one lab per shape the selected workflows need (the etcd lab, then the Kubernetes lab), runs
each needed workflow once uninterrupted (the reference: its step count, end state and time), then
every selected point from the saved disks; one lab at a time. The last line is always

    faults: P points, C converged, Q quorum losses, L lost writes, R repeated steps
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from tests.faults.harness import FaultLab, Outcome
from tests.faults.points import BAR_POINTS, KINDS, Point, bar, matrix, select
from tests.faults.workflows import NOT_COVERED, ORDER, SHAPES, WORKFLOWS


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.split("\n")[0])
    ap.add_argument("--workflow", choices=ORDER, action="append",
                    help="repeatable; default: every workflow (CI names its four etcd workflows)")
    ap.add_argument("--kind", choices=KINDS)
    ap.add_argument("--sample", type=int, help="run N points drawn with the seed (at least one per workflow, "
                                                "and the mixed-version etcd case whenever etcd-upgrade is in)")
    ap.add_argument("--seed", type=int, help="default: random, printed")
    ap.add_argument("--bar", action="store_true",
                    help=f"the issue's bar instead of the full matrix: SIGINT at every boundary of upgrade and "
                         f"etcd upgrade (and the mixed-version case), plus one point of every workflow's others drawn "
                         f"with the seed, and more only until {BAR_POINTS} points in all")
    ap.add_argument("--shard", help="K/N: only every N-th selected point from the K-th (1-based), to run "
                                    "the matrix in batches that each hold the lab lock briefly")
    ap.add_argument("--at", type=int, action="append", help="repeatable: only the points after step N (to replay "
                                                           "a point the matrix found failing)")
    ap.add_argument("--after-step", action="append", metavar="SUFFIX",
                    help="repeatable: instead of the matrix, one point per selected workflow right after its first "
                         "step whose id ends with SUFFIX (a finding replayed by name), with --kind (default sigint)")
    ap.add_argument("--out", type=Path, help="where each case's logs go (default: a directory under /tmp)")
    return ap.parse_args(argv)


def needed(workflows: list[str] | None) -> list[str]:
    """The workflows whose references must run: the selected ones and those saving their baselines."""
    want = list(workflows) if workflows else list(ORDER)
    saves = {WORKFLOWS[w].saves: w for w in ORDER if WORKFLOWS[w].saves}
    out = set(want)
    for w in want:
        b = WORKFLOWS[w].prepared_from or WORKFLOWS[w].baseline
        while b in saves:
            out.add(saves[b])
            b = WORKFLOWS[saves[b]].prepared_from or WORKFLOWS[saves[b]].baseline
    return [w for w in ORDER if w in out]


def share(sample: int | None, selected: list[str], shape: str) -> int | None:
    """A sample's points for one lab shape: its part of ``sample`` by the selected workflows it
    holds (each shape still draws one point per workflow first). One shape selected: all of it,
    so CI's sample of the etcd workflows draws what it always drew."""
    if sample is None:
        return None
    mine = [w for w in selected if WORKFLOWS[w].shape == shape]
    if len(mine) == len(selected):
        return sample
    return max(1, round(sample * len(mine) / len(selected)))


def summary_line(outcomes: list[Outcome]) -> str:
    p = len(outcomes)
    c = sum(o.converged for o in outcomes)
    q = sum(len(o.quorum_losses) for o in outcomes)
    lw = sum(o.lost_writes for o in outcomes)
    r = sum(len(o.repeated) for o in outcomes)
    return f"faults: {p} points, {c} converged, {q} quorum losses, {lw} lost writes, {r} repeated steps"


def estimate(full: list, outcomes: list[Outcome]) -> float:
    """Seconds the points of ``full`` would take: each workflow's points at the mean time of its
    measured ones (the overall mean for a workflow not measured)."""
    overall = sum(o.seconds for o in outcomes) / len(outcomes)
    total = 0.0
    for p in full:
        mine = [o.seconds for o in outcomes if o.point.workflow == p.workflow]
        total += sum(mine) / len(mine) if mine else overall
    return total


def table(outcomes: list[Outcome]) -> list[str]:
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.point.workflow, o.point.kind)].append(o)
    lines = [f"{'workflow':22} {'kind':8} {'P':>3} {'C':>3} {'Q':>3} {'L':>4} {'R':>3} {'s/point':>8}"]
    for (wf, kind), os_ in sorted(groups.items()):
        lines.append(f"{wf:22} {kind:8} {len(os_):3d} {sum(o.converged for o in os_):3d} "
                     f"{sum(len(o.quorum_losses) for o in os_):3d} {sum(o.lost_writes for o in os_):4d} "
                     f"{sum(len(o.repeated) for o in os_):3d} {sum(o.seconds for o in os_) / len(os_):8.0f}")
    return lines


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # a timeout's SIGTERM must still tear the lab down (the finally below)
    signal.signal(signal.SIGTERM, _interrupt)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    print(f"seed {seed}", flush=True)
    out = args.out or Path(f"/tmp/kubeforge-faults-{time.strftime('%Y%m%dT%H%M%S')}-{seed}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"case logs under {out}" + (f"; not covered yet: {', '.join(NOT_COVERED)}" if NOT_COVERED else ""), flush=True)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    full: list = []
    references: dict = {}
    interrupted = False
    selected = list(args.workflow or ORDER)
    want = needed(args.workflow)
    shapes = list(dict.fromkeys(WORKFLOWS[w].shape for w in want))
    on_bar = 0  # the bar's points in the labs before this one
    for shape in shapes:
        lab = FaultLab(log=lambda m: print(m, flush=True), shape=SHAPES[shape])
        try:
            lab.up()
            for w in want:
                if WORKFLOWS[w].shape == shape:
                    lab.reference(WORKFLOWS[w], out / w, points=w in selected)
            references |= lab.references
            steps_of = {w: ref.steps for w, ref in lab.references.items() if w in selected}
            part = matrix(steps_of, seed, {w: lab.references[w].phase_ends() for w in steps_of})
            full += part
            if args.bar:
                chosen = [p for p in part if args.kind is None or p.kind == args.kind]
                points = bar(chosen, seed, BAR_POINTS - on_bar if shape == shapes[-1] else 0)
                on_bar += len(points)
            else:
                points = select(part, workflows=args.workflow, kind=args.kind,
                                sample=share(args.sample, selected, shape), seed=seed)
            if args.after_step:
                points = [Point(w, args.kind or "sigint", after_step=s) for w in steps_of for s in args.after_step]
            if args.at:
                points = [p for p in points if p.after in args.at]
            if args.shard:
                k, n = (int(x) for x in args.shard.split("/"))
                points = points[k - 1::n]
            print(f"{len(points)} of {len(part)} points in the full matrix of the {shape} lab", flush=True)
            for i, point in enumerate(points, 1):
                began = time.monotonic()
                try:
                    o = lab.case(WORKFLOWS[point.workflow], point, out / f"{i:03d}-{point.workflow}-{point.kind}")
                except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
                    # the harness could not judge this point (say, a client pair left unusable on the
                    # machines): it counts as not converged, and the next point starts from saved disks
                    o = Outcome(point, seconds=time.monotonic() - began,
                                problems=[f"the harness could not finish the case: {type(e).__name__}: {e}"])
                outcomes.append(o)
                print(f"[{i}/{len(points)}] {o.line()}", flush=True)
        except KeyboardInterrupt as e:
            interrupted = True  # the points that ended still count; the summary below says so
            print(f"stopped ({e or 'interrupted'}) after {len(outcomes)} points", flush=True)
            break
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            # a reference that could not run: no point of this lab can be judged; the summary still ends it
            interrupted = True
            print(f"the {shape} lab stopped: {type(e).__name__}: {e}", flush=True)
        finally:
            lab.down()
    if outcomes:
        per_point = sum(o.seconds for o in outcomes) / len(outcomes)
        refs = sum(r.seconds for r in references.values())
        print("\n".join(table(outcomes)))
        print(f"{time.monotonic() - started:.0f}s in all; {per_point:.0f}s per point; the full matrix "
              f"({len(full)} points) would take about {(estimate(full, outcomes) + refs) / 60:.0f} min", flush=True)
    print(summary_line(outcomes), flush=True)
    return 0 if outcomes and not interrupted and all(
        o.converged and not o.quorum_losses and not o.lost_writes and not o.repeated for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
