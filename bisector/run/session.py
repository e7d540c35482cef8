"""A session: the wiring around the one loop (`core.loop.Bisection`).

`Session.run` takes the repository lock, makes the plan (new, or the unfinished session's),
opens the journal, makes the executor, runs the bisection, attributes a culprit to code or
data, and journals the end. Collaborators are injected (`suite_factory`,
`workspace_factory`) so tests can drive it with scripted verdicts; what happens goes to a
`Handler` so the CLI and other front ends share it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from bisector.core.errors import BoundsError, ContradictionError, ProbeAbort, UsageError
from bisector.core.loop import Bisection, Estimate, LoopEvents, PosteriorSummary, Runner
from bisector.core.model import (
    Attribution,
    Axis,
    Outcome,
    Point,
    Role,
    Status,
    Step,
    StepRequest,
    Verdict,
)
from bisector.core.search import Search
from bisector.io.data import attribution, classify_culprit
from bisector.io.data.choice import describe as describe_choices
from bisector.io.env import describe_cache, env_changed
from bisector.io.git import repo_root
from bisector.io.git import parents as git_parents
from bisector.io.process import kill_marked, mark_processes
from bisector.io.editable import checkout_imports
from bisector.io.untracked import describe_untracked
from bisector.io.state import RepoLock, prune_stale, state_dir
from bisector.io.workspace import Workspace
from bisector.journal.codec import decode_step, encode_outcome, encode_step, mark_of, trusted_bounds
from bisector.journal.read import apply_undo, find_session, find_unfinished, read_events, set_aside_unreadable
from bisector.journal.reuse import Reusable, reusable_observations
from bisector.journal.writer import JournalWriter
from bisector.run.executors.factory import make_executor
from bisector.run.plan import Plan, RunOptions
from bisector.run.rounds import ExecutorRunner, MarksRunner, ReuseRunner
from bisector.run.wiring import make_suite

__all__ = ["Handler", "JournaledEvents", "RunOptions", "Session", "SessionResult", "reset"]

STATUS_OF = {BoundsError: Status.BOUNDS, ContradictionError: Status.CONTRADICTION, ProbeAbort: Status.ABORT}


@dataclass
class SessionResult:
    outcome: Outcome
    session: str
    journal: Path
    axis: Axis = Axis.CODE
    steps: Mapping[str, int] = field(default_factory=dict)  # probes per role value
    elapsed: float = 0.0
    resumed: bool = False
    paused: bool = False  # stopped at the step limit: the session stays open, `bisector run` goes on

    @property
    def status(self) -> Status:
        return self.outcome.status

    @property
    def culprit(self) -> str | None:
        return self.outcome.culprit

    @property
    def probability(self) -> float:
        return self.outcome.probability

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.outcome.candidates

    @property
    def message(self) -> str:
        return self.outcome.message

    @property
    def attribution(self) -> Attribution | None:
        return self.outcome.attribution

    @property
    def exit_code(self) -> int:
        return 0 if self.status is Status.FOUND else 1


class Handler:
    """Receives the session's events. The default does nothing; the CLI prints progress."""

    def on_start(self, info: Mapping[str, Any]) -> None: ...  # the start event + resumed + journal

    def on_step_start(self, request: StepRequest, left: int, est_steps: int, est_seconds: float | None) -> None: ...

    def on_phase(self, step: int, phase: str) -> None: ...  # checkout, build, probe (local steps)

    def on_step_end(self, step: Step) -> None: ...

    def on_posterior(self, event: Mapping[str, Any]) -> None: ...

    def on_message(self, text: str) -> None: ...

    def on_journal(self, record: Mapping[str, Any]) -> None: ...  # each journal event as written

    def on_result(self, result: SessionResult) -> None: ...


class JournaledEvents(LoopEvents):
    """The loop's events, journaled and shown."""

    def __init__(self, writer: JournalWriter, handler: Handler, suite: Any):
        self.writer, self.handler, self.suite = writer, handler, suite

    def on_step_start(self, request: StepRequest, estimate: Estimate) -> None:
        self.handler.on_step_start(request, estimate.left, estimate.steps, estimate.seconds)

    def on_step(self, step: Step) -> None:
        self.writer.append("step", **encode_step(step))
        self.handler.on_step_end(step)

    def on_undo(self, retracted: Step | None) -> None:
        if retracted is None:
            self.handler.on_message("Nothing to undo: the bounds are not undone.")
            return
        self.writer.append("undo", step=retracted.number)
        self.handler.on_message(f"Undid step {retracted.number} ({retracted.commit[:10]} {retracted.verdict.value})")

    def on_baseline(self, step: Step) -> None:
        taken = self.suite.set_baselines(list(step.result.observations))
        if taken:
            self.writer.append("baseline", commit=step.commit, step=step.number, probes=taken)

    def on_posterior(self, after_step: int, post: PosteriorSummary) -> None:
        event = {
            "after_step": after_step,
            "top": [[key, p] for key, p in post.top],
            "no_culprit": post.no_culprit,
            "rates": list(post.rates),
        }
        self.writer.note("posterior", **event)  # derived from the steps: no fsync of its own
        self.handler.on_posterior(event)


class Session:
    """One bisection. `run()` starts it or resumes the unfinished one with the same bounds."""

    def __init__(
        self,
        options: RunOptions,
        handler: Handler | None = None,
        *,
        suite_factory: Callable[..., Any] | None = None,
        workspace_factory: Callable[[Path, Path], Workspace] | None = None,
    ):
        self.options = options
        self.handler = handler or Handler()
        self.suite_factory = suite_factory or make_suite
        self.workspace_factory = workspace_factory
        self.repo = repo_root(options.repo)
        self.state = state_dir(self.repo)
        self.rounds = 0  # search rounds sent by this run (the `end` event's `rounds`)

    def run(self) -> SessionResult:
        lock = RepoLock(self.state / "lock")
        lock.acquire()
        try:
            # Before anything else: what a SIGKILLed run of this repository left (steps, daemons).
            kill_marked(self.state)
            return self._run_locked()
        finally:
            mark_processes(None)
            kill_marked(self.state)  # what the steps left running (a probe's daemons), however the run ends
            lock.release()

    def _run_locked(self) -> SessionResult:
        started = time.monotonic()
        plan = self.plan = Plan.open(self.options, self.suite_factory)
        mark_processes(plan.session, self.state)  # every process started from now on carries it
        for note in plan.notes:
            self.handler.on_message(note)
        for rel in plan.untracked:
            self.handler.on_message(f"Untracked input {rel}: {describe_untracked(self.repo / rel)}, copied into "
                                    "each step's workspace (once, and again when a step changed it)")
        imports = checkout_imports(self.repo, os.environ)
        if imports:
            self.handler.on_message(
                f"Your Python imports {', '.join(imports)} from this checkout (an editable install or PYTHONPATH): "
                "each step imports its own copy instead (PYTHONPATH)")
        if plan.build.env is not None and plan.build.env.active:
            self.handler.on_message(describe_cache(self.repo, plan.build.env))
        suite = plan.make_suite(self.suite_factory)
        if plan.resumed and suite.config() != plan.start["config"]["probes"]:
            raise UsageError(
                f"the probe inputs of session {plan.session} changed since it started: "
                "restore them, or drop the session with `bisector reset`"
            )
        reusable, reuse_from = Reusable(), plan.start.get("reuse_from")
        if reuse_from:
            old = find_session(self.repo, reuse_from)
            reusable = reusable_observations(old, suite.config(), build_config=plan.build.to_json(), repo=self.repo)
            if not plan.resumed:
                self.handler.on_message(f"Reusing up to {len(reusable)} observations of session {old.id}")
        prune_stale(self.repo, self.state / "sessions")
        jobs = max(1, self.options.jobs)
        # Made before anything is journaled: an executor that cannot start (a missing extra,
        # an unreachable scheduler) must not leave an empty unfinished session behind.
        executor = make_executor(plan, suite, jobs=jobs, executor=self.options.executor,
                                 workspace_factory=self.workspace_factory, state=self.state,
                                 message=self.handler.on_message)
        if hasattr(executor, "on_phase"):
            executor.on_phase = self.handler.on_phase
        try:  # connected (a scheduler reached) before the journal is written: no empty session
            executor.open(plan.candidates.bad)
        except BaseException:
            executor.close()
            raise
        history: list[Step] = []
        settings, candidates = plan.settings, plan.candidates
        # The step limit counts this run's steps: a resumed session goes on (for --max-steps more).
        max_steps = self.options.max_steps if plan.resumed else settings.get("max_steps")
        try:
            writer = JournalWriter(plan.journal, echo=self.handler.on_journal)
            if plan.resumed:
                history = [decode_step(e, plan.axis.value) for e in apply_undo(read_events(plan.journal))]
                writer.append("resume", pid=os.getpid(), jobs=jobs, max_steps=max_steps)
            else:
                writer.append("start", **plan.start)
        except BaseException:
            executor.close()  # opened: its workers or jobs go too
            raise
        self.handler.on_start({**plan.start, "resumed": plan.resumed, "journal": str(plan.journal)})
        for line in describe_choices(plan.start):
            self.handler.on_message(line)
        bisection = self.bisection = Bisection(
            candidates,
            lambda: Search.from_settings(candidates, settings),
            jobs=jobs,
            max_steps=max_steps,
            needs_baseline=bool(getattr(suite, "needs_baseline", False)),
            repeatable=bool(getattr(suite, "repeatable", True)),
            history=history,
            events=JournaledEvents(writer, self.handler, suite),
            bounds=str(plan.start.get("bounds") or "check"),
            overlap=bool(plan.start.get("overlap")),
            trusted=trusted_bounds(plan.start),
        )
        runner: Runner = ExecutorRunner(executor, plan.logs_dir)
        if reusable:
            runner = ReuseRunner(runner, self.repo, reusable, str(reuse_from))
        runner = MarksRunner(runner, plan.journal, candidates, {m for s in history if (m := mark_of(s))})
        try:
            outcome = bisection.run(runner)
            if outcome.status is Status.FOUND and outcome.culprit:
                outcome = dataclasses.replace(outcome, attribution=self.attribute(bisection, runner, outcome.culprit))
        except (BoundsError, ContradictionError, ProbeAbort) as exc:
            outcome = Outcome(STATUS_OF[type(exc)], message=str(exc))
        finally:
            self.rounds = bisection.search_rounds
            executor.close()
            shutil.rmtree(plan.session_dir, ignore_errors=True)
        result = SessionResult(outcome, plan.session, plan.journal, plan.axis, bisection.counts(),
                               time.monotonic() - started, plan.resumed, paused=bisection.limited)
        # Stopped at the step limit: a `pause` (not an `end`) keeps the session open to resume.
        writer.append("pause" if result.paused else "end", **encode_outcome(outcome), steps=dict(result.steps), elapsed=round(result.elapsed, 3),
                      rounds=self.rounds)
        writer.close()
        self.handler.on_result(result)
        return result

    def attribute(self, bisection: Bisection, runner: Runner, culprit: str) -> Attribution | None:
        """Code, data or both? When the culprit commit changed both (or when asked), test the
        crossings: parent code + culprit data, and culprit code + parent data."""
        plan, c = self.plan, bisection.candidates
        # A pathspec rewrites the parents: the crossings take the commit's own.
        parents = tuple(git_parents(self.repo, culprit)) if c.paths else c.parents_of(culprit)
        env = plan.build.env
        if env is not None and env.active and plan.axis is Axis.CODE and parents:
            att = self._attribute_env(bisection, runner, culprit, parents[0])
            if att is not None:
                return att
        if plan.axis is not Axis.CODE or plan.start.get("data_rev") or not (self.repo / ".dvc").is_dir():
            return None
        changed = classify_culprit(self.repo, culprit)
        if not (changed["code"] and changed["data"]) and not plan.start.get("attribute"):
            which = "data" if changed["data"] and not changed["code"] else "code"
            return Attribution(which, changed, tested=False, how=f"from its diff: only the {which} changed, no crossing")
        if plan.dvc.get("materialize", True) is False:  # no data: crossings cannot be built
            return Attribution("unknown", changed, tested=False, why="no data was materialized")
        if not parents:
            return Attribution("unknown", changed, tested=False, why="root commit")
        return self._crossings(bisection, runner, culprit, parents[0], changed)

    def _crossings(self, bisection: Bisection, runner: Runner, culprit: str, parent: str,
                   changed: Mapping[str, Any]) -> Attribution:
        """The culprit's code with its parent's data first: bad settles it (the code alone breaks
        it). Otherwise the parent's code with the culprit's data: bad, the data; good, only the two
        together. Each crossing is a journaled step (role `crossing`), never told to the search."""
        pairs = {"culprit_code_parent_data": (culprit, parent), "parent_code_culprit_data": (parent, culprit)}
        done = {(s.commit, s.data_rev): s for s in bisection.steps if s.role is Role.CROSSING}
        verdicts: dict[str, Verdict] = {}
        for name, (code, data) in pairs.items():
            if (code, data) not in done:
                for step in bisection.round(runner, [(Point(culprit, code, data), Role.CROSSING)]):
                    done[(step.commit, step.data_rev)] = step
            if (code, data) not in done:
                break
            verdicts[name] = done[(code, data)].verdict
            if name == "culprit_code_parent_data" and verdicts[name] is Verdict.BAD:
                return Attribution("code", changed, tested=True, crossings=verdicts,
                                   how="one crossing: the culprit's code with its parent's data is bad, so the "
                                       "code change alone breaks it (the data change alone was not tested)")
        if len(verdicts) < 2:
            return Attribution("unknown", changed, tested=True, crossings=verdicts, why="a crossing was not run")
        which = attribution(verdicts["parent_code_culprit_data"], verdicts["culprit_code_parent_data"])
        return Attribution(which, changed, tested=True, crossings=verdicts,
                           how="two crossings: the culprit's code with its parent's data is "
                               f"{verdicts['culprit_code_parent_data'].value}, its parent's code with its data "
                               f"{verdicts['parent_code_culprit_data'].value}")

    def _attribute_env(self, bisection: Bisection, runner: Runner, culprit: str, parent: str) -> Attribution | None:
        """With `--env`: when the culprit changed its environment, test the culprit's code with the
        parent's environment (good: the environment broke it; bad: the code did)."""
        plan = self.plan
        changed = env_changed(self.repo, parent, culprit, plan.build.env)
        if not changed["environment"]:
            return None
        if not changed["code"]:
            self.handler.on_message(f"Culprit is the ENVIRONMENT: {culprit[:10]} changed only its lock inputs")
            return Attribution("environment", changed, tested=False)
        point = Point(culprit, culprit, plan.start.get("data_rev"), parent)
        step = next((s for s in bisection.steps if s.role is Role.CROSSING and s.request.point == point), None)
        if step is None:
            step = next(iter(bisection.round(runner, [(point, Role.CROSSING)])), None)
        if step is None:
            return Attribution("unknown", changed, tested=False, why="the crossing was not run")
        which = {Verdict.GOOD: "environment", Verdict.BAD: "code"}.get(step.verdict, "unknown")
        self.handler.on_message(f"Culprit is the {which.upper()} (tested: {culprit[:10]} code with the environment "
                                f"of {parent[:10]} -> {step.verdict.value})")
        return Attribution(which, changed, tested=True, crossings={"culprit_code_parent_env": step.verdict})


def reset(repo_path: Path) -> list[str]:
    """Drop the unfinished session (its journal is kept, marked as reset), its clones and what
    its steps left running."""
    repo = repo_root(repo_path)
    state = state_dir(repo)
    lock = RepoLock(state / "lock")
    lock.acquire()
    try:
        kill_marked(state)
        dropped = set_aside_unreadable(repo)  # reset always works: a corrupt journal is moved aside
        path = find_unfinished(repo)
        if path is not None:
            w = JournalWriter(path)
            w.append("end", status="reset", culprit=None, probability=0.0, candidates=[],
                     message="dropped by `bisector reset`", steps={}, elapsed=0)
            w.close()
            dropped.append(path.stem)
        removed = prune_stale(repo, state / "sessions")
        shutil.rmtree(state / "sessions", ignore_errors=True)
        return dropped + [str(p) for p in removed]
    finally:
        lock.release()
