"""The candidate DAG between the bounds, and commit metadata, from git."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from bisector.core import arrays
from bisector.core.arrays import np
from bisector.core.dag import Revisions
from bisector.core.errors import UsageError
from bisector.core.model import Axis, Candidates
from bisector.io.data.history import data_revisions
from bisector.io.git import GitError, git, git_env, is_ancestor, resolve
from bisector.io.process import iter_line_chunks


def load_candidates(
    repo: Path,
    bad: str,
    goods: Sequence[str],
    *,
    first_parent: bool = False,
    paths: Sequence[str] = (),
) -> Candidates:
    """Resolve the bounds and list the candidates, or raise a UsageError saying why not."""
    if not goods:
        raise UsageError("no good revision: pass --good REV (a commit where the probe passes)")
    bad_sha = resolve(repo, bad, "bad revision")
    good_shas: list[str] = []
    for g in goods:
        sha = resolve(repo, g, "good revision")
        if sha == bad_sha:
            raise UsageError(f"good and bad are the same commit ({sha[:10]}): pass an older --good")
        if sha not in good_shas:
            good_shas.append(sha)
    # One `rev-list --parents` walk, streamed: it lists the candidates and, through the parents
    # it prints, tells which goods are ancestors of the bad one (a good is an ancestor iff some
    # candidate has it as a parent), so the full-history `merge-base` walks run only for a good
    # it does not show (pathspec-rewritten parents, or a good off the bad one's history).
    args = ["rev-list", "--parents"]
    if first_parent:
        args.append("--first-parent")
    args += [bad_sha, "--not", *good_shas, "--"]
    args += list(paths)
    keys, counts, flat = _rev_list(repo, args, first_parent)
    n = len(keys)
    # Which parent is a candidate (its position), -1 for a good or a commit the pathspec left out.
    names = Revisions(keys, np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    found = _parent_positions(names, rows, flat)
    seen = set(flat[found < 0].tolist())  # (not np.unique: it imports numpy.ma, ~20 ms)
    merge_bases: list[str] = []
    for g in good_shas:
        if g.encode() in seen:
            continue
        if not n and is_ancestor(repo, bad_sha, g):
            raise UsageError(
                f"bad {bad_sha[:10]} is an ancestor of good {g[:10]}: did you swap --good and --bad?"
            )
        if not is_ancestor(repo, g, bad_sha):
            # As git bisect: the merge bases must be good for the search to make sense.
            for mb in git(repo, "merge-base", "--all", g, bad_sha).split():
                if mb not in merge_bases and mb not in good_shas:
                    merge_bases.append(mb)
            if first_parent:
                raise UsageError(
                    f"good {g[:10]} is not on the first-parent line of bad {bad_sha[:10]}: "
                    "drop --first-parent or pick a good revision that is an ancestor of the bad one"
                )
    if not n:
        if paths:
            raise UsageError(
                f"empty range: no commit between good and bad {bad_sha[:10]} changes {' '.join(paths)}: widen the pathspec"
            )
        raise UsageError(f"empty range: no commits between good and bad {bad_sha[:10]}")
    # A candidate's own parents outside the candidates (goods, history the pathspec left out)
    # are kept apart for the confirmation; the search sees only parents among the candidates.
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    true_parents: dict[str, tuple[str, ...]] = {}
    for d in sorted(set(rows[found < 0].tolist())):
        true_parents[bytes(keys[d]).decode()] = tuple(p.decode() for p in flat[ptr[d] : ptr[d + 1]].tolist())
    keep = found >= 0
    inner = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=n), out=inner[1:])
    par = found[keep]
    del found, flat, rows
    bad_key = np.array([bad_sha.encode()], dtype=keys.dtype)
    if not np.any(keys == bad_key[0]):
        # Pathspec-limited: the bad bound itself did not touch the paths. It stays the
        # head of the DAG (known bad), its parents the heads of the limited set.
        is_parent = np.zeros(n, dtype=bool)
        is_parent[par] = True
        heads = np.flatnonzero(~is_parent)
        keys = np.concatenate([bad_key, keys])
        par = np.concatenate([heads, par]) + 1
        inner = np.concatenate([[0], inner + len(heads)])
    parents = Revisions(keys, inner, par, order=names._order if len(keys) == n else None)
    return Candidates(
        bad=bad_sha,
        goods=good_shas,
        parents=parents,
        merge_bases=merge_bases,
        first_parent=first_parent,
        paths=list(paths),
        true_parents=true_parents,
    )


def _parent_positions(names: Revisions, rows: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """The candidate position of each listed parent (-1: not a candidate). rev-list prints most
    parents on the very next line (all of them on a linear history): those are matched in one
    comparison, the binary search over the names runs for the rest only."""
    keys = names.keys
    nxt = rows + 1
    ahead = nxt < len(keys)
    hit = ahead & (keys[np.where(ahead, nxt, 0)] == flat)
    found = np.where(hit, nxt, -1)
    if not bool(hit.all()):
        miss = np.flatnonzero(~hit)
        found[miss] = names.find_many(flat[miss])
    return found


def _rev_list(repo: Path, args: list[str], first_parent: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One streamed `git rev-list --parents`: the commits (newest first) as a bytes array, how
    many parents each lists, and those parents in one flat bytes array. Each read buffer of
    output is parsed with array operations (a Python loop over 100k lines cost ~80 ms)."""
    keys: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    flat: list[np.ndarray] = []
    width = 0
    try:
        # numpy is imported while git walks (rev-list prints nothing before its walk of a range
        # is done): ~90 ms of every start off the wall clock on a long history.
        for chunk in iter_line_chunks(["git", "-C", str(repo), *args], cwd=repo, env=git_env(), meanwhile=arrays.load):
            if not width:
                head = chunk.lstrip(b"\n")
                if not head:
                    continue
                width = min(i for i in (head.find(b" "), head.find(b"\n")) if i >= 0)
            k, c, f = _parse_chunk(chunk, width, first_parent)
            keys.append(k)
            counts.append(c)
            flat.append(f)
    except subprocess.CalledProcessError as e:
        msg = ((e.stderr or "").strip().splitlines() or [f"exit {e.returncode}"])[-1]
        raise GitError(f"git rev-list failed: {msg}") from None
    dtype = np.dtype(f"S{width or 40}")
    if not keys:
        return np.zeros(0, dtype=dtype), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=dtype)
    return np.concatenate(keys), np.concatenate(counts), np.concatenate(flat)


def _parse_chunk(chunk: bytes, width: int, first_parent: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lines "sha parent..." (full-width shas, one space between, each line ending with a
    newline; blank lines skipped) -> (shas, number of parents, parents), or a GitError."""
    buf = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    filled = ends > starts
    starts, ends = starts[filled], ends[filled]
    k, odd = np.divmod(ends - starts + 1, width + 1)
    spaces = np.flatnonzero(buf == 32)
    line = np.searchsorted(ends, spaces)  # the line of each space (blank lines hold none)
    rel = spaces - starts[line]
    wrong = (odd != 0) | (np.bincount(line, minlength=len(starts)) != k - 1)
    if spaces.size and bool(np.any(rel % (width + 1) != width)):
        wrong[line[rel % (width + 1) != width]] = True
    if bool(wrong.any()):
        i = int(np.flatnonzero(wrong)[0])
        raise GitError(f"git rev-list printed an unexpected line: {chunk[starts[i]:ends[i]][:200]!r}")
    if first_parent:  # the first parent only (rev-list prints them all)
        spaces = spaces[rel == width]
        k = np.minimum(k, 2)
    span = np.arange(width)
    dtype = np.dtype(f"S{width}")
    keys = np.ascontiguousarray(buf[starts[:, None] + span]).view(dtype).reshape(-1)
    flat = np.ascontiguousarray(buf[(spaces + 1)[:, None] + span]).view(dtype).reshape(-1)
    return keys, (k - 1).astype(np.int64), flat


def load_start_candidates(repo: Path, start: Mapping[str, Any]) -> Candidates:
    """The candidates of a session from its `start` event: commits (code axis) or data
    revisions (data axis). `bisector run`, resume and `replay` all load them here."""
    axis = Axis(start.get("axis") or "code")
    paths = list(start.get("paths") or ())
    if axis is Axis.CODE:
        c = load_candidates(repo, start["bad"], start["goods"], first_parent=bool(start.get("first_parent")), paths=paths)
        return dataclasses.replace(c, data_rev=start.get("data_rev"))
    if not (repo / ".dvc").is_dir():
        raise UsageError("--axis data needs a DVC repository (no .dvc/ folder here): search the code axis")
    good = start["goods"][0]
    revs = data_revisions(repo, good, start["bad"], paths)
    if not revs:
        raise UsageError(
            f"the DVC-tracked inputs did not change between good {good[:10]} and bad {start['bad'][:10]}: "
            "the cause is in the code, search with --axis code"
        )
    shas = [r.sha for r in revs]  # oldest first
    parents = {sha: ((shas[i - 1],) if i else ()) for i, sha in enumerate(shas)}
    parents = dict(reversed(list(parents.items())))  # newest first, as rev-list
    return Candidates(bad=shas[-1], goods=[good], parents=parents, paths=paths, axis=axis,
                      code_rev=start.get("code_rev") or shas[-1])

