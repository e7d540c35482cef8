"""Journals as evidence: replay a journal's decisions without building, and reuse its observations.

`replay` feeds the recorded verdicts to a fresh `Search` in the session loop's order (a round
for the bounds, rounds of `search.next(jobs)`, a round confirming the culprit's parents) and
checks that every round and the result match the journal: the journal is then an honest record
of the search. Steps of one round may be journaled in any order (parallel workers); the number
of workers is inferred per round (it is not journaled, and a resumed run may use another). A
`resume` event ends a round early (the killed run's round) and rebuilds the search from the
steps so far, as `Session` does. `reusable_observations` selects the steps of an old session
that a new one may take as its own (same code tree and data, same frozen probes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from bisector.core.errors import ContradictionError, UsageError
from bisector.core.model import Verdict
from bisector.io.data.files import data_hashes
from bisector.journal.read import apply_undo

MAX_JOBS = 64  # the largest round size tried when inferring the number of workers


@dataclass
class ReplayResult:
    ok: bool
    message: str
    checked: int = 0  # steps whose choice was checked
    divergence_step: int | None = None  # the journal step where the replay first disagreed


class Divergence(Exception):
    def __init__(self, step: int | None, message: str):
        super().__init__(message)
        self.step = step


class _Cut(Exception):
    """The journal has no more steps (an unfinished, killed or aborted session)."""


class _Resumed(Exception):
    """A `resume` event: the session restarted its loop from the top."""


class _End(Exception):
    def __init__(self, status: str, culprit: str | None = None, candidates: Sequence[str] = ()):
        super().__init__(status)
        self.status, self.culprit, self.candidates = status, culprit, list(candidates)


@dataclass
class _Steps:
    """The journal's steps in order; `resumes` holds the indices of steps that follow a `resume` event."""

    events: list[dict[str, Any]]
    resumes: set[int]
    i: int = 0
    taken: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, events: list[dict[str, Any]]) -> "_Steps":
        steps = apply_undo(events)
        ids = {id(e): k for k, e in enumerate(steps)}
        resumes, pending = set(), False
        for e in events:
            if e["event"] == "resume":
                pending = True
            elif id(e) in ids and pending:
                resumes.add(ids[id(e)])
                pending = False
        if pending:
            resumes.add(len(steps))
        return cls(steps, resumes)

    def _resume_here(self) -> bool:
        if self.i in self.resumes:
            self.resumes.discard(self.i)
            return True
        return False

    def match(self, expected: Sequence[str]) -> int:
        """How many of the next steps test revisions of `expected` (each once), up to a resume."""
        seen: set[str] = set()
        k = self.i
        while k < len(self.events) and len(seen) < len(expected):
            if (k > self.i and k in self.resumes) or self.events[k]["commit"] not in expected:
                break
            if self.events[k]["commit"] in seen:
                break
            seen.add(self.events[k]["commit"])
            k += 1
        return k - self.i

    def take_round(self, expected: Sequence[str], role: str) -> list[dict[str, Any]]:
        """The steps of one round, which must test exactly `expected` (in any order)."""
        if not expected:
            return []
        if self._resume_here():
            raise _Resumed
        n = self.match(expected)
        got = self.events[self.i:self.i + n]
        self.i += n
        self.taken += got
        if n == len(expected):
            return got
        if self.i >= len(self.events):
            raise _Cut
        if self.i in self.resumes:
            raise _Resumed
        e = self.events[self.i]
        want = ", ".join(r[:10] for r in expected if r not in {g["commit"] for g in got})
        raise Divergence(e["step"], f"step {e['step']}: the journal tested {e['commit'][:10]} ({e['role']}) "
                                    f"but the search chooses {want} ({role})")


def _make_search(candidates: Any, settings: Mapping[str, Any]) -> Any:
    """The session's search, built from the journaled `search` settings the way the session builds it."""
    from bisector.run import session

    make = getattr(session, "_make_search", None)
    if make is not None:
        return make(candidates, dict(settings))
    from bisector.core.search import Search

    return Search(candidates.parents, candidates.bad)


class _Replay:
    """The session loop (`Session._search_loop`), with the journal as the executor."""

    def __init__(self, repo: Path, start: Mapping[str, Any], steps: _Steps):
        from bisector.io.history import load_candidates

        self.repo, self.steps = repo, steps
        self.c = c = load_candidates(repo, start["bad"], start["goods"], first_parent=start.get("first_parent", False),
                                     paths=start.get("paths", []))
        if c.merge_bases != list(start.get("merge_bases", [])) or len(c) != start.get("candidates", len(c)):
            raise Divergence(None, f"the candidates changed since the session ({len(c)} now, "
                                   f"{start.get('candidates')} then): history between the bounds was rewritten")
        self.settings = dict(start.get("search") or {})
        self.max_steps = self.settings.get("max_steps")
        self.jobs = 1
        self.rebuild()

    def rebuild(self) -> None:
        """A fresh search fed with every step so far, in journal order (as a resumed session does)."""
        self.search = _make_search(self.c, self.settings)
        self.noisy = self.search.noise is not None
        self.observed: dict[str, Verdict] = {}
        self.recorded: set[str] = set()
        for e in self.steps.taken:
            self.observed[e["commit"]] = Verdict(e["verdict"])
            self._tell(e["commit"], Verdict(e["verdict"]))

    def _tell(self, rev: str, v: Verdict) -> None:
        """As `Session._tell`: candidates, and under noise the good bounds too (they calibrate it)."""
        if v is not Verdict.ABORT and (rev in self.c.parents or (self.noisy and rev in self.c.goods)):
            self._record(rev, v)

    def _record(self, rev: str, v: Verdict) -> None:
        try:
            self.search.record(rev, v)
        except ContradictionError:
            raise _End("contradiction") from None
        self.recorded.add(rev)

    def _round(self, revs: Sequence[str], role: str) -> list[dict[str, Any]]:
        got = self.steps.take_round(revs, role)
        for e in got:
            self.observed[e["commit"]] = Verdict(e["verdict"])
        return got

    def _search_round(self) -> list[dict[str, Any]] | None:
        """One round of `search.next(jobs)`, trying the last round's size first, then 1, 2, ..."""
        tried: list[str] | None = None
        for k in dict.fromkeys([self.jobs, *range(1, MAX_JOBS + 1)]):
            revs = list(dict.fromkeys(self.search.next(k)))
            if not self.noisy:
                revs = [r for r in revs if r not in self.observed]  # never asked twice
            if not revs:
                return None if k == self.jobs or tried is None else self._round(tried, "search")
            tried = tried or revs
            n = self.steps.match(revs)
            stop = self.steps.i + n
            if n == len(revs) or (n and (stop in self.steps.resumes or stop == len(self.steps.events))):
                self.jobs = k
                return self._round(revs, "search")
        return self._round(tried or [], "search")  # raises the divergence (or _Cut) for the first try

    def loop(self) -> _End:
        c = self.c
        bounds = [(c.bad, "bad-bound", Verdict.BAD)] + [(g, "good-bound", Verdict.GOOD) for g in c.goods]
        bounds += [(m, "merge-base", Verdict.GOOD) for m in c.merge_bases]
        first = self._round([r for r, _, _ in bounds if r not in self.observed], "bound")
        if self.noisy:  # bounds are observations like any other
            for e in first:
                v = Verdict(e["verdict"])
                if v is Verdict.ABORT:
                    return _End("abort")
                self._tell(e["commit"], v)
        else:
            for rev, _, expected in bounds:
                v = self.observed[rev]
                if v is expected:
                    if rev in c.parents and rev not in self.recorded:
                        self._record(rev, v)
                    continue
                return _End("abort" if v is Verdict.ABORT else "bounds")
        while True:
            if self.max_steps is not None and len(self.steps.taken) >= self.max_steps:
                break
            got = self._search_round()
            if got is None:
                break
            for e in got:
                v = Verdict(e["verdict"])
                if v is Verdict.ABORT:
                    return _End("abort")
                self._tell(e["commit"], v)
        r = self.search.result()
        if self.noisy:
            status = r.status if r.status in ("found", "no_culprit", "ambiguous") else "undecided"
            return _End(status, r.culprit if status == "found" else None, r.candidates[:5])
        if r.status != "found" or r.culprit is None:
            return _End(r.status, None, r.candidates)
        if c.paths:
            parents = list(c.parents.get(r.culprit, ()))
        else:
            from bisector.io.git import git

            parents = git(self.repo, "rev-list", "--parents", "-n", "1", r.culprit).split()[1:]
            if c.first_parent:
                parents = parents[:1]
        todo = [p for p in parents if self.observed.get(p) is not Verdict.GOOD]
        self._round([p for p in todo if p not in self.observed], "confirm")
        for p in todo:
            v = self.observed[p]
            if v is not Verdict.GOOD:
                return _End("abort" if v is Verdict.ABORT else "not-confirmed", r.culprit, [r.culprit, p])
        return _End("found", r.culprit, [r.culprit])

    def run(self) -> _End | None:
        """The loop's outcome, or None when the journal stops first."""
        while True:
            try:
                return self.loop()
            except _End as end:
                return end
            except _Cut:
                return None
            except _Resumed:
                try:
                    self.rebuild()
                except _End as end:
                    return end


def replay(journal: Path | str, repo: Path | str | None = None) -> ReplayResult:
    """Re-run the decisions of a journal against a fresh search; OK or the first divergence."""
    from bisector.io.git import repo_root
    from bisector.journal.read import read_events

    path = Path(journal)
    events = read_events(path)
    start = next((e for e in events if e["event"] == "start"), None)
    if start is None:
        raise UsageError(f"{path} has no start event: it is not a complete journal")
    if repo is None:
        # <repo>/.bisector/sessions/<id>.jsonl, else the current directory's repository.
        guess = path.resolve().parent.parent.parent
        repo = guess if (guess / ".git").exists() else Path(".")
    repo = repo_root(Path(repo))
    end = next((e for e in reversed(events) if e["event"] == "end"), None)
    steps = _Steps.of(events)
    n = lambda: len(steps.taken)  # noqa: E731
    try:
        rp = _Replay(repo, start, steps)
        outcome = rp.run()
        extra = steps.events[steps.i:]
        if extra:
            e = extra[0]
            raise Divergence(e["step"], f"step {e['step']}: the journal tested {e['commit'][:10]} ({e['role']}) "
                                        "after the search had stopped")
        if outcome is None:
            if end is not None and end.get("status") not in ("abort", "reset", "bounds"):
                raise Divergence(None, f"the journal ends ({end.get('status')}) after {n()} steps "
                                       "but the search needed more")
            what = "unfinished" if end is None else end.get("status")
            return ReplayResult(True, f"OK: {n()} steps replayed; the session is {what}", n())
        if end is None:
            return ReplayResult(True, f"OK: {n()} steps replayed; the search had ended ({outcome.status}) "
                                      "but the journal has no end event", n())
        if end.get("status") == "reset":
            return ReplayResult(True, f"OK: {n()} steps replayed; the session was reset", n())
        same = end.get("status") == outcome.status and end.get("culprit") == outcome.culprit
        if same and outcome.status == "ambiguous" and not rp.noisy:  # noisy results keep only the top 5
            same = sorted(end.get("candidates", [])) == sorted(outcome.candidates)
        if not same:
            theirs = f"{end.get('status')} {(end.get('culprit') or '')[:10]}".strip()
            ours = f"{outcome.status} {(outcome.culprit or '')[:10]}".strip()
            raise Divergence(None, f"the journal's result is {theirs} but the replayed search gives {ours}")
    except Divergence as d:
        return ReplayResult(False, f"DIVERGED: {d}", n(), d.step)
    what = f"first bad commit {outcome.culprit}" if outcome.status == "found" else outcome.status
    return ReplayResult(True, f"OK: {n()} steps replayed, every choice matches; result {what}", n())


# ------------------------------------------------------------------------- reuse
def reuse_key(commit: str, data_rev: str | None = None) -> str:
    """The key of `reusable_observations`: the commit, or "COMMIT+DATA_REV" for a data overlay."""
    return commit if data_rev in (None, commit) else f"{commit}+{data_rev}"


def reusable_observations(
    old: Any,
    probe_config: Mapping[str, Any],
    *,
    build_config: Mapping[str, Any] | None = None,
    repo: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Steps of the old session (a `journal.SessionSummary`) a new session may reuse, by `reuse_key`.

    Reusable when the frozen probe config (`start.config.probes`, with the frozen scripts'
    digests) equals `probe_config`, the build config equals `build_config` (when given), and
    the verdict is good, bad or skip. The step's commit fixes the code tree and its DVC
    pointers; a data overlay is part of the key. A revision probed several times (noisy
    search) maps to its last step, with every verdict in `runs`. With `repo`, steps whose
    commits no longer exist are dropped. `find_reusable` also matches a copy with the same tree.
    """
    from bisector.io.git import git_ok

    cfg = old.start.get("config", {})
    if cfg.get("probes") != dict(probe_config):
        return {}
    if build_config is not None and cfg.get("build") != dict(build_config):
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        from bisector.journal.read import read_events

        steps = apply_undo(read_events(Path(old.path)))  # with its `undo` events
    except Exception:  # the summary alone (a journal moved away since it was summarized)
        steps = apply_undo(list(old.events))
    for e in steps:
        if e.get("verdict") not in ("good", "bad", "skip"):
            continue
        if repo is not None and not all(git_ok(repo, "cat-file", "-e", f"{r}^{{commit}}")
                                        for r in {e["commit"], e.get("data_rev") or e["commit"]}):
            continue
        key = reuse_key(e["commit"], e.get("data_rev"))
        runs = out.get(key, {}).get("runs", []) + [e["verdict"]]
        out[key] = {**e, "reused_from": old.id, "runs": runs}
    return out


def find_reusable(repo: Path, reusable: Mapping[str, Mapping[str, Any]], commit: str,
                  data_rev: str | None = None) -> dict[str, Any] | None:
    """The reusable step for (`commit`, `data_rev`): the same revisions, or a copy of them.

    A copy is a commit with the same tree (a rebased commit: the tree holds the code and the
    DVC pointers) and, with a data overlay on either side, the same DVC data inputs.
    """
    from bisector.io.git import git

    key = reuse_key(commit, data_rev)
    if key in reusable:
        return dict(reusable[key])
    if not reusable:
        return None
    olds = list(reusable.values())
    trees = git(repo, "rev-parse", *(f"{s}^{{tree}}" for s in [commit, *(e["commit"] for e in olds)])).split()
    overlay = data_rev not in (None, commit)
    wanted: dict[str, str] | None = None
    for e, tree in zip(olds, trees[1:]):
        if tree != trees[0]:
            continue
        if overlay or e.get("data_rev") not in (None, e["commit"]):
            wanted = wanted if wanted is not None else data_hashes(repo, data_rev or commit)
            if data_hashes(repo, e.get("data_rev") or e["commit"]) != wanted:
                continue
        return {**e, "commit": commit, "data_rev": data_rev, "reused_commit": e["commit"]}
    return None
