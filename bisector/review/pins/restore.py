"""Restoring a pin: its code, its DVC data from the user's cache, and (a pin made with `[env]`)
its environment from the environment cache, or built, into a new folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bisector.core.errors import GitError, UsageError
from bisector.io.confine import confined, write_confined
from bisector.io.data.dvccli import (
    dvc_env,
    read_user_config,
    run_dvc,
    strip_ansi,
    write_config_local,
)
from bisector.io.data.files import inputs_at
from bisector.io.env import ENV_DIR, EnvSettings, prepare_env
from bisector.io.envcache import EnvCache, EnvError
from bisector.io.git import Blobs, git, git_common_dir, lfs_endpoint, lfs_error, repo_root
from bisector.io.clonecfg import local_filters, promisor_error, promisor_remotes
from bisector.io.submodules import recorded_submodules, submodule_source
from bisector.review.pins.store import Pin, check_commit, get_pin


@dataclass
class Restored:
    path: Path
    commit: str
    dvc: bool  # a DVC repository: its data was checked out from the user's cache
    data_files: int = 0
    notes: list[str] = field(default_factory=list)  # what was not restored, and why (not fatal)
    env_key: str | None = None  # the environment restored into <path>/.venv
    env_built: bool = False  # it was not in the cache: built first (into the cache)
    env_note: str = ""  # why the environment restored is not the pinned one, if it is not


def restore_env(repo: Path, pin: Pin, dest: Path) -> tuple[str, bool, str]:
    """The pin's environment into `dest/.venv`: from the environment cache when its key is
    there, else built with the pin's `[env]` settings (into the cache, then restored).
    Returns (key, built, note)."""
    key = pin.env["key"]
    cache = EnvCache.for_repo(repo)
    if cache.lookup(key) is not None:
        cache.restore(key, dest / ENV_DIR)
        return key, False, ""
    table = {k[len("env."):]: v for k, v in pin.config.items() if k.startswith("env.")}
    settings = EnvSettings.from_json({**table, "mode": pin.env.get("mode") or table.get("mode", "uv")})
    with tempfile.TemporaryDirectory(prefix="bisector-restore-") as logs:
        try:
            _, info = prepare_env(dest, settings, Path(logs), repo=repo, cache=cache)
        except EnvError as exc:
            raise UsageError(f"pin {pin.name!r}: the code is restored in {dest} but its environment {key[:12]} "
                             f"is not in the cache and could not be built: {exc}", exit_code=1) from None
    note = "" if info["key"] == key else (
        f"the environment was rebuilt as {info['key'][:12]}, not the pinned {key[:12]} "
        "(the [env] settings or the Python differ from when it was pinned)")
    return info["key"], bool(info.get("built")), note


def restore_submodules(repo: Path, common: Path, dest: Path) -> list[str]:
    """Each submodule of the restored revision, at the commit it records, cloned from your own
    clone of it (`submodule.NAME.url` set to it first: no URL of the revision's `.gitmodules`
    is used). One level; returns a note for each submodule left empty."""
    notes = []
    for path, (name, sha) in recorded_submodules(dest, lambda *a: git(dest, *a)).items():
        source = submodule_source(common, repo, path, name)
        if source is None:
            notes.append(f"submodule {path} left empty: {name} is not cloned in your checkout")
            continue
        git(dest, "config", f"submodule.{name}.url", str(source))
        try:
            git(dest, "-c", "protocol.file.allow=always", "submodule", "--quiet", "update", "--init", "--", path)
        except GitError as exc:
            notes.append(f"submodule {path} left empty: {sha[:10]} could not be checked out from {source} ({exc})")
    return notes


def restore(repo_path: Path, name: str, dest: Path | str) -> Restored:
    """Materialize pin `name` (code, then DVC data from the user's cache) into the new folder `dest`."""
    repo = repo_root(repo_path)
    pin = get_pin(repo, name)
    check_commit(repo, pin)
    dest = Path(dest).resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} is not empty: restore into a new or empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    # A local clone hardlinks or copies the whole object store, so a commit that no branch
    # reaches any more is restorable too; the user's repository is only read.
    git(repo, "clone", "--quiet", "--no-checkout", str(repo), str(dest))
    common = git_common_dir(repo)
    for driver, settings in local_filters(common).items():  # as your checkout smudges (`git lfs install --local`)
        for var, value in settings.items():
            git(dest, "config", f"filter.{driver}.{var}", value)
    lfs_url = lfs_endpoint(repo) if (common / "lfs").is_dir() and shutil.which("git-lfs") else None
    if lfs_url:  # weights not in your LFS store come from your LFS server, not from the clone's origin (you)
        git(dest, "config", "lfs.url", lfs_url)
    promisors = promisor_remotes(repo, common)
    for remote, settings in promisors.items():  # a partial clone: its missing files come from its server
        for var, value in settings.items():
            if var != "pushurl":  # (the copy is yours: it pushes where your remote does)
                git(dest, "config", f"remote.{remote}.{var}", value)
    if promisors:
        git(dest, "config", "core.repositoryformatversion", "1")
    try:
        git(dest, "checkout", "--quiet", "--detach", pin.commit)
    except GitError as exc:
        remotes = {remote: settings["url"] for remote, settings in promisors.items()}
        raise promisor_error(exc, pin.commit, remotes) or lfs_error(exc, pin.commit, lfs_url) or exc from None
    # A checkout that left tracked files out (objects a partial clone lacks) must not pass for one.
    # (Deleted ones only: a file git shows as modified right after a checkout is line-ending
    # normalization, not a missing object.)
    missing = [line for line in git(dest, "status", "--porcelain", "--untracked-files=no",
                                    "--ignore-submodules=all").splitlines() if "D" in line[:2]]
    if missing:
        raise GitError(f"restore of pin {name!r} into {dest} is incomplete: {len(missing)} tracked file(s) could not be "
                       f"checked out (first: {missing[0][3:]}); is the repository a partial or shallow clone whose "
                       "server cannot be reached?")
    notes = restore_submodules(repo, common, dest)
    if pin.data_rev:
        # Code from `commit`, data from `data_rev`: overlay only the data-source .dvc files.
        with Blobs(repo) as blobs:  # one reader for every .dvc file
            for path in git(repo, "ls-tree", "-r", "--name-only", "-z", pin.data_rev).split("\0"):
                if path.endswith(".dvc") and not path.startswith(".dvc/"):
                    # Never through a symlink of the pinned revision (`data -> /elsewhere`).
                    write_confined(dest, path, blobs.read(pin.data_rev, path) or b"")
    if os.path.islink(dest / ".dvc"):
        confined(dest, ".dvc")  # a `.dvc` symlink out of dest: refused, its config not written there
    venv = restore_env(repo, pin, dest) if pin.env.get("key") else (None, False, "")
    if not (dest / ".dvc").is_dir():
        return Restored(dest, pin.commit, dvc=False, notes=notes, env_key=venv[0], env_built=venv[1], env_note=venv[2])
    # DVC writes each output in place: none may lie behind a symlink that leads out of dest.
    inputs = inputs_at(repo, pin.data_rev or pin.commit)
    for out in inputs:
        confined(dest, out)
    local = confined(dest, ".dvc/config.local", last=False)
    confined(dest, ".dvc/tmp/site")
    if local.is_symlink():
        local.unlink()  # replaced by ours, never written through
    user = read_user_config(repo)
    # The user's cache and remotes, absolute; copies, never links (a build must not write into the cache).
    write_config_local(local, user, ("reflink", "copy"), dest / ".dvc" / "tmp" / "site")
    env = dvc_env()
    res = run_dvc(dest, "checkout", "--force", env=env)
    if res.returncode != 0 and user.remotes:
        run_dvc(dest, "fetch", env=env)
        res = run_dvc(dest, "checkout", "--force", env=env)
    missing = [p for p, d in inputs.items() if d.source.endswith(".dvc") and not (dest / p).exists()]
    # (notes: the submodules above, then the data)
    if res.returncode != 0 and not missing:
        # The data sources are all there: what `dvc checkout` missed are stage outputs that were
        # never built (or not kept in the cache) at that revision. Reported, not fatal.
        last = (strip_ansi(res.stderr or res.stdout).strip().splitlines() or ["?"])[-1]
        notes.append(f"some stage outputs are not in the DVC cache (never built?): run `dvc repro` in {dest} "
                     f"to build them ({last[:160]})")
    elif missing:
        what = f"{len(missing)} data object(s) are gone from the DVC cache ({', '.join(missing[:3])})"
        raise UsageError(f"pin {name!r}: the code is restored in {dest} but {what}: "
                         f"run `dvc pull` there (or `dvc fetch` in {repo} first)", exit_code=1)
    return Restored(dest, pin.commit, dvc=True, data_files=len(inputs), notes=notes, env_key=venv[0],
                    env_built=venv[1], env_note=venv[2])
