"""Observations an earlier session made that a new one may take as its own (`run --from`).

A step is reusable when the old session froze the same probes (with their scripts' digests)
and the same build, and its verdict is good, bad or skip. The step's commit fixes the code
tree and its DVC pointers; a data overlay is part of the key. A commit with the same tree
(a rebased copy) and the same DVC data inputs reuses it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from bisector.core.model import Step, Verdict
from bisector.io.data.files import inputs_at
from bisector.io.git import git, git_ok
from bisector.journal.codec import decode_step
from bisector.journal.read import apply_undo

REUSABLE_VERDICTS = (Verdict.GOOD, Verdict.BAD, Verdict.SKIP)


def reuse_key(commit: str, data_rev: str | None = None) -> str:
    """The key of `reusable_observations`: the commit, or "COMMIT+DATA_REV" for a data overlay."""
    return commit if data_rev in (None, commit) else f"{commit}+{data_rev}"


@dataclass(frozen=True)
class Reused:
    """An old session's step, offered for (`commit`, `data_rev`) of the new one."""

    step: Step  # as the old session journaled it
    session: str  # the old session's id
    runs: tuple[Verdict, ...] = ()  # every verdict at that key (a noisy search repeats)
    commit: str = ""  # the new session's commit: the old one, or a copy with the same tree
    data_rev: str | None = None

    @property
    def verdict(self) -> Verdict:
        return self.step.verdict

    @property
    def reused_commit(self) -> str:
        return self.step.commit


class Reusable(Mapping[str, Reused]):
    """The reusable steps of one old session by `reuse_key`; the trees of their commits are
    resolved once, on the first lookup that needs them."""

    def __init__(self, items: Mapping[str, Reused] | None = None):
        self._items = dict(items or {})
        self._trees: list[tuple[Reused, str]] | None = None

    def __getitem__(self, key: str) -> Reused:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def trees(self, repo: Path) -> list[tuple[Reused, str]]:
        if self._trees is None:
            olds = list(self._items.values())
            out = git(repo, "rev-parse", *(f"{r.step.commit}^{{tree}}" for r in olds)).split() if olds else []
            self._trees = list(zip(olds, out))
        return self._trees


def _data_hashes(repo: Path, rev: str) -> dict[str, str]:
    return {p: d.hash for p, d in sorted(inputs_at(repo, rev).items())}


def reusable_observations(
    old: Any,
    probe_config: Mapping[str, Any],
    *,
    build_config: Mapping[str, Any] | None = None,
    repo: Path | None = None,
) -> Reusable:
    """Steps of the old session (a `journal.read.SessionSummary`) a new session may reuse.

    Reusable when the frozen probe config (`start.config.probes`) equals `probe_config`, the
    build config equals `build_config` (when given), and the verdict is good, bad or skip. A
    revision probed several times (noisy search) maps to its last step, with every verdict in
    `runs`. With `repo`, steps whose commits no longer exist are dropped.
    """
    cfg = old.start.get("config", {})
    if cfg.get("probes") != dict(probe_config):
        return Reusable()
    if build_config is not None and cfg.get("build") != dict(build_config):
        return Reusable()
    events = apply_undo(list(old.events))  # the steps that still count after `undo` events
    out: dict[str, Reused] = {}
    for e in events:
        step = decode_step(e)
        if step.verdict not in REUSABLE_VERDICTS:
            continue
        revs = {step.commit, step.data_rev or step.commit}
        if repo is not None and not all(git_ok(repo, "cat-file", "-e", f"{r}^{{commit}}") for r in revs):
            continue
        key = reuse_key(step.commit, step.data_rev)
        runs = (out[key].runs if key in out else ()) + (step.verdict,)
        out[key] = Reused(step, old.id, runs, step.commit, step.data_rev)
    return Reusable(out)


def find_reusable(repo: Path, reusable: Reusable, commit: str, data_rev: str | None = None) -> Reused | None:
    """The reusable step for (`commit`, `data_rev`): the same revisions, or a copy of them.

    A copy is a commit with the same tree (a rebased commit: the tree holds the code and the
    DVC pointers) and, with a data overlay on either side, the same DVC data inputs.
    """
    key = reuse_key(commit, data_rev)
    if key in reusable:
        return reusable[key]
    if not reusable:
        return None
    tree = git(repo, "rev-parse", f"{commit}^{{tree}}").strip()
    overlay = data_rev not in (None, commit)
    wanted: dict[str, str] | None = None
    for old, old_tree in reusable.trees(repo):
        if old_tree != tree:
            continue
        if overlay or old.step.data_rev not in (None, old.step.commit):
            wanted = wanted if wanted is not None else _data_hashes(repo, data_rev or commit)
            if _data_hashes(repo, old.step.data_rev or old.step.commit) != wanted:
                continue
        return Reused(old.step, old.session, old.runs, commit, data_rev)
    return None
