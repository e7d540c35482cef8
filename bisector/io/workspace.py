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

import hashlib
import os
import shutil
from pathlib import Path
from typing import Sequence

from bisector.core.errors import BisectorError, GitError, UsageError
from bisector.io.clone import clone_file, clone_tree
from bisector.io.confine import confined
from bisector.io.clonecfg import lfs_settings, local_filters, promisor_error, promisor_remotes, quoted
from bisector.io.editable import checkout_imports, step_pythonpath
from bisector.io.git import MissingObjectsError, git, git_common_dir, lfs_error
from bisector.io.submodules import MAX_SUBMODULE_DEPTH, recorded_submodules, submodule_source
from bisector.io.untracked import remove, stat_tree
from bisector.io.state import remove_checkout

# Settings of every git call in a clone, and of the clone's own config (what a probe's git reads):
# no hook of the user's runs (`core.hooksPath` of the global config, `init.templateDir`), no
# sparse checkout, no fsmonitor daemon, no automatic gc while we check out.
SEALED = (f"core.hooksPath={os.devnull}", "core.sparseCheckout=false", "core.fsmonitor=false", "gc.auto=0")


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
        self._untracked_key: str | None = None
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
            sealed[f'filter "{quoted(name)}"'] = settings
        promisors = promisor_remotes(self.repo, source)
        for name, settings in promisors.items():
            sealed[f'remote "{quoted(name)}"'] = settings
        self.promisors = {name: settings["url"] for name, settings in promisors.items()}
        if promisors:
            sealed["core"]["repositoryformatversion"] = "1"  # what makes git read `promisor`
        kept.append("[core]\n\tbare = false")
        kept += [f"[{name}]\n" + "".join(f'\t{k} = "{quoted(v)}"\n' for k, v in items.items()).rstrip("\n")
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
        part of the build-cache key, so a build made with other data is not reused. Taken at the
        first step, as the copies are."""
        if not self.untracked:
            return None
        if self._untracked_key is None:  # once a session: a walk of the user's data per step is not free
            stats = [(rel, stat_tree(self.repo / rel)) for rel in self.untracked]
            self._untracked_key = hashlib.sha256(repr(stats).encode()).hexdigest()
        return self._untracked_key

    def _bring_untracked(self) -> None:
        """Put each `untracked` path of the user's checkout in the work tree, as `git bisect`
        finds it in place: copied (reflinked where the filesystem can) once, then again only
        when a build or probe changed the copy (its stat differs from the copy as made), so no
        step sees what another wrote. A revision that tracks the path keeps its own version; a
        path below a symlink of the revision is not written through."""
        self.untracked_missing = []
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
            if rel in self._copied and self._copied[rel] == stat_tree(dest):
                continue
            source = self.repo / rel
            if not source.exists() and not source.is_symlink():
                self.untracked_missing.append(rel)  # a worker on another machine: the step's notes say so
                continue
            remove(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                os.symlink(os.readlink(source), dest)
            elif source.is_dir():
                clone_tree(source, dest, keep_mode=True)
            else:
                clone_file(source, dest, keep_mode=True)
            self._copied[rel] = stat_tree(dest)

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
                remove(child)
            return f"empty: {sha[:10]} could not be checked out from {source} ({exc})"
        return sha

    def _checkout(self, rev: str) -> None:
        """`git checkout --force --detach rev` in the clone; a file git-lfs could not get is one
        GitError that names it, the reason and the fix."""
        try:
            self._git("checkout", "--quiet", "--force", "--detach", rev)
        except GitError as exc:
            raise promisor_error(exc, rev, self.promisors) or lfs_error(exc, rev, self.lfs_url) or exc from None

    def keep_paths(self, rev: str) -> list[str]:
        """Ignored paths `git clean` must leave for the next step to update in place (none here)."""
        return []

    def close(self) -> None:
        for sub in self._subs.values():
            sub.close()
        remove_checkout(self.session_dir)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
