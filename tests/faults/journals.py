"""Reading kubeforge's run journals from the outside: which records belong to which attempt (a
process: the start or resume record carries its pid), and which completed steps ran twice."""

from __future__ import annotations

import json
import re
from pathlib import Path

# Step ids end in a content key naming the kind. Idempotent by construction: gates and fetches only
# read; a put writes the file's wanted content atomically (skipped when the sha256 matches); a run
# step with a read-only guard (``unless``) checks before it acts. What is left -- run steps without a
# guard and steps on the operator's machine -- must never run twice.
IDEMPOTENT_KEYS = ("gate-", "get-", "put-")
# the executor logs every step it starts as "<id>: start <describe()>"; a guarded step's line ends
# with its guard
_STARTED = re.compile(r"(?P<id>\S+/\S+/\S+): start (?P<line>.*)$")


def records(path: Path) -> list[dict]:
    out = []
    try:
        text = path.read_text()
    except OSError:
        return []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
        if isinstance(rec, dict):
            out.append(rec)
    return out


def journals(runs_dir: Path) -> list[Path]:
    return sorted(runs_dir.glob("*/journal.jsonl")) if runs_dir.is_dir() else []


def attempt(runs_dir: Path, pid: int) -> tuple[Path | None, list[dict]]:
    """The journal the process ``pid`` wrote to, and the records it wrote (after its start/resume)."""
    for path in journals(runs_dir):
        mine, inside = [], False
        for rec in records(path):
            if rec.get("type") in ("start", "resume"):
                inside = rec.get("pid") == pid
                if inside:
                    mine.append(rec)
                continue
            if inside:
                mine.append(rec)
        if mine:
            return path, mine
    return None, []


def steps(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r.get("type") == "step"]


def done_ids(recs: list[dict]) -> set[str]:
    return {r["step"] for r in steps(recs) if r.get("status") == "done"}


def guarded_steps(runs_dir: Path) -> set[str]:
    """Ids of the run steps that carry an ``unless`` guard, from every run log under ``runs_dir``."""
    out = set()
    for log in runs_dir.glob("*/kubeforge.log"):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            m = _STARTED.search(line)
            if m and "(unless: " in m.group("line"):
                out.add(m.group("id"))
    return out


def is_idempotent(step_id: str, guarded: set[str]) -> bool:
    return step_id.rsplit("/", 1)[-1].startswith(IDEMPOTENT_KEYS) or step_id in guarded


def repeated(first: list[dict], second: list[dict], always_run: set[str], guarded: set[str] = frozenset()) -> list[str]:
    """Steps that are not idempotent and that both attempts report done (not unchanged, not done
    earlier): the second attempt ran a completed step again. ``always_run``: steps a re-run over a
    converged cluster also reports done (read-only checks), learned from the reference run."""
    both = done_ids(first) & done_ids(second)
    return sorted(s for s in both if not is_idempotent(s, guarded) and s not in always_run)


def ended(recs: list[dict]) -> str | None:
    ends = [r for r in recs if r.get("type") == "end"]
    return ends[-1].get("outcome") if ends else None
