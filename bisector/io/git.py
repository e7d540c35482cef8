"""Access to git: the git CLI for commands (failures become GitError), gitpython for blob reads.

The repository, its common dir and commit metadata come from plain git subprocesses (`rev-parse`,
one `cat-file --batch`): importing gitpython costs ~50 ms, more than a whole bisection step, so
`bisector run` never loads it. gitpython (imported lazily, inside the functions below) reads many
blobs through one persistent `git cat-file` process (`Blobs`, used by pin restores). Commands
that write (worktrees) and the candidate graph (`rev-list --parents`) stay on the git CLI.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from bisector.core.errors import GitError, UsageError
from bisector.io.process import capture, capture_bytes, seal_environ, sealed_env

if TYPE_CHECKING:  # pragma: no cover
    import git as gitpython

# Keep git from prompting or paging, whatever the user's config says.
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}


def git_env() -> dict[str, str]:
    """Our environment for git: no GIT_* variable that locates a repository (`sealed_env`)."""
    env = sealed_env()
    env.update(_ENV)
    return env


def git(repo: Path | str, *args: str, input: str | None = None, check: bool = True,
        git_dir: Path | None = None, config: Sequence[str] = ()) -> str:
    """Run `git -C repo args...` and return stdout; raise GitError with git's message on failure.

    With `git_dir`, `repo` is the work tree: `git --git-dir=GIT_DIR --work-tree=REPO args...`,
    whatever `.git` in the work tree says. `config`: `-c key=value` settings for this call."""
    where = ["-C", str(repo)] if git_dir is None else [f"--git-dir={git_dir}", f"--work-tree={repo}"]
    opts = [arg for kv in config for arg in ("-c", kv)]
    res = capture(["git", *where, *opts, *args], cwd=repo, input=input, env=git_env())
    if check and res.returncode != 0:
        msg = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
        raise GitError(f"git {args[0]} failed: {msg}", stderr=res.stderr)
    return res.stdout


def lfs_endpoint(repo: Path) -> str | None:
    """The LFS server of the checkout at `repo` (what `git lfs env` prints as `Endpoint=`), or
    None (no git-lfs, no server configured)."""
    res = capture(["git", "-C", str(repo), "lfs", "env"], cwd=repo, env=git_env())
    found = re.search(r"^Endpoint=(\S+)", res.stdout, re.M) if res.returncode == 0 else None
    return found.group(1) if found else None


_LFS_FAILED = re.compile(r"^fatal: (.+): smudge filter lfs failed$", re.M)
_LFS_REASON = re.compile(r"^Error downloading object: .*?: Smudge error: Error downloading [^:]+: (.+)$", re.M)


class MissingObjectsError(GitError):
    """A checkout that needed what the repository does not hold and its server did not give: a
    git-lfs object, or a partial clone's blobs (offline, never pushed, no server)."""


def lfs_error(exc: GitError, rev: str, url: str | None) -> MissingObjectsError | None:
    """The error to raise for a checkout that git-lfs failed, or None for another failure."""
    failed = _LFS_FAILED.search(exc.stderr)
    if failed is None:
        return None
    reason = _LFS_REASON.search(exc.stderr)
    return MissingObjectsError(
        f"cannot check out {rev[:10]}: git-lfs could not get {failed.group(1)} "
        f"({reason.group(1).strip() if reason else 'see git lfs logs last'}): its object is not in your "
        f"LFS store and {'the LFS server ' + url if url else 'no LFS server is configured that'} did not give it; "
        "fetch them into your checkout (`git lfs fetch --all`) or make the server reachable",
        stderr=exc.stderr)


def git_ok(repo: Path | str, *args: str) -> bool:
    return capture(["git", "-C", str(repo), *args], cwd=repo, env=git_env()).returncode == 0


def repo_root(path: Path | str) -> Path:
    """The top of the working tree containing `path`, or a UsageError (also for a bare
    repository: there is no checkout to run builds in). Found once per folder and process.

    Found from `path` alone, as git finds it with no GIT_* variable: an exported GIT_DIR,
    GIT_WORK_TREE, GIT_INDEX_FILE... (inside a git hook, an editor) is removed from our
    environment first (`seal_environ`), so neither this lookup, nor gitpython's readers, nor any
    process we start afterwards reads or writes another repository, index or work tree."""
    seal_environ()
    p = Path(path).resolve()
    top = _roots.get(p)
    if top is not None:
        return top
    if not p.is_dir():
        raise UsageError(f"not a directory: {p}")
    # One subprocess for both: the top, and the common dir every later step asks for.
    res = capture(["git", "-C", str(p), "rev-parse", "--show-toplevel", "--git-common-dir"], cwd=p, env=git_env())
    out = res.stdout.splitlines() if res.returncode == 0 else []
    if len(out) != 2 or not out[0]:
        raise UsageError(f"not a git repository: {p} (run bisector inside a git checkout, or pass -C DIR)")
    top = _roots[p] = Path(out[0]).resolve()
    _common.setdefault(top, (p / out[1]).resolve())
    return top


def git_common_dir(repo: Path) -> Path:
    """The repository's common git dir (shared by its worktrees); asked once per folder and process."""
    key = Path(repo).resolve()
    found = _common.get(key)
    if found is None:
        out = git(repo, "rev-parse", "--git-common-dir").strip()
        p = Path(out)
        found = _common[key] = p if p.is_absolute() else (repo / p).resolve()
    return found


# Found folders (a repository's top and common dir do not move while bisector runs): each was a
# `git rev-parse` subprocess, asked several times per run.
_roots: dict[Path, Path] = {}
_common: dict[Path, Path] = {}


def resolve(repo: Path, rev: str, what: str = "revision") -> str:
    """Full sha of a commit-ish, or a UsageError that names the revision (a pin's `@NAME` is
    expanded by the caller: `review.pins.store.expand_rev`)."""
    if not rev or rev.startswith("-"):
        raise UsageError(f"invalid {what}: {rev!r}")
    res = capture(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=repo,
        env=git_env(),
    )
    if res.returncode != 0:
        raise UsageError(f"unknown {what}: {rev} (check `git log --oneline` for a commit that exists)")
    return res.stdout.strip()


def is_ancestor(repo: Path, a: str, b: str) -> bool:
    """True when a is an ancestor of b (or equal)."""
    return git_ok(repo, "merge-base", "--is-ancestor", a, b)


def parents(repo: Path, sha: str) -> list[str]:
    """The parents of commit `sha`, in order (first parent first); [] for a root commit."""
    return git(repo, "rev-list", "--parents", "-n", "1", sha, "--").split()[1:]


@dataclass(frozen=True)
class CommitMeta:
    sha: str
    subject: str  # the first paragraph of the message on one line, as `git log --format=%s`
    author: str  # "Name <email>"
    date: str  # the author date, ISO 8601 in the author's time zone


@contextmanager
def reader(repo: Path) -> Iterator[gitpython.Repo]:
    """One gitpython repository with its persistent `git cat-file` reader, closed (the reader
    process stopped) on exit. Not for sharing between threads: open one per thread."""
    import git as gitpython  # gitpython: kept out of `bisector --help`

    handle = gitpython.Repo(repo)
    try:
        yield handle
    finally:
        handle.close()


def commits(repo: Path, shas: Iterable[str]) -> dict[str, CommitMeta]:
    """Metadata of many commits, read through one `git cat-file --batch`; GitError for an unknown one.

    Each message is decoded with its commit's own encoding (the `encoding` header; UTF-8 when
    there is none or Python does not know it), undecodable bytes replaced, so a latin-1 message
    or a control byte in a subject never breaks the reading."""
    shas = list(dict.fromkeys(shas))
    out: dict[str, CommitMeta] = {}
    if not shas:
        return out
    for sha in shas:
        if not sha or any(c in sha for c in "\n\r\0") or sha.startswith("-"):
            raise GitError(f"git log failed: bad object {sha!r}")
    query = "".join(f"{sha}^{{commit}}\n" for sha in shas).encode()
    res = capture_bytes(["git", "-C", str(repo), "cat-file", "--batch"], cwd=repo, input=query, env=git_env())
    if res.returncode != 0:
        msg = (res.stderr.decode(errors="replace").strip().splitlines() or [f"exit {res.returncode}"])[-1]
        raise GitError(f"git cat-file failed: {msg}")
    data, pos = res.stdout, 0
    for sha in shas:
        nl = data.find(b"\n", pos)
        header = data[pos:nl].split() if nl >= 0 else []
        if len(header) != 3 or header[1] != b"commit":
            raise GitError(f"git log failed: bad object {sha} ({b' '.join(header[1:]).decode(errors='replace') or 'no answer'})")
        size = int(header[2])
        out[sha] = _parse_commit(header[0].decode(), data[nl + 1 : nl + 1 + size])
        pos = nl + 1 + size + 1  # the object, then a newline
    return out


def _parse_commit(sha: str, raw: bytes) -> CommitMeta:
    head, _, body = raw.partition(b"\n\n")
    headers = dict(line.split(b" ", 1) for line in head.split(b"\n") if b" " in line and not line.startswith(b" "))
    encoding = headers.get(b"encoding", b"utf-8").decode("ascii", "replace").strip()
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    who, _, when = headers.get(b"author", b"? <?> 0 +0000").decode(encoding, "replace").rpartition(">")
    stamp, tz = (when.split() + ["0", "+0000"])[:2]
    try:
        sign = -1 if tz.startswith("-") else 1
        offset = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])))
        date = datetime.fromtimestamp(int(stamp), offset).isoformat()
    except (ValueError, OverflowError):
        date = ""
    return CommitMeta(sha, _subject(body.decode(encoding, "replace")), who.strip() + ">", date)


def _subject(message: str) -> str:
    """git's %s: the first paragraph, its lines joined with spaces."""
    para = message.strip("\n").split("\n\n", 1)[0]
    return " ".join(line.strip() for line in para.split("\n"))  # not splitlines: \x1c-\x1e stay


class Blobs:
    """File contents at many revisions through one persistent `git cat-file` reader.

    `with Blobs(repo) as blobs: blobs.text(rev, path)`; one per thread."""

    def __init__(self, repo: Path):
        self.repo = repo
        self._stack: Any = None
        self._r: Any = None

    def __enter__(self) -> Self:
        self._stack = reader(self.repo)
        self._r = self._stack.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(None, None, None)

    def read(self, rev: str, path: str) -> bytes | None:
        """The blob at `rev:path`, or None where that is not a file (missing path or revision)."""
        from git.exc import BadName, BadObject

        try:
            obj = self._r.rev_parse(f"{rev}:{path}")
        except (ValueError, IndexError, KeyError, BadName, BadObject):
            return None
        if obj.type != "blob":
            return None
        return obj.data_stream.read()

    def text(self, rev: str, path: str) -> str | None:
        data = self.read(rev, path)
        return None if data is None else data.decode("utf-8", "replace")


def show(repo: Path, rev: str, path: str) -> str | None:
    """The text of one file at `rev` (None where it has none); for many, use `Blobs`."""
    with Blobs(repo) as blobs:
        return blobs.text(rev, path)
