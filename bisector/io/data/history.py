"""Data history from git alone: data-axis candidates, data and params diffs, code-vs-data attribution.

One `git log --raw` over `*.dvc` / `dvc.lock` and one `git cat-file --batch` give every data
state between two revisions; no `dvc diff` (0.5 s per pair, and it counts pipeline outputs).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from bisector.io.data.files import (
    DataInput,
    InputReader,
    cat_blobs,
    dvc_tree_files,
    existing_paths,
    fingerprint,
    flatten,
    inputs_at,
    is_dvcfile,
    is_lockfile,
    load_yaml,
    matches_paths,
)
from bisector.io.git import git, resolve
from bisector.io.git import parents as git_parents


@dataclass(frozen=True)
class DataRevision:
    """A commit where the data inputs changed: the first commit of a run with this fingerprint.

    `changed`: input paths added, modified or removed against the previous data state.
    `inputs`: {path: hash} of every input at this commit (what a build cache key needs).
    """

    sha: str
    changed: tuple[str, ...]
    fingerprint: str
    inputs: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class DataChange:
    path: str
    status: str  # "added" | "modified" | "deleted"
    old_size: int | None
    new_size: int | None
    old_hash: str | None
    new_hash: str | None


def _select(inputs: Mapping[str, DataInput], paths: Sequence[str]) -> dict[str, DataInput]:
    return {k: v for k, v in inputs.items() if matches_paths((v.path, v.source), paths)}


def data_revisions(repo: Path, good: str, bad: str, paths: Sequence[str] = ()) -> list[DataRevision]:
    """The data-axis candidates: commits of `good..bad` (first-parent line, oldest first) whose
    data inputs differ from the previous data state, starting from `good`'s.

    Consecutive commits with the same input fingerprint collapse into the first of them (a
    commit that only re-ran the pipeline changes `dvc.lock` outputs, not inputs, and does not
    count). `paths` limits the inputs considered (prefixes or globs of data paths or `.dvc`
    files). Empty list: the data did not change between the bounds.
    """
    good_sha, bad_sha = resolve(repo, good, "good revision"), resolve(repo, bad, "bad revision")
    reader = InputReader(repo)
    state = dvc_tree_files(repo, good_sha)
    out = git(
        repo, "log", "--first-parent", "--diff-merges=first-parent", "--reverse", "--raw", "--no-renames",
        "--no-abbrev", "-z", "--format=%x01%H", f"{good_sha}..{bad_sha}", "--", "*.dvc", "*dvc.lock",
    )
    # Pass 1: the {path: blob} state after each commit that touched DVC files.
    states: list[tuple[str, dict[str, str]]] = [(good_sha, dict(state))]
    for chunk in out.split("\x01")[1:]:
        tokens = chunk.split("\0")
        sha = tokens[0].strip()
        rest = [t.lstrip("\n") for t in tokens[1:]]
        for meta, path in zip(rest[0::2], rest[1::2]):
            if not meta.startswith(":") or not (is_dvcfile(path) or is_lockfile(path)):
                continue
            parts = meta.split()
            if parts[-1] == "D":
                state.pop(path, None)
            else:
                state[path] = parts[3]
        states.append((sha, dict(state)))
    reader.prefetch(oid for _, s in states for oid in s.values())
    # Pass 2: lock deps tracked by git are code, not data: one batch-check for all of them.
    split = [(sha, *reader.split(s)) for sha, s in states]
    tracked = existing_paths(repo, [(sha, p) for sha, _, deps in split for p in deps])
    result: list[DataRevision] = []
    prev: dict[str, DataInput] | None = None
    prev_fp = None
    for sha, sources, deps in split:
        inputs = {**sources, **{p: d for p, d in deps.items() if (sha, p) not in tracked}}
        inputs = _select(inputs, paths)
        fp = fingerprint(inputs)
        if prev is not None and fp != prev_fp:
            changed = sorted(p for p in set(prev) | set(inputs) if _hash(prev, p) != _hash(inputs, p))
            result.append(DataRevision(sha, tuple(changed), fp, {p: i.hash for p, i in inputs.items()}))
        prev, prev_fp = inputs, fp
    return result


def _hash(inputs: Mapping[str, DataInput], path: str) -> str | None:
    i = inputs.get(path)
    return i.hash if i is not None else None


def data_diff(repo: Path, rev_a: str, rev_b: str, paths: Sequence[str] = ()) -> list[DataChange]:
    """How the data inputs of `rev_b` differ from `rev_a`'s, sorted by path (sizes from the `.dvc` files)."""
    reader = InputReader(repo)
    a = _select(inputs_at(repo, rev_a, reader), paths)
    b = _select(inputs_at(repo, rev_b, reader), paths)
    changes = []
    for p in sorted(set(a) | set(b)):
        old, new = a.get(p), b.get(p)
        if old is not None and new is not None and old.hash == new.hash:
            continue
        status = "added" if old is None else "deleted" if new is None else "modified"
        changes.append(DataChange(
            p, status, old.size if old else None, new.size if new else None,
            old.hash if old else None, new.hash if new else None,
        ))
    return changes


def _params_files(repo: Path, revs: Sequence[str]) -> list[str]:
    """params.yaml plus every params file the `dvc.lock` stages of `revs` name."""
    names = {"params.yaml"}
    reader = InputReader(repo)
    for rev in revs:
        for path, oid in dvc_tree_files(repo, rev).items():
            if not is_lockfile(path):
                continue
            doc = reader.doc(oid)
            stages = doc.get("stages", {}) if isinstance(doc, Mapping) else {}
            for stage in stages.values() if isinstance(stages, Mapping) else []:
                params = stage.get("params") if isinstance(stage, Mapping) else None
                if isinstance(params, Mapping):
                    names.update(posixpath.normpath(posixpath.join(posixpath.dirname(path), str(f))) for f in params)
    return sorted(names)


def params_diff(repo: Path, a: str, b: str) -> dict[str, tuple[Any, Any]]:
    """Changed parameters between two revisions: {"key.sub": (old, new)}, None where absent.

    Keys of `params.yaml` are bare ("train.lr"); other params files (those `dvc.lock` names)
    are prefixed with the file ("conf/model.yaml:depth"). Only YAML/JSON files are read.
    """
    files = _params_files(repo, [a, b])
    blobs = cat_blobs(repo, [f"{rev}:{f}" for rev in (a, b) for f in files])
    diff: dict[str, tuple[Any, Any]] = {}
    for f in files:
        if not f.endswith((".yaml", ".yml", ".json")):
            continue
        prefix = "" if f == "params.yaml" else f + ":"
        old, new = (flatten(load_yaml(blobs.get(f"{rev}:{f}") or "") or {}) for rev in (a, b))
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k) or (k in old) != (k in new):
                diff[prefix + k] = (old.get(k), new.get(k))
    return diff


def _is_code(path: str) -> bool:
    """Everything but DVC's own files, and .gitignore files (`dvc add` edits them)."""
    base = posixpath.basename(path)
    return not (is_dvcfile(path) or is_lockfile(path) or path.startswith(".dvc/")
                or base in (".gitignore", ".dvcignore"))


def classify_culprit(repo: Path, culprit: str) -> dict[str, bool]:
    """What the culprit changed against its first parent: {"code": ..., "data": ...}.

    "code": a file other than DVC's own (`*.dvc`, `dvc.lock`, `.dvc/`, .gitignore) changed;
    `dvc.yaml` and params files count as code. "data": the data inputs differ (a commit that
    only re-ran the pipeline is not a data change). When both are true, the session should
    test the crossings and call `attribution`.
    """
    sha = resolve(repo, culprit, "culprit")
    parents = git_parents(repo, sha)
    if parents:
        names = git(repo, "diff-tree", "-r", "--no-renames", "--name-only", "-z", parents[0], sha)
    else:
        names = git(repo, "ls-tree", "-r", "--name-only", "-z", sha)
    code = any(_is_code(p) for p in names.split("\0") if p)
    reader = InputReader(repo)
    now = {p: i.hash for p, i in inputs_at(repo, sha, reader).items()}
    before = {p: i.hash for p, i in inputs_at(repo, parents[0], reader).items()} if parents else {}
    return {"code": code, "data": now != before}


def attribution(verdict_parent_code_culprit_data: Any, verdict_culprit_code_parent_data: Any) -> str:
    """Blame from the two crossings of a culprit that changed code and data.

    Known: parent code + parent data is good, culprit code + culprit data is bad. Then
      parent code + culprit data | culprit code + parent data | answer
      bad                        | good                       | "data"  (the data alone breaks it)
      good                       | bad                        | "code"  (the code alone breaks it)
      good                       | good                       | "both"  (only the two together break it)
      bad                        | bad                        | "both"  (each alone breaks it)
    A crossing that was skipped (or anything but good/bad) gives "unknown".
    Verdicts may be `Verdict` members or their strings ("good", "bad", "skip").
    """
    a, b = (str(getattr(v, "value", v)).lower() for v in (verdict_parent_code_culprit_data, verdict_culprit_code_parent_data))
    if a not in ("good", "bad") or b not in ("good", "bad"):
        return "unknown"
    if a == "bad" and b == "good":
        return "data"
    if a == "good" and b == "bad":
        return "code"
    return "both"
