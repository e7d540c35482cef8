"""What a run shows: progress lines and the result (the journal's views are in `tables.py`)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import click

from bisector.core.model import Role, Status, Step, StepRequest, Verdict
from bisector.io.data.history import data_diff, params_diff
from bisector.io.git import parents as git_parents
from bisector.io.commits import commit_info, show_stat
from bisector.review.text import ROLE_LABEL, attribution_sentence, step_summary, warn
from bisector.review.text import duration as _duration
from bisector.review.text import rev_label as _rev_label
from bisector.run.session import Handler, SessionResult

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

__all__ = ["ROLE_LABEL", "CliHandler", "JsonHandler", "print_result", "warn"]


def _tail(step: Step, lines: int = 5) -> list[str]:
    """The last lines of the log of a failed step: the build's, else the failing probe's."""
    build = step.result.build
    if not build.ok and build.status not in ("none", "cached"):
        text = build.tail
        if not text and build.log:
            text = _read(build.log)
        return text.splitlines()[-lines:]
    for o in step.result.observations:
        if o.verdict in (Verdict.BAD, Verdict.ABORT, Verdict.SKIP) and o.probe != "hand":
            text = str(o.evidence.get("log_tail") or "") or (_read(o.log) if o.log else "")
            if text:
                return text.splitlines()[-lines:]
    return []


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


class CliHandler(Handler):
    """Progress on stderr. Not on a terminal: one line when a step starts and one when it ends
    (with the log's last lines when it fails). On a terminal (`live`): the same lines, under a
    live status of the running steps (phase, elapsed time), the candidates left and the ETA.
    `quiet`: nothing (the result is printed by `print_result`)."""

    PHASES = {"checkout": "checkout", "data": "checkout + data", "build": "build", "probe": "probe"}

    def __init__(self, *, live: bool | None = None, quiet: bool = False, console: Console | None = None,
                 clock: Callable[[], float] = time.monotonic, auto_refresh: bool = True):
        self.quiet = quiet
        self.live = (sys.stderr.isatty() if live is None else live) and not quiet
        self.console = console
        self.clock = clock
        self.terms = ("good", "bad")
        self.running: dict[int, list[Any]] = {}  # step -> [label, phase, since, started]
        self.left = ""
        self._lock = threading.Lock()
        self._live: Live | None = None
        if self.live:  # rich only here: its import (~30 ms) is paid on a terminal only
            from rich.console import Console
            from rich.live import Live

            self.console = console or Console(stderr=True, highlight=False)
            self._live = Live(_Status(self), console=self.console, auto_refresh=auto_refresh,
                              refresh_per_second=4, transient=True, redirect_stdout=False, redirect_stderr=False)

    def word(self, verdict: Verdict) -> str:
        return {Verdict.GOOD: self.terms[0], Verdict.BAD: self.terms[1]}.get(verdict, verdict.value)

    def _echo(self, text: str) -> None:
        if self.quiet:
            return
        if self._live is not None:
            with self._lock:
                self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
                self._live.refresh()
        else:
            click.echo(text, err=True)

    def on_start(self, info: Mapping[str, Any]) -> None:
        terms = info.get("terms") or {}
        self.terms = (terms.get("old", "good"), terms.get("new", "bad"))
        verb = "Resuming" if info.get("resumed") else "Bisecting"
        if self._live is not None and not self._live.is_started:
            self._live.start()
        self._echo(
            f"{verb} {info['candidates']} commits between {self.terms[0]} {', '.join(g[:10] for g in info['goods'])} "
            f"and {self.terms[1]} {info['bad'][:10]} (journal: {info['journal']})"
        )

    def on_step_start(self, request: StepRequest, left: int, est_steps: int, est_seconds: float | None) -> None:
        role, point, step = request.role, request.point, request.step
        eta = f", ~{_duration(est_seconds)} left" if est_seconds is not None else ""
        if role is Role.SEARCH:
            label = f"testing {point.key[:10]}"
            line = f"step {step}: {left} candidates left (about {est_steps} steps{eta}): {label}"
            self.left = f"{left} candidates left, about {est_steps} steps{eta}"
        elif role is Role.CROSSING and point.data:
            label = f"crossing {point.code[:10]} code + {point.data[:10]} data"
            line = f"step {step}: {label}"
        else:
            label = f"{ROLE_LABEL.get(role.value, role.value)} {point.key[:10]}"
            line = f"step {step}: {label}"
        now = self.clock()
        with self._lock:
            self.running[step] = [label, "starting", now, now]
        self._echo(line)

    def on_phase(self, step: int, phase: str) -> None:
        with self._lock:
            if step in self.running:
                self.running[step][1:3] = [self.PHASES.get(phase, phase), self.clock()]
            if self._live is not None:
                self._live.refresh()

    def on_message(self, text: str) -> None:
        self._echo(text)

    def on_posterior(self, event: Mapping[str, Any]) -> None:
        top = ", ".join(f"{r[:10]} {p:.2f}" for r, p in event["top"][:3])
        self._echo(f"  top suspects: {top}; no culprit {event['no_culprit']:.2f}")

    def on_step_end(self, step: Step) -> None:
        with self._lock:
            self.running.pop(step.number, None)
        label = _rev_label(step.commit, step.data_rev)
        self._echo(f"  {label} is {self.word(step.verdict)} ({step_summary(step)}, {step.result.duration:.1f}s)")
        if step.verdict in (Verdict.SKIP, Verdict.ABORT) or not step.result.build.ok:
            for line in _tail(step):
                self._echo(f"    | {line}")

    def on_result(self, result: SessionResult) -> None:
        self.close()

    def close(self) -> None:
        if self._live is not None and self._live.is_started:
            self._live.stop()


class _Status:
    """The live lines: each running step with its phase and elapsed time, then what is left."""

    def __init__(self, handler: CliHandler):
        self.h = handler

    def __rich__(self) -> Text:
        h, now = self.h, self.h.clock()
        lines = [f"  step {n}: {label}: {phase} {_clock(now - since)} (step {_clock(now - t0)})"
                 for n, (label, phase, since, t0) in sorted(h.running.items())]
        if h.left:
            lines.append(f"  {h.left}")
        from rich.text import Text

        return Text("\n".join(lines))


def _clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


class JsonHandler(Handler):
    """`--json`: each journal event, as written, one JSON object per line on stdout."""

    def on_journal(self, record: Mapping[str, Any]) -> None:
        click.echo(json.dumps(record))


def print_result(repo: Path, result: SessionResult, terms: tuple[str, str] = ("good", "bad"),
                 quiet: bool = False) -> None:
    if not quiet:
        click.echo("")
    if result.paused:
        left = result.candidates
        click.echo(f"Paused at the step limit: {len(left)} candidates left to test (none of them skipped):")
        infos = commit_info(repo, left[:10])
        for sha in left[:10]:
            c = infos.get(sha)
            click.echo(f"  {sha[:10]} {c.subject if c else ''}")
        if len(left) > 10:
            click.echo(f"  ... and {len(left) - 10} more")
        click.echo("Run `bisector run` to continue (--max-steps N for N more steps).")
    elif result.status is Status.FOUND and result.culprit:
        info = commit_info(repo, [result.culprit])[result.culprit]
        click.echo(f"{result.culprit} is the first {terms[1]} commit")
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
