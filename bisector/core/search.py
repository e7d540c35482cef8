"""The pure search: a posterior over which candidate is the first bad commit; `next()` asks, `record()` tells.

Model: the culprit c is the first bad commit, a revision X is bad iff c is an ancestor-or-self of X;
or there is no culprit at all (key None: every revision is good and the failure was noise). Each
observation multiplies the weight of every hypothesis by its likelihood; a deterministic probe has
likelihoods 1 and 0, which we keep as a mask of the suspects still alive, so the zero-noise case
stays exact (integer counts in float64) and reproduces `git bisect` choice for choice. The weights,
their ancestor sums and the run counts are numpy arrays over the candidates (see `dag.py`): one
step costs a few passes over them, never a sort of the whole posterior.
Standard library and numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from bisector.core.arrays import np
from bisector.core.dag import Dag as _Dag
from bisector.core.dag import contradiction
from bisector.core.errors import ContradictionError, UsageError
from bisector.core.model import Verdict
from bisector.core.noise import Counts, NoiseModel, Posterior, make_grid

__all__ = ["Counts", "NoiseModel", "Search", "SearchResult"]


@dataclass
class SearchResult:
    status: str  # "found" | "ambiguous" | "running" | "no_culprit"
    culprit: str | None
    probability: float
    candidates: list[str] = field(default_factory=list)


class Search(Posterior):
    """Ask/tell search for the first bad revision among `parents` (see the module docstring).

    `parents`: candidate -> its parents that are candidates too, in `git rev-list` order (newest
    first); `bad` is the single head. Options, all keyword-only:
    - `noise`: None or 0 (deterministic probe), a symmetric flip probability, or a `NoiseModel`.
    - `learn_noise`: learn the rate(s) of the noise family (symmetric unless `noise` says flaky or
      two-rate) on a grid that starts at `noise_floor`, integrating over the unknown rate.
    - `confidence`: stop when one hypothesis reaches this probability (noisy searches).
    - `no_culprit_prior`: prior mass of "no culprit" (default 0.05 under noise, 0 otherwise).
    - `confirm`: under noise, before stopping require a pass at the culprit's parents and a fail
      at the culprit (default on under noise; a deterministic search never re-asks).
    - `good`: the known-good revisions (outside the candidates); runs recorded there calibrate noise.
    - `calibration_runs`: under `learn_noise`, runs wanted at each bound before searching.
    - `build_cost`, `cost`, `built`: cost of building an unbuilt revision in units of one probe run
      (default for all / per revision) and the revisions already built; with costs the choice
      maximizes expected information per cost instead of splitting the mass in half.
    """

    def __init__(
        self,
        parents: Mapping[str, tuple[str, ...]],
        bad: str,
        *,
        noise: float | NoiseModel | None = None,
        confidence: float = 0.99,
        learn_noise: bool = False,
        noise_floor: float = 0.02,
        no_culprit_prior: float | None = None,
        confirm: bool | None = None,
        good: Iterable[str] = (),
        calibration_runs: int = 0,
        build_cost: float = 0.0,
        cost: Mapping[str, float] | None = None,
        built: Iterable[str] = (),
    ):
        if bad not in parents:
            raise UsageError(f"the bad revision {bad} is not among the candidates")
        if not 0.5 < confidence < 1.0:
            raise UsageError(f"confidence {confidence} must be between 0.5 and 1")
        self._dag = dag = _Dag(parents)
        self._n = n = dag.n
        self._bad = dag.index[bad]
        below_bad = dag.anc_mask(self._bad)
        if not below_bad.all():
            stray = dag.revs[int(np.argmin(below_bad))]
            raise UsageError(f"candidate {stray} is not an ancestor of the bad revision {bad}")
        if isinstance(noise, (int, float)):
            noise = NoiseModel.symmetric(float(noise)) if noise else None
        if noise is not None and noise.kind == "deterministic":
            noise = None
        if learn_noise and noise is None:
            noise = NoiseModel.symmetric(noise_floor)
        self.noise = noise
        self.learn_noise = learn_noise
        self.confidence = confidence
        noisy = noise is not None
        self._prior_none = (0.05 if noisy else 0.0) if no_culprit_prior is None else no_culprit_prior
        if not 0.0 <= self._prior_none < 1.0:
            raise UsageError(f"no_culprit_prior {self._prior_none} must be in [0, 1)")
        self._confirm = noisy and (True if confirm is None else confirm)
        self._grid = make_grid(noise, learn_noise, noise_floor)
        # Rates below which an observation is impossible: those observations kill suspects.
        self._min_q0 = min(q0 for q0, _, _ in self._grid)
        self._max_q1 = max(q1 for _, q1, _ in self._grid)
        self._good = {g: None for g in good}
        self._calibration_runs = calibration_runs if learn_noise else 0
        self._build_cost = build_cost
        self._cost = dict(cost or {})
        self._costly = build_cost > 0 or any(self._cost.values())
        self._built = {dag.index[r] for r in built if r in dag.index}
        # Invariants: `_alive` holds the suspects no observation has ruled out (likelihood > 0);
        # `_K[i]`/`_P[i]` count failed/passed runs at candidate i; `_skipped` is never proposed.
        self._alive = np.ones(n, dtype=bool)
        self._all_alive = True
        self._none_alive = self._prior_none > 0.0
        self._K = np.zeros(n, dtype=np.int64)
        self._P = np.zeros(n, dtype=np.int64)
        self._Kg = self._Pg = 0
        self._skipped = np.zeros(n, dtype=bool)
        self._any_skipped = False
        self._streak: list[int] = []  # revisions skipped since the last real answer
        self._observed_bad: dict[int, None] = {}
        self._observed_good: dict[int, None] = {}
        self.runs = 0
        self._cache: dict | None = None

    def _obs_counts(self, obs: Verdict | Counts) -> tuple[int, int] | None:
        if isinstance(obs, Counts):
            return obs.k_bad, obs.n
        if obs == Verdict.BAD:
            return 1, 1
        if obs == Verdict.GOOD:
            return 0, 1
        if obs == Verdict.SKIP:
            return None
        raise UsageError(f"cannot record verdict {obs!r}: an aborted probe stops the search")

    # ------------------------------------------------------------------ tell
    def record(self, rev: str, obs: Verdict | Counts) -> None:
        """Record one observation at `rev`; raises ContradictionError if it cannot hold."""
        counts = self._obs_counts(obs)
        if rev in self._good:
            if counts is None:
                return
            k, n = counts
            if k and self._min_q0 == 0.0:
                raise ContradictionError(f"the good bound {rev} was observed bad: it does not reproduce as good")
            self._Kg += k
            self._Pg += n - k
            self.runs += n
            self._cache = None
            return
        i = self._dag.index.get(rev)
        if i is None:
            raise UsageError(f"unknown revision {rev}: it is not among the candidates")
        if counts is None:
            self._skipped[i] = True
            self._any_skipped = True
            self._streak.append(i)
            self._cache = None
            return
        k, n = counts
        alive, none_alive = self._alive, self._none_alive
        kill_below = bool(n - k and self._max_q1 == 1.0)  # a pass is impossible at a bad revision
        keep_below = bool(k and self._min_q0 == 0.0)  # a fail is impossible at a good revision
        if kill_below or keep_below:
            below = self._dag.anc_mask(i)
            alive = alive & ~below if kill_below else alive
            if keep_below:
                alive = alive & below
                none_alive = False
            if not none_alive and not alive.any():
                raise ContradictionError(contradiction(self._dag, i, k, n, self._observed_bad, self._observed_good))
            self._all_alive = self._all_alive and bool(alive.all())
        self._alive, self._none_alive = alive, none_alive
        self._streak = []
        self._K[i] += k
        self._P[i] += n - k
        if k:
            self._observed_bad[i] = None
        if n - k:
            self._observed_good[i] = None
        self._built.add(i)
        self.runs += n
        self._cache = None

    # ------------------------------------------------------------------- ask
    def _eligible(self) -> np.ndarray:
        """Suspects worth probing: not skipped, and (deterministically) with an answer not yet implied."""
        st = self._state()
        if "elig" in st:
            return st["elig"]
        A, Z, w = st["A"], st["Z"], st["w"]
        if self.noise is None:
            ok = (w > 0.0) & (A < Z)
        else:
            # Under noise a revision may be asked again, but only while its answer is still uncertain.
            ok = (w > 0.0) & (A > 1e-4 * Z) & (A < (1 - 1e-4) * Z)
        if self._any_skipped:
            ok &= ~self._skipped
        st["elig"] = elig = np.flatnonzero(ok)
        return elig

    def needs_calibration(self) -> list[str]:
        """Bounds that want more runs before searching (only with `learn_noise` and `calibration_runs`)."""
        want = []
        if self._calibration_runs:
            if self._good and self._Kg + self._Pg < self._calibration_runs:
                want.append(next(iter(self._good)))
            if self._K[self._bad] + self._P[self._bad] < self._calibration_runs:
                want.append(self._dag.revs[self._bad])
        return want

    def counts_at_bounds(self) -> dict[str, Counts | None]:
        b = self._bad
        kb, nb = int(self._K[b]), int(self._K[b] + self._P[b])
        ng = self._Kg + self._Pg
        return {
            "good": Counts(self._Kg, ng) if ng else None,
            "bad": Counts(kb, nb) if nb else None,
        }

    def confirmation(self) -> list[str]:
        """Revisions still to run before the top suspect counts as confirmed (empty when not pending)."""
        if not self._confirm:
            return []
        top, c = self._top()
        if top < self.confidence:
            return []
        todo = [p for p in self._dag.parents_of(c) if not self._skipped[p] and self._evidence(p) >= 0]
        if not self._skipped[c] and self._evidence(c) <= 0:
            todo.append(c)
        return [self._dag.revs[i] for i in todo]

    @property
    def confirmation_pending(self) -> bool:
        return bool(self.confirmation())

    def _finished(self) -> bool:
        if self.needs_calibration():
            return False
        if self.noise is not None:
            post_none = self._state()["wn"] / self._state()["Z"]
            if post_none >= self.confidence:
                return True
            if self._top()[0] >= self.confidence:
                return not self.confirmation_pending
        return self._choice() is None

    def _choice(self) -> int | None:
        """The single revision to probe next (None: nothing informative left), cached per state."""
        st = self._state()
        if "choice" in st:
            return st["choice"]
        choice = None
        if self.noise is not None and not self._costly and not self._streak:
            # Fast path: the revision whose ancestor mass is closest to half, if it is eligible.
            A, Z, w = st["A"], st["Z"], st["w"]
            i = int(np.argmin(np.abs(2.0 * A - Z)))
            if w[i] > 0.0 and 1e-4 * Z < A[i] < (1 - 1e-4) * Z and not self._skipped[i]:
                choice = i
        if choice is None:
            elig = self._eligible()
            choice = self._pick(elig) if len(elig) else None
        st["choice"] = choice
        return choice

    @property
    def done(self) -> bool:
        return self._finished()

    def next(self, k: int = 1) -> list[str]:
        """Up to k revisions to probe next (k > 1: at posterior quantiles i/(k+1)); [] when done."""
        if k < 1:
            raise UsageError(f"next(k) needs k >= 1, got {k}")
        cal = self.needs_calibration()
        if cal:
            return cal[:k]
        if self._finished():
            return []
        conf = self.confirmation()
        if conf:
            return conf[:k]
        if k > 1:
            elig = self._eligible()
            st = self._state()
            A, Z, gp = st["A"], st["Z"], self._dag.gitpos
            frac, egp = A[elig] / Z, gp[elig]
            free = np.ones(len(elig), dtype=bool)
            chosen: list[int] = []
            for j in range(1, k + 1):
                if not free.any():
                    break
                d = np.where(free, np.abs(frac - j / (k + 1)), np.inf)
                best = np.flatnonzero(d == d.min())
                pick = int(best[np.argmin(egp[best])])
                chosen.append(int(elig[pick]))
                if self.noise is None:
                    free[pick] = False
            return [self._dag.revs[i] for i in chosen]
        return [self._dag.revs[self._choice()]]

    def _pick(self, elig: np.ndarray) -> int:
        st = self._state()
        A, Z, gp = st["A"], st["Z"], self._dag.gitpos
        score = self._scores(elig, A, Z)
        if self._streak:
            # Skips since the last real answer mark an untestable stretch: keep clear of it, at a
            # radius (share of the mass) that doubles with each skip in a row, so a broken build
            # is jumped over, not walked; replaying the observations replays the choices.
            radius = 0.05 * 2 ** (len(self._streak) - 1) * Z
            gap = np.min(np.abs(A[elig][:, None] - A[self._streak][None, :]), axis=1)
            while radius > 1e-9 * Z:
                away = gap >= radius
                if away.any():
                    elig, score = elig[away], score[away]
                    break
                radius /= 2
        elif self.noise is None and not self._costly:
            # git's shortcut (approx_halfway): a split within 1 of half, or for big ranges within
            # nr/1024 of it, is taken from the merges first, then from the other non-roots, each
            # in git's list order (oldest first).
            near = np.flatnonzero((score <= 1.0) | (score < int(Z) // 1024))
            if len(near):
                alive = self._alive

                def group(i: int) -> int:
                    ps = self._dag.n_parents_in(i, alive)
                    return 0 if ps >= 2 else 1 if ps == 1 else 2

                return min((int(elig[j]) for j in near.tolist()), key=lambda i: (group(i), int(gp[i])))
        # Otherwise git's best_bisection(): the best split, the first in list order among equals.
        best = np.flatnonzero(score == score.min())
        return int(elig[best[np.argmin(gp[elig[best]])]])

    # ---------------------------------------------------------------- result
    def result(self) -> SearchResult:
        st = self._state()
        revs = self._dag.revs
        p_none = st["wn"] / st["Z"]
        ranked = self._ranked(10)
        top = [revs[i] for _, i in ranked]
        if self.noise is not None and p_none >= self.confidence:
            return SearchResult("no_culprit", None, p_none, top)
        done = self._finished()
        if ranked and ranked[0][0] >= self.confidence and done:
            return SearchResult("found", revs[ranked[0][1]], ranked[0][0], top)
        if not done:
            return SearchResult("running", None, ranked[0][0] if ranked else 0.0, top)
        if self.noise is None:
            return SearchResult("ambiguous", None, ranked[0][0], [revs[i] for _, i in self._ranked()])
        k = 16
        while True:
            ranked = self._ranked(k)
            probs = np.cumsum([p for p, _ in ranked])
            enough = np.flatnonzero(probs >= self.confidence)
            if len(enough) or len(ranked) < k:
                end = int(enough[0]) + 1 if len(enough) else len(ranked)
                return SearchResult("ambiguous", None, ranked[0][0], [revs[i] for _, i in ranked[:end]])
            k *= 4

    @classmethod
    def from_settings(cls, candidates: Any, settings: Mapping[str, Any]) -> "Search":
        """The search a session runs: `candidates` (a `core.model.Candidates`) and the journaled
        `search` settings (noise, flaky, learn_noise, confidence, calibration_runs, noise_floor)."""
        noise: Any = None
        if settings.get("flaky") is not None:
            noise = NoiseModel.flaky(settings["flaky"]) if settings["flaky"] > 0 else None
            if noise is None:
                noise = NoiseModel.flaky(settings.get("noise_floor", 0.02))
        elif settings.get("noise"):
            noise = NoiseModel.symmetric(settings["noise"])
        learn = bool(settings.get("learn_noise"))
        if noise is None and not learn:
            return cls(candidates.parents, candidates.bad)
        return cls(
            candidates.parents,
            candidates.bad,
            noise=noise,
            learn_noise=learn,
            confidence=settings.get("confidence", 0.99),
            noise_floor=settings.get("noise_floor", 0.02),
            good=candidates.goods,
            calibration_runs=settings.get("calibration_runs", 3) if learn else 0,
        )
