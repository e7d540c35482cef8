"""The journal's views (`journal`, `log`, `sessions`) and the tables of `pins` and `cache`.

Every view reads the typed steps of `journal.read.SessionSummary`, except `journal --format
json`, which shows the journal's events as they were written (`SessionSummary.events`), so
that its output stays the journal's own JSON, keys and all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bisector.build.cache import BuildCache
from bisector.core.errors import JournalError
from bisector.core.model import Status, Verdict
from bisector.io.envcache import EnvCache
from bisector.io.git import git_ok, repo_root
from bisector.io.commits import commit_info
from bisector.journal.read import SessionSummary, find_session, list_journals, summarize
from bisector.review.pins.store import load_pins
from bisector.review.text import build_cell, rev_label, role_label, step_summary, warn


# ------------------------------------------------------------------------ journal
def step_rows(repo: Path, s: SessionSummary) -> list[dict[str, Any]]:
    infos = commit_info(repo, [st.commit for st in s.steps])
    rows = []
    for st in sorted(s.steps, key=lambda st: st.number):
        c = infos.get(st.commit)
        rows.append(
            {
                "step": st.number,
                "role": role_label(st),
                "commit": rev_label(st.commit, st.data_rev),
                "subject": (c.subject if c else "")[:50],
                "build": build_cell(st.result.build),
                "verdict": st.verdict.value,
                "probe": step_summary(st) + "".join(f" [{n[:80]}]" for n in st.result.notes),
            }
        )
    return rows


def outcome_line(s: SessionSummary) -> str:
    if s.end is None:
        return "unfinished (run `bisector run` to resume)"
    if s.outcome is None:
        return "unreadable end event"
    if s.outcome.status is Status.FOUND:
        return f"first bad commit {s.outcome.culprit}"
    return f"{s.outcome.status.value}: {s.outcome.message}"


def render_journal(repo_path: Path, session: str | None, fmt: str) -> str:
    """`bisector journal`: the steps as a table (`table`, `md`), or the events as written (`json`)."""
    repo = repo_root(repo_path)
    s = find_session(repo, session, warn)
    if fmt == "json":
        steps = [e for e in s.events if e["event"] == "step"]
        return json.dumps({"session": s.id, "start": s.start, "steps": steps, "end": s.end}, indent=2)
    table = tabulate(step_rows(repo, s), headers="keys", tablefmt="github" if fmt == "md" else "simple")
    goods = ", ".join(g[:10] for g in s.start["goods"])
    head = f"Session {s.id}: bad {str(s.start.get('bad', '?'))[:10]}, good {goods}, {s.start['candidates']} candidates"
    if fmt == "md":
        return f"## {head}\n\n{table}\n\n**Outcome:** {outcome_line(s)}\n"
    return f"{head}\n\n{table}\n\nOutcome: {outcome_line(s)}"


def render_bisect_log(repo_path: Path, session: str | None) -> str:
    """`bisector log`: the session as a `git bisect log`."""
    repo = repo_root(repo_path)
    s = find_session(repo, session, warn)
    if s.start.get("bad") == "?":  # no readable start event (warned): no bounds to log
        raise JournalError(f"{s.path} has no readable start event: a `git bisect log` needs its bounds "
                           "(fix its first line, or drop the session with `bisector reset`)")
    culprit = s.outcome.culprit if s.outcome else None
    shas = [s.start["bad"], *s.start["goods"], *(st.commit for st in s.steps)] + ([culprit] if culprit else [])
    infos = commit_info(repo, shas)

    def line(verdict: str, sha: str) -> str:
        c = infos.get(sha)
        return f"# {verdict}: [{sha}] {c.subject if c else ''}"

    out = [line("bad", s.start["bad"])]
    out += [line("good", g) for g in s.start["goods"]]
    out.append("git bisect start " + " ".join([s.start["bad"], *s.start["goods"]]))
    bounds = {s.start["bad"], *s.start["goods"]}
    for st in s.steps:
        if st.commit in bounds or st.verdict not in (Verdict.GOOD, Verdict.BAD, Verdict.SKIP):
            continue
        out.append(line(st.verdict.value, st.commit))
        out.append(f"git bisect {st.verdict.value} {st.commit}")
    if s.outcome and s.outcome.status is Status.FOUND and culprit:
        out.append(line("first bad commit", culprit))
    return "\n".join(out)


# ----------------------------------------------------------------------- sessions
def utc(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts else "?"


def probe_names(s: SessionSummary) -> list[str]:
    config = s.start.get("config")
    probes = config.get("probes") if isinstance(config, dict) else None
    probes = probes.get("probes") if isinstance(probes, dict) else None
    if not isinstance(probes, list):  # an edited journal: shown, not fatal
        return ["?"]
    return [str(p.get("name", p.get("type", "?"))) for p in probes if isinstance(p, dict)] or ["?"]


def status_of(s: SessionSummary) -> str:
    if s.end is None:
        return "unfinished"
    return s.outcome.status.value if s.outcome else "unreadable"


def slurm_jobs(s: SessionSummary) -> list[str]:
    """The Slurm job ids that ran the session's steps (their worker is `slurm:<job>@host:pid`)."""
    jobs = {st.result.worker[len("slurm:"):].partition("@")[0] for st in s.steps
            if (st.result.worker or "").startswith("slurm:")}
    return sorted(jobs - {""}, key=lambda j: (len(j), j))


def jobs_cell(jobs: list[str], width: int = 32) -> str:
    """`101,102,105`; when longer than `width`: `101..188 (40 jobs)`."""
    text = ",".join(jobs)
    return text if len(text) <= width else f"{jobs[0]}..{jobs[-1]} ({len(jobs)} jobs)"


def session_rows(repo: Path) -> list[dict[str, Any]]:
    rows = []
    for path in list_journals(repo):
        try:
            s = summarize(path, warn)
        except JournalError as exc:
            rows.append({"session": path.stem, "started": "?", "bounds": "", "probe": "", "steps": "",
                         "status": "unreadable", "culprit": str(exc)[:60]})
            continue
        goods = ",".join(g[:7] for g in s.start.get("goods", []))
        culprit = (s.outcome.culprit if s.outcome else None) or ""
        rows.append({
            "session": s.id,
            "started": utc(s.start.get("ts")),
            "bounds": f"{goods}..{s.start.get('bad', '')[:7]}",
            "probe": "+".join(probe_names(s)),
            "steps": len(s.steps),
            "status": status_of(s),
            "culprit": culprit[:10],
            "jobs": jobs_cell(slurm_jobs(s)),
        })
    if not any(r.get("jobs") for r in rows):  # no Slurm session: the table as it always was
        for r in rows:
            r.pop("jobs", None)
    return rows


def render_sessions(repo_path: Path) -> str:
    """`bisector sessions`: one row per journal (with a `jobs` column when a session ran on Slurm)."""
    rows = session_rows(repo_root(repo_path))
    if not rows:
        return "No sessions yet: start one with `bisector run --good REV --bad REV --probe CMD`."
    return tabulate(rows, headers="keys", tablefmt="simple")


# ------------------------------------------------------------------ pins, cache
def render_pins(repo_path: Path) -> str:
    """`bisector pins`: the pins of .bisector/pins.toml, each with whether its commit still exists."""
    root = repo_root(repo_path)
    found = load_pins(root)
    if not found:
        return "No pins yet: record one with `bisector pin NAME --rev REV --verify`."
    rows = [{"name": p.name, "commit": p.short, "created": p.created, "verdict": p.verdict or "-",
             "source": p.source, "data": len(p.data), "note": p.note[:40],
             "state": "ok" if git_ok(root, "cat-file", "-e", f"{p.commit}^{{commit}}") else "commit missing"}
            for p in found.values()]
    return tabulate(rows, headers="keys", tablefmt="simple")


def render_cache(cache: BuildCache) -> str:
    """`bisector cache`: the entries of the build cache, newest first, and their total size."""
    entries = cache.entries()
    if not entries:
        return f"The build cache is empty ({cache.root})."

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))

    rows = [
        {"key": e.key[:12], "size MB": f"{e.size / 1e6:.2f}", "created": when(e.created),
         "last used": when(e.last_used), "outputs": ", ".join(e.outputs)[:60]}
        for e in reversed(entries)
    ]
    total = f"{len(entries)} entries, {sum(e.size for e in entries) / 1e6:.1f} MB in {cache.root}"
    return tabulate(rows, headers="keys") + "\n\n" + total


def render_envs(cache: EnvCache) -> str:
    """`bisector cache`: the environment cache's table ("" when it was never used)."""
    envs = cache.entries()
    if not envs:
        return ""
    rows = [{"environment": e.key[:12], "size MB": f"{e.size / 1e6:.1f}", "kind": e.kind, "python": e.python,
             "packages": e.packages, "last used": time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))}
            for e in reversed(envs)]
    return tabulate(rows, headers="keys") + f"\n\n{len(envs)} environments, {sum(e.size for e in envs) / 1e6:.1f} MB in {cache.root}\n"

