"""Real git histories of given shapes, built fast with `git fast-import`, for tests and benchmarks.

Each commit writes `state.txt`; for every planted culprit c the file `bad/<c>` exists at exactly the
commits that have c as an ancestor-or-self, so "culprit c" is the predicate `test ! -e bad/<c>`.
Commit 0 is the single root (the good bound) and the last commit is the single head (the bad bound).
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

SHAPES = ("linear", "bubbles", "octopus", "crisscross")


def shape(kind: str, n: int, seed: int = 0) -> list[tuple[int, ...]]:
    """Parents of each commit (by creation index) for a history of about n commits of this shape."""
    rng = random.Random(seed)
    parents: list[tuple[int, ...]] = [()]

    def add(*ps: int) -> int:
        parents.append(tuple(ps))
        return len(parents) - 1

    if kind == "linear":
        while len(parents) < n:
            add(len(parents) - 1)
    elif kind == "bubbles":
        tip = 0
        while len(parents) < n - 1:
            if rng.random() < 0.5:
                tip = add(tip)
                continue
            side = tip
            for _ in range(rng.randint(1, 3)):
                side = add(side)
            for _ in range(rng.randint(0, 2)):
                tip = add(tip)
            tip = add(tip, side)  # a --no-ff merge when main did not move
        if len(parents) < n:
            add(tip)
    elif kind == "octopus":
        tip = 0
        while len(parents) < n - 1:
            tips = []
            for _ in range(rng.randint(3, 4)):
                b = tip
                for _ in range(rng.randint(1, 3)):
                    b = add(b)
                tips.append(b)
            tip = add(*tips)
            for _ in range(rng.randint(0, 2)):
                tip = add(tip)
        if len(parents) < n:
            add(tip)
    elif kind == "crisscross":
        a = add(0)
        b = add(0)
        while len(parents) < n - 1:
            a2 = add(a, b) if rng.random() < 0.7 else add(a)
            b2 = add(b, a) if rng.random() < 0.7 else add(b)
            a, b = a2, b2
        add(a, b)
    else:
        raise ValueError(f"unknown shape {kind!r}: use one of {SHAPES}")
    return parents


def ancestors(parents: list[tuple[int, ...]]) -> list[int]:
    """Ancestor-or-self bitset of each commit (parents precede children in creation order)."""
    anc = []
    for i, ps in enumerate(parents):
        a = 1 << i
        for p in ps:
            a |= anc[p]
        anc.append(a)
    return anc


def hermetic_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=home,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.path.join(home, ".gitconfig"),
        GIT_AUTHOR_NAME="Gen",
        GIT_AUTHOR_EMAIL="gen@example.com",
        GIT_COMMITTER_NAME="Gen",
        GIT_COMMITTER_EMAIL="gen@example.com",
        LC_ALL="C",
    )
    return env


@dataclass
class GenRepo:
    path: Path
    parents: list[tuple[int, ...]]
    shas: list[str]
    culprits: list[int]
    env: dict[str, str]

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", str(self.path), *args], env=self.env, capture_output=True, text=True, check=check
        )

    @property
    def good(self) -> str:
        return self.shas[0]

    @property
    def bad(self) -> str:
        return self.shas[-1]

    def marker(self, culprit: int) -> str:
        """Path of the file whose presence means "bad" when `culprit` is the planted culprit."""
        return f"bad/{culprit}"


def build(
    kind: str | list[tuple[int, ...]], n: int, culprits: Iterable[int], path: Path | str | None = None, seed: int = 0
) -> GenRepo:
    """Create a real repository of the given shape (or parents list) with markers for each culprit."""
    parents = shape(kind, n, seed) if isinstance(kind, str) else list(kind)
    kind = kind if isinstance(kind, str) else "custom"
    culprits = sorted(set(culprits))
    assert all(0 < c < len(parents) for c in culprits), "culprits must be non-root commits"
    path = Path(path or tempfile.mkdtemp(prefix=f"gitgen-{kind}-"))
    home = path.parent / (path.name + "-home")
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    env = hermetic_env(str(home))
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], env=env, check=True)
    anc = ancestors(parents)
    out = []
    for i, ps in enumerate(parents):
        date = 1_700_000_000 + 60 * i
        msg = f"commit {i}\n"
        out.append(f"commit refs/heads/main\nmark :{i + 1}\n")
        out.append(f"author Gen <gen@example.com> {date} +0000\ncommitter Gen <gen@example.com> {date} +0000\n")
        out.append(f"data {len(msg)}\n{msg}")
        if ps:
            out.append(f"from :{ps[0] + 1}\n")
            out.extend(f"merge :{p + 1}\n" for p in ps[1:])
        out.append("deleteall\n")
        state = f"{i}\n"
        out.append(f"M 100644 inline state.txt\ndata {len(state)}\n{state}")
        for c in culprits:
            if anc[i] >> c & 1:
                out.append(f"M 100644 inline bad/{c}\ndata 2\n{c % 10}\n")
        out.append("\n")
    out.append(f"reset refs/heads/main\nfrom :{len(parents)}\n\n")
    marks = path / ".git" / "gen-marks"
    subprocess.run(
        ["git", "-C", str(path), "fast-import", "--quiet", f"--export-marks={marks}"],
        input="".join(out),
        text=True,
        env=env,
        check=True,
    )
    by_mark = {}
    for line in marks.read_text().splitlines():
        mark, sha = line.split()
        by_mark[int(mark[1:])] = sha
    shas = [by_mark[i + 1] for i in range(len(parents))]
    subprocess.run(["git", "-C", str(path), "checkout", "-q", "-f", "main"], env=env, check=True)
    return GenRepo(path, parents, shas, culprits, env)


def candidates(repo: GenRepo, bad: str, good: str) -> dict[str, tuple[str, ...]]:
    """`git rev-list --parents BAD ^GOOD` as the Search wants it: parents filtered to the set."""
    lines = repo.git("rev-list", "--parents", bad, f"^{good}").stdout.split("\n")
    rows = [ln.split() for ln in lines if ln.strip()]
    inset = {r[0] for r in rows}
    return {r[0]: tuple(p for p in r[1:] if p in inset) for r in rows}


def git_bisect(repo: GenRepo, culprit: int) -> tuple[str, int]:
    """Run real `git bisect run` for this culprit; returns (first bad commit, probes git made)."""
    repo.git("bisect", "reset", check=False)
    repo.git("bisect", "start", repo.bad, repo.good)
    run = repo.git("bisect", "run", "sh", "-c", f"test ! -e {repo.marker(culprit)}")
    log = repo.git("bisect", "log").stdout.splitlines()
    repo.git("bisect", "reset")
    start = next(i for i, ln in enumerate(log) if ln.startswith("git bisect start"))
    steps = [ln.split("[", 1)[1][:40] for ln in log[start + 1 :] if ln.startswith(("# good:", "# bad:", "# skip:"))]
    repo.last_steps = steps
    probes = len(steps)
    first = [ln for ln in log if ln.startswith("# first bad commit:")]
    if not first:
        raise AssertionError(f"git bisect found no first bad commit:\n{run.stdout}\n{run.stderr}")
    return first[0].split("[", 1)[1].split("]", 1)[0], probes


def our_bisect(repo: GenRepo, culprit: int) -> tuple[str | None, int]:
    """Our Search on the same history and predicate (`git cat-file -e REV:bad/<c>`); (culprit, probes)."""
    from bisector.search import Search
    from bisector.verdict import Verdict

    s = Search(candidates(repo, repo.bad, repo.good), repo.bad)
    s.record(repo.bad, Verdict.BAD)
    probes = 0
    while nxt := s.next():
        rev = nxt[0]
        probes += 1
        bad = repo.git("cat-file", "-e", f"{rev}:{repo.marker(culprit)}", check=False).returncode == 0
        s.record(rev, Verdict.BAD if bad else Verdict.GOOD)
    return s.result().culprit, probes
