"""The one bisection loop: check the bounds, ask the search in rounds, confirm the culprit.

`Bisection` holds the state of one search (the steps so far, what each key was observed to
be, the search itself) apart from its driver: a `Runner` runs the steps it asks for. The
session's runner builds and probes (`run.rounds.ExecutorRunner`); replay's runner reads the
journal (`journal.replay.JournalRunner`). Both go through this loop, so a journal replays
exactly the decisions the session made. Pure: no git, no files, no processes.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

from bisector.core.bounds import abort_message, bound_error, implied_bad, implied_good
from bisector.core.errors import BoundsError, ProbeAbort
from bisector.core.model import Candidates, Outcome, Point, Role, Status, Step, StepRequest, Verdict
from bisector.core.search import Search

UNDOABLE = (Role.SEARCH, Role.CONFIRM, Role.CALIBRATE)
# Which bounds are probed (the start event's `bounds`; absent: "check", as before it existed).
#   check: the bad bound, every good bound and merge base, before the search.
#   lazy:  the bad bound first; a good bound only when the culprit's parent is that bound; and no
#          confirmation of a parent that an observed good descendant already implies good.
#          With the start event's `overlap` (sessions since it exists), the bad bound overlaps the
#          search: -j >= 2 sends the search's first choice in its round; with one worker it is
#          probed only when the search ends without observing a bad candidate (any bad candidate,
#          its ancestor, implies it bad), so a run costs at most one probe more than git's.
#   trust: as `git bisect run`: neither bound is probed (merge bases still are), lazy otherwise.
BOUNDS_POLICIES = ("check", "lazy", "trust")


class Runner(Protocol):
    """Runs a round of steps and yields each `Step` as it finishes (in any order).

    May raise ProbeAbort, KeyboardInterrupt or (replay) a divergence. A runner may also offer
    `pick_round(ask, jobs) -> list[str]`: given `ask(k)` (the keys `search.next(k)` would
    send), the keys of the next round; replay uses it for journals that did not record the
    number of workers.

    A runner may also offer `incoming(next_step) -> list[Step]`: steps marked by hand (from
    another terminal: `bisector good/bad/skip`) since the last round, numbered from
    `next_step`; the loop records them before it asks the search for the next round."""

    def run_round(self, requests: Sequence[StepRequest]) -> Iterator[Step]: ...


@dataclass(frozen=True)
class Estimate:
    left: int  # candidates left
    steps: int  # steps the search expects to need
    seconds: float | None  # from the median of the recent step times; None before any step


@dataclass(frozen=True)
class PosteriorSummary:
    top: tuple[tuple[str, float], ...]  # the five most likely culprits
    no_culprit: float
    rates: tuple[float, ...]  # the noise rates (P(bad | good side), P(bad | bad side))


class LoopEvents:
    """What the loop reports. These do nothing: replay passes them; the session journals."""

    def on_step_start(self, request: StepRequest, estimate: Estimate) -> None: ...

    def on_step(self, step: Step) -> None: ...

    def on_undo(self, retracted: Step | None) -> None: ...  # None: nothing could be undone

    def on_baseline(self, step: Step) -> None: ...

    def on_posterior(self, after_step: int, post: PosteriorSummary) -> None: ...


NO_EVENTS = LoopEvents()


class Bisection:
    """One search over `candidates`. `make_search()` builds a fresh `Search` (at the start and
    after an undo); `history` holds steps already journaled (resume, replay): they are told to
    the search and never run again."""

    def __init__(
        self,
        candidates: Candidates,
        make_search: Callable[[], Search],
        *,
        jobs: int = 1,
        max_steps: int | None = None,
        needs_baseline: bool = False,
        repeatable: bool = True,
        history: Sequence[Step] = (),
        events: LoopEvents = NO_EVENTS,
        first_step: int = 1,
        bounds: str = "check",
        overlap: bool = False,
        trusted: Sequence[str] = (),
    ):
        self.candidates = candidates
        self.bounds = bounds if bounds in BOUNDS_POLICIES else "check"
        # The bad bound overlaps the search (lazy): with -j >= 2 its round carries the search's first
        # choice; with one worker it is probed at the end, only if no candidate was observed bad.
        self.overlap = overlap
        self._bad_later = False
        self.trusted = frozenset(trusted)  # good bounds a pin verified good with the same probe: never probed
        self.make_search = make_search
        self.search = make_search()
        self.noisy = self.search.noise is not None
        self.jobs = max(1, jobs)
        self.max_steps = max_steps
        self.needs_baseline = needs_baseline
        self.repeatable = repeatable
        self.events = events
        self.steps: list[Step] = []
        self.observed: dict[str, Verdict] = {}
        self.next_step = first_step
        self.round_number = max((s.round for s in history), default=0)
        self.search_rounds = 0  # rounds of search.next() sent by this run
        self._told: set[int] = set()
        self._times: list[float] = []
        self.undos = 0  # answers taken back (manual probe) during this run
        for step in history:
            self._remember(step)
            self.tell(step)
        # `max_steps` counts the steps of this run: a resumed search goes on for as many more.
        self._history_len = len(self.steps)
        self.limited = False  # whether the last `run` stopped at `max_steps` with the search unfinished

    # ------------------------------------------------------------------ state
    def _remember(self, step: Step) -> None:
        self.next_step = max(self.next_step, step.number + 1)
        self.steps.append(step)
        if step.role is not Role.CROSSING:
            self.observed[step.key] = step.verdict
        self._times.append(step.result.duration)

    def tell(self, step: Step) -> None:
        """Give one observation to the search (goods count too under noise: they calibrate it)."""
        if step.verdict is Verdict.ABORT or step.role is Role.CROSSING:
            return
        c = self.candidates
        if step.key in c.parents or (self.noisy and step.key in c.goods):
            self.search.record(step.key, step.verdict)
        self._told.add(step.number)

    def undo(self) -> Step | None:
        """Retract the last answer of the search (not a bound) and rebuild the search without it."""
        prev = next((s for s in reversed(self.steps) if s.role in UNDOABLE), None)
        self.events.on_undo(prev)
        self.undos += 1
        if prev is None:
            return None
        self.steps.remove(prev)
        self.search = self.make_search()
        self.observed, self._told = {}, set()
        for s in self.steps:
            if s.role is not Role.CROSSING:
                self.observed[s.key] = s.verdict
            self.tell(s)
        return prev

    def step_of(self, key: str) -> Step:
        """The last step at the search's `key` (crossings aside)."""
        return next(s for s in reversed(self.steps) if s.key == key and s.role is not Role.CROSSING)

    def estimate(self) -> Estimate:
        left, est = self.search.remaining(), self.search.estimated_steps()
        times = self._times[-9:]
        rounds = -(-est // self.jobs) if self.jobs > 1 else est
        return Estimate(left, est, statistics.median(times) * rounds if times else None)

    def suspects(self) -> list[str]:
        """The commits that can still be the culprit, most likely first."""
        post = self.search.posterior()
        ranked = sorted(((p, k) for k, p in post.items() if k is not None and p > 1e-9), key=lambda t: -t[0])
        return [k for _, k in ranked]

    def posterior(self) -> PosteriorSummary:
        # The five most likely (ties by name, as ever), without building the posterior as a dict.
        return PosteriorSummary(
            top=tuple((r, round(p, 6)) for r, p in self.search.top_by_name(5)),
            no_culprit=round(self.search.probability(None), 6),
            rates=tuple(round(x, 4) for x in self.search.rates()),
        )

    def counts(self) -> dict[str, int]:
        """Steps per role (value), as the `end` event holds them."""
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.role.value] = out.get(s.role.value, 0) + 1
        return out

    # ----------------------------------------------------------------- rounds
    def round(self, runner: Runner, todo: Sequence[tuple[Point, Role]]) -> list[Step]:
        """Send one round (numbered) and record its steps as they come; an `undo` answer
        retracts the previous answer instead of being recorded."""
        if not todo:
            return []
        self.round_number += 1
        estimate = self.estimate()
        requests = []
        for point, role in todo:
            # A repeat is the same point asked again for the same purpose: a crossing (another
            # data revision under the same key) is a first run, whose build the cache may hold.
            crossing = role is Role.CROSSING
            runs = 1 + sum(1 for s in self.steps if (s.role is Role.CROSSING) == crossing
                           and (s.request.point == point if crossing else s.key == point.key))
            # A repeat (noisy search) of a suite that answers the same on the same build must
            # rebuild: the new build (a new training run) is the new sample.
            req = StepRequest(self.next_step, point, role, run=runs, fresh_build=runs > 1 and not self.repeatable)
            self.next_step += 1
            self.events.on_step_start(req, estimate)
            requests.append(req)
        got = []
        for step in runner.run_round(requests):
            if step.is_undo:
                self.undo()
                continue
            if step.round != self.round_number:
                step = dataclasses.replace(step, round=self.round_number)
            self.events.on_step(step)
            self._remember(step)
            got.append(step)
        return got

    def _ask(self, runner: Runner) -> list[str]:
        def ask(k: int) -> list[str]:
            keys = list(dict.fromkeys(self.search.next(k)))
            if not self.noisy:
                keys = [x for x in keys if x not in self.observed]  # never ask the same question twice
            return keys

        pick = getattr(runner, "pick_round", None)
        return pick(ask, self.jobs) if pick is not None else ask(self.jobs)

    def _take_marks(self, runner: Runner) -> None:
        incoming = getattr(runner, "incoming", None)
        if incoming is None:
            return
        for step in incoming(self.next_step):
            self.events.on_step(step)
            self._remember(step)
            self.tell(step)

    def _told_search(self, steps: Sequence[Step]) -> None:
        for step in steps:
            if step.verdict is Verdict.ABORT:
                raise ProbeAbort(abort_message(step))
            self.tell(step)
            if self.noisy and self.events is not NO_EVENTS:
                self.events.on_posterior(step.number, self.posterior())

    # -------------------------------------------------------------------- run
    def run(self, runner: Runner) -> Outcome:
        """Bounds, then rounds of `search.next(jobs)`, then the culprit's parents. Raises
        BoundsError, ContradictionError or ProbeAbort when the search cannot go on."""
        c = self.candidates
        policy = "check" if self.noisy else self.bounds
        # Lazy with one worker: the bad bound waits for the search's answers (see `_bad_pending`).
        self._bad_later = self.overlap and policy == "lazy" and self.jobs == 1 and not self.needs_baseline
        bounds = [(c.bad, Role.BAD_BOUND, Verdict.BAD)] if policy != "trust" and not self._bad_later else []
        bounds += [(g, Role.GOOD_BOUND, Verdict.GOOD) for g in c.goods
                   if (policy == "check" and g not in self.trusted) or g in self.observed]
        bounds += [(m, Role.MERGE_BASE, Verdict.GOOD) for m in c.merge_bases]
        if self.needs_baseline:
            # Probes with rules relative to the good bound need its observation first.
            self.round(runner, [(c.point(g), Role.GOOD_BOUND) for g in c.goods[:1] if g not in self.observed])
            self.events.on_baseline(self.step_of(c.goods[0]))
            if self.step_of(c.goods[0]).verdict is Verdict.SKIP:
                # Judged before it had its own baseline ("no baseline yet"): again, now with it.
                self.round(runner, [(c.point(c.goods[0]), Role.GOOD_BOUND)])
        # The bounds are independent: with several workers they are checked in one round; under
        # `lazy` the search's first choice (as if the bad bound were bad) fills that round too.
        todo = [(c.point(k), role) for k, role, _ in bounds if k not in self.observed]
        ahead = self._ahead(policy, todo)
        undos = self.undos
        first = self.round(runner, todo + [(c.point(k), Role.SEARCH) for k in ahead])
        while self.undos != undos and any(point.key not in self.observed for point, _ in todo):
            # A bound answered `undo` (an earlier answer taken back, or nothing to take back): asked again.
            undos = self.undos
            todo = [(point, role) for point, role in todo if point.key not in self.observed]
            first += self.round(runner, todo)
        if self.noisy:
            # One run decides nothing under noise: bounds are observations like any other,
            # and a bad bound that only failed by chance ends as "no culprit".
            self._told_search(first)
        else:
            for key, role, expected in bounds:
                self._check_bound(key, role, expected)  # journaled, the ahead steps stop here too
            if ahead:
                self.search_rounds += 1
                self._told_search([s for s in first if s.key in ahead])
        while True:  # the search, then the confirmation; an answer taken back there resumes the search
            while True:
                self._take_marks(runner)
                keys = self._ask(runner)
                if not keys:
                    if self._bad_pending() and not self._check_bad_now(runner):
                        continue  # an answer was taken back meanwhile: the search has more to ask
                    break
                if self.max_steps is not None and len(self.steps) - self._history_len >= self.max_steps:
                    self.limited = True
                    return self._limited_outcome()
                self.search_rounds += 1
                special = {c.bad, *c.goods}
                todo = [(c.point(k), Role.CALIBRATE if k in special else Role.SEARCH) for k in keys]
                self._told_search(self.round(runner, todo))
            r = self.search.result()
            if self.noisy:
                return self._noisy_outcome()
            if r.status != "found" or r.culprit is None:
                return Outcome(
                    Status(r.status),
                    probability=r.probability,
                    candidates=tuple(r.candidates),
                    message=f"{len(r.candidates)} commits remain that could not be told apart (skipped steps)",
                )
            outcome = self._confirm(runner, r.culprit, r.probability)
            if outcome is not None:
                return outcome

    def _bad_pending(self) -> bool:
        """Whether the bad bound still needs its own probe: not when a candidate (each one an
        ancestor of it) was observed bad, which implies it bad, the search being monotone."""
        c = self.candidates
        return self._bad_later and c.bad not in self.observed and not implied_bad(c.parents, self.observed)

    def _check_bad_now(self, runner: Runner) -> bool:
        """The search ended and no candidate was observed bad: the bad bound's own probe decides.
        False when the answer was `undo` (an earlier answer taken back: the search goes on)."""
        undos = self.undos
        self.round(runner, [(self.candidates.point(self.candidates.bad), Role.BAD_BOUND)])
        if self.undos != undos:
            return False
        self._check_bound(self.candidates.bad, Role.BAD_BOUND, Verdict.BAD)
        return True

    def _ahead(self, policy: str, todo: Sequence[tuple[Point, Role]]) -> list[str]:
        """The search's choices sent with the bad bound's check (free workers of its round), when
        the session asked for it (`overlap`: journals from before it replay as they ran)."""
        room = self.jobs - len(todo)
        if not (self.overlap and policy == "lazy" and room > 0 and not self.noisy and not self.needs_baseline
                and any(role is Role.BAD_BOUND for _, role in todo)):
            return []
        sent = {point.key for point, _ in todo}
        keys = [k for k in dict.fromkeys(self.search.next(room)) if k not in self.observed and k not in sent]
        return keys[:room]

    def _limited_outcome(self) -> Outcome:
        """Stopped at `max_steps` with the search unfinished: what is left (not skipped: untested)."""
        left = self.suspects()
        r = self.search.result()
        return Outcome(Status.UNDECIDED, probability=r.probability, candidates=tuple(left),
                       message=f"stopped after {self.max_steps} steps (the step limit): {len(left)} candidates "
                               "left to test; run again to continue")

    def _check_bound(self, key: str, role: Role, expected: Verdict) -> None:
        step = self.step_of(key)
        if step.verdict is expected:
            if step.number not in self._told:
                self.tell(step)
            return
        if step.verdict is Verdict.ABORT:
            raise ProbeAbort(abort_message(step))
        raise BoundsError(bound_error(step, role))

    def _confirm(self, runner: Runner, culprit: str, probability: float) -> Outcome | None:
        """The culprit's parents must have been observed good (its own verdict is bad). None when
        an answer was taken back (`undo`) meanwhile: the search decides again."""
        c = self.candidates
        parents = c.parents_of(culprit)
        if not parents and self.bounds != "check":
            parents = tuple(c.goods)  # a pathspec's first candidate: its parent is a good bound
        todo = [p for p in parents if self.observed.get(p) is not Verdict.GOOD and p not in self.trusted]
        if self.bounds != "check" and not self.noisy:
            # A good bound is good when trusted; an ancestor of an observed good is good (as git).
            todo = [p for p in todo if not (self.bounds == "trust" and p in c.goods) and not implied_good(c.parents, self.observed, p)]
        lazy_goods = [p for p in todo if p in c.goods and p not in self.observed]
        undos = self.undos
        self.round(runner, [(c.point(p), Role.GOOD_BOUND if p in lazy_goods else Role.CONFIRM)
                            for p in todo if p not in self.observed])
        if self.undos != undos:
            return None
        for p in lazy_goods:
            self._check_bound(p, Role.GOOD_BOUND, Verdict.GOOD)
        for p in todo:
            verdict = self.observed.get(p, Verdict.SKIP)
            if verdict is Verdict.GOOD:
                continue
            if verdict is Verdict.ABORT:
                raise ProbeAbort(abort_message(self.step_of(p)))
            return Outcome(
                Status.NOT_CONFIRMED,
                culprit=culprit,
                candidates=(culprit, p),
                message=(
                    f"confirmation failed: parent {p[:10]} of {culprit[:10]} is {verdict.value}, "
                    "so the probe is not monotone here (flaky, or more than one change)"
                ),
            )
        return Outcome(Status.FOUND, culprit=culprit, probability=probability, candidates=(culprit,))

    def _noisy_outcome(self) -> Outcome:
        r = self.search.result()
        top5 = tuple(r.candidates[:5])
        if r.status == "found" and r.culprit is not None:
            return Outcome(Status.FOUND, culprit=r.culprit, probability=r.probability, candidates=top5)
        if r.status == "no_culprit":
            return Outcome(
                Status.NO_CULPRIT, probability=r.probability, candidates=top5,
                message=(f"the failures look like noise: P(no culprit) = {r.probability:.3f}; "
                         "the bad bound does not fail reliably"),
            )
        top = ", ".join(f"{k[:10]} {self.search.probability(k):.2f}" for k in top5)
        return Outcome(
            Status.AMBIGUOUS if r.status == "ambiguous" else Status.UNDECIDED,
            probability=r.probability, candidates=top5,
            message=f"no single culprit above the target {self.search.confidence:g}; top candidates: {top}",
        )
