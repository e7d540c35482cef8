"""What a run shows: progress lines and the result (the journal's views are in `tables.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bisector.core.model import Attribution
from bisector.io.data.history import data_diff, params_diff
from bisector.io.git import git
from bisector.io.history import commit_info, show_stat
from bisector.journal.codec import decode_attribution
from bisector.review.text import ROLE_LABEL, attribution_sentence, warn
from bisector.review.text import duration as _duration
from bisector.review.text import rev_label as _rev_label
from bisector.run.session import Handler, SessionResult, StepRecord

__all__ = ["ROLE_LABEL", "CliHandler", "print_result", "warn"]


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
    """Attribution, data diff and (on the code axis) params diff of the culprit (DVC repositories)."""
    if not (repo / ".dvc").is_dir() or not result.culprit:
        return
    att = result.attribution
    if att is not None and not isinstance(att, Attribution):
        att = decode_attribution(att)  # the session's result still carries the journal's dict
    if att:
        click.echo(f"\n{attribution_sentence(att)}")
    parents = git(repo, "rev-list", "--parents", "-n", "1", result.culprit).split()[1:]
    if not parents:
        return
    changes = data_diff(repo, parents[0], result.culprit)
    if changes:
        click.echo("\nData changes:")
        for ch in changes:
            sizes = f"{_size(ch.old_size)} -> {_size(ch.new_size)}"
            click.echo(f"  {ch.status:<9} {ch.path}  {sizes}")
    # On the data axis the code is fixed: the culprit revision's params are not what was built.
    params = params_diff(repo, parents[0], result.culprit) if result.axis != "data" else {}
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
