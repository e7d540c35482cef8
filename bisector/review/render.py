"""What users read: progress lines, the result, the journal as a table, JSON, Markdown or a bisect log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bisector.core.errors import UsageError
from bisector.io.git import repo_root
from bisector.io.history import commit_info, show_stat
from bisector.journal.writer import SessionSummary, journal_dir, list_journals, summarize
from bisector.run.session import Handler, SessionResult, StepRecord

ROLE_LABEL = {
    "bad-bound": "check bad",
    "good-bound": "check good",
    "merge-base": "check merge base",
    "search": "",
    "confirm": "confirm",
    "calibrate": "calibrate",
}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class CliHandler(Handler):
    """Progress on stderr, one line when a step starts and one when it ends."""

    def on_start(self, info: dict[str, Any]) -> None:
        verb = "Resuming" if info.get("resumed") else "Bisecting"
        click.echo(
            f"{verb} {info['candidates']} commits between good {', '.join(g[:10] for g in info['goods'])} "
            f"and bad {info['bad'][:10]} (journal: {info['journal']})",
            err=True,
        )

    def on_step_start(self, step: int, commit: str, role: str, left: int, est_steps: int, est_seconds: float | None) -> None:
        label = ROLE_LABEL.get(role, role)
        if role == "search":
            eta = f", ~{_duration(est_seconds)} left" if est_seconds is not None else ""
            click.echo(
                f"step {step}: {left} candidates left (about {est_steps} steps{eta}): testing {commit[:10]}",
                err=True,
            )
        else:
            click.echo(f"step {step}: {label} {commit if ' ' in commit else commit[:10]}", err=True)

    def on_message(self, text: str) -> None:
        click.echo(text, err=True)

    def on_posterior(self, event: dict[str, Any]) -> None:
        top = ", ".join(f"{r[:10]} {p:.2f}" for r, p in event["top"][:3])
        click.echo(f"  top suspects: {top}; no culprit {event['no_culprit']:.2f}", err=True)

    def on_step_end(self, record: StepRecord) -> None:
        click.echo(f"  {_rev_label(record.commit, record.data_rev)} is {record.verdict.value} ({_summary(record.to_json())}, {record.duration:.1f}s)", err=True)


def _rev_label(commit: str, data_rev: str | None) -> str:
    if data_rev and data_rev != commit:
        return f"{commit[:10]} (data {data_rev[:10]})"
    return commit[:10]


def _summary(step: dict[str, Any]) -> str:
    build = step.get("build", {})
    if build.get("status") not in (None, "ok", "none", "cached"):
        return f"build {build['status']}"
    obs = step.get("observations", [])
    if len(obs) > 1:  # a suite: each probe's own verdict, then its numbers
        return "; ".join(f"{o['probe']} {o['verdict']}: {o.get('summary', '')}" for o in obs)
    return "; ".join(f"{o['probe']}: {o.get('summary', '')}" for o in obs) or "-"


def print_result(repo: Path, result: SessionResult) -> None:
    click.echo("")
    if result.status == "found" and result.culprit:
        info = commit_info(repo, [result.culprit])[result.culprit]
        click.echo(f"{result.culprit} is the first bad commit")
        if result.probability < 1.0:
            click.echo(f"Probability: {result.probability:.3f}")
        click.echo(f"Author: {info.author}")
        click.echo(f"Date:   {info.date}")
        click.echo(f"\n    {info.subject}\n")
        stat = show_stat(repo, result.culprit)
        if result.axis == "data":
            click.echo("(the first bad DATA revision: its DVC-tracked inputs, built with the fixed code)")
        elif stat:
            click.echo(stat)
        _print_data_side(repo, result)
    elif result.status == "ambiguous":
        click.echo("No single culprit: these commits could not be told apart (steps were skipped):")
        infos = commit_info(repo, result.candidates)
        for sha in result.candidates:
            c = infos.get(sha)
            click.echo(f"  {sha[:10]} {c.subject if c else ''}")
    elif result.status in ("no_culprit", "undecided"):
        click.echo(f"No culprit: {result.message}")
    elif result.status in ("bounds", "abort"):
        click.echo(f"Cannot bisect: {result.message}")
    else:
        click.echo(f"No culprit: {result.message}")
    steps = result.steps
    total = sum(steps.values())
    checks = sum(v for k, v in steps.items() if k not in ("search", "confirm", "crossing"))
    parts = [f"{checks} bound checks", f"{steps.get('search', 0)} search", f"{steps.get('confirm', 0)} confirmation"]
    if steps.get("crossing"):
        parts.append(f"{steps['crossing']} code/data crossings")
    click.echo(f"\n{total} steps ({', '.join(parts)}) in {_duration(result.elapsed)}. Journal: {result.journal}")


def _print_data_side(repo: Path, result: SessionResult) -> None:
    """Attribution, data diff and params diff of the culprit (DVC repositories)."""
    if not (repo / ".dvc").is_dir() or not result.culprit:
        return
    from bisector.io.data import data_diff, params_diff
    from bisector.io.git import parents as git_parents

    att = result.attribution
    if att:
        how = "tested crossings: " + ", ".join(
            f"{k.replace('_', ' ')} -> {att[k]}" for k in ("parent_code_culprit_data", "culprit_code_parent_data") if k in att
        ) if att.get("tested") else "only the " + att["culprit_is"] + " changed in this commit"
        click.echo(f"\nCulprit is the {att['culprit_is'].upper()} ({how})")
    parents = git_parents(repo, result.culprit)
    if not parents:
        return
    changes = data_diff(repo, parents[0], result.culprit)
    if changes:
        click.echo("\nData changes:")
        for ch in changes:
            sizes = f"{_size(ch.old_size)} -> {_size(ch.new_size)}"
            click.echo(f"  {ch.status:<9} {ch.path}  {sizes}")
    params = params_diff(repo, parents[0], result.culprit)
    if params:
        click.echo("\nParams changes:")
        for k, (a, b) in params.items():
            click.echo(f"  {k}: {a!r} -> {b!r}")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


def find_session(repo_path: Path, session: str | None, tolerant: bool = False) -> SessionSummary:
    """A session's summary; `tolerant` (viewing) skips unreadable journal lines with a warning."""
    repo = repo_root(repo_path)
    paths = list_journals(repo)
    w = warn if tolerant else None
    if not paths:
        raise UsageError(f"no sessions in {journal_dir(repo)}: run `bisector run` first")
    if session is None:
        return summarize(paths[-1], w)
    matches = [p for p in paths if p.stem == session or p.stem.startswith(session)]
    if len(matches) != 1:
        known = ", ".join(p.stem for p in paths[-5:])
        raise UsageError(f"unknown session {session!r} (recent: {known})")
    return summarize(matches[0], w)


def step_rows(repo: Path, s: SessionSummary) -> list[dict[str, Any]]:
    infos = commit_info(repo, [e["commit"] for e in s.steps if isinstance(e.get("commit"), str)])
    rows = []
    for e in sorted(s.steps, key=lambda e: e["step"]):
        c = infos.get(e["commit"])
        build = e.get("build", {})
        rows.append(
            {
                "step": e["step"],
                "role": ROLE_LABEL.get(e["role"], e["role"]) or "search",
                "commit": _rev_label(e["commit"], e.get("data_rev")),
                "subject": (c.subject if c else "")[:50],
                "build": _build_cell(build),
                "verdict": e["verdict"],
                "probe": _summary(e) + "".join(f" [{n[:80]}]" for n in e.get("notes", [])),
            }
        )
    return rows


def _build_cell(build: dict[str, Any]) -> str:
    status = build.get("status", "none")
    if status == "none":
        return "-"
    if status == "ok":
        return _duration(build.get("duration"))
    return status


def render_journal(repo_path: Path, session: str | None, fmt: str) -> str:
    from tabulate import tabulate

    repo = repo_root(repo_path)
    s = find_session(repo, session, tolerant=True)
    rows = step_rows(repo, s)
    if fmt == "json":
        return json.dumps({"session": s.id, "start": s.start, "steps": s.steps, "end": s.end}, indent=2)
    table = tabulate(rows, headers="keys", tablefmt="github" if fmt == "md" else "simple")
    end = s.end
    if end is None:
        outcome = "unfinished (run `bisector run` to resume)"
    elif end["status"] == "found":
        outcome = f"first bad commit {end['culprit']}"
    else:
        outcome = f"{end['status']}: {end.get('message', '')}"
    head = f"Session {s.id}: bad {str(s.start.get('bad', '?'))[:10]}, good {', '.join(g[:10] for g in s.start['goods'])}, {s.start['candidates']} candidates"
    if fmt == "md":
        return f"## {head}\n\n{table}\n\n**Outcome:** {outcome}\n"
    return f"{head}\n\n{table}\n\nOutcome: {outcome}"


def render_bisect_log(repo_path: Path, session: str | None) -> str:
    repo = repo_root(repo_path)
    s = find_session(repo, session, tolerant=True)
    shas = [s.start["bad"], *s.start["goods"], *(e["commit"] for e in s.steps)]
    if s.end and s.end.get("culprit"):
        shas.append(s.end["culprit"])
    infos = commit_info(repo, shas)

    def line(verdict: str, sha: str) -> str:
        c = infos.get(sha)
        return f"# {verdict}: [{sha}] {c.subject if c else ''}"

    out = [line("bad", s.start["bad"])]
    out += [line("good", g) for g in s.start["goods"]]
    out.append("git bisect start " + " ".join([s.start["bad"], *s.start["goods"]]))
    bounds = {s.start["bad"], *s.start["goods"]}
    for e in s.steps:
        if e["commit"] in bounds or e["verdict"] not in ("good", "bad", "skip"):
            continue
        out.append(line(e["verdict"], e["commit"]))
        out.append(f"git bisect {e['verdict']} {e['commit']}")
    if s.end and s.end.get("status") == "found":
        out.append(line("first bad commit", s.end["culprit"]))
    return "\n".join(out)
