"""Journals as evidence: replay a journal's decisions without building, and reuse its observations.

`replay` feeds the recorded verdicts to a fresh `Search`, in the session loop's order (bounds,
search, confirmation), and checks that every choice and the result match the journal: the
journal is then an honest record of the search. `reusable_observations` selects the steps of an
old session that a new one may take as its own (same code tree and data, same frozen probes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from bisector.errors import ContradictionError, UsageError
from bisector.verdict import Verdict


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


@dataclass
class _Steps:
    """The journal's steps in order, with `undo` events applied (they retract the step they name)."""

    events: list[dict[str, Any]]
    i: int = 0
    taken: list[dict[str, Any]] = field(default_factory=list)

    def take(self, commit: str, role: str) -> dict[str, Any] | None:
        """The next step, which must test `commit`; None when the journal has no more steps."""
        if self.i >= len(self.events):
            return None
        e = self.events[self.i]
        if e["commit"] != commit:
            raise Divergence(e["step"], f"step {e['step']}: the journal tested {e['commit'][:10]} ({e['role']}) "
                                        f"but the search chooses {commit[:10]} ({role})")
        self.i += 1
        self.taken.append(e)
        return e

    def rest(self) -> list[dict[str, Any]]:
        return self.events[self.i:]


def apply_undo(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The step events that still count: an `undo` event {"step": N} retracts the earlier step N."""
    steps: list[dict[str, Any]] = []
    for e in events:
        if e["event"] == "step":
            steps.append(e)
        elif e["event"] == "undo":
            steps = [s for s in steps if s["step"] != e.get("step")]
    return steps


def _simulate(repo: Path, start: Mapping[str, Any], steps: _Steps) -> Iterator[tuple[str, Any]]:
    """The session loop (session.Session._search_loop) with the journal as the probe.

    Yields ("end", (status, culprit, candidates)) when the loop would stop, or ("cut", None)
    when the journal runs out of steps first (an unfinished or aborted session).
    """
    from bisector.git import git
    from bisector.history import load_candidates
    from bisector.search import Search

    c = load_candidates(repo, start["bad"], start["goods"], first_parent=start.get("first_parent", False),
                        paths=start.get("paths", []))
    if c.merge_bases != list(start.get("merge_bases", [])) or len(c) != start.get("candidates", len(c)):
        raise Divergence(None, f"the candidates changed since the session ({len(c)} now, "
                               f"{start.get('candidates')} then): history between the bounds was rewritten")
    search = Search(c.parents, c.bad)
    observed: dict[str, Verdict] = {}
    bounds = [(c.bad, "bad-bound", Verdict.BAD)] + [(g, "good-bound", Verdict.GOOD) for g in c.goods]
    bounds += [(m, "merge-base", Verdict.GOOD) for m in c.merge_bases]
    for rev, role, expected in bounds:
        if rev not in observed:
            e = steps.take(rev, role)
            if e is None:
                yield "cut", None
                return
            v = observed[rev] = Verdict(e["verdict"])
            if v is expected and rev in c.parents:
                search.record(rev, v)
        if observed[rev] is not expected:
            yield "end", ("abort" if observed[rev] is Verdict.ABORT else "bounds", None, [])
            return
    while True:
        revs = [r for r in search.next() if r not in observed]
        if not revs:
            break
        e = steps.take(revs[0], "search")
        if e is None:
            yield "cut", None
            return
        v = observed[e["commit"]] = Verdict(e["verdict"])
        if v is Verdict.ABORT:
            yield "end", ("abort", None, [])
            return
        try:
            search.record(e["commit"], v)
        except ContradictionError:
            yield "end", ("contradiction", None, [])
            return
    r = search.result()
    if r.status != "found" or r.culprit is None:
        yield "end", (r.status, None, list(r.candidates))
        return
    if c.paths:
        parents = list(c.parents.get(r.culprit, ()))
    else:
        parents = git(repo, "rev-list", "--parents", "-n", "1", r.culprit).split()[1:]
        if c.first_parent:
            parents = parents[:1]
    for p in parents:
        if observed.get(p) is Verdict.GOOD:
            continue
        e = steps.take(p, "confirm")
        if e is None:
            yield "cut", None
            return
        v = observed[p] = Verdict(e["verdict"])
        if v is Verdict.GOOD:
            continue
        yield "end", ("abort" if v is Verdict.ABORT else "not-confirmed", r.culprit, [r.culprit, p])
        return
    yield "end", ("found", r.culprit, [r.culprit])


def replay(journal: Path | str, repo: Path | str | None = None) -> ReplayResult:
    """Re-run the decisions of a journal against a fresh search; OK or the first divergence."""
    from bisector.git import repo_root
    from bisector.journal import read_events

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
    steps = _Steps(apply_undo(events))
    try:
        kind, outcome = next(_simulate(repo, start, steps))
        extra = steps.rest()
        if extra:
            e = extra[0]
            raise Divergence(e["step"], f"step {e['step']}: the journal tested {e['commit'][:10]} ({e['role']}) "
                                        "after the search had stopped")
        if kind == "cut":
            if end is not None and end.get("status") not in ("abort", "reset", "bounds"):
                raise Divergence(None, f"the journal ends ({end.get('status')}) after {len(steps.taken)} steps "
                                       "but the search needed more")
            what = "unfinished" if end is None else end.get("status")
            return ReplayResult(True, f"OK: {len(steps.taken)} steps replayed; the session is {what}", len(steps.taken))
        status, culprit, candidates = outcome
        if end is None:
            return ReplayResult(True, f"OK: {len(steps.taken)} steps replayed; the search had ended ({status}) "
                                      "but the journal has no end event", len(steps.taken))
        if end.get("status") == "reset":
            return ReplayResult(True, f"OK: {len(steps.taken)} steps replayed; the session was reset", len(steps.taken))
        same = end.get("status") == status and end.get("culprit") == culprit
        if same and status == "ambiguous":
            same = sorted(end.get("candidates", [])) == sorted(candidates)
        if not same:
            raise Divergence(None, f"the journal's result is {end.get('status')} {(end.get('culprit') or '')[:10]} "
                                   f"but the replayed search gives {status} {(culprit or '')[:10]}".replace("  ", " "))
    except Divergence as d:
        return ReplayResult(False, f"DIVERGED: {d}", len(steps.taken), d.step)
    what = f"first bad commit {culprit}" if culprit and status == "found" else status
    return ReplayResult(True, f"OK: {len(steps.taken)} steps replayed, every choice matches; result {what}",
                        len(steps.taken))


# ------------------------------------------------------------------------- reuse
def reusable_observations(
    old: Any,
    probe_config: Mapping[str, Any],
    *,
    build_config: Mapping[str, Any] | None = None,
    repo: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Steps of the old session (a `journal.SessionSummary`) a new session may reuse: commit -> step event.

    Reusable when the frozen probe config (`start.config.probes`, with the frozen scripts'
    digests) equals `probe_config`, the build config equals `build_config` (when given), the
    step tested the commit with its own data (no data overlay: the tree then fixes code and DVC
    hashes), and its verdict is good, bad or skip. With `repo`, steps of commits that no longer
    exist are dropped. Use `find_reusable` to match a new commit by its tree.
    """
    from bisector.git import git_ok

    cfg = old.start.get("config", {})
    if cfg.get("probes") != dict(probe_config):
        return {}
    if build_config is not None and cfg.get("build") != dict(build_config):
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        from bisector.journal import read_events

        steps = apply_undo(read_events(Path(old.path)))  # with its `undo` events
    except Exception:  # the summary alone (a journal moved away since it was summarized)
        steps = list(old.steps)
    for e in steps:
        if e.get("verdict") not in ("good", "bad", "skip"):
            continue
        if e.get("data_rev") not in (None, e["commit"]):
            continue
        if repo is not None and not git_ok(repo, "cat-file", "-e", f"{e['commit']}^{{commit}}"):
            continue
        out[e["commit"]] = {**e, "reused_from": old.id}
    return out


def find_reusable(repo: Path, reusable: Mapping[str, Mapping[str, Any]], commit: str) -> dict[str, Any] | None:
    """The reusable step for `commit`: the same commit, or one with the same tree (a rebased copy).

    The tree holds the code and the DVC pointers (`.dvc` files, `dvc.lock`), so an equal tree
    means equal code and data hashes.
    """
    from bisector.git import git

    if commit in reusable:
        return dict(reusable[commit])
    if not reusable:
        return None
    shas = list(reusable)
    trees = git(repo, "rev-parse", *(f"{s}^{{tree}}" for s in [commit, *shas])).split()
    for sha, tree in zip(shas, trees[1:]):
        if tree == trees[0]:
            return {**reusable[sha], "commit": commit, "reused_commit": sha}
    return None
