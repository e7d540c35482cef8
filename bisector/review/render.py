"""What a run shows: progress lines and the result (the journal's views are in `tables.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import click

from bisector.core.model import Role, Status, Step, StepRequest
from bisector.io.data.history import data_diff, params_diff
from bisector.io.git import parents as git_parents
from bisector.io.history import commit_info, show_stat
from bisector.review.text import ROLE_LABEL, attribution_sentence, step_summary, warn
from bisector.review.text import duration as _duration
from bisector.review.text import rev_label as _rev_label
from bisector.run.session import Handler, SessionResult

__all__ = ["ROLE_LABEL", "CliHandler", "print_result", "warn"]


class CliHandler(Handler):
    """Progress on stderr, one line when a step starts and one when it ends."""

    def on_start(self, info: Mapping[str, Any]) -> None:
        verb = "Resuming" if info.get("resumed") else "Bisecting"
        click.echo(
            f"{verb} {info['candidates']} commits between good {', '.join(g[:10] for g in info['goods'])} "
            f"and bad {info['bad'][:10]} (journal: {info['journal']})",
            err=True,
        )

    def on_step_start(self, request: StepRequest, left: int, est_steps: int, est_seconds: float | None) -> None:
        role, point, step = request.role, request.point, request.step
        if role is Role.SEARCH:
            eta = f", ~{_duration(est_seconds)} left" if est_seconds is not None else ""
            click.echo(
                f"step {step}: {left} candidates left (about {est_steps} steps{eta}): testing {point.key[:10]}",
                err=True,
            )
        elif role is Role.CROSSING and point.data:
            click.echo(f"step {step}: crossing {point.code[:10]} code + {point.data[:10]} data", err=True)
        else:
            click.echo(f"step {step}: {ROLE_LABEL.get(role.value, role.value)} {point.key[:10]}", err=True)

    def on_message(self, text: str) -> None:
        click.echo(text, err=True)

    def on_posterior(self, event: Mapping[str, Any]) -> None:
        top = ", ".join(f"{r[:10]} {p:.2f}" for r, p in event["top"][:3])
        click.echo(f"  top suspects: {top}; no culprit {event['no_culprit']:.2f}", err=True)

    def on_step_end(self, step: Step) -> None:
        label = _rev_label(step.commit, step.data_rev)
        click.echo(f"  {label} is {step.verdict.value} ({step_summary(step)}, {step.result.duration:.1f}s)", err=True)


def print_result(repo: Path, result: SessionResult) -> None:
    click.echo("")
    if result.status is Status.FOUND and result.culprit:
        info = commit_info(repo, [result.culprit])[result.culprit]
        click.echo(f"{result.culprit} is the first bad commit")
        if result.probability < 1.0:
            click.echo(f"Probability: {result.probability:.3f}")
        click.echo(f"Author: {info.author}")
        click.echo(f"Date:   {info.date}")
        click.echo(f"\n    {info.subject}\n")
        stat = show_stat(repo, result.culprit)
        if result.axis.value == "data":
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
    if att:
        click.echo(f"\n{attribution_sentence(att)}")
    parents = git_parents(repo, result.culprit)
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
