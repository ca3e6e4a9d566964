"""Reading kubeforge's run journals from the outside: which records belong to which attempt (a
process: the start or resume record carries its pid), and which completed steps ran twice."""

from __future__ import annotations

import json
from pathlib import Path

# step ids end in a content key; these kinds only read (a gate polls, a get copies to the operator)
READ_ONLY_KEYS = ("gate-", "get-")


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


def is_read_only(step_id: str) -> bool:
    return step_id.rsplit("/", 1)[-1].startswith(READ_ONLY_KEYS)


def repeated(first: list[dict], second: list[dict], always_run: set[str]) -> list[str]:
    """Steps done (not unchanged) by both attempts that change something: the second attempt ran a
    completed step again. ``always_run``: steps a re-run over a converged cluster also reports done
    (read-only checks), learned from the reference run."""
    both = done_ids(first) & done_ids(second)
    return sorted(s for s in both if not is_read_only(s) and s not in always_run)


def ended(recs: list[dict]) -> str | None:
    ends = [r for r in recs if r.get("type") == "end"]
    return ends[-1].get("outcome") if ends else None
