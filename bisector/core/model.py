"""The typed model every layer passes around: verdicts, points, steps and outcomes.

Plain frozen dataclasses and enums, standard library only. They say nothing about the
journal's key names: `bisector.journal.codec` is the one place that turns them into
journal events and back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


class Verdict(str, enum.Enum):
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"
    # The probe could not run at all (exit 128+ or killed): the search must stop.
    ABORT = "abort"

    @classmethod
    def from_exit_code(cls, code: int) -> "Verdict":
        """`git bisect run` convention: 0 good, 125 skip, 1-127 bad, else abort.

        Negative codes (killed by a signal, as subprocess reports them) abort too.
        """
        if code == 0:
            return cls.GOOD
        if code == 125:
            return cls.SKIP
        if 1 <= code <= 127:
            return cls.BAD
        return cls.ABORT


class Role(str, enum.Enum):
    """Why a step was run."""

    BAD_BOUND = "bad-bound"
    GOOD_BOUND = "good-bound"
    MERGE_BASE = "merge-base"
    SEARCH = "search"
    CALIBRATE = "calibrate"  # a bound probed again by the noisy search
    CONFIRM = "confirm"  # a parent of the culprit
    CROSSING = "crossing"  # code of one revision with data of another (attribution)


class Axis(str, enum.Enum):
    CODE = "code"  # commits, each with its own data
    DATA = "data"  # the code fixed, the revisions where DVC-tracked inputs changed


class Status(str, enum.Enum):
    """How a search ended."""

    FOUND = "found"
    AMBIGUOUS = "ambiguous"
    UNDECIDED = "undecided"
    NO_CULPRIT = "no_culprit"
    BOUNDS = "bounds"
    CONTRADICTION = "contradiction"
    NOT_CONFIRMED = "not-confirmed"
    ABORT = "abort"
    RESET = "reset"


@dataclass(frozen=True)
class Point:
    """One thing to build: `key` is what the search calls it (the commit, or on the data axis
    the data revision); `code` is the commit checked out; `data` the data revision overlaid
    (None: the commit's own data); `env` the revision whose environment it is built with
    (`--env`; None: the commit's own)."""

    key: str
    code: str
    data: str | None = None
    env: str | None = None  # the revision whose environment is used (None: the code's own)


@dataclass(frozen=True)
class Candidates:
    """What the search works on: every revision that may be the first bad one.

    `parents` maps each candidate to its parents that are candidates too, newest first (as
    `git rev-list`). `bad` is in it; known goods are not. `merge_bases` must be checked good
    first (a good bound that is not an ancestor of the bad one, as `git bisect` does).
    `true_parents` holds a candidate commit's own parents (all of them, or the first under
    `first_parent`), from the same `rev-list --parents` output, where they differ from
    `parents` (some are not candidates: a good bound, or commits outside the pathspec). On the data axis the keys are
    data revisions, built with the code of `code_rev`; on the code axis `data_rev`, when set,
    pins the data of every step.
    """

    bad: str
    goods: Sequence[str]
    parents: Mapping[str, tuple[str, ...]]
    merge_bases: Sequence[str] = ()
    first_parent: bool = False
    paths: Sequence[str] = ()
    axis: Axis = Axis.CODE
    code_rev: str | None = None
    data_rev: str | None = None
    true_parents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.parents)

    def point(self, key: str) -> Point:
        """What to build for the search's `key`."""
        if self.axis is Axis.DATA:
            return Point(key, self.code_rev or self.bad, key)
        return Point(key, key, self.data_rev)

    def parents_of(self, key: str) -> tuple[str, ...]:
        """The revisions that must be good for `key` to be the first bad one (confirmation).

        Data axis: the previous data revision, or the good bound. A pathspec: the parents in
        the simplified history. Otherwise the commit's own parents (the first under
        `first_parent`)."""
        if self.axis is Axis.DATA:
            return tuple(self.parents.get(key, ())) or tuple(self.goods[:1])
        if self.paths or key not in self.true_parents:
            return tuple(self.parents.get(key, ()))
        return tuple(self.true_parents[key])


@dataclass(frozen=True)
class Observation:
    """One probe's result at one step.

    `verdict` is what the search consumes. `summary` is one short line for tables.
    `evidence` holds the raw numbers (exit code, rates, counts, metric values...).
    `counts` is optional (k, n) for binomial likelihoods in the noisy search.
    """

    probe: str
    verdict: Verdict
    summary: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    log: str | None = None  # path of the probe's log file
    counts: tuple[int, int] | None = None

    @property
    def is_undo(self) -> bool:
        """A person answered `undo` (manual probe): retract the previous answer."""
        return bool(self.evidence.get("undo"))


@dataclass(frozen=True)
class StepRequest:
    """What the loop asks a runner for: step number `step` builds and probes `point`."""

    step: int
    point: Point
    role: Role
    run: int = 1  # the how-manieth run at this point (noisy searches repeat)
    fresh_build: bool = False  # rebuild even if cached: a repeat whose sample is the build itself


@dataclass(frozen=True)
class BuildInfo:
    """What the build of a step did. `status`: ok | failed | timeout | none | cached |
    no-data (the data could not be had) | lost (the infrastructure lost the step)."""

    status: str = "none"
    duration: float = 0.0
    returncode: int | None = None
    log: str | None = None
    tail: str = ""
    key: str | None = None  # build-cache key (stored or restored)
    outputs: tuple[str, ...] | None = None
    cause: str = ""  # why the data could not be had (no-data)
    data: Mapping[str, Any] | None = None  # what the workspace materialized (DVC)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "none", "cached")


@dataclass(frozen=True)
class StepResult:
    """What running a step observed."""

    verdict: Verdict
    build: BuildInfo = field(default_factory=BuildInfo)
    observations: tuple[Observation, ...] = ()
    duration: float = 0.0
    worker: str = ""
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: each probe's summary, or the build's status when no probe ran."""
        if self.observations:
            return "; ".join(f"{o.probe}: {o.summary}" for o in self.observations)
        line = f"build {self.build.status}"
        return line + ("; " + self.notes[0] if self.notes else "")


@dataclass(frozen=True)
class Step:
    """A journaled step: the request and its result (the journal's `step` event)."""

    request: StepRequest
    result: StepResult
    round: int = 0
    reused_from: int | None = None  # the step number in the session it was reused from

    @property
    def number(self) -> int:
        return self.request.step

    @property
    def key(self) -> str:
        return self.request.point.key

    @property
    def commit(self) -> str:
        return self.request.point.code

    @property
    def data_rev(self) -> str | None:
        return self.request.point.data

    @property
    def role(self) -> Role:
        return self.request.role

    @property
    def verdict(self) -> Verdict:
        return self.result.verdict

    @property
    def is_undo(self) -> bool:
        return any(o.is_undo for o in self.result.observations)


@dataclass(frozen=True)
class Attribution:
    """Whether the code, the data or both broke it (code-axis culprits in DVC repositories)."""

    culprit_is: str  # code | data | both | unknown
    changed: Mapping[str, Any] = field(default_factory=dict)  # {"code": [...], "data": [...]}
    tested: bool = False  # whether the crossings were probed
    crossings: Mapping[str, Verdict] = field(default_factory=dict)  # name -> verdict
    why: str = ""
    how: str = ""  # how it was reached: from the diff, one crossing, two crossings


@dataclass(frozen=True)
class Outcome:
    """How a search ended, without the session's bookkeeping (id, journal, timings)."""

    status: Status
    culprit: str | None = None
    probability: float = 0.0
    candidates: tuple[str, ...] = ()
    message: str = ""
    attribution: Attribution | None = None


HAND = "hand"  # the probe name of a revision marked by hand (`bisector good/bad/skip`)


def hand_step(number: int, point: Point, role: Role, verdict: Verdict, *, mark: str | None = None,
              round: int = 0) -> Step:
    """A step whose verdict a person gave with `bisector good/bad/skip` (nothing was built).
    `mark` is the id of the `mark` event it answers (marks sent to a running session)."""
    evidence: dict[str, Any] = {"marked": verdict.value}
    if mark is not None:
        evidence["mark"] = mark
    obs = Observation(HAND, verdict, f"marked {verdict.value} by hand", evidence=evidence)
    return Step(StepRequest(number, point, role), StepResult(verdict, observations=(obs,)), round=round)


def is_hand(step: Step) -> bool:
    return any(o.probe == HAND for o in step.result.observations)
