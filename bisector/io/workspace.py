"""The isolated workspace: a private clone per session (per local slot, per worker).

`<dir>/git` is a `git clone --shared --no-checkout --bare` of the user's repository: its objects
are borrowed through `objects/info/alternates` (nothing copied), its refs are its own. git ignores
`--shared` for a shallow repository and copies every object, so there the same thing is made by
hand (`_borrow_shallow`: init, alternates, the shallow file, branches and tags). `<dir>/wt`
is its work tree, whose `.git` is a file `gitdir: <dir>/git`. Builds and probes run in `wt`: a
`git stash`, `git config`, `git commit` or `git gc` there changes the clone only, and nothing of
the user's checkout (sparse-checkout, hooks, `core.worktree`, config) is inherited.

Our own git calls name both folders (`--git-dir`, `--work-tree`) and pass `SEALED` on the command
line, so a `.git` or a config that a probe rewrote cannot redirect them; `repair_git` puts the
`.git` link, the clone's config and alternates back before every step.

Submodules: after each checkout, every submodule of the revision is checked out at the commit it
records, from the user's own clone of it (`.git/modules/NAME`) through a private clone of that,
made the same way (a `Workspace` whose work tree is the submodule's folder), never from a URL.

git-lfs: a repository that uses it gets, in each clone's config, an LFS store of bisector's own
(`.git/bisector/lfs`, shared by every clone of the repository; git-lfs hard-links into it the
objects it finds in the user's `.git/lfs` through the alternates, and downloads the others there)
and the user's LFS server (`lfs.url`, from `git lfs env` in the user's checkout): an object of an
old revision that was never fetched is downloaded as `git checkout` would in the user's checkout,
and an old revision's `.lfsconfig` cannot send the download elsewhere (the clone's config wins).

Invariant: nothing here writes the user's repository: no `git worktree`, nothing under its git
folder but `bisector/` (where the clones live), nothing in its working tree, index or refs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from bisector.core.errors import BisectorError, GitError, LockedError, UsageError
from bisector.io.clone import clone_file, clone_tree
from bisector.io.confine import confined
from bisector.io.editable import checkout_imports, step_pythonpath
from bisector.io.git import MissingObjectsError, git, git_common_dir, lfs_endpoint, lfs_error
from bisector.io.process import alive, kill_under

# Settings of every git call in a clone, and of the clone's own config (what a probe's git reads):
# no hook of the user's runs (`core.hooksPath` of the global config, `init.templateDir`), no
# sparse checkout, no fsmonitor daemon, no automatic gc while we check out.
SEALED = (f"core.hooksPath={os.devnull}", "core.sparseCheckout=false", "core.fsmonitor=false", "gc.auto=0")


def state_dir(repo: Path) -> Path:
    """Disposable state (clones, logs, build cache): inside the repository's .git folder."""
    return git_common_dir(repo) / "bisector"


@contextmanager
def flock(path: Path | str, *, wait: bool = True) -> Iterator[int]:
    """Hold an exclusive flock on `path` (created if missing) for the `with` block; yields its fd.

    The kernel releases it when the process dies, so a crash never leaves it held. With
    `wait=False`, raises BlockingIOError at once when another process holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


class RepoLock:
    """One bisector session per repository: an flock, released by the kernel if we die."""

    def __init__(self, path: Path):
        self.path = path
        self._held: ExitStack | None = None

    def acquire(self) -> None:
        held = ExitStack()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = held.enter_context(flock(self.path, wait=False))
        except BlockingIOError:
            try:
                holder = self.path.read_text().strip()
            except OSError:
                holder = "?"
            raise LockedError(
                f"a bisector session is already running in this repository (pid {holder or '?'}): "
                "wait for it, or stop it first"
            ) from None
        except OSError as exc:
            raise UsageError(
                f"state folder not writable: {self.path.parent} ({exc.strerror}): check its permissions"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._held = held

    def release(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def __enter__(self) -> "RepoLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def prune_stale(repo: Path, sessions_dir: Path, keep: Sequence[Path] = ()) -> list[Path]:
    """Remove the clones left behind by crashed sessions (killing what still runs in them), and
    the worktree registrations an older bisector made. Call with the repo lock held."""
    removed = []
    if sessions_dir.is_dir():
        keep_set = {p.resolve() for p in keep}
        # <session>/, <session>/slot-N/ (local slots), <session>/remote/wPID/ (engine workers)
        roots = {p.parent for depth in ("*", "*/*", "*/*/*") for name in ("wt", "git")
                 for p in sessions_dir.glob(f"{depth}/{name}")}
        for root in sorted(roots):
            if root.resolve() in keep_set:
                continue
            if (root / "wt").is_dir():
                kill_under(root / "wt")  # steps a SIGKILLed bisector left running (their own sessions)
            remove_checkout(root)
            removed.append(root / "wt")
    forget_old_worktrees(repo, sessions_dir)
    return removed


def prune_dead_owners(folder: Path) -> list[Path]:
    """Remove the `<pid>-<name>` checkouts under `folder` whose process is gone (a `pin --verify`
    that was SIGKILLed), killing what still runs in them. A checkout of a live process, or of a
    pid now reused by another process, is left; a zombie owner counts as gone."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        pid = entry.name.split("-", 1)[0]
        if not pid.isdigit() or entry.is_symlink() or not entry.is_dir() or alive(int(pid)):
            continue
        if (entry / "wt").is_dir():
            kill_under(entry / "wt")
        remove_checkout(entry)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def remove_checkout(root: Path) -> None:
    """Remove the clone at `root` (`wt`, `git`, the DVC site cache): plain folders, no git call."""
    for name in ("wt", "git", "dvc-site", "modules"):
        shutil.rmtree(root / name, ignore_errors=True)


def forget_old_worktrees(repo: Path, under: Path) -> None:
    """Drop the `.git/worktrees/<name>` entries whose worktree lies in `under` (made by a bisector
    that used linked worktrees and crashed). Only ours: `git worktree prune` would also forget the
    user's worktrees on an unmounted disk."""
    admin = git_common_dir(repo) / "worktrees"
    if not admin.is_dir():
        return
    root = os.path.realpath(under) + os.sep
    for entry in admin.iterdir():
        try:
            target = os.path.realpath((entry / "gitdir").read_text().strip())
        except OSError:
            continue
        if target.startswith(root):
            shutil.rmtree(entry, ignore_errors=True)


class Workspace:
    """A private clone: work tree `<session_dir>/wt`, git dir `<session_dir>/git`, reused for every
    step of the session."""

    # Files a step keeps across `git clean` (tool-written config, e.g. DVC's config.local).
    keep: tuple[str, ...] = ()

    def __init__(self, repo: Path, session_dir: Path, work_tree: Path | None = None, depth: int = 0,
                 untracked: Sequence[str] = ()):
        self.repo = repo
        self.untracked = list(untracked)  # files of the user's checkout, not in git, every step gets
        self._copied: dict[str, object] = {}  # each one -> the stat of its copy as made (see _bring_untracked)
        self.untracked_missing: list[str] = []  # after a checkout: those not found in the checkout
        self.session_dir = session_dir
        self.path = work_tree or session_dir / "wt"
        self.depth = depth  # 0 for the repository, 1 for its submodules, ...
        self.submodules: dict[str, str] = {}  # after a checkout: submodule path -> what it holds
        self._subs: dict[str, Workspace] = {}  # submodule path -> its own clone (kept across steps)
        self.git_dir = session_dir / "git"
        self.current: str | None = None
        self.step_info: dict[str, object] = {}  # what the last checkout did (for the journal)
        self._sealed: dict[str, bytes] = {}  # clone files as open() left them (repair_git restores them)
        self.lfs_url: str | None = None  # the LFS server of the user's checkout (git-lfs repositories)
        self.promisors: dict[str, str] = {}  # a partial clone's promisor remotes: name -> url
        # Folders of the user's checkout that the user's Python imports (editable installs): the
        # step imports its own copies of them instead (`env()`).
        self.imports: list[str] = checkout_imports(repo, os.environ) if depth == 0 else []

    def env(self) -> dict[str, str]:
        """Extra environment for the build and probes in this workspace: `PYTHONPATH` with the
        step's copies of the folders your Python imports from your checkout (`io.editable`)."""
        if not self.imports:
            return {}
        return {"PYTHONPATH": step_pythonpath(self.path, self.repo, self.imports, os.environ)}

    def inputs(self) -> dict[str, object]:
        """Data inputs materialized beside the code (none for a plain git workspace)."""
        return {}

    def open(self, first_rev: str) -> None:
        self.session_dir.mkdir(parents=True, exist_ok=True)
        remove_checkout(self.session_dir)
        try:
            source = git_common_dir(self.repo)
            if (source / "shallow").is_file():
                self._borrow_shallow(source)
            else:
                # --bare: the refs as the user has them (branches, tags: `git describe` works), no
                # origin-tracking refs; --template=: none of the user's template hooks is copied.
                git(self.session_dir, "clone", "--quiet", "--shared", "--no-checkout", "--bare", "--template=",
                    str(source), str(self.git_dir), config=SEALED)
            self._seal(source)
            self._checkout(first_rev)
        except GitError as exc:
            if isinstance(exc, MissingObjectsError):
                raise
            raise UsageError(f"cannot create the workspace {self.path}: {exc}") from None
        self.current = first_rev

    def _borrow_shallow(self, source: Path) -> None:
        """What `clone --shared --bare` makes, for a shallow repository (where git ignores
        --shared and copies every object): an empty repository of the same object format whose
        objects are the user's (alternates), the user's shallow boundary, and the same branches
        and tags."""
        fmt = git(self.repo, "rev-parse", "--show-object-format").strip() or "sha1"
        git(self.session_dir, "init", "--quiet", "--bare", "--template=", f"--object-format={fmt}",
            str(self.git_dir), config=SEALED)
        info = self.git_dir / "objects" / "info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "alternates").write_text(f"{source / 'objects'}\n")
        shutil.copyfile(source / "shallow", self.git_dir / "shallow")
        refs = git(self.repo, "for-each-ref", "--format=create %(refname) %(objectname)", "refs/heads", "refs/tags")
        if refs.strip():
            git(self.session_dir, f"--git-dir={self.git_dir}", "update-ref", "--stdin", input=refs, config=SEALED)

    def _seal(self, source: Path) -> None:
        """The clone's config: its own core (no longer bare) and extensions, SEALED, no remote but
        a partial clone's promisor remotes (`promisor_remotes`), and git-lfs's (`lfs_settings`)."""
        config = self.git_dir / "config"
        kept, section = [], ""
        for line in config.read_text().splitlines():
            if line.startswith("["):
                section = line.split()[0].strip("[]").lower()
            if section in ("core", "extensions") and line.strip() != "bare = true":
                kept.append(line)
        sealed: dict[str, dict[str, str]] = {}
        for kv in SEALED:
            key, value = kv.split("=", 1)
            name, _, var = key.rpartition(".")
            sealed.setdefault(name, {})[var] = value
        lfs = lfs_settings(self.repo, source)
        if lfs:
            sealed["lfs"] = lfs
            self.lfs_url = lfs.get("url")
        for name, settings in local_filters(source).items():  # `git lfs install --local`, git-crypt
            sealed[f'filter "{_quoted(name)}"'] = settings
        promisors = promisor_remotes(self.repo, source)
        for name, settings in promisors.items():
            sealed[f'remote "{_quoted(name)}"'] = settings
        self.promisors = {name: settings["url"] for name, settings in promisors.items()}
        if promisors:
            sealed["core"]["repositoryformatversion"] = "1"  # what makes git read `promisor`
        kept.append("[core]\n\tbare = false")
        kept += [f"[{name}]\n" + "".join(f'\t{k} = "{_quoted(v)}"\n' for k, v in items.items()).rstrip("\n")
                 for name, items in sealed.items()]
        config.write_text("\n".join(kept) + "\n")
        self._sealed = {rel: (self.git_dir / rel).read_bytes()
                        for rel in ("config", "objects/info/alternates") if (self.git_dir / rel).is_file()}
        self.repair_git()

    def _git(self, *args: str) -> str:
        """git in the clone: both folders named, SEALED on the command line."""
        return git(self.path, *args, git_dir=self.git_dir, config=SEALED)

    def repair_git(self) -> list[str]:
        """Put back what a build or probe may have changed in the clone's plumbing: the work
        tree's `.git` (deleted, made a folder or a symlink, or pointed at another repository),
        the clone's config and alternates, an `index.lock` left by a killed git. Returns what
        was repaired."""
        repaired = []
        self.path.mkdir(parents=True, exist_ok=True)
        link = self.path / ".git"
        want = f"gitdir: {self.git_dir}\n"
        if link.is_symlink() or not link.is_file() or _read(link) != want.encode():
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            else:
                link.unlink(missing_ok=True)
            link.write_text(want)
            repaired.append(".git")
        for rel, data in self._sealed.items():
            path = self.git_dir / rel
            if path.is_symlink() or _read(path) != data:
                path.unlink(missing_ok=True)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                repaired.append(rel)
        lock = self.git_dir / "index.lock"
        if lock.exists():
            lock.unlink()
            repaired.append("index.lock")
        return repaired

    def checkout(self, rev: str) -> None:
        """Make the work tree exactly `rev`: forced checkout, then remove everything untracked."""
        self.repair_git()
        self._checkout(rev)
        keep = [*self.keep, *("/" + p.strip("/") for p in [*self.keep_paths(rev), *self.untracked])]
        excludes = [arg for k in keep for arg in ("-e", k)]
        self._git("clean", "-ffdxq", *excludes)
        self.current = rev
        self.submodules = self._update_submodules()
        self._bring_untracked()

    def untracked_key(self) -> str | None:
        """A fingerprint of the `untracked` paths in the user's checkout (names, sizes, mtimes):
        part of the build-cache key, so a build made with other data is not reused."""
        if not self.untracked:
            return None
        stats = [(rel, _stat_tree(self.repo / rel)) for rel in self.untracked]
        return hashlib.sha256(repr(stats).encode()).hexdigest()

    def _bring_untracked(self) -> None:
        """Put each `untracked` path of the user's checkout in the work tree, as `git bisect`
        finds it in place: copied (reflinked where the filesystem can) once, then again only
        when a build or probe changed the copy (its stat differs from the copy as made), so no
        step sees what another wrote. A revision that tracks the path keeps its own version; a
        path below a symlink of the revision is not written through."""
        self.untracked_missing: list[str] = []
        if not self.untracked:
            return
        tracked = set(self._git("ls-files", "-z", "--", *self.untracked).split("\0")) - {""}
        for rel in self.untracked:
            if any(t == rel or t.startswith(rel + "/") for t in tracked):
                self._copied.pop(rel, None)  # this revision has its own
                continue
            try:
                dest = confined(self.path, rel, last=False)
            except UsageError:
                self._copied.pop(rel, None)
                continue
            if rel in self._copied and self._copied[rel] == _stat_tree(dest):
                continue
            source = self.repo / rel
            if not source.exists() and not source.is_symlink():
                self.untracked_missing.append(rel)  # a worker on another machine: the step's notes say so
                continue
            _remove(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                os.symlink(os.readlink(source), dest)
            elif source.is_dir():
                clone_tree(source, dest, keep_mode=True)
            else:
                clone_file(source, dest, keep_mode=True)
            self._copied[rel] = _stat_tree(dest)

    def _update_submodules(self) -> dict[str, str]:
        """Check out every submodule of the current revision at the commit it records, from your
        own clone of that submodule (`.git/modules/NAME`, or the old-style `PATH/.git` folder),
        each in a private clone as this one: what `git submodule update --init --recursive`
        does, with no download and no URL taken from the repository. Returns path -> the commit
        checked out, or why the folder stays empty (for the journal)."""
        if self.depth >= MAX_SUBMODULE_DEPTH:
            return {}
        recorded = recorded_submodules(self.path, self._git)
        return {path: self._update_submodule(path, name, sha) for path, (name, sha) in recorded.items()}

    def _update_submodule(self, path: str, name: str, sha: str) -> str:
        here = self.path
        for part in path.split("/"):  # git never puts a symlink there: a probe left it, it goes
            here = here / part
            if here.is_symlink():
                here.unlink()
        source = submodule_source(git_common_dir(self.repo), self.repo if self.depth == 0 else None, path, name)
        if source is None:
            return f"empty: {name} is not cloned in your checkout (git submodule update --init)"
        sub = self._subs.get(path)
        try:
            if sub is None or sub.repo != source:
                sub = Workspace(source, self.session_dir / "modules" / hashlib.sha256(path.encode()).hexdigest()[:16],
                                work_tree=self.path / path, depth=self.depth + 1)
                sub.open(sha)
                self._subs[path] = sub
            sub.checkout(sha)
        except BisectorError as exc:
            self._subs.pop(path, None)
            for child in (self.path / path).iterdir() if (self.path / path).is_dir() else ():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            return f"empty: {sha[:10]} could not be checked out from {source} ({exc})"
        return sha

    def _checkout(self, rev: str) -> None:
        """`git checkout --force --detach rev` in the clone; a file git-lfs could not get is one
        GitError that names it, the reason and the fix."""
        try:
            self._git("checkout", "--quiet", "--force", "--detach", rev)
        except GitError as exc:
            if "from promisor remote" in exc.stderr and self.promisors:
                remotes = ", ".join(f"{name} ({url})" for name, url in self.promisors.items())
                raise MissingObjectsError(f"cannot check out {rev[:10]}: your repository is a partial clone and git could not "
                               f"fetch that revision's files from its promisor remote {remotes}; make the remote "
                               "reachable and run again", stderr=exc.stderr) from None
            raise lfs_error(exc, rev, self.lfs_url) or exc from None

    def keep_paths(self, rev: str) -> list[str]:
        """Ignored paths `git clean` must leave for the next step to update in place (none here)."""
        return []

    def close(self) -> None:
        for sub in self._subs.values():
            sub.close()
        remove_checkout(self.session_dir)


# Submodules: how deep nested ones are followed, and how many of one repository.
MAX_SUBMODULE_DEPTH = 8
MAX_SUBMODULES = 1000


def recorded_submodules(work_tree: Path, run: Callable[..., str]) -> dict[str, tuple[str, str]]:
    """The submodules of the revision checked out in `work_tree`: path -> (name, the commit it
    records). `.gitmodules` is read with `git config --file` (no includes); a name or path that
    is absolute, has a `..` component or a backslash is ignored, as git ignores it; the commit
    comes from the tree (`run("ls-tree", ...)`: git in that work tree), not from the file."""
    modules = work_tree / ".gitmodules"
    if not modules.is_file() or modules.is_symlink():
        return {}
    out = git(work_tree, "config", "--file", str(modules), "--get-regexp", r"^submodule\..*\.path$", check=False)
    names = {}
    for line in out.splitlines()[:MAX_SUBMODULES]:
        key, _, path = line.partition(" ")
        name = key[len("submodule."):-len(".path")]
        if _plain_relative(name) and _plain_relative(path):
            names[path.strip("/")] = name
    if not names:
        return {}
    found = {}
    for entry in run("ls-tree", "-z", "HEAD", "--", *names).split("\0"):
        meta, _, path = entry.partition("\t")
        if meta and meta.split()[1] == "commit" and path in names:
            found[path] = (names[path], meta.split()[2])
    return found


def submodule_source(common: Path, work_tree: Path | None, path: str, name: str) -> Path | None:
    """The user's own clone of submodule `name`: `<common>/modules/<name>` (where git keeps
    it), or an old-style `<work_tree>/<path>/.git` folder; None when there is none."""
    for cand in (common / "modules" / name, work_tree / path / ".git" if work_tree is not None else None):
        if cand is not None and cand.is_dir() and (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    return None


def _plain_relative(path: str) -> bool:
    """A submodule name or path as git accepts it: relative, no `..` component, no backslash."""
    parts = path.strip("/").split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in parts and "\0" not in path


# Where a clone's promisor remote pushes: nowhere (a path that is no repository).
NO_PUSH = "/nonexistent/bisector-clones-do-not-push"


def promisor_remotes(repo: Path, source: Path) -> dict[str, dict[str, str]]:
    """For a partial clone (`git clone --filter=blob:none`, whose pack folder holds `.promisor`
    files): its promisor remotes (name -> url, promisor, partialclonefilter, a `pushurl` that
    goes nowhere), so the clone fetches the blobs and trees an old revision needs from the same
    server as `git checkout` in the user's checkout would. They land in the clone's own object
    folder, never in the user's. None for a full clone."""
    if not any((source / "objects" / "pack").glob("*.promisor")):
        return {}
    pattern = r"^(remote\..*\.(url|promisor|partialclonefilter)|extensions\.partialclone)$"
    found: dict[str, dict[str, str]] = {}
    default = None
    for line in git(repo, "config", "--get-regexp", pattern, check=False).splitlines():
        key, _, value = line.partition(" ")
        if key == "extensions.partialclone":
            default = value
            continue
        name, var = key[len("remote."):].rsplit(".", 1)
        found.setdefault(name, {})[var] = value
    return {name: {"url": r["url"], "promisor": "true", "pushurl": NO_PUSH,
                   **({"partialclonefilter": r["partialclonefilter"]} if "partialclonefilter" in r else {})}
            for name, r in found.items() if "url" in r and (r.get("promisor") == "true" or name == default)}


def local_filters(source: Path) -> dict[str, dict[str, str]]:
    """The filter drivers of the user's repository config (`filter.NAME.*`, which `git lfs
    install --local` writes there): without them the clone would check out what the filter
    stores (git-lfs pointers) instead of the files. The user's own settings, not the repository's."""
    try:
        if b"[filter" not in (source / "config").read_bytes().lower():
            return {}
    except OSError:
        return {}
    found: dict[str, dict[str, str]] = {}
    out = git(source, f"--git-dir={source}", "config", "--local", "--get-regexp", r"^filter\.", check=False)
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        name, _, var = key[len("filter."):].rpartition(".")
        if name and var:
            found.setdefault(name, {})[var] = value
    return found


def _quoted(value: str) -> str:
    """A value or subsection name for a git config file, to go between double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def lfs_settings(repo: Path, source: Path) -> dict[str, str]:
    """The clone's `[lfs]` settings for a repository that uses git-lfs (it has `.git/lfs` and
    git-lfs is installed), else none: bisector's own store, and the user's LFS server."""
    if not (source / "lfs").is_dir() or shutil.which("git-lfs") is None:
        return {}
    settings = {"storage": str(source / "bisector" / "lfs")}
    url = lfs_endpoint(repo)
    if url:
        settings["url"] = url
    return settings


def untracked_inputs(repo: Path, paths: Sequence[str]) -> list[str]:
    """`--with-untracked` / `[workspace] untracked`, checked: each a path inside the checkout
    (`a/b`, no `..`, not absolute, not under `.git`) that exists there; normalized, in order."""
    out: list[str] = []
    for given in paths:
        rel = str(given).strip().strip("/")
        parts = rel.split("/")
        if not rel or str(given).startswith("/") or ".." in parts or parts[0] in (".git", ".bisector"):
            raise UsageError(f"--with-untracked {given!r}: give a path inside your checkout (as `data/` or `weights.pt`)")
        if not (repo / rel).exists() and not (repo / rel).is_symlink():
            raise UsageError(f"--with-untracked {given!r}: no such file or folder in your checkout {repo}")
        out.append(rel)
    return list(dict.fromkeys(out))


def describe_untracked(path: Path) -> str:
    """`a symlink to X`, or the size of a file or folder (`12 files, 3.4 MB`), for the start line."""
    if path.is_symlink():
        return f"a symlink to {os.readlink(path)} (copied as a symlink)"
    if not path.is_dir():
        return f"{path.stat().st_size / 1e6:.1f} MB"
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(root, name)).st_size
    return f"{files} files, {size / 1e6:.1f} MB"


def _stat_tree(path: Path) -> object:
    """What a copy looks like, cheaply: (path, size, mtime, mode) of everything under `path`."""
    if path.is_symlink() or not path.is_dir():
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_mode)
    out = []
    for root, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            p = os.path.join(root, name)
            st = os.lstat(p)
            out.append((os.path.relpath(p, path), st.st_size, st.st_mtime_ns, st.st_mode))
    return sorted(out)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
